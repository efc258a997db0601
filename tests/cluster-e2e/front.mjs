// A small HTTP load balancer in front of the nodes, written for these tests (nginx would do
// the same with `hash $sid consistent` and proxy_next_upstream; this one also records where
// every request of every client went). Two modes:
//   sticky  a request with `Authorization: Bearer <sid>:<secret>` goes to the live node the
//           session ID hashes to (rendezvous hashing: when a node goes, only its sessions
//           move); handshakes and WebSocket upgrades go round robin
//   rr      every request and upgrade goes to the next live node in turn, over a new
//           connection to it (no keep-alive reuse), so a long-polling session's polls and
//           sends each land on another node
// A node that refuses a connection is taken for dead (a passive health check) and the
// request goes to the next one; with `health` (ms), the front also asks every node's
// /ferry/health that often, as HAProxy's configuration does (examples/cluster/haproxy.cfg.in):
// a node that answers 503 (draining) gets no request at all until it answers 200 again
// (one answer either way, where HAProxy waits for two), and a node taken for dead that
// answers 200 (restarted) is back; a request whose node dies while it is under way fails, as
// behind a real balancer. Clients name themselves in an `x-e2e-client` header, so that
// `routes` can tell which node served which client when.
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te',
  'trailer']);

// The session a request names: its Authorization header, or the sid of a resume handshake
// in its body (a handshake carries no header; hashing it too sends a resume straight to the
// node its polls will go to, where only the header would move the session once more).
function sidOf(req, body) {
  const m = /^Bearer ([^:]+):/.exec(req.headers.authorization || '');
  if (m) return m[1];
  if (!body || !body.length || body.length > 4096) return null;
  try {
    const f = JSON.parse(body.toString('utf8'));
    return f && f.t === 'resume' && typeof f.sid === 'string' ? f.sid : null;
  } catch {
    return null;
  }
}

function score(sid, name) {
  return createHash('sha1').update(`${sid}/${name}`).digest().readUInt32BE(0);
}

export async function startFront(nodes, mode, { health = 0 } = {}) {
  const agent = new http.Agent({ keepAlive: mode === 'sticky', maxSockets: Infinity });
  const down = new Set();
  const draining = new Set();
  let checks = null;
  if (health) {
    const check = (n) => new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port: n.port, path: '/ferry/health', agent: false }, (res) => {
        res.resume();
        if (res.statusCode === 200) {
          draining.delete(n.name);
          down.delete(n.name);
        } else {
          draining.add(n.name);
        }
        resolve();
      });
      req.setTimeout(1000, () => req.destroy());
      req.on('error', () => resolve());
    });
    const round = async () => {
      await Promise.all(nodes.map(check));
      if (checks) checks = setTimeout(round, health);
    };
    checks = setTimeout(round, 0);
  }
  const stats = { requests: 0, upgrades: 0, failed: 0, errors: {}, retried: 0, byNode: {} };
  const routes = new Map(); // client id -> [{t, node, kind}]
  const sockets = new Set();
  let turn = 0;

  const alive = (tried) => nodes.filter((n) => n.alive !== false && !down.has(n.name) && !draining.has(n.name) &&
    !tried.has(n.name));
  function pick(req, tried, body) {
    const list = alive(tried);
    if (!list.length) return null;
    const sid = mode === 'sticky' ? sidOf(req, body) : null;
    if (sid) return list.reduce((a, b) => (score(sid, b.name) > score(sid, a.name) ? b : a));
    return list[turn++ % list.length];
  }
  function record(req, node, kind) {
    stats.byNode[node.name] = (stats.byNode[node.name] || 0) + 1;
    const id = req.headers['x-e2e-client'];
    if (!id) return;
    if (!routes.has(id)) routes.set(id, []);
    routes.get(id).push({ t: Date.now(), node: node.name, kind });
  }

  function forward(req, res, body, tried) {
    const node = pick(req, tried, body);
    if (!node) {
      stats.failed++;
      res.writeHead(502, { 'content-type': 'text/plain' });
      return res.end('no node');
    }
    const headers = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k)) headers[k] = v;
    headers['content-length'] = String(body.length);
    if (mode === 'rr') headers.connection = 'close';
    let answered = false;
    const up = http.request({ host: '127.0.0.1', port: node.port, method: req.method, path: req.url,
      headers, agent }, (ur) => {
      answered = true;
      record(req, node, req.method === 'GET' ? 'poll' : 'post');
      const h = {};
      for (const [k, v] of Object.entries(ur.headers)) if (!HOP.has(k)) h[k] = v;
      res.writeHead(ur.statusCode, h);
      ur.pipe(res);
      ur.on('aborted', () => res.destroy());
      ur.on('error', () => res.destroy());
    });
    up.on('error', (e) => {
      if (!answered && e.code === 'ECONNREFUSED') {
        down.add(node.name);
        tried.add(node.name);
        stats.retried++;
        return forward(req, res, body, tried);
      }
      if (!clientGone) {
        stats.failed++;
        stats.errors[e.code || e.message] = (stats.errors[e.code || e.message] || 0) + 1;
      }
      res.destroy();
    });
    // The client gave up on the request (an aborted poll): so does the front.
    let clientGone = false;
    res.on('close', () => {
      if (res.writableFinished) return;
      clientGone = true;
      up.destroy();
    });
    up.end(body);
  }

  function upgrade(req, sock, head, tried) {
    const node = pick({ headers: {} }, tried);
    if (!node) return sock.destroy();
    const up = net.connect(node.port, '127.0.0.1');
    sockets.add(up);
    let connected = false;
    up.on('connect', () => {
      connected = true;
      record(req, node, 'ws');
      let text = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
      for (let k = 0; k < req.rawHeaders.length; k += 2) text += `${req.rawHeaders[k]}: ${req.rawHeaders[k + 1]}\r\n`;
      up.write(text + '\r\n');
      if (head && head.length) up.write(head);
      up.pipe(sock);
      sock.pipe(up);
    });
    up.on('error', (e) => {
      if (!connected && e.code === 'ECONNREFUSED') {
        down.add(node.name);
        tried.add(node.name);
        stats.retried++;
        return upgrade(req, sock, head, tried);
      }
      sock.destroy();
    });
    up.on('close', () => { sockets.delete(up); if (connected) sock.destroy(); });
    sock.on('close', () => up.destroy());
    sock.on('error', () => up.destroy());
  }

  const server = http.createServer((req, res) => {
    stats.requests++;
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => forward(req, res, Buffer.concat(chunks), new Set()));
    req.on('error', () => res.destroy());
  });
  server.keepAliveTimeout = 30000;
  server.requestTimeout = 0;
  server.on('upgrade', (req, sock, head) => {
    stats.upgrades++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    upgrade(req, sock, head, new Set());
  });
  server.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    url: `http://127.0.0.1:${server.address().port}/ferry`,
    stats,
    routes,
    // The node a client's last request or upgrade went to.
    lastNode(id, before = Infinity) {
      const list = (routes.get(id) || []).filter((r) => r.t <= before);
      return list.length ? list[list.length - 1].node : null;
    },
    draining,
    close() {
      clearTimeout(checks);
      checks = null;
      return new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        agent.destroy();
        server.close(() => resolve());
      });
    },
  };
}
