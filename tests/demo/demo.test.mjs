// The live-scores demo end to end: the real server, Debian's chromium via playwright-core.
// It checks what the page rendered against the server's log of every event, through dropped
// connections and through a network that goes silent, and saves a screenshot of the page:
// to $DEMO_SCREENSHOT if set (make readme-picture sets docs/live-scores.png), otherwise to
// build/demo/live-scores.png.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import { startProxy } from '../../js-client/test/tcp-proxy.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { chromium } = createRequire(path.join(root, 'js-client/package.json'))('playwright-core');
const bin = path.join(root, 'build/examples/live-scores');
const www = path.join(root, 'examples/live-scores/www');
const screenshot = path.resolve(process.env.DEMO_SCREENSHOT || path.join(root, 'build/demo/live-scores.png'));

async function startDemo(env = {}) {
  const child = spawn(bin, [www], {
    env: { ...process.env, PORT: '0', SPEED: '10', DEMO_CONTROLS: '1', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error('demo exited with ' + code)));
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    base,
    post: (what) => fetch(`${base}/control/${what}`, { method: 'POST' }).then((r) => r.json()),
    log: () => fetch(`${base}/control/log`).then((r) => r.json()),
    // A server that does not stop on SIGTERM within 10 s is killed, and that is a failure.
    stop: () => new Promise((resolve, reject) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const kill = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error('the demo did not stop within 10 s of SIGTERM'));
      }, 10000);
      child.on('exit', () => { clearTimeout(kill); resolve(); });
      child.kill('SIGTERM');
    }),
  };
}

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});
after(() => browser && browser.close());

const applied = (page) => page.evaluate(() => Object.values(window.demo.applied).reduce((n, a) => n + a.length, 0));

// Every match's rendered events: contiguous after its snapshot, and exactly the server's.
async function checkAgainstLog(page, demo) {
  const seen = await page.evaluate(() => window.demo);
  const log = await demo.log();
  assert.equal(seen.duplicates, 0, 'no event counted twice');
  assert.equal(seen.gaps, 0, 'no event missing');
  for (const [id, base] of Object.entries(seen.base)) {
    const got = seen.applied[id];
    const want = log.filter((e) => e.match === Number(id) && e.n > base && e.n <= base + got.length)
      .map((e) => e.n);
    assert.deepEqual(got, want, `match ${id}: rendered events equal the server's`);
    assert.deepEqual(got, got.map((_, k) => base + k + 1), `match ${id}: contiguous after the snapshot`);
  }
}

describe('live scores', () => {
  let demo;
  before(async () => { demo = await startDemo(); });
  after(() => demo.stop());

  test('the page shows every match, updates over WebSocket, and survives dropped connections', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 660 } });
    await page.goto(demo.base + '/');
    await page.waitForFunction(() => document.querySelectorAll('.match').length === 6);
    await page.waitForFunction(() => window.demo.transport === 'websocket');
    assert.equal(await page.textContent('#badge'), 'WebSocket');
    const teams = await page.$$eval('.match .home', (els) => els.map((e) => e.textContent));
    assert.equal(teams.filter(Boolean).length, 6);
    await page.waitForFunction(() => Object.values(window.demo.applied).reduce((n, a) => n + a.length, 0) >= 30);

    for (let drop = 0; drop < 3; drop++) {
      const before = await applied(page);
      await demo.post('drop');
      await page.waitForFunction((n) => window.demo.resumes >= n, drop + 1);
      await page.waitForFunction((n) => Object.values(window.demo.applied).reduce((s, a) => s + a.length, 0) >= n + 20, before);
    }
    assert.equal(await page.evaluate(() => window.demo.resets), 0);
    await checkAgainstLog(page, demo);
    // Let a few goals land, then take the README's picture.
    await page.waitForTimeout(2500);
    fs.mkdirSync(path.dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot });
    await page.close();
  });

  test('forced long-polling: ?transport=longpoll', async () => {
    const page = await browser.newPage();
    await page.goto(demo.base + '/?transport=longpoll');
    await page.waitForFunction(() => window.demo.transport === 'longpoll');
    assert.equal(await page.textContent('#badge'), 'Long-polling');
    await page.waitForFunction(() => Object.values(window.demo.applied).reduce((n, a) => n + a.length, 0) >= 30);
    await demo.post('drop');
    await page.waitForFunction(() => window.demo.resumes >= 1);
    const n = await applied(page);
    await page.waitForFunction((k) => Object.values(window.demo.applied).reduce((s, a) => s + a.length, 0) >= k + 20, n);
    await checkAgainstLog(page, demo);
    await page.close();
  });
});

test('with WebSocket off the badge says long-polling and the scores still update', async () => {
  const demo = await startDemo({ NO_WEBSOCKET: '1' });
  try {
    const page = await browser.newPage();
    await page.goto(demo.base + '/');
    await page.waitForFunction(() => window.demo.transport === 'longpoll');
    assert.equal(await page.textContent('#badge'), 'Long-polling');
    await page.waitForFunction(() => Object.values(window.demo.applied).reduce((n, a) => n + a.length, 0) >= 30);
    await checkAgainstLog(page, demo);
    await page.close();
  } finally {
    await demo.stop();
  }
});

