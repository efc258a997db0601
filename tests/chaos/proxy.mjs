// A TCP fault proxy. Every accepted connection draws a fate from a seeded generator (the
// proxy's seed and the connection's number), so a run with the same seed makes the same
// decisions: a cut at a byte offset or at a moment, in either direction, by RST
// (resetAndDestroy), by FIN on both sides, or by FIN in one direction only; a blackhole
// (nothing forwarded either way, nothing closed) for longer than the heartbeat timeout, then
// healed; and stretches forwarded one byte at a time with small delays. Timing is not
// replayed (it depends on the machine), the decisions are.
import net from 'node:net';

// sfc32 seeded through splitmix32: small, fast, good enough for fault injection.
export function rng(seed) {
  let s = seed >>> 0;
  const mix = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = mix(), b = mix(), c = mix(), d = mix();
  const next = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
  for (let k = 0; k < 12; k++) next();
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), // inclusive
    pick: (list) => list[Math.floor(next() * list.length)],
    chance: (p) => next() < p,
  };
}

export const DEFAULT_PLAN = {
  cut: 0.55,          // share of connections cut
  blackhole: 0.08,    // share of connections blackholed (the rest pass clean)
  slice: 0.25,        // share of connections with a stretch forwarded byte by byte
  cutAfterMs: [20, 2500],   // a cut that no byte offset triggered happens at this moment
  blackholeMs: [1200, 2400], // longer than the server's and the client's dead-peer timeouts
  sliceBytes: [16, 600],
};

// Where in a direction's bytes a cut lands: often inside the first few hundred bytes (the
// HTTP upgrade, the handshake, the welcome), otherwise anywhere up to 64 KiB.
function cutOffset(r) {
  if (r.chance(0.4)) return r.int(0, 400);
  return Math.floor(Math.exp(r.next() * Math.log(65536)));
}

function drawFate(r, plan) {
  const fate = { kind: 'clean', slice: null };
  const x = r.next();
  if (x < plan.cut) {
    fate.kind = 'cut';
    fate.how = r.pick(['rst', 'rst', 'fin', 'fin', 'half']);
    fate.dir = r.pick(['c2s', 's2c']);
    fate.at = cutOffset(r);
    fate.afterMs = r.int(plan.cutAfterMs[0], plan.cutAfterMs[1]);
  } else if (x < plan.cut + plan.blackhole) {
    fate.kind = 'blackhole';
    fate.afterMs = r.int(0, 1500);
    fate.forMs = r.int(plan.blackholeMs[0], plan.blackholeMs[1]);
  }
  if (r.chance(plan.slice)) {
    fate.slice = {
      dir: r.pick(['c2s', 's2c', 'both']),
      from: r.chance(0.5) ? 0 : r.int(0, 4000),
      len: r.int(plan.sliceBytes[0], plan.sliceBytes[1]),
      maxDelay: r.int(0, 3),
    };
  }
  return fate;
}

const later = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// An RST. A socket still connecting is destroyed instead: node's resetAndDestroy() defers the
// reset until the connection completes, and a handle left that way keeps the process from
// exiting (it spins in its exit cleanup).
function reset(sock) {
  if (sock.pending || sock.connecting) sock.destroy();
  else sock.resetAndDestroy();
}

