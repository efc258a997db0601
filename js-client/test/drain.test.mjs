// A server alone that drains before it stops (ferry_mount_drain), then starts again: every
// client, on both transports, is let go with `close` `shutdown` (the session goes with the
// process), at a moment spread over the drain, comes back with a new session and a `reset`
// whose reason is `shutdown`, and no message it sent is lost: what the server acknowledged
// reached its application, and the rest is handed back with the reset.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ferry, startServer, waitFor, WebSocket } from './helpers.mjs';

const SPREAD_MS = 1000;
let srv;
before(async () => { srv = await startServer(); });
after(() => srv.stop());

test('a drain lets every client go with shutdown, spread, and loses no message', async (t) => {
  const clients = [];
  for (let k = 0; k < 12; k++) {
    const id = `d${k}`;
    const transport = k % 2 ? 'longpoll' : 'websocket';
    const rec = { id, transport, attempts: [], letGo: 0, resets: [], sent: 0, acked: 0 };
    // Every connection attempt, stamped: a WebSocket made, or a long-poll handshake.
    class Stamped extends WebSocket {
      constructor(u, p) { rec.attempts.push(Date.now()); super(u, p); }
    }
    const stamped = (u, init = {}) => {
      if (init.method === 'POST' && !(init.headers && init.headers.Authorization)) rec.attempts.push(Date.now());
      return fetch(u, init);
    };
    const c = ferry.connect(srv.url, { transport, token: id, WebSocket: Stamped, fetch: stamped });
    t.after(() => c.close());
    c.on('state', (s) => { if (s === 'reconnecting' && !rec.letGo) rec.letGo = Date.now(); });
    c.on('reset', (e) => rec.resets.push(e));
    rec.c = c;
    clients.push(rec);
  }
  await waitFor(() => clients.every((r) => r.c.state === 'open'), 10000, 'every client open');
  // Each sends {c, n} every 20 ms or so until it is let go.
  const timer = setInterval(() => {
    for (const r of clients) if (r.c.state === 'open' && !r.letGo) r.c.send({ c: r.id, n: ++r.sent });
  }, 20);
  await new Promise((res) => setTimeout(res, 500));
  const began = Date.now();
  await srv.control('drain', `spread=${SPREAD_MS}`);
  await waitFor(() => clients.every((r) => r.letGo), 10000, 'every client let go');
  clearInterval(timer);
  let drained = null;
  for (let i = 0; i < 300 && drained === null; i++) {
    drained = (await srv.control('drained')).rc;
    if (drained === null) await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal(drained, 0, 'every client left before the deadline (FERRY_OK)');
  // The server is back (mounted anew): every client starts a new session.
  await waitFor(() => clients.every((r) => r.resets.length === 1 && r.c.state === 'open'), 20000, 'every client back');

  const letGo = clients.map((r) => r.letGo - began);
  const firstTry = clients.map((r) => r.attempts.find((a) => a >= r.letGo) - began);
  const span = (xs) => Math.max(...xs) - Math.min(...xs);
  console.log(`drain: 12 clients let go over ${span(letGo)} ms, first retries over ${span(firstTry)} ms`);
  // Client k of n goes in the k-th n-th of the spread: the first and the last are at least
  // (n - 2) / n of it apart; half of that for a slow machine. Their first retries follow each
  // one's own jittered delay, so they are at least as spread, almost surely.
  assert.ok(span(letGo) >= (SPREAD_MS * 10) / 12 / 2, `let go within ${span(letGo)} ms`);
  assert.ok(span(firstTry) >= (SPREAD_MS * 10) / 12 / 2, `first retries within ${span(firstTry)} ms`);

  const received = await srv.control('received');
  for (const r of clients) {
    const reset = r.resets[0];
    assert.equal(reset.reason, 'shutdown', `${r.id} (${r.transport}): the reason it was told`);
    // What the old session delivered, and what the reset hands back: every message once.
    const delivered = received.filter((m) => m.c === r.id).map((m) => m.n);
    const back = reset.messages.map((m) => m.n);
    assert.deepEqual(delivered, Array.from({ length: delivered.length }, (_, k) => k + 1),
      `${r.id}: delivered in order, once each`);
    assert.deepEqual([...delivered, ...back], Array.from({ length: r.sent }, (_, k) => k + 1),
      `${r.id}: every message sent was delivered or handed back, never both`);
    assert.ok(delivered.length > 0, `${r.id}: messages reached the application before the drain`);
  }
});
