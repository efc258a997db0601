// Every option the client reads is declared in ferry.d.ts and documented in docs/CLIENT.md.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { root } from './helpers.mjs';

const read = (p) => fs.readFileSync(path.join(root, p), 'utf8');

test('ferry.d.ts and docs/CLIENT.md name every option of ferry.js', () => {
  const src = read('js-client/ferry.js');
  const block = /var DEFAULTS = \{([\s\S]*?)\n {2}\};/.exec(src)[1];
  const options = [...block.matchAll(/^\s+(\w+):/gm)].map((m) => m[1]);
  assert.ok(options.length >= 12, `found the options: ${options}`);
  const dts = read('js-client/ferry.d.ts');
  const doc = read('docs/CLIENT.md');
  for (const o of options) {
    assert.match(dts, new RegExp(`\\b${o}\\?:`), `ferry.d.ts declares ${o}`);
    assert.match(doc, new RegExp(`^\\| [^|]*\`${o}\``, 'm'), `docs/CLIENT.md has a row for ${o}`);
  }
});
