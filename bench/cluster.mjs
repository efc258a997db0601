// `make bench-cluster` (also the last part of `make bench`): ferry as a cluster, measured.
//
//   fanout  one ferry node against three nodes sharing one redis-server, the same total
//           sessions, the same fixed publish rates from one node: delivered msgs/s, latency,
//           and CPU per delivered message over every ferry process plus redis-server.
//   kill    three nodes; every session on one of them; kill -9 that node while messages
//           flow, the load generator moving each connection to another node: time until
//           all are back, per-connection resume time, lost, duplicated, reordered. Socket.IO
//           nodes on @socket.io/redis-streams-adapter with connection state recovery in the
//           same scenario, and, as their control, the same nodes with the connections
//           dropped by the clients instead (the node lives and saves their sessions).
//   bytes   Redis memory per session and per retained message (INFO memory, MEMORY USAGE).
//   rolling a rolling restart: N sessions over three nodes, a fourth process publishing;
//           each node in turn gets SIGTERM (ferry_mount_drain over DRAIN_SPREAD_MS), exits
//           and is started again on its port, the load generator moving each connection
//           let go to another node: time per node drained, the most connections back in a
//           second, lost, duplicated, reordered. Written between cluster-rolling:start and
//           cluster-rolling:end, so that a run of it alone leaves the other parts as they are.
//
// Every server (redis-server included) is started here on 127.0.0.1 and a free port, pinned
// to the first half of the CPUs, the load generator to the rest, and stopped on exit, also
// on failure. Raw results: build/bench/cluster.jsonl (OUT names another file); the
// "Cluster" part of docs/BENCHMARKS.md (between cluster:start and cluster:end) is written
// from them, and `node bench/cluster.mjs --report FILE` writes it again from any such file.
//
// Environment: QUICK=1 (one small pass), REPS (2) for the fan-out, KILL_REPS (1), STEP
// seconds per load step (5), FANOUT_NS total sessions ("9000,18000"), KILL_NS sessions on
// the killed node ("1000,3000,10000": every system at the largest, ferry over WebSocket at
// each), FANOUT_BEYOND three nodes alone, once, with more sessions than one process holds
// ("24000"), SCENARIOS (fanout,kill,bytes), ONLY (kill systems: ferry-ws,ferry-lp,sio-ws,
// sio-ws-drop), FANOUT_ONLY (single or cluster), ROLL_N sessions of the rolling restart
// ("10000"), DRAIN_SPREAD_MS its nodes' spread ("5000"). SCENARIOS=rolling runs it alone.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const build = path.join(root, 'build', 'bench');
const doc = process.env.REPORT_DOC || path.join(root, 'docs', 'BENCHMARKS.md');
const quick = process.env.QUICK === '1';
const reps = Number(process.env.REPS || (quick ? 1 : 2));
const step = Number(process.env.STEP || (quick ? 2 : 5));
const fanNs = (process.env.FANOUT_NS || (quick ? '600' : '9000,18000')).split(',').map(Number);
// Three nodes only, once: more sessions than one process can hold (about 20,000 descriptors).
const beyondNs = (process.env.FANOUT_BEYOND ?? (quick ? '' : '24000')).split(',').filter(Boolean).map(Number);
const killNs = (process.env.KILL_NS || (quick ? '600' : '1000,3000,10000')).split(',').map(Number);
const killN = Math.max(...killNs);
const killReps = Number(process.env.KILL_REPS || 1);
const scenarios = (process.env.SCENARIOS || 'fanout,kill,bytes,rolling').split(',');
const rollN = Number(process.env.ROLL_N || (quick ? 600 : 10000));
const rollSpread = Number(process.env.DRAIN_SPREAD_MS || (quick ? 1000 : 5000));
const killSystems = (process.env.ONLY || 'ferry-ws,ferry-lp,sio-ws,sio-ws-drop').split(',');
const out = process.env.OUT || path.join(build, 'cluster.jsonl');
const logs = path.join(build, 'cluster-logs');
// Offered load of the fan-out, in delivered messages per second (publishes/s = target / N).
const targets = quick ? [5000, 20000] : [50000, 100000, 200000];
const killRate = 2; // publishes per second during the kill, as the resume storm of run.mjs
const nodes = ['a', 'b', 'c'];

const cores = os.cpus().length;
const half = Math.max(1, Math.floor(cores / 2));
const serverCpus = cores > 1 ? `0-${half - 1}` : null;
const genCpus = cores > 1 ? `${half}-${cores - 1}` : null;
const pinned = (cpus, argv) => (cpus ? ['taskset', ['-c', cpus, ...argv]] : [argv[0], argv.slice(1)]);
const node = process.execPath;
const peer = path.join(root, 'bench', 'peers', 'server.mjs');
const fyload = path.join(build, 'fyload');
const ferryBench = path.join(build, 'ferry_bench');
const procsFor = (n) => Math.max(1, Math.ceil(n / 4000));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- threads: civetweb starts one per connection of capacity --------------------------------
// ferry_server_start's num_threads for ferry_bench's capacity c (transports/src/server.c).
const ferryThreads = (c) => Math.ceil((c + 64) * 1.125) + 16;
// Whether `need` more threads fit under kernel.pid_max beside everything else running on the
// machine (other people's work included), with a margin: a run that would exhaust it is
// skipped, and says so, instead of making other processes' fork and pthread_create fail.
function threadsFit(need) {
  const pidMax = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  const running = Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[3].split('/')[1]);
  return { ok: running + need + 2000 <= pidMax, pidMax, running, need };
}

// ---- every child is ours to stop ------------------------------------------------------------
const children = new Set();
function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}
function killAll() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'])
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });

async function stop(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 15000);
  await gone;
  clearTimeout(t);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ---- a few Redis commands over RESP ---------------------------------------------------------
