// The WebSocket probe of a long-polling client in 'auto', and resets that arrive in a
// handshake's answer or on a live connection.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { collect, ferry, inOrder, once, startServer, waitFor, WebSocket } from './helpers.mjs';
import { connectFake, reconnectFake, tick, welcome } from './fake-ws.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A WebSocket whose resumes `change` rewrites while it is set; counts the ones it rewrote.
function tampering() {
  const t = { change: null, count: 0 };
  t.WebSocket = class extends WebSocket {
    send(d) {
      const f = JSON.parse(d);
      if (f.t === 'resume' && t.change) {
        t.count++;
        return super.send(JSON.stringify(t.change(f)));
      }
      super.send(d);
    }
  };
  return t;
}

describe('a probe while long-polling', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(() => srv.stop());

  test('a refused probe leaves long-polling be, quietly, and a later one moves up', async (t) => {
    await srv.control('ws', 'on=0');
    const tw = tampering();
    const c = ferry.connect(srv.url, { WebSocket: tw.WebSocket, fetch, probeInterval: 100 });
    t.after(() => c.close());
    assert.equal((await once(c, 'open')).transport, 'longpoll');
    const errors = [];
    c.on('error', (e) => errors.push(e));
    const got = collect(c);
    tw.change = (f) => ({ ...f, ack: 2 ** 40 }); // bad_ack: the probe is refused
    await srv.control('ws', 'on=1');
    await waitFor(() => tw.count >= 2, 10000, 'two refused probes');
    await srv.control('publish', 'n=5&from=1');
    await waitFor(() => got.length === 5, 5000, 'messages on long-polling');
    assert.deepEqual(errors, [], 'a probe\'s refusal is no error event');
    assert.deepEqual([c.state, c.transport], ['open', 'longpoll']);
    tw.change = null;
    await waitFor(() => c.transport === 'websocket', 5000, 'the move up');
    await srv.control('publish', 'n=5&from=6');
    await waitFor(() => got.length === 10, 5000, 'messages on WebSocket');
    assert.ok(inOrder(got, 10));
  });

  test('a probe answered with a reset leaves the long-polling session alone and ends the new one', async (t) => {
    await srv.control('ws', 'on=0');
    const tw = tampering();
    const c = ferry.connect(srv.url, { WebSocket: tw.WebSocket, fetch, probeInterval: 100 });
    t.after(() => c.close());
    assert.equal((await once(c, 'open')).transport, 'longpoll');
    const resets = [];
    c.on('reset', (r) => resets.push(r.reason));
    const got = collect(c);
    // A wrong secret: the server answers reset unknown and a new session, as it answers the
    // late copy of a resume the client has since repeated.
    tw.change = (f) => ({ ...f, secret: 'A'.repeat(43) });
    await srv.control('ws', 'on=1');
    await waitFor(() => tw.count >= 2, 10000, 'two probes answered with a reset');
    assert.deepEqual(resets, [], 'the session long-polling holds goes on');
    assert.deepEqual([c.state, c.transport], ['open', 'longpoll']);
    await srv.control('publish', 'n=5&from=1');
    await waitFor(() => got.length === 5, 5000, 'messages on long-polling');
    // Each probe's new session was closed at once: only the client's own is attached.
    await waitFor(async () => (await srv.control('sessions')).attached === 1, 5000, 'the probes\' sessions ended');
    tw.change = null;
    await waitFor(() => c.transport === 'websocket', 5000, 'the move up, resumed');
    await srv.control('publish', 'n=5&from=6');
    await waitFor(() => got.length === 10, 5000, 'messages on WebSocket');
    assert.ok(inOrder(got, 10));
    assert.deepEqual(resets, []);
  });
});

describe('a reset', () => {
  test('on a live connection ends the session; the frames after it are not processed', async (t) => {
    const { fake, c } = await connectFake(t);
    const got = [];
    c.on('message', (d) => got.push(d));
    fake.last().feed([welcome(), { t: 'msg', seq: 1, data: 'a' }]);
    fake.last().feed([{ t: 'reset', reason: 'forked', ack: 0 }, { t: 'msg', seq: 2, data: 'b' }]);
    assert.deepEqual(got, ['a']);
    assert.equal(c.state, 'reconnecting');
    await waitFor(() => fake.sockets.length === 2, 1000, 'the reconnect');
    const resets = [];
    c.on('reset', (r) => resets.push(r.reason));
    fake.last().open();
    await tick();
    assert.equal(fake.last().sent[0].t, 'hello');
    fake.last().feed([welcome({ sid: 'T'.repeat(22) })]);
    assert.deepEqual(resets, ['forked']);
    assert.equal(c.state, 'open');
  });

  test('in a handshake\'s answer is followed by the welcome of a new session', async (t) => {
    const { fake, c } = await connectFake(t);
    fake.last().feed(welcome());
    await reconnectFake(fake);
    assert.equal(fake.last().sent[0].t, 'resume');
    const resets = [];
    c.on('reset', (r) => resets.push(r.reason));
    fake.last().feed([{ t: 'reset', reason: 'expired', ack: 0 }, welcome({ sid: 'T'.repeat(22) })]);
    assert.deepEqual(resets, ['expired']);
    assert.deepEqual([c.state, c.sessionId, fake.sockets.length], ['open', 'T'.repeat(22), 2]);
  });
});
