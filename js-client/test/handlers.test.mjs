// A handler that throws is the application's bug, not the connection's: the client goes on
// with the batch, loses nothing, reconnects for nothing, and the exception is still reported
// (here as node's 'uncaughtException', in a browser to window.onerror).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { client, collect, inOrder, once, startServer, waitFor } from './helpers.mjs';

// Takes the process's uncaught exceptions for the test (node's test runner would count them
// as failures) and gives them back to whoever held them after it.
function catchUncaught(t) {
  const seen = [];
  const held = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', (e) => seen.push(e));
  t.after(() => {
    process.removeAllListeners('uncaughtException');
    for (const l of held) process.on('uncaughtException', l);
  });
  return seen;
}

describe('handlers that throw', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(() => srv.stop());

  for (const transport of ['websocket', 'longpoll']) {
    test(`lose nothing and force no reconnect (${transport})`, { timeout: 30000 }, async (t) => {
      const seen = catchUncaught(t);
      const c = client(srv.url, { transport });
      t.after(() => c.close());
      let opens = 0, resets = 0, thrown = 0;
      c.on('open', () => { opens++; throw new Error('open handler'); });
      c.on('reset', () => { resets++; });
      await once(c, 'open');
      // Every third message throws, in a handler registered before the one that counts,
      // so a batch holding several messages goes on past the exception.
      c.on('message', (d) => {
        if (d && d.i % 3 === 0) { thrown++; throw new Error('message ' + d.i); }
      });
      const got = collect(c);
      await srv.control('publish', 'n=200&from=1');
      await waitFor(() => got.length >= 200, 10000, 'every message');
      await new Promise((r) => setTimeout(r, 100)); // nothing doubled behind them
      assert.ok(inOrder(got, 200), 'each message once, in order');
      assert.equal(thrown, 66);
      assert.equal(opens, 1, 'no reconnect');
      assert.equal(resets, 0);
      assert.equal(c.state, 'open');
      assert.equal(seen.length, 67, 'every exception reported');
      assert.equal(seen[0].message, 'open handler');
      assert.deepEqual(seen.slice(1).map((e) => e.message),
        Array.from({ length: 66 }, (_, k) => 'message ' + 3 * (k + 1)));
    });
  }
});
