// Refusals that retrying soon cannot fix: an Origin the server does not allow, a refused
// token. The client says so with an `error` event and keeps retrying, slowly.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ferry, once, startServer, waitFor, WebSocket } from './helpers.mjs';

// Requests carrying the Origin of a page on another site, as a browser's would.
function fromOrigin(origin) {
  return {
    fetch: (url, init) => fetch(url, { ...init, headers: { ...init.headers, Origin: origin } }),
    WebSocket: class extends WebSocket {
      constructor(url) { super(url, { origin }); }
    },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const WINDOW = 2400;
const MAX_DELAY = 1000;
// After a refusal the client waits between MAX_DELAY / 2 and MAX_DELAY, so a window sees at
// most this many attempts and at least this few.
const MOST = Math.floor(WINDOW / (MAX_DELAY / 2)) + 1;
const LEAST = Math.floor(WINDOW / MAX_DELAY) - 1;

// Counts the attempts the server refused over WINDOW ms (`kind`: origin or auth).
async function refusedOver(srv, kind) {
  const from = (await srv.control('refused'))[kind];
  await sleep(WINDOW);
  return (await srv.control('refused'))[kind] - from;
}

describe('an Origin the server does not allow', () => {
  let srv;
  before(async () => { srv = await startServer({ FERRY_ORIGINS: 'http://allowed.example' }); });
  after(() => srv.stop());

  // 'auto' tries a WebSocket and long-polling on every attempt: two refusals each.
  for (const [transport, perAttempt] of [['auto', 2], ['longpoll', 1]]) {
    test(`is an error event with code origin, retried slowly (${transport})`, async (t) => {
      const c = ferry.connect(srv.url, { ...fromOrigin('http://elsewhere.example'), transport,
        minDelay: 10, maxDelay: MAX_DELAY });
      t.after(() => c.close());
      const errors = [];
      c.on('error', (e) => errors.push(e));
      await waitFor(() => errors.length >= 1, 5000, 'the error event');
      assert.equal(errors[0].code, 'origin');
      assert.equal(errors[0].text, 'origin not allowed');
      assert.equal(c.state, 'reconnecting');
      const n = await refusedOver(srv, 'origin');
      assert.ok(n <= MOST * perAttempt, `${n} refused requests in ${WINDOW} ms: at most ${MOST * perAttempt}`);
      assert.ok(n >= LEAST * perAttempt, `${n} refused requests in ${WINDOW} ms: it keeps trying`);
      assert.ok(errors.every((e) => e.code === 'origin'));
      assert.equal(c.state, 'reconnecting');
    });
  }

  test('an allowed Origin connects', async (t) => {
    const c = ferry.connect(srv.url, { ...fromOrigin('http://allowed.example') });
    t.after(() => c.close());
    assert.equal((await once(c, 'open')).transport, 'websocket');
  });
});

describe('a refused token', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(() => srv.stop());

  for (const transport of ['websocket', 'longpoll']) {
    test(`is an error event with code unauthorized, retried slowly (${transport})`, async (t) => {
      const c = ferry.connect(srv.url, { WebSocket, fetch, transport, token: 'bad', minDelay: 10,
        maxDelay: MAX_DELAY });
      t.after(() => c.close());
      const errors = [];
      c.on('error', (e) => errors.push(e));
      await waitFor(() => errors.length >= 1, 5000, 'the error event');
      assert.deepEqual([errors[0].code, errors[0].text], ['unauthorized', 'bad token']);
      const n = await refusedOver(srv, 'auth');
      assert.ok(n <= MOST, `${n} handshakes refused in ${WINDOW} ms: at most ${MOST}`);
      assert.ok(n >= LEAST, `${n} handshakes refused in ${WINDOW} ms: it keeps trying`);
    });
  }

  test('on auto, a token refused over WebSocket is not retried over long-polling at once', async (t) => {
    const seen = [];
    const recording = (url, init) => { seen.push(init.method); return fetch(url, init); };
    const c = ferry.connect(srv.url, { WebSocket, fetch: recording, token: 'bad', minDelay: 10,
      maxDelay: MAX_DELAY });
    t.after(() => c.close());
    const err = await once(c, 'error');
    assert.equal(err.code, 'unauthorized');
    const n = await refusedOver(srv, 'auth');
    assert.ok(n <= MOST, `${n} handshakes refused in ${WINDOW} ms: at most ${MOST}`);
    assert.deepEqual(seen, [], 'no long-poll handshake: WebSocket answered');
  });

  test('a token function that finds a good token again connects on the next attempt', async (t) => {
    let calls = 0;
    const c = ferry.connect(srv.url, { WebSocket, fetch, minDelay: 10, maxDelay: 600,
      token: () => (++calls <= 2 ? 'bad' : 'carol') });
    t.after(() => c.close());
    const errors = [];
    c.on('error', (e) => errors.push(e.code));
    const opened = await once(c, 'open');
    assert.equal(opened.resumed, false);
    assert.deepEqual(errors, ['unauthorized', 'unauthorized']);
    assert.equal(calls, 3);
  });

  for (const how of ['throws', 'rejects']) {
    test(`a token function that ${how} is a failed attempt, retried`, async (t) => {
      let calls = 0;
      const token = () => {
        if (++calls <= 2) {
          if (how === 'throws') throw new Error('no token yet');
          return Promise.reject(new Error('no token yet'));
        }
        return 'carol';
      };
      for (const transport of ['websocket', 'longpoll']) {
        calls = 0;
        const c = ferry.connect(srv.url, { WebSocket, fetch, transport, minDelay: 10, maxDelay: 100, token });
        t.after(() => c.close());
        const opened = await once(c, 'open');
        assert.equal(opened.resumed, false);
        assert.equal(calls, 3, transport);
        c.close();
      }
    });
  }
});
