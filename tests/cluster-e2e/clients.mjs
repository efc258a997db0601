// Real JS clients for the cluster tests (the chaos suite's ChaosClient: js-client/ferry.js
// through its public API), tagged so the front knows who they are, and the history checks
// over what they received and what the application logged in Redis.
import { checkInbound, REASONS } from '../chaos/check.mjs';
import { ChaosClient } from '../chaos/fleet.mjs';
import { waitFor, WebSocket } from '../chaos/lib.mjs';

// A ChaosClient whose every upgrade and request carries `x-e2e-client: <id>`, with the time
// of every 'open' (welcome) it had, and of every close of its WebSockets with the code
// (`wsCloses`, [{t, code}]).
export function taggedClient(url, id, transport, options = {}) {
  const wsCloses = [];
  class Tagged extends WebSocket {
    constructor(u, protocols) {
      super(u, protocols || [], { headers: { 'x-e2e-client': id } });
      this.on('close', (code) => wsCloses.push({ t: Date.now(), code }));
    }
  }
  const tagged = (u, init = {}) => fetch(u, { ...init, headers: { ...(init.headers || {}), 'x-e2e-client': id } });
  const c = new ChaosClient(url, id, transport, { ...options, WebSocket: Tagged, fetch: tagged });
  // With what the client had sent and got acknowledged when it was welcomed (after the
  // welcome's ack): a resume moves the session, and what was in flight may come marked.
  c.openTimes = [];
  c.wsCloses = wsCloses;
  c.c.on('open', (e) => c.openTimes.push({ t: Date.now(), resumed: e.resumed, acked: ackedN(c), sent: c.sent }));
  return c;
}

// The last of its own messages the server acknowledged (its n, while it had no reset).
export function ackedN(c) {
  if (c.resets.length) return 0;
  const st = c.c.stats();
  return st.outSeq - st.outbox;
}

// Sends from every running client, each with probability 1/2 every `everyMs` or so.
export function startSending(clients, everyMs = 40) {
  let timer = null;
  const tick = () => {
    for (const c of clients) if (!c.closedEarly && Math.random() < 0.5) c.sendNext();
    timer = setTimeout(tick, Math.floor(everyMs / 2 + Math.random() * everyMs));
  };
  tick();
  return () => clearTimeout(timer);
}

// A session's stream start is the first stream number it received (the node's {start:K}
// is only a lower bound, see node.c); `slack` is how far past K that was, for each session.
// Returns the log with its starts rewritten, for the chaos suite's checkInbound.
export function firstStarts(log) {
  const out = [];
  const slack = [];
  for (let k = 0; k < log.length; k++) {
    const e = log[k];
    if (e && e.start !== undefined) {
      const next = log[k + 1];
      if (typeof next === 'number') {
        slack.push(next - e.start);
        out.push({ start: next });
      } else {
        out.push(e);
      }
    } else {
      out.push(e);
    }
  }
  return { log: out, slack };
}

// Client to server, from the application's durable log in Redis: entries "N" (handed over
// plainly) and "N!" (handed over with ferry_session_message_repeated set: the node may have
// handed it over before). What must hold:
//   - every message the client sent (but those a reset dropped, as the chaos checker
//     counts them) is in the log;
//   - no n is there unmarked twice: a repeat ferry did not mark is a duplicate the
//     application could not tell;
//   - marked entries may repeat an n (in any order with its unmarked one: the node taken
//     over may still be finishing its on_message when the next one hands it over again);
//   - an n that is there only marked was in flight when a node serving the client was
//     killed (sent, not yet acknowledged: `kills`, [{acked, sent}] at each kill that hit
//     the client): the killed node began to hand it over and died before the application
//     logged it. Anywhere else the node that began finished, and logged it unmarked. So an
//     acknowledged message is never only marked: acknowledged means recorded. Counted
//     apart (`spurious`), not as a failure: an n only marked that no kill explains but that
//     was in flight when the client resumed (`moves`, [{acked, sent}] at each welcome after
//     the first). KNOWN BUG: a node that recorded its intent to deliver a batch and lost
//     the session to another node (a resume there, or its own shutdown) before handing the
//     whole batch over stops handing it over (core/src/protocol.c, deliver: still_serving),
//     and the next node marks every message of the batch as repeated, those nobody handed
//     over included; ferry.h says marks come only from a node that died or lost Redis;
//   - first appearances come in order.
export function checkLog(sent, resets, entries, kills = [], moves = []) {
  const r = { lost: 0, duplicated: 0, reordered: 0, badResets: 0, markedRepeats: 0, markedFirst: 0,
    spurious: 0, unexplained: 0, problems: [], notes: [] };
  const inFlight = (list, n) => list.some((x) => x.acked < n && n <= x.sent);
  const note = (t) => { if (r.problems.length < 8) r.problems.push(t); };
  const dropped = new Set();
  for (const x of resets) {
    if (!REASONS.includes(x.reason) || typeof x.unsent !== 'number') r.badResets++;
    for (let n = x.sent - x.unsent + 1; n <= x.sent; n++) dropped.add(n);
  }
  const plain = new Map();
  const marked = new Map();
  let max = 0;
  for (const e of entries) {
    const n = Number.parseInt(e, 10);
    const first = !plain.has(n) && !marked.has(n);
    const counts = e.endsWith('!') ? marked : plain;
    counts.set(n, (counts.get(n) || 0) + 1);
    if (!first) continue;
    if (n < max) {
      r.reordered++;
      note(`outbound: ${n} first logged after ${max}`);
    }
    if (dropped.has(n)) note(`outbound: ${n} logged, but a reset told the client it was dropped`);
    if (n < 1 || n > sent) note(`outbound: ${n} logged but never sent`);
    if (n > max) max = n;
  }
  for (const [n, k] of plain) {
    if (k > 1) {
      r.duplicated += k - 1;
      note(`outbound: ${n} handed over ${k} times unmarked`);
    }
  }
  for (const [n, k] of marked) {
    r.markedRepeats += plain.has(n) ? k : k - 1;
    if (plain.has(n)) continue;
    r.markedFirst++;
    if (inFlight(kills, n)) continue;
    if (inFlight(moves, n)) {
      r.spurious++;
      if (r.notes.length < 4) r.notes.push(`outbound: ${n} only marked, in flight when the session moved, no node died`);
      continue;
    }
    r.unexplained++;
    note(`outbound: ${n} only marked, yet it was not in flight at a kill (${JSON.stringify(kills)}) or a move`);
  }
  for (let n = 1; n <= sent; n++) {
    if (!dropped.has(n) && !plain.has(n) && !marked.has(n)) {
      r.lost++;
      note(`outbound: ${n} never handed over`);
    }
  }
  return r;
}

