'use strict';
// Config 3: how many monitor events per second reach JavaScript, and how many
// are dropped, at increasing offered load. Runs the agent's real event path
// (dist/agent/src/monitor.js EventPipeline: native EventRing -> EventSink ->
// one JS call per batch -> agent/src/events.ts decoding) in this process,
// drives it with `loadgen events RATE SECONDS FILE`, and prints one JSON
// object. Run by bench/run.js; needs root and `npm run build`.
//
//   node bench/pipeline.js LOADGEN FILE SECONDS RATE[,RATE...]   (RATE 0: as fast as possible)
const { spawn } = require('child_process');
const path = require('path');

const REPO = path.resolve(__dirname, '..');

function fail(msg) {
  process.stderr.write(`bench/pipeline.js: ${msg}\n`);
  process.exit(1);
}

const [loadgen, file, secondsArg, ratesArg] = process.argv.slice(2);
if (!loadgen || !file || !secondsArg || !ratesArg) fail('usage: pipeline.js LOADGEN FILE SECONDS RATE[,RATE...]');
const seconds = Number(secondsArg);
const rates = ratesArg.split(',').map(Number);
if (!(seconds > 0) || rates.some((r) => !Number.isInteger(r) || r < 0)) fail(`bad SECONDS ${secondsArg} or RATES ${ratesArg}`);

// EW_EVENT_FILE_OPEN in bpf/include/edgeward_abi.h (abi.ts's EventKind is a
// const enum: it does not exist at run time)
const EW_EVENT_FILE_OPEN = 4;

let monitorMod;
let configMod;
let native;
try {
  monitorMod = require(path.join(REPO, 'dist', 'agent', 'src', 'monitor.js'));
  configMod = require(path.join(REPO, 'dist', 'agent', 'src', 'config.js'));
  native = require(path.join(REPO, 'dist', 'agent', 'src', 'native.js')).loadNative();
} catch (err) {
  fail(`cannot load the built agent (run npm run build): ${err.message}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Counters the listener updates; `watchPid` is the current load generator.
const seen = { total: 0, fileOpens: 0, fromLoadgen: 0, emptyPaths: 0, batches: 0, lastAt: 0n };
let watchPid = -1;
function onEvents(events) {
  seen.batches++;
  const before = seen.fromLoadgen;
  for (const ev of events) {
    seen.total++;
    if (ev.kind === EW_EVENT_FILE_OPEN) {
      seen.fileOpens++;
      // reading the path pays for lazy decoding, if any, here
      if (ev.path.length === 0) seen.emptyPaths++;
      if (ev.pid === watchPid) seen.fromLoadgen++;
    }
  }
  if (seen.fromLoadgen !== before) seen.lastAt = process.hrtime.bigint();
}

function runLoadgen(rate) {
  return new Promise((resolve, reject) => {
    const child = spawn(loadgen, ['events', String(rate), String(seconds), file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, EW_BENCH_MAX_SECONDS: String(seconds + 5) },
    });
    watchPid = child.pid;
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim())) : reject(new Error(`loadgen exit ${code}: ${err}`))));
  });
}

function counters(pipeline) {
  const { lastAt: _lastAt, ...counts } = seen;
  const st = pipeline.stats();
  return {
    ...counts,
    delivered: st.delivered,
    kernelDropped: st.kernelDropped,
    sinkDropped: st.userspaceDropped,
    decodeErrors: st.decodeErrors,
    listenerErrors: st.listenerErrors,
  };
}

/** Waits until no event of the load generator has arrived for `quietMs` (max 5 s). */
async function drain(quietMs) {
  const deadline = Date.now() + 5000;
  let last = -1;
  while (Date.now() < deadline) {
    if (seen.fromLoadgen === last) return;
    last = seen.fromLoadgen;
    await sleep(quietMs);
  }
}

async function main() {
  const defaults = configMod.defaultConfig().monitor;
  const options = { ...defaults, process: true, file: true, network: false };
  const pipeline = new monitorMod.EventPipeline(native, options, onEvents);
  const steps = [];
  try {
    await sleep(300);
    await drain(200);
    for (const rate of rates) {
      const before = counters(pipeline);
      const t0 = process.hrtime.bigint();
      const gen = await runLoadgen(rate);
      const tGen = Number(process.hrtime.bigint() - t0) / 1e9;
      await drain(Math.max(150, 3 * options.pollIntervalMs));
      const after = counters(pipeline);
      const d = (k) => after[k] - before[k];
      // until the last event reached JS: a lagging consumer does not look faster than it is
      const deliverySeconds = Math.max(gen.seconds, Number(seen.lastAt - t0) / 1e9);
      steps.push({
        offeredRate: rate,
        generatedOps: gen.ops,
        generatedRate: gen.rate,
        seconds: gen.seconds,
        wallSeconds: tGen,
        eventsIntoJs: d('total'),
        deliverySeconds,
        eventsIntoJsPerSecond: d('total') / deliverySeconds,
        loadgenOpensSeen: d('fromLoadgen'),
        // the loader's own opens (ld.so.cache, libc) count too: a few too many, never too few
        loadgenOpensMissing: Math.max(0, gen.ops - d('fromLoadgen')),
        fileOpensWithEmptyPath: d('emptyPaths'),
        batches: d('batches'),
        kernelDropped: d('kernelDropped'),
        userspaceDropped: d('sinkDropped'),
        decodeErrors: d('decodeErrors') + d('listenerErrors'),
        rssKiB: Number(/^VmRSS:\s+(\d+)/m.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]),
      });
    }
  } finally {
    pipeline.close();
  }
  // Exit as soon as the result is out: a fault in the addon's teardown (it
  // once aborted on a batch still queued at exit) must not turn a finished
  // measurement into a failure.
  process.stdout.write(JSON.stringify({ options, steps }) + '\n', () => process.exit(0));
}

main().catch((err) => fail(err.stack || String(err)));
