// The load generator against real servers, briefly: it must see every message exactly once
// on both ferry transports, through a resume storm, and it must see the loss a server
// without resumption causes (so its loss check can fail). No timing is asserted.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = (name) => path.join(root, 'build', 'bench', name);
const servers = [];

function startServer(name) {
  const child = spawn(bin(name), ['400'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, PORT: '0' } });
  servers.push(child);
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /port (\d+)/.exec(buf);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.on('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
}

function fyload(port, args) {
  const child = spawn(bin('fyload'), ['--port', String(port), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 120000);
    child.on('exit', (code) => {
      clearTimeout(t);
      const steps = out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
      resolve({ code, steps, err });
    });
  });
}

after(async () => {
  for (const c of servers) {
    if (c.exitCode !== null) continue;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 10000);
    await gone;
    clearTimeout(t);
  }
});

function assertExact(step, n, label) {
  const where = `${label} ${step.step} at ${step.rate}/s`;
  assert.ok(step.published > 0, `${where}: nothing published`);
  assert.equal(step.expected, step.published * n, `${where}: expected count`);
  assert.equal(step.received, step.expected, `${where}: received`);
  assert.equal(step.lost, 0, `${where}: lost`);
  assert.equal(step.dup, 0, `${where}: duplicates`);
  assert.equal(step.ooo, 0, `${where}: out of order`);
  assert.equal(step.errors, 0, `${where}: protocol errors`);
}

for (const proto of ['ferry-ws', 'ferry-lp']) {
  test(`${proto}: 300 sessions, every message exactly once, also across a resume storm`, async () => {
    const { port, child } = await startServer('ferry_bench');
    const extra = proto === 'ferry-ws' ? ['--rates', '20,100'] : ['--lp-rate', '20'];
    const r = await fyload(port, ['--pid', String(child.pid), '--proto', proto, '--conns', '300',
      '--procs', '2', '--step', '1.5', '--storm', '20', ...extra]);
    assert.equal(r.code, 0, r.err);
    const connect = r.steps.find((s) => s.step === 'connect');
    assert.equal(connect.connected, 300);
    const load = r.steps.filter((s) => s.step === 'rate' || s.step === 'steady');
    assert.ok(load.length >= 1);
    for (const s of load) assertExact(s, 300, proto);
    const storm = r.steps.find((s) => s.step === 'storm');
    assertExact(storm, 300, proto);
    assert.equal(storm.reconnected, 300);
    assert.equal(storm.resumed, 300, 'every session resumed, none reset');
    assert.equal(storm.reset, 0);
    assert.ok(storm.recovered > 0, 'messages published during the outage were replayed');
    if (proto === 'ferry-lp') assert.ok(storm.responses > 0);
  });
}

test('the generator reports the loss of a server that cannot resume', async () => {
  const { port, child } = await startServer('civetweb_bench');
  const r = await fyload(port, ['--pid', String(child.pid), '--proto', 'ws', '--conns', '200',
    '--procs', '2', '--step', '1.5', '--rates', '50', '--storm', '40']);
  assert.equal(r.code, 0, r.err);
  assertExact(r.steps.find((s) => s.step === 'rate'), 200, 'civetweb');
  const storm = r.steps.find((s) => s.step === 'storm');
  assert.equal(storm.reconnected, 200);
  assert.equal(storm.resumed, 0);
  assert.ok(storm.lost > 0, 'messages sent while connections were down are counted lost');
  assert.equal(storm.received + storm.lost, storm.expected, 'every message is either received or lost');
});
