#!/usr/bin/env node
'use strict';
// edgeward benchmarks (`npm run bench`, as root, after `npm run build`).
//
// Every cost is a RATIO against a baseline measured in the same run: each
// agent configuration's measurement is bracketed by baseline runs (no agent)
// just before and just after it, rounds alternate the configurations, and the
// table shows the median ratio with its min..max over rounds. Nothing here
// asserts a time; targets are printed beside the results.
//
//   node bench/run.js [--quick] [--json] [--rounds N] [--only ops,events,rss]
//                     [--configs monitor,compat] [--ops open,exec,connect]
const fs = require('fs');
const os = require('os');
const path = require('path');
const { startAgent, REPO } = require('./lib/agent');
const { buildTools } = require('./lib/build');
const { makeWorkDir, writeConfig, emptyPolicyDir, compatFixture } = require('./lib/fixtures');
const { runChild, runLoadgen, rssKiB, memoryKiB, cpuSeconds, sleep } = require('./lib/proc');
const { summary, bracketedRatios } = require('./lib/stats');
const { formatReport, evaluateTargets } = require('./lib/report');

const USAGE = `usage: node bench/run.js [--quick] [--json] [--rounds N] [--only ops,events,rss]
                         [--configs monitor,compat] [--ops open,exec,connect]
  --quick     short run (about a minute): 2 rounds, shorter loops and load steps
  --json      print the results as one JSON object instead of the table
  --rounds N  rounds of (baseline, configuration, baseline) per configuration (default 5, quick 2)
  --only      which parts to run (default all)
  --configs   agent configurations of the ops part (default monitor,compat; "none": baselines only)
  --ops       operations of the ops part (default open,exec,connect)
must run as root after \`npm run build\`.
`;

class UsageError extends Error {}

const ALL_PARTS = ['ops', 'events', 'rss'];
const ALL_CONFIGS = ['monitor', 'compat'];
const ALL_OPS = ['open', 'exec', 'connect'];

function parseList(value, allowed, what) {
  if (value === 'none') return [];
  const list = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const v of list) if (!allowed.includes(v)) throw new UsageError(`${what}: unknown "${v}" (allowed: ${allowed.join(', ')})`);
  return list;
}

function parseArgs(argv) {
  const opts = { quick: false, json: false, rounds: undefined, parts: ALL_PARTS, configs: ALL_CONFIGS, ops: ALL_OPS };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') opts.quick = true;
    else if (a === '--json') opts.json = true;
    else if (a === '--rounds') {
      opts.rounds = Number(value());
      if (!Number.isInteger(opts.rounds) || opts.rounds < 1 || opts.rounds > 20) throw new UsageError('--rounds must be an integer in 1..20');
    } else if (a === '--only') opts.parts = parseList(value(), ALL_PARTS, '--only');
    else if (a === '--configs') opts.configs = parseList(value(), ALL_CONFIGS, '--configs');
    else if (a === '--ops') opts.ops = parseList(value(), ALL_OPS, '--ops');
    else if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else throw new UsageError(`unknown option ${a}`);
  }
  opts.rounds ??= opts.quick ? 2 : 5;
  return opts;
}

/** Durations and loads per mode. */
function plan(quick) {
  return quick
    ? { opSeconds: 0.15, settleMs: 300, eventSeconds: 1, rates: [10000, 50000, 100000, 200000, 0], idleMs: 5000, loadSeconds: 2, lostWaitMs: 0 }
    : { opSeconds: 0.4, settleMs: 1000, eventSeconds: 2, rates: [10000, 50000, 100000, 200000, 0], idleMs: 5000, loadSeconds: 3, lostWaitMs: 10500 };
}

function checkEnvironment(opts) {
  const needsAgent = opts.parts.some((p) => p !== 'ops') || opts.configs.length > 0;
  if (!needsAgent) return;
  const problems = [];
  if (process.getuid?.() !== 0) problems.push('must run as root (the agent attaches kernel programs)');
  if (!fs.existsSync(path.join(REPO, 'dist', 'agent', 'src', 'cli.js'))) problems.push('TypeScript not built: run npm run build');
  if (!fs.existsSync(path.join(REPO, 'build', 'native', 'Release', 'edgeward.node'))) problems.push('native addon not built: run npm run build');
  if (problems.length) throw new Error(`bench cannot run: ${problems.join('; ')}`);
}

function machineInfo() {
  const cpus = os.cpus();
  return {
    kernel: os.release(),
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryMiB: Math.round(os.totalmem() / 2 ** 20),
    node: process.version,
    date: new Date().toISOString(),
    host: os.hostname(),
  };
}

