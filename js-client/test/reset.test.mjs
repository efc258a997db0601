// What a reset tells the application: which of its messages the old session never
// delivered (the reset's ack), and a server restart (close shutdown) is a reset, not an end.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { client, ferry, once, startServer, waitFor, WebSocket } from './helpers.mjs';
import { connectFake, reconnectFake, tick, welcome } from './fake-ws.mjs';
import { startProxy } from './tcp-proxy.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(cond, what) {
  for (let i = 0; i < 500; i++) {
    if (await cond()) return;
    await sleep(10);
  }
  throw new Error('timed out waiting for ' + what);
}

test('a reset drops the messages the old session delivered, even unacknowledged, and hands over the rest',
  async (t) => {
    const srv = await startServer({ FERRY_WINDOW_MS: '300' });
    t.after(() => srv.stop());
    const net = { offline: false, blockSends: false };
    // The server's acks never arrive, and while blockSends is set messages never leave.
    class Lossy extends WebSocket {
      constructor(url) {
        if (net.offline) throw new Error('offline');
        super(url);
      }
      send(d) { if (!(net.blockSends && d.includes('"msg"'))) super.send(d); }
      set onmessage(fn) {
        super.onmessage = fn && ((ev) => {
          const fs = [].concat(JSON.parse(ev.data)).filter((f) => f.t !== 'ack');
          if (fs.length) fn({ data: JSON.stringify(fs) });
        });
      }
      get onmessage() { return super.onmessage; }
    }
    const c = ferry.connect(srv.url, { WebSocket: Lossy, fetch, transport: 'websocket', minDelay: 20,
      maxDelay: 100 });
    t.after(() => c.close());
    await once(c, 'open');
    const before = (await srv.control('received')).length;
    c.send({ a: 1 });
    c.send({ a: 2 });
    await until(async () => (await srv.control('received')).slice(before).filter((d) => d.a).length === 2,
      'both delivered');
    assert.equal(c.stats().outbox, 2, 'delivered, but their ack was lost');
    net.blockSends = true;
    c.send({ b: 1 });
    net.offline = true;
    await srv.control('drop');
    await waitFor(() => c.state === 'reconnecting');
    await sleep(800); // past the window and the server's tick
    net.blockSends = false;
    const reset = once(c, 'reset');
    const resent = [];
    c.on('reset', (r) => { for (const m of r.messages) resent.push(c.send(m)); });
    net.offline = false;
    const r = await reset;
    assert.deepEqual(r, { reason: 'expired', unsent: 1, messages: [{ b: 1 }] });
    assert.deepEqual(resent, [1], 'sent again as the new session\'s first message');
    await until(async () => (await srv.control('received')).some((d) => d.b), 'the message sent again');
    const got = (await srv.control('received')).slice(before);
    assert.deepEqual(got.filter((d) => d.a || d.b), [{ a: 1 }, { a: 2 }, { b: 1 }], 'each once');
  });

test('without the server\'s ack (reason unknown) every unacknowledged message is handed over', async (t) => {
  const { fake, c } = await connectFake(t);
  fake.last().feed(welcome());
  c.send('x');
  c.send('y');
  fake.last().feed({ t: 'ack', ack: 1 });
  await reconnectFake(fake);
  const reset = once(c, 'reset');
  fake.last().feed([{ t: 'reset', reason: 'unknown' }, welcome({ sid: 'T'.repeat(22) })]);
  assert.deepEqual(await reset, { reason: 'unknown', unsent: 1, messages: ['y'] });
});

for (const transport of ['websocket', 'longpoll']) {
  test(`a server that stops and starts again is a reset with reason shutdown, not the end (${transport})`,
    async (t) => {
      const first = await startServer();
      const proxy = await startProxy(first.port);
      let second = null;
      t.after(async () => { await proxy.close(); if (second) await second.stop(); });
      const c = client(`http://127.0.0.1:${proxy.port}/ferry`, { transport, minDelay: 20, maxDelay: 200 });
      t.after(() => c.close());
      await once(c, 'open');
      c.send({ before: 1 });
      await waitFor(() => c.stats().outbox === 0, 5000, 'the ack');
      const closes = [];
      c.on('close', (e) => closes.push(e));
      await first.stop();
      await waitFor(() => c.state === 'reconnecting', 5000, 'the shutdown noticed');
      c.send({ during: 1 });
      second = await startServer();
      proxy.retarget(second.port);
      const reset = once(c, 'reset');
      const opened = once(c, 'open');
      assert.deepEqual(await reset, { reason: 'shutdown', unsent: 1, messages: [{ during: 1 }] });
      assert.deepEqual(await opened, { resumed: false, transport });
      assert.deepEqual(closes, []);
      const echoed = new Promise((resolve) => c.on('message', (d) => { if (d.echo) resolve(d); }));
      c.send({ echo: true });
      await echoed;
    });
}

test('close with reason server still ends the client', async (t) => {
  const { fake, c } = await connectFake(t);
  fake.last().feed(welcome());
  const closed = once(c, 'close');
  fake.last().feed({ t: 'close', reason: 'server', ack: 0 });
  assert.deepEqual(await closed, { reason: 'server', unsent: 0, messages: [] });
  assert.equal(c.state, 'closed');
});

test('close() from a reset handler ends the client cleanly', async (t) => {
  const { fake, c } = await connectFake(t);
  fake.last().feed(welcome());
  await reconnectFake(fake);
  c.on('reset', () => c.close());
  fake.last().feed([{ t: 'reset', reason: 'expired', ack: 0 }, welcome({ sid: 'T'.repeat(22) })]);
  assert.equal(c.state, 'closed');
});
