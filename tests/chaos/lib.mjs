// Shared by chaos.test.mjs and soak.mjs: builds and starts the chaos server, starts nginx,
// and waits for conditions. Everything listens on 127.0.0.1 and writes under build/chaos/.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const out = path.join(root, 'build', 'chaos');
const require = createRequire(path.join(root, 'js-client', 'package.json'));
export const ferry = require('./ferry.js');
// ferry.js's own WebSocket option takes the `ws` package as it is: the client never leaves
// a socket without an error listener (js-client/test/teardown.test.mjs).
export const WebSocket = require('ws');

export const NGINX = '/usr/sbin/nginx';

// Compiles tests/chaos/server.c against build/libferry.a (make lib builds it).
export function buildServer() {
  fs.mkdirSync(out, { recursive: true });
  const bin = path.join(out, 'server');
  const pc = spawnSync('pkg-config', ['--cflags', '--libs', 'jansson', 'libsodium'], { encoding: 'utf8' });
  if (pc.status !== 0) throw new Error('pkg-config: ' + pc.stderr);
  const args = ['-std=c11', '-D_GNU_SOURCE', '-pthread', '-Wall', '-Wextra', '-Werror', '-O2', '-g',
    '-Icore/include', '-Itransports/include', '-Itests/lib', 'tests/chaos/server.c', 'build/libferry.a',
    ...pc.stdout.trim().split(/\s+/), '-lcivetweb', '-o', bin];
  const cc = spawnSync(process.env.CC || 'cc', args, { cwd: root, encoding: 'utf8' });
  if (cc.status !== 0) throw new Error('building the chaos server failed:\n' + cc.stderr);
  return bin;
}

// CHAOS_SERVER names a server binary to use instead (e.g. one built with sanitizers).
export function serverBinary() {
  return process.env.CHAOS_SERVER || buildServer();
}

// Every child this process starts, so a failure anywhere still stops them all. The chaos
// server and nginx's wrapper end when their stdin closes, which also happens when this
// process dies however it dies.
const children = new Set();
export function killAll() {
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    if (c.stdin) c.stdin.destroy();
    else c.kill('SIGKILL');
  }
}
process.on('exit', killAll);

// Node 20 can spin forever in its exit cleanup, at 100 % CPU with no system call, waiting
// for the close of a TCP handle that was destroyed after its peer reset it; the chaos runs
// leave a few such handles behind. Everything is stopped and every line written (stdout
// and stderr writes to pipes and files are synchronous) once the last 'exit' listener
// runs, so this one ends the process right there, with the same code. Call it last, after
// the test runner has registered its own listeners.
export function exitPromptly() {
  process.once('exit', (code) => process.exit(code));
}

function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

function stopChild(child, signal = 'SIGTERM', closeStdin = false) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      // nginx's wrapper leads a process group of its own: nginx goes with it.
      if (child.group) process.kill(-child.pid, 'SIGKILL');
      else child.kill('SIGKILL');
    }, 15000);
    child.once('exit', () => { clearTimeout(t); resolve(); });
    if (closeStdin) child.stdin.end();
    else child.kill(signal);
  });
}

export async function startServer(bin, env = {}) {
  const child = track(spawn(bin, [], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'inherit'],
  }));
  const port = await new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /port (\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error('chaos server exited with ' + code)));
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    port,
    pid: child.pid,
    child,
    async control(what, query = '') {
      const method = what === 'log' || what === 'stats' ? 'GET' : 'POST';
      const r = await fetch(`${base}/control/${what}${query ? '?' + query : ''}`, { method });
      if (r.status !== 200) throw new Error(`control ${what}: HTTP ${r.status}`);
      return r.json();
    },
    stop: () => stopChild(child, null, true),
  };
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// nginx in front of `upstreamPort`, passing WebSocket upgrades and long-polls through, with
// keep-alive connections to the upstream. Its files live in build/chaos/nginx-<port>/.
export async function startNginx(upstreamPort) {
  if (!fs.existsSync(NGINX)) throw new Error(`${NGINX} is missing (apt-get install nginx-light)`);
  const port = await freePort();
  const dir = path.join(out, `nginx-${port}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `${t}_temp_path ${dir}/${t};`).join('\n    ');
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, `
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log crit;
events { worker_connections 2048; }
http {
    access_log off;
    ${temp}
    map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
    upstream ferry { server 127.0.0.1:${upstreamPort}; keepalive 64; }
    server {
        listen 127.0.0.1:${port};
        location / {
            proxy_pass http://ferry;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 30s;
        }
    }
}
`);
  const errlog = path.join(dir, 'error.log');
  const check = spawnSync(NGINX, ['-t', '-c', conf, '-e', errlog], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error('nginx -t: ' + check.stderr);
  // nginx under a shell that stops it when its stdin closes: when this process ends, even
  // killed, nginx does not outlive it.
  const child = track(spawn('/bin/sh', ['-c', '"$0" -c "$1" -e "$2" & pid=$!; cat >/dev/null; kill $pid; wait $pid',
    NGINX, conf, errlog], { stdio: ['pipe', 'inherit', 'inherit'], detached: true }));
  child.group = true;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error('nginx exited with ' + child.exitCode + ': ' +
      (fs.existsSync(errlog) ? fs.readFileSync(errlog, 'utf8') : ''));
    try {
      await fetch(`http://127.0.0.1:${port}/ferry/ferry.js`);
      return true;
    } catch {
      return false;
    }
  }, 5000, 'nginx to listen');
  return {
    port,
    async stop() {
      await stopChild(child, null, true);
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// An exception thrown inside the JS client (from a socket or timer callback) would end the
// soak; it is counted and the soak fails at its end, after its measurements.
export const clientExceptions = [];
export function tolerateClientExceptions() {
  process.on('uncaughtException', (e) => {
    if (e && /ferry\.js/.test(String(e.stack))) {
      clientExceptions.push(String(e.stack).split('\n').slice(0, 3).join(' | '));
      return;
    }
    console.error(e);
    process.exit(1);
  });
}

// The server's RSS (kB), threads and open file descriptors, from /proc.
export function procStats(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)[1]);
  return { rssKb: field('VmRSS'), threads: field('Threads'), fds: fs.readdirSync(`/proc/${pid}/fd`).length };
}