export async function startProxy({ targetPort, seed, name = 'proxy', plan = {} }) {
  const p = { ...DEFAULT_PLAN, ...plan };
  const stats = {
    connections: 0, cuts: 0, rst: 0, fin: 0, half: 0, c2s: 0, s2c: 0,
    blackholes: 0, outageHolds: 0, slicedBytes: 0, bytes: 0,
  };
  const live = new Set();
  let calm = false;   // no faults for new connections, none pending on old ones
  let outage = null;  // while set, every connection is held
  const partitioned = { c2s: false, s2c: false }; // one direction held on every connection
  let holdNext = 0;   // ms to hold the next new connection
  let stallNext = 0;  // ms to hold what the next new connection's client sends after its first chunk

  const sockets = new Set(); // every socket, until it closes, so close() ends them all
  function open(client) {
    const id = ++stats.connections;
    const fate = calm ? { kind: 'clean', slice: null } : drawFate(rng(seed * 1000003 + id), p);
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true });
    const c = {
      id, fate, client, upstream, dead: false, held: !!outage, timers: [],
      dirs: {
        c2s: { src: client, dst: upstream, queue: [], sent: 0, busy: false, done: false },
        s2c: { src: upstream, dst: client, queue: [], sent: 0, busy: false, done: false },
      },
    };
    if (outage) { stats.outageHolds++; outage.add(c); }
    if (stallNext) { c.stallAfterFirst = stallNext; stallNext = 0; }
    if (holdNext) { const ms = holdNext; holdNext = 0; c.held = true; c.timers.push(setTimeout(() => release(c), ms)); }
    live.add(c);
    for (const sock of [client, upstream]) {
      sockets.add(sock);
      sock.once('close', () => sockets.delete(sock));
    }
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    for (const name of ['c2s', 's2c']) {
      const d = c.dirs[name];
      d.src.on('data', (chunk) => { d.queue.push(chunk); pump(c, name); });
      d.src.on('end', () => { d.queue.push('end'); pump(c, name); });
      d.src.on('close', () => { d.queue.push('close'); pump(c, name); });
      d.src.on('error', () => {});
    }
    if (fate.kind === 'cut') c.trigger = setTimeout(() => cut(c, fate.dir), fate.afterMs);
    if (fate.kind === 'blackhole') c.trigger = setTimeout(() => hold(c, fate.forMs), fate.afterMs);
  }

  function finish(c) {
    if (!live.delete(c)) return;
    clearTimeout(c.trigger);
    for (const t of c.timers) clearTimeout(t);
    if (outage) outage.delete(c);
  }

  function cut(c, dir) {
    if (c.dead || c.wasCut || calm) return;
    c.dead = true;
    c.wasCut = true;
    stats.cuts++;
    stats[c.fate.how]++;
    stats[dir]++;
    const d = c.dirs[dir];
    if (c.fate.how === 'rst') {
      reset(c.client);
      reset(c.upstream);
    } else if (c.fate.how === 'fin') {
      c.client.end();
      c.upstream.end();
    } else {
      // One direction ends here; the other keeps flowing until an end point closes.
      c.dead = false;
      d.done = true;
      d.queue.length = 0;
      d.dst.end();
    }
    // Whatever an end point does after a FIN, the connection is gone for good soon.
    c.timers.push(setTimeout(() => { c.client.destroy(); c.upstream.destroy(); finish(c); }, 5000));
  }

  function hold(c, ms) {
    if (c.dead || calm || c.held) return;
    stats.blackholes++;
    c.held = true;
    c.timers.push(setTimeout(() => release(c), ms));
  }

  function release(c) {
    if (outage && outage.has(c)) return; // the outage's end releases it
    c.held = false;
    pump(c, 'c2s');
    pump(c, 's2c');
  }

  function sliced(c, name, offset) {
    const s = c.fate.slice;
    if (!s || calm || (s.dir !== 'both' && s.dir !== name)) return false;
    return offset >= s.from && offset < s.from + s.len;
  }

  // Forwards one direction's queue in order; the only place bytes move.
  async function pump(c, name) {
    const d = c.dirs[name];
    if (d.busy) return;
    d.busy = true;
    try {
      while (d.queue.length && !c.held && !d.held && !partitioned[name]) {
        if (c.dead || d.done) { d.queue.length = 0; break; }
        const item = d.queue[0];
        if (item === 'end') { d.queue.shift(); d.dst.end(); continue; }
        if (item === 'close') {
          // What this side wrote before it closed is flushed first.
          d.queue.shift();
          if (d.dst.writableLength === 0) d.dst.destroy();
          else {
            d.dst.end();
            const t = setTimeout(() => d.dst.destroy(), 2000);
            d.dst.once('close', () => clearTimeout(t));
          }
          if (c.client.destroyed && c.upstream.destroyed) finish(c);
          continue;
        }
        const f = c.fate;
        if (f.kind === 'cut' && f.dir === name && !calm && d.sent + item.length > f.at) {
          const keep = f.at - d.sent;
          if (keep > 0) await write(d, item.subarray(0, keep));
          d.queue.shift();
          cut(c, name);
          continue;
        }
        if (sliced(c, name, d.sent) || sliced(c, name, d.sent + item.length - 1)) {
          // One byte at a time, each after a short delay; the rest of the queue waits.
          let k = sliced(c, name, d.sent) ? 0 : c.fate.slice.from - d.sent;
          if (k > 0) await write(d, item.subarray(0, k));
          while (k < item.length && sliced(c, name, d.sent) && !c.dead && !c.held && !partitioned[name] && !d.done) {
            await write(d, item.subarray(k, k + 1));
            stats.slicedBytes++;
            k++;
            const ms = Math.floor(Math.random() * (c.fate.slice.maxDelay + 1));
            await (ms ? later(ms) : new Promise((r) => setImmediate(r)));
          }
          if (k < item.length) d.queue[0] = item.subarray(k);
          else d.queue.shift();
          continue;
        }
        d.queue.shift();
        await write(d, item);
        if (name === 'c2s' && c.stallAfterFirst) {
          // What the client sends after its first request waits (stallNext).
          const ms = c.stallAfterFirst;
          c.stallAfterFirst = 0;
          d.held = true;
          c.timers.push(setTimeout(() => { d.held = false; pump(c, name); }, ms));
        }
      }
    } finally {
      d.busy = false;
    }
  }

  function write(d, bytes) {
    d.sent += bytes.length;
    stats.bytes += bytes.length;
    if (d.dst.destroyed || d.dst.writableEnded) return Promise.resolve();
    if (d.dst.write(bytes)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { d.dst.off('drain', done); d.dst.off('close', done); resolve(); };
      d.dst.on('drain', done);
      d.dst.on('close', done);
    });
  }

  const server = net.createServer({ allowHalfOpen: true, noDelay: true }, open);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    name,
    port: server.address().port,
    stats,
    // No new faults; pending ones are dropped, blackholes still heal on their timers.
    calm() {
      calm = true;
      for (const c of live) clearTimeout(c.trigger);
    },
    chaos() { calm = false; },
    // Every connection, old and new, is held for `ms`, as if the network went away.
    async outage(ms) {
      outage = new Set();
      for (const c of live) { c.held = true; outage.add(c); }
      await later(ms);
      const held = outage;
      outage = null;
      for (const c of held) if (live.has(c)) release(c);
    },
    // The next connection accepted is held for `ms`, then delivers what it holds.
    holdNext(ms) { holdNext = ms; },
    // The next connection's first chunk from the client (a request, an upgrade) goes through;
    // whatever the client sends after it waits `ms`.
    stallNext(ms) { stallNext = ms; },
    // Every open connection is reset now (no fault counted).
    dropAll() { for (const c of live) { c.dead = true; reset(c.client); reset(c.upstream); } },
    // One direction of every connection, old and new, held until partition(dir, false).
    partition(dir, on) {
      partitioned[dir] = on;
      if (!on) for (const c of live) pump(c, dir);
    },
    close() {
      return new Promise((resolve) => {
        for (const c of live) finish(c);
        for (const sock of sockets) sock.destroy();
        server.close(() => resolve());
      });
    },
  };
}
