'use strict';
// Running children without blocking the event loop, and reading /proc.
const { spawn } = require('child_process');
const fs = require('fs');

/**
 * Runs a command to completion; resolves with its stdout. Async on purpose:
 * the agent's stderr is piped into this process and must keep draining
 * while a load generator runs.
 */
function runChild(file, args, { timeoutMs = 60_000, env } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${file}: ${e.message}`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${file} ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${err.trim() || out.trim()}`));
    });
  });
}

/** Runs loadgen and parses its one JSON line. */
async function runLoadgen(loadgen, args, maxSeconds = 20) {
  const out = await runChild(loadgen, args, {
    env: { ...process.env, EW_BENCH_MAX_SECONDS: String(maxSeconds) },
    timeoutMs: (maxSeconds + 10) * 1000,
  });
  const line = out.trim().split('\n').pop();
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`loadgen ${args.join(' ')} printed no JSON: ${out}`);
  }
}

/** VmRSS of a process in KiB, or undefined once it is gone. */
function rssKiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** VmRSS and its parts (RssAnon, RssFile, RssShmem) in KiB, or undefined once gone. */
function memoryKiB(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
    const m = { rss: field('VmRSS'), anon: field('RssAnon'), file: field('RssFile'), shmem: field('RssShmem') };
    return Number.isNaN(m.rss) ? undefined : m;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system, all threads) a process has used, in seconds; undefined once gone. */
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the ")" that ends the command name: utime is the 12th, stime the 13th
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}
// USER_HZ; 100 on every Linux architecture node runs on
const CLOCK_TICKS = 100;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = { runChild, runLoadgen, rssKiB, memoryKiB, cpuSeconds, sleep };