test('a network gone silent: the page notices within 15 s, shows stale scores, then resumes with nothing lost', { timeout: 120000 }, async (t) => {
  const demo = await startDemo();
  const proxy = await startProxy(Number(new URL(demo.base).port));
  const page = await browser.newPage();
  t.after(async () => {
    await page.close();
    await proxy.close();
    await demo.stop();
  });
  await page.goto(`http://127.0.0.1:${proxy.port}/`);
  await page.waitForFunction(() => window.demo.transport === 'websocket');
  await page.waitForFunction(() => document.querySelectorAll('.match').length === 6);
  assert.equal(await page.$$eval('#board.stale', (b) => b.length), 0, 'fresh cards are not stale');
  await page.waitForFunction(() => Object.values(window.demo.applied).reduce((n, a) => n + a.length, 0) >= 20);

  proxy.blackhole();
  const t0 = Date.now();
  await page.waitForFunction(() => window.demo.transport === null, null, { timeout: 15000 });
  const took = Date.now() - t0;
  t.diagnostic(`the badge left its live state ${took} ms after the network went silent`);
  assert.ok(took <= 15000, `the badge left its live state ${took} ms after the network went silent`);
  assert.equal(await page.textContent('#badge'), 'Reconnecting…');
  await page.waitForFunction(() => [...document.querySelectorAll('.match .teams')]
    .every((e) => Number(getComputedStyle(e).opacity) < 1), null, { timeout: 2000 });
  const looks = await page.$$eval('.match', (cards) => cards.map((c) => ({
    opacity: Number(getComputedStyle(c.querySelector('.teams')).opacity),
    marker: getComputedStyle(c, '::after').content,
  })));
  assert.equal(looks.length, 6);
  for (const l of looks) {
    assert.ok(l.opacity < 1, `a stale card is dimmed (opacity ${l.opacity})`);
    assert.equal(l.marker, '"stale"');
  }
  assert.match(await page.textContent('#stale'), /out of date/);
  const frozen = await applied(page);

  proxy.heal();
  await page.waitForFunction(() => window.demo.resumes >= 1, null, { timeout: 30000 });
  assert.equal(await page.$$eval('#board.stale', (b) => b.length), 0, 'the cards are live again');
  assert.equal(await page.textContent('#stale'), '');
  await page.waitForFunction((n) => Object.values(window.demo.applied).reduce((s, a) => s + a.length, 0) >= n + 20, frozen);
  assert.equal(await page.evaluate(() => window.demo.resets), 0, 'resumed, not reset');
  await checkAgainstLog(page, demo);
});

test('the demo serves /metrics in the Prometheus text format', async (t) => {
  const demo = await startDemo();
  t.after(() => demo.stop());
  const r = await fetch(demo.base + '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain/);
  const text = await r.text();
  assert.match(text, /^# TYPE ferry_\w+ (gauge|counter)$/m);
  assert.match(text, /^ferry_sessions\{state="attached"\} \d+$/m);
});

test('a page load asks for nothing the server does not have (the favicon included)', async (t) => {
  const demo = await startDemo();
  const page = await browser.newPage();
  t.after(async () => {
    await page.close();
    await demo.stop();
  });
  const failed = [];
  const requested = [];
  page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
  page.on('request', (r) => requested.push(r.url()));
  await page.goto(demo.base + '/');
  await page.waitForFunction(() => window.demo.transport === 'websocket');
  await page.waitForFunction(() => document.querySelectorAll('.match').length === 6);
  await page.waitForLoadState('networkidle').catch(() => {}); // a WebSocket page never idles
  assert.deepEqual(failed, []);
  assert.ok(!requested.some((u) => u.endsWith('/favicon.ico')), 'no request for /favicon.ico');
  // Headless chromium fetches no favicon at all, so check what a browser with tabs would do:
  // with a <link rel=icon> it never asks for /favicon.ico, and the icon named must load.
  const icon = await page.evaluate(async () => {
    const links = document.querySelectorAll('link[rel~=icon]');
    if (links.length !== 1) return { links: links.length };
    const img = new Image();
    img.src = links[0].href;
    try { await img.decode(); } catch (e) { return { links: 1, error: String(e) }; }
    return { links: 1, width: img.naturalWidth };
  });
  assert.equal(icon.links, 1, 'the page names its icon');
  assert.ok(icon.width > 0, `the icon loads: ${JSON.stringify(icon)}`);
});

describe('settings it cannot use stop it with a message naming them', () => {
  const cases = [
    [{ PORT: 'abc' }, [www], /PORT="abc"/],
    [{ PORT: '70000' }, [www], /PORT="70000"/],
    [{ SPEED: 'abc' }, [www], /SPEED="abc"/],
    [{ SPEED: '0' }, [www], /SPEED="0"/],
    [{ SPEED: '1e9' }, [www], /SPEED="1e9"/],
    [{}, ['/nonexistent/www'], /web root "\/nonexistent\/www": No such file or directory/],
    [{}, [path.join(www, 'index.html')], /web root ".*index\.html" is not a directory/],
    [{ ROLE: 'publisher' }, [www], /ROLE="publisher" needs REDIS/],
    [{ REDIS: '127.0.0.1:6379', NODE: 'n1' }, [www], /this build has no cluster/],
  ];
  for (const [env, args, message] of cases) {
    test(`${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ') || args[0]}`, () => {
      const r = spawnSync(bin, args, {
        env: { ...process.env, PORT: '0', SPEED: '10', ...env }, encoding: 'utf8', timeout: 5000,
      });
      assert.notEqual(r.status, 0, 'exit status');
      assert.equal(r.signal, null, 'it exited by itself');
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '', 'it never started');
    });
  }
});
