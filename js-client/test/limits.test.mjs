// The server's limits (max_frame, max_batch, what it refuses in a message): the client never
// queues what the server would refuse on every resend, and never resends it forever.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { client, ferry, once, startServer, waitFor, WebSocket } from './helpers.mjs';
import { connectFake, tick, welcome } from './fake-ws.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const BIG = 'x'.repeat(70000); // over the default max_frame, 65536

async function received(srv, before, key) {
  return (await srv.control('received')).slice(before).filter((d) => d && d[key] !== undefined).map((d) => d[key]);
}

describe('limits', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(() => srv.stop());

  for (const transport of ['websocket', 'longpoll']) {
    test(`send() throws for a message over max_frame once it is known (${transport})`, async (t) => {
      const c = client(srv.url, { transport });
      t.after(() => c.close());
      await once(c, 'open');
      const n = Buffer.byteLength(JSON.stringify({ t: 'msg', seq: 1, data: { s: BIG + 'é' } }));
      assert.throws(() => c.send({ s: BIG + 'é' }),
        { message: `ferry: message too big: ${n} bytes, the server accepts 65536` });
      assert.equal(c.stats().outbox, 0);
      const before = (await srv.control('received')).length;
      assert.equal(c.send({ t1: 1 }), 1, 'the next message takes seq 1');
      await waitFor(() => c.stats().outbox === 0, 5000, 'the ack');
      assert.deepEqual(await received(srv, before, 't1'), [1]);
    });

    test(`a message over max_frame queued before the first welcome is dropped with an error (${transport})`,
      async (t) => {
        const before = (await srv.control('received')).length;
        const c = client(srv.url, { transport });
        t.after(() => c.close());
        const errors = [];
        c.on('error', (e) => errors.push(e));
        c.send({ q: 1 });
        c.send({ q: 2, s: BIG });
        c.send({ q: 3 });
        await once(c, 'open');
        assert.equal(errors.length, 1);
        assert.equal(errors[0].code, 'too_big');
        assert.match(errors[0].text, /^ferry: message too big: \d+ bytes, the server accepts 65536$/);
        assert.deepEqual(errors[0].data, { q: 2, s: BIG });
        await waitFor(() => c.stats().outbox === 0, 5000, 'the acks');
        assert.deepEqual(await received(srv, before, 'q'), [1, 3]);
      });

    test(`300 messages queued before the first welcome go out in batches the server takes (${transport})`,
      async (t) => {
        const before = (await srv.control('received')).length;
        const c = client(srv.url, { transport });
        t.after(() => c.close());
        const errors = [];
        c.on('error', (e) => errors.push(e));
        for (let i = 1; i <= 300; i++) c.send({ n: i });
        await once(c, 'open');
        await waitFor(() => c.stats().outbox === 0, 10000, 'every message acknowledged');
        assert.deepEqual(await received(srv, before, 'n'), Array.from({ length: 300 }, (_, i) => i + 1));
        assert.deepEqual(errors, []);
      });
  }

  // 128 messages of 40 array items are within max_frame and max_batch, but one batch of them
  // is over the server's 4096 keys plus array items: the client splits by that count too.
  for (const transport of ['websocket', 'longpoll']) {
    test(`a backlog within max_frame but of many array items is resent whole, once, in order (${transport})`,
      async (t) => {
        const net = { offline: false, refused: [] };
        class Offline extends WebSocket {
          constructor(url) {
            if (net.offline) throw new Error('offline');
            super(url);
          }
          set onmessage(fn) {
            super.onmessage = fn && ((ev) => {
              for (const f of [].concat(JSON.parse(ev.data))) if (f.t === 'error') net.refused.push(f.code);
              fn(ev);
            });
          }
          get onmessage() { return super.onmessage; }
        }
        const watched = (u, init) => {
          if (net.offline) return Promise.reject(new Error('offline'));
          return fetch(u, init).then((r) => { if (r.status === 400 || r.status === 413) net.refused.push(r.status); return r; });
        };
        const c = ferry.connect(srv.url, { WebSocket: Offline, fetch: watched, transport, minDelay: 10, maxDelay: 50 });
        t.after(() => c.close());
        await once(c, 'open');
        let opens = 0;
        c.on('open', () => opens++);
        net.offline = true;
        await srv.control('drop');
        await waitFor(() => c.state === 'reconnecting', 5000, 'the drop noticed');
        const before = (await srv.control('received')).length;
        const items = new Array(40).fill(7);
        for (let i = 1; i <= 128; i++) c.send({ many: i, items });
        net.offline = false;
        await waitFor(() => c.stats().outbox === 0, 10000, 'every message acknowledged');
        assert.deepEqual(await received(srv, before, 'many'), Array.from({ length: 128 }, (_, i) => i + 1));
        assert.deepEqual(net.refused, []);
        assert.equal(opens, 1, 'one resume');
      });
  }

  for (const transport of ['websocket', 'longpoll']) {
    test(`a message the server refuses is dropped, not resent forever (${transport})`, async (t) => {
      const c = client(srv.url, { transport, minDelay: 10, maxDelay: 50 });
      t.after(() => c.close());
      await once(c, 'open');
      let reopened = 0;
      c.on('open', () => reopened++);
      const errors = [];
      c.on('error', (e) => errors.push(e));
      let deep = 0;
      for (let i = 0; i < 20; i++) deep = [deep]; // deeper than the server's 16
      const before = (await srv.control('received')).length;
      c.send({ r: 1 });
      c.send({ r: 2, deep }); // goes out with the next one, in one batch, while the first is in flight
      c.send({ r: 3 });
      c.send({ r: 4, many: new Array(5000).fill(0) }); // more items than the server's 4096
      c.send({ r: 5 });
      await waitFor(() => c.stats().outbox === 0, 10000, 'every message acknowledged or dropped');
      await sleep(200);
      assert.deepEqual(await received(srv, before, 'r'), [1, 3, 5]);
      // (The server may hand a send's error frame to the held poll too: an event without data.)
      const refusals = errors.filter((e) => e.data);
      assert.deepEqual(refusals.map((e) => [e.code, e.data.r]), [['too_deep', 2], ['too_big', 4]]);
      // WebSocket resumes once to find the refused message. Long-polling knows which send
      // was refused, but the server may hand the error frame to the held poll and answer the
      // send 400 []: when that 400 comes first it looks like a body cut short, and resumes.
      assert.ok(reopened <= (transport === 'websocket' ? 1 : 2), `${reopened} reconnects`);
      assert.equal(c.send({ r: 6 }), 4, 'the seqs moved down over the dropped ones');
      await waitFor(() => c.stats().outbox === 0, 5000, 'the next message acknowledged');
      assert.deepEqual(await received(srv, before, 'r'), [1, 3, 5, 6]);
    });
  }

  test('a malformed topic name is refused by subscribe() itself', (t) => {
    const c = client(srv.url);
    t.after(() => c.close());
    assert.throws(() => c.subscribe('no spaces'), { message: 'ferry: bad topic name: no spaces' });
    assert.throws(() => c.subscribe('x'.repeat(129)), /bad topic name/);
    assert.throws(() => c.unsubscribe(''), /bad topic name/);
    c.subscribe('public/a.b:c-d_e');
  });
});

test('an internal error on WebSocket drops nothing: the client resumes and sends it all again', async (t) => {
  const { fake, c } = await connectFake(t);
  const errors = [];
  c.on('error', (e) => errors.push(e));
  fake.last().feed(welcome());
  c.send('a');
  c.send('b');
  fake.last().feed({ t: 'error', code: 'internal', text: 'out of memory' });
  await waitFor(() => fake.sockets.length === 2, 1000, 'the reconnect');
  fake.last().open();
  await tick();
  assert.equal(fake.last().sent[0].t, 'resume');
  fake.last().feed(welcome({ resumed: true, secret: 'm'.repeat(43) }));
  assert.deepEqual(fake.last().sent[1].map((f) => [f.t, f.seq, f.data]), [['msg', 1, 'a'], ['msg', 2, 'b']]);
  assert.deepEqual(errors, []);
});
