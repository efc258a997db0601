// Debian's prometheus against the cluster demo on loopback: scripts/demo-cluster.sh (Redis,
// the publisher, three nodes, nginx) on a free port with its files under build/, and
// prometheus with a configuration generated here from examples/ops/prometheus-cluster.yml's
// shape: the targets file the script writes, the alerting rules of examples/ops/, a 1 s
// scrape. Real clients connect through nginx; the test then asks Prometheus's HTTP API what
// it scraped: sessions, nodes, drain state, and the publish-to-write and Redis histograms
// through histogram_quantile. Every process it starts is stopped, on failure too.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { ferry, freePort, root, WebSocket } from '../chaos/lib.mjs';

const dir = path.join(root, 'build/ops-test');
const rules = path.join(root, 'examples/ops/ferry-alerts.yml');


async function waitFor(what, ms, fn) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) assert.fail(`${what} within ${ms} ms (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// Processes to stop whatever happens: [pid or -pgid, ...], killed on exit too.
const started = [];
const killAll = () => {
  for (const pid of started.splice(0)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
};
process.on('exit', killAll);

// scripts/demo-cluster.sh in a process group of its own; resolves with what it printed.
async function startCluster(port) {
  const child = spawn(path.join(root, 'scripts/demo-cluster.sh'), [], {
    env: { ...process.env, PORT: String(port), DEMO_DIR: path.join(dir, 'cluster'), SPEED: '10' },
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  started.push(-child.pid);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  let out = '';
  const ready = await Promise.race([
    new Promise((resolve) => child.stdout.on('data', (d) => {
      out += d;
      const redis = /redis +pid (\d+)/.exec(out);
      if (redis && !started.includes(Number(redis[1]))) started.push(Number(redis[1])); // its own session
      if (out.includes('demo-cluster: ready\n')) resolve(true);
    })),
    exited.then(() => false),
    new Promise((resolve) => setTimeout(resolve, 20000, false).unref()),
  ]);
  assert.ok(ready, `the cluster demo started; it printed:\n${out}`);
  return {
    out,
    // SIGTERM: the script stops what it started; the group is killed after 10 s regardless.
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10000).unref())]);
      }
    },
  };
}

async function startPrometheus(port, targets) {
  const data = path.join(dir, 'prometheus-data');
  const config = path.join(dir, 'prometheus.yml');
  fs.writeFileSync(config, [
    'global:',
    '  scrape_interval: 1s',
    '  evaluation_interval: 1s',
    'rule_files:',
    `  - ${JSON.stringify(rules)}`,
    'scrape_configs:',
    '  - job_name: ferry',
    '    metrics_path: /metrics',
    '    file_sd_configs:',
    `      - files: [${JSON.stringify(targets)}]`,
    '',
  ].join('\n'));
  const child = spawn('/usr/bin/prometheus', [
    `--config.file=${config}`, `--storage.tsdb.path=${data}`,
    `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
  ], { stdio: ['ignore', 'inherit', 'inherit'] });
  started.push(child.pid);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const base = `http://127.0.0.1:${port}`;
  await waitFor('prometheus answers /-/ready', 10000, async () => {
    if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}`);
    return (await fetch(`${base}/-/ready`)).status === 200;
  });
  return {
    // One instant query: the result vector ([{metric, value: [t, "v"]}, ...]).
    query: async (q) => {
      const r = await (await fetch(`${base}/api/v1/query?query=${encodeURIComponent(q)}`)).json();
      assert.equal(r.status, 'success', `query ${q}: ${JSON.stringify(r)}`);
      return r.data.result;
    },
    api: async (p) => (await fetch(`${base}${p}`)).json(),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000).unref())]);
      }
    },
  };
}

// The single value of a query that sums to one sample, as a number (NaN when empty).
async function scalar(prom, q) {
  const res = await prom.query(q);
  return res.length === 1 ? Number(res[0].value[1]) : NaN;
}

test('prometheus scrapes the cluster demo and answers for ferry series and histograms', { timeout: 60000 }, async (t) => {
  const t0 = Date.now();
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const clients = [];
  let cluster, prom;
  t.after(async () => {
    for (const c of clients) c.close();
    if (prom) await prom.stop();
    if (cluster) await cluster.stop();
    killAll();
  });

  const [front, promPort] = [await freePort(), await freePort()];
  cluster = await startCluster(front);
  const targets = path.join(dir, 'cluster/prometheus-targets.json');
  const listed = JSON.parse(fs.readFileSync(targets, 'utf8'));
  assert.deepEqual(listed.map((g) => g.labels.node), ['n1', 'n2', 'n3'], 'the script lists its three nodes');
  prom = await startPrometheus(promPort, targets);

  // Five clients through nginx, on both transports; each gets the publisher's snapshots.
  const transports = ['websocket', 'websocket', 'websocket', 'longpoll', 'longpoll'];
  for (const transport of transports) {
    const c = ferry.connect(`http://127.0.0.1:${front}/ferry`, { transport, WebSocket });
    c.got = 0;
    c.on('message', () => { c.got++; });
    clients.push(c);
  }
  await waitFor('every client received messages', 10000, () => clients.every((c) => c.got > 0));

  await waitFor('prometheus scrapes the three nodes', 10000, async () =>
    await scalar(prom, 'count(up{job="ferry"} == 1)') === 3);
  await waitFor('ferry_sessions counts the five attached clients', 10000, async () =>
    await scalar(prom, 'sum(ferry_sessions{state="attached"})') === clients.length);
  assert.equal(await scalar(prom, 'sum(ferry_connections{transport="websocket"})'), 3);
  assert.equal(await scalar(prom, 'count(ferry_draining == 0)'), 3, 'no node drains');
  assert.equal(await scalar(prom, 'count(ferry_store_up == 1)'), 3, 'every node reaches Redis');
  assert.equal(await scalar(prom, 'sum(ferry_redis_errors_total)'), 0);
  const nodes = (await prom.query('ferry_ready')).map((s) => s.metric.node).sort();
  assert.deepEqual(nodes, ['n1', 'n2', 'n3'], 'the targets file labels each series with its node');

  // The histograms: publish-to-write observations keep coming while the matches go on,
  // and both quantiles are real numbers within the buckets.
  const before = await scalar(prom, 'sum(ferry_publish_to_write_seconds_count)');
  assert.ok(before > 0, `publish-to-write has observations (${before})`);
  await waitFor('the publish-to-write count grows', 10000, async () =>
    await scalar(prom, 'sum(ferry_publish_to_write_seconds_count)') > before);
  const p99 = await waitFor('a publish-to-write p99', 10000, async () => {
    const v = await scalar(prom, 'histogram_quantile(0.99, sum by (le) (rate(ferry_publish_to_write_seconds_bucket[5s])))');
    return Number.isFinite(v) ? { v } : null;
  });
  assert.ok(p99.v > 0 && p99.v <= 10, `p99 publish-to-write ${p99.v} s`);
  const rtt = await waitFor('a Redis round-trip median', 10000, async () => {
    const v = await scalar(prom, 'histogram_quantile(0.5, sum by (le) (rate(ferry_redis_round_trip_seconds_bucket[5s])))');
    return Number.isFinite(v) ? { v } : null;
  });
  assert.ok(rtt.v > 0 && rtt.v < 1, `median Redis round trip ${rtt.v} s`);

  // The alerting rules loaded and evaluate without error, and none fires.
  const groups = (await prom.api('/api/v1/rules')).data.groups;
  const loaded = groups.flatMap((g) => g.rules);
  assert.equal(loaded.length, 11);
  assert.ok(loaded.every((r) => r.health === 'ok' || r.health === 'unknown'), JSON.stringify(loaded.filter((r) => r.health === 'err')));
  const firing = (await prom.api('/api/v1/alerts')).data.alerts.filter((a) => a.state === 'firing');
  assert.deepEqual(firing, []);
  t.diagnostic(`p99 publish-to-write ${(p99.v * 1000).toFixed(2)} ms, median Redis round trip ` +
    `${(rtt.v * 1000).toFixed(3)} ms, in ${Date.now() - t0} ms`);
});
