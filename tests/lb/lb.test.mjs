// nginx and HAProxy, configured by the templates in examples/cluster/, in front of real
// ferry nodes (tests/lb/server.c), with real clients (js-client/ferry.js on `ws` and
// node's http). The nodes are independent (no Redis), so they do not share sessions: a
// test that needs a session to stay on one node while its requests may be balanced
// uses one node.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  connectClient, freePort, lpHello, lpHelloStatus, lpRequest, lpResume, PREFIX, sleep, startBalancer, startNodes, stopNodes, waitFor,
  WebSocket,
} from './lib.mjs';

// ferry's defaults (README, Options): what the balancer's timeouts must stay above.
const POLL_HOLD_S = 25;
const HEARTBEAT_TIMEOUT_S = 60;

// A test body given a scope: what it starts through the scope is stopped when it ends,
// passed or failed, the last started first.
function withScope(body) {
  return async () => {
    const stops = [];
    const s = {
      defer(fn) { stops.push(fn); },
      // n nodes with `env`, and the balancer `kind` in front of them.
      async start(kind, n, env = {}) {
        const nodes = await startNodes({ n, env });
        s.defer(() => stopNodes(nodes));
        const lb = await startBalancer(kind, nodes);
        s.defer(() => lb.stop());
        return { nodes, lb };
      },
      client(lb, opts) {
        const c = connectClient(lb, opts);
        s.defer(() => c.close());
        return c;
      },
    };
    try {
      await body(s);
    } finally {
      for (const fn of stops.reverse()) await fn();
    }
  };
}

// The read timeouts a WebSocket and a held poll meet in the configuration, in seconds.
function readTimeouts(kind, config) {
  const seconds = (v) => Number(/^(\d+)s$/.exec(v)[1]);
  if (kind === 'nginx') {
    const loc = (p) => new RegExp(`location = ${PREFIX}/${p} \\{([^}]*)\\}`).exec(config)[1];
    const t = (p) => seconds(/proxy_read_timeout (\S+);/.exec(loc(p))[1]);
    return { ws: [t('ws')], lp: [t('lp')] };
  }
  const t = (name) => seconds(new RegExp(`^\\s*timeout ${name} (\\S+)$`, 'm').exec(config)[1]);
  // A WebSocket is a tunnel after the upgrade; a poll is an HTTP exchange.
  return { ws: [t('tunnel'), t('client'), t('server')], lp: [t('client'), t('server')] };
}

const ordered = (msgs, node) => msgs.filter((m) => m.node === node).map((m) => m.i);
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, k) => a + k);

