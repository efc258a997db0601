// Resumes and secret rotation (docs/PROTOCOL.md, Secret rotation): every resume carries an
// attempt ID, and the client sends a frame as soon as a welcome arrives, so a late copy of
// its own resume neither forks the session nor takes it over.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ferry, once, startServer, waitFor, WebSocket } from './helpers.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A WebSocket that records what the client sends; `swallow` resumes are never sent.
function recording() {
  const rec = { sent: [], swallow: 0 };
  rec.WebSocket = class extends WebSocket {
    send(d) {
      rec.sent.push(d);
      if (d.includes('"resume"') && rec.swallow > 0) { rec.swallow--; return; }
      super.send(d);
    }
  };
  rec.resumes = () => rec.sent.filter((d) => d.includes('"resume"')).map((d) => JSON.parse(d));
  return rec;
}

// Sends a handshake on a WebSocket of its own and returns the server's first answer.
function answer(url, text) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws') + '/ws');
    ws.on('error', reject);
    ws.on('open', () => ws.send(text));
    ws.on('message', (d) => { resolve([].concat(JSON.parse(String(d)))); ws.close(); });
  });
}

describe('resuming', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(() => srv.stop());

  test('every resume carries one attempt ID per secret, the same on every retry', async (t) => {
    const rec = recording();
    const c = ferry.connect(srv.url, { WebSocket: rec.WebSocket, fetch, transport: 'websocket',
      minDelay: 10, maxDelay: 50, connectTimeout: 300 });
    t.after(() => c.close());
    await once(c, 'open');
    rec.swallow = 2; // two tries time out unanswered; the third resumes
    await srv.control('drop');
    assert.equal((await once(c, 'open')).resumed, true);
    const tries = rec.resumes();
    assert.equal(tries.length, 3);
    assert.match(tries[0].rid, /^[A-Za-z0-9_-]{22}$/);
    for (const r of tries) assert.deepEqual([r.secret, r.rid], [tries[0].secret, tries[0].rid]);
    await srv.control('drop');
    assert.equal((await once(c, 'open')).resumed, true);
    const next = rec.resumes()[3];
    assert.notEqual(next.secret, tries[0].secret);
    assert.match(next.rid, /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual(next.rid, tries[0].rid);
  });

  test('a late copy of a resume the client made is refused and leaves the session alone', async (t) => {
    const rec = recording();
    const c = ferry.connect(srv.url, { WebSocket: rec.WebSocket, fetch, transport: 'websocket',
      minDelay: 10, maxDelay: 50 });
    t.after(() => c.close());
    await once(c, 'open');
    await srv.control('drop');
    await once(c, 'open');
    const sid = c.sessionId;
    c.send({ before: 1 });
    await waitFor(() => c.stats().outbox === 0, 5000, 'the ack');
    const resets = [];
    c.on('reset', (r) => resets.push(r));
    const late = await answer(srv.url, JSON.stringify(rec.resumes().at(-1)));
    assert.deepEqual(late.slice(0, 2).map((f) => f.t + ' ' + (f.reason || f.resumed)),
      ['reset unknown', 'welcome false']);
    await sleep(300);
    assert.deepEqual(resets, [], 'the session was not forked');
    assert.equal(c.sessionId, sid);
    const echoed = new Promise((resolve) => c.on('message', (d) => { if (d.echo) resolve(d); }));
    c.send({ echo: true, after: 1 });
    assert.equal((await echoed).after, 1);
  });

  for (const transport of ['websocket', 'longpoll']) {
    test(`a frame right after the welcome retires the secret at once (${transport})`, async (t) => {
      const sent = [];
      const rec = recording();
      const recFetch = (u, init) => {
        if (init.body && init.body.includes('"resume"')) sent.push(init.body);
        return fetch(u, init);
      };
      const c = ferry.connect(srv.url, { WebSocket: rec.WebSocket, fetch: recFetch, transport,
        minDelay: 10, maxDelay: 50 });
      t.after(() => c.close());
      await once(c, 'open');
      await srv.control('drop');
      await once(c, 'open');
      const sid = c.sessionId;
      const reopened = [];
      c.on('open', (o) => reopened.push(o));
      c.on('reset', (o) => reopened.push(o));
      // Nothing to send, nothing received: only the frame after the welcome has used the
      // new secret when the copy arrives.
      const resume = transport === 'websocket' ? JSON.stringify(rec.resumes().at(-1)) : sent.at(-1);
      const late = await answer(srv.url, resume);
      assert.deepEqual(late.slice(0, 2).map((f) => f.t + ' ' + (f.reason || f.resumed)),
        ['reset unknown', 'welcome false'], 'the copy did not take the session over');
      await sleep(300);
      assert.deepEqual(reopened, []);
      assert.equal(c.sessionId, sid);
      assert.equal(c.state, 'open');
    });
  }
});
