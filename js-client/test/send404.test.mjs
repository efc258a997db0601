// Long-polling behind a balancer without stickiness: a send that reaches a node without the
// session (404) while the session's poll is held on another. The client waits a moment for
// a last frame the poll may carry, then resumes; it must not wait out the held poll.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRequire } from 'node:module';

const ferry = createRequire(import.meta.url)('../ferry.js');

test('a send answered 404 while a poll is held resumes within a second or so', async () => {
  const calls = [];
  const res = (status, text) => ({ status, text: () => Promise.resolve(text) });
  const fetch = (u, init) => {
    calls.push({ at: Date.now(), method: init.method, body: init.body || '' });
    if (init.method === 'POST' && !init.headers.Authorization)
      return Promise.resolve(res(200, JSON.stringify([{ t: 'welcome', sid: 'AAAAAAAAAAAAAAAAAAAAAA',
        secret: 'B'.repeat(43), resumed: false, ack: 0, hb: 25000, timeout: 60000 }])));
    if (init.method === 'GET') return new Promise(() => {}); // held on one node
    return Promise.resolve(res(404, '[{"t":"error","code":"unknown_session","message":"x"}]'));
  };
  const c = ferry.connect('http://127.0.0.1:9/ferry', { transport: 'longpoll', fetch, minDelay: 10, maxDelay: 20 });
  await new Promise((r) => setTimeout(r, 100));
  const sent = Date.now();
  c.send('hello');
  await new Promise((r) => setTimeout(r, 2500));
  c.close();
  const resume = calls.find((x) => x.method === 'POST' && x.body.includes('"resume"'));
  assert.ok(resume, 'no resume within 2.5 s of the send\'s 404');
  assert.ok(resume.at - sent >= 900, `resumed ${resume.at - sent} ms after the 404: it should wait for the poll a moment`);
});
