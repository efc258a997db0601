// Real JS clients (js-client/ferry.js, through its public API) that send numbered messages
// and record, in order, everything the application sees: stream messages, each session's
// start marker, resets with their reason and unsent count, errors and transports.
import { ferry, WebSocket } from './lib.mjs';

export const CLIENT_OPTIONS = {
  minDelay: 20,
  maxDelay: 400,
  minUptime: 1000,
  connectTimeout: 1500,
  probeInterval: 400,
  ackDelay: 300,
  pingInterval: 400,
  pingTimeout: 800,
};

export class ChaosClient {
  constructor(url, id, transport, options = {}) {
    this.id = id;
    this.mode = transport;
    this.sent = 0;         // the n of the last message handed to send()
    this.log = [];         // numbers (stream i), {start}, {reset, unsent, sent}
    this.resets = [];      // {reason, unsent, sent}
    this.errors = [];
    this.transports = [];  // every transport change
    this.opens = 0;
    this.closed = null;
    this.inflight = 0;     // HTTP requests not yet settled, so a test can wait for them
    // options.fetch and options.WebSocket replace the defaults (a test that tags requests).
    const fetchFn = options.fetch || fetch;
    const counted = (...args) => {
      this.inflight++;
      return fetchFn(...args).finally(() => { this.inflight--; });
    };
    this.c = ferry.connect(url, {
      ...CLIENT_OPTIONS, ...options, transport, token: id, WebSocket: options.WebSocket || WebSocket,
      fetch: counted,
    });
    this.c.on('message', (data) => {
      if (data && typeof data.i === 'number') this.log.push(data.i);
      else if (data && typeof data.start === 'number') this.log.push({ start: data.start });
      else this.log.push({ other: data });
    });
    this.c.on('reset', (r) => {
      const rec = { reason: r && r.reason, unsent: r && r.unsent, sent: this.sent };
      this.resets.push(rec);
      this.log.push({ reset: rec.reason, unsent: rec.unsent, sent: rec.sent });
    });
    this.c.on('error', (e) => this.errors.push(e));
    this.c.on('open', () => { this.opens++; });
    this.c.on('transport', (t) => {
      if (this.transports[this.transports.length - 1] !== t) this.transports.push(t);
    });
    this.c.on('close', (e) => { this.closed = e; });
  }

  // The client's next message; false if the outbox is full (tried again later, same n).
  sendNext() {
    try {
      this.c.send({ c: this.id, n: this.sent + 1 });
    } catch {
      return false;
    }
    this.sent++;
    return true;
  }

  // The last stream number seen, or 0.
  lastI() {
    for (let k = this.log.length - 1; k >= 0; k--) if (typeof this.log[k] === 'number') return this.log[k];
    return 0;
  }

  // Has everything up to `published`, or its session began after it.
  caughtUp(published) {
    for (let k = this.log.length - 1; k >= 0; k--) {
      const e = this.log[k];
      if (typeof e === 'number') return e >= published;
      if (e.start !== undefined) return e.start > published;
    }
    return false;
  }

  close() {
    if (this.c.state !== 'closed') this.c.close();
  }
}

// Many clients sending every few ms each; start() and stop() the sending.
export class Fleet {
  constructor(url, prefix, spec, rnd) {
    this.url = url;
    this.prefix = prefix;
    this.clients = [];
    this.rnd = rnd;
    this.count = 0;
    for (const [transport, count] of Object.entries(spec))
      for (let j = 0; j < count; j++) this.add(transport);
    this.timer = null;
  }

  add(transport) {
    const c = new ChaosClient(this.url, `${this.prefix}-${transport}-${this.count++}`, transport);
    this.clients.push(c);
    return c;
  }

  // Churn: one running client ends its session for good, a new one of the same kind starts.
  replaceOne() {
    const running = this.clients.filter((c) => !c.closedEarly);
    const gone = running[Math.floor(this.rnd.next() * running.length)];
    gone.closedEarly = true;
    gone.close();
    return this.add(gone.mode);
  }

  start(everyMs = 40) {
    const tick = () => {
      for (const c of this.clients) if (!c.closedEarly && this.rnd.next() < 0.5) c.sendNext();
      this.timer = setTimeout(tick, Math.floor(everyMs / 2 + this.rnd.next() * everyMs));
    };
    tick();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  close() {
    this.stop();
    for (const c of this.clients) c.close();
  }
}
