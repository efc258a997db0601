// The live-scores demo end to end: the real server, Debian's chromium via playwright-core.
// It checks what the page rendered against the server's log of every event, and saves a
// screenshot of the page: to $DEMO_SCREENSHOT if set (make readme-picture sets
// docs/live-scores.png), otherwise to build/demo/live-scores.png.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { chromium } = createRequire(path.join(root, 'js-client/package.json'))('playwright-core');
const screenshot = path.resolve(process.env.DEMO_SCREENSHOT || path.join(root, 'build/demo/live-scores.png'));

async function startDemo(env = {}) {
  const child = spawn(path.join(root, 'build/examples/live-scores'),
    [path.join(root, 'examples/live-scores/www')], {
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
    stop: () => new Promise((resolve) => { child.on('exit', resolve); child.kill('SIGTERM'); }),
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