for (const kind of ['nginx', 'haproxy']) {
  describe(kind, () => {
    test('its timeouts are above the poll hold and the heartbeat timeout', withScope(async (s) => {
      const { lb } = await s.start(kind, 1);
      const t = readTimeouts(kind, lb.config);
      for (const v of [...t.ws, ...t.lp]) assert.ok(v > HEARTBEAT_TIMEOUT_S, `${v} s`);
      for (const v of t.lp) assert.ok(v > POLL_HOLD_S, `${v} s`);
    }));

    test('a WebSocket session receives messages and lives through heartbeats', withScope(async (s) => {
      // Heartbeats every 150 ms, a connection silent for 600 ms is dropped: 3 s through
      // the balancer is twenty heartbeats and five timeouts.
      const { nodes, lb } = await s.start(kind, 2, { LB_HB_MS: '150', LB_TIMEOUT_MS: '600' });
      const c = s.client(lb, { transport: 'websocket', token: 'ws' });
      await c.opened();
      let node = null;
      for (const n of nodes) if ((await n.info()).attached === 1) node = n;
      assert.ok(node, 'the session is attached to a node');
      await node.publish(5);
      await waitFor(() => c.seen.messages.length === 5, 5000, 'five messages');
      await sleep(3000);
      await node.publish(5);
      await waitFor(() => c.seen.messages.length === 10, 5000, 'five more');
      assert.deepEqual(ordered(c.seen.messages, node.name), range(1, 10));
      assert.equal(c.seen.opens.length, 1, 'one connection, never reopened');
      assert.equal(c.client.transport, 'websocket');
      assert.deepEqual(c.seen.resets, []);
      let resumes = 0;
      for (const n of nodes) resumes += (await n.info()).resumes;
      assert.equal(resumes, 0);
    }));

    test('a long-polling session receives and sends across poll holds', withScope(async (s) => {
      // One node: a handshake and the polls after it may be balanced to different nodes
      // until sessions are shared. Polls are held 500 ms.
      const { nodes, lb } = await s.start(kind, 1, { LB_POLL_MS: '500' });
      const c = s.client(lb, { transport: 'longpoll', token: 'lp' });
      await c.opened();
      await nodes[0].publish(3);
      await waitFor(() => c.seen.messages.length === 3, 5000, 'three messages');
      await sleep(1500); // held polls answered empty, and polled again
      await nodes[0].publish(3);
      c.client.send({ hello: 'through the balancer' });
      await waitFor(() => c.seen.messages.length === 6, 5000, 'three more');
      await waitFor(() => c.client.stats().outbox === 0, 5000, 'the send acknowledged');
      assert.deepEqual(ordered(c.seen.messages, 'a'), range(1, 6));
      assert.equal(c.seen.opens.length, 1);
      assert.equal(c.client.transport, 'longpoll');
      assert.deepEqual(c.seen.resets, []);
      const polls = (await nodes[0].info()).lp[c.client.sessionId];
      assert.ok(polls >= 4, `${polls} polls and sends with credentials`);
      // Nothing of the credentials in any log of the balancer.
      const logs = lb.logs();
      assert.match(logs, new RegExp(`${PREFIX}/lp`), 'the requests are logged');
      assert.ok(!logs.includes(c.client.sessionId), 'no session ID in the logs');
      assert.ok(!/Bearer/i.test(logs), 'no Authorization in the logs');
    }));

    test("the client's address reaches the node, whatever X-Real-IP the client sends", withScope(async (s) => {
      const { nodes, lb } = await s.start(kind, 1);
      const spoof = { 'X-Real-IP': '198.51.100.7' };
      const ws = s.client(lb, { transport: 'websocket', token: 'ip-ws', from: '127.0.0.2', headers: spoof });
      const lp = s.client(lb, { transport: 'longpoll', token: 'ip-lp', from: '127.0.0.3', headers: spoof });
      await Promise.all([ws.opened(), lp.opened()]);
      const { peers } = await nodes[0].info();
      assert.deepEqual(peers, { 'ip-ws': '127.0.0.2', 'ip-lp': '127.0.0.3' });
    }));

    test("a page served through the balancer is of ferry's own origin", withScope(async (s) => {
      // No allowed_origins on the node: same origin only, the Origin against the Host.
      const { lb } = await s.start(kind, 1);
      const ws = new WebSocket(`ws://127.0.0.1:${lb.port}${PREFIX}/ws`, { origin: lb.url });
      s.defer(() => ws.terminate());
      await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
      const r = await fetch(`${lb.url}${PREFIX}/lp`, {
        method: 'POST', body: '{"t":"hello","v":1}', headers: { Origin: lb.url },
      });
      assert.equal(r.status, 200, await r.text());
      assert.equal(r.headers.get('access-control-allow-origin'), lb.url);
    }));

    test('the polls, sends and resumes of one session go to one node', withScope(async (s) => {
      const { nodes, lb } = await s.start(kind, 2, { LB_POLL_MS: '50' });
      // Each session: two polls and two sends, the last two with another secret, as
      // after a resume (the secret rotates; the hash is of the ID alone), and a resume
      // handshake naming the session in its URL. A node that does not hold the session
      // answers 404, which is beside the point here: where each request went is.
      const sessions = await Promise.all(Array.from({ length: 24 }, () => lpHello(lb.url)));
      await Promise.all(sessions.map(async (sess) => {
        const rotated = { sid: sess.sid, secret: 'x' + sess.secret.slice(1) };
        for (const [cred, method, body] of [[sess, 'GET'], [sess, 'POST', '{"t":"ping"}'],
          [rotated, 'GET'], [rotated, 'POST', '{"t":"ping"}']]) {
          await lpRequest(lb.url, cred, method, body);
        }
        await lpResume(lb.url, sess);
      }));
      const counts = await Promise.all(nodes.map(async (n) => (await n.info()).lp));
      for (const { sid } of sessions) {
        const per = counts.map((c) => c[sid] || 0);
        assert.equal(per.filter((k) => k > 0).length, 1, `session ${sid.slice(0, 6)}: ${per}`);
        assert.equal(per[0] + per[1], 5);
      }
      for (const c of counts) assert.ok(Object.keys(c).length > 0, 'both nodes hold sessions');
    }));

    test('with one node dead, new sessions and pages go to the other', withScope(async (s) => {
      const { nodes, lb } = await s.start(kind, 2);
      await nodes[0].kill();
      for (let k = 0; k < 8; k++) await lpHello(lb.url);
      for (let k = 0; k < 4; k++) {
        const r = await fetch(`${lb.url}/`);
        assert.equal(r.status, 200);
        assert.match(await r.text(), /node b/);
      }
      const js = await fetch(`${lb.url}${PREFIX}/ferry.js`);
      assert.equal(js.status, 200);
      assert.match(await js.text(), /ferry/);
      assert.equal((await nodes[1].info()).opened, 8);
    }));
  });
}

// A node whose Redis address answers nothing: a cluster member that cannot reach its store.
async function redisLess(s, kind) {
  const closed = `127.0.0.1:${await freePort()}`;
  return s.start(kind, 2, (name) => (name === 'a' ? { LB_REDIS: closed } : {}));
}