// ---- ops part: open / exec / connect loops --------------------------------

function opArgs(op, env, n) {
  switch (op) {
    case 'open':
      return ['open', env.openTarget, String(n)];
    case 'exec':
      return ['exec', env.tools.noop, String(n)];
    case 'connect':
      return ['connect', String(n)];
    default:
      throw new Error(`no such op ${op}`);
  }
}

/** Picks a count per op so one loop lasts about `seconds` on the bare machine. */
async function calibrate(env, ops, seconds) {
  const counts = {};
  for (const op of ops) {
    const probe = await runLoadgen(env.tools.loadgen, opArgs(op, env, 1e9), seconds);
    counts[op] = Math.max(50, Math.round((seconds * 1e9) / probe.ns_per_op));
  }
  return counts;
}

async function runOps(env, ops, counts) {
  const r = {};
  // the median of the loop's 16 slices: robust to other work stealing the CPU now and then
  for (const op of ops) r[op] = (await runLoadgen(env.tools.loadgen, opArgs(op, env, counts[op]))).ns_per_op_median_chunk;
  return r;
}

/** A measurement with a dead agent would be a baseline in disguise. */
function assertAlive(agent, name) {
  if (agent.exited() !== undefined || rssKiB(agent.pid) === undefined) {
    throw new Error(`agent (${name}) ended (${agent.exited()}) during the measurement; its log:\n${agent.stderr().slice(-4000)}`);
  }
}

/**
 * Does the agent keep running after "ready" on its own? Each configuration
 * is started plainly and watched for `ms`; if one ends by itself the rest of
 * the run preloads bench/lib/keepalive.js and the report says so.
 */
async function lifetimeCheck(env, names, ms, log) {
  const result = {};
  for (const name of names) {
    const cfg = env.configs[name];
    const agent = await startAgent({ configFile: cfg.configFile, policyDir: cfg.policyDir });
    const t0 = Date.now();
    while (agent.exited() === undefined && Date.now() - t0 < ms) await sleep(25);
    const alive = agent.exited() === undefined;
    result[name] = alive ? { alive: true } : { alive: false, endedAfterReadyMs: Date.now() - t0, exit: agent.exited() };
    await agent.stop();
    if (!alive) log(`WARNING: agent (${name}) ended by itself ${result[name].endedAfterReadyMs} ms after ready (exit ${result[name].exit}); measuring it with bench/lib/keepalive.js preloaded`);
  }
  env.keepAlive = Object.values(result).some((r) => !r.alive);
  return result;
}

/** Starts an agent configuration, checks it is the configuration it claims to be. */
async function startConfig(env, name, { memoryReport = false } = {}) {
  const cfg = env.configs[name];
  const agent = await startAgent({ configFile: cfg.configFile, policyDir: cfg.policyDir, keepAlive: env.keepAlive, memoryReport });
  if (agent.ready.errors) {
    await agent.stop();
    throw new Error(`agent configuration ${name} loaded with ${agent.ready.errors} errors:\n${agent.stderr()}`);
  }
  if (cfg.expectRules !== undefined && agent.ready.rules !== cfg.expectRules) {
    await agent.stop();
    throw new Error(`agent configuration ${name}: ${agent.ready.rules} rules in force, expected ${cfg.expectRules}`);
  }
  if (cfg.check) {
    try {
      cfg.check();
    } catch (err) {
      await agent.stop();
      throw err;
    }
  }
  await sleep(env.plan.settleMs);
  return agent;
}

