'use strict';
// Compiles the load generator and the exec target with the system C compiler.
const { execFileSync } = require('child_process');
const path = require('path');

const BENCH_DIR = path.resolve(__dirname, '..');

function compile(args, what) {
  try {
    execFileSync('cc', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const detail = err.stderr ? err.stderr.toString() : err.message;
    throw new Error(`cannot compile ${what} with cc (install gcc: scripts/install-deps.sh):\n${detail}`);
  }
}

/** Builds loadgen and noop (static) into `outDir`; returns their paths. */
function buildTools(outDir) {
  const loadgen = path.join(outDir, 'loadgen');
  const noop = path.join(outDir, 'noop');
  compile(['-O2', '-Wall', '-Wextra', '-Werror', '-o', loadgen, path.join(BENCH_DIR, 'loadgen.c'), '-lpthread'], 'bench/loadgen.c');
  compile(['-O2', '-static', '-o', noop, path.join(BENCH_DIR, 'noop.c')], 'bench/noop.c (static; needs libc6-dev)');
  return { loadgen, noop };
}

module.exports = { buildTools };
