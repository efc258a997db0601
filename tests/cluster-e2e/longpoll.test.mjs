// Long-polling with no stickiness at all: a front that sends every HTTP request to the next
// node in turn, over a new connection each time, so a session's polls, sends and resumes
// land on all three nodes and the session moves between them all the time. Every message in
// both directions must still arrive exactly once and in order. Then the same clients' load
// through the front sticky by session (hash of the sid in Authorization, or in a resume's
// body), for comparison: requests, session moves and time, both printed. Last, round robin
// again with a node killed halfway.
import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import { waitFor } from '../chaos/lib.mjs';
import { ackedN, drainAndCheck, startSending, taggedClient } from './clients.mjs';
import { startFront } from './front.mjs';
import { later, startCluster, teardown } from './lib.mjs';

const CLIENTS = 8;
const SEND_MS = 3000;
const log = (line) => console.log(line);

let cluster;
const fronts = [];
const all = [];

before(async () => {
  cluster = await startCluster(3);
});

teardown('long-poll test', () => ({
  clients: all,
  stops: [...fronts.map((f) => () => f.close()), async () => cluster && cluster.stop()],
}));

// Times a client's consecutive requests went to different nodes.
function hops(routes) {
  let n = 0;
  for (let k = 1; k < routes.length; k++) if (routes[k].node !== routes[k - 1].node) n++;
  return n;
}

// `kill`: kill -9 a node halfway through the sending; every client may have had messages in
// flight there (its requests go to every node).
async function phase(mode, kill = false) {
  const label = kill ? `${mode} with a kill` : mode;
  const front = await startFront(cluster.nodes, mode);
  fronts.push(front);
  await cluster.publisher.control('publish', 'on=1');
  const before = await cluster.stats();
  const t0 = Date.now();
  const clients = [];
  for (let k = 0; k < CLIENTS; k++) clients.push(taggedClient(front.url, `lp-${mode}${kill ? '-kill' : ''}-${k}`, 'longpoll'));
  all.push(...clients);
  await waitFor(() => clients.every((c) => c.opens > 0), 20000, `${label}: every client to open`);
  const stopSending = startSending(clients, 100);
  const kills = new Map();
  if (kill) {
    await later(SEND_MS / 2);
    const victim = cluster.live()[0];
    for (const c of clients) kills.set(c.id, [{ acked: ackedN(c), sent: c.sent }]);
    await victim.kill9();
    log(`long-polling ${label}: kill -9 ${victim.name}`);
    await later(SEND_MS / 2);
  } else {
    await later(SEND_MS);
  }
  stopSending();
  const { published, server, drainMs, r, sent, errors } = await drainAndCheck(cluster, clients,
    { kills, ms: 40000, log });
  const afterStats = await cluster.stats();
  const resumes = Object.keys(afterStats).reduce((s, k) => s + afterStats[k].resumes - before[k].resumes, 0);
  const unknown = Object.keys(afterStats).reduce((s, k) => s + afterStats[k].unknown - before[k].unknown, 0);
  const requests = clients.reduce((s, c) => s + (front.routes.get(c.id) || []).length, 0);
  const moves = clients.reduce((s, c) => s + hops(front.routes.get(c.id) || []), 0);
  // This phase's clients end their sessions, so the next phase counts only its own.
  for (const c of clients) c.close();
  await waitFor(() => clients.every((c) => c.inflight === 0), 5000, `${label}: requests to settle`).catch(() => {});
  const res = { mode: label, seconds: (Date.now() - t0) / 1000, drainMs, requests, moves, resumes, unknown, sent, r, published };
  log(`long-polling ${label}: ${CLIENTS} clients, ${res.seconds.toFixed(1)} s (drained ${drainMs} ms after ` +
    `the ${SEND_MS} ms of sending), ${requests} requests (${(requests / Math.max(1, sent)).toFixed(1)} ` +
    `per client message), ${moves} node changes between consecutive requests, ${resumes} resumes ` +
    `(${unknown} answered unknown); ${sent} client messages sent, ${r.logged} logged ` +
    `(${r.markedRepeats} marked repeats, ${r.markedFirst} only marked, ${r.spurious} of them with no kill to ` +
    `explain them), ${r.received} stream messages ` +
    `received of ${published}; resets ${JSON.stringify(r.resets)}; lost ${r.lost}, duplicated ${r.duplicated}, ` +
    `reordered ${r.reordered}, silent gaps ${r.silentGaps}; front ${JSON.stringify(front.stats)}`);
  const detail = '\n' + r.failed.slice(0, 10).join('\n');
  assert.equal(server.mismatch, 0, 'the application saw messages from another client');
  assert.equal(server.app_errors, 0, 'the application could write its log');
  assert.equal(r.lost, 0, `${label}: lost messages${detail}`);
  assert.equal(r.duplicated, 0, `${label}: duplicated messages${detail}`);
  assert.equal(r.reordered, 0, `${label}: reordered messages${detail}`);
  assert.equal(r.silentGaps, 0, `${label}: gaps without a reset${detail}`);
  assert.equal(r.badResets, 0, `${label}: resets without a reason${detail}`);
  assert.equal(r.unexplained, 0, `${label}: messages only marked that no kill or move explains${detail}`);
  assert.deepEqual(r.resets, {}, `${label}: no session was reset`);
  assert.deepEqual(r.failed, [], `${label}: every client clean`);
  assert.deepEqual(errors, [], `${label}: no protocol errors`);
  assert.ok(sent > 0 && r.logged > 0 && r.received > 0, `${label}: messages flowed both ways`);
  res.r = r;
  return res;
}

let rr;
test('long-polling with every request on the next node: exactly once both ways', { timeout: 80000 }, async () => {
  rr = await phase('rr');
  assert.ok(rr.moves > CLIENTS, 'sessions moved between nodes');
});

test('the same with stickiness by session, for comparison', { timeout: 60000 }, async () => {
  const sticky = await phase('sticky');
  if (rr) {
    log(`long-polling, round robin vs sticky: ${rr.requests} vs ${sticky.requests} requests, ` +
      `${rr.moves} vs ${sticky.moves} node changes, ${rr.resumes} vs ${sticky.resumes} resumes, ` +
      `drained in ${rr.drainMs} vs ${sticky.drainMs} ms`);
  }
  // Sticky: a new session moves at most once (its hello went round robin), and nothing
  // moves after that.
  assert.ok(sticky.moves <= CLIENTS, `sticky sessions stayed put (${sticky.moves} node changes)`);
});

// Last, as it leaves two nodes: the same round robin, with a node killed halfway.
test('long-polling with every request on the next node and a node killed: exactly once both ways', { timeout: 80000 }, async () => {
  const r = await phase('rr', true);
  assert.ok(r.moves > CLIENTS, 'sessions moved between nodes');
});
