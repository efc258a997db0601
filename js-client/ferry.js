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
    connectTimeout: 5000,  // ms for a WebSocket to complete its handshake before falling back
    minDelay: 250,         // reconnect backoff: full jitter between 0 and
    maxDelay: 15000,       //   min(maxDelay, minDelay * 2^attempt)
    minUptime: 5000,       // ms a connection must stay up before the backoff starts over
    probeInterval: 20000,  // ms between WebSocket probes while long-polling (auto only)
    maxOutbox: 1000,       // messages sent but not yet acknowledged; send() throws beyond
    ackDelay: 2000,        // ms to wait before acknowledging received messages
    token: null,           // sent in every handshake: a string, or a function returning one
    WebSocket: null,       // constructors, for tests and non-browser use
    fetch: null
  };

  // Full-jitter exponential backoff: a uniform delay in [0, min(max, min * 2^attempt)).
  function backoff(attempt, min, max, random) {
    return Math.floor((random || Math.random)() * Math.min(max, min * Math.pow(2, attempt)));
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
    this.lastSeq = 0;          // last server message received, in order
    this.outSeq = 0;           // last client message numbered
    this.outbox = [];          // [{seq, data}] not yet acknowledged by the server
    this.topics = {};          // subscriptions to send again after each welcome
    this.unacked = 0;          // bytes received since our last ack
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
  P.emit = function (name, a, b) {
    var list = (this.handlers[name] || []).slice();
    for (var i = 0; i < list.length; i++) list[i].call(this, a, b);
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
    var m = { seq: ++this.outSeq, data: data };
    this.outbox.push(m);
    if (this.state === 'open') this.write([{ t: 'msg', seq: m.seq, data: data }]);
    return m.seq;
  };
  P.subscribe = function (topic) {
    this.topics[topic] = true;
    if (this.state === 'open') this.write([{ t: 'sub', topic: topic }]);
  };
  P.unsubscribe = function (topic) {
    delete this.topics[topic];
    if (this.state === 'open') this.write([{ t: 'unsub', topic: topic }]);
  };
  P.close = function () {
    if (this.state === 'closed') return;
    if (this.state === 'open') this.write([{ t: 'close' }]);
    this.finish('closed');
  };

  // ---- connecting -----------------------------------------------------------------------
  P.handshake = function () {
    var hs = this.sessionId
      ? { t: 'resume', v: 1, sid: this.sessionId, secret: this.secret, ack: this.lastSeq }
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
    var self = this, gen = probe ? this.gen : ++this.gen, welcomed = false, ws;
    var fail = function () {
      if (probe) { if (self.probe === ws) self.probe = null; return; }
      if (gen !== self.gen) return;
      if (!welcomed && self.opts.transport === 'auto' && !self.refused) {
        self.wsFailed = true;     // fall back at once, on the same session
        self.openLp();
      } else {
        self.lost();
      }
    };
    try { ws = new this.opts.WebSocket(this.wsUrl); } catch (e) { return fail(); }
    if (probe) this.probe = ws; else this.conn = { kind: 'websocket', ws: ws };
    var deadline = setTimeout(function () { if (!welcomed) { try { ws.close(); } catch (e) {} fail(); } },
      this.opts.connectTimeout);
    ws.onopen = function () {
      self.handshake().then(function (hs) { ws.send(JSON.stringify(hs)); });
    };
    ws.onmessage = function (ev) {
      if (probe && !welcomed) {
        // The probe's resume has taken the session over from long-polling: move up.
        if (self.probe !== ws) return ws.close();
        self.probe = null;
        self.drop();
        gen = ++self.gen;
        self.conn = { kind: 'websocket', ws: ws };
        self.wsFailed = false;
        probe = false;
      }
      if (gen !== self.gen) return;
      welcomed = true;
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
    this.conn = { kind: 'longpoll', ctl: root.AbortController ? new AbortController() : null };
    this.handshake().then(function (hs) {
      return self.http('POST', self.lpUrl, JSON.stringify(hs), gen, false);
    }).then(function (r) {
      if (gen !== self.gen) return;
      if (r.status === 200 || r.status === 400 || r.status === 401) self.receive(r.text);
      if (gen !== self.gen) return;
      if (self.state === 'open') self.poll(gen);
      else self.lost(); // refused (401), full (503) or broken: retry after a backoff
    }, function () { if (gen === self.gen) self.lost(); });
  };

  P.poll = function (gen) {
    var self = this;
    this.http('GET', this.lpUrl + '?ack=' + this.lastSeq, null, gen, true).then(function (r) {
      if (gen !== self.gen) return;
      if (r.status !== 200) return self.lost(); // 404: the link is gone; a resume says why
      self.receive(r.text);
      if (gen === self.gen && self.state === 'open') self.poll(gen);
    }, function () { if (gen === self.gen) self.lost(); });
    if (this.opts.transport === 'auto' && this.opts.WebSocket && !this.timers.probe)
      this.timer('probe', this.opts.probeInterval, function () {
        self.timers.probe = null;
        if (self.conn && self.conn.kind === 'longpoll' && self.state === 'open' && !self.probe)
          self.openWs(true);
      });
  };

  // Polls and sends name the session in a header, never in the URL.
  P.http = function (method, url, body, gen, auth) {
    var init = { method: method, cache: 'no-store', headers: {} };
    if (body != null) { init.body = body; init.headers['Content-Type'] = 'text/plain'; }
    if (auth) init.headers.Authorization = 'Bearer ' + this.sessionId + ':' + this.secret;
    // Only polls are aborted when the connection is dropped; sends run to completion.
    if (method === 'GET' && this.conn && this.conn.ctl && gen === this.gen) init.signal = this.conn.ctl.signal;
    return this.opts.fetch(url, init).then(function (res) {
      return res.text().then(function (text) { return { status: res.status, text: text }; });
    });
  };

  // Sends frames on the current connection; what is lost is resent after the next welcome.
  P.write = function (frames) {
    var c = this.conn;
    if (!c) return;
    if (this.unacked && this.lastSeq) { frames.push({ t: 'ack', ack: this.lastSeq }); this.unacked = 0; }
    var text = JSON.stringify(frames.length === 1 ? frames[0] : frames);
    if (c.kind === 'websocket') {
      try { c.ws.send(text); } catch (e) { /* the close event follows */ }
      return;
    }
    // Long-polling: one send in flight at a time, so the server gets messages in order;
    // what is written meanwhile goes out as one batch when it completes.
    if (c.busy) { c.queue = (c.queue || []).concat(frames); return; }
    c.busy = true;
    var self = this, gen = this.gen;
    this.http('POST', this.lpUrl, text, gen, true)
      .then(function (r) {
        if (gen !== self.gen) return;
        if (r.text) self.receive(r.text);
        if (r.status !== 200) return self.lost(); // resumes, resending what was not acked
        c.busy = false;
        var q = c.queue;
        c.queue = null;
        if (q && self.conn === c) self.write(q);
      }, function () { if (gen === self.gen) self.lost(); });
  };

  // ---- receiving ------------------------------------------------------------------------
  P.receive = function (text) {
    var frames;
    try { frames = JSON.parse(text); } catch (e) { return this.lost(); }
    if (!Array.isArray(frames)) frames = [frames];
    this.lastRx = Date.now();
    for (var i = 0; i < frames.length && this.state !== 'closed'; i++) this.frame(frames[i]);
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
        while (this.outbox.length && this.outbox[0].seq <= f.ack) this.outbox.shift();
        return;
      case 'ping': return this.write([{ t: 'pong' }]);
      case 'reset':
        this.resetReason = f.reason;
        if (this.state === 'open') { this.sessionId = null; this.lost(); } // mid-session: start anew
        return;
      case 'close': return this.finish('closed', f.reason);
      case 'error':
        // Refused credentials: the server closes; retry (a token function may refresh it)
        // on the same transport rather than take it for a broken WebSocket.
        if (f.code === 'unauthorized') this.refused = true;
        if (f.code === 'capacity') this.lost();
        return this.emit('error', f);
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
    var self = this, resumed = w.resumed, reason = this.resetReason;
    this.resetReason = null;
    this.refused = false;
    if (!resumed) {
      var lost = this.sessionId !== null || reason;
      this.lastSeq = 0;
      if (lost) {
        // A new session replaces one that could not be resumed: its unsent messages are gone.
        var unsent = this.outbox.length;
        this.outbox = [];
        this.outSeq = 0;
        this.sessionId = w.sid;
        this.secret = w.secret;
        this.emit('reset', { reason: reason || 'unknown', unsent: unsent });
      } else {
        // First session: what was sent before it opened goes out now, numbered from 1.
        for (var i = 0; i < this.outbox.length; i++) this.outbox[i].seq = i + 1;
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
    for (var j = 0; j < this.outbox.length; j++)
      frames.push({ t: 'msg', seq: this.outbox[j].seq, data: this.outbox[j].data });
    this.transport = this.conn.kind;
    this.setState('open');
    if (frames.length) this.write(frames);
    this.emit('transport', this.transport);
    this.emit('open', { resumed: resumed, transport: this.transport });
    this.timer('uptime', this.opts.minUptime, function () { self.attempt = 0; });
    this.timer('alive', this.hb / 2, function check() {
      var idle = Date.now() - self.lastRx;
      if (idle >= self.deadAfter) return self.lost();
      if (idle >= self.hb && self.conn && self.conn.kind === 'websocket') self.write([{ t: 'ping' }]);
      self.timer('alive', self.hb / 2, check);
    });
  };

  // ---- losing and ending ----------------------------------------------------------------
  P.drop = function () {
    var c = this.conn, p = this.probe;
    this.conn = this.probe = null;
    this.gen++;
    if (c && c.ws) { c.ws.onclose = c.ws.onerror = c.ws.onmessage = null; try { c.ws.close(); } catch (e) {} }
    if (c && c.ctl) c.ctl.abort();
    if (p) { p.onclose = p.onerror = p.onmessage = null; try { p.close(); } catch (e) {} }
    this.timer('alive', -1);
    this.timer('probe', -1);
    this.timer('uptime', -1);
  };

  // The connection is gone: reconnect after a jittered backoff and resume.
  P.lost = function () {
    if (this.state === 'closed') return;
    this.drop();
    this.transport = null;
    this.setState('reconnecting');
    var self = this, ms = backoff(this.attempt++, this.opts.minDelay, this.opts.maxDelay);
    if (this.opts.transport === 'auto') this.wsFailed = false; // try to go back up each time
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
