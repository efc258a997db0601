// The live-scores demo as a cluster, end to end: scripts/demo-cluster.sh (Redis, the
// publisher, three nodes, nginx) on a free port with its files under build/, the page in
// Debian's chromium via playwright-core. The test reads which node serves the page, kills
// that node with SIGKILL, and checks that the page moves to another node with no event
// missed or counted twice, and that it ends up showing exactly the publisher's matches; on
// WebSocket and on long-polling. Then Redis is stalled, and the publisher killed and
// replaced. Each test runs a cluster of its own (about 40 s in all).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';

import { freePort } from '../chaos/lib.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { chromium } = createRequire(path.join(root, 'js-client/package.json'))('playwright-core');
const script = path.join(root, 'scripts/demo-cluster.sh');
const dir = path.join(root, 'build/demo-cluster-test');


// Starts the cluster; resolves once the script says it is ready, with what it printed.
async function startCluster() {
  fs.rmSync(dir, { recursive: true, force: true });
  const port = await freePort();
  // Its own process group, so that whatever it started can be stopped with it.
  const child = spawn(script, [], {
    env: { ...process.env, PORT: String(port), DEMO_DIR: dir, SPEED: '10', DEMO_CONTROLS: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
  // Redis runs in a session of its own (demo-cluster.sh says why): killed by its pid.
  let redis = 0;
  const killGroup = () => {
    for (const pid of [-child.pid, redis]) {
      try { if (pid) process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  };
  process.on('exit', killGroup);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  let out = '';
  const ready = await Promise.race([
    new Promise((resolve) => child.stdout.on('data', (d) => {
      out += d;
      redis = Number(/redis +pid (\d+)/.exec(out)?.[1] || 0);
      if (out.includes('demo-cluster: ready\n')) resolve(true);
    })),
    exited.then(() => false),
    new Promise((resolve) => setTimeout(resolve, 30000, false).unref()),
  ]);
  const cluster = {
    base: `http://127.0.0.1:${port}`,
    dir,
    redis,
    publisher: Number(/publisher +pid (\d+)/.exec(out)?.[1] || 0),
    nodes: Object.fromEntries([...out.matchAll(/node (\S+) +pid (\d+)/g)].map((m) => [m[1], Number(m[2])])),
    controls: /controls on (http:\S+)/.exec(out)?.[1],
    // SIGTERM: the script stops everything it started (within 10 s each, or kills it);
    // whatever is left after 20 s is killed with the whole group, and that is a failure.
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return killGroup();
      child.kill('SIGTERM');
      const stopped = await Promise.race([exited.then(() => true),
        new Promise((resolve) => setTimeout(resolve, 20000, false).unref())]);
      const left = stopped ? '' : spawnSync('ps', ['-o', 'pid,stat,etime,args', '-g', String(child.pid)],
        { encoding: 'utf8' }).stdout;
      killGroup();
      process.off('exit', killGroup);
      assert.ok(stopped, `the cluster stopped within 20 s of SIGTERM; still there:\n${left}`);
    },
  };
  if (!ready) {
    await cluster.stop().catch(() => {});
    assert.fail(`the cluster did not start; it printed:\n${out}`);
  }
  return cluster;
}

const launch = () => chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});

const applied = (page) => page.evaluate(() => Object.values(window.demo.applied).reduce((n, a) => n + a.length, 0));

// What a card's pill says (app.js statusText).
function statusText(m) {
  if (m.status === 'live') return `${m.minute}'`;
  if (m.status === 'half-time') return 'HT';
  if (m.status === 'full-time') return 'FT';
  return 'Scheduled';
}

// One cluster, one page on `transport`, the page's node killed.
async function killServingNode(t, transport) {
  const t0 = Date.now();
  const cluster = await startCluster();
  let browser;
  t.after(async () => {
    if (browser) await browser.close();
    const t1 = Date.now();
    await cluster.stop();
    t.diagnostic(`cluster stopped in ${Date.now() - t1} ms`);
  });
  assert.deepEqual(Object.keys(cluster.nodes).sort(), ['n1', 'n2', 'n3']);
  assert.ok(cluster.controls, 'the publisher printed its control address');
  t.diagnostic(`cluster started in ${Date.now() - t0} ms`);

  browser = await launch();
  const page = await browser.newPage();
  await page.goto(`${cluster.base}/?transport=${transport}`);
  await page.waitForFunction((want) => window.demo.transport === want && window.demo.node, transport);
  await page.waitForFunction(() => document.querySelectorAll('.match').length === 6);
  await page.waitForFunction(() => Object.values(window.demo.applied).reduce((n, a) => n + a.length, 0) >= 30 &&
    window.demo.checked >= 12);
  const first = await page.evaluate(() => window.demo.node);
  assert.ok(cluster.nodes[first], `the page names a node of the cluster (${first})`);
  assert.equal(await page.textContent('#node'), `served by ${first}`);

  const before = await applied(page);
  const checked = await page.evaluate(() => window.demo.checked);
  const killedAt = Date.now();
  process.kill(cluster.nodes[first], 'SIGKILL');
  await page.waitForFunction((n) => window.demo.node && window.demo.node !== n, first, { timeout: 20000 });
  const moved = Date.now() - killedAt;
  const second = await page.evaluate(() => window.demo.node);
  t.diagnostic(`the page moved from ${first} to ${second} ${moved} ms after the kill`);
  assert.ok(cluster.nodes[second], `the page names a node of the cluster (${second})`);
  assert.equal(await page.textContent('#node'), `served by ${second}`);
  assert.ok(await page.evaluate(() => window.demo.resumes) >= 1, 'it resumed');
  // Events and snapshot checks keep coming from the new node.
  await page.waitForFunction(([n, c]) => Object.values(window.demo.applied).reduce((s, a) => s + a.length, 0) >= n + 60 &&
    window.demo.checked >= c + 18, [before, checked]);

  // The publisher stops the matches; the page catches up and must show exactly its matches.
  await fetch(`${cluster.controls}pause`, { method: 'POST' });
  const truth = await (await fetch(`${cluster.controls}state`)).json();
  await page.waitForFunction((want) => want.every((m) =>
    (window.demo.base[m.id] ?? -1) + (window.demo.applied[m.id] || []).length === m.n), truth.matches);
  const shown = await page.$$eval('.match', (cards) => cards.map((c) => ({
    id: Number(c.id.replace('match-', '')),
    home: c.querySelector('.home').textContent,
    away: c.querySelector('.away').textContent,
    score: [Number(c.querySelector('.h').textContent), Number(c.querySelector('.a').textContent)],
    pill: c.querySelector('.pill').textContent,
  })));
  assert.deepEqual(shown, truth.matches.map((m) => ({
    id: m.id, home: m.home, away: m.away, score: m.score, pill: statusText(m),
  })), 'the page shows the publisher\'s matches');

  const seen = await page.evaluate(() => window.demo);
  assert.equal(seen.duplicates, 0, 'no event counted twice');
  assert.equal(seen.gaps, 0, 'no event missed');
  assert.equal(seen.mismatches, 0, 'every later snapshot agreed with the page');
  assert.equal(seen.resets, 0, 'resumed, not reset');
  assert.equal(seen.restarts, 0);
  assert.equal(seen.run, truth.run);
  const log = await (await fetch(`${cluster.controls}log`)).json();
  for (const [id, base] of Object.entries(seen.base)) {
    const got = seen.applied[id];
    assert.deepEqual(got, got.map((_, k) => base + k + 1), `match ${id}: contiguous after the snapshot`);
    const want = log.filter((e) => e.match === Number(id) && e.n > base).map((e) => e.n);
    assert.deepEqual(got, want, `match ${id}: every event the publisher published after the snapshot`);
  }
  assert.equal(seen.transport, transport);
  t.diagnostic(`${Object.values(seen.applied).reduce((n, a) => n + a.length, 0)} events applied, ` +
    `${seen.checked} snapshot checks, in ${Date.now() - t0} ms`);
}

test('kill -9 of the node serving the page (WebSocket): it moves to another node and misses nothing',
  { timeout: 90000 }, (t) => killServingNode(t, 'websocket'));

// The demo's nginx sends one client's long-polling requests to one node (nginx.conf.in says
// why); when that node dies they go to the next one, where the page resumes.
test('kill -9 of the node serving the page (long-polling): it moves to another node and misses nothing',
  { timeout: 90000 }, (t) => killServingNode(t, 'longpoll'));

// Redis stalled past the command timeout (1 s): the publisher's appends fail and are tried
// again, and the page skips the repeats and misses nothing. Then the publisher killed: the
// scores stand still and the page stays connected; a new publisher begins new matches, and
// the page starts over at its first snapshot.
test('Redis stalled, then the publisher killed and replaced: the page misses nothing, then starts over', { timeout: 90000 }, async (t) => {
  const cluster = await startCluster();
  let browser, publisher;
  t.after(async () => {
    if (publisher && publisher.exitCode === null) {
      const gone = new Promise((resolve) => publisher.on('exit', resolve));
      publisher.kill('SIGTERM');
      await gone;
    }
    if (browser) await browser.close();
    await cluster.stop();
  });
  browser = await launch();
  const page = await browser.newPage();
  await page.goto(cluster.base + '/');
  await page.waitForFunction(() => window.demo.node && window.demo.checked >= 12);
  const before = await applied(page);
  process.kill(cluster.redis, 'SIGSTOP');
  await page.waitForTimeout(1500);
  process.kill(cluster.redis, 'SIGCONT');
  await page.waitForFunction((n) => Object.values(window.demo.applied).reduce((s, a) => s + a.length, 0) >= n + 60, before);
  const stalled = await page.evaluate(() => window.demo);
  assert.equal(stalled.duplicates, 0, 'no event delivered twice');
  assert.equal(stalled.gaps, 0, 'no event missed');
  assert.equal(stalled.mismatches, 0, 'every later snapshot agreed with the page');
  t.diagnostic(`after Redis stalled: ${stalled.republished} events published again and skipped`);

  const run = await page.evaluate(() => window.demo.run);
  process.kill(cluster.publisher, 'SIGKILL');
  await page.waitForTimeout(1500);
  const still = await page.evaluate(() => window.demo.received);
  await page.waitForTimeout(1500);
  assert.equal(await page.evaluate(() => window.demo.received), still, 'nothing comes without a publisher');
  assert.equal(await page.evaluate(() => window.demo.transport), 'websocket', 'the page stays connected');

  publisher = spawn(path.join(root, 'build/examples/live-scores-cluster'), [path.join(root, 'examples/live-scores/www')], {
    env: { ...process.env, REDIS: path.join(cluster.dir, 'redis.sock'), NODE: 'pub', ROLE: 'publisher', SPEED: '10', PORT: '0' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  await page.waitForFunction((old) => window.demo.run !== old && window.demo.checked >= 24 &&
    Object.values(window.demo.applied).reduce((n, a) => n + a.length, 0) >= 30, run);
  const seen = await page.evaluate(() => window.demo);
  assert.equal(seen.restarts, 1);
  assert.equal(seen.duplicates, 0, 'no event counted twice');
  assert.equal(seen.gaps, 0, 'no event missed');
  assert.equal(seen.mismatches, 0, 'every later snapshot agreed with the page');
  for (const [id, base] of Object.entries(seen.base))
    assert.deepEqual(seen.applied[id], seen.applied[id].map((_, k) => base + k + 1), `match ${id}: contiguous`);
});

describe('cluster settings it cannot use stop it with a message naming them', () => {
  const bin = path.join(root, 'build/examples/live-scores-cluster');
  const www = path.join(root, 'examples/live-scores/www');
  const cases = [
    [{ REDIS: '127.0.0.1:6379' }, /NODE must name this node/],
    [{ REDIS: '127.0.0.1:6379', NODE: 'n1', ROLE: 'boss' }, /ROLE="boss" is not web or publisher/],
    [{ ROLE: 'publisher' }, /ROLE="publisher" needs REDIS/],
  ];
  for (const [env, message] of cases) {
    test(Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' '), () => {
      const r = spawnSync(bin, [www], { env: { ...process.env, PORT: '0', ...env }, encoding: 'utf8', timeout: 5000 });
      assert.equal(r.status, 2, 'exit status');
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '', 'it never started');
    });
  }
});
