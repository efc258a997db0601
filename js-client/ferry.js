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

  // A server answer (a frame or a batch) as a list of frames; null if it does not parse.
  function parse(text) {
    try { return [].concat(JSON.parse(text)); } catch (e) { return null; }
  }

  // The welcome among a handshake answer's frames, or null.
  function welcomeIn(frames) {
    return (frames || []).filter(function (f) { return f && f.t === 'welcome'; })[0] || null;
  }

  // Closes a WebSocket whose events no longer matter. Its error handler stays a no-op:
  // node's `ws` reports closing a connecting socket as an error, fatal without a listener.
  function shut(ws) {
    ws.onclose = ws.onmessage = null;
    ws.onerror = function () {};
    try { ws.close(); } catch (e) {}
  }

  // A topic the server would refuse as malformed is refused here, so that every error a
  // WebSocket gets after its welcome, but forbidden, is about a message.
  function topicName(topic) {
    if (!/^[\w.:\/-]{1,128}$/.test(topic)) throw new Error('ferry: bad topic name: ' + topic);
  }

  // ---- transports -----------------------------------------------------------------------
  // Each transport is one object with the same surface, made for one connection and thrown
  // away with it:
  //   kind         'websocket' or 'longpoll'
  //   polls        long-polling: every poll carries the ack and retires the handshake's
  //                secret, a send's refusal comes back on that send
  //   since        when the held poll was sent (0: none), for liveness
  //   asked        the handshake has gone out
  //   welcomed     set by the client when the handshake is welcomed
  //   open()       connects and sends the handshake, from cb.handshake() (a promise)
  //   send(frames) sends frames, in the batches cb.split(frames, one) makes
  //   bye()        says close to the server, the way the transport can
  //   close()      drops the connection; nothing is called back from it afterwards
  // It calls back cb.text(t, text) with what the server sent and cb.lost(t, silent, code) when
  // the connection is gone (silent: a WebSocket that never heard a word from the server;
  // code: a WebSocket's close code).

  function webSocket(url, Ctor, timeout, cb) {
    var ws = null, heard = false, dead = false, deadline = null;
    var t = {
      kind: 'websocket', polls: false, since: 0, asked: false, welcomed: false,
      open: function () {
        try { ws = new Ctor(url); } catch (e) { return fail(); }
        deadline = setTimeout(fail, timeout);
        ws.onopen = function () {
          cb.handshake().then(function (hs) {
            if (!dead) { ws.send(JSON.stringify(hs)); t.asked = true; }
          }).then(null, fail); // a token function that failed
        };
        ws.onmessage = function (ev) {
          if (dead) return;
          heard = true;
          clearTimeout(deadline);
          cb.text(t, ev.data);
        };
        // fail() shuts the socket, which detaches them. The close code tells a server that
        // is going away (1012 service restart, 1001 going away) from a lost connection.
        ws.onclose = function (ev) { fail(ev && ev.code); };
        ws.onerror = function () { fail(); };
      },
      send: function (frames) {
        var groups = cb.split(frames, false);
        try { for (var i = 0; i < groups.length; i++) ws.send(groups[i].text); }
        catch (e) { /* the close event follows */ }
      },
      bye: function () { t.send([{ t: 'close' }]); },
      close: function () {
        dead = true;
        clearTimeout(deadline);
        if (ws) shut(ws);
      }
    };
    function fail(code) {
      if (dead) return;
      t.close();
      cb.lost(t, !heard, code);
    }
    return t;
  }

  // Long-polling: a POST for the handshake, then a held GET at a time, and one send (POST)
  // in flight at a time, so the server gets messages in order; what is written meanwhile
  // goes out in batches when it completes. Polls and sends name the session in a header,
  // never in the URL. Every request is aborted when the connection is dropped: one stuck on
  // a dead network would hold one of the few connections a browser opens to a host.
  function longPoll(url, fetchFn, timeout, cb) {
    var ctl = root.AbortController ? new AbortController() : null, dead = false, deadline = null,
      busy = false, queue = null, one = false, polling = false, doomed = false;
    var t = {
      kind: 'longpoll', polls: true, since: 0, asked: false, welcomed: false,
      open: function () {
        // A handshake the network swallows is given up, as a WebSocket's is.
        deadline = setTimeout(fail, timeout);
        cb.handshake().then(function (hs) {
          t.asked = true;
          // A resume names its session (public) in the URL too, so that a load balancer can
          // send it where the session's polls go.
          var u = hs.sid ? url + '?sid=' + encodeURIComponent(hs.sid) : url;
          return http('POST', u, JSON.stringify(hs), false, false);
        }).then(function (r) {
          if (dead) return;
          clearTimeout(deadline);
          // A welcome (200), or a refusal whose error frame says why (400, 401, 403, 429,
          // 503); anything else (a proxy's error page) does not parse and is lost as well.
          cb.text(t, r.text);
          if (dead) return;
          if (t.welcomed) poll(); else fail();
        }, fail);
      },
      send: function (frames) {
        if (!frames.length) return;
        if (busy) { queue = (queue || []).concat(frames); return; }
        // One request at a time: the first batch now, the rest queued, encoded when sent.
        var g = cb.split(frames, one, true)[0], rest = frames.slice(g.f.length);
        if (rest.length) queue = rest.concat(queue || []);
        busy = true;
        http('POST', url, g.text, true, false).then(function (r) {
          if (dead) return;
          if (!((r.status === 400 || r.status === 413) && refused(g.f, r.text))) {
            if (r.text) cb.text(t, r.text);
            if (dead) return;
            // 404: the link is gone; a session that ended gives its last frame (close
            // shutdown, a reset) to one request only, maybe the poll in flight: hear it first.
            if (r.status === 404 && polling) { busy = false; return doom(); }
            if (r.status !== 200) return fail(); // resumes, resending what was not acked
          }
          if (dead) return;
          busy = false;
          if (doomed) return fail();
          var q = queue;
          queue = null;
          if (q) cb.write(q);
          else one = false;
        }, fail);
      },
      // The close goes out on a request of its own, which dropping the connection leaves alone.
      bye: function () {
        http('POST', url, '{"t":"close"}', true, true).then(null, function () {});
      },
      close: function () {
        dead = true;
        clearTimeout(deadline);
        if (ctl) ctl.abort();
      }
    };

    function fail() {
      if (dead) return;
      t.close();
      cb.lost(t, false);
    }

    // The other request may carry the session's last frame; wait for it a moment only (a
    // held poll on another node may hold on for its whole timeout).
    function doom() {
      doomed = true;
      clearTimeout(deadline);
      deadline = setTimeout(fail, 1000);
    }

    function poll() {
      t.since = Date.now();
      polling = true;
      http('GET', url + '?ack=' + cb.acked(), null, true, false).then(function (r) {
        polling = false;
        if (dead) return;
        // 404: the link is gone; a resume says why. The send in flight may carry the
        // session's last frame (see send): hear it first.
        if (r.status === 404 && busy) return doom();
        if (r.status !== 200) return fail();
        cb.text(t, r.text);
        if (dead) return;
        if (doomed) return fail();
        poll();
      }, function () { polling = false; fail(); });
    }

    function http(method, u, body, auth, detached) {
      var init = { method: method, cache: 'no-store', headers: {} };
      if (body != null) { init.body = body; init.headers['Content-Type'] = 'text/plain'; }
      if (auth) init.headers.Authorization = cb.auth();
      if (ctl && !detached) init.signal = ctl.signal;
      return fetchFn(u, init).then(function (res) {
        return res.text().then(function (text) { return { status: res.status, text: text }; });
      });
    }

    // The server refused a send and applied none of it; the connection goes on. A 400 or 413
    // with an error frame (the server answers every error on the send that caused it); a 400
    // without one is a body cut short on the way, and false sends it to fail(). A batch is
    // sent again one frame at a time, so a refusal names its frame. A message refused alone
    // is dropped (cb.dropped), and the messages after it, renumbered, are sent again.
    function refused(frames, text) {
      var fs = parse(text), e = fs && fs[0], f = frames[0], q = [], later, i;
      if (!e || e.t !== 'error') e = null; // none, or a proxy's page
      if (!e) return false;
      if (frames.length > 1) {
        one = true;
        queue = frames.concat(queue || []);
      } else if (f.t !== 'msg') {
        cb.error(e);
      } else {
        later = cb.dropped(f.seq, e);
        for (i = 0; queue && i < queue.length; i++) if (queue[i].t !== 'msg') q.push(queue[i]);
        q = q.concat(later);
        queue = q.length ? q : null;
      }
      return true;
    }
    return t;
  }

  // ---- the client -----------------------------------------------------------------------
  // The states, and for each the events it allows and the state each leads to; an event a
  // state does not list is ignored there:
  //   connect  open a connection: the first, after the backoff, at once on a wake, or
  //            long-polling after a WebSocket that never heard from the server ('auto')
  //   wake     the browser is back online or the tab visible: reconnect without waiting
  //   welcome  a connection's handshake was welcomed (also a probe that took over)
  //   lost     the connection is gone, or the session must start anew: back off, resume
  //   end      close(), or the server's close frame (but shutdown, which is a reset)
  var STATES = {
    connecting: { connect: 'connecting', welcome: 'open', lost: 'reconnecting', end: 'closed' },
    open: { welcome: 'open', lost: 'reconnecting', end: 'closed' },
    reconnecting: { connect: 'reconnecting', wake: 'reconnecting', welcome: 'open',
      lost: 'reconnecting', end: 'closed' },
    closed: {}
  };

  function connect(url, options) {
    var o = {}, k;
    for (k in DEFAULTS) o[k] = DEFAULTS[k];
    for (k in options || {}) o[k] = options[k];
    o.WebSocket = o.WebSocket || root.WebSocket;
    o.fetch = o.fetch || (root.fetch && root.fetch.bind(root));
    var base = String(url).replace(/\/+$/, '');
    if (root.location && !/^[a-z]+:/i.test(base)) base = new URL(base, root.location.href).href;

    var lpUrl = base + '/lp',
      wsUrl = base.replace(/^http/, 'ws') + '/ws',
      handlers = {},
      state = 'connecting',
      transport = null,      // 'websocket' or 'longpoll' once open
      sessionId = null,
      secret = null,
      rid = null,            // the attempt ID of resumes with ridFor, the secret they present
      ridFor = null,
      lastSeq = 0,           // last server message received, in order
      outSeq = 0,            // last client message numbered
      outbox = [],           // [{seq, data}] not yet acknowledged by the server
      topics = {},           // subscriptions to send again after each welcome
      unsubs = {},           // unsubscribes, likewise (one may have been lost on the way)
      unacked = 0,           // bytes received since our last ack
      lastRx = 0,            // Date.now() of the last frame received
      maxFrame = 0,          // the server's limits, from the last welcome (0: none yet)
      maxBatch = 128,
      ackBytes = 65536,      // the server's send window, hb and timeout, from the welcome
      hb = 25000,
      deadAfter = 60000,
      careful = false,       // WebSocket: one message in flight until a refused one shows
      resetReason = null,    // a reset or shutdown frame's reason and ack, for the welcome after
      resetAck = null,
      refusal = null,        // the code of an error that refused the last handshake
      restart = false,       // the server let the connection go because it is going away
      attempt = 0,
      wsFailed = o.transport === 'longpoll',
      conn = null,           // the transport of the connection, see above
      probe = null,          // a WebSocket trying to take over from long-polling
      ending = null,         // a connection left to say close once welcomed, after close()
      pinged = 0,            // when the connection was pinged and has not answered since
      timers = {};           // ack, alive, probe, uptime, retry

    var api = {
      get state() { return state; },
      get transport() { return transport; },
      get sessionId() { return sessionId; },
      on: on,
      off: off,
      send: send,
      subscribe: function (topic) {
        topicName(topic);
        topics[topic] = true;
        delete unsubs[topic];
        if (state === 'open') write([{ t: 'sub', topic: topic }]);
      },
      // An unsub lost with its connection (or queued behind a send that was) would leave the
      // resumed session subscribed. It is harmless twice, so every welcome repeats the last
      // 100, until the topic is subscribed again.
      unsubscribe: function (topic) {
        topicName(topic);
        delete topics[topic];
        unsubs[topic] = true;
        var names = Object.keys(unsubs);
        if (names.length > 100) delete unsubs[names[0]];
        if (state === 'open') write([{ t: 'unsub', topic: topic }]);
      },
      // The server is told, so the session does not linger there: on a welcomed connection,
      // even one whose welcome is still being handled (close() from the reset handler); else,
      // once welcomed, on the connection whose handshake is under way or, with a session and
      // no connection, on one opened for that.
      close: function () {
        var c = conn;
        if (c && c.welcomed) c.bye();
        else if (state !== 'closed' && (sessionId || c && c.asked)) {
          if (c) conn = null;
          else (c = make()).open();
          ending = c;
        }
        fire('end');
      },
      stats: function () {
        return { lastSeq: lastSeq, outSeq: outSeq, outbox: outbox.length, lastRx: lastRx };
      }
    };

    // What the transports call back. Callbacks from a connection that is neither the current
    // one, the probe, nor the one left to say close are ignored.
    var cb = {
      handshake: handshake,
      split: split,
      write: write,
      error: function (e) { emit('error', e); },
      dropped: function (seq, e) {
        var k = dropRefused(seq, e), later = [];
        for (; k < outbox.length; k++) later.push(msgFrame(outbox[k]));
        return later;
      },
      acked: function () { return lastSeq; },
      auth: function () { return 'Bearer ' + sessionId + ':' + secret; },
      text: function (t, text) {
        var frames = parse(text);
        if (t === ending) {
          var e = welcomeIn(frames);
          if (e) { sessionId = e.sid; secret = e.secret; t.bye(); }
          return t.close();
        }
        if (t === probe) {
          // A probe whose resume was welcomed has taken the session over from long-polling:
          // move up. A refusal (capacity, rate_limited, ...) changed nothing: long-polling
          // goes on, and the next probe follows after probeInterval. So does a reset: the
          // session long-polling holds is not the probe's to give up (a late copy of an
          // earlier resume is answered that way; a session that really ended, long-polling
          // learns itself), and the new session that came with it is ended at once.
          var w = welcomeIn(frames);
          if (!w || !w.resumed) {
            if (w) t.bye();
            t.close();
            return probeDone(t);
          }
          probe = null;
          drop();
          conn = t;
          wsFailed = false;
        }
        if (t === conn) receive(t, frames);
      },
      lost: function (t, silent, code) {
        if (t === probe) return probeDone(t);
        if (t !== conn) return;
        if (code === 1012 || code === 1001) restart = true;
        // Not a word from the server: long-polling at once, on the same session. A server
        // that answered (a refusal) has shown that WebSocket works: retry it after a backoff.
        if (silent && o.transport === 'auto') { wsFailed = true; fire('connect'); }
        else fire('lost');
      }
    };

    var ACTIONS = { connect: open, wake: reconnectNow, welcome: welcome, lost: lost, end: finish };

    function fire(event, arg) {
      var to = STATES[state][event];
      if (to) ACTIONS[event](to, arg);
    }

    function onWake() { fire('wake'); }
    function onVisible() {
      if (root.document.visibilityState === 'visible') onWake(); // registered only with a document
    }
    if (root.addEventListener) root.addEventListener('online', onWake);
    if (root.document && root.document.addEventListener)
      root.document.addEventListener('visibilitychange', onVisible);

    // ---- events ------------------------------------------------------------------------
    function on(name, fn) {
      (handlers[name] = handlers[name] || []).push(fn);
      return function () { off(name, fn); };
    }
    function off(name, fn) {
      var list = handlers[name] || [];
      var i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    }
    // A handler that throws breaks neither the client nor the other handlers: its exception
    // is thrown again from a timer of its own, so it still reaches window.onerror (or node's
    // 'uncaughtException'), and the frame being processed goes on as if nothing happened.
    function emit(name, a, b) {
      var list = (handlers[name] || []).slice();
      for (var i = 0; i < list.length; i++)
        try { list[i].call(api, a, b); } catch (e) { rethrow(e); }
    }
    function setState(s) {
      if (state !== s) { state = s; emit('state', s); }
    }
    function timer(name, ms, fn) {
      clearTimeout(timers[name]);
      timers[name] = ms >= 0 ? setTimeout(fn, ms) : null;
    }

    // ---- sending -----------------------------------------------------------------------
    function send(data) {
      if (state === 'closed') throw new Error('ferry: client is closed');
      if (outbox.length >= o.maxOutbox) throw new Error('ferry: outbox full');
      var m = { seq: outSeq + 1, data: data }, big = tooBig(m);
      if (big) throw new Error(big);
      outSeq++;
      outbox.push(m);
      if (state === 'open' && !careful) write([msgFrame(m)]);
      return m.seq;
    }

    // A message the server would refuse for its size, on every resend: why, or ''. Before
    // the first welcome the limit is unknown; the welcome checks what was queued.
    function tooBig(m) {
      var n = bytes(JSON.stringify(msgFrame(m)));
      return maxFrame && n > maxFrame
        ? 'ferry: message too big: ' + n + ' bytes, the server accepts ' + maxFrame : '';
    }

    // Sends frames on the current connection, with an ack when one is due; what is lost is
    // resent after the next welcome.
    function write(frames) {
      if (!conn) return;
      if (unacked && lastSeq) { frames.push({ t: 'ack', ack: lastSeq }); unacked = 0; }
      conn.send(frames);
    }

    // Frames go out in batches the server accepts: at most max_batch frames, max_frame bytes
    // and 4096 keys plus array items each, or one frame each when `one`. The server counts
    // those as the ',' and ':' outside strings (its default limit; the welcome does not say).
    // `first`: only the first batch, for a transport that sends one at a time.
    function split(frames, one, first) {
      var out = [], g = null, size = 0, items = 0;
      for (var i = 0; i < frames.length; i++) {
        var t = JSON.stringify(frames[i]), n = bytes(t) + 1,
          e = t.replace(/"[^"\\]*(?:\\.[^"\\]*)*"/g, '').replace(/[^,:]/g, '').length + 1;
        if (!g || one || g.f.length >= maxBatch || size + n > (maxFrame || 65536) || items + e > 4096) {
          if (first && g) break;
          out.push(g = { f: [], t: [] }), size = 2, items = 0;
        }
        g.f.push(frames[i]);
        g.t.push(t);
        size += n;
        items += e;
      }
      for (i = 0; i < out.length; i++) out[i].text = out[i].t.length > 1 ? '[' + out[i].t + ']' : out[i].t[0];
      return out;
    }

    // Drops a message the server refused alone, with an error event that carries its data;
    // the ones after it move down a seq, so the server sees no gap: sending it again forever
    // would never get past it. Returns where it was.
    function dropRefused(seq, err) {
      for (var k = 0; k < outbox.length && outbox[k].seq !== seq; k++);
      var m = outbox.splice(k, 1)[0];
      outSeq--;
      for (var i = k; i < outbox.length; i++) outbox[i].seq--;
      err.data = m && m.data;
      emit('error', err);
      return k;
    }

    // The data of the outbox's messages after the server's ack (all of them without one).
    function undelivered(ack) {
      for (var m = [], i = 0; i < outbox.length; i++) if (!(outbox[i].seq <= ack)) m.push(outbox[i].data);
      return m;
    }

    // Careful sending, on WebSocket after a refusal: one message in flight at a time, the
    // next once it is acknowledged, so a refusal names its message.
    function nextCareful() {
      if (!outbox.length) careful = false;
      else write([msgFrame(outbox[0])]);
    }

    function sendAck() {
      clearTimeout(timers.ack);
      timers.ack = null;
      if (unacked && state === 'open' && conn && !conn.polls) write([]);
      else unacked = 0; // long-polling acks with every poll
    }

    // ---- connecting --------------------------------------------------------------------
    // Every retry with the same secret carries the same attempt ID, so the server can tell a
    // late copy of an earlier try from a second holder of the secret; a newer secret, a new ID.
    function handshake() {
      if (sessionId && ridFor !== secret) {
        rid = randomId();
        ridFor = secret;
      }
      var hs = sessionId
        ? { t: 'resume', v: 1, sid: sessionId, secret: secret, ack: lastSeq, rid: rid }
        : { t: 'hello', v: 1 };
      // A token function that throws counts as a failed attempt, as one that rejects does.
      return new Promise(function (resolve) {
        resolve(typeof o.token === 'function' ? o.token() : o.token);
      }).then(function (t) {
        if (t != null) hs.token = t;
        return hs;
      });
    }

    function open() {
      drop();
      (conn = make()).open();
    }
    function make() {
      return o.transport === 'websocket' || (o.transport === 'auto' && !wsFailed && o.WebSocket)
        ? webSocket(wsUrl, o.WebSocket, o.connectTimeout, cb)
        : longPoll(lpUrl, o.fetch, o.connectTimeout, cb);
    }

    function reconnectNow() {
      timer('retry', -1);
      fire('connect');
    }

    // While long-polling in 'auto', a WebSocket probe every probeInterval.
    function armProbe() {
      if (o.transport === 'auto' && o.WebSocket && !timers.probe)
        timer('probe', o.probeInterval, function () {
          timers.probe = null;
          if (conn && conn.polls && state === 'open' && !probe) {
            probe = webSocket(wsUrl, o.WebSocket, o.connectTimeout, cb);
            probe.open();
          }
        });
    }
    function probeDone(t) {
      if (probe !== t) return;
      probe = null;
      armProbe();
    }

    // ---- receiving ---------------------------------------------------------------------
    // Frames after one that dropped the connection (a reset, a close) are not processed.
    function receive(t, frames) {
      if (!frames) return fire('lost');
      lastRx = Date.now();
      for (var i = 0; i < frames.length && conn === t; i++) frame(frames[i]);
    }

    function frame(f) {
      switch (f.t) {
        case 'welcome': return fire('welcome', f);
        case 'msg':
          if (f.seq <= lastSeq) return;                 // a replay we already have
          if (f.seq !== lastSeq + 1) return fire('lost'); // never expected: resume fills it
          lastSeq = f.seq;
          unacked += 40 + JSON.stringify(f.data).length;
          if (unacked >= ackBytes / 2) sendAck();
          else if (!timers.ack) timer('ack', o.ackDelay, sendAck);
          return emit('message', f.data, { seq: f.seq, topic: f.topic });
        case 'ack':
          var n = outbox.length;
          while (outbox.length && outbox[0].seq <= f.ack) outbox.shift();
          if (careful && outbox.length < n) nextCareful();
          return;
        case 'ping': return write([{ t: 'pong' }]);
        case 'close':
          if (f.reason !== 'shutdown') return fire('end', f);
          // The server is stopping: the session is gone, as after a reset. Start anew once
          // it is back; the reset event comes with the new session's welcome.
          restart = true;
          // falls through
        case 'reset':
          // In a handshake's answer a welcome for a new session follows; on a welcomed
          // connection the session has ended: start anew with hello. `ack`: the last of our
          // messages the old session delivered (absent for reason unknown).
          resetReason = f.reason;
          resetAck = f.ack;
          if (conn.welcomed) { sessionId = null; fire('lost'); }
          return;
        case 'error':
          // Before the welcome an error refuses the handshake (origin, unauthorized,
          // capacity, ...) and the server closes: reconnect after a backoff (lost() decides
          // how long).
          if (state !== 'open') {
            emit('error', f);
            refusal = f.code;
            return fire('lost');
          }
          if (f.code === 'forbidden' || conn.polls || !outbox.length) return emit('error', f);
          if (f.code === 'internal') return fire('lost'); // nothing applied, for now: resume, resend
          // On WebSocket every other refusal is of a message, but which one cannot be told
          // (several may be in flight): resume, and send carefully until it shows.
          if (!careful) { careful = true; return fire('lost'); }
          dropRefused(outbox[0].seq, f);
          return nextCareful();
      }
    }

    function welcome(to, w) {
      var c = conn, resumed = w.resumed, reason = resetReason, acked = resetAck, big = [], i;
      var renewed = !resumed && (sessionId !== null || reason);
      resetReason = resetAck = null;
      c.welcomed = true;
      // The reset handler may close the client, which tells the server with these.
      sessionId = w.sid;
      secret = w.secret;
      maxFrame = w.max_frame || 65536;
      maxBatch = w.max_batch || 128;
      ackBytes = w.ack_bytes || 65536;
      hb = w.hb || 25000;
      deadAfter = w.timeout || 60000;
      if (!resumed) {
        lastSeq = 0;
        if (renewed) {
          // A new session replaces one that could not be resumed. The messages the old one
          // did not deliver are handed to the application, which may send them again.
          var messages = undelivered(acked);
          outbox = [];
          outSeq = 0;
          emit('reset', { reason: reason || 'unknown', unsent: messages.length, messages: messages });
          if (conn !== c) return; // the application closed the client
        } else {
          // First session: what was sent before it opened goes out now, numbered from 1, but
          // for a message over the server's max_frame: dropped, with an error event.
          var queued = outbox;
          outbox = [];
          for (i = 0; i < queued.length; i++) {
            var m = { seq: outbox.length + 1, data: queued[i].data }, why = tooBig(m);
            if (why) big.push({ t: 'error', code: 'too_big', text: why, data: m.data });
            else outbox.push(m);
          }
          outSeq = outbox.length;
        }
      }
      while (outbox.length && outbox[0].seq <= w.ack) outbox.shift();
      var frames = [];
      for (var t in topics) frames.push({ t: 'sub', topic: t });
      for (t in unsubs) frames.push({ t: 'unsub', topic: t });
      if (careful && (c.polls || !outbox.length)) careful = false;
      for (i = 0; i < (careful ? 1 : outbox.length); i++) frames.push(msgFrame(outbox[i]));
      transport = c.kind;
      // A frame at once retires the secret this connection's handshake presented, so a late
      // copy of that handshake cannot take the session over. A poll does it on long-polling.
      if (!frames.length && !c.polls) {
        frames.push({ t: 'ack', ack: lastSeq });
        unacked = 0;
      }
      if (frames.length) write(frames);
      // A handler may close the client (or lose the connection): then nothing more is due.
      setState(to);
      if (conn !== c) return;
      emit('transport', transport);
      if (conn !== c) return;
      emit('open', { resumed: resumed, transport: transport });
      for (i = 0; i < big.length && conn === c; i++) emit('error', big[i]);
      if (conn !== c) return;
      timer('uptime', o.minUptime, function () { attempt = 0; });
      if (c.polls) armProbe();
      watch();
    }

    // Liveness. After pingInterval without a frame from the server, ping it; if pingTimeout
    // later still nothing has come, the connection is lost. A quiet long-poll is no
    // exception: its ping is a send, answered at once with a pong however long the held poll
    // waits. A poll the server has left unanswered past its heartbeat timeout is taken for
    // dead as well. pingInterval 0 follows the welcome instead: ping after hb, give up at
    // timeout.
    function watch() {
      var now = Date.now(), every = o.pingInterval || hb,
        wait = o.pingInterval ? o.pingTimeout : deadAfter - hb;
      if ((pinged && lastRx < pinged) || now - (conn.since || now) > deadAfter) return fire('lost');
      var idle = now - lastRx;
      pinged = idle >= every ? now : 0;
      if (pinged) write([{ t: 'ping' }]);
      timer('alive', pinged ? wait : every - idle, watch);
    }

    // ---- losing and ending -------------------------------------------------------------
    function drop() {
      var c = conn, p = probe;
      conn = probe = null;
      pinged = 0;
      if (c) c.close();
      if (p) p.close();
      timer('alive', -1);
      timer('probe', -1);
      timer('uptime', -1);
    }

    // The connection is gone: reconnect after a jittered backoff and resume. A refusal that
    // retrying soon will not change (origin, credentials, a malformed handshake) waits
    // longer, between maxDelay / 2 and maxDelay; a full server (capacity, rate_limited) and
    // every other failure follow the growing backoff. A server going away (WebSocket 1012 or
    // 1001, close shutdown) lets many clients go at once: their first retry is spread over
    // the backoff's third step (minDelay * 4, 1 s by default), not the first, so that they
    // do not all come back within minDelay of each other.
    function lost(to) {
      drop();
      transport = null;
      setState(to);
      if (restart && attempt < 2) attempt = 2;
      restart = false;
      var ms = backoff(attempt++, o.minDelay, o.maxDelay);
      if (refusal && !/^(capacity|rate_limited|internal)$/.test(refusal))
        ms = (o.maxDelay + backoff(0, o.maxDelay, o.maxDelay)) / 2;
      refusal = null;
      if (o.transport === 'auto') wsFailed = false; // try to go back up each time
      timer('retry', ms, function () { fire('connect'); });
    }

    // The end, by close() or by the server's close frame f, whose ack says which of the
    // client's messages its application received; the event hands back the others.
    function finish(to, f) {
      var messages = undelivered(f && f.ack);
      outbox = [];
      drop();
      for (var k in timers) clearTimeout(timers[k]);
      timers = {};
      if (root.removeEventListener) root.removeEventListener('online', onWake);
      if (root.document && root.document.removeEventListener)
        root.document.removeEventListener('visibilitychange', onVisible);
      transport = null;
      setState(to);
      emit('close', { reason: f ? f.reason : 'client', unsent: messages.length, messages: messages });
    }

    open();
    return api;
  }

  return {
    connect: connect,
    backoff: backoff,
    version: 1
  };
});
