// The cluster end-to-end tests' processes: a real redis-server, the publisher and the nodes
// (tests/cluster-e2e/node.c), each on a free loopback port, writing only under
// build/cluster-e2e/. Everything started here dies with this process: the nodes when their
// stdin closes (also when this process is killed; the chaos suite's lib.mjs closes it from
// an 'exit' handler), redis-server under a shell that kills it when its stdin closes, and
// by SIGKILL to its process group from an 'exit' handler.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { after } from 'node:test';

import { exitPromptly, freePort, root, startServer, waitFor } from '../chaos/lib.mjs';

export const out = path.join(root, 'build', 'cluster-e2e');

// redis-server's shell (a process group of its own) and the nodes.
const children = new Set();
function killAll() {
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    try {
      if (c.group) process.kill(-c.pid, 'SIGKILL');
      else c.kill('SIGKILL');
    } catch { /* gone already */ }
  }
}
process.on('exit', killAll);

function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', resolve));
}

// E2E_NODE_BIN (the Makefile sets it), or make builds it.
export function nodeBinary() {
  if (process.env.E2E_NODE_BIN) return process.env.E2E_NODE_BIN;
  const r = spawnSync('make', ['--no-print-directory', 'build/tests/cluster-e2e-node'],
    { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error('building the cluster node failed:\n' + r.stdout + r.stderr);
  return path.join(root, 'build', 'tests', 'cluster-e2e-node');
}

// redis-server on a free port, no persistence, its directory under build/cluster-e2e/.
export async function startRedis() {
  const port = await freePort();
  const dir = path.join(out, `redis-${port}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--logfile', path.join(dir, 'redis.log')];
  const child = track(spawn('/bin/sh', ['-c', '"$@" & pid=$!; cat >/dev/null; kill $pid; wait $pid',
    'sh', 'redis-server', ...args], { stdio: ['pipe', 'inherit', 'inherit'], detached: true }));
  child.group = true;
  await waitFor(() => new Promise((resolve) => {
    if (child.exitCode !== null) throw new Error('redis-server exited with ' + child.exitCode);
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  }), 5000, 'redis-server to listen');
  return {
    port,
    addr: `127.0.0.1:${port}`,
    async stop() {
      child.stdin.end();
      await exited(child);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// The chaos suite's short timers: pings after 300 ms of silence, a dead peer after 1 s.
export const NODE_ENV = {
  E2E_HB_MS: '300',
  E2E_TIMEOUT_MS: '1000',
  E2E_WINDOW_MS: '20000',
  E2E_POLL_MS: '1000',
  E2E_STALL_MS: '3000',
  E2E_PUB_MS: '5',
};

// One node (or the publisher, with E2E_ROLE=publisher), started as the chaos suite starts its
// server (it prints its port, and exits when its stdin closes).
export async function startNode(bin, name, env) {
  const server = await startServer(bin, { ...NODE_ENV, ...env, E2E_NODE: name });
  let child = track(server.child);
  let stop = server.stop;
  const node = {
    ...server,
    name,
    addr: `127.0.0.1:${server.port}`,
    alive: true,
    // As abrupt as a crash: nothing is saved, every socket is closed by the kernel.
    async kill9() {
      node.alive = false;
      child.kill('SIGKILL');
      await exited(child);
    },
    async stop() {
      if (!node.alive) return;
      node.alive = false;
      await stop();
    },
    // As a deploy stops a node: SIGTERM, which drains it (node.c), and its exit. The node
    // counts as alive while it drains: it still serves the clients it has not let go.
    async term() {
      child.kill('SIGTERM');
      await exited(child);
      node.alive = false;
    },
    // The same program started again on the same port, under the same name.
    async restart() {
      const again = await startServer(bin, { ...NODE_ENV, ...env, E2E_NODE: name, E2E_PORT: String(node.port) });
      child = track(again.child);
      stop = again.stop;
      Object.assign(node, { pid: again.pid, child: again.child, control: again.control, alive: true });
    },
  };
  return node;
}

// Redis, the publisher and `count` nodes named n1, n2, ... under one key prefix.
export async function startCluster(count, env = {}) {
  const bin = nodeBinary();
  const redis = await startRedis();
  const common = { ...env, E2E_REDIS: redis.addr, E2E_PREFIX: 'e2e:' };
  const publisher = await startNode(bin, 'pub', { ...common, E2E_ROLE: 'publisher' });
  const nodes = [];
  for (let k = 1; k <= count; k++) nodes.push(await startNode(bin, `n${k}`, common));
  return {
    redis,
    publisher,
    nodes,
    live: () => nodes.filter((n) => n.alive),
    // One more node, n<count+1>, joining the cluster (a front given `nodes` sees it).
    async addNode() {
      const node = await startNode(bin, `n${nodes.length + 1}`, common);
      nodes.push(node);
      return node;
    },
    async stats() {
      const all = {};
      for (const n of nodes) if (n.alive) all[n.name] = await n.control('stats');
      return all;
    },
    async stop() {
      await Promise.all([...nodes, publisher].map((n) => n.stop()));
      await redis.stop();
    },
  };
}

export const later = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Every test file's teardown, registered with node:test's after(): the clients close (and
// their last requests settle), then `stops` run in order (fronts, balancers, the cluster).
// `parts` is called then, so it sees what the tests made. A teardown that hangs ends the
// process after 20 s.
export function teardown(label, parts) {
  after(async () => {
    setTimeout(() => {
      console.log(`${label}: teardown stuck`);
      process.exit(1);
    }, 20000).unref();
    const { clients = [], stops = [] } = parts();
    for (const c of clients) c.close();
    await waitFor(() => clients.every((c) => !c.inflight), 5000, 'requests to settle').catch(() => {});
    for (const stop of stops) await stop();
    exitPromptly();
  });
}
