// A reproduction of the WebSocket probe race the chaos suite reports as `bad_ack` followed by
// `handshake` errors (docs/CHAOS.md).
//
//   node tests/chaos/repro-probe.mjs
//
// 1. an `auto` client starts with WebSocket refused, so it long-polls;
// 2. WebSocket is turned on: the client's probe connects and sends its `resume`, with the
//    ack it had then; the proxy delays that resume by 1 s, while the long-poll goes on
//    receiving and acknowledging the stream;
// 3. the server used to refuse the late resume (`bad_ack`: its ack is below what the polls
//    already acknowledged), and the client took that answer for a welcome, moved onto the
//    probe, and every frame it sent there was refused (`handshake`) until the server closed
//    it. Now the server resumes on the stale ack; the client's side (a probe moves up only on
//    a welcome of its own session) is tested on its own in js-client/test/probe.test.mjs.
// Exits 1 while that happens, 0 if the client ends up on a working WebSocket.
import { killAll, serverBinary, startServer, waitFor } from './lib.mjs';
import { ChaosClient } from './fleet.mjs';
import { startProxy } from './proxy.mjs';

const server = await startServer(serverBinary(), { CHAOS_PUB_MS: '5', CHAOS_POLL_MS: '1000' });
const proxy = await startProxy({ targetPort: server.port, seed: 1, plan: { cut: 0, blackhole: 0, slice: 0 } });
let code = 2;
try {
  await server.control('ws', 'on=0');
  const client = new ChaosClient(`http://127.0.0.1:${proxy.port}/ferry`, 'repro', 'auto',
    { probeInterval: 300, ackDelay: 100 });
  await waitFor(() => client.transports.includes('longpoll'), 5000, 'long-polling');
  await waitFor(() => client.lastI() > 0, 5000, 'the stream');
  proxy.stallNext(1000);
  await server.control('ws', 'on=1');
  // Either the probe takes over cleanly or the server refuses its resume.
  await waitFor(() => client.errors.length > 0 || client.c.transport === 'websocket', 10000, 'the probe');
  const codes = client.errors.map((e) => e.code);
  console.log(`errors: ${JSON.stringify(codes)}; transport now ${client.c.transport}`);
  for (let k = 0; k < 5; k++) client.sendNext();
  const delivered = await waitFor(async () => (await server.control('log')).clients.repro?.length === 5, 3000,
    'messages sent after the probe').then(() => true, () => false);
  console.log(`messages sent after the probe delivered within 3 s: ${delivered}`);
  if (codes.includes('bad_ack') || !delivered || client.c.transport !== 'websocket') {
    console.log('DEFECT: a refused probe resume moved the client onto a WebSocket without a session');
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
