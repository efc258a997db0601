// `make bench`: ferry and its peers side by side, interleaved, REPS times, server and load
// generator pinned to separate cores. Raw results go to build/bench/results.jsonl (one fyload
// JSON line per step, tagged with system, scenario and repetition); bench/report.mjs turns
// them into docs/BENCHMARKS.md tables and docs/bench-*.png plots.
//
// Environment: REPS (3), STEP seconds per load step (5), NS ("1000,10000"),
// ONLY (comma-separated system names to run, e.g. "ferry-ws,sio-ws"), SCENARIOS (comma-separated
// scenarios to run: fanout, longpoll, storm), QUICK=1 (one small pass).
//
// A run that does not finish (fyload exits non-zero or is killed, or the server fails) still
// leaves a line: {"step":"failed", system, scenario, rep, n, code, signal, timeout, error},
// where error is fyload's last line on stderr (or the server's failure), so the report can
// show it instead of leaving the row out.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const build = path.join(root, 'build', 'bench');
const quick = process.env.QUICK === '1';
const reps = Number(process.env.REPS || (quick ? 1 : 3));
const step = Number(process.env.STEP || (quick ? 2 : 5));
const ns = (process.env.NS || (quick ? '300' : '1000,10000')).split(',').map(Number);
const only = process.env.ONLY ? process.env.ONLY.split(',') : null;
const onlyScenarios = process.env.SCENARIOS ? process.env.SCENARIOS.split(',') : null;
const out = process.env.OUT || path.join(build, 'results.jsonl');

// Cores: the server gets the first half, the generator the rest (0 and 1 on two cores).
const cores = os.cpus().length;
const half = Math.max(1, Math.floor(cores / 2));
const serverCpus = cores > 1 ? `0-${half - 1}` : null;
const genCpus = cores > 1 ? `${half}-${cores - 1}` : null;

// Each system: how to start its server for N connections, and which fyload protocol speaks to it.
const node = process.execPath;
const peer = path.join(root, 'bench', 'peers', 'server.mjs');
const systems = {
  // WebSockets on event loops (the default); civetweb sized for handshakes only.
  'ferry-ws': { proto: 'ferry-ws', server: (n) => [path.join(build, 'ferry_bench'), String(n)],
    env: { SERVER_WORKERS: '256' } },
  // The same server with every WebSocket on a civetweb worker (event_threads 0), as before.
  'ferry-ws-workers': { proto: 'ferry-ws', server: (n) => [path.join(build, 'ferry_bench'), String(n)],
    env: { EVENT_THREADS: '0' } },
  'ferry-lp': { proto: 'ferry-lp', server: (n) => [path.join(build, 'ferry_bench'), String(n)] },
  'sio-ws': { proto: 'sio-ws', server: () => [node, peer, 'sio'] },
  'sio-poll': { proto: 'sio-poll', server: () => [node, peer, 'sio'] },
  'sio-ws-recovery': { proto: 'sio-ws', server: () => [node, peer, 'sio-recovery'] },
  ws: { proto: 'ws', server: () => [node, peer, 'ws'] },
  civetweb: { proto: 'ws', server: (n) => [path.join(build, 'civetweb_bench'), String(n)] },
};

// Delivered messages per second the fan-out ladder offers; publishes/s = target / N.
const ladder = quick ? [5000, 20000] : [25000, 50000, 100000, 150000, 200000, 300000, 400000];

function scenarios() {
  const list = [];
  for (const n of ns) {
    for (const sys of ['ferry-ws', 'ferry-ws-workers', 'sio-ws', 'ws', 'civetweb'])
      list.push({ scenario: 'fanout', sys, n, args: ['--hold', String(quick ? 1 : 5), '--rates',
        ladder.map((t) => (t / n).toFixed(3)).join(',')] });
    // Long-polling: one broadcast a second to everyone.
    for (const sys of ['ferry-lp', 'sio-poll'])
      list.push({ scenario: 'longpoll', sys, n, args: ['--lp-rate', '1', '--step', String(step * 2)] });
  }
  // Resume storm at the largest N: every connection dropped at once while 1 broadcast/s goes on.
  const n = Math.max(...ns);
  for (const sys of ['ferry-ws', 'ferry-ws-workers', 'ferry-lp', 'sio-ws-recovery', 'ws', 'civetweb'])
    list.push({ scenario: 'storm', sys, n, args: ['--storm', '2'] });
  return list.filter((s) => (!only || only.includes(s.sys)) &&
    (!onlyScenarios || onlyScenarios.includes(s.scenario)));
}

