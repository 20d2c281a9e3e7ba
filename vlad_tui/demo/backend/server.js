'use strict';
// backend-vlad sample: a dependency-free stand-in for the NestJS API, used by the demo and tests.
// PORT comes from the environment or from .env (cwd, then next to this file, then its parent).
const fs = require('fs');
const http = require('http');
const path = require('path');

function loadDotenv() {
  const candidates = [
    path.join(process.cwd(), '.env'),
    path.join(__dirname, '.env'),
    path.join(__dirname, '..', '.env'),
  ];
  for (const file of candidates) {
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      continue;
    }
    for (const line of text.split(/\r?\n/)) {
      const m = line.match(/^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/);
      if (!m || m[1] in process.env) continue;
      let value = m[2];
      if (/^(['"]).*\1$/.test(value)) value = value.slice(1, -1);
      process.env[m[1]] = value;
    }
    return;
  }
}

function readPackage() {
  for (const dir of [__dirname, path.join(__dirname, '..')]) {
    try {
      return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    } catch (err) {
      // dist/server.js finds the package one level up
    }
  }
  return { name: 'backend-vlad', version: '0.0.0' };
}

loadDotenv();
// A release that cannot boot (switched on in .env by the tests and the benchmark): it logs an
// error and exits before listening. The exit waits a moment because a cluster worker's stderr
// travels to pm2 over IPC, and an immediate exit loses the line.
const crashAtBoot = process.env.CRASH_AT_BOOT;
// A release that boots, serves, then exits 1 after CRASH_AFTER_MS (pm2 restarts it: a crash
// loop); one whose /health never answers (HANG_HEALTH). Both switched on in .env by the tests.
const crashAfter = Number(process.env.CRASH_AFTER_MS || 0);
const hangHealth = Boolean(process.env.HANG_HEALTH);
const pkg = readPackage();
const port = Number(process.env.PORT || 3335);
const bootDelay = Number(process.env.BOOT_DELAY_MS || 0); // simulates a slow NestJS boot
const startedAt = new Date().toISOString();

function readBuildId() {
  // Written by `npm run build` next to dist/server.js; none when run from the source.
  try {
    return fs.readFileSync(path.join(__dirname, 'BUILD_ID'), 'utf8').trim() || null;
  } catch (err) {
    return null;
  }
}
const buildId = readBuildId();

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  const url = req.url.split('?')[0];
  if (req.method === 'GET' && url === '/health') {
    if (hangHealth) return undefined; // never answers, never closes
    return send(res, 200, { status: 'ok' });
  }
  if (req.method === 'GET' && url === '/build') {
    return send(res, 200, { build: buildId, pid: process.pid });
  }
  if (req.method === 'GET' && url === '/version') {
    return send(res, 200, { name: pkg.name, version: pkg.version, pid: process.pid, startedAt });
  }
  return send(res, 404, { statusCode: 404, message: `Cannot ${req.method} ${url}` });
});
server.keepAliveTimeout = 1000;

function shutdown(signal) {
  console.log(`received ${signal}, closing`);
  // In pm2's cluster mode the master hands each new connection to a worker over IPC. One sent
  // just before the master learns this server closed is answered "not accepted" and handed to
  // another worker, but only if this process is still alive to answer: exiting at once would
  // orphan it, and that client would wait forever. So stay a moment after closing.
  server.close(() => setTimeout(() => process.exit(0), 300));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 3000).unref();
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));

if (crashAtBoot) {
  console.error(`Error: CRASH_AT_BOOT=${crashAtBoot}: refusing to start`);
  setTimeout(() => process.exit(1), 200);
} else {
  setTimeout(() => {
    server.listen(port, () => {
      console.log(`${pkg.name} ${pkg.version} listening on ${port}`);
      if (process.send) process.send('ready'); // pm2 --wait-ready
      if (crashAfter > 0) {
        setTimeout(() => {
          console.error(`Error: CRASH_AFTER_MS=${crashAfter}: crashing after boot`);
          setTimeout(() => process.exit(1), 200);
        }, crashAfter);
      }
    });
  }, bootDelay);
}
