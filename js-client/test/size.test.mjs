import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const { measure } = createRequire(import.meta.url)('../size.js');

test('the client is at most 5 KB minified and gzipped', async () => {
  const r = await measure();
  console.log(`ferry.js: ${r.source} B source, ${r.minified} B minified, ${r.gzipped} B gzipped`);
  assert.ok(r.gzipped <= r.limit, `${r.gzipped} B gzipped is over ${r.limit} B`);
});
