// The defects the chaos suite found, each reproduced deterministically by a script that
// exits 1 while the defect is there (docs/CHAOS.md, Findings): a reset's unsent count that
// included messages the server had delivered (both transports), a long-poll client's own
// late resume ending its session as forked, and a WebSocket probe answered by a refusal.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

import { root } from './lib.mjs';

function repro(script, ...args) {
  const r = spawnSync(process.execPath, [path.join(root, 'tests', 'chaos', script), ...args],
    { encoding: 'utf8', timeout: 60000 });
  const out = `${r.stdout}${r.stderr}`.trim();
  assert.equal(r.status, 0, `${script} ${args.join(' ')} exited ${r.status ?? r.signal}:\n${out}`);
  return out;
}

test('a reset counts as unsent only what the old session did not deliver: WebSocket', () => {
  repro('repro-unsent.mjs', 'websocket');
});

test('a reset counts as unsent only what the old session did not deliver: long-polling', () => {
  repro('repro-unsent.mjs', 'longpoll');
});

test("a long-poll client's own late resume leaves its session alone", () => {
  repro('repro-forked.mjs', 'longpoll');
});

test('a WebSocket probe refused or answered late never strands the client', () => {
  repro('repro-probe.mjs');
});
