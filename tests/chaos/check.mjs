// The history checker. Pure functions over two logs per client:
//   - what the client's application saw (ChaosClient.log): stream numbers i, a {start: K}
//     at the beginning of every session, and {reset, unsent, sent} where a session was
//     replaced;
//   - what the server's application saw of the client's messages (the chaos server's log):
//     the numbers n of its messages {c, n}, in on_message order.
// Both directions must be exactly once and in order. A gap is allowed only where the client
// got a reset with a reason: server to client, the old session's stream may stop anywhere
// before the reset, and the new one must begin at its start marker; client to server, the
// messages missing must be exactly the `unsent` last ones the client had sent before it.

export const REASONS = ['unknown', 'expired', 'overflow', 'closed', 'server', 'shutdown', 'forked'];

function newResult() {
  return { lost: 0, duplicated: 0, reordered: 0, silentGaps: 0, badResets: 0, unsentMismatch: 0, problems: [] };
}

function note(r, text) {
  if (r.problems.length < 8) r.problems.push(text);
}

// Server to client. `published` is the last stream number, every one of which the client
// must have seen by the end (it drained); null for a client that closed its session early,
// whose history must only have no holes, repeats or reordering.
export function checkInbound(log, published) {
  const r = newResult();
  const seen = new Set();
  let start = null;     // this session's first stream number
  let max = 0;          // highest number seen in any session
  let segMax = null;    // highest number seen in this session
  let prev = null;      // previous entry
  const closeSegment = (final) => {
    if (start === null) return;
    // Inside a session nothing may be missing; only the last one must reach `published`.
    const top = final && published !== null ? published : segMax;
    for (let i = start; top !== null && i <= top; i++) {
      if (!seen.has(i)) {
        r.lost++;
        note(r, `inbound: ${i} never arrived (session from ${start})`);
      }
    }
  };
  for (let k = 0; k < log.length; k++) {
    const e = log[k];
    if (typeof e === 'number') {
      if (start === null) {
        r.silentGaps++;
        note(r, `inbound: ${e} at entry ${k} before any session start`);
        start = e;
      }
      if (prev && prev.reset !== undefined) {
        r.silentGaps++;
        note(r, `inbound: ${e} right after a reset, without the new session's start`);
      }
      if (seen.has(e)) {
        r.duplicated++;
        note(r, `inbound: ${e} again at entry ${k}`);
      } else if (segMax !== null && e < segMax) {
        r.reordered++;
        note(r, `inbound: ${e} after ${segMax} at entry ${k}`);
      } else if (e < start) {
        r.reordered++;
        note(r, `inbound: ${e} before its session's start ${start}`);
      }
      seen.add(e);
      if (segMax === null || e > segMax) segMax = e;
      if (e > max) max = e;
    } else if (e.start !== undefined) {
      const first = k === 0 || (prev && prev.reset !== undefined);
      if (!first) {
        // A new session the application was not told about: whatever it skipped is a
        // silent gap.
        r.silentGaps++;
        note(r, `inbound: a new session (start ${e.start}) at entry ${k} without a reset`);
      }
      closeSegment(false);
      if (e.start <= max) {
        r.duplicated++;
        note(r, `inbound: a session starting at ${e.start} after ${max} was seen`);
      }
      start = e.start;
      segMax = null;
    } else if (e.reset !== undefined) {
      if (!REASONS.includes(e.reset) || typeof e.unsent !== 'number') {
        r.badResets++;
        note(r, `inbound: reset without a known reason or unsent count: ${JSON.stringify(e)}`);
      }
    } else {
      r.silentGaps++;
      note(r, `inbound: unexpected entry ${JSON.stringify(e)}`);
    }
    prev = e;
  }
  closeSegment(true);
  return r;
}

// Client to server. `sent` is how many messages the client sent (1..sent), `resets` its
// resets in order, `delivered` the n's the server's application saw, in order. `closed`: the
// client ended its session itself, so what it had not got acknowledged may be missing at the
// end.
export function checkOutbound(sent, resets, delivered, closed = false) {
  const r = newResult();
  const dropped = new Set();
  let before = 0;
  for (const x of resets) {
    if (!REASONS.includes(x.reason) || typeof x.unsent !== 'number') r.badResets++;
    const from = x.sent - x.unsent + 1;
    if (from <= before) {
      r.unsentMismatch++;
      note(r, `outbound: reset ${x.reason} counts ${x.unsent} unsent, more than the ${x.sent - before} sent in its session`);
    }
    for (let n = Math.max(from, before + 1); n <= x.sent; n++) dropped.add(n);
    before = x.sent;
  }
  const seen = new Set();
  let max = 0;
  for (let k = 0; k < delivered.length; k++) {
    const n = delivered[k];
    if (seen.has(n)) {
      r.duplicated++;
      note(r, `outbound: ${n} delivered again at entry ${k}`);
      continue;
    }
    if (n < max) {
      r.reordered++;
      note(r, `outbound: ${n} delivered after ${max}`);
    }
    if (n > sent || n < 1) note(r, `outbound: ${n} delivered but never sent`);
    if (dropped.has(n)) {
      r.unsentMismatch++;
      note(r, `outbound: ${n} delivered, but the client was told it was dropped with its session`);
    }
    seen.add(n);
    if (n > max) max = n;
  }
  for (let n = 1; n <= (closed ? max : sent); n++) {
    if (!dropped.has(n) && !seen.has(n)) {
      r.lost++;
      note(r, `outbound: ${n} never delivered`);
    }
  }
  return r;
}

// The last n the server must deliver for a client to be drained.
export function lastExpected(sent, resets) {
  const dropped = new Set();
  for (const x of resets) for (let n = x.sent - x.unsent + 1; n <= x.sent; n++) dropped.add(n);
  for (let n = sent; n >= 1; n--) if (!dropped.has(n)) return n;
  return 0;
}

// Every client, both directions. `server` is the chaos server's /control/log answer.
export function checkAll(clients, server) {
  const total = newResult();
  total.clients = clients.length;
  total.received = 0;
  total.delivered = 0;
  total.resets = {};
  total.failed = [];
  for (const c of clients) {
    const inbound = checkInbound(c.log, c.closedEarly ? null : server.published);
    const delivered = server.clients[c.id] || [];
    const outbound = checkOutbound(c.sent, c.resets, delivered, !!c.closedEarly);
    total.received += c.log.filter((e) => typeof e === 'number').length;
    total.delivered += delivered.length;
    for (const x of c.resets) total.resets[x.reason] = (total.resets[x.reason] || 0) + 1;
    for (const part of [inbound, outbound]) {
      for (const key of ['lost', 'duplicated', 'reordered', 'silentGaps', 'badResets', 'unsentMismatch'])
        total[key] += part[key];
      if (part.problems.length) total.failed.push({ id: c.id, problems: part.problems });
    }
  }
  total.problems = total.failed.slice(0, 10).flatMap((f) => f.problems.map((p) => `${f.id}: ${p}`));
  return total;
}
