// close() wherever the application calls it: from a handler in the middle of a welcome, from
// the reset handler; and what the close event hands back.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { client, ferry, here, once, startServer, waitFor } from './helpers.mjs';
import { fakeSockets, tick, welcome } from './fake-ws.mjs';
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
