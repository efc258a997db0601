// kill -9 of cluster nodes while real JS clients on WebSocket and long-polling stream in both
// directions: redis-server, a publisher, three nodes and a front that spreads clients over
// the live nodes (tests/cluster-e2e/front.mjs, sticky by session), all real processes.
// The node serving the most clients is killed, then later a second one. Checked at the end,
// after the stream stops and everything drains:
//   - server to client: every client's stream is contiguous from its session's first stream
//     number to the last number published OK (nothing lost, repeated or reordered), or the
//     client got a reset with a reason and the check starts again from the new session;
//   - client to server, from the application's log in Redis (clients.mjs, checkLog): every
//     message sent is there, in order, none twice unmarked (ferry_session_message_repeated
//     marks the repeats); a message there only marked was in flight (sent, not acknowledged)
//     when a node serving its client died;
//   - the clients of a killed node resumed on the other nodes (the front's routes, and the
//     nodes' resume counts).
// Printed: the time from each kill until every client of that node had resumed, cuts,
// messages both ways. E2E_DEBUG=1 prints the histories of the clients that failed.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import { waitFor } from '../chaos/lib.mjs';
import { ackedN, checkLog, drainAndCheck, startSending, taggedClient } from './clients.mjs';
import { startFront } from './front.mjs';
import { later, startCluster, teardown } from './lib.mjs';

const WS = 12;
const LP = 12;
const SEND_MS = Number(process.env.E2E_SEND_MS || 15); // each client sends every ~SEND_MS with p 1/2
const log = (line) => console.log(line);

let cluster;
let front;
const clients = [];

before(async () => {
  cluster = await startCluster(3);
  front = await startFront(cluster.nodes, 'sticky');
});

teardown('kill test', () => ({
  clients,
  stops: [async () => front && front.close(), async () => cluster && cluster.stop()],
}));

// Who is on which node now, by the front's last route of each client.
function placement(at) {
  const by = {};
  for (const c of clients) {
    const n = front.lastNode(c.id, at);
    if (n) (by[n] = by[n] || []).push(c);
  }
  return by;
}

// Kills the live node serving the most clients; resolves with what happened.
async function killBusiest(label) {
  const before = await cluster.stats();
  const by = placement(Date.now());
  const victim = cluster.live().reduce((a, b) => ((by[b.name] || []).length > (by[a.name] || []).length ? b : a));
  const affected = by[victim.name] || [];
  // What each client had sent and got acknowledged when the node died: nothing runs here
  // between this and the SIGKILL.
  const at = new Map(clients.map((c) => [c.id, { acked: ackedN(c), sent: c.sent }]));
  const t0 = Date.now();
  await victim.kill9();
  log(`${label}: kill -9 ${victim.name} (pid ${victim.pid}) serving ${affected.length} clients ` +
    `(${affected.filter((c) => c.mode === 'websocket').length} WebSocket, ` +
    `${affected.filter((c) => c.mode === 'longpoll').length} long-polling)`);
  const resumedAt = (c) => (c.openTimes.find((o) => o.t > t0) || {}).t;
  await waitFor(() => affected.every((c) => resumedAt(c)), 15000, `${label}: every client of ${victim.name} to resume`);
  const times = affected.map((c) => resumedAt(c) - t0).sort((a, b) => a - b);
  // Where they went: the first route after their resume.
  const movedTo = {};
  for (const c of affected) {
    const r = (front.routes.get(c.id) || []).find((x) => x.t >= t0 && x.node !== victim.name);
    movedTo[r ? r.node : 'nowhere'] = (movedTo[r ? r.node : 'nowhere'] || 0) + 1;
  }
  await later(300);
  const afterStats = await cluster.stats();
  const resumes = {};
  for (const [name, s] of Object.entries(afterStats)) resumes[name] = s.resumes - (before[name]?.resumes || 0);
  log(`${label}: all ${affected.length} resumed ${times[times.length - 1] ?? 0} ms after the kill ` +
    `(median ${times[Math.floor(times.length / 2)] ?? 0} ms); they went to ${JSON.stringify(movedTo)}; ` +
    `resumes by node since the kill ${JSON.stringify(resumes)}`);
  return { victim, affected, at, times, movedTo, resumes, t0 };
}

test('the log checker fails on a lost, an unmarked repeat, a reordered and an unexplained marked message', () => {
  const kills = [{ acked: 3, sent: 5 }];
  assert.deepEqual(checkLog(6, [], ['1', '2', '3', '4', '4!', '5!', '6'], kills).problems, []);
  assert.deepEqual(checkLog(3, [], ['1', '2!', '2', '3']).problems, [], 'a marked repeat before its plain one');
  assert.equal(checkLog(6, [], ['1', '2', '3', '4', '6'], kills).lost, 1);
  assert.equal(checkLog(6, [], ['1', '2', '3', '4', '4', '5', '6'], kills).duplicated, 1);
  assert.equal(checkLog(6, [], ['1', '2', '4', '3', '5', '6'], kills).reordered, 1);
  assert.equal(checkLog(6, [], ['1', '2!', '3', '4', '5', '6'], kills).unexplained, 1, 'acknowledged, yet only marked');
  assert.equal(checkLog(6, [], ['1', '2', '3', '4', '5', '6!'], kills).unexplained, 1, 'sent after the kill, yet only marked');
  const moved = checkLog(6, [], ['1', '2', '3', '4', '5', '6!'], kills, [{ acked: 5, sent: 6 }]);
  assert.deepEqual([moved.spurious, moved.unexplained], [1, 0], 'only marked, in flight when the session moved');
  assert.equal(checkLog(3, [{ reason: 'expired', unsent: 1, sent: 2 }], ['1', '3']).problems.length, 0);
});

