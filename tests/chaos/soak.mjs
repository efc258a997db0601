// The soak: chaos rounds back to back for SOAK_SECONDS (1800), clients connecting, being cut,
// resuming, switching transports and leaving for good (churn), each round checked like the
// chaos test. It samples the server's RSS, threads and open file descriptors (/proc) at
// baseline, during the run and at the end once every client has left and every session has
// ended, and fails if they do not come back to about their baseline, or if a round's
// history shows a loss, a duplicate, a reordering or a gap without a reset.
//
//   SOAK_SECONDS=600 node tests/chaos/soak.mjs      CHAOS_SEED=N replays the fault decisions
import {
  clientExceptions, exitPromptly, killAll, procStats, serverBinary, startServer,
  tolerateClientExceptions, waitFor,
} from './lib.mjs';
import { startProxy } from './proxy.mjs';
import { chaosSeed, runPhase, summary } from './run.mjs';

const SECONDS = Number(process.env.SOAK_SECONDS || 1800);
const ROUND_SECONDS = Math.min(20, Math.max(5, Math.floor(SECONDS / 3)));
const SEED = chaosSeed();
// Back to about the baseline: a few descriptors and threads may be in flux (a request being
// answered). The heap in use (mallinfo2) must come back to within 1 MiB of the baseline: that
// is the leak check. RSS may not: glibc keeps freed pages in its arenas (up to 8 per core),
// a plateau reached in the first rounds and then creeping by about 0.1 MiB a round from
// fragmentation; RSS fails beyond 24 MiB above the baseline.
const SLACK = { fds: 4, threads: 2, rssKb: 24 * 1024, heapKb: 1024 };
// civetweb runs hundreds of worker threads, and glibc's per-thread cache (tcache) keeps freed
// blocks in each thread that ever handled a connection, counted as in use: heap and RSS then
// creep up for a long time without any leak. The soak turns the cache off in the server so
// that what remains is what ferry holds; SOAK_TCACHE=1 leaves it on.
const MALLOC_ENV = process.env.SOAK_TCACHE === '1' ? {} : { GLIBC_TUNABLES: 'glibc.malloc.tcache_count=0' };

const log = (line) => console.log(`[${new Date().toISOString()}] ${line}`);
const fmt = (s) => `rss ${(s.rssKb / 1024).toFixed(1)} MiB, ${s.threads} threads, ${s.fds} fds` +
  (s.heapKb !== undefined ? `, heap in use ${(s.heapKb / 1024).toFixed(1)} MiB` : '');

async function settle(server, baseline) {
  await waitFor(async () => {
    const st = await server.control('stats');
    const now = procStats(server.pid);
    return st.attached === 0 && st.detached === 0 && st.expired === 0 &&
      now.fds <= baseline.fds + SLACK.fds && now.threads <= baseline.threads + SLACK.threads;
  }, 60000, 'sessions to end and be forgotten, descriptors to close').catch((e) => log(e.message));
  return { ...procStats(server.pid), heapKb: (await server.control('stats')).heap_kb };
}

