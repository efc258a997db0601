// Test support: starts the real C server (build/tests/js_server) on a free port, talks to
// its test-only controls, and makes clients with node's fetch and the `ws` WebSocket.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
export const ferry = require('../ferry.js');
export const WebSocket = require('ws');
export const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '../..');

export async function startServer(env = {}) {
  const bin = path.join(root, 'build/tests/js_server');
  const child = spawn(bin, [path.join(here, 'www')], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /port (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error('server exited with ' + code)));
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    port,
    base,
    url: base + '/ferry',
    async control(what, query = '') {
      const r = await fetch(`${base}/control/${what}${query ? '?' + query : ''}`, {
        method: ['received', 'refused', 'sessions'].includes(what) ? 'GET' : 'POST',
      });
      return r.json();
    },
    stop() {
      return new Promise((resolve) => {
        child.on('exit', resolve);
        child.stdin.end();
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      });
    },
  };
}

export function client(url, opts = {}) {
  return ferry.connect(url, { WebSocket, fetch, ...opts });
}

export function once(c, event) {
  return new Promise((resolve) => {
    const off = c.on(event, (a) => { off(); resolve(a); });
  });
}

export async function waitFor(cond, ms = 10000, what = 'condition') {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// Collects the {"i": n} messages a client receives and checks 1..n, each once, in order.
export function collect(c) {
  const got = [];
  c.on('message', (d) => { if (d && d.i !== undefined) got.push(d.i); });
  return got;
}

export function inOrder(got, n) {
  if (got.length !== n) return false;
  for (let k = 0; k < n; k++) if (got[k] !== k + 1) return false;
  return true;
}
