// close() wherever the application calls it: from a handler in the middle of a welcome, from
// the reset handler; and what the close event hands back.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { client, ferry, here, once, startServer, waitFor, WebSocket } from './helpers.mjs';
import { connectFake, welcome } from './fake-ws.mjs';
import { startProxy } from './tcp-proxy.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A process of its own connects, calls close() from the first `event` handler and prints each
// event that comes after the close. Timers the client left running keep it alive past
// minUptime and probeInterval (60 s here).
const CHILD = `
const ferry = require(${JSON.stringify(path.join(here, '../ferry.js'))});
const WebSocket = require(${JSON.stringify(path.join(here, '../node_modules/ws'))});
const [url, transport, event] = process.argv.slice(1);
// In 'auto' a WebSocket that fails at once: long-polling, which arms the probe timer.
const Ctor = transport === 'auto' ? class { constructor() { throw new Error('no'); } } : WebSocket;
const c = ferry.connect(url, { transport, WebSocket: Ctor, fetch, minUptime: 60000, probeInterval: 60000 });
let closed = false;
for (const e of ['state', 'transport', 'open', 'close', 'error', 'reset'])
  c.on(e, (a) => { if (closed) console.log(e === 'close' ? e : e + ':' + JSON.stringify(a)); });
c.on(event, () => { if (!closed) { closed = true; c.close(); } });
`;

// What the process printed, and whether it ended within 5 s.
function runChild(url, transport, event) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', CHILD, url, transport, event], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '', exited = true;
    child.stdout.on('data', (d) => { out += d; });
    const kill = setTimeout(() => { exited = false; child.kill(); }, 5000);
    child.on('exit', () => { clearTimeout(kill); resolve({ after: out.split('\n').filter(Boolean), exited }); });
  });
}

describe('close() from a handler during a welcome', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(() => srv.stop());

  for (const transport of ['websocket', 'longpoll', 'auto'])
    for (const event of ['state', 'transport', 'open'])
      test(`from ${event} (${transport}): no event after the close, no timer left`, async () => {
        assert.deepEqual(await runChild(srv.url, transport, event), { after: ['state:"closed"', 'close'], exited: true });
      });
});

// The server restarts: the client's session is gone, and the welcome of the new one comes
// with a reset. close() from the reset handler ends that new session on the server too,
// rather than leave it to count against the identity's limit until its window expires.
for (const transport of ['websocket', 'longpoll'])
  test(`close() from the reset handler ends the new session on the server (${transport})`, async (t) => {
    const first = await startServer();
    const proxy = await startProxy(first.port);
    let second = null;
    t.after(async () => { await proxy.close(); if (second) await second.stop(); });
    const c = client(`http://127.0.0.1:${proxy.port}/ferry`, { transport, minDelay: 20, maxDelay: 200 });
    t.after(() => c.close());
    await once(c, 'open');
    await first.stop();
    await waitFor(() => c.state === 'reconnecting', 5000, 'the shutdown noticed');
    second = await startServer();
    proxy.retarget(second.port);
    const closed = once(c, 'close');
    c.on('reset', () => c.close());
    await closed;
    let s;
    for (let i = 0; i < 100; i++) {
      s = await second.control('sessions');
      if (s.ended === 1) break;
      await sleep(20);
    }
    assert.deepEqual(s, { attached: 0, detached: 0, ended: 1 });
  });

// The server's close carries the last of the client's messages it delivered; the ones after
// it never reached the application, and the close event hands them back, as a reset does.
test('a close from the server hands back the messages it never delivered', async (t) => {
  const { fake, c } = await connectFake(t);
  fake.last().feed(welcome());
  c.send('a');
  c.send('b');
  c.send('c');
  const closed = once(c, 'close');
  fake.last().feed({ t: 'close', reason: 'server', ack: 1 });
  assert.deepEqual(await closed, { reason: 'server', unsent: 2, messages: ['b', 'c'] });
  assert.equal(c.stats().outbox, 0);
});

// close() by the application: what the server had not acknowledged yet.
test('close() hands back the messages not acknowledged yet', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  let hold = false;
  class Held extends WebSocket {
    send(d) { if (!(hold && d.includes('"msg"'))) super.send(d); }
  }
  const c = ferry.connect(srv.url, { WebSocket: Held, fetch, transport: 'websocket' });
  await once(c, 'open');
  c.send({ a: 1 });
  await waitFor(() => c.stats().outbox === 0, 5000, 'the ack');
  hold = true;
  c.send({ b: 1 });
  c.send({ b: 2 });
  const closed = once(c, 'close');
  c.close();
  assert.deepEqual(await closed, { reason: 'client', unsent: 2, messages: [{ b: 1 }, { b: 2 }] });
});

// close() while reconnecting: the session waits on the server, detached, for its window. The
// client resumes it to say close, on the connection whose handshake is under way or, when
// there is none, on one of its own.
async function ended(srv) {
  let s;
  for (let i = 0; i < 100; i++) {
    s = await srv.control('sessions');
    if (s.ended === 1) break;
    await sleep(20);
  }
  return s;
}

test('close() while reconnecting, with no connection, ends the session on the server', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  let offline = false;
  class Offline extends WebSocket {
    constructor(url) {
      if (offline) throw new Error('offline');
      super(url);
    }
  }
  const c = ferry.connect(srv.url, { WebSocket: Offline, fetch, transport: 'websocket', minDelay: 10000, maxDelay: 10000 });
  await once(c, 'open');
  offline = true;
  await srv.control('drop');
  await waitFor(() => c.state === 'reconnecting', 5000, 'the drop noticed');
  while ((await srv.control('sessions')).detached !== 1) await sleep(20);
  offline = false;
  c.close();
  assert.deepEqual(await ended(srv), { attached: 0, detached: 0, ended: 1 });
});

test('close() while a resume is under way ends the session on the server', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  let answered = null;
  // A handshake's answer reaches the client 300 ms late.
  const slow = (u, init) => {
    if (init.method !== 'POST' || init.headers.Authorization) return fetch(u, init);
    return fetch(u, init).then((r) => r.text().then((text) => {
      answered && answered();
      return sleep(300).then(() => ({ status: r.status, text: () => Promise.resolve(text) }));
    }));
  };
  const c = ferry.connect(srv.url, { WebSocket, fetch: slow, transport: 'longpoll', minDelay: 10, maxDelay: 20 });
  await once(c, 'open');
  const resumed = new Promise((r) => { answered = r; });
  await srv.control('drop');
  await resumed; // the server has taken the resume; its welcome is on the way
  c.close();
  assert.deepEqual(await ended(srv), { attached: 0, detached: 0, ended: 1 });
});
