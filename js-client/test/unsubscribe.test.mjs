// An unsubscribe that never reached the server is sent again after the next welcome: the
// resumed session would otherwise keep the subscription and go on delivering the topic.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ferry, once, startServer, waitFor, WebSocket } from './helpers.mjs';

// Every session of the test server is subscribed to "news" when it opens.
test('an unsubscribe queued behind a send lost with the connection is sent again (longpoll)', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  let blocking = false;
  // While blocking, a send carrying a message fails as a dropped network would.
  const lossy = (u, init) => {
    if (blocking && init.method === 'POST' && String(init.body).includes('"msg"')) {
      blocking = false;
      return new Promise((_, reject) => setTimeout(() => reject(new Error('network down')), 100));
    }
    return fetch(u, init);
  };
  const c = ferry.connect(srv.url, { WebSocket, fetch: lossy, transport: 'longpoll', minDelay: 10, maxDelay: 50 });
  t.after(() => c.close());
  await once(c, 'open');
  const news = [], echoes = [];
  c.on('message', (d) => { if (d.i !== undefined) news.push(d.i); if (d.echo) echoes.push(d.n); });
  blocking = true;
  c.send({ echo: true, n: 1 }); // in flight, and lost
  c.unsubscribe('news');        // queued behind it
  await once(c, 'open');        // the resume
  await waitFor(() => echoes.includes(1), 5000, 'the message sent again');
  await srv.control('publish', 'n=3&from=1');
  c.send({ echo: true, n: 2 }); // its answer comes after any news published before it
  await waitFor(() => echoes.includes(2), 5000, 'the echo');
  assert.deepEqual(news, []);
});