async function health(node) {
  const r = await fetch(`http://${node.addr}${PREFIX}/health`);
  return { status: r.status, body: await r.json() };
}

test('nginx passes over a node that cannot reach Redis', withScope(async (s) => {
  const { nodes, lb } = await redisLess(s, 'nginx');
  assert.deepEqual(await health(nodes[0]), { status: 503, body: { status: 'store_unavailable', node: 'a' } });
  // A handshake answered 503 goes on to the other node, and the node is out for 10 s.
  const statuses = [];
  for (let k = 0; k < 8; k++) statuses.push(await lpHelloStatus(lb.url));
  assert.deepEqual(statuses, Array(8).fill(200));
  assert.equal((await nodes[1].info()).opened, 8);
  assert.ok(lb.logs().includes(`"POST ${PREFIX}/lp" 200`) &&
    lb.logs().includes(`"${nodes[0].addr}, ${nodes[1].addr}"`), 'one handshake met node a first');
}));

// A node that drains (ferry_mount_drain) before a restart refuses new connections with 503
// and answers draining on its health check: nginx passes each refused request on to the other
// node (proxy_next_upstream http_503) and keeps the node out for fail_timeout; HAProxy's
// check takes it out. Either way no new client lands on it, on either transport, and none of
// them sees an error.
for (const kind of ['nginx', 'haproxy']) {
  test(`${kind}: once the check has run, a new client never lands on a draining node`, withScope(async (s) => {
    const { nodes, lb } = await s.start(kind, 2);
    if (kind === 'haproxy') await waitFor(async () => Object.values(await lb.servers()).every((st) => st === 'UP'), 5000, 'both UP');
    await nodes[0].shutdown(); // the drain begins on a thread of the node's own, soon after
    await waitFor(async () => (await health(nodes[0])).status === 503, 5000, 'n1 answers 503');
    assert.deepEqual(await health(nodes[0]), { status: 503, body: { status: 'draining', node: '' } });
    if (kind === 'haproxy') await waitFor(async () => (await lb.servers()).n1 === 'DOWN', 5000, 'n1 DOWN');
    const cs = [];
    for (let k = 0; k < 6; k++) {
      cs.push(s.client(lb, { transport: 'websocket', token: `dws${k}` }));
      cs.push(s.client(lb, { transport: 'longpoll', token: `dlp${k}` }));
    }
    await Promise.all(cs.map((c) => c.opened()));
    assert.equal((await nodes[0].info()).opened, 0, 'no session on the draining node');
    assert.equal((await nodes[1].info()).opened, 12);
    for (const c of cs) {
      assert.equal(c.seen.opens.length, 1, 'each client welcomed at its first attempt');
      assert.deepEqual(c.seen.errors, []);
    }
    assert.deepEqual(cs.map((c) => c.client.transport).sort(),
      [...Array(6).fill('longpoll'), ...Array(6).fill('websocket')], 'each on its own transport');
  }));
}

describe('haproxy health checks', () => {
  test('a node that cannot reach Redis is out of rotation', withScope(async (s) => {
    const { nodes, lb } = await redisLess(s, 'haproxy');
    // HAProxy starts with every node up, unconfirmed; a first failed check takes it out.
    await waitFor(async () => {
      const st = await lb.servers();
      return st.n1 === 'DOWN' && st.n2 === 'UP';
    }, 5000, 'n1 DOWN, n2 UP');
    for (let k = 0; k < 8; k++) await lpHello(lb.url);
    assert.equal((await nodes[1].info()).opened, 8);
  }));

  test('a draining node leaves rotation and comes back', withScope(async (s) => {
    const { nodes, lb } = await s.start('haproxy', 2);
    await waitFor(async () => Object.values(await lb.servers()).every((st) => st === 'UP'), 5000, 'both UP');
    await nodes[0].drain(true);
    await waitFor(async () => (await lb.servers()).n1 === 'DOWN', 5000, 'n1 DOWN');
    // Held polls of a draining node's sessions follow the checks too.
    assert.equal((await lb.servers('ferry_by_session')).n1, 'DOWN');
    const health = await fetch(`${lb.url}${PREFIX}/health`);
    assert.equal(health.status, 200, 'the balancer asks a ready node');
    for (let k = 0; k < 8; k++) await lpHello(lb.url);
    assert.equal((await nodes[0].info()).opened, 0);
    assert.equal((await nodes[1].info()).opened, 8);

    await nodes[0].drain(false);
    await waitFor(async () => (await lb.servers()).n1 === 'UP', 5000, 'n1 UP again');
    for (let k = 0; k < 8; k++) await lpHello(lb.url);
    assert.ok((await nodes[0].info()).opened > 0, 'new sessions reach the node again');
  }));
});
