'use strict';
// Starts the real agent (bin/edgeward agent) for one configuration and stops
// it with SIGTERM, as an operator would.
const { spawn } = require('child_process');
const path = require('path');

const REPO = path.resolve(__dirname, '..', '..');
const CLI = path.join(REPO, 'bin', 'edgeward');
const STDERR_KEEP = 64 * 1024;

/** Agents still running, killed if the bench itself dies. */
const running = new Set();
function killAll() {
  for (const child of running) {
    try {
      child.kill('SIGTERM');
    } catch {
      /* already gone */
    }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

/**
 * Starts the agent and resolves once it logs {"event":"ready"} on stderr.
 * Returns { pid, ready (the ready log line), startMs, logs(), stderr(),
 * exited() (undefined while it runs), stop() }. keepAlive: see keepalive.js.
 */
function startAgent({ configFile, policyDir, keepAlive = false, memoryReport = false, readyTimeoutMs = 60_000 }) {
  const started = Date.now();
  const preload = [
    ...(keepAlive ? ['--require', path.join(__dirname, 'keepalive.js')] : []),
    ...(memoryReport ? ['--require', path.join(__dirname, 'memreport.js')] : []),
  ];
  const child = spawn(
    process.execPath,
    [...preload, CLI, 'agent', '--config', configFile, '--policies', policyDir, '--log-format', 'json'],
    // stdout carries alerts only; nothing in the bench reads them.
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  running.add(child);
  let err = '';
  let exited;
  const exitPromise = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      exited = signal ?? code;
      running.delete(child);
      resolve(exited);
    }),
  );
  const logs = () =>
    err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l);
        } catch {
          return undefined;
        }
      })
      .filter(Boolean);
  let stopMs;
  const stop = async () => {
    const t0 = Date.now();
    const wasRunning = exited === undefined;
    if (wasRunning) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const code = await exitPromise;
    clearTimeout(timer);
    if (wasRunning && stopMs === undefined) stopMs = Date.now() - t0;
    return code;
  };
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(async () => {
      settled = true;
      await stop();
      reject(new Error(`agent not ready after ${readyTimeoutMs} ms; its log:\n${err}`));
    }, readyTimeoutMs);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      err += d;
      // keep the head (startup) and a bounded tail
      if (err.length > 2 * STDERR_KEEP) err = err.slice(0, STDERR_KEEP) + err.slice(-STDERR_KEEP);
      if (settled) return;
      // a fatal start error ends the wait at once (with keepalive.js the
      // process would otherwise linger until the timeout)
      const fatal = /^edgeward: /m.test(err) || logs().some((l) => l.level === 'error' && /^cannot start/.test(l.message));
      if (fatal) {
        settled = true;
        clearTimeout(timer);
        stop().then(() => reject(new Error(`agent failed to start; its log:\n${err}`)));
        return;
      }
      const ready = logs().find((l) => l.event === 'ready');
      if (ready) {
        settled = true;
        clearTimeout(timer);
        resolve({
          pid: child.pid,
          ready,
          startMs: Date.now() - started,
          logs,
          stderr: () => err,
          stop,
          exited: () => exited,
          /** SIGTERM to exit, once stopped */
          stopMs: () => stopMs,
          memoryUsage: () => requestMemoryUsage(child, logs),
        });
      }
    });
    exitPromise.then((code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`agent exited (${code}) before it was ready; its log:\n${err}`));
    });
  });
}

/** With memreport.js preloaded: the agent's process.memoryUsage(), or undefined. */
async function requestMemoryUsage(child, logs) {
  const before = logs().filter((l) => l.benchMemory).length;
  child.kill('SIGUSR2');
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 25));
    const reports = logs().filter((l) => l.benchMemory);
    if (reports.length > before) return reports[reports.length - 1].benchMemory;
  }
  return undefined;
}

module.exports = { startAgent, REPO, CLI };
