// Nodes coming and going without a crash, under load on both transports: a fourth node joins
// the cluster (the front starts sending it new connections), then the busiest node shuts
// down normally (ferry_mount_free: its WebSockets are closed with 1012, its sessions stay
// in Redis) and its clients resume on the others. None lost, none twice unmarked
// (clients.mjs, checkLog with no kills). A message comes marked as repeated only if it was
// in a batch whose delivery a move interrupted (ferry.h, ferry_session_message_repeated).
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import { waitFor } from '../chaos/lib.mjs';
import { drainAndCheck, startSending, taggedClient } from './clients.mjs';
import { startFront } from './front.mjs';
import { later, startCluster, teardown } from './lib.mjs';

const log = (line) => console.log(line);
let cluster;
let front;
const clients = [];
let result = null;

before(async () => {
  cluster = await startCluster(3);
  front = await startFront(cluster.nodes, 'sticky');
});

teardown('restart test', () => ({
  clients,
  stops: [async () => front && front.close(), async () => cluster && cluster.stop()],
}));

test('a node joins and another shuts down under load: nothing lost, nothing handed over twice', { timeout: 60000 }, async () => {
  const t0 = Date.now();
  for (let k = 0; k < 8; k++) clients.push(taggedClient(front.url, `r-ws-${k}`, 'websocket'));
  for (let k = 0; k < 8; k++) clients.push(taggedClient(front.url, `r-lp-${k}`, 'longpoll'));
  await waitFor(() => clients.every((c) => c.opens > 0), 15000, 'every client to open');
  const stopSending = startSending(clients, 15);
  await later(1500);
  const n4 = await cluster.addNode();
  // Clients that come now may land on it.
  for (let k = 8; k < 12; k++) clients.push(taggedClient(front.url, `r-ws-${k}`, 'websocket'));
  for (let k = 8; k < 12; k++) clients.push(taggedClient(front.url, `r-lp-${k}`, 'longpoll'));
  await waitFor(() => clients.every((c) => c.opens > 0), 15000, 'every client to open');
  await later(1500);
  const on4 = clients.filter((c) => front.lastNode(c.id) === n4.name).length;
  // The busiest of the first three stops as a service stops.
  const by = {};
  for (const c of clients) (by[front.lastNode(c.id)] = by[front.lastNode(c.id)] || []).push(c);
  const victim = cluster.live().filter((n) => n !== n4).reduce((a, b) => ((by[b.name] || []).length > (by[a.name] || []).length ? b : a));
  const affected = by[victim.name] || [];
  const stoppedAt = Date.now();
  await victim.stop();
  const stopMs = Date.now() - stoppedAt;
  const resumedAt = (c) => (c.openTimes.find((o) => o.t > stoppedAt) || {}).t;
  await waitFor(() => affected.every((c) => resumedAt(c)), 15000, `every client of ${victim.name} to resume`);
  const times = affected.map((c) => resumedAt(c) - stoppedAt).sort((a, b) => a - b);
  await later(1500);
  stopSending();
  const { published, server, r, sent, errors } = await drainAndCheck(cluster, clients, { log });
  log(`restart: ${((Date.now() - t0) / 1000).toFixed(1)} s, ${clients.length} clients, n4 joined and took ${on4}; ` +
    `${victim.name} stopped in ${stopMs} ms with ${affected.length} clients, all back ${times[times.length - 1]} ms ` +
    `after the stop began (median ${times[Math.floor(times.length / 2)]} ms); ${published} published, ${r.received} received, ` +
    `${sent} sent, ${r.logged} logged (${r.markedRepeats} marked repeats, ${r.markedFirst} only marked); ` +
    `${r.notes.length ? `marked with no node dead: ${r.notes.join(' | ')}; ` : ''}` +
    `resets ${JSON.stringify(r.resets)}; lost ${r.lost}, duplicated ${r.duplicated}, reordered ${r.reordered}, ` +
    `silent gaps ${r.silentGaps}`);
  const detail = '\n' + r.failed.slice(0, 10).join('\n');
  assert.equal(server.mismatch, 0, 'the application saw messages from another client');
  assert.equal(server.app_errors, 0, 'the application could write its log');
  assert.ok(on4 > 0, 'the node that joined took clients');
  assert.ok(affected.length > 0, `${victim.name} served clients when it stopped`);
  assert.equal(r.lost, 0, `lost messages${detail}`);
  assert.equal(r.duplicated, 0, `duplicated messages${detail}`);
  assert.equal(r.reordered, 0, `reordered messages${detail}`);
  assert.equal(r.silentGaps, 0, `gaps without a reset${detail}`);
  assert.equal(r.unexplained, 0, `messages only marked that no move explains${detail}`);
  result = r;
  assert.deepEqual(r.resets, {}, 'no session was reset');
  assert.deepEqual(r.failed, [], 'every client clean');
  assert.deepEqual(errors, [], 'no protocol errors');
});
