// A server that goes away lets many clients go at the same moment (WebSocket 1012 "service
// restart" or 1001, or close "shutdown" on one node): their reconnects must be spread, not
// all within a few milliseconds of each other. Each client is on a fake WebSocket the test
// drives, with the default backoff (minDelay 250 ms).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { welcome, tick } from './fake-ws.mjs';
import { ferry, waitFor } from './helpers.mjs';

const N = 100;

// N welcomed clients; `bye(socket)` lets each go at the same moment; resolves to when each
// opened its next connection, in ms after that moment.
async function reconnectTimes(t, bye) {
  const clients = [];
  for (let k = 0; k < N; k++) {
    const sockets = [];
    class Fake {
      constructor() { this.sent = []; this.at = Date.now(); sockets.push(this); }
      send(text) { this.sent.push(JSON.parse(text)); }
      close() {}
    }
    // A short connect timeout: the connections nobody answers (the reconnects, and the one
    // close() makes to say so) are given up soon, and the test process ends with them.
    const c = ferry.connect('http://127.0.0.1:9/ferry', { WebSocket: Fake, fetch, transport: 'websocket',
      connectTimeout: 300 });
    t.after(() => c.close());
    clients.push({ c, sockets });
  }
  await tick();
  for (const { sockets } of clients) sockets[0].onopen({});
  await tick();
  for (const { sockets } of clients) sockets[0].onmessage({ data: JSON.stringify(welcome()) });
  await waitFor(() => clients.every(({ c }) => c.state === 'open'), 2000, 'every client open');
  const t0 = Date.now();
  for (const { sockets } of clients) bye(sockets[0]);
  await waitFor(() => clients.every(({ sockets }) => sockets.length >= 2), 5000, 'every reconnect');
  return clients.map(({ sockets }) => sockets[1].at - t0);
}

// The most reconnects within any `ms` window.
function busiest(times, ms) {
  const s = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < s.length; i++) {
    while (s[i] - s[j] >= ms) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

for (const [name, bye] of [
  ['WebSocket 1012 service restart', (ws) => ws.onclose({ code: 1012, reason: 'service restart' })],
  ['WebSocket 1001 going away', (ws) => ws.onclose({ code: 1001 })],
  ['close shutdown, then 1000', (ws) => {
    ws.onmessage({ data: JSON.stringify({ t: 'close', reason: 'shutdown', ack: 0 }) });
  }],
]) {
  test(`${N} clients let go at once (${name}) come back spread over a second`, async (t) => {
    const times = await reconnectTimes(t, bye);
    const span = Math.max(...times) - Math.min(...times);
    // Uniform over [0, 1000 ms): N of them span under 500 ms with probability 2^-99.
    assert.ok(span >= 500, `reconnects spread over ${span} ms`);
    assert.ok(Math.max(...times) < 1000 + 200, `the last came ${Math.max(...times)} ms after`);
    // About N / 100 per 10 ms; 15 in one is beyond any chance.
    assert.ok(busiest(times, 10) <= 15, `${busiest(times, 10)} reconnects within 10 ms`);
  });
}

test('a connection lost otherwise retries within minDelay, as before', async (t) => {
  const times = await reconnectTimes(t, (ws) => ws.onclose({ code: 1006 }));
  assert.ok(Math.max(...times) < 250 + 150, `the last came ${Math.max(...times)} ms after`);
});
