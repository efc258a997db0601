// The servers ferry is measured against, doing the same broadcast with the same control
// requests as bench/servers/bench_ctl.h (GET /bench/start?rate=R&size=B, GET /bench/stop).
//
//   node server.mjs sio            Socket.IO (both transports, library defaults)
//   node server.mjs sio-recovery   Socket.IO with connection state recovery (resume storm)
//   node server.mjs ws             ws: plain WebSocket at /ws
//   node server.mjs sio-cluster    Socket.IO nodes sharing one Redis through
//                                  @socket.io/redis-streams-adapter, with connection state
//                                  recovery; REDIS=host:port, PREFIX names the stream, the
//                                  channels and the session keys (default "sio")
//
// Listens on 127.0.0.1 (PORT, default 0 = any free port) and prints "port N".
import http from 'node:http';
import { Server } from 'socket.io';
import { WebSocketServer } from 'ws';

const mode = process.argv[2];
if (!['sio', 'sio-recovery', 'sio-cluster', 'ws'].includes(mode)) {
  console.error('usage: node server.mjs sio|sio-recovery|sio-cluster|ws');
  process.exit(2);
}

let broadcast;
const pub = { running: false, timer: null, first: 1, last: 0 };

function start(rate, size) {
  stop();
  pub.running = true;
  pub.first = pub.last + 1;
  const startNs = process.hrtime.bigint();
  const gapNs = 1e9 / rate;
  let sent = 0;
  const tick = () => {
    if (!pub.running) return;
    const now = process.hrtime.bigint();
    for (;;) {
      const due = startNs + BigInt(Math.floor(sent * gapNs));
      if (due > now) {
        pub.timer = setTimeout(tick, Math.max(1, Number(due - now) / 1e6));
        return;
      }
      const n = pub.first + sent;
      const head = `${n} ${due / 1000n} `;
      broadcast(head + 'x'.repeat(size - head.length));
      pub.last = n;
      sent++;
    }
  };
  tick();
}

function stop() {
  pub.running = false;
  clearTimeout(pub.timer);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (!url.pathname.startsWith('/bench/')) {
    res.writeHead(404).end();
    return;
  }
  let status = 200;
  let body;
  if (url.pathname === '/bench/start') {
    const rate = Number(url.searchParams.get('rate'));
    const size = Number(url.searchParams.get('size') || 100);
    if (!(rate > 0) || !(size >= 40 && size <= 4000)) {
      status = 400;
      body = { error: 'rate > 0, 40 <= size <= 4000' };
    } else {
      start(rate, size);
      body = { first: pub.first };
    }
  } else if (url.pathname === '/bench/stop') {
    stop();
    body = { first: pub.first, last: pub.last };
  } else {
    status = 404;
    body = {};
  }
  res.writeHead(status, { 'Content-Type': 'application/json', Connection: 'close' });
  res.end(JSON.stringify(body));
});

if (mode === 'ws') {
  const wss = new WebSocketServer({ server, path: '/ws' });
  broadcast = (payload) => {
    for (const c of wss.clients) c.send(payload);
  };
} else {
  const opts = { maxHttpBufferSize: 1e6 };
  if (mode === 'sio-recovery')
    opts.connectionStateRecovery = { maxDisconnectionDuration: 120000, skipMiddlewares: true };
  if (mode === 'sio-cluster') {
    // As the adapter's README and Socket.IO's connection state recovery guide set it up: the
    // adapter on a connected node-redis client, recovery on the server. Sessions are written
    // to Redis when a socket disconnects (Socket.IO's _onclose calls persistSession), and a
    // reconnecting client is restored on any node from that key and the stream.
    const { createClient } = await import('redis');
    const { createAdapter } = await import('@socket.io/redis-streams-adapter');
    const prefix = process.env.PREFIX || 'sio';
    const redis = createClient({ url: `redis://${process.env.REDIS || '127.0.0.1:6379'}` });
    redis.on('error', (e) => console.error(`sio-cluster: redis: ${e.message}`));
    await redis.connect();
    opts.adapter = createAdapter(redis, { streamName: `${prefix}:stream`,
      channelPrefix: `${prefix}:ch`, sessionKeyPrefix: `${prefix}:session:` });
    opts.connectionStateRecovery = { maxDisconnectionDuration: 120000, skipMiddlewares: true };
  }
  const io = new Server(server, opts);
  broadcast = (payload) => io.emit('m', payload);
}

server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`port ${server.address().port}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
