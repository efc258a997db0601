// In a real browser: Debian's chromium driven by playwright-core, on a page served by the
// real server.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';

import { startServer } from './helpers.mjs';

const { chromium } = createRequire(import.meta.url)('playwright-core');

let srv, browser;

before(async () => {
  srv = await startServer();
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (srv) await srv.stop();
});

for (const [query, transport] of [['', 'websocket'], ['?transport=longpoll', 'longpoll']]) {
  test(`messages flow in chromium on ${transport}`, async () => {
    const page = await browser.newPage();
    await page.goto(`${srv.base}/index.html${query}`);
    await page.waitForFunction(() => window.seen.open !== null);
    assert.equal(await page.evaluate(() => window.seen.open.transport), transport);
    await srv.control('publish', 'n=25&from=1');
    await page.waitForFunction(() => window.seen.msgs.filter((m) => m.i).length >= 25);
    const is = await page.evaluate(() => window.seen.msgs.filter((m) => m.i).map((m) => m.i));
    assert.deepEqual(is, Array.from({ length: 25 }, (_, k) => k + 1));
    await page.evaluate(() => window.client.send({ echo: true, from: 'browser' }));
    await page.waitForFunction(() => window.seen.msgs.some((m) => m.from === 'browser'));
    await page.close();
  });
}

test('the client loads as an ES module from <prefix>/ferry.mjs', async () => {
  const page = await browser.newPage();
  await page.goto(`${srv.base}/module.html`);
  await page.waitForFunction(() => window.seen && window.seen.open !== null);
  await srv.control('publish', 'n=3&from=1');
  await page.waitForFunction(() => window.seen.msgs.length >= 3);
  await page.close();
});

test('a page whose Origin the server refuses gets an error event, and retries slowly', async (t) => {
  // The page comes from the server itself, but allowed_origins names another site only.
  const refusing = await startServer({ FERRY_ORIGINS: 'http://elsewhere.example' });
  const page = await browser.newPage();
  t.after(async () => { await page.close(); await refusing.stop(); });
  await page.goto(`${refusing.base}/index.html`);
  await page.waitForFunction(() => window.seen.errors.length >= 1);
  const first = await page.evaluate(() => window.seen.errors[0]);
  assert.deepEqual([first.code, first.text], ['origin', 'origin not allowed']);
  assert.equal(await page.evaluate(() => window.client.state), 'reconnecting');
  // The default maxDelay is 15 s: after a refusal the next attempt waits 7.5 s at least.
  const { origin } = await refusing.control('refused');
  await page.waitForTimeout(3000);
  assert.equal((await refusing.control('refused')).origin, origin, 'no attempt within 3 s of a refusal');
  assert.equal(await page.evaluate(() => window.seen.errors.length), 1);
});
