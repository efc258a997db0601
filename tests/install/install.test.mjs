// make install into a scratch root, then services built from the installed tree with
// pkg-config alone (no path into this repository): the echo example, and the README's
// embedding snippet exactly as the README shows it. Both run, and the installed JS client,
// loaded with require() as docs/CLIENT.md says, talks to them.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const work = path.join(root, 'build/install-test');
const dest = path.join(work, 'root');
const prefix = '/usr/local';
const WebSocket = createRequire(path.join(root, 'js-client/package.json'))('ws');
const children = [];

const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', ...opts });
const libEnv = { ...process.env, LD_LIBRARY_PATH: path.join(dest, prefix, 'lib') };
const pcEnv = {
  ...process.env,
  PKG_CONFIG_PATH: path.join(dest, prefix, 'lib/pkgconfig'),
  PKG_CONFIG_SYSROOT_DIR: dest,
};
const pkgConfig = (...args) => run('pkg-config', [...args, 'ferry'], { env: pcEnv }).trim().split(/\s+/);

before(() => {
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  run('make', ['--no-print-directory', '-C', root, 'install', `DESTDIR=${dest}`, `PREFIX=${prefix}`],
    { stdio: ['ignore', 'ignore', 'inherit'] });
});
after(() => { for (const c of children) c.kill('SIGKILL'); });

function build(name, source) {
  const out = path.join(work, name);
  run('cc', ['-std=c11', '-Wall', '-Wextra', '-Werror', ...pkgConfig('--cflags'), source, '-o', out,
    ...pkgConfig('--libs')], { cwd: work, stdio: ['ignore', 'inherit', 'inherit'] });
  return out;
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function start(bin, args, env, port) {
  const child = spawn(bin, args, {
    env: { ...libEnv, ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  for (let i = 0; i < 200; i++) {
    const code = await Promise.race([exited, new Promise((r) => setTimeout(r, 25))]);
    if (code !== undefined) throw new Error(`${bin} exited with ${code}`);
    const ok = await fetch(`http://127.0.0.1:${port}/ferry/ferry.js`).then((r) => r.ok, () => false);
    if (ok) return child;
  }
  throw new Error(`${bin} never served /ferry/ferry.js`);
}

// The installed client, loaded as node loads a CommonJS file, sends a message on the
// WebSocket and waits for the service to send it back.
async function roundTrip(port) {
  const ferry = createRequire(import.meta.url)(path.join(dest, prefix, 'share/ferry/ferry.js'));
  const client = ferry.connect(`http://127.0.0.1:${port}/ferry`, { WebSocket, transport: 'websocket' });
  try {
    const token = `install-${process.pid}-${port}`;
    const back = new Promise((resolve) => client.on('message', (data) => {
      if (data && data.token === token) resolve(data);
    }));
    client.send({ token });
    assert.deepEqual(await back, { token });
    assert.equal(client.transport, 'websocket');
  } finally {
    client.close();
  }
}

test('make install puts the headers, libraries, pkg-config file and client files in place', () => {
  for (const f of ['include/ferry.h', 'include/ferry_transport.h', 'include/ferry_civetweb.h',
    'lib/libferry.a', 'lib/libferry.so', 'lib/pkgconfig/ferry.pc',
    'include/ferry_cluster.h', 'lib/libferry-cluster.a', 'lib/pkgconfig/ferry-cluster.pc',
    'share/ferry/ferry.js', 'share/ferry/ferry.mjs', 'share/ferry/ferry.d.ts',
    'share/ferry/ferry.d.mts'])
    assert.ok(fs.existsSync(path.join(dest, prefix, f)), `${prefix}/${f} installed`);
  assert.ok(pkgConfig('--libs').includes('-lcivetweb'), 'Libs carries -lcivetweb (Debian has no civetweb.pc)');
});

test('the echo example builds with pkg-config alone, runs, and serves the installed client', async () => {
  const bin = build('echo', path.join(root, 'examples/echo/echo.c'));
  assert.match(run('ldd', [bin], { env: libEnv }), new RegExp(`${dest}${prefix}/lib/libferry\\.so\\.0`));
  const port = await freePort();
  await start(bin, [], { PORT: String(port) }, port);
  for (const f of ['ferry.js', 'ferry.mjs']) {
    const served = await fetch(`http://127.0.0.1:${port}/ferry/${f}`).then((r) => r.text());
    assert.equal(served, fs.readFileSync(path.join(dest, prefix, 'share/ferry', f), 'utf8'),
      `the mount serves the installed ${f}`);
  }
  await roundTrip(port);
});

test("the README's embedding snippet compiles as shown and runs", async () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const section = readme.split(/^## Embedding in a civetweb service$/m)[1];
  assert.ok(section, 'README has an "Embedding in a civetweb service" section');
  const snippet = /```c\n([\s\S]*?)```/.exec(section)[1];
  assert.match(snippet, /"127\.0\.0\.1:8080"/, 'the snippet listens on 127.0.0.1:8080');
  const port = await freePort();
  const source = path.join(work, 'readme.c');
  fs.writeFileSync(source, snippet.replace('"127.0.0.1:8080"', `"127.0.0.1:${port}"`));
  await start(build('readme', source), [], {}, port);
  await roundTrip(port);
});

// A clustered node, built with pkg-config ferry-cluster alone. Pointed at a port where no
// Redis listens, it starts anyway and says so through ferry_hub_health.
test('a clustered hub builds with pkg-config ferry-cluster alone and reports Redis down', async () => {
  const port = await freePort();
  const source = path.join(work, 'node.c');
  fs.writeFileSync(source, `#include <stdio.h>
#include <time.h>
#include "ferry_cluster.h"

int main(void)
{
    ferry_cluster_options co;
    ferry_cluster_options_init(&co);
    co.redis = "127.0.0.1:${port}";
    co.node = "install-test";
    ferry_cluster *c;
    if (ferry_cluster_new(&c, &co) != FERRY_OK)
        return 1;
    ferry_options o;
    ferry_options_init(&o);
    o.cluster = c;
    ferry_hub *hub;
    if (ferry_hub_new(&hub, &o, NULL, NULL) != FERRY_OK)
        return 2;
    struct timespec ts = {0, 300000000};
    nanosleep(&ts, NULL);
    printf("%s %d\\n", ferry_hub_node(hub), ferry_hub_health(hub));
    ferry_hub_free(hub);
    ferry_cluster_free(c);
    return 0;
}
`);
  const pc = (...args) => run('pkg-config', [...args, 'ferry-cluster'], { env: pcEnv }).trim().split(/\s+/);
  const out = path.join(work, 'node');
  run('cc', ['-std=c11', '-Wall', '-Wextra', '-Werror', ...pc('--cflags'), source, '-o', out, ...pc('--libs')],
    { cwd: work, stdio: ['ignore', 'inherit', 'inherit'] });
  assert.doesNotMatch(run('ldd', [out]), /libferry\.so/, 'the cluster layer links ferry statically');
  assert.equal(run(out, [], { env: libEnv }).trim(), 'install-test -20');
});