tolerateClientExceptions();
let server;
let proxy;
let failed = [];
try {
  log(`soak: ${SECONDS} s in rounds of ${ROUND_SECONDS} s, seed ${SEED} (CHAOS_SEED=${SEED} replays it)` +
    (MALLOC_ENV.GLIBC_TUNABLES ? `, server with ${MALLOC_ENV.GLIBC_TUNABLES}` : ''));
  server = await startServer(serverBinary(), {
    CHAOS_HB_MS: '300', CHAOS_TIMEOUT_MS: '1000', CHAOS_WINDOW_MS: '3000', CHAOS_POLL_MS: '1000',
    CHAOS_STALL_MS: '3000', CHAOS_PUB_MS: '10', CHAOS_TOMBSTONE_MS: '10000', ...MALLOC_ENV,
  });
  proxy = await startProxy({ targetPort: server.port, seed: SEED, name: 'soak' });
  const baseline = { ...procStats(server.pid), heapKb: (await server.control('stats')).heap_kb };
  log(`baseline: ${fmt(baseline)}`);
  const during = [];
  const peak = procStats(server.pid);
  const sampler = setInterval(() => {
    const s = procStats(server.pid);
    during.push(s);
    for (const k of Object.keys(peak)) peak[k] = Math.max(peak[k], s[k]);
  }, 5000);
  let afterFirst = null;
  const end = Date.now() + SECONDS * 1000;
  let round = 0;
  let cuts = 0;
  const totals = { clients: 0, received: 0, delivered: 0, lost: 0, duplicated: 0, reordered: 0,
    silentGaps: 0, badResets: 0, unsentMismatch: 0, resets: {} };
  while (Date.now() < end) {
    round++;
    proxy.chaos();
    const before = proxy.stats.cuts;
    const seconds = Math.max(3, Math.min(ROUND_SECONDS, (end - Date.now()) / 1000));
    const r = await runPhase({
      name: `soak${round}`, server, url: `http://127.0.0.1:${proxy.port}/ferry`, proxies: [proxy],
      spec: { websocket: 10, longpoll: 10, auto: 10 }, seconds, seed: SEED + round,
      churnEveryMs: 500, clearLog: true, sendEveryMs: 60, log,
    });
    cuts += proxy.stats.cuts - before;
    const s = procStats(server.pid);
    const { heap_kb: heap } = await server.control('stats');
    log(`${summary(r, null)}; ${proxy.stats.cuts - before} cuts | ${fmt(s)}, heap in use ${(heap / 1024).toFixed(1)} MiB`);
    for (const k of ['clients', 'received', 'delivered', 'lost', 'duplicated', 'reordered', 'silentGaps',
      'badResets', 'unsentMismatch']) totals[k] += r[k];
    for (const [k, v] of Object.entries(r.resets)) totals.resets[k] = (totals.resets[k] || 0) + v;
    const bad = r.lost + r.duplicated + r.reordered + r.silentGaps + r.badResets + r.unsentMismatch;
    if (bad || !r.drained || r.errors.length) {
      failed.push(`round ${round}: ${[...r.problems, ...r.notDrained, ...r.errors.slice(0, 3)].join('; ')}`);
      log(`round ${round} FAILED: ${failed[failed.length - 1]}`);
    }
    if (round === 1) afterFirst = await settle(server, baseline);
  }
  clearInterval(sampler);
  const final = await settle(server, baseline);
  const sorted = during.map((s) => s.rssKb).sort((a, b) => a - b);
  log(`totals: ${round} rounds, ${cuts} cuts, ${JSON.stringify(totals)}`);
  log(`baseline:            ${fmt(baseline)}`);
  log(`after round 1:       ${fmt(afterFirst)}`);
  log(`during (peak):       ${fmt(peak)}; median rss ${(sorted[sorted.length >> 1] / 1024).toFixed(1)} MiB over ${during.length} samples`);
  log(`end (clients gone):  ${fmt(final)}`);
  if (clientExceptions.length)
    failed.push(`${clientExceptions.length} exceptions thrown in the JS client, the first: ${clientExceptions[0]}`);
  if (final.fds > baseline.fds + SLACK.fds) failed.push(`fds ${final.fds}, baseline ${baseline.fds}`);
  if (final.threads > baseline.threads + SLACK.threads) failed.push(`threads ${final.threads}, baseline ${baseline.threads}`);
  if (final.heapKb > baseline.heapKb + SLACK.heapKb)
    failed.push(`heap in use ${final.heapKb} kB, baseline ${baseline.heapKb} kB`);
  if (final.rssKb > baseline.rssKb + SLACK.rssKb)
    failed.push(`rss ${final.rssKb} kB: baseline ${baseline.rssKb} kB, after round 1 ${afterFirst.rssKb} kB`);
} catch (e) {
  failed.push(String(e && e.stack ? e.stack : e));
} finally {
  if (proxy) await proxy.close();
  if (server) await server.stop();
  killAll();
}
if (failed.length) {
  log(`soak FAILED (CHAOS_SEED=${SEED}):\n  ${failed.join('\n  ')}`);
  process.exit(1);
}
log('soak passed');
exitPromptly();
