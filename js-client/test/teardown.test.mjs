// Tearing connections down never leaves an error unhandled: a node `ws` socket closed while
// still connecting reports an error, fatal without a listener, and a failed close request on
// long-polling must not be an unhandled rejection.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ferry, once, startServer, waitFor, WebSocket } from './helpers.mjs';
import { startProxy } from './tcp-proxy.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Collects what would otherwise crash the process or be reported as unhandled.
function watchProcess(t) {
  const seen = [];
  const onError = (e) => seen.push(e);
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
  t.after(() => {
    process.off('uncaughtException', onError);
    process.off('unhandledRejection', onError);
  });
  return seen;
}

describe('a WebSocket dropped while connecting (plain ws)', () => {
  let srv, proxy, url;
  before(async () => {
    srv = await startServer();
    proxy = await startProxy(srv.port);
    url = `http://127.0.0.1:${proxy.port}/ferry`;
  });
  after(async () => {
    await proxy.close();
    await srv.stop();
  });

  // The proxy holds every new connection: the WebSocket stays CONNECTING.
  const connecting = async (c, sockets) => {
    await waitFor(() => sockets.length > 0 && sockets.at(-1).readyState === WebSocket.CONNECTING, 2000,
      'a connecting socket');
  };
  const tracked = (sockets) => class extends WebSocket {
    constructor(u) { super(u); sockets.push(this); }
  };

  test('by close()', async (t) => {
    const seen = watchProcess(t);
    proxy.blackhole();
    t.after(() => proxy.heal());
    const sockets = [];
    const c = ferry.connect(url, { WebSocket: tracked(sockets), fetch, transport: 'websocket' });
    await connecting(c, sockets);
    c.close();
    await sleep(300);
    assert.deepEqual(seen, []);
    assert.equal(sockets[0].readyState, WebSocket.CLOSED);
  });

  test('by the connect timeout', async (t) => {
    const seen = watchProcess(t);
    proxy.blackhole();
    t.after(() => proxy.heal());
    const sockets = [];
    const c = ferry.connect(url, { WebSocket: tracked(sockets), fetch, connectTimeout: 100, minDelay: 1000,
      maxDelay: 1000 });
    t.after(() => c.close());
    await connecting(c, sockets);
    await waitFor(() => sockets[0].readyState === WebSocket.CLOSED, 2000, 'the timeout');
    await sleep(200);
    assert.deepEqual(seen, []);
  });

  // Node has no 'online' event: the test gives the global object one to dispatch. The first
  // socket times out; the second is still connecting, while reconnecting, when the network
  // comes back.
  test('by a reconnect (online)', async (t) => {
    const seen = watchProcess(t);
    proxy.blackhole();
    t.after(() => proxy.heal());
    const events = new EventTarget();
    globalThis.addEventListener = events.addEventListener.bind(events);
    globalThis.removeEventListener = events.removeEventListener.bind(events);
    t.after(() => { delete globalThis.addEventListener; delete globalThis.removeEventListener; });
    const sockets = [];
    const c = ferry.connect(url, { WebSocket: tracked(sockets), fetch, transport: 'websocket',
      connectTimeout: 1000, minDelay: 1, maxDelay: 1 });
    t.after(() => c.close());
    await waitFor(() => sockets.length === 2, 3000, 'the second attempt');
    await connecting(c, sockets);
    assert.equal(c.state, 'reconnecting');
    events.dispatchEvent(new Event('online'));
    await waitFor(() => sockets[1].readyState === WebSocket.CLOSED, 2000, 'the second socket closed');
    await sleep(200);
    assert.deepEqual(seen, []);
    assert.equal(sockets.length, 3);
  });
});

test('close() on long-polling whose close request fails leaves nothing unhandled', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const seen = watchProcess(t);
  const failing = (u, init) =>
    init.body === '{"t":"close"}' ? Promise.reject(new Error('network down')) : fetch(u, init);
  const c = ferry.connect(srv.url, { WebSocket, fetch: failing, transport: 'longpoll' });
  await once(c, 'open');
  const closed = once(c, 'close');
  c.close();
  assert.deepEqual(await closed, { reason: 'client', unsent: 0, messages: [] });
  await sleep(200);
  assert.deepEqual(seen, []);
});
