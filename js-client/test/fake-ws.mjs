import { ferry, waitFor } from './helpers.mjs';

// A WebSocket the test drives by hand, for server answers the real server gives only in a
// race: the test opens it, feeds it frames and reads what the client sent.
export function fakeSockets() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.closed = false;
      sockets.push(this);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close() { this.closed = true; }
    // Test side.
    open() { this.onopen && this.onopen({}); }
    feed(frames) { this.onmessage && this.onmessage({ data: JSON.stringify(frames) }); }
    drop() { this.closed = true; this.onclose && this.onclose({ code: 1006 }); }
  }
  return { sockets, WebSocket: FakeWebSocket, last: () => sockets.at(-1) };
}

export function welcome(fields = {}) {
  return { t: 'welcome', v: 1, sid: 'S'.repeat(22), secret: 'k'.repeat(43), resumed: false, ack: 0,
    hb: 25000, timeout: 60000, window: 120000, max_frame: 65536, max_batch: 128, ack_bytes: 65536,
    ...fields };
}

// Lets the client's promises (its token, its handshake) settle.
export const tick = () => new Promise((r) => setTimeout(r, 5));

// A client on fake WebSockets (`transport: 'websocket'`, a short backoff), its handshake sent
// and not yet answered; closed when the test ends.
export async function connectFake(t) {
  const fake = fakeSockets();
  const c = ferry.connect('http://127.0.0.1:9/ferry', { WebSocket: fake.WebSocket, fetch,
    transport: 'websocket', minDelay: 1, maxDelay: 2 });
  t.after(() => c.close());
  fake.last().open();
  await tick();
  return { fake, c };
}

// Drops the client's connection and opens the one it makes next, its handshake sent.
export async function reconnectFake(fake) {
  const n = fake.sockets.length;
  fake.last().drop();
  await waitFor(() => fake.sockets.length === n + 1, 1000, 'the reconnect');
  fake.last().open();
  await tick();
}