function respParse(b, i) {
  const eol = b.indexOf('\r\n', i);
  if (eol < 0) return null;
  const t = String.fromCharCode(b[i]);
  const line = b.toString('utf8', i + 1, eol);
  if (t === '+') return { v: line, i: eol + 2 };
  if (t === '-') return { v: new Error(line), i: eol + 2 };
  if (t === ':') return { v: Number(line), i: eol + 2 };
  if (t === '$') {
    const n = Number(line);
    if (n < 0) return { v: null, i: eol + 2 };
    if (b.length < eol + 2 + n + 2) return null;
    return { v: b.toString('utf8', eol + 2, eol + 2 + n), i: eol + 2 + n + 2 };
  }
  if (t === '*') {
    const n = Number(line);
    const v = [];
    let j = eol + 2;
    for (let k = 0; k < n; k++) {
      const r = respParse(b, j);
      if (!r) return null;
      v.push(r.v);
      j = r.i;
    }
    return { v, i: j };
  }
  throw new Error(`redis: unexpected reply ${line}`);
}

function redis(port, ...args) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => {
      sock.destroy();
      reject(new Error(`redis ${args[0]}: timed out`));
    }, 10000);
    sock.on('connect', () => {
      sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`);
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const r = respParse(buf, 0);
      if (!r) return;
      clearTimeout(t);
      sock.end();
      if (r.v instanceof Error) reject(r.v);
      else resolve(r.v);
    });
    sock.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

// INFO memory's used_memory less what the clients' buffers hold (they grow and shrink with
// the traffic, not with what is stored).
async function usedMemory(port) {
  const info = await redis(port, 'INFO', 'memory');
  const field = (k) => Number((new RegExp(`${k}:(\\d+)`).exec(info) || [0, 0])[1]);
  return field('used_memory') - field('mem_clients_normal') - field('mem_clients_slaves');
}

async function startRedis(tag) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-bench-redis-'));
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const [cmd, args] = pinned(serverCpus, ['redis-server', '--port', String(port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', path.join(logs, `${tag}-redis.log`)]);
    const child = track(spawn(cmd, args, { stdio: 'ignore' }));
    for (let i = 0; i < 100 && child.exitCode === null; i++) {
      try {
        if ((await redis(port, 'PING')) === 'PONG') return { child, port, pid: child.pid, dir };
      } catch {
        await sleep(50);
      }
    }
    await stop(child);
  }
  throw new Error('redis-server did not start');
}

async function stopRedis(r) {
  if (!r) return;
  await stop(r.child);
  fs.rmSync(r.dir, { recursive: true, force: true });
}

// A server that prints "port N" once it listens; its stderr goes to build/bench/cluster-logs.
function startServer(tag, argv, env) {
  const [cmd, args] = pinned(serverCpus, argv);
  const errPath = path.join(logs, `${tag}.err`);
  const err = fs.openSync(errPath, 'w');
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', err], env: { ...process.env, PORT: '0', ...env } }));
  fs.closeSync(err);
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${tag}: did not start`)), 120000);
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /port (\d+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        const srv = { child, port: Number(m[1]), pid: child.pid, tag, errPath, exit: null };
        child.once('exit', (code, signal) => {
          srv.exit = { code, signal };
        });
        resolve(srv);
      }
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${tag}: exited (${signal || code}) before listening (${errPath})`));
    });
  });
}

// Three ferry nodes (capacities caps[i]) or Socket.IO nodes on one redis-server.
async function startCluster(tag, kind, caps) {
  const r = await startRedis(tag);
  const prefix = `${tag}:`;
  try {
    const list = await Promise.all(nodes.map((name, i) => (kind === 'ferry'
      ? startServer(`${tag}-${name}`, [ferryBench, String(caps[i])], { REDIS: `127.0.0.1:${r.port}`, NODE: name, PREFIX: prefix })
      : startServer(`${tag}-${name}`, [node, peer, 'sio-cluster'], { REDIS: `127.0.0.1:${r.port}`, PREFIX: tag }))));
    return { redis: r, nodes: list, prefix, feed: kind === 'ferry' ? `${prefix}feed` : `${tag}:stream` };
  } catch (e) {
    await stopCluster({ redis: r, nodes: [] });
    throw e;
  }
}

async function stopCluster(c) {
  if (!c) return;
  await Promise.all(c.nodes.map((n) => stop(n.child)));
  await stopRedis(c.redis);
}

// ---- the load generator -----------------------------------------------------------------------
function record(rec) {
  fs.appendFileSync(out, JSON.stringify(rec) + '\n');
}

// Runs fyload; each JSON line is tagged, recorded and handed to onLine (which may be async:
// its promise is awaited before the run counts as done). Resolves with the lines and the
// exit status.
function runLoad(tags, args, onLine, onErr) {
  const argv = [fyload, ...args];
  const [cmd, cargs] = pinned(genCpus, argv);
  const child = track(spawn(cmd, cargs, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const lines = [];
  const pending = [];
  let buf = '';
  let errTail = '';
  child.stderr.on('data', (d) => {
    process.stderr.write(d);
    errTail = (errTail + d).slice(-4096);
    if (onErr) onErr(String(d));
  });
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!line.trim()) continue;
      const rec = { ...JSON.parse(line), ...tags, argv: `fyload ${args.join(' ')}` };
      lines.push(rec);
      if (onLine) pending.push(Promise.resolve(onLine(rec)));
      record(rec);
    }
  });
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 600000);
    child.on('close', async (code, signal) => {
      clearTimeout(t);
      await Promise.allSettled(pending);
      const error = errTail.trim().split('\n').filter((l) => l.startsWith('fyload:')).pop() || '';
      resolve({ code, signal, lines, error });
    });
  });
}

// fyload exits 1 when some connections never connected, and carries on with the others.
function loadFailure(r, n) {
  const conn = r.lines.find((l) => l.step === 'connect');
  const error = r.code === 1 && conn ? `${conn.connected} of ${n} connected, the steps ran with those` : r.error;
  return { code: r.code, signal: r.signal, error };
}

function failed(tags, what) {
  console.error(`cluster: ${JSON.stringify(tags)} failed: ${what.error || what.code}`);
  record({ step: 'failed', ...tags, ...what });
}

// What a node left on stderr beyond its usual lines, and whether it is still alive.
function nodeReport(c, killedPid) {
  return c.nodes.map((n) => {
    const err = fs.existsSync(n.errPath) ? fs.readFileSync(n.errPath, 'utf8') : '';
    return { node: n.tag, pid: n.pid, killed: n.pid === killedPid,
      alive: n.child.exitCode === null && n.child.signalCode === null, exit: n.exit,
      stderr_lines: err.split('\n').filter(Boolean).length, stderr_tail: err.split('\n').filter(Boolean).slice(-5) };
  });
}

// Redis's own count of the commands a run sent: calls and microseconds per command.
async function commandStats(port) {
  const text = await redis(port, 'INFO', 'commandstats');
  const stats = {};
  for (const m of text.matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g))
    stats[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  return stats;
}

// ---- scenarios -----------------------------------------------------------------------------
function skipped(tags, fit) {
  const why = `skipped: ${fit.need} threads needed, ${fit.running} running, pid_max ${fit.pidMax}`;
  console.error(`cluster: ${JSON.stringify(tags)} ${why}`);
  record({ step: 'failed', ...tags, error: why });
}

async function fanoutSingle(n, rep) {
  const tags = { scenario: 'fanout', system: 'single', n, rep };
  let srv;
  const fit = threadsFit(ferryThreads(n));
  if (!fit.ok) return skipped(tags, fit);
  try {
    srv = await startServer(`fanout-single-${n}-${rep}`, [ferryBench, String(n)], {});
    const args = ['--port', String(srv.port), '--pid', String(srv.pid), '--proto', 'ferry-ws',
      '--conns', String(n), '--procs', String(procsFor(n)), '--hold', '2', '--step', String(step),
      '--rates', targets.map((t) => (t / n).toFixed(3)).join(','), '--label', 'single'];
    const r = await runLoad(tags, args);
    if (r.code !== 0) failed(tags, loadFailure(r, tags.n));
    if (srv.exit) {
      const err = fs.readFileSync(srv.errPath, 'utf8').split('\n').filter(Boolean).slice(-5);
      record({ step: 'server-exit', ...tags, ...srv.exit, stderr_tail: err });
      console.error(`cluster: the single node exited during the run: ${JSON.stringify(srv.exit)} ${err.join(' | ')}`);
    }
  } catch (e) {
    failed(tags, { error: e.message });
  } finally {
    await stop(srv?.child);
  }
}

async function fanoutCluster(n, rep) {
  const tags = { scenario: 'fanout', system: 'cluster', n, rep };
  const tag = `fanout-cluster-${n}-${rep}`;
  let c;
  const cap = Math.ceil(n / nodes.length);
  const fit = threadsFit(3 * ferryThreads(cap));
  if (!fit.ok) return skipped(tags, fit);
  try {
    c = await startCluster(tag, 'ferry', nodes.map(() => cap));
    const rp = c.redis.port;
    const base = await usedMemory(rp);
    const pids = [...c.nodes.map((x) => x.pid), c.redis.pid];
    const args = ['--port', String(c.nodes[0].port), '--ports', c.nodes.map((x) => x.port).join(','),
      '--pid', pids.join(','), '--proto', 'ferry-ws', '--conns', String(n), '--procs', String(procsFor(n)),
      '--hold', '2', '--step', String(step), '--rates', targets.map((t) => (t / n).toFixed(3)).join(','),
      '--label', 'cluster'];
    const mem = {};
    const r = await runLoad(tags, args, async (rec) => {
      if (rec.step !== 'connect') return;
      mem.sessions = rec.connected;
      mem.afterConnect = await usedMemory(rp);
      mem.feedAtConnect = await redis(rp, 'XLEN', c.feed);
    });
    if (r.code !== 0) failed(tags, loadFailure(r, tags.n));
    await bytesRecord({ ...tags, scenario: 'bytes', payload: 100 }, c, base, mem);
    record({ step: 'nodes', ...tags, nodes: nodeReport(c, 0) });
  } catch (e) {
    failed(tags, { error: e.message });
  } finally {
    await stopCluster(c);
  }
}

// Redis memory: per session (after connecting, records and one subscription each, before any
// cursor), per retained feed entry (after the publishing), and MEMORY USAGE of sampled
// session keys at the end (with their cursors).
async function bytesRecord(tags, c, base, mem) {
  const rp = c.redis.port;
  const end = await usedMemory(rp);
  const feedEnd = await redis(rp, 'XLEN', c.feed);
  const keys = (await redis(rp, 'SCAN', '0', 'MATCH', `${c.prefix}s:*`, 'COUNT', '1000'))[1].slice(0, 200);
  let keyBytes = 0;
  for (const k of keys) keyBytes += await redis(rp, 'MEMORY', 'USAGE', k, 'SAMPLES', '0');
  const dbsize = await redis(rp, 'DBSIZE');
  const feedUsage = feedEnd ? await redis(rp, 'MEMORY', 'USAGE', c.feed, 'SAMPLES', '0') : 0;
  const rec = { step: 'redis', ...tags, base, after_connect: mem.afterConnect, end, sessions: mem.sessions,
    feed_at_connect: mem.feedAtConnect, feed_end: feedEnd, dbsize, feed_usage: feedUsage,
    feed_usage_per_entry: feedEnd > mem.feedAtConnect
      ? (feedUsage - (mem.feedUsageAtConnect || 0)) / (feedEnd - mem.feedAtConnect) : null,
    per_session: mem.sessions ? (mem.afterConnect - base) / mem.sessions : null,
    per_message: feedEnd > mem.feedAtConnect ? (end - mem.afterConnect) / (feedEnd - mem.feedAtConnect) : null,
    session_key_usage: keys.length ? keyBytes / keys.length : null, keys_sampled: keys.length };
  record(rec);
  console.error(`cluster: redis ${JSON.stringify(rec)}`);
}

// Three nodes, every connection on the second; kill -9 it a third into the step (or, for
// sio-ws-drop, the clients drop every connection instead and reconnect to the same node).
async function kill(sys, rep, sessions) {
  const tags = { scenario: 'kill', system: sys, n: sessions, rep };
  const tag = `kill-${sys}-${sessions}-${rep}`;
  const ferry = sys.startsWith('ferry');
  let c;
  // The killed node holds N; the two others take half each when it dies.
  const other = Math.ceil(sessions * 0.55);
  const fit = threadsFit(ferry ? ferryThreads(sessions) + 2 * ferryThreads(other) : 100);
  if (!fit.ok) return skipped(tags, fit);
  try {
    c = await startCluster(tag, ferry ? 'ferry' : 'sio', [other, sessions, other]);
    const [a, b, cc] = c.nodes;
    const rp = c.redis.port;
    const base = await usedMemory(rp);
    const pids = [a.pid, b.pid, cc.pid, c.redis.pid];
    const proto = ferry ? sys : 'sio-ws';
    const args = ['--port', String(a.port), '--ports', [b.port, cc.port, a.port].join(','), '--spread', '1',
      '--pid', pids.join(','), '--proto', proto, '--conns', String(sessions), '--procs', String(procsFor(sessions)),
      '--step', String(step + 1), '--label', sys];
    if (sys === 'sio-ws-drop') args.push('--storm', String(killRate));
    else args.push('--failover', String(killRate), '--kill', String(b.pid));
    const mem = {};
    const resetSids = new Set();
    const r = await runLoad(tags, args, async (rec) => {
      if (rec.step !== 'connect') return;
      mem.sessions = rec.connected;
      mem.afterConnect = await usedMemory(rp);
      mem.feedAtConnect = await redis(rp, 'XLEN', c.feed);
    }, (text) => {
      for (const m of text.matchAll(/session (\S+): \{"t":"reset"/g)) resetSids.add(m[1]);
    });
    if (r.code !== 0) failed(tags, loadFailure(r, tags.n));
    if (ferry) {
      // what Redis holds for the sessions that got a reset, for the record of a bug
      const first = await redis(rp, 'XRANGE', c.feed, '-', '+', 'COUNT', '1');
      const evidence = { step: 'evidence', ...tags, floor: await redis(rp, 'GET', `${c.prefix}floor`),
        first_entry: first[0] ? first[0][0] : null, feed_len: await redis(rp, 'XLEN', c.feed), sessions: [],
        commandstats: await commandStats(rp) };
      for (const sid of resetSids) {
        const [v, cur] = await redis(rp, 'HMGET', `${c.prefix}s:${sid}`, 'v', 'c');
        evidence.sessions.push({ sid, v, c: cur });
      }
      record(evidence);
    }
    if (ferry) await bytesRecord({ ...tags, scenario: 'bytes', payload: 100 }, c, base, mem);
    await sleep(300);
    const report = nodeReport(c, sys === 'sio-ws-drop' ? 0 : b.pid);
    record({ step: 'nodes', ...tags, nodes: report });
    for (const n of report)
      if (!n.killed && !n.alive) console.error(`cluster: ${n.node} died during ${tag}: see ${logs}`);
  } catch (e) {
    failed(tags, { error: e.message });
  } finally {
    await stopCluster(c);
  }
}

// A rolling restart: nodes a, b, c hold the sessions (a third each at first), p publishes and
// holds none. fyload drains a, b and c in turn (SIGTERM, --drain); each node that exits is
// started again here on its port, with the same settings, and fyload waits for that before
// the next. A node may hold about three quarters of the sessions on the way.
async function rolling(rep, sessions) {
  const tags = { scenario: 'rolling', system: 'ferry-ws', n: sessions, rep, spread_ms: rollSpread };
  const tag = `rolling-${sessions}-${rep}`;
  const cap = Math.ceil(sessions * 0.8);
  const fit = threadsFit(3 * ferryThreads(cap) + ferryThreads(100));
  if (!fit.ok) return skipped(tags, fit);
  let r = null;
  const list = [];
  let restarting = true;
  const restarts = [];
  try {
    r = await startRedis(tag);
    const env = { REDIS: `127.0.0.1:${r.port}`, PREFIX: `${tag}:` };
    const start = async (name, capacity, port, more = {}) => {
      const srv = await startServer(`${tag}-${name}${port ? '-again' : ''}`, [ferryBench, String(capacity)],
        { ...env, NODE: name, ...more, ...(port ? { PORT: String(port) } : {}) });
      srv.name = name;
      srv.child.once('exit', () => {
        if (!restarting || !more.DRAIN_SPREAD_MS) return;
        const at = Date.now();
        restarts.push(start(name, capacity, srv.port, more).then((again) => {
          list.push(again);
          return { node: name, restart_ms: Date.now() - at };
        }));
      });
      return srv;
    };
    const p = await start('p', 100, 0);
    list.push(p);
    for (const name of ['a', 'b', 'c']) list.push(await start(name, cap, 0, { DRAIN_SPREAD_MS: String(rollSpread) }));
    const [, a, b, c] = list;
    const args = ['--port', String(p.port), '--ports', [a.port, b.port, c.port].join(','), '--spread', '3',
      '--pid', [a.pid, b.pid, c.pid, r.pid].join(','), '--proto', 'ferry-ws', '--conns', String(sessions),
      '--procs', String(procsFor(sessions)), '--step', String(step + 1), '--failover', String(killRate),
      '--kill', [a.pid, b.pid, c.pid].join(','), '--drain', '1', '--label', 'ferry-ws-rolling'];
    const gaps = new Set();
    const res = await runLoad(tags, args, null, (text) => {
      for (const m of text.matchAll(/session (\S+): messages/g)) gaps.add(m[1]);
    });
    if (res.code !== 0) failed(tags, loadFailure(res, tags.n));
    if (gaps.size) { // what Redis holds for the sessions that missed messages
      const evidence = { step: 'evidence', ...tags, sessions: [] };
      for (const sid of gaps) {
        const [v, cur, owner, subs] = await redis(r.port, 'HMGET', `${env.PREFIX}s:${sid}`, 'v', 'c', 'o', 'u');
        evidence.sessions.push({ sid, v, c: cur, o: owner, u: subs });
      }
      const feed = await redis(r.port, 'XRANGE', `${env.PREFIX}feed`, '-', '+');
      const ctl = await redis(r.port, 'XRANGE', `${env.PREFIX}ctl`, '-', '+');
      evidence.ctl = ctl.filter(([, f]) => gaps.has(String(f[3]))).map(([id, f]) => `${id} ${f[1]} ${f[3]} ${f[5]}`);
      evidence.feed = feed.map(([id, f]) => `${id} ${f[1]} ${String(f[3]).slice(0, 24)} ${String(f[5]).slice(0, 40)}`);
      record(evidence);
    }
    restarting = false;
    record({ step: 'restarts', ...tags, restarts: await Promise.all(restarts) });
  } catch (e) {
    failed(tags, { error: e.message });
  } finally {
    restarting = false;
    await Promise.allSettled(restarts);
    await Promise.all(list.map((s) => stop(s.child)));
    await stopRedis(r);
  }
}

// One cluster, three measured runs: 100-byte then 1,000-byte messages into the feed (30
// sessions, 1,000 publishes/s), enough of them to count what each retained one costs; then
// a batch of sessions alone. Each run's baseline is taken once its sessions are connected,
// after the runs before it, so that what the first commands of a node set up in Redis (its
// connections, scripts) is not counted.
async function bytes(rep) {
  const tag = `bytes-${rep}`;
  let c;
  try {
    c = await startCluster(tag, 'ferry', [1100, 1100, 1100]);
    const rp = c.redis.port;
    const ports = c.nodes.map((x) => x.port).join(',');
    const runs = [
      { warmup: true, payload: 100, conns: 30, more: ['--rates', '1000', '--step', '2', '--size', '100'] },
      { payload: 100, conns: 30, more: ['--rates', '1000', '--step', quick ? '2' : '10', '--size', '100'] },
      { payload: 1000, conns: 30, more: ['--rates', '1000', '--step', quick ? '2' : '10', '--size', '1000'] },
      { payload: null, conns: quick ? 300 : 3000, more: [] },
    ];
    for (const run of runs) {
      const tags = { scenario: 'bytes', system: run.payload ? 'feed' : 'sessions', n: run.conns, rep, payload: run.payload };
      const base = await usedMemory(rp);
      const feedBase = await redis(rp, 'XLEN', c.feed);
      const args = ['--port', String(c.nodes[0].port), '--ports', ports, '--proto', 'ferry-ws',
        '--conns', String(run.conns), '--procs', '1', '--hold', '1', ...run.more, '--label', `bytes-${run.payload || 'sessions'}`];
      const mem = {};
      const r = await runLoad({ ...tags, scenario: 'bytes-load' }, args, async (rec) => {
        if (rec.step !== 'connect') return;
        mem.sessions = rec.connected;
        mem.afterConnect = await usedMemory(rp);
        mem.feedAtConnect = await redis(rp, 'XLEN', c.feed);
        mem.feedUsageAtConnect = mem.feedAtConnect ? await redis(rp, 'MEMORY', 'USAGE', c.feed, 'SAMPLES', '0') : 0;
      });
      if (r.code !== 0) failed(tags, loadFailure(r, tags.n));
      if (run.warmup) continue;
      // the sessions' growth against the baseline before them; the messages' against the
      // moment the sessions were in
      await bytesRecord(tags, c, run.payload ? mem.afterConnect : base, run.payload ? mem : { ...mem, feedAtConnect: feedBase });
    }
  } catch (e) {
    failed({ scenario: 'bytes', rep }, { error: e.message });
  } finally {
    await stopCluster(c);
  }
}

async function main() {
  for (const b of [fyload, ferryBench])
    if (!fs.existsSync(b)) throw new Error(`${path.relative(root, b)} is missing: run make bench-cluster`);
  fs.mkdirSync(logs, { recursive: true });
  fs.writeFileSync(out, '');
  let redisVersion = '?';
  {
    const r = await startRedis('version');
    redisVersion = /redis_version:(\S+)/.exec(await redis(r.port, 'INFO', 'server'))[1];
    await stopRedis(r);
  }
  record({ meta: true, date: new Date().toISOString(), cpu: os.cpus()[0].model, cores, node: process.version,
    redis: redisVersion, reps, killReps, step, fanNs, beyondNs, killNs, killN, targets, killRate, serverCpus, genCpus, loadavg: os.loadavg(),
    scenarios, killSystems });
  const t0 = Date.now();
  const say = (s) => console.error(`cluster: ${s} (${Math.round((Date.now() - t0) / 1000)} s so far)`);
  for (let rep = 1; rep <= Math.max(reps, killReps); rep++) {
    if (scenarios.includes('fanout') && rep <= reps)
      for (const n of fanNs) {
        // alternate which goes first, so that a drift in the machine's load falls on both
        const order = rep % 2 ? [fanoutSingle, fanoutCluster] : [fanoutCluster, fanoutSingle];
        for (const f of order) {
          if (process.env.FANOUT_ONLY && process.env.FANOUT_ONLY !== (f === fanoutSingle ? 'single' : 'cluster')) continue;
          say(`rep ${rep}/${reps} fanout ${f === fanoutSingle ? 'single' : 'cluster'} N=${n}`);
          await f(n, rep);
        }
      }
    if (scenarios.includes('fanout') && rep === 1)
      for (const n of beyondNs) {
        say(`rep 1 fanout cluster N=${n}, beyond one process`);
        await fanoutCluster(n, rep);
      }
    if (scenarios.includes('kill') && rep <= killReps)
      for (const n of killNs)
        for (const sys of killSystems) {
          if (n !== killN && sys !== 'ferry-ws') continue;
          say(`rep ${rep}/${killReps} kill ${sys} N=${n}`);
          await kill(sys, rep, n);
        }
    if (scenarios.includes('bytes') && rep === 1) {
      say(`rep ${rep}/${reps} bytes`);
      await bytes(rep);
    }
    if (scenarios.includes('rolling') && rep === 1) {
      say(`rep ${rep} rolling restart N=${rollN}`);
      await rolling(rep, rollN);
    }
  }
  say(`done, results in ${out}`);
  report(out);
}

// ---- the report ----------------------------------------------------------------------------
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', {
  minimumFractionDigits: d, maximumFractionDigits: d }) : '–');
const mr = (xs, d = 0) => {
  const v = xs.filter((x) => Number.isFinite(x));
  if (!v.length) return '–';
  const lo = Math.min(...v);
  const hi = Math.max(...v);
  return lo === hi ? fmt(lo, d) : `${fmt(median(v), d)} (${fmt(lo, d)}–${fmt(hi, d)})`;
};
const all = (xs) => xs.map((x) => (Number.isFinite(x) ? fmt(x) : '–')).join(', ');

function report(file) {
  const rows = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const meta = rows.find((r) => r.meta) || {};
  const recs = rows.filter((r) => !r.meta);
  const o = [];
  const p = (s = '') => o.push(s);
  const nreps = new Set(recs.map((r) => r.rep)).size;
  p(`Generated by \`make bench-cluster\` (\`bench/cluster.mjs\`) on ${meta.date ? meta.date.slice(0, 16).replace('T', ' ') : '?'} UTC: ` +
    `${meta.cpu || '?'}, ${meta.cores} cores, Redis ${meta.redis}, Node ${meta.node}; every server and redis-server on ` +
    `CPU ${meta.serverCpus}, the load generator on CPU ${meta.genCpus}; ${nreps} repetition(s), ${meta.step} s per ` +
    'load step, 100-byte payloads, ferry over WebSocket unless named. Cells are "median (min–max)" over the repetitions.');
  p();

  // fan-out
  const fan = recs.filter((r) => r.scenario === 'fanout' && r.step === 'rate');
  if (fan.length) {
    p('### Fan-out: one node against three');
    p();
    p('The same sessions, publishes from one node at fixed rates. CPU is user + system time of every ferry ' +
      'process plus redis-server over the step, per delivered message; "Redis share" is redis-server\'s part of it.');
    p();
    p('| sessions | nodes | offered msgs/s | delivered msgs/s | p50 ms | p99 ms | lost / dup / ooo | CPU µs/msg | Redis share | CPU ratio, 3 nodes / 1 |');
    p('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    const ns = [...new Set(fan.map((r) => r.n))].sort((a, b) => a - b);
    for (const n of ns) {
      const tgs = [...new Set(fan.filter((r) => r.n === n).map((r) => Math.round(r.rate * n / 1000) * 1000))].sort((a, b) => a - b);
      for (const t of tgs) {
        const at = (sys) => fan.filter((r) => r.n === n && r.system === sys && Math.round(r.rate * n / 1000) * 1000 === t);
        const single = at('single');
        const clus = at('cluster');
        // the ratio within each repetition, then over repetitions
        const ratios = [...new Set(clus.map((r) => r.rep))].map((rep) => {
          const s = single.find((x) => x.rep === rep);
          const cl = clus.find((x) => x.rep === rep);
          return s && cl && s.server_us_per_msg ? cl.server_us_per_msg / s.server_us_per_msg : NaN;
        });
        for (const [sys, list] of [['single', single], ['cluster', clus]]) {
          if (!list.length) continue;
          const share = list.map((r) => (r.cpu_s_by_pid && r.server_cpu_s ? r.cpu_s_by_pid[3] / r.server_cpu_s * 100 : NaN));
          p(`| ${fmt(n)} | ${sys === 'single' ? '1' : `3 × ${fmt(Math.ceil(n / 3))}`} | ${fmt(t)} | ` +
            `${mr(list.map((r) => r.delivered_per_s))} | ${mr(list.map((r) => r.p50_ms), 1)} | ${mr(list.map((r) => r.p99_ms), 1)} | ` +
            `${fmt(list.reduce((a, r) => a + r.lost, 0))} / ${fmt(list.reduce((a, r) => a + r.dup, 0))} / ${fmt(list.reduce((a, r) => a + r.ooo, 0))} | ` +
            `${mr(list.map((r) => r.server_us_per_msg), 2)} | ${sys === 'single' ? '–' : `${mr(share, 1)} %`} | ` +
            `${sys === 'single' || !ratios.some(Number.isFinite) ? '' : `${mr(ratios, 2)}×`} |`);
        }
      }
    }
    const steps = (sys) => new Set(fan.filter((r) => r.system === sys).map((r) => `${r.n}/${r.rep}`)).size;
    const fails = recs.filter((r) => r.scenario === 'fanout' && (r.step === 'failed' || r.finished === false));
    p();
    p(`A ladder stops at its first step that loses messages, has p99 over a second or delivers under 80 %; ` +
      `a missing row is a step not reached. Runs: ${steps('single')} single-node, ${steps('cluster')} three-node.` +
      (fails.length ? ` Failed runs: ${fails.map((r) => `${r.system} N=${r.n} rep ${r.rep}: ${r.error || r.code}`).join('; ')}.` : ''));
    const ex = fan.find((r) => r.system === 'cluster');
    const ex1 = fan.find((r) => r.system === 'single');
    p();
    if (ex1) p(`One node: \`${ex1.argv}\` against \`build/bench/ferry_bench ${ex1.n}\`.`);
    if (ex) p(`Three nodes: \`${ex.argv}\` against \`REDIS=127.0.0.1:R NODE=a|b|c PREFIX=… build/bench/ferry_bench ${Math.ceil(ex.n / 3)}\` ` +
      '(three processes) and `redis-server --save \'\' --appendonly no`; `--pid` lists the three nodes and redis-server.');
    p();
  }

  // kill
  const kills = recs.filter((r) => r.scenario === 'kill' && (r.step === 'failover' || r.step === 'storm'));
  const killFails = recs.filter((r) => r.scenario === 'kill' && (r.step === 'failed' || r.finished === false));
  if (kills.length || killFails.length) {
    p('### kill -9 of a node');
    p();
    p(`Three nodes on one redis-server, all N sessions on the second; ${meta.killRate} publishes/s from the ` +
      'first. A third into the step the generator kills the second with SIGKILL; each connection that loses it ' +
      'reconnects to one of the other two (alternately, as a load balancer would spread them) and resumes there. ' +
      '"Back" is from the kill until every connection was ready again; "resume" is per connection, from seeing its ' +
      'connection end to being ready on the new node. "Lost" is every sequence number a connection never received, ' +
      '"recovered" the messages published while a connection was away that it still received; the step\'s ' +
      'latency is over every message of the step, all connections, from its scheduled send time. ' +
      '"Socket.IO, clients drop" is the control: the same three Socket.IO nodes, the node kept alive and every ' +
      'connection closed by its client, then reconnected to the same node.');
    p();
    p('| system | N | runs | back after (s) | resume p50 / p99 / max (ms) | resumed | reset | lost | duplicates | reordered | recovered | step latency p50 / p99 (ms) |');
    p('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    const knames = { 'ferry-ws': 'ferry, WebSocket', 'ferry-lp': 'ferry, long-polling',
      'sio-ws': 'Socket.IO 4.8.4 + redis-streams-adapter 0.3.1', 'sio-ws-drop': 'Socket.IO, clients drop (control)' };
    const kns = [...new Set([...kills, ...killFails].map((r) => r.n))].sort((a, b) => a - b);
    for (const kn of kns) for (const sys of Object.keys(knames)) {
      const l = kills.filter((r) => r.system === sys && r.n === kn);
      const f = killFails.filter((r) => r.system === sys && r.n === kn);
      if (!l.length && !f.length) continue;
      p(`| ${knames[sys]} | ${fmt(kn)} | ${l.length} of ${l.length + f.length} | ${mr(l.map((r) => r.back_s ?? r.reconnect_s), 2)} | ` +
        `${l[0] && l[0].resume_p50_ms !== undefined ? `${mr(l.map((r) => r.resume_p50_ms))} / ${mr(l.map((r) => r.resume_p99_ms))} / ${mr(l.map((r) => r.resume_max_ms))}` : '–'} | ` +
        `${all(l.map((r) => r.resumed))} | ${all(l.map((r) => r.reset))} | ${all(l.map((r) => r.lost))} | ` +
        `${all(l.map((r) => r.dup))} | ${all(l.map((r) => r.ooo))} | ${all(l.map((r) => r.recovered))} | ` +
        `${mr(l.map((r) => r.p50_ms))} / ${mr(l.map((r) => r.p99_ms))} |`);
    }
    p();
    p('Columns with one figure per run list every run.');
    for (const f of killFails) p(`- ${knames[f.system]}, N = ${fmt(f.n)}, run ${f.rep} did not finish: ${f.error || `exit ${f.code}`}${f.reconnected !== undefined ? `, ${f.reconnected} connections back` : ''}.`);
    const deaths = recs.filter((r) => r.step === 'nodes').flatMap((r) => r.nodes.filter((x) => !x.killed && !x.alive).map((x) => `${x.node}`));
    if (deaths.length) p(`- Nodes that died without being killed: ${deaths.join(', ')}.`);
    const kx = kills.find((r) => r.system === 'ferry-ws');
    if (kx) p(`\nferry: \`${kx.argv}\` (ports: killed node, the other two; \`--pid\`: the three nodes and redis-server).`);
    const sx = kills.find((r) => r.system === 'sio-ws');
    if (sx) p(`Socket.IO: \`${sx.argv}\` against \`REDIS=127.0.0.1:R node bench/peers/server.mjs sio-cluster\` (three processes).`);
    p();
  }

  // bytes
  const by = recs.filter((r) => r.step === 'redis');
  if (by.length) {
    p('### Redis memory');
    p();
    p('Redis `used_memory` (`INFO memory`, less the clients\' buffers) measured by the script around the runs. ' +
      '**Per session**: the growth while the sessions connected, each with its record and one subscription, ' +
      'before any cursor was written (in the fan-out and kill runs this includes what the nodes\' first ' +
      'commands set up in Redis; the "sessions alone" run is measured after other runs on the same nodes); beside it `MEMORY USAGE` of up to 200 session keys at the end of the run, ' +
      'cursors written (the key alone, without the keyspace\'s and expiry table\'s share). **Per retained ' +
      'message**: the growth over the feed entries a run appended with 30 sessions on the three nodes, 1,000 ' +
      'publishes/s (nothing is trimmed: the runs are shorter than the feed\'s 5 minutes), and beside it the ' +
      'growth of the feed\'s own `MEMORY USAGE` over the same entries. A first run of the same kind, not ' +
      'counted, warms the nodes and Redis up.');
    p();
    p('| run | sessions | bytes per session | MEMORY USAGE per session key |');
    p('|---|---:|---:|---:|');
    const runName = (r) => (r.system === 'sessions' ? 'sessions alone, after the feed runs'
      : r.system === 'cluster' ? 'fan-out, 3 nodes, as they connect' : `kill, ${r.system}, on one node`);
    for (const r of by.filter((x) => x.system !== 'feed'))
      p(`| ${runName(r)}, rep ${r.rep} | ${fmt(r.sessions)} | ${fmt(r.per_session)} | ${fmt(r.session_key_usage)} |`);
    p();
    p('| payload | feed entries | bytes per retained message (used_memory) | feed MEMORY USAGE per entry |');
    p('|---:|---:|---:|---:|');
    for (const r of by.filter((x) => x.system === 'feed'))
      p(`| ${fmt(r.payload)} B | ${fmt(r.feed_end - r.feed_at_connect)} | ${fmt(r.per_message)} | ${fmt(r.feed_usage_per_entry)} |`);
    p();
  }

  // rolling restart: a block of its own
  const ro = [];
  const rolls = recs.filter((r) => r.scenario === 'rolling' && r.step === 'failover');
  const rollFails = recs.filter((r) => r.scenario === 'rolling' && (r.step === 'failed' || r.finished === false));
  if (rolls.length || rollFails.length) {
    const q = (s = '') => ro.push(s);
    q('### Rolling restart');
    q();
    q(`Generated by \`SCENARIOS=rolling make bench-cluster\` (\`bench/cluster.mjs\`) on ${meta.date ? meta.date.slice(0, 16).replace('T', ' ') : '?'} UTC: ` +
      `${meta.cpu || '?'}, ${meta.cores} cores, Redis ${meta.redis}; servers on CPU ${meta.serverCpus}, the load generator on CPU ${meta.genCpus}.`);
    q();
    q('N WebSocket sessions over three nodes (a third each), a fourth process publishing ' +
      `${meta.killRate} messages/s to all of them, on one redis-server. A third into the step each node in turn gets ` +
      'SIGTERM: it drains (`ferry_mount_drain`: new connections refused, its connections let go with 1012 over the ' +
      'spread, in a random order), exits, and is started again on its port; the next node is drained once it ' +
      'listens again and a second has passed. Each connection let go resumes on another node (the load generator ' +
      'moves it, as a balancer would). "Drained" is from SIGTERM until the process was gone; "back" until every ' +
      'connection it let go was resumed elsewhere; "peak" the most connections resumed within one second; "moved" ' +
      'counts the connections that resumed elsewhere after it let them go (one it let go twice, once to a node ' +
      'that was still draining, counts twice). Resume and message latencies are over the whole step: a message ' +
      'waits while its connection moves.');
    q();
    q('| sessions | spread | node | moved | drained s | back s | peak back per s | lost / dup / ooo (step) | reset | resume p50 / p99 s (step) | message p99 s (step) |');
    q('|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of rolls) {
      (r.drains || []).forEach((d, k) => {
        q(`| ${fmt(r.n)} | ${fmt(r.spread_ms / 1000, 1)} s | ${'abc'[k] || k} | ${fmt(d.moved)} | ${fmt(d.gone_s, 2)} | ${fmt(d.back_s, 2)} | ` +
          `${fmt(d.peak_per_s)} | ${k ? '' : `${fmt(r.lost)} / ${fmt(r.dup)} / ${fmt(r.ooo)}`} | ${k ? '' : fmt(r.reset)} | ` +
          `${k ? '' : `${fmt(r.resume_p50_ms / 1000, 1)} / ${fmt(r.resume_p99_ms / 1000, 1)}`} | ${k ? '' : fmt(r.p99_ms / 1000, 1)} |`);
      });
    }
    q();
    for (const f of rollFails) q(`- N = ${fmt(f.n)}, run ${f.rep} did not finish: ${f.error || `exit ${f.code}`}.`);
    const rs = recs.find((r) => r.scenario === 'rolling' && r.step === 'restarts');
    if (rs) q(`Each node started again in ${rs.restarts.map((x) => `${fmt(x.restart_ms)} ms`).join(', ')} (until it listened).`);
    if (rolls[0]) q(`\n\`${rolls[0].argv}\` against \`REDIS=127.0.0.1:R NODE=a|b|c DRAIN_SPREAD_MS=${rolls[0].spread_ms} build/bench/ferry_bench ${Math.ceil(rolls[0].n * 0.8)}\` ` +
      '(three processes, each started again on its port when it exits) and a fourth, `NODE=p`, the control port, that publishes.');
    q();
  }

  let text = fs.readFileSync(doc, 'utf8');
  const put = (name, lines) => {
    const start = `<!-- ${name}:start -->`;
    const end = `<!-- ${name}:end -->`;
    const i = text.indexOf(start);
    const j = text.indexOf(end);
    const body = `${start}\n${lines.join('\n').trimEnd()}\n${end}`;
    text = i >= 0 && j > i ? text.slice(0, i) + body + text.slice(j + end.length) : `${text.trimEnd()}\n\n${body}\n`;
  };
  // A run of the rolling restart alone leaves the rest of the cluster part as it was.
  if (recs.some((r) => ['fanout', 'kill', 'bytes', 'bytes-load'].includes(r.scenario))) put('cluster', o);
  if (ro.length) put('cluster-rolling', ro);
  fs.writeFileSync(doc, text);
  console.error(`cluster: wrote the cluster part of ${doc} from ${file}`);
}

if (process.argv[2] === '--report') {
  report(process.argv[3] || out);
} else {
  main().catch((e) => {
    console.error(`cluster: ${e.stack || e.message}`);
    killAll();
    process.exit(1);
  });
}
