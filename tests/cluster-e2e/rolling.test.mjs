// A rolling restart: each of the three nodes in turn is stopped as a deploy stops it (SIGTERM:
// ferry_mount_drain, then exit) and started again on its port, while 12 WebSocket and 12
// long-polling clients stream both ways. The front checks every node's /ferry/health as
// HAProxy does, so a draining node gets no new request once the check has seen it; the node
// waits NOTICE_MS for that, then lets its WebSockets go (1012) over SPREAD_MS. Nothing may be
// lost, handed over twice unmarked or reordered, and no session is reset: a drain in a cluster
// keeps every session.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import { waitFor } from '../chaos/lib.mjs';
import { drainAndCheck, startSending, taggedClient } from './clients.mjs';
import { startFront } from './front.mjs';
import { later, startCluster, teardown } from './lib.mjs';

const log = (line) => console.log(line);
const CHECK_MS = 200;   // the front's health checks
const NOTICE_MS = 600;  // three checks: the front has the node out before anyone is told
const SPREAD_MS = 1500;
let cluster;
let front;
const clients = [];

before(async () => {
  cluster = await startCluster(3, {
    E2E_DRAIN_NOTICE_MS: String(NOTICE_MS), E2E_DRAIN_SPREAD_MS: String(SPREAD_MS), E2E_DRAIN_DEADLINE_MS: '8000',
  });
  front = await startFront(cluster.nodes, 'sticky', { health: CHECK_MS });
});

teardown('rolling test', () => ({
  clients,
  stops: [async () => front && front.close(), async () => cluster && cluster.stop()],
}));

async function healthy(node) {
  try {
    return (await fetch(`http://${node.addr}/ferry/health`)).status === 200;
  } catch {
    return false;
  }
}

// The most of `times` within any `ms` window.
function busiest(times, ms) {
  const s = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < s.length; i++) {
    while (s[i] - s[j] >= ms) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

test('a rolling restart of every node under load: nothing lost, repeated or reordered, reconnects spread', { timeout: 90000 }, async () => {
  const t0 = Date.now();
  for (let k = 0; k < 12; k++) clients.push(taggedClient(front.url, `roll-ws-${k}`, 'websocket'));
  for (let k = 0; k < 12; k++) clients.push(taggedClient(front.url, `roll-lp-${k}`, 'longpoll'));
  await waitFor(() => clients.every((c) => c.opens > 0), 15000, 'every client to open');
  const stopSending = startSending(clients, 15);
  await later(1000);

  const rounds = [];
  for (const node of cluster.nodes) {
    const on = clients.filter((c) => front.lastNode(c.id) === node.name);
    const ws = on.filter((c) => c.mode === 'websocket');
    const began = Date.now();
    await node.term();
    const drainedMs = Date.now() - began;
    await node.restart();
    await waitFor(() => healthy(node), 5000, `${node.name} to answer ready again`);
    await later(2 * CHECK_MS + 800); // the front takes it back; load goes on
    const ended = Date.now();
    // When each of its WebSockets was let go (1012), and when each of its clients was welcomed
    // again (elsewhere).
    const closes = ws.map((c) => c.wsCloses.find((x) => x.t >= began && x.t <= began + drainedMs)).filter(Boolean);
    const reopens = on.map((c) => c.openTimes.find((o) => o.t >= began && o.t <= ended)).filter(Boolean).map((o) => o.t);
    const wsReopens = ws.map((c) => c.openTimes.find((o) => o.t >= began && o.t <= ended)).filter(Boolean).map((o) => o.t);
    rounds.push({ node: node.name, clients: on.length, ws: ws.length, closes, reopens, wsReopens, drainedMs, began });
  }
  await later(500);
  stopSending();
  const { published, server, r, sent, errors } = await drainAndCheck(cluster, clients, { log });

  for (const x of rounds) {
    const t = x.closes.map((c) => c.t);
    const span = t.length ? Math.max(...t) - Math.min(...t) : 0;
    log(`rolling: ${x.node} drained and exited in ${x.drainedMs} ms with ${x.clients} clients (${x.ws} WebSocket); ` +
      `its WebSockets let go over ${span} ms (codes ${[...new Set(x.closes.map((c) => c.code))]}), ` +
      `${x.reopens.length} welcomed again, at most ${busiest(x.reopens, 1000)} in a second ` +
      `(${busiest(x.wsReopens, 500)} WebSockets in 500 ms)`);
  }
  log(`rolling: ${((Date.now() - t0) / 1000).toFixed(1)} s, ${clients.length} clients; ${published} published, ` +
    `${r.received} received, ${sent} sent, ${r.logged} logged (${r.markedRepeats} marked repeats, ${r.markedFirst} only marked); ` +
    `${r.notes.length ? `marked with no node dead: ${r.notes.join(' | ')}; ` : ''}` +
    `resets ${JSON.stringify(r.resets)}; lost ${r.lost}, duplicated ${r.duplicated}, reordered ${r.reordered}, ` +
    `silent gaps ${r.silentGaps}`);

  const detail = '\n' + r.failed.slice(0, 10).join('\n');
  assert.equal(server.mismatch, 0, 'the application saw messages from another client');
  assert.equal(server.app_errors, 0, 'the application could write its log');
  assert.equal(r.lost, 0, `lost messages${detail}`);
  assert.equal(r.duplicated, 0, `duplicated messages${detail}`);
  assert.equal(r.reordered, 0, `reordered messages${detail}`);
  assert.equal(r.silentGaps, 0, `gaps without a reset${detail}`);
  assert.equal(r.unexplained, 0, `messages only marked that no move explains${detail}`);
  assert.deepEqual(r.resets, {}, 'no session was reset: a drain in a cluster keeps them');
  assert.deepEqual(r.failed, [], 'every client clean');
  assert.deepEqual(errors, [], 'no protocol errors');

  for (const x of rounds) {
    assert.ok(x.clients > 0, `${x.node} served clients when it was drained`);
    assert.equal(x.reopens.length, x.clients, `every client of ${x.node} was welcomed again elsewhere`);
    // Every WebSocket went with 1012 (service restart), while its node drained.
    assert.equal(x.closes.length, x.ws, `every WebSocket of ${x.node} was let go during its drain`);
    assert.ok(x.closes.every((c) => c.code === 1012), `close codes ${x.closes.map((c) => c.code)}`);
    // Spread: WebSocket k of n goes within the k-th n-th of SPREAD_MS, so the first and the last
    // are at least (n - 2) / n of it apart; half of that leaves room for a slow machine.
    const n = x.closes.length;
    if (n >= 3) {
      const t = x.closes.map((c) => c.t);
      const span = Math.max(...t) - Math.min(...t);
      const least = (SPREAD_MS * (n - 2)) / n / 2;
      assert.ok(span >= least, `${x.node}: ${n} WebSockets let go within ${span} ms, under ${least} ms`);
    }
    // The reconnect rate. A WebSocket let go comes back within 1 s (ferry.js draws its first
    // retry after a 1012 from [0, 1 s)), and at most n * w / SPREAD_MS + 2 are let go in any w
    // ms, so at most n * (500 + 1000) / SPREAD_MS + 2 come back in any 500 ms.
    const bound = Math.floor((x.ws * 1500) / SPREAD_MS) + 2;
    assert.ok(busiest(x.wsReopens, 500) <= bound,
      `${x.node}: ${busiest(x.wsReopens, 500)} WebSockets back within 500 ms, above ${bound}`);
  }
});
