import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { client, collect, ferry, inOrder, once, startServer, waitFor, WebSocket } from './helpers.mjs';

describe('against the real server', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(() => srv.stop());

  for (const transport of ['websocket', 'longpoll']) {
    test(`echo and push on ${transport}`, async () => {
      const c = client(srv.url, { transport });
      const opened = await once(c, 'open');
      assert.equal(opened.resumed, false);
      assert.equal(opened.transport, transport);
      assert.equal(c.transport, transport);
      const echoed = new Promise((resolve) => c.on('message', (d) => { if (d.echo) resolve(d); }));
      c.send({ echo: true, n: 42 });
      assert.equal((await echoed).n, 42);
      const got = collect(c);
      await srv.control('publish', 'n=20&from=1');
      await waitFor(() => got.length === 20);
      assert.ok(inOrder(got, 20));
      await waitFor(() => c.stats().outbox === 0, 5000, 'the ack of the echo request');
      c.close();
      assert.equal(c.state, 'closed');
    });
  }

  for (const transport of ['websocket', 'longpoll']) {
    test(`connections dropped mid-stream resume with nothing lost or doubled (${transport})`, async () => {
      const before = (await srv.control('received')).length;
      const c = client(srv.url, { transport, minDelay: 20, maxDelay: 200 });
      await once(c, 'open');
      const got = collect(c);
      let resumes = 0;
      c.on('open', (o) => { if (o.resumed) resumes++; });
      const publishing = srv.control('publish', 'n=300&from=1&ms=3');
      for (let k = 1; k <= 60; k++) {
        c.send({ k });
        if (k % 20 === 0) await srv.control('drop');
        await new Promise((r) => setTimeout(r, 10));
      }
      await publishing;
      await waitFor(() => got.length >= 300, 15000, '300 messages');
      assert.ok(inOrder(got, 300), 'every message once, in order');
      assert.ok(resumes >= 2, `resumed ${resumes} times`);
      await waitFor(() => c.stats().outbox === 0, 10000, 'every send acknowledged');
      const received = (await srv.control('received')).slice(before).filter((d) => d.k);
      assert.deepEqual(received.map((d) => d.k), Array.from({ length: 60 }, (_, i) => i + 1));
      c.close();
    });
  }

  test('falls back to long-polling at once when WebSocket is refused, and goes back up', async () => {
    await srv.control('ws', 'on=0');
    const c = client(srv.url, { probeInterval: 200 });
    const transports = [];
    c.on('transport', (t) => transports.push(t));
    const t0 = Date.now();
    const opened = await once(c, 'open');
    assert.equal(opened.transport, 'longpoll');
    assert.ok(Date.now() - t0 < 2000, 'fell back quickly');
    const got = collect(c);
    await srv.control('publish', 'n=10&from=1');
    await waitFor(() => got.length === 10);
    await srv.control('ws', 'on=1');
    await waitFor(() => c.transport === 'websocket', 5000, 'the move back to WebSocket');
    await srv.control('publish', 'n=10&from=11');
    await waitFor(() => got.length === 20);
    assert.ok(inOrder(got, 20), 'the sequence is unbroken across the move');
    assert.deepEqual(transports, ['longpoll', 'websocket']);
    c.close();
  });

  test('subscriptions the server allows, and the ones it refuses', async () => {
    const c = client(srv.url);
    c.subscribe('public/scores');
    c.subscribe('private/stuff');
    const err = await once(c, 'error');
    assert.equal(err.code, 'forbidden');
    c.close();
  });

  test('a burst of sends on long-polling arrives in order, without a reconnect', async () => {
    const before = (await srv.control('received')).length;
    const c = client(srv.url, { transport: 'longpoll' });
    await once(c, 'open');
    let reopened = 0;
    c.on('open', () => reopened++);
    for (let b = 1; b <= 100; b++) c.send({ b });
    await waitFor(() => c.stats().outbox === 0, 10000, 'acks for the burst');
    const got = (await srv.control('received')).slice(before).filter((d) => d.b);
    assert.deepEqual(got.map((d) => d.b), Array.from({ length: 100 }, (_, i) => i + 1));
    assert.equal(reopened, 0);
    c.close();
  });

  test('the token is asked for on every handshake; a refused one is an error', async () => {
    let calls = 0;
    const c = client(srv.url, { token: () => { calls++; return Promise.resolve('alice'); }, minDelay: 10, maxDelay: 50 });
    await once(c, 'open');
    await srv.control('drop');
    const again = await once(c, 'open');
    assert.equal(again.resumed, true);
    assert.ok(calls >= 2, `token asked ${calls} times`);
    c.close();
    const bad = client(srv.url, { token: 'bad', transport: 'longpoll', minDelay: 1000, maxDelay: 1000 });
    const err = await once(bad, 'error');
    assert.equal(err.code, 'unauthorized');
    assert.equal(err.text, 'bad token');
    bad.close();
  });

  test('send() before the connection opens is delivered once it does', async () => {
    const before = (await srv.control('received')).length;
    const c = client(srv.url, { transport: 'longpoll' });
    c.send({ early: 1 });
    c.send({ early: 2 });
    await once(c, 'open');
    await waitFor(() => c.stats().outbox === 0, 5000, 'acks');
    const got = (await srv.control('received')).slice(before).filter((d) => d.early);
    assert.deepEqual(got.map((d) => d.early), [1, 2]);
    c.close();
  });
});

