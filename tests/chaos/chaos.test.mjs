// The chaos suite: real JS clients on WebSocket, long-polling and both (switching), through
// a fault proxy that cuts (RST, FIN, half-close), slices and blackholes connections, first
// straight to the server, then with nginx in the path (faults on both of its sides). Every
// message in both directions must be seen exactly once and in order; a gap only after a
// reset with a reason. CHAOS_SEED=N replays a run's fault decisions (docs/CHAOS.md).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { checkInbound, checkOutbound } from './check.mjs';
import { exitPromptly, killAll, serverBinary, startNginx, startServer } from './lib.mjs';
import { startProxy } from './proxy.mjs';
import { chaosSeed, runPhase, summary } from './run.mjs';

const SEED = chaosSeed();
const MIN_CUTS = 500;
const SERVER_ENV = {
  CHAOS_HB_MS: '300',        // the server pings after 300 ms of silence,
  CHAOS_TIMEOUT_MS: '1000',  // drops the connection after 1 s: blackholes last 1.2-2.4 s
  CHAOS_WINDOW_MS: '3000',   // the outage below outlasts the resume window
  CHAOS_POLL_MS: '1000',
  CHAOS_STALL_MS: '3000',
  CHAOS_PUB_MS: '5',
};

let server;
const proxies = [];
const stops = [];
const log = (line) => console.log(line);

before(async () => {
  log(`chaos seed ${SEED} (replay: CHAOS_SEED=${SEED} node --test tests/chaos/chaos.test.mjs)`);
  const bin = serverBinary();
  server = await startServer(bin, SERVER_ENV);
});

after(async () => {
  // A teardown that hangs, or anything that still holds the event loop after it, would keep
  // the run waiting: name where it stopped and what is left, and fail.
  let step = 'closing the proxies';
  setTimeout(() => {
    const left = process._getActiveHandles().map((h) => h.constructor.name);
    console.log(`teardown stuck at "${step}"; still open: ${left.join(', ')}`);
    process.exit(1);
  }, 45000).unref();
  for (const p of proxies) await p.close().catch(() => {});
  step = 'stopping nginx';
  for (const stop of stops.reverse()) await stop().catch(() => {});
  step = 'stopping the server';
  if (server) await server.stop();
  step = 'done';
  killAll();
  exitPromptly();
});

function assertClean(r) {
  const where = `${r.name} (CHAOS_SEED=${SEED})`;
  const detail = '\n' + [...r.problems, ...r.notDrained, ...r.errors.slice(0, 5)].join('\n');
  assert.equal(r.serverMismatch, 0, `${where}: server saw messages not from their session's client`);
  assert.equal(r.lost, 0, `${where}: lost messages${detail}`);
  assert.equal(r.duplicated, 0, `${where}: duplicated messages${detail}`);
  assert.equal(r.reordered, 0, `${where}: reordered messages${detail}`);
  assert.equal(r.silentGaps, 0, `${where}: gaps without a reset${detail}`);
  assert.equal(r.badResets, 0, `${where}: resets without a reason${detail}`);
  assert.equal(r.unsentMismatch, 0, `${where}: reset unsent counts that do not match the server${detail}`);
  assert.ok(r.drained, `${where}: not drained${detail}`);
  assert.deepEqual(r.errors, [], `${where}: protocol errors`);
  assert.ok(r.received > 0 && r.delivered > 0, `${where}: messages flowed`);
}

const cuts = () => proxies.reduce((s, p) => s + p.stats.cuts, 0);

test('the checker fails on a lost, a duplicated, a reordered message and a silent gap', () => {
  const good = [{ start: 5 }, 5, 6, 7, { reset: 'expired', unsent: 1, sent: 3 }, { start: 10 }, 10, 11];
  assert.equal(checkInbound(good, 11).problems.length, 0);
  assert.equal(checkInbound([{ start: 5 }, 5, 7], 7).lost, 1);
  assert.equal(checkInbound([{ start: 5 }, 5, 6, 6, 7], 7).duplicated, 1);
  assert.equal(checkInbound([{ start: 5 }, 5, 7, 6], 7).reordered, 1);
  assert.equal(checkInbound([{ start: 5 }, 5, { start: 9 }, 9], 9).silentGaps, 1);
  assert.equal(checkInbound([{ start: 5 }, 5, 6], 8).lost, 2, 'the tail counts');
  assert.equal(checkInbound([{ start: 5 }, 5, { reset: 'nope', unsent: 0 }, { start: 9 }, 9], 9).badResets, 1);
  const resets = [{ reason: 'expired', unsent: 2, sent: 4 }];
  assert.equal(checkOutbound(6, resets, [1, 2, 5, 6]).problems.length, 0);
  assert.equal(checkOutbound(6, resets, [1, 5, 6]).lost, 1);
  assert.equal(checkOutbound(6, resets, [1, 2, 2, 5, 6]).duplicated, 1);
  assert.equal(checkOutbound(6, resets, [2, 1, 5, 6]).reordered, 1);
  assert.equal(checkOutbound(6, resets, [1, 2, 3, 5, 6]).unsentMismatch, 1);
  assert.equal(checkOutbound(6, [], [1, 2, 5, 6]).lost, 2, 'a gap without a reset');
});

test('straight through the fault proxy: WebSocket, long-polling, switching, and an outage', { timeout: 100000 }, async () => {
  const proxy = await startProxy({ targetPort: server.port, seed: SEED, name: 'direct' });
  proxies.push(proxy);
  const r = await runPhase({
    name: 'direct', server, url: `http://127.0.0.1:${proxy.port}/ferry`, proxies: [proxy],
    spec: { websocket: 14, longpoll: 14, auto: 14 }, seconds: 36, seed: SEED,
    outage: { atMs: 15000, ms: 5000 }, log,
  });
  log(summary(r, [proxy]));
  log(`direct proxy: ${JSON.stringify(proxy.stats)}`);
  assertClean(r);
  assert.ok(r.switched > 0, 'some clients switched transports');
  assert.ok(proxy.stats.blackholes > 0 && proxy.stats.slicedBytes > 0, 'blackholes and slicing happened');
});

test('nginx in the path, faults on both of its sides', { timeout: 100000 }, async () => {
  const inner = await startProxy({ targetPort: server.port, seed: SEED + 1, name: 'nginx-upstream',
    plan: { cut: 0.3, blackhole: 0.03 } });
  proxies.push(inner);
  const nginx = await startNginx(inner.port);
  stops.push(() => nginx.stop());
  const outer = await startProxy({ targetPort: nginx.port, seed: SEED + 2, name: 'nginx-front' });
  proxies.push(outer);
  const r = await runPhase({
    name: 'nginx', server, url: `http://127.0.0.1:${outer.port}/ferry`, proxies: [outer, inner],
    spec: { websocket: 10, longpoll: 10, auto: 10 }, seconds: 30, seed: SEED + 3, log,
  });
  log(summary(r, [outer, inner]));
  log(`nginx front proxy: ${JSON.stringify(outer.stats)}`);
  log(`nginx upstream proxy: ${JSON.stringify(inner.stats)}`);
  assertClean(r);
});

test(`at least ${MIN_CUTS} cuts in the run`, () => {
  log(`${cuts()} cuts in all`);
  assert.ok(cuts() >= MIN_CUTS, `only ${cuts()} cuts`);
});
