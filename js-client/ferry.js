/* ferry.js: the browser client for ferry sessions. No dependencies, no build step.
 *
 *   const client = ferry.connect('/ferry', { transport: 'auto' });
 *   client.on('message', (data, info) => ...);
 *   client.send({ hello: 'world' });
 *
 * Loads as a classic <script> (a global `ferry`), with require() (CommonJS), or as an ES
 * module from <prefix>/ferry.mjs. docs/CLIENT.md documents the options, events and states;
 * docs/PROTOCOL.md the wire protocol it speaks. */
(function (root, factory) {
  var api = factory(root);
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.ferry = api;
})(typeof globalThis !== 'undefined' ? globalThis : this, function (root) {
  'use strict';

  var DEFAULTS = {
    transport: 'auto',     // 'auto', 'websocket' or 'longpoll'
    connectTimeout: 5000,  // ms for a connection to complete its handshake
    minDelay: 250,         // reconnect backoff: full jitter between 0 and
    maxDelay: 15000,       //   min(maxDelay, minDelay * 2^attempt)
    minUptime: 5000,       // ms a connection must stay up before the backoff starts over
    probeInterval: 20000,  // ms between WebSocket probes while long-polling (auto only)
    maxOutbox: 1000,       // messages sent but not yet acknowledged; send() throws beyond
    ackDelay: 2000,        // ms to wait before acknowledging received messages
    pingInterval: 8000,    // ms of silence from the server before the client pings it
    pingTimeout: 5000,     // ms after that ping without any frame: the connection is lost
    token: null,           // sent in every handshake: a string, or a function returning one
    WebSocket: null,       // constructors, for tests and non-browser use
    fetch: null
  };

  // Full-jitter exponential backoff: a uniform delay in [0, min(max, min * 2^attempt)).
  function backoff(attempt, min, max, random) {
    return Math.floor((random || Math.random)() * Math.min(max, min * Math.pow(2, attempt)));
  }

  // An attempt ID for resumes (docs/PROTOCOL.md, Secret rotation): 22 base64url characters,
  // 132 random bits, from crypto.getRandomValues where there is one.
  function randomId() {
    var b = new Uint8Array(22), c = root.crypto, s = '', i;
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (i = 0; i < 22; i++) b[i] = Math.random() * 64;
    for (i = 0; i < 22; i++)
      s += 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.charAt(b[i] & 63);
    return s;
  }

  // The length of a string in UTF-8 bytes (a surrogate pair: 2 + 2).
  function bytes(s) {
    for (var n = s.length, i = 0, c; i < s.length; i++)
      if ((c = s.charCodeAt(i)) > 0x7f) n += c > 0x7ff && (c < 0xd800 || c > 0xdfff) ? 2 : 1;
    return n;
  }

  function rethrow(e) { setTimeout(function () { throw e; }); }

  function msgFrame(m) { return { t: 'msg', seq: m.seq, data: m.data }; }

  // Whether a server answer (a frame or a batch) holds a welcome.
  function welcomes(text) {
    try { return [].concat(JSON.parse(text)).some(function (f) { return f && f.t === 'welcome'; }); }
    catch (e) { return false; }
  }

  // Closes a WebSocket whose events no longer matter. Its error handler stays a no-op:
  // node's `ws` reports closing a connecting socket as an error, fatal without a listener.
  function shut(ws) {
    ws.onclose = ws.onmessage = null;
    ws.onerror = function () {};
    try { ws.close(); } catch (e) {}
  }

  function Client(url, options) {
    var o = {}, k;
    for (k in DEFAULTS) o[k] = DEFAULTS[k];
    for (k in options || {}) o[k] = options[k];
    o.WebSocket = o.WebSocket || root.WebSocket;
    o.fetch = o.fetch || (root.fetch && root.fetch.bind(root));
    this.opts = o;
    var base = String(url).replace(/\/+$/, '');
    if (root.location && !/^[a-z]+:/i.test(base)) base = new URL(base, root.location.href).href;
    this.lpUrl = base + '/lp';
    this.wsUrl = base.replace(/^http/, 'ws') + '/ws';
    this.handlers = {};
    this.state = 'connecting';
    this.transport = null;     // 'websocket' or 'longpoll' once open
    this.sessionId = null;
    this.secret = null;
    this.rid = null;           // the attempt ID of resumes with ridFor, the secret they present
    this.ridFor = null;
    this.lastSeq = 0;          // last server message received, in order
    this.outSeq = 0;           // last client message numbered
    this.outbox = [];          // [{seq, data}] not yet acknowledged by the server
    this.topics = {};          // subscriptions to send again after each welcome
    this.unacked = 0;          // bytes received since our last ack
    this.maxFrame = 0;         // the server's limits, from the last welcome (0: none yet)
    this.maxBatch = 128;
    this.careful = false;      // WebSocket: one message in flight until a refused one shows
    this.gen = 0;              // generation: callbacks from older connections are ignored
    this.attempt = 0;
    this.wsFailed = o.transport === 'longpoll';
    this.conn = null;
    this.timers = {};
    var self = this;
    this.onWake = function () {
      if (self.state === 'reconnecting') self.reconnectNow();
    };
    this.onVisible = function () {
      if (!root.document || root.document.visibilityState === 'visible') self.onWake();
    };
    if (root.addEventListener) root.addEventListener('online', this.onWake);
    if (root.document && root.document.addEventListener)
      root.document.addEventListener('visibilitychange', this.onVisible);
    this.open();
  }

  var P = Client.prototype;

  // ---- events --------------------------------------------------------------------------
  P.on = function (name, fn) {
    (this.handlers[name] = this.handlers[name] || []).push(fn);
    var self = this;
    return function () { self.off(name, fn); };
  };
  P.off = function (name, fn) {
    var list = this.handlers[name] || [];
    var i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  };
  // A handler that throws breaks neither the client nor the other handlers: its exception
  // is thrown again from a timer of its own, so it still reaches window.onerror (or node's
  // 'uncaughtException'), and the frame being processed goes on as if nothing happened.
  P.emit = function (name, a, b) {
    var list = (this.handlers[name] || []).slice();
    for (var i = 0; i < list.length; i++)
      try { list[i].call(this, a, b); } catch (e) { rethrow(e); }
  };
  P.setState = function (s) {
    if (this.state !== s) { this.state = s; this.emit('state', s); }
  };
  P.timer = function (name, ms, fn) {
    clearTimeout(this.timers[name]);
    this.timers[name] = ms >= 0 ? setTimeout(fn, ms) : null;
  };

  // ---- application API ------------------------------------------------------------------
  P.send = function (data) {
    if (this.state === 'closed') throw new Error('ferry: client is closed');
    if (this.outbox.length >= this.opts.maxOutbox) throw new Error('ferry: outbox full');
    var m = { seq: this.outSeq + 1, data: data }, big = this.tooBig(m);
    if (big) throw new Error(big);
    this.outSeq++;
    this.outbox.push(m);
    if (this.state === 'open' && !this.careful) this.write([msgFrame(m)]);
    return m.seq;
  };
  // A message the server would refuse for its size, on every resend: why, or ''. Before the
  // first welcome the limit is unknown; the welcome checks what was queued.
  P.tooBig = function (m) {
    var n = bytes(JSON.stringify(msgFrame(m)));
    return this.maxFrame && n > this.maxFrame
      ? 'ferry: message too big: ' + n + ' bytes, the server accepts ' + this.maxFrame : '';
  };
  // A topic the server would refuse as malformed is refused here, so that every error a
  // WebSocket gets after its welcome, but forbidden, is about a message.
  function topicName(topic) {
    if (!/^[\w.:\/-]{1,128}$/.test(topic)) throw new Error('ferry: bad topic name: ' + topic);
  }
  P.subscribe = function (topic) {
    topicName(topic);
    this.topics[topic] = true;
    if (this.state === 'open') this.write([{ t: 'sub', topic: topic }]);
  };
  P.unsubscribe = function (topic) {
    topicName(topic);
    delete this.topics[topic];
    if (this.state === 'open') this.write([{ t: 'unsub', topic: topic }]);
  };
  P.close = function () {
    if (this.state === 'closed') return;
    // On long-polling the close goes out on a request of its own that finish() leaves alone.
    if (this.state === 'open' && this.conn.kind === 'longpoll')
      this.http('POST', this.lpUrl, '{"t":"close"}', null, true).then(null, function () {});
    else if (this.state === 'open') this.write([{ t: 'close' }]);
    this.finish('closed');
  };

  // ---- connecting -----------------------------------------------------------------------
  // Every retry with the same secret carries the same attempt ID, so the server can tell a
  // late copy of an earlier try from a second holder of the secret; a newer secret, a new ID.
  P.handshake = function () {
    if (this.sessionId && this.ridFor !== this.secret) {
      this.rid = randomId();
      this.ridFor = this.secret;
    }
    var hs = this.sessionId
      ? { t: 'resume', v: 1, sid: this.sessionId, secret: this.secret, ack: this.lastSeq, rid: this.rid }
      : { t: 'hello', v: 1 };
    var tok = typeof this.opts.token === 'function' ? this.opts.token() : this.opts.token;
    return Promise.resolve(tok).then(function (t) {
      if (t != null) hs.token = t;
      return hs;
    });
  };

  P.open = function () {
    this.drop();
    var useWs = this.opts.transport === 'websocket' ||
      (this.opts.transport === 'auto' && !this.wsFailed && this.opts.WebSocket);
    if (useWs) this.openWs(false); else this.openLp();
  };

  // A WebSocket, as the connection or (probe) as a trial while long-polling.
  P.openWs = function (probe) {
    var self = this, gen = probe ? this.gen : ++this.gen, heard = false, ws;
    var fail = function () {
      if (probe) return self.probeDone(ws);
      if (gen !== self.gen) return;
      // Not a word from the server: long-polling at once, on the same session. A server
      // that answered (a refusal) has shown that WebSocket works: retry it after a backoff.
      if (!heard && self.opts.transport === 'auto') {
        self.wsFailed = true;
        self.openLp();
      } else {
        self.lost();
      }
    };
    try { ws = new this.opts.WebSocket(this.wsUrl); } catch (e) { return fail(); }
    if (probe) this.probe = ws; else this.conn = { kind: 'websocket', ws: ws };
    var deadline = setTimeout(function () { if (!heard) { shut(ws); fail(); } },
      this.opts.connectTimeout);
    ws.onopen = function () {
      self.handshake().then(function (hs) { ws.send(JSON.stringify(hs)); })
        .then(null, function () { shut(ws); fail(); }); // a token function that failed
    };
    ws.onmessage = function (ev) {
      if (probe && !heard) {
        // A probe's resume that was welcomed has taken the session over from long-polling:
        // move up. A refusal (capacity, rate_limited, ...) changed nothing: long-polling
        // goes on, and the next probe follows after probeInterval.
        if (self.probe !== ws || !welcomes(ev.data)) {
          clearTimeout(deadline);
          shut(ws);
          return self.probeDone(ws);
        }
        self.probe = null;
        self.drop();
        gen = ++self.gen;
        self.conn = { kind: 'websocket', ws: ws };
        self.wsFailed = false;
        probe = false;
      }
      if (gen !== self.gen) return;
      heard = true;
      clearTimeout(deadline);
      self.receive(ev.data);
    };
    ws.onclose = ws.onerror = function () {
      clearTimeout(deadline);
      ws.onclose = ws.onerror = ws.onmessage = null;
      fail();
    };
  };

  P.openLp = function () {
    var self = this, gen = ++this.gen;
    var c = this.conn = { kind: 'longpoll', ctl: root.AbortController ? new AbortController() : null };
    // A handshake the network swallows is given up, as a WebSocket's is.
    this.timer('connect', this.opts.connectTimeout, function () { if (gen === self.gen) self.lost(); });
    this.handshake().then(function (hs) {
      return self.http('POST', self.lpUrl, JSON.stringify(hs), c, false);
    }).then(function (r) {
      if (gen !== self.gen) return;
      // A welcome (200), or a refusal whose error frame says why (400, 401, 403, 429, 503);
      // anything else (a proxy's error page) does not parse and is lost() as well.
      self.receive(r.text);
      if (gen !== self.gen) return;
      if (self.state === 'open') self.poll(gen);
      else self.lost();
    }, function () { if (gen === self.gen) self.lost(); });
  };

  P.poll = function (gen) {
    var self = this, c = this.conn;
    c.since = Date.now();
    this.http('GET', this.lpUrl + '?ack=' + this.lastSeq, null, c, true).then(function (r) {
      if (gen !== self.gen) return;
      if (r.status !== 200) return self.lost(); // 404: the link is gone; a resume says why
      self.receive(r.text);
      if (gen === self.gen && self.state === 'open') self.poll(gen);
    }, function () { if (gen === self.gen) self.lost(); });
    this.armProbe();
  };

  // While long-polling in 'auto', a WebSocket probe every probeInterval.
  P.armProbe = function () {
    var self = this;
    if (this.opts.transport === 'auto' && this.opts.WebSocket && !this.timers.probe)
      this.timer('probe', this.opts.probeInterval, function () {
        self.timers.probe = null;
        if (self.conn && self.conn.kind === 'longpoll' && self.state === 'open' && !self.probe)
          self.openWs(true);
      });
  };
  P.probeDone = function (ws) {
    if (this.probe !== ws) return;
    this.probe = null;
    this.armProbe();
  };

  // Polls and sends name the session in a header, never in the URL. The requests of a
  // connection `c` are aborted when it is dropped: one stuck on a dead network would hold one
  // of the few connections a browser opens to a host. `c` null: a request left to finish.
  P.http = function (method, url, body, c, auth) {
    var init = { method: method, cache: 'no-store', headers: {} };
    if (body != null) { init.body = body; init.headers['Content-Type'] = 'text/plain'; }
    if (auth) init.headers.Authorization = 'Bearer ' + this.sessionId + ':' + this.secret;
    if (c && c.ctl) init.signal = c.ctl.signal;
    return this.opts.fetch(url, init).then(function (res) {
      return res.text().then(function (text) { return { status: res.status, text: text }; });
    });
  };

  // Sends frames on the current connection; what is lost is resent after the next welcome.
  // Frames go out in batches the server accepts: at most max_batch frames and max_frame
  // bytes each, or one frame each when `one`.
  P.split = function (frames, one) {
    var out = [], g = null, size = 0;
    for (var i = 0; i < frames.length; i++) {
      var t = JSON.stringify(frames[i]), n = bytes(t) + 1;
      if (!g || one || g.f.length >= this.maxBatch || size + n > (this.maxFrame || 65536))
        out.push(g = { f: [], t: [] }), size = 2;
      g.f.push(frames[i]);
      g.t.push(t);
      size += n;
    }
    for (i = 0; i < out.length; i++) out[i].text = out[i].t.length > 1 ? '[' + out[i].t + ']' : out[i].t[0];
    return out;
  };

  P.write = function (frames) {
    var c = this.conn, i;
    if (!c) return;
    if (this.unacked && this.lastSeq) { frames.push({ t: 'ack', ack: this.lastSeq }); this.unacked = 0; }
    var groups = this.split(frames, c.one);
    if (!groups.length) return;
    if (c.kind === 'websocket') {
      try { for (i = 0; i < groups.length; i++) c.ws.send(groups[i].text); } catch (e) { /* the close event follows */ }
      return;
    }
    // Long-polling: one send in flight at a time, so the server gets messages in order;
    // what is written meanwhile goes out in batches when it completes.
    if (c.busy) { c.queue = (c.queue || []).concat(frames); return; }
    var g = groups[0], rest = [];
    for (i = 1; i < groups.length; i++) rest = rest.concat(groups[i].f);
    if (rest.length) c.queue = rest.concat(c.queue || []);
    c.busy = true;
    c.err = false;
    var self = this, gen = this.gen;
    this.http('POST', this.lpUrl, g.text, c, true)
      .then(function (r) {
        if (gen !== self.gen) return;
        if (!((r.status === 400 || r.status === 413) && self.refused(c, g.f, r.text))) {
          if (r.text) self.receive(r.text);
          if (r.status !== 200) return self.lost(); // resumes, resending what was not acked
        }
        if (gen !== self.gen) return;
        c.busy = false;
        var q = c.queue;
        c.queue = null;
        if (q && self.conn === c) self.write(q);
        else c.one = false;
      }, function () { if (gen === self.gen) self.lost(); });
  };

  // Long-polling: the server refused a send and applied none of it; the connection goes on.
  // A 400 or 413 with an error frame, or a 400 without one while the held poll got an error
  // frame (the server may hand it there); otherwise a 400 is a body cut short on the way,
  // and false sends the client to lost(). A batch, or a send whose error went to the poll,
  // is sent again one frame at a time, so a refusal names its frame. A message refused alone
  // is dropped, with an error event that carries its data, and the later ones move down a
  // seq, so the server sees no gap: sending it again forever would never get past it.
  P.refused = function (c, frames, text) {
    var err, f = frames[0], q = [], i, k;
    try { err = [].concat(JSON.parse(text))[0]; } catch (e) { /* a proxy's page */ }
    if (!err || err.t !== 'error') err = null;
    if (!err && !c.err) return false;
    if (!err || frames.length > 1) {
      c.one = true;
      c.queue = frames.concat(c.queue || []);
    } else if (f.t !== 'msg') {
      this.emit('error', err);
    } else {
      k = this.dropRefused(f.seq, err);
      for (i = 0; c.queue && i < c.queue.length; i++) if (c.queue[i].t !== 'msg') q.push(c.queue[i]);
      for (i = k; i < this.outbox.length; i++) q.push(msgFrame(this.outbox[i]));
      c.queue = q.length ? q : null;
    }
    return true;
  };

  // Drops a message the server refused alone, with an error event that carries its data;
  // the ones after it move down a seq, so the server sees no gap. Returns where it was.
  P.dropRefused = function (seq, err) {
    for (var k = 0; k < this.outbox.length && this.outbox[k].seq !== seq; k++);
    var m = this.outbox.splice(k, 1)[0];
    this.outSeq--;
    for (var i = k; i < this.outbox.length; i++) this.outbox[i].seq--;
    err.data = m && m.data;
    this.emit('error', err);
    return k;
  };

  // Careful sending, on WebSocket after a refusal: one message in flight at a time, the
  // next once it is acknowledged, so a refusal names its message.
  P.nextCareful = function () {
    if (!this.outbox.length) this.careful = false;
    else this.write([msgFrame(this.outbox[0])]);
  };

  // ---- receiving ------------------------------------------------------------------------
  // Frames after one that dropped the connection (a reset, a close) are not processed.
  P.receive = function (text) {
    var frames, gen = this.gen;
    try { frames = JSON.parse(text); } catch (e) { return this.lost(); }
    if (!Array.isArray(frames)) frames = [frames];
    this.lastRx = Date.now();
    for (var i = 0; i < frames.length && gen === this.gen; i++) this.frame(frames[i]);
  };

  P.frame = function (f) {
    switch (f.t) {
      case 'welcome': return this.welcome(f);
      case 'msg':
        if (f.seq <= this.lastSeq) return;          // a replay we already have
        if (f.seq !== this.lastSeq + 1) return this.lost(); // never expected: resume fills it
        this.lastSeq = f.seq;
        this.unacked += 40 + JSON.stringify(f.data).length;
        if (this.unacked >= this.ackBytes / 2) this.sendAck();
        else if (!this.timers.ack) {
          var self = this;
          this.timer('ack', this.opts.ackDelay, function () { self.timers.ack = null; self.sendAck(); });
        }
        return this.emit('message', f.data, { seq: f.seq, topic: f.topic });
      case 'ack':
        var n = this.outbox.length;
        while (this.outbox.length && this.outbox[0].seq <= f.ack) this.outbox.shift();
        if (this.careful && this.outbox.length < n) this.nextCareful();
        return;
      case 'ping': return this.write([{ t: 'pong' }]);
      case 'close':
        if (f.reason !== 'shutdown') return this.finish('closed', f.reason);
        // The server is stopping: the session is gone, as after a reset. Start anew once
        // it is back; the reset event comes with the new session's welcome.
        // falls through
      case 'reset':
        // In a handshake's answer a welcome for a new session follows; on a welcomed
        // connection the session has ended: start anew with hello. `ack`: the last of our
        // messages the old session delivered (absent for reason unknown).
        this.resetReason = f.reason;
        this.resetAck = f.ack;
        if (this.conn && this.conn.welcomed) { this.sessionId = null; this.lost(); }
        return;
      case 'error':
        // Before the welcome an error refuses the handshake (origin, unauthorized, capacity,
        // ...) and the server closes: reconnect after a backoff (lost() decides how long).
        if (this.state !== 'open') {
          this.emit('error', f);
          this.refusal = f.code;
          return this.lost();
        }
        // On long-polling the held poll may take a send's error frame before the send does.
        if (this.conn.busy && f.code !== 'forbidden') { this.conn.err = true; return; }
        if (f.code === 'forbidden' || this.conn.kind !== 'websocket' || !this.outbox.length)
          return this.emit('error', f);
        if (f.code === 'internal') return this.lost(); // nothing applied, for now: resume, resend
        // On WebSocket every other refusal is of a message, but which one cannot be told
        // (several may be in flight): resume, and send carefully until it shows.
        if (!this.careful) { this.careful = true; return this.lost(); }
        this.dropRefused(this.outbox[0].seq, f);
        return this.nextCareful();
    }
  };

  P.sendAck = function () {
    clearTimeout(this.timers.ack);
    this.timers.ack = null;
    if (this.unacked && this.state === 'open' && this.conn && this.conn.kind === 'websocket')
      this.write([]);
    else this.unacked = 0; // long-polling acks with every poll
  };

  P.welcome = function (w) {
    var self = this, resumed = w.resumed, reason = this.resetReason, acked = this.resetAck, big = [],
      gen = this.gen;
    this.resetReason = this.resetAck = null;
    this.maxFrame = w.max_frame || 65536;
    this.maxBatch = w.max_batch || 128;
    if (!resumed) {
      var lost = this.sessionId !== null || reason;
      this.lastSeq = 0;
      if (lost) {
        // A new session replaces one that could not be resumed. The messages the old one
        // did not deliver are handed to the application, which may send them again.
        var messages = [];
        for (var k = 0; k < this.outbox.length; k++)
          if (!(this.outbox[k].seq <= acked)) messages.push(this.outbox[k].data);
        this.outbox = [];
        this.outSeq = 0;
        this.sessionId = w.sid;
        this.secret = w.secret;
        this.emit('reset', { reason: reason || 'unknown', unsent: messages.length, messages: messages });
        if (gen !== this.gen) return; // the application closed the client
      } else {
        // First session: what was sent before it opened goes out now, numbered from 1, but
        // for a message over the server's max_frame: dropped, with an error event.
        var queued = this.outbox;
        this.outbox = [];
        for (var i = 0; i < queued.length; i++) {
          var m = { seq: this.outbox.length + 1, data: queued[i].data }, why = this.tooBig(m);
          if (why) big.push({ t: 'error', code: 'too_big', text: why, data: m.data });
          else this.outbox.push(m);
        }
        this.outSeq = this.outbox.length;
      }
    }
    this.sessionId = w.sid;
    this.secret = w.secret;
    this.ackBytes = w.ack_bytes || 65536;
    this.hb = w.hb || 25000;
    this.deadAfter = w.timeout || 60000;
    while (this.outbox.length && this.outbox[0].seq <= w.ack) this.outbox.shift();
    var frames = [];
    for (var t in this.topics) frames.push({ t: 'sub', topic: t });
    if (this.careful && (this.conn.kind !== 'websocket' || !this.outbox.length)) this.careful = false;
    for (var j = 0; j < (this.careful ? 1 : this.outbox.length); j++) frames.push(msgFrame(this.outbox[j]));
    this.conn.welcomed = true;
    this.transport = this.conn.kind;
    this.timer('connect', -1);
    this.setState('open');
    // A frame at once retires the secret this connection's handshake presented, so a late
    // copy of that handshake cannot take the session over. A poll does it on long-polling.
    if (!frames.length && this.transport === 'websocket') {
      frames.push({ t: 'ack', ack: this.lastSeq });
      this.unacked = 0;
    }
    if (frames.length) this.write(frames);
    this.emit('transport', this.transport);
    this.emit('open', { resumed: resumed, transport: this.transport });
    for (j = 0; j < big.length && this.state === 'open'; j++) this.emit('error', big[j]);
    this.timer('uptime', this.opts.minUptime, function () { self.attempt = 0; });
    if (this.conn) this.watch();
  };

  // Liveness. After pingInterval without a frame from the server, ping it; if pingTimeout
  // later still nothing has come, the connection is lost. A quiet long-poll is no exception:
  // its ping is a send, answered at once with a pong however long the held poll waits. A poll
  // the server has left unanswered past its heartbeat timeout is taken for dead as well.
  // pingInterval 0 follows the welcome instead: ping after hb, give up at timeout.
  P.watch = function () {
    var self = this, o = this.opts, c = this.conn, now = Date.now();
    var every = o.pingInterval || this.hb, wait = o.pingInterval ? o.pingTimeout : this.deadAfter - this.hb;
    if ((c.pinged && this.lastRx < c.pinged) || now - (c.since || now) > this.deadAfter) return this.lost();
    var idle = now - this.lastRx;
    c.pinged = idle >= every ? now : 0;
    if (c.pinged) this.write([{ t: 'ping' }]);
    this.timer('alive', c.pinged ? wait : every - idle, function () { self.watch(); });
  };

  // ---- losing and ending ----------------------------------------------------------------
  P.drop = function () {
    var c = this.conn, p = this.probe;
    this.conn = this.probe = null;
    this.gen++;
    if (c && c.ws) shut(c.ws);
    if (c && c.ctl) c.ctl.abort();
    if (p) shut(p);
    this.timer('alive', -1);
    this.timer('probe', -1);
    this.timer('uptime', -1);
    this.timer('connect', -1);
  };

  // The connection is gone: reconnect after a jittered backoff and resume. A refusal that
  // retrying soon will not change (origin, credentials, a malformed handshake) waits longer,
  // between maxDelay / 2 and maxDelay; a full server (capacity, rate_limited) and every
  // other failure follow the growing backoff.
  P.lost = function () {
    if (this.state === 'closed') return;
    this.drop();
    this.transport = null;
    this.setState('reconnecting');
    var self = this, o = this.opts, ms = backoff(this.attempt++, o.minDelay, o.maxDelay);
    if (this.refusal && !/^(capacity|rate_limited|internal)$/.test(this.refusal))
      ms = (o.maxDelay + backoff(0, o.maxDelay, o.maxDelay)) / 2;
    this.refusal = null;
    if (o.transport === 'auto') this.wsFailed = false; // try to go back up each time
    this.timer('retry', ms, function () { self.open(); });
  };

  P.reconnectNow = function () {
    this.timer('retry', -1);
    this.open();
  };

  P.finish = function (state, reason) {
    this.drop();
    for (var k in this.timers) clearTimeout(this.timers[k]);
    this.timers = {};
    if (root.removeEventListener) root.removeEventListener('online', this.onWake);
    if (root.document && root.document.removeEventListener)
      root.document.removeEventListener('visibilitychange', this.onVisible);
    this.transport = null;
    this.setState(state);
    this.emit('close', { reason: reason || 'client' });
  };

  return {
    connect: function (url, options) { return new Client(url, options); },
    backoff: backoff,
    version: 1
  };
});
