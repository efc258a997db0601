// Behind a proxy that does not pass the Upgrade header, as many corporate proxies do: nginx,
// started by the test. The client must end up on long-polling and deliver everything.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { client, collect, inOrder, once, startServer, waitFor } from './helpers.mjs';

const NGINX = '/usr/sbin/nginx';

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

let srv, nginx, dir, proxyPort;

before(async () => {
  assert.ok(fs.existsSync(NGINX), 'nginx is installed (make test installs it)');
  srv = await startServer();
  proxyPort = await freePort();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-nginx-'));
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `${t}_temp_path ${dir}/${t};`).join('\n    ');
  fs.writeFileSync(path.join(dir, 'nginx.conf'), `
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    ${temp}
    server {
        listen 127.0.0.1:${proxyPort};
        location / {
            proxy_pass http://127.0.0.1:${srv.port};
            proxy_http_version 1.1;
            # No "proxy_set_header Upgrade": the Upgrade request never reaches the server.
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 60s;
        }
    }
}
`);
  const check = spawnSync(NGINX, ['-t', '-c', path.join(dir, 'nginx.conf')], { encoding: 'utf8' });
  assert.equal(check.status, 0, check.stderr);
  nginx = spawn(NGINX, ['-c', path.join(dir, 'nginx.conf')], { stdio: 'inherit' });
  const end = Date.now() + 5000;
  for (;;) {
    try {
      await fetch(`http://127.0.0.1:${proxyPort}/ferry/ferry.js`);
      break;
    } catch (e) {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
});

after(async () => {
  if (nginx) {
    const gone = new Promise((r) => nginx.on('exit', r));
    nginx.kill('SIGTERM');
    await gone;
  }
  if (srv) await srv.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('a proxy that strips Upgrade: the client falls back to long-polling and loses nothing', async () => {
  const status = await new Promise((resolve, reject) => {
    const req = http.get({
      host: '127.0.0.1', port: proxyPort, path: '/ferry/ws',
      headers: { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' },
    });
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(101); });
    req.on('response', (res) => { res.resume(); resolve(res.statusCode); });
    req.on('error', reject);
  });
  assert.notEqual(status, 101, 'the proxy really does not pass upgrades');

  const c = client(`http://127.0.0.1:${proxyPort}/ferry`, { probeInterval: 500 });
  const t0 = Date.now();
  const opened = await once(c, 'open');
  assert.equal(opened.transport, 'longpoll');
  assert.ok(Date.now() - t0 < 3000, `on long-polling after ${Date.now() - t0} ms`);
  const got = collect(c);
  for (let k = 1; k <= 20; k++) c.send({ k });
  await srv.control('publish', 'n=50&from=1&ms=5');
  await waitFor(() => got.length === 50, 10000, '50 messages through the proxy');
  assert.ok(inOrder(got, 50));
  await waitFor(() => c.stats().outbox === 0, 5000, 'acks through the proxy');
  // Probes keep failing through this proxy; the client stays put and keeps working.
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(c.transport, 'longpoll');
  c.close();
});
