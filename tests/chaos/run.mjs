// One chaos phase: a fleet of clients against the chaos server through fault proxies, for a
// while, with WebSocket refused now and then and an optional network outage longer than the
// resume window; then calm, a drain, and the history check.
import { checkAll, lastExpected } from './check.mjs';
import { Fleet } from './fleet.mjs';
import { rng } from './proxy.mjs';
import { waitFor } from './lib.mjs';

export function chaosSeed() {
  const env = process.env.CHAOS_SEED;
  return env ? Number(env) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
}

const later = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function runPhase({
  name, server, url, proxies, spec, seconds, seed, outage = null, wsOffEvery = 5000,
  wsOffFor = 1200, sendEveryMs = 40, drainMs = 30000, churnEveryMs = 0, clearLog = false,
  log = () => {},
}) {
  const rnd = rng(seed);
  const fleet = new Fleet(url, name, spec, rnd);
  const t0 = Date.now();
  try {
    await waitFor(() => fleet.clients.every((c) => c.opens > 0), 15000, `${name}: every client to open`);
    fleet.start(sendEveryMs);
    const end = Date.now() + seconds * 1000;
    let nextWsOff = Date.now() + wsOffEvery;
    let outageDone = !outage;
    let nextChurn = Date.now() + churnEveryMs;
    while (Date.now() < end) {
      if (churnEveryMs && Date.now() >= nextChurn) {
        fleet.replaceOne();
        nextChurn = Date.now() + churnEveryMs;
      }
      if (!outageDone && Date.now() - t0 >= outage.atMs) {
        outageDone = true;
        log(`${name}: outage of ${outage.ms} ms`);
        await Promise.all(proxies.map((p) => p.outage(outage.ms)));
        continue;
      }
      if (wsOffEvery && Date.now() >= nextWsOff) {
        await server.control('ws', 'on=0');
        await later(wsOffFor);
        await server.control('ws', 'on=1');
        nextWsOff = Date.now() + wsOffEvery;
        continue;
      }
      await later(50);
    }
    for (const p of proxies) p.calm();
    fleet.stop();
    await server.control('ws', 'on=1');
    const { published } = await server.control('publish', 'on=0');
    let drained = true;
    let serverLog = null;
    const running = fleet.clients.filter((c) => !c.closedEarly);
    try {
      await waitFor(async () => {
        if (!running.every((c) => c.caughtUp(published))) return false;
        serverLog = await server.control('log');
        return running.every((c) => {
          const got = serverLog.clients[c.id] || [];
          const want = lastExpected(c.sent, c.resets);
          return want === 0 || got.includes(want);
        });
      }, drainMs, `${name}: every message to arrive`);
    } catch (e) {
      drained = false;
      log(e.message);
    }
    serverLog = await server.control('log', clearLog ? 'clear=1' : '');
    const result = checkAll(fleet.clients, serverLog);
    result.name = name;
    result.drained = drained;
    result.seconds = (Date.now() - t0) / 1000;
    result.published = published;
    result.sent = fleet.clients.reduce((s, c) => s + c.sent, 0);
    // A long-poll whose session moved or ended is answered 404 unknown_session, which the
    // client reports and answers with a resume: expected here. Any other error is not.
    result.errors = fleet.clients.flatMap((c) => c.errors
      .filter((e) => e.code !== 'unknown_session')
      .map((e) => `${c.id}: ${e.code} ${e.text}`));
    result.switched = fleet.clients.filter((c) => c.transports.length > 1).length;
    result.switches = fleet.clients.reduce((s, c) => s + Math.max(0, c.transports.length - 1), 0);
    result.notDrained = running
      .filter((c) => !c.caughtUp(published) || !(serverLog.clients[c.id] || []).includes(lastExpected(c.sent, c.resets)))
      .slice(0, 5)
      .map((c) => `${c.id}: ${c.c.state} on ${c.c.transport}, stream at ${c.lastI()}/${published}, ` +
        `sent ${c.sent}, server has ${(serverLog.clients[c.id] || []).slice(-1)[0] ?? 0}, ` +
        `session seq in ${c.c.stats().lastSeq} out ${c.c.stats().outSeq} unacked ${c.c.stats().outbox}, ` +
        `last heard ${Date.now() - c.c.stats().lastRx} ms ago, resets ${JSON.stringify(c.resets)}, ` +
        `errors ${JSON.stringify(c.errors.slice(-3))}`);
    result.serverMismatch = serverLog.mismatch;
    return result;
  } finally {
    fleet.close();
    // The last requests (a long-poll client's close) finish before anything is torn down.
    await waitFor(() => fleet.clients.every((c) => c.inflight === 0), 10000, `${name}: requests to settle`)
      .catch((e) => log(e.message));
    await server.control('publish', 'on=1').catch(() => {});
  }
}

export function summary(r, proxies) {
  const cuts = proxies ? `${proxies.reduce((s, p) => s + p.stats.cuts, 0)} cuts, ` : '';
  return `${r.name}: ${r.seconds.toFixed(1)} s, ${r.clients} clients, ${cuts}` +
    `${r.received} stream messages received, ${r.delivered} client messages delivered, ` +
    `resets ${JSON.stringify(r.resets)}, ${r.switches} transport switches; lost ${r.lost}, ` +
    `duplicated ${r.duplicated}, reordered ${r.reordered}, silent gaps ${r.silentGaps}, ` +
    `bad resets ${r.badResets}, unsent mismatches ${r.unsentMismatch}`;
}
