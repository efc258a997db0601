// A network that goes silent without closing anything (a blackhole, not a reset): the
// client notices by its own ping, reconnects and resumes with nothing lost or doubled.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { client, collect, ferry, inOrder, once, startServer, waitFor } from './helpers.mjs';
import { startProxy } from './tcp-proxy.mjs';

describe('through a proxy that can blackhole the connection', () => {
  let srv, proxy, url;
  before(async () => {
    srv = await startServer();
    proxy = await startProxy(srv.port);
    url = `http://127.0.0.1:${proxy.port}/ferry`;
  });
  after(async () => {
    await proxy.close();
    await srv.stop();
  });

  for (const transport of ['websocket', 'longpoll']) {
    test(`a silent drop is detected by the ping and resumed without loss (${transport})`, async (t) => {
      const c = client(url, { transport, pingInterval: 300, pingTimeout: 300, minDelay: 10, maxDelay: 100,
        connectTimeout: 1000 });
      t.after(() => { c.close(); proxy.heal(); });
      await once(c, 'open');
      const got = collect(c);
      const states = [];
      c.on('state', (s) => states.push(s));
      await srv.control('publish', 'n=10&from=1');
      await waitFor(() => got.length === 10, 5000, 'the first 10');
      proxy.blackhole();
      const t0 = Date.now();
      await srv.control('publish', 'n=10&from=11'); // into the hole, for now
      await waitFor(() => c.state !== 'open', 5000, 'the drop noticed');
      const took = Date.now() - t0;
      assert.equal(c.state, 'reconnecting');
      // pingInterval + pingTimeout after the last frame, with room for a busy machine.
      assert.ok(took <= 600 + 900, `noticed ${took} ms after the network went silent`);
      // Attempts through the hole time out and are retried; none of them opens.
      const accepted = proxy.accepted;
      await waitFor(() => proxy.accepted >= accepted + 2, 10000, 'attempts while the network is down');
      assert.deepEqual(states, ['reconnecting']);
      proxy.heal();
      const again = await once(c, 'open');
      assert.equal(again.resumed, true);
      assert.equal(again.transport, transport);
      await srv.control('publish', 'n=10&from=21');
      await waitFor(() => got.length >= 30, 5000, 'all 30');
      assert.ok(inOrder(got, 30), `every message once, in order: ${got.join(',')}`);
    });
  }

  test('a quiet long-poll is not taken for a dead one: its pings are answered', async (t) => {
    let pings = 0;
    const counting = (u, init) => {
      if (init.body && init.body.includes('"ping"')) pings++;
      return fetch(u, init);
    };
    // The server holds a poll for 25 s; the client pings after 150 ms of silence.
    const c = ferry.connect(url, { fetch: counting, transport: 'longpoll', pingInterval: 150, pingTimeout: 300 });
    t.after(() => c.close());
    await once(c, 'open');
    let reconnects = 0;
    c.on('state', (s) => { if (s !== 'open') reconnects++; });
    await waitFor(() => pings >= 10, 10000, '10 pings');
    assert.equal(reconnects, 0);
    assert.equal(c.state, 'open');
  });

  test('a held poll that never comes back is abandoned after the server\'s timeout', async (t) => {
    // Polls go through the proxy, sends (and so pings) straight to the server: only the
    // poll's path goes silent, as when one connection dies and new ones work.
    const own = await startServer({ FERRY_HB_MS: '500', FERRY_TIMEOUT_MS: '1500' });
    const hole = await startProxy(own.port);
    t.after(async () => { await hole.close(); await own.stop(); });
    const split = (u, init) => fetch(init.method === 'GET' ? u.replace(`:${own.port}/`, `:${hole.port}/`) : u, init);
    const c = ferry.connect(own.url, { fetch: split, transport: 'longpoll', pingInterval: 200, pingTimeout: 500 });
    t.after(() => c.close());
    await once(c, 'open');
    const got = collect(c);
    await own.control('publish', 'n=5&from=1');
    await waitFor(() => got.length === 5, 5000, 'the first 5');
    hole.blackhole();
    const t0 = Date.now();
    await own.control('publish', 'n=5&from=6');
    await waitFor(() => c.state !== 'open', 8000, 'the dead poll noticed');
    const took = Date.now() - t0;
    // The welcome's timeout (1.5 s) after the poll began, checked at the client's next
    // liveness check (at most 0.7 s later here). The upper bound leaves room for timers
    // delayed on a loaded machine (3.4 s was seen with the browser tests running beside it);
    // it still tells this from the default timeout of 60 s.
    assert.ok(took >= 1000 && took <= 3 * 1500, `abandoned after ${took} ms`);
    hole.heal();
    assert.equal((await once(c, 'open')).resumed, true);
    await waitFor(() => got.length >= 10, 5000, 'all 10');
    assert.ok(inOrder(got, 10));
  });
});

test('with the default options a silent drop is noticed within 15 s (long-polling)', async (t) => {
  const srv = await startServer();
  const proxy = await startProxy(srv.port);
  t.after(async () => { await proxy.close(); await srv.stop(); });
  const c = client(`http://127.0.0.1:${proxy.port}/ferry`, { transport: 'longpoll' });
  t.after(() => c.close());
  await once(c, 'open');
  const got = collect(c);
  await srv.control('publish', 'n=3&from=1');
  await waitFor(() => got.length === 3);
  proxy.blackhole();
  const t0 = Date.now();
  await waitFor(() => c.state !== 'open', 16000, 'the drop noticed');
  const took = Date.now() - t0;
  assert.ok(took <= 15000, `noticed after ${took} ms`);
  proxy.heal();
  assert.equal((await once(c, 'open')).resumed, true);
});
