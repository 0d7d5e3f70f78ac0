#!/usr/bin/env node
'use strict';
// Removes development-only packages from DIR/node_modules, as package-lock.json
// marks them ("dev": true), so an installed or packaged tree carries only what
// the agent runs. Offline and idempotent (npm prune would want the registry).
//   node prune-dev-modules.js DIR
const fs = require('fs');
const path = require('path');

const dir = process.argv[2];
if (!dir) {
  console.error('usage: prune-dev-modules.js DIR');
  process.exit(2);
}
const lockFile = path.join(dir, 'package-lock.json');
const lock = JSON.parse(fs.readFileSync(lockFile, 'utf8'));
if (!lock.packages) {
  console.error(`${lockFile}: no "packages" (lockfileVersion >= 2 needed)`);
  process.exit(1);
}
let removed = 0;
for (const [where, meta] of Object.entries(lock.packages)) {
  if (!where.startsWith('node_modules/') || !meta.dev) continue;
  const target = path.join(dir, where);
  // never outside DIR, whatever the lock file says
  if (path.relative(dir, target).startsWith('..')) continue;
  if (fs.existsSync(target)) {
    fs.rmSync(target, { recursive: true, force: true });
    removed++;
  }
}
// npm's own record of the full tree, and scope directories left empty
fs.rmSync(path.join(dir, 'node_modules', '.bin'), { recursive: true, force: true });
fs.rmSync(path.join(dir, 'node_modules', '.package-lock.json'), { force: true });
for (const entry of fs.readdirSync(path.join(dir, 'node_modules'))) {
  const scope = path.join(dir, 'node_modules', entry);
  if (entry.startsWith('@') && fs.readdirSync(scope).length === 0) fs.rmdirSync(scope);
}
console.log(`removed ${removed} development packages`);