// Both directions for every client. `server` is a node's /control/log answer; `kills` maps a
// client id to what it had sent and got acknowledged at each kill that hit it.
export function checkClients(clients, server, kills = new Map()) {
  const t = { clients: clients.length, received: 0, logged: 0, lost: 0, lostIn: 0, lostOut: 0, duplicated: 0,
    reordered: 0, silentGaps: 0, badResets: 0, markedRepeats: 0, markedFirst: 0, spurious: 0, unexplained: 0, maxSlack: 0,
    minSlack: Infinity, resets: {}, failed: [], notes: [] };
  for (const c of clients) {
    const { log, slack } = firstStarts(c.log);
    const inbound = checkInbound(log, c.closedEarly ? null : server.published);
    const entries = server.clients[c.id] || [];
    const outbound = checkLog(c.sent, c.resets, entries, kills.get(c.id) || [], (c.openTimes || []).slice(1));
    for (const s of slack) {
      t.maxSlack = Math.max(t.maxSlack, s);
      t.minSlack = Math.min(t.minSlack, s);
    }
    t.received += c.log.filter((e) => typeof e === 'number').length;
    t.logged += entries.length;
    for (const x of c.resets) t.resets[x.reason] = (t.resets[x.reason] || 0) + 1;
    for (const k of ['lost', 'duplicated', 'reordered', 'silentGaps', 'badResets']) t[k] += inbound[k] || 0;
    t.lostIn += inbound.lost;
    t.lostOut += outbound.lost;
    for (const k of ['lost', 'duplicated', 'reordered', 'badResets', 'markedRepeats', 'markedFirst', 'spurious', 'unexplained'])
      t[k] += outbound[k];
    const problems = [...inbound.problems, ...outbound.problems];
    if (problems.length) t.failed.push(`${c.id}: ${problems.join('; ')}`);
    if (outbound.notes.length) t.notes.push(`${c.id}: ${outbound.notes.join('; ')}`);
  }
  return t;
}

// Whether every running client has the whole stream and the application logged its last
// message.
export function drained(clients, server) {
  return clients.every((c) => {
    if (c.closedEarly) return true;
    if (!c.caughtUp(server.published)) return false;
    const entries = server.clients[c.id] || [];
    if (!c.sent) return true;
    const last = lastUndropped(c);
    return last === 0 || entries.some((e) => Number.parseInt(e, 10) === last);
  });
}

function lastUndropped(c) {
  const dropped = new Set();
  for (const x of c.resets) for (let n = x.sent - x.unsent + 1; n <= x.sent; n++) dropped.add(n);
  for (let n = c.sent; n >= 1; n--) if (!dropped.has(n)) return n;
  return 0;
}

// The end of a run: the stream stops, everything is given `ms` to arrive, and every client
// is checked (`kills` as checkClients takes it). Also returns how long the drain took, what
// was sent, and the clients' errors but the unknown_session a moved long-poll session gets.
export async function drainAndCheck(cluster, clients, { kills = new Map(), ms = 20000, log = () => {} } = {}) {
  const { published } = await cluster.publisher.control('publish', 'on=0');
  const t0 = Date.now();
  let server = null;
  await waitFor(async () => {
    server = await cluster.live()[0].control('log');
    return drained(clients, server);
  }, ms, 'every message to arrive').catch((e) => log(e.message));
  const drainMs = Date.now() - t0;
  server = await cluster.live()[0].control('log');
  return {
    published,
    server,
    drainMs,
    drainedAll: drained(clients, server),
    r: checkClients(clients, server, kills),
    sent: clients.reduce((n, c) => n + c.sent, 0),
    errors: clients.flatMap((c) => c.errors.filter((e) => e.code !== 'unknown_session')
      .map((e) => `${c.id}: ${e.code} ${e.text}`)),
  };
}
