// A deterministic reproduction of what the chaos suite reports as an "unsent mismatch":
// a client message the server's application received, which the client is later told was
// dropped with its session (reset `unsent`).
//
//   node tests/chaos/repro-unsent.mjs [websocket|longpoll]
//
// 1. one client opens a session through the proxy;
// 2. the server-to-client direction is held: the client's next message reaches the server
//    and its application, the server's ack does not reach the client;
// 3. both directions are held until the session has expired on the server;
// 4. the network heals: the client resumes, gets `reset` `expired`, and counts the message
//    in `unsent` although on_message saw it.
// Exits 1 while ferry behaves so, 0 once `unsent` leaves out what the server delivered.
import { buildServer, killAll, startServer, waitFor } from './lib.mjs';
import { ChaosClient } from './fleet.mjs';
import { startProxy } from './proxy.mjs';

const transport = process.argv[2] || 'websocket';
const server = await startServer(buildServer(), {
  CHAOS_HB_MS: '200', CHAOS_TIMEOUT_MS: '500', CHAOS_WINDOW_MS: '1000', CHAOS_POLL_MS: '1000',
});
const proxy = await startProxy({ targetPort: server.port, seed: 1, plan: { cut: 0, blackhole: 0, slice: 0 } });
let code = 2;
try {
  const client = new ChaosClient(`http://127.0.0.1:${proxy.port}/ferry`, 'repro', transport);
  await waitFor(() => client.opens === 1, 5000, 'the session to open');
  client.sendNext();
  await waitFor(async () => (await server.control('log')).clients.repro?.length === 1, 5000,
    'message 1 to reach the server');
  // On long-polling one send is in flight at a time: let the first one finish.
  if (transport === 'longpoll') await waitFor(() => client.inflight <= 1, 5000, 'the send to finish');
  proxy.partition('s2c', true);
  client.sendNext();
  await waitFor(async () => (await server.control('log')).clients.repro?.length === 2, 5000,
    'message 2 to reach the server, its ack held');
  proxy.partition('c2s', true);
  await waitFor(async () => {
    const s = await server.control('stats');
    return s.attached === 0 && s.detached === 0;
  }, 10000, 'the session to expire on the server');
  proxy.partition('c2s', false);
  proxy.partition('s2c', false);
  await waitFor(() => client.resets.length === 1, 10000, 'the reset');
  const delivered = (await server.control('log')).clients.repro;
  const r = client.resets[0];
  console.log(`${transport}: server delivered ${JSON.stringify(delivered)}; client sent ${r.sent}, ` +
    `reset ${r.reason} with unsent ${r.unsent}`);
  if (r.sent - r.unsent < delivered.length) {
    console.log(`DEFECT: the client is told ${r.unsent} message(s) were dropped, but the server ` +
      `delivered ${delivered.length - (r.sent - r.unsent)} of them`);
    code = 1;
  } else {
    code = 0;
  }
  client.close();
  await waitFor(() => client.inflight === 0, 5000, 'the close to be sent');
} finally {
  await proxy.close();
  await server.stop();
  killAll();
}
process.exit(code);
