'use strict';
// `npm run build`: dist/server.js plus dist/BUILD_ID, the id GET /build answers with (BUILD_ID
// from the environment, else the build's time and a random suffix), so two builds tell apart.
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const dist = path.join(root, 'dist');
fs.mkdirSync(dist, { recursive: true });
fs.copyFileSync(path.join(root, 'server.js'), path.join(dist, 'server.js'));
// GET /version answers with the version the build was made from, not what is checked out now.
fs.copyFileSync(path.join(root, 'package.json'), path.join(dist, 'package.json'));
const id = process.env.BUILD_ID || `${new Date().toISOString()}-${crypto.randomBytes(3).toString('hex')}`;
fs.writeFileSync(path.join(dist, 'BUILD_ID'), `${id}\n`);
console.log(`built dist/ (build ${id})`);