function pinned(cpus, argv) {
  return cpus ? ['taskset', ['-c', cpus, ...argv]] : [argv[0], argv.slice(1)];
}

function startServer(sys, n) {
  const [cmd, args] = pinned(serverCpus, systems[sys].server(n));
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...(systems[sys].env || {}), PORT: '0' } });
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${sys}: server did not start`)), 60000);
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /port (\d+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.on('exit', (code) => reject(new Error(`${sys}: server exited with ${code}`)));
  });
}

async function stopServer(child) {
  if (child.exitCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 15000);
  await gone;
  clearTimeout(t);
}

function runLoad(s, port, pid, rep) {
  const procs = Math.max(1, Math.ceil(s.n / 4000)) * (s.sys === 'sio-poll' ? 2 : 1);
  const argv = [path.join(build, 'fyload'), '--port', String(port), '--pid', String(pid),
    '--proto', systems[s.sys].proto, '--conns', String(s.n), '--procs', String(procs),
    '--step', String(step), '--label', s.sys, ...s.args];
  const [cmd, args] = pinned(genCpus, argv);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  let buf = '';
  // fyload's progress goes on to our stderr; its last line says why, if it fails.
  let errTail = '';
  child.stderr.on('data', (d) => {
    process.stderr.write(d);
    errTail = (errTail + d).slice(-4096);
  });
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!line.trim()) continue;
      const rec = { ...JSON.parse(line), system: s.sys, scenario: s.scenario, rep, n: s.n };
      lines.push(rec);
      fs.appendFileSync(out, JSON.stringify(rec) + '\n');
    }
  });
  return new Promise((resolve) => {
    let timeout = false;
    const t = setTimeout(() => {
      timeout = true;
      child.kill('SIGKILL');
    }, 600000);
    child.on('close', (code, signal) => {
      clearTimeout(t);
      const last = errTail.trim().split('\n').filter((l) => l.startsWith('fyload:')).pop() || '';
      resolve({ code, signal, timeout, lines, error: last });
    });
  });
}

function failed(s, rep, what) {
  const rec = { step: 'failed', ...what, system: s.sys, scenario: s.scenario, rep, n: s.n };
  fs.appendFileSync(out, JSON.stringify(rec) + '\n');
}

async function main() {
  for (const b of ['fyload', 'ferry_bench', 'civetweb_bench'])
    if (!fs.existsSync(path.join(build, b))) throw new Error(`build/bench/${b} is missing: run make bench`);
  fs.mkdirSync(build, { recursive: true });
  fs.writeFileSync(out, '');
  const meta = { meta: true, date: new Date().toISOString(), cpu: os.cpus()[0].model, cores,
    node: process.version, reps, step, ns, serverCpus, genCpus, loadavg: os.loadavg(),
    only, scenarios: onlyScenarios };
  fs.appendFileSync(out, JSON.stringify(meta) + '\n');
  const list = scenarios();
  const t0 = Date.now();
  let failures = 0;
  for (let rep = 1; rep <= reps; rep++) {
    for (const [i, s] of list.entries()) {
      const tag = `[rep ${rep}/${reps}, ${i + 1}/${list.length}] ${s.scenario} ${s.sys} N=${s.n}`;
      console.error(`bench: ${tag} (${Math.round((Date.now() - t0) / 1000)} s so far)`);
      let srv;
      try {
        srv = await startServer(s.sys, s.n);
        const r = await runLoad(s, srv.port, srv.child.pid, rep);
        if (r.code !== 0) {
          failures++;
          const how = r.timeout ? 'killed after 600 s' : r.signal ? `killed by ${r.signal}` : `exited with ${r.code}`;
          console.error(`bench: ${tag}: fyload ${how}`);
          failed(s, rep, { code: r.code, signal: r.signal, timeout: r.timeout, error: r.error });
        }
      } catch (e) {
        failures++;
        console.error(`bench: ${tag}: ${e.message}`);
        failed(s, rep, { error: e.message });
      } finally {
        if (srv) await stopServer(srv.child);
      }
    }
  }
  console.error(`bench: done in ${Math.round((Date.now() - t0) / 1000)} s, results in ${out}` +
    (failures ? `, ${failures} runs failed` : ''));
}

main().catch((e) => {
  console.error(`bench: ${e.message}`);
  process.exit(1);
});
