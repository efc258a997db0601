// What permessage-deflate (RFC 7692) with server_no_context_takeover would save on ferry's
// frames: each frame deflated alone (raw deflate, sync flush, the trailing 00 00 ff ff
// dropped), as a WebSocket payload with its frame header. Prints bytes before and after, and
// checks that each inflates back to the frame.
//   node bench/deflate.mjs
import zlib from 'node:zlib';

const frame = (seq, topic, data) => JSON.stringify({ t: 'msg', seq, topic, data });
// A live-scores event as examples/live-scores publishes it, and a 1 KB JSON document.
const demo = { type: 'event', match: 3, n: 41, kind: 'goal', minute: 67, score: [2, 1],
  status: 'live', team: 'home', player: 'Okafor' };
const kb = { id: 123456, user: { name: 'Ada Lovelace', handle: 'ada', roles: ['admin', 'editor'] },
  items: Array.from({ length: 12 }, (_, i) => ({ sku: `SKU-${String(i).padStart(5, '0')}`,
    qty: (i % 7) + 1, price: Math.round((3.5 + i * 1.25) * 100) / 100,
    tags: i % 2 ? ['red', 'large'] : ['blue'] })),
  note: 'Delivered to the loading bay; signature on file.' };
const header = (n) => (n < 126 ? 2 : n < 65536 ? 4 : 10);
for (const [name, text] of [['live-scores event', frame(41, 'matches', demo)], ['1 KB JSON', frame(41, 'orders', kb)]]) {
  const raw = Buffer.from(text);
  const sync = { level: 6, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  const out = zlib.deflateRawSync(raw, sync).subarray(0, -4);
  const back = zlib.inflateRawSync(Buffer.concat([out, Buffer.from([0, 0, 0xff, 0xff])]),
    { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  if (!back.equals(raw)) throw new Error(`${name}: does not inflate back`);
  const before = raw.length + header(raw.length);
  const after = out.length + header(out.length);
  console.log(`${name}: ${before} -> ${after} bytes on the wire (${Math.round((100 * after) / before)} %)`);
}
