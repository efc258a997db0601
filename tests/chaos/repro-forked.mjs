// A deterministic reproduction of the `forked` resets the chaos suite sees: a client's own
// handshake, delayed by the network and abandoned by the client, ends its session.
//
//   node tests/chaos/repro-forked.mjs [websocket|longpoll]
//
// 1. one client opens a session through the proxy; its connection is reset;
// 2. the proxy holds the client's next connection (its resume, with secret S1) for 4 s;
// 3. the client gives up on it (connectTimeout), resumes on a new connection, gets S2 and
//    sends a message with it, so S1 is retired;
// 4. the held connection is let through: the server reads the old resume with S1, a retired
//    secret, and ends the session as forked; the client gets `reset` `forked`.
// Exits 1 while that happens, 0 if the session survives its own stale handshake.
import { buildServer, killAll, startServer, waitFor } from './lib.mjs';
import { ChaosClient } from './fleet.mjs';
import { startProxy } from './proxy.mjs';

const transport = process.argv[2] || 'websocket';
const server = await startServer(buildServer(), { CHAOS_HB_MS: '1000', CHAOS_TIMEOUT_MS: '3000' });
const proxy = await startProxy({ targetPort: server.port, seed: 1, plan: { cut: 0, blackhole: 0, slice: 0 } });
let code = 2;
try {
  const client = new ChaosClient(`http://127.0.0.1:${proxy.port}/ferry`, 'repro', transport,
    { connectTimeout: 1000, minDelay: 10, maxDelay: 20 });
  await waitFor(() => client.opens === 1, 5000, 'the session to open');
  const unknownBefore = (await server.control('stats')).unknown;
  proxy.holdNext(4000);
  proxy.dropAll();
  await waitFor(() => client.opens === 2, 10000, 'the resume on a fresh connection');
  client.sendNext();
  await waitFor(async () => (await server.control('log')).clients.repro?.length === 1, 5000,
    'the message sent with the new secret');
  // The held connection is let through after 4 s; the stream keeps the client's session busy.
  const gone = await waitFor(() => client.resets.length > 0, 8000, 'a reset').then(() => true, () => false);
  // Unless the late copy reached the server (answered like an unknown session), the run
  // proved nothing.
  const arrived = gone || await waitFor(async () => (await server.control('stats')).unknown > unknownBefore,
    3000, 'the late resume').then(() => true, () => false);
  if (!arrived) {
    console.log(`${transport}: the held resume never reached the server; nothing was tested`);
    code = 2;
  } else if (gone) {
    console.log(`${transport}: reset ${client.resets[0].reason} after the client's own stale resume arrived`);
    console.log('DEFECT: a handshake the client abandoned, delivered late, ended its live session');
    code = 1;
  } else {
    console.log(`${transport}: the session survived its stale resume`);
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
