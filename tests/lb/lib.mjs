// The load-balancer tests' harness: ferry nodes (build/tests/lb_server), and nginx or
// HAProxy in front of them from the templates in examples/cluster/, everything on free
// 127.0.0.1 ports and writing under build/lb-tmp/. Every process started here stops when
// this process exits, however it exits.
//
//   const nodes = await startNodes({ n: 2, env: { LB_HB_MS: '200' } });
//   const lb = await startBalancer('haproxy', nodes);
//   ... lb.url ...
//   await lb.stop(); await stopNodes(nodes);
//
// A cluster test passes its Redis address and node settings in `env`; startNodes names
// each node (LB_NODE=a, b, ...) and adds nothing else.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

// The chaos suite's harness starts a server that prints its port and stops when its stdin
// closes, whatever happens to this process; the nodes are such servers.
import { ferry, freePort, root, startServer, waitFor, WebSocket } from '../chaos/lib.mjs';

export { freePort, waitFor, WebSocket };
export const tmp = path.join(root, 'build', 'lb-tmp');

export const NGINX = '/usr/sbin/nginx';
export const HAPROXY = '/usr/sbin/haproxy';
export const SERVER = process.env.LB_SERVER || path.join(root, 'build', 'tests', 'lb_server');
export const PREFIX = '/ferry';
const RENDER = path.join(root, 'examples', 'cluster', 'render.sh');
const TEMPLATES = {
  nginx: path.join(root, 'examples', 'cluster', 'nginx.conf.in'),
  haproxy: path.join(root, 'examples', 'cluster', 'haproxy.cfg.in'),
};

// The balancers, so that a failure anywhere still stops them: each runs under a wrapper
// shell that stops it when its stdin closes, which also happens when this process dies.
const balancers = new Set();
function killAll() {
  for (const c of balancers) {
    if (c.exitCode === null && c.signalCode === null) {
      try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => { killAll(); process.exit(1); });

function stopBalancer(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => process.kill(-child.pid, 'SIGKILL'), 10000);
    child.once('exit', () => { clearTimeout(t); resolve(); });
    child.stdin.end();
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startNode(name, env) {
  if (!fs.existsSync(SERVER)) throw new Error(`${SERVER} is missing: make build/tests/lb_server`);
  const { port, child, stop } = await startServer(SERVER, { ...env, LB_NODE: name });
  // Each on a connection of its own, closed after it: civetweb's shutdown would wait out
  // the keep-alive timeout of an idle one.
  const control = (what, query = '') => new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path: `/control/${what}${query ? '?' + query : ''}`,
      method: what === 'info' ? 'GET' : 'POST', agent: false, headers: { Connection: 'close' },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`node ${name}: control ${what}: HTTP ${res.statusCode}`));
        else resolve(JSON.parse(text));
      });
    });
    req.on('error', reject);
    req.end();
  });
  return {
    name,
    port,
    addr: `127.0.0.1:${port}`,
    child,
    info: () => control('info'),
    publish: (n) => control('publish', `n=${n}`),
    drain: (on) => control('drain', `on=${on ? 1 : 0}`),
    // ferry_mount_drain, as a deploy's stop begins it; it runs on in the node.
    shutdown: (spread = 0) => control('shutdown', `spread=${spread}`),
    stop,
    // Dies at once, as a crashed node would.
    kill() {
      const gone = new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve();
        else child.once('exit', resolve);
      });
      child.kill('SIGKILL');
      return gone;
    },
  };
}

// n nodes named a, b, c, ..., each with `env` added to its environment: an object for
// every node, or a function of the node's name for an environment of its own. LB_REDIS
// makes a node a cluster member (tests/lb/server.c).
export async function startNodes({ n = 2, env = {} } = {}) {
  const names = Array.from({ length: n }, (_, i) => String.fromCharCode(97 + i));
  return Promise.all(names.map((name) => startNode(name, typeof env === 'function' ? env(name) : env)));
}