async function opsPart(env, opts, log) {
  const { ops, configs, rounds } = opts;
  const counts = await calibrate(env, ops, env.plan.opSeconds);
  log(`ops: counts per loop ${JSON.stringify(counts)}, ${rounds} rounds, configurations ${configs.join(', ') || '(baseline only)'}`);
  const baselines = [await runOps(env, ops, counts)];
  // per configuration: measured runs and the baselines just before/after each
  const series = Object.fromEntries(configs.map((c) => [c, { measured: [], before: [], after: [], startMs: [], stopMs: [], rssKiB: [] }]));
  const order = configs.length ? configs : [null];
  for (let round = 0; round < rounds; round++) {
    const thisRound = round % 2 ? [...order].reverse() : order;
    for (const name of thisRound) {
      let measured;
      if (name) {
        const agent = await startConfig(env, name);
        measured = await runOps(env, ops, counts);
        assertAlive(agent, name);
        series[name].startMs.push(agent.startMs);
        series[name].rssKiB.push(rssKiB(agent.pid));
        env.agentExits.push({ config: name, exit: await agent.stop() });
        series[name].stopMs.push(agent.stopMs());
      }
      const before = baselines[baselines.length - 1];
      const after = await runOps(env, ops, counts);
      baselines.push(after);
      if (name) {
        series[name].measured.push(measured);
        series[name].before.push(before);
        series[name].after.push(after);
      }
      log(`  round ${round + 1} ${name ?? 'baseline'}: ${ops.map((op) => `${op} ${(measured ?? after)[op].toFixed(0)} ns`).join(', ')}`);
    }
  }
  const result = { counts, rounds, ops: {} };
  for (const op of ops) {
    const b = baselines.map((x) => x[op]);
    // baseline against baseline: the noise floor of a ratio on this machine
    const aa = bracketedRatios(b.slice(1, -1), b.slice(0, -2), b.slice(2));
    result.ops[op] = { baselineNs: summary(b), baselineNoise: aa.length ? summary(aa) : undefined, configs: {} };
    for (const name of configs) {
      const s = series[name];
      const m = s.measured.map((x) => x[op]);
      result.ops[op].configs[name] = {
        ns: summary(m),
        ratio: summary(bracketedRatios(m, s.before.map((x) => x[op]), s.after.map((x) => x[op]))),
      };
    }
  }
  result.agentStartMs = Object.fromEntries(configs.map((c) => [c, summary(series[c].startMs)]));
  result.agentStopMs = Object.fromEntries(configs.map((c) => [c, summary(series[c].stopMs)]));
  result.agentRssAfterOpsKiB = Object.fromEntries(configs.map((c) => [c, summary(series[c].rssKiB)]));
  return result;
}

// ---- events part: events into JS and drops at increasing load --------------

async function eventsPart(env, log) {
  const rates = env.plan.rates;
  log(`events: offered ${rates.map((r) => (r ? `${r / 1000}k/s` : 'max')).join(', ')}, ${env.plan.eventSeconds} s each`);
  const out = await runChild(
    process.execPath,
    [path.join(__dirname, 'pipeline.js'), env.tools.loadgen, env.openTarget, String(env.plan.eventSeconds), rates.join(',')],
    { timeoutMs: (rates.length * (env.plan.eventSeconds + 8) + 20) * 1000 },
  );
  return JSON.parse(out.trim().split('\n').pop());
}

// ---- rss part: the agent's memory idle and under load ---------------------

async function rssPart(env, log) {
  log(`rss: agent (compat+rules, then monitor on) and a bare node process, idle ${env.plan.idleMs / 1000} s, then load`);
  const bare = require('child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  try {
    // the deployment default (process events only) with the 1000 rules, idle
    const compat = await startConfig(env, 'compat', { memoryReport: true });
    let compatIdle;
    let compatJs;
    try {
      await sleep(env.plan.idleMs);
      assertAlive(compat, 'compat (rss)');
      compatIdle = memoryKiB(compat.pid);
      compatJs = await compat.memoryUsage();
    } finally {
      env.agentExits.push({ config: 'compat (rss)', exit: await compat.stop() });
    }
    const agent = await startConfig(env, 'monitor', { memoryReport: true });
    try {
      await sleep(env.plan.idleMs);
      assertAlive(agent, 'monitor (rss)');
      const idle = memoryKiB(agent.pid);
      const bareIdle = memoryKiB(bare.pid);
      const idleCpu0 = cpuSeconds(agent.pid);
      await sleep(1000);
      const idleCores = cpuSeconds(agent.pid) - idleCpu0;
      const monitorJs = await agent.memoryUsage();
      const underLoad = [];
      for (const rate of [100000, 200000]) {
        let peak = 0;
        const timer = setInterval(() => (peak = Math.max(peak, rssKiB(agent.pid) ?? 0)), 100);
        const cpu0 = cpuSeconds(agent.pid);
        const gen = await runLoadgen(env.tools.loadgen, ['events', String(rate), String(env.plan.loadSeconds), env.openTarget]);
        clearInterval(timer);
        await sleep(300);
        // the agent's CPU over the load (and the 0.3 s drain after it), in cores
        const cores = (cpuSeconds(agent.pid) - cpu0) / (gen.seconds + 0.3);
        peak = Math.max(peak, rssKiB(agent.pid) ?? 0);
        underLoad.push({ offeredRate: rate, generatedRate: gen.rate, peakKiB: peak, afterKiB: rssKiB(agent.pid), agentCores: cores });
      }
      // The agent warns ("event":"events-lost", with its pipeline counters) on
      // its next housekeeping tick (every 10 s) after losing events.
      if (env.plan.lostWaitMs) await sleep(env.plan.lostWaitMs);
      const lostLogs = agent.logs().filter((l) => l.event === 'events-lost');
      assertAlive(agent, 'monitor (rss)');
      return {
        agentIdleKiB: idle.rss,
        compatIdleKiB: compatIdle.rss,
        bareNodeKiB: bareIdle.rss,
        agentIdleCores: idleCores,
        // anonymous / file-backed (node's own binary, mapped BPF maps) / shmem parts
        breakdown: { compatIdle, monitorIdle: idle, bareNode: bareIdle },
        // process.memoryUsage() inside the agent (bytes): JS heap vs the rest
        jsMemory: { compatIdle: compatJs, monitorIdle: monitorJs },
        underLoad,
        // the agent's own report of lost events under the load above (undefined: not waited for)
        agentEventsLost: env.plan.lostWaitMs ? lostLogs.map(({ kernelDropped, userspaceDropped, decodeErrors, delivered }) => ({ kernelDropped, userspaceDropped, decodeErrors, delivered })) : undefined,
      };
    } finally {
      env.agentExits.push({ config: 'monitor (rss)', exit: await agent.stop() });
    }
  } finally {
    bare.kill();
  }
}