test('kill -9 of two nodes under load on both transports: nothing lost, repeated or reordered', { timeout: 80000 }, async () => {
  const t0 = Date.now();
  for (let k = 0; k < WS; k++) clients.push(taggedClient(front.url, `k-ws-${k}`, 'websocket'));
  for (let k = 0; k < LP; k++) clients.push(taggedClient(front.url, `k-lp-${k}`, 'longpoll'));
  await waitFor(() => clients.every((c) => c.opens > 0), 15000, 'every client to open');
  const stopSending = startSending(clients, SEND_MS);
  await later(2000);
  const first = await killBusiest('kill 1');
  await later(2000);
  const second = await killBusiest('kill 2');
  await later(1500);
  stopSending();
  // What each client had in flight at each kill that hit it.
  const kills = new Map();
  for (const k of [first, second]) {
    for (const c of k.affected) kills.set(c.id, [...(kills.get(c.id) || []), k.at.get(c.id)]);
  }
  const { published, server, drainMs, r, sent, errors } = await drainAndCheck(cluster, clients, { kills, log });
  assert.equal(server.published, published, 'the publisher stopped');
  const cuts = clients.reduce((s, c) => s + Math.max(0, c.opens - 1), 0);
  log(`kill test: ${((Date.now() - t0) / 1000).toFixed(1)} s, ${clients.length} clients ` +
    `(${WS} WebSocket, ${LP} long-polling), ${published} stream messages published, ` +
    `${r.received} received, ${sent} client messages sent, ${r.logged} logged ` +
    `(${r.markedRepeats} marked repeats, ${r.markedFirst} only marked, ${r.spurious} of them with no kill to ` +
    `explain them), ${cuts} reconnections, ` +
    `drained ${drainMs} ms after the stream stopped; resets ${JSON.stringify(r.resets)}; ` +
    `stream start slack ${r.minSlack}..${r.maxSlack}; lost ${r.lost}, duplicated ${r.duplicated}, ` +
    `reordered ${r.reordered}, silent gaps ${r.silentGaps}; front ${JSON.stringify(front.stats)}`);
  const detail = '\n' + r.failed.slice(0, 10).join('\n');
  if (process.env.E2E_DEBUG && r.failed.length) {
    for (const c of clients.filter((x) => r.failed.some((f) => f.startsWith(x.id + ':')))) {
      log(`DEBUG ${c.id}: in flight at kills ${JSON.stringify(kills.get(c.id))}, sent ${c.sent}, log ${JSON.stringify((server.clients[c.id] || []).slice(0, 40))}`);
      log(`DEBUG ${c.id}: routes ${JSON.stringify((front.routes.get(c.id) || []).filter((x, k, a) => k === 0 || a[k - 1].node !== x.node).map((x) => [x.t - t0, x.node, x.kind]))}`);
      log(`DEBUG ${c.id}: opens ${JSON.stringify(c.openTimes.map((o) => [o.t - t0, o.resumed]))}; kills at ${[first, second].map((k) => [k.t0 - t0, k.victim.name]).join(' ')}`);
    }
  }
  assert.equal(server.mismatch, 0, 'the application saw messages from another client');
  assert.equal(server.app_errors, 0, 'the application could write its log');
  assert.equal(server.failed, 0, 'every publish succeeded (Redis stayed up)');
  assert.equal(r.lost, 0, `lost messages${detail}`);
  assert.equal(r.duplicated, 0, `duplicated messages${detail}`);
  assert.equal(r.reordered, 0, `reordered messages${detail}`);
  assert.equal(r.silentGaps, 0, `gaps without a reset${detail}`);
  assert.equal(r.badResets, 0, `resets without a reason${detail}`);
  assert.equal(r.unexplained, 0, `messages only marked as repeated that no kill explains${detail}`);
  assert.ok(r.minSlack >= 0 && r.maxSlack <= 200, `a session's stream began ${r.minSlack}..${r.maxSlack} past its start marker`);
  assert.deepEqual(r.failed, [], 'every client clean');
  assert.deepEqual(errors, [], 'no protocol errors');
  assert.ok(r.received > 0 && r.logged > 0 && sent > 0, 'messages flowed both ways');
  for (const k of [first, second]) {
    assert.ok(k.affected.length > 0, `${k.victim.name} served clients when it was killed`);
    assert.equal(k.movedTo.nowhere, undefined, 'every client of a killed node went to a live one');
    const resumed = Object.values(k.resumes).reduce((s, n) => s + n, 0);
    assert.ok(resumed >= k.affected.length, `the other nodes counted ${resumed} resumes for ${k.affected.length} clients`);
  }
  assert.ok(first.affected.some((c) => c.mode === 'websocket') || second.affected.some((c) => c.mode === 'websocket'),
    'a killed node served WebSocket clients');
  assert.ok(first.affected.some((c) => c.mode === 'longpoll') || second.affected.some((c) => c.mode === 'longpoll'),
    'a killed node served long-polling clients');
});