export async function stopNodes(nodes) {
  await Promise.all(nodes.map((n) => n.stop()));
}

// The template of `kind` filled by examples/cluster/render.sh, as the balancer runs it.
export function render(kind, listen, dir, nodes) {
  const r = spawnSync('sh', [RENDER, TEMPLATES[kind], listen, dir, ...nodes.map((n) => n.addr)],
    { encoding: 'utf8', env: { ...process.env, FERRY_PREFIX: PREFIX } });
  if (r.status !== 0) throw new Error('render.sh: ' + r.stderr);
  return r.stdout;
}

// A wrapper shell in a process group of its own runs the balancer and stops it when its
// stdin closes: when this process ends, even killed, the balancer does not outlive it.
function launch(argv, logFd) {
  const child = spawn('/bin/sh', ['-c', '"$@" & pid=$!; cat >/dev/null; kill $pid; wait $pid',
    'sh', ...argv], { stdio: ['pipe', logFd, logFd], detached: true });
  balancers.add(child);
  child.on('exit', () => balancers.delete(child));
  return child;
}

// nginx or HAProxy in front of `nodes`, on a free port. Its files live in
// build/lb-tmp/<kind>-<port>/: the configuration, logs, pid and temporary files.
export async function startBalancer(kind, nodes) {
  const bin = kind === 'nginx' ? NGINX : HAPROXY;
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: make deps (apt-get install ${kind === 'nginx' ? 'nginx-light' : 'haproxy'})`);
  const port = await freePort();
  const dir = path.join(tmp, `${kind}-${port}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, kind === 'nginx' ? 'nginx.conf' : 'haproxy.cfg');
  const config = render(kind, `127.0.0.1:${port}`, dir, nodes);
  fs.writeFileSync(file, config);
  const out = path.join(dir, 'stdout.log');
  const argv = kind === 'nginx' ? [bin, '-p', dir, '-c', file, '-e', 'stderr'] : [bin, '-f', file, '-db'];
  const check = spawnSync(argv[0], [...argv.slice(1), kind === 'nginx' ? '-t' : '-c'], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`${kind} refused its configuration:\n${check.stderr}${check.stdout}`);
  const fd = fs.openSync(out, 'w');
  const child = launch(argv, fd);
  fs.closeSync(fd);
  const url = `http://127.0.0.1:${port}`;
  const logs = () => [out, path.join(dir, 'access.log'), path.join(dir, 'error.log')]
    .filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f, 'utf8')).join('');
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`${kind} exited with ${child.exitCode}:\n${logs()}`);
    try {
      return (await fetch(`${url}${PREFIX}/ferry.js`)).status === 200;
    } catch {
      return false;
    }
  }, 5000, `${kind} to listen`);
  return {
    kind,
    port,
    url,
    dir,
    config,
    // Everything the balancer logged: access log, error log, and its stdout and stderr.
    logs,
    // HAProxy only: the state ("UP", "DOWN", ...) of each server of a backend, by name.
    async servers(backend = 'ferry') {
      const csv = await adminCommand(path.join(dir, 'haproxy.sock'), 'show stat');
      const [head, ...rows] = csv.trim().split('\n');
      const cols = head.replace(/^# /, '').split(',');
      const at = (r, name) => r.split(',')[cols.indexOf(name)];
      const states = {};
      for (const r of rows) {
        if (at(r, 'pxname') === backend && !['FRONTEND', 'BACKEND'].includes(at(r, 'svname'))) {
          states[at(r, 'svname')] = at(r, 'status');
        }
      }
      return states;
    },
    // Stops it and removes its directory (LB_KEEP=1 keeps it, to read the logs).
    async stop() {
      await stopBalancer(child);
      if (!process.env.LB_KEEP) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function adminCommand(sock, cmd) {
  return new Promise((resolve, reject) => {
    let out = '';
    const c = net.connect(sock, () => c.end(cmd + '\n'));
    c.setEncoding('utf8');
    c.on('data', (d) => { out += d; });
    c.on('end', () => resolve(out));
    c.on('error', reject);
  });
}

// A fetch for ferry.js's `fetch` option that connects from `localAddress` (any 127.x
// address reaches the balancer) and adds `headers` to every request.
export function fetchFrom(localAddress, headers = {}) {
  const agent = new http.Agent({ keepAlive: true });
  const f = (url, init = {}) => new Promise((resolve, reject) => {
    const body = init.body == null ? null : String(init.body);
    const h = { ...headers, ...(init.headers || {}) };
    if (body != null) h['Content-Length'] = Buffer.byteLength(body);
    const req = http.request(url, { method: init.method || 'GET', headers: h, agent, localAddress }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text: async () => text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (init.signal) {
      if (init.signal.aborted) req.destroy(new Error('aborted'));
      else init.signal.addEventListener('abort', () => req.destroy(new Error('aborted')), { once: true });
    }
    req.end(body ?? undefined);
  });
  f.close = () => agent.destroy();
  return f;
}

// A WebSocket constructor for ferry.js's `WebSocket` option, connecting from
// `localAddress` with `headers` added to the upgrade request.
export function webSocketFrom(localAddress, headers = {}) {
  return class extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols || [], { localAddress, headers });
    }
  };
}

// A ferry.js client through `lb`, on one transport, recording what it sees.
export function connectClient(lb, { transport, token, from = '127.0.0.1', headers = {} }) {
  const fetchFn = fetchFrom(from, headers);
  const client = ferry.connect(`${lb.url}${PREFIX}`, {
    transport, token, WebSocket: webSocketFrom(from, headers), fetch: fetchFn,
    minDelay: 50, maxDelay: 500,
  });
  const seen = { opens: [], resets: [], errors: [], messages: [] };
  client.on('open', (e) => seen.opens.push(e));
  client.on('reset', (e) => seen.resets.push(e.reason));
  client.on('error', (e) => seen.errors.push(e.code));
  client.on('message', (data) => seen.messages.push(data));
  return {
    client,
    seen,
    opened: () => waitFor(() => client.state === 'open', 5000, `${token} to open`),
    close() {
      client.close();
      fetchFn.close();
    },
  };
}

// One long-poll handshake through `url`: the session's ID and secret, from the welcome.
export async function lpHello(url) {
  const r = await fetch(`${url}${PREFIX}/lp`, { method: 'POST', body: '{"t":"hello","v":1}' });
  const frames = await r.json();
  const w = frames.find((f) => f.t === 'welcome');
  if (r.status !== 200 || !w) throw new Error(`hello: HTTP ${r.status} ${JSON.stringify(frames)}`);
  return { sid: w.sid, secret: w.secret };
}

// A resume handshake as ferry.js sends it, the session named in the URL; the status.
export async function lpResume(url, { sid, secret }) {
  const r = await fetch(`${url}${PREFIX}/lp?sid=${sid}`, {
    method: 'POST', body: JSON.stringify({ t: 'resume', v: 1, sid, secret, ack: 0 }),
  });
  await r.arrayBuffer();
  return r.status;
}

// The status of a long-poll handshake through `url`.
export async function lpHelloStatus(url) {
  const r = await fetch(`${url}${PREFIX}/lp`, { method: 'POST', body: '{"t":"hello","v":1}' });
  await r.arrayBuffer();
  return r.status;
}

// A poll (GET) or a send (POST) of a session through `url`; resolves to the status.
export async function lpRequest(url, { sid, secret }, method, body) {
  const r = await fetch(`${url}${PREFIX}/lp${method === 'GET' ? '?ack=0' : ''}`, {
    method, body, headers: { Authorization: `Bearer ${sid}:${secret}` },
  });
  await r.arrayBuffer();
  return r.status;
}
