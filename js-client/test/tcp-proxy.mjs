// A TCP proxy in front of a server, for tests that need the network to fail the quiet way.
// blackhole() stops forwarding in both directions without closing anything, like a cable
// pulled somewhere in the middle: what was sent waits, as TCP would keep retransmitting it.
// heal() lets those connections flow again. A connection opened during the blackhole never
// reaches the server (its SYN would have been lost) and is reset by heal(). The demo's
// browser test uses it as well.
import net from 'node:net';

export function startProxy(targetPort, targetHost = '127.0.0.1') {
  const pairs = new Set();
  let holed = false;

  // Connects upstream the first time a pair may flow, then pipes both ways.
  function flow(p) {
    if (!p.up) {
      p.up = net.connect(targetPort, targetHost);
      // The server's close crosses only a working network.
      const gone = () => { if (holed) p.dead = true; else p.down.destroy(); };
      p.up.on('error', gone);
      p.up.on('close', gone);
    }
    p.down.pipe(p.up);
    p.up.pipe(p.down);
  }

  function stall(p) {
    p.down.unpipe();
    p.down.pause();
    if (p.up) {
      p.up.unpipe();
      p.up.pause();
    }
  }

  const server = net.createServer((down) => {
    const p = { down, up: null };
    pairs.add(p);
    proxy.accepted++;
    down.on('error', () => {});
    down.on('close', () => {
      pairs.delete(p);
      if (p.up) p.up.destroy();
    });
    if (holed) {
      down.pause();
      p.late = true;
    } else {
      flow(p);
    }
  });

  const proxy = {
    port: 0,
    accepted: 0,
    get holed() { return holed; },
    // Connections from now on go to another port (a server started again).
    retarget(port) { targetPort = port; },
    blackhole() {
      holed = true;
      for (const p of pairs) stall(p);
    },
    heal() {
      holed = false;
      for (const p of pairs) {
        if (p.dead || p.late) p.down.resetAndDestroy();
        else flow(p);
      }
    },
    close() {
      for (const p of pairs) {
        p.down.destroy();
        if (p.up) p.up.destroy();
      }
      return new Promise((resolve) => server.close(resolve));
    },
  };
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      proxy.port = server.address().port;
      resolve(proxy);
    });
  });
}