test('a reset with its reason once the resume window has expired', async (t) => {
  const srv = await startServer({ FERRY_WINDOW_MS: '300' });
  t.after(() => srv.stop());
  let offline = false;
  const net = {
    fetch: (...a) => (offline ? Promise.reject(new Error('offline')) : fetch(...a)),
    WebSocket: class extends WebSocket {
      constructor(url) {
        if (offline) throw new Error('offline');
        super(url);
      }
    },
  };
  const c = ferry.connect(srv.url, { ...net, transport: 'websocket', minDelay: 20, maxDelay: 100 });
  t.after(() => c.close());
  await once(c, 'open');
  c.send({ lost: true }); // may or may not arrive before the outage; either way it is told
  offline = true;
  await srv.control('drop');
  await waitFor(() => c.state === 'reconnecting');
  await new Promise((r) => setTimeout(r, 800)); // past the window and the server's tick
  const reset = once(c, 'reset');
  offline = false;
  const r = await reset;
  assert.equal(r.reason, 'expired');
  assert.equal(typeof r.unsent, 'number');
  await waitFor(() => c.state === 'open');
});

test('pingInterval 0: a silent connection is detected by the welcome\'s heartbeat and resumed', async (t) => {
  const srv = await startServer({ FERRY_HB_MS: '200', FERRY_TIMEOUT_MS: '600' });
  t.after(() => srv.stop());
  const sockets = [];
  // A WebSocket that can go dead like a half-open TCP connection: nothing in, nothing out.
  class Freezable extends WebSocket {
    constructor(url) { super(url); this.frozen = false; sockets.push(this); }
    send(d) { if (!this.frozen) super.send(d); }
    set onmessage(fn) { super.onmessage = fn && ((ev) => { if (!this.frozen) fn(ev); }); }
    get onmessage() { return super.onmessage; }
    // Even the server's close never arrives: only the client's own heartbeat can notice.
    set onclose(fn) { super.onclose = fn && ((ev) => { if (!this.frozen) fn(ev); }); }
    get onclose() { return super.onclose; }
    set onerror(fn) { super.onerror = fn && ((ev) => { if (!this.frozen) fn(ev); }); }
    get onerror() { return super.onerror; }
  }
  const c = ferry.connect(srv.url, { WebSocket: Freezable, fetch, transport: 'websocket', minDelay: 10, maxDelay: 50,
    pingInterval: 0 });
  t.after(() => c.close());
  await once(c, 'open');
  const got = collect(c);
  sockets[0].frozen = true;
  const t0 = Date.now();
  const reopened = await once(c, 'open');
  assert.equal(reopened.resumed, true);
  assert.ok(Date.now() - t0 < 3000, `detected after ${Date.now() - t0} ms`);
  await srv.control('publish', 'n=5&from=1');
  await waitFor(() => got.length === 5);
  assert.ok(inOrder(got, 5));
});

test('backoff is full-jitter exponential within its bounds', () => {
  assert.equal(ferry.backoff(0, 250, 15000, () => 0), 0);
  assert.equal(ferry.backoff(3, 250, 15000, () => 0.999999), 1999);
  assert.equal(ferry.backoff(20, 250, 15000, () => 0.999999), 14999); // capped
  for (let attempt = 0; attempt < 12; attempt++) {
    const cap = Math.min(15000, 250 * 2 ** attempt);
    const seen = new Set();
    for (let i = 0; i < 200; i++) {
      const d = ferry.backoff(attempt, 250, 15000);
      assert.ok(d >= 0 && d < cap, `attempt ${attempt}: ${d} within [0, ${cap})`);
      seen.add(d);
    }
    assert.ok(seen.size > 50, `attempt ${attempt} is jittered`);
  }
});