// ---- main -------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  checkEnvironment(opts);
  const log = (msg) => process.stderr.write(`bench: ${msg}\n`);
  const started = Date.now();
  const workDir = makeWorkDir();
  // also on Ctrl-C (lib/agent.js exits the process after stopping the agents)
  const cleanup = () => fs.rmSync(workDir, { recursive: true, force: true });
  process.on('exit', cleanup);
  try {
    const tools = buildTools(workDir);
    const compat = compatFixture(workDir, { fileRules: 1000, unrelatedBinary: tools.noop });
    const env = {
      plan: plan(opts.quick),
      tools,
      openTarget: compat.unprotected,
      /** how each agent run ended after SIGTERM: 0 is a clean stop */
      agentExits: [],
      /** preload bench/lib/keepalive.js (set by lifetimeCheck) */
      keepAlive: false,
      configs: {
        monitor: {
          configFile: writeConfig(workDir, 'monitor', { monitor: { process: true, file: true, network: true } }),
          policyDir: emptyPolicyDir(workDir, 'monitor'),
          expectRules: 0,
        },
        compat: {
          // the deployment default monitor (process events only) plus the rules
          configFile: writeConfig(workDir, 'compat', { monitor: { process: true, file: false, network: false } }),
          policyDir: compat.policyDir,
          expectRules: compat.protectedFiles.length + compat.networkRules,
          check: () => checkBlocked(compat),
        },
      },
    };
    const results = { machine: machineInfo(), mode: opts.quick ? 'quick' : 'full', plan: env.plan };
    const needed = [...new Set([...(opts.parts.includes('ops') ? opts.configs : []), ...(opts.parts.includes('rss') ? ALL_CONFIGS : [])])];
    if (needed.length) {
      results.lifetime = await lifetimeCheck(env, needed, opts.quick ? 2000 : 3000, log);
      results.keepAlive = env.keepAlive;
    }
    if (opts.parts.includes('ops')) results.ops = await opsPart(env, opts, log);
    if (opts.parts.includes('events')) results.events = await eventsPart(env, log);
    if (opts.parts.includes('rss')) results.rss = await rssPart(env, log);
    results.agentExits = env.agentExits;
    results.elapsedSeconds = (Date.now() - started) / 1000;
    results.targets = evaluateTargets(results);
    process.stdout.write(opts.json ? JSON.stringify(results, null, 2) + '\n' : formatReport(results));
  } finally {
    cleanup();
  }
}

/** The compat configuration must really block: a protected file refuses, the unprotected one opens. */
function checkBlocked(compat) {
  const probe = compat.protectedFiles[compat.protectedFiles.length >> 1];
  try {
    fs.closeSync(fs.openSync(probe, 'r'));
  } catch (err) {
    if (err.code !== 'EPERM' && err.code !== 'EACCES') throw new Error(`opening protected ${probe}: ${err.message}`);
    fs.closeSync(fs.openSync(compat.unprotected, 'r'));
    return;
  }
  throw new Error(`compat configuration does not enforce: ${probe} opened although a Block rule names it`);
}

main().catch((err) => {
  process.stderr.write(`bench: ${err.message}\n${err instanceof UsageError ? USAGE : ''}`);
  process.exitCode = err instanceof UsageError ? 2 : 1;
});
