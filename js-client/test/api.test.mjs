// What ferry.js and ferry.mjs export at run time is what their declarations say: the lists
// in api.mjs, which types.ts holds equal to ferry.d.ts and ferry.d.mts. And nothing of the
// client's workings shows: a client has exactly the members Client declares.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { ferry, root } from './helpers.mjs';
import { CLIENT, ESM, MODULE, STATS } from './api.mjs';
import path from 'node:path';

const sorted = (a) => [...a].sort();
const never = () => new Promise(() => {});

test('ferry.js exports what ferry.d.ts declares', () => {
  assert.deepEqual(sorted(Object.keys(ferry)), sorted(MODULE));
});

test('a client has exactly the members Client declares', () => {
  const c = ferry.connect('http://127.0.0.1:9/ferry', { transport: 'longpoll', fetch: never });
  try {
    const members = [];
    for (const k in c) members.push(k);
    assert.deepEqual(sorted(members), sorted(CLIENT));
    assert.deepEqual(sorted(Object.getOwnPropertyNames(c)), sorted(CLIENT), 'no hidden members either');
    assert.deepEqual(sorted(Object.keys(c.stats())), sorted(STATS));
    assert.deepEqual(c.stats(), { lastSeq: 0, outSeq: 0, outbox: 0, lastRx: 0 });
    c.send('queued');
    assert.deepEqual(c.stats(), { lastSeq: 0, outSeq: 1, outbox: 1, lastRx: 0 });
    assert.throws(() => { 'use strict'; c.state = 'open'; }, TypeError, 'state is read-only');
  } finally {
    c.close();
  }
});

// ferry.mjs is built by the Makefile (make test-js names it in FERRY_MJS).
const mjs = process.env.FERRY_MJS || path.join(root, 'build/ferry.mjs');
test('ferry.mjs exports what ferry.d.mts declares', { skip: !fs.existsSync(mjs) && 'no ferry.mjs built' }, async () => {
  const m = await import(pathToFileURL(mjs).href);
  assert.deepEqual(sorted(Object.keys(m)), sorted(ESM));
  assert.deepEqual(sorted(Object.keys(m.default)), sorted(MODULE));
  assert.equal(m.connect, m.default.connect);
});
