#!/usr/bin/env node
'use strict';
// In-guest driver of the bpf-lsm / AppArmor benchmark. bench/lsm/run-in-guest.sh
// boots it in the qemu guest (lsm=...,apparmor,bpf); it is not meant for a
// host (it attaches LSM programs that apply to every process of the machine).
//
//   node bench/lsm/guest-bench.js --snap DIR [--rounds R] [--seconds S] [--json]
//
// DIR (made by run-in-guest.sh): tree/ (dist/ and the addon, a snapshot of the
// build), tools/loadgen and tools/noop (bench/loadgen.c, bench/noop.c),
// apparmor/ewbench-N.bin (profiles compiled on the host for this guest
// kernel's AppArmor features) and apparmor/features (those features).
//
// Method: configurations are baseline (no LSM program attached, loop
// unconfined), bpf-lsm with 0/100/10,000 rules (bench/lsm/rules.js) and the
// loop confined by an AppArmor profile holding the same rules. Each round
// runs B c1 B c2 B ... B, where B is the baseline and every configuration
// runs the three loops (open+close, fork+exec+wait, TCP connect on loopback);
// a configuration's ratio is its ns/op over the mean of the baselines just
// before and after it. Each loop's ns/op is the median of its 16 slices
// (bench/loadgen.c). The table shows the median over rounds [min..max].
// Before any number is taken, every configuration is shown to enforce its
// rules (a denied file, program and raw socket are refused) and the baseline
// to enforce none.
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const rules = require('./rules');

const OPS = ['open', 'exec', 'connect'];
const USAGE = 'usage: node bench/lsm/guest-bench.js --snap DIR [--clock wall|icount] [--rounds R (1..20, default 3)] [--seconds S (0.1..20, default 1.5)] [--json]\n';

class UsageError extends Error {}

function parseArgs(argv) {
  const o = { snap: '', clock: 'wall', rounds: 3, seconds: 1.5, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--snap') o.snap = value();
    else if (a === '--clock') o.clock = value();
    else if (a === '--rounds') o.rounds = Number(value());
    else if (a === '--seconds') o.seconds = Number(value());
    else if (a === '--json') o.json = true;
    else throw new UsageError(`unknown argument ${a}`);
  }
  if (!o.snap) throw new UsageError('--snap DIR is required');
  if (o.clock !== 'wall' && o.clock !== 'icount') throw new UsageError('--clock is wall or icount (how the guest was booted: it only labels the report)');
  if (!Number.isInteger(o.rounds) || o.rounds < 1 || o.rounds > 20) throw new UsageError('--rounds must be an integer in 1..20');
  if (!(o.seconds >= 0.1 && o.seconds <= 20)) throw new UsageError('--seconds must be in 0.1..20');
  return o;
}

const log = (m) => process.stderr.write(`guest-bench: ${m}\n`);
function fail(m) {
  throw new Error(m);
}

/** Runs a program; returns { status, stdout, stderr } (never throws on a non-zero status). */
function run(file, args, opts = {}) {
  const r = spawnSync(file, args, { encoding: 'utf8', timeout: 600_000, ...opts });
  if (r.error) fail(`${file} ${args.join(' ')}: ${r.error.message}`);
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function runOk(file, args, what) {
  const r = run(file, args);
  if (r.status !== 0) fail(`${what} failed (${file} ${args.join(' ')}: status ${r.status}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

// --- preflight -------------------------------------------------------------------

function preflight(snap) {
  const problems = [];
  if (process.getuid() !== 0) problems.push('must run as root');
  let lsms = '';
  try {
    lsms = fs.readFileSync('/sys/kernel/security/lsm', 'utf8');
  } catch (err) {
    problems.push(`cannot read /sys/kernel/security/lsm (securityfs not mounted?): ${err.message}`);
  }
  for (const l of ['bpf', 'apparmor']) {
    if (lsms && !lsms.split(',').includes(l)) problems.push(`${l} is not an active LSM (${lsms.trim()}); boot with lsm=...,apparmor,bpf`);
  }
  if (!fs.existsSync('/sys/kernel/security/apparmor/.replace')) problems.push('/sys/kernel/security/apparmor/.replace missing: AppArmor cannot load profiles');
  for (const f of ['/sbin/apparmor_parser', '/usr/bin/aa-exec', '/usr/bin/aa-features-abi', '/usr/bin/python3', '/bin/cat']) {
    if (!fs.existsSync(f)) problems.push(`${f} missing (apt-get install apparmor python3)`);
  }
  for (const f of ['tree/build/native/Release/edgeward.node', 'tree/dist/agent/src/lsm_enforcer.js', 'tools/loadgen', 'tools/noop', 'apparmor/features']) {
    if (!fs.existsSync(path.join(snap, f))) problems.push(`${path.join(snap, f)} missing (run bench/lsm/run-in-guest.sh)`);
  }
  for (const n of rules.AA_SIZES) {
    const f = path.join(snap, 'apparmor', `${rules.profileName(n)}.bin`);
    if (!fs.existsSync(f)) problems.push(`${f} missing`);
  }
  if (problems.length) fail(`cannot run: ${problems.join('; ')}`);
  // The profiles were compiled on the host for features read from this kernel once:
  // a different kernel would get a policy built for another ABI.
  const here = runOk('/usr/bin/aa-features-abi', ['-x'], 'reading the AppArmor features');
  const compiled = fs.readFileSync(path.join(snap, 'apparmor/features'), 'utf8');
  if (here !== compiled) fail(`this kernel's AppArmor features differ from those the profiles were compiled for (${snap}/apparmor/features); rerun bench/lsm/run-in-guest.sh (it rereads them when the guest kernel changes)`);
  return lsms.trim();
}

// --- files -----------------------------------------------------------------------

const LOOP = {
  loadgen: `${rules.LOOP_DIR}/loadgen`,
  noop: `${rules.LOOP_DIR}/noop`,
  target: `${rules.LOOP_DIR}/target`,
};

/** ids whose exec is checked: the first and last rule of every set (copies of noop) */
function checkedIds() {
  const out = new Set();
  for (const n of rules.SIZES) if (n > 0) out.add(rules.ruleId(0)).add(rules.ruleId(n - 1));
  return out;
}

function setupFiles(snap) {
  // /tmp is a tmpfs in the guest: stat() and the LSM hooks see the same inodes.
  fs.mkdirSync(rules.RULE_DIR, { recursive: true });
  fs.mkdirSync(rules.LOOP_DIR, { recursive: true });
  fs.copyFileSync(path.join(snap, 'tools/loadgen'), LOOP.loadgen);
  fs.copyFileSync(path.join(snap, 'tools/noop'), LOOP.noop);
  fs.chmodSync(LOOP.loadgen, 0o755);
  fs.chmodSync(LOOP.noop, 0o755);
  fs.writeFileSync(LOOP.target, 'target\n');
  const checked = checkedIds();
  const max = Math.max(...rules.SIZES);
  for (const id of rules.ids(max)) {
    fs.writeFileSync(rules.filePath(id), 'denied\n');
    if (checked.has(id)) {
      fs.copyFileSync(LOOP.noop, rules.execPath(id));
      fs.chmodSync(rules.execPath(id), 0o755);
    } else {
      fs.writeFileSync(rules.execPath(id), ''); // a process rule's target: only its inode matters
    }
  }
}

// --- AppArmor ---------------------------------------------------------------------

function loadProfiles(snap) {
  for (const n of rules.AA_SIZES) {
    const bin = path.join(snap, 'apparmor', `${rules.profileName(n)}.bin`);
    const t0 = Date.now();
    runOk('/sbin/apparmor_parser', ['-r', '-K', '-B', bin], `loading AppArmor profile ${rules.profileName(n)}`);
    log(`AppArmor profile ${rules.profileName(n)} loaded (${fs.statSync(bin).size} bytes) in ${Date.now() - t0} ms`);
  }
  const loaded = fs.readFileSync('/sys/kernel/security/apparmor/profiles', 'utf8');
  for (const n of rules.AA_SIZES) {
    if (!loaded.split('\n').includes(`${rules.profileName(n)} (enforce)`)) fail(`profile ${rules.profileName(n)} is not loaded in enforce mode: ${loaded.trim()}`);
  }
}

/** argv prefix that runs a command confined by a profile (or unconfined) */
const confined = (profile) => (profile ? ['/usr/bin/aa-exec', '-p', profile, '--'] : []);

function exec(prefix, file, args) {
  const all = [...prefix, file, ...args];
  return run(all[0], all.slice(1));
}

// --- checks: the rules really apply --------------------------------------------------

const RAW_SOCKET = 'import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()\n    print("ok")\nexcept OSError as e:\n    import errno\n    print(errno.errorcode.get(e.errno, e.errno))\n';

/**
 * What a process (unconfined, or under `profile`) gets for the set's first
 * and last denied file and program, a raw socket, and the loop's own file
 * and program.
 */
function observe(n, profile) {
  const p = confined(profile);
  const outcome = (r) =>
    r.status === 0 ? 'ok' : /Permission denied/.test(r.stderr) ? 'EACCES' : /Operation not permitted/.test(r.stderr) ? 'EPERM' : `status ${r.status}: ${r.stderr.trim()}`;
  const cat = (f) => outcome(exec(p, '/bin/cat', [f]));
  // through a shell: the confined process must be the one that execs (aa-exec's
  // own exec is decided by its unconfined caller)
  const program = (f) => outcome(exec(p, '/bin/sh', ['-c', `exec ${f}`]));
  const out = {};
  if (n > 0) {
    for (const [label, i] of [['first', 0], ['last', n - 1]]) {
      out[`file ${label}`] = cat(rules.filePath(rules.ruleId(i)));
      out[`exec ${label}`] = program(rules.execPath(rules.ruleId(i)));
    }
  }
  const raw = exec(p, '/usr/bin/python3', ['-c', RAW_SOCKET]);
  out['raw socket'] = raw.status === 0 ? raw.stdout.trim() : `python status ${raw.status}: ${raw.stderr.trim().split('\n').pop()}`;
  out['loop file'] = cat(LOOP.target);
  out['loop program'] = program(LOOP.noop);
  if (profile) out.label = exec(p, '/bin/cat', ['/proc/self/attr/current']).stdout.trim();
  return out;
}

function expectObserved(what, got, want) {
  const bad = Object.keys(want).filter((k) => got[k] !== want[k]);
  if (bad.length) fail(`${what}: ${bad.map((k) => `${k}: got ${JSON.stringify(got[k])}, expected ${JSON.stringify(want[k])}`).join('; ')}`);
  log(`checked ${what}: ${Object.entries(got).map(([k, v]) => `${k}=${v}`).join(', ')}`);
}

function expectedFor(n, refused, profile) {
  const want = {};
  if (n > 0) for (const k of ['file first', 'exec first', 'file last', 'exec last']) want[k] = refused;
  want['raw socket'] = n > 0 ? refused : 'ok';
  want['loop file'] = 'ok';
  want['loop program'] = 'ok';
  if (profile) want.label = `${profile} (enforce)`;
  return want;
}

// --- bpf-lsm ----------------------------------------------------------------------------

function bpfLsm(snap) {
  const addon = require(path.join(snap, 'tree/build/native/Release/edgeward.node'));
  const { LsmEnforcer, targetResolver } = require(path.join(snap, 'tree/dist/agent/src/lsm_enforcer.js'));
  const sink = new addon.EventSink(() => {}); // decisions of the checks: not needed
  const ring = new addon.EventRing(sink, { ringBufferBytes: 4 << 20, pollIntervalMs: 1000 });
  const real = targetResolver();
  const targets = new Map(); // resolved once for every round
  const resolvers = {
    target: (p) => {
      let t = targets.get(p);
      if (!t) targets.set(p, (t = real(p)));
      return t;
    },
    // the network rules' sources are executables that do not exist: fake inodes
    source: (p) => ({ dev: 0xfff00000n, ino: BigInt(`0x${p.slice(-16)}`) }),
  };
  const sets = new Map(rules.BPF_SIZES.map((n) => [n, rules.lsmRules(n)]));
  let enforcer;
  return {
    attach(n) {
      const t0 = Date.now();
      enforcer = new LsmEnforcer(addon, ring);
      const t1 = Date.now();
      const set = sets.get(n);
      const r = enforcer.apply(set.pathRules, set.networkRules, resolvers);
      if (!r.applied || r.errors.length) fail(`bpf-lsm refused the ${n}-rule set: ${r.errors.join('; ')}`);
      const s = enforcer.stats();
      if (s.pathEntries !== 2 * n || s.netEntries !== n) fail(`bpf-lsm holds ${s.pathEntries} path / ${s.netEntries} net entries, expected ${2 * n} / ${n}`);
      return { loadMs: t1 - t0, applyMs: Date.now() - t1 };
    },
    /** starts the kernel's per-program run time counters (until detach) */
    enableStats() {
      enforcer.enableStats();
    },
    /** { program name: [runCount, runTimeNs] } */
    programStats() {
      return Object.fromEntries(enforcer.stats().programs.map((p) => [p.name, [p.runCount, p.runTimeNs]]));
    },
    detach() {
      enforcer?.close();
      enforcer = undefined;
    },
    close() {
      this.detach();
      ring.close();
      sink.close();
    },
  };
}

// --- loops --------------------------------------------------------------------------------

function loopArgs(op, count) {
  if (op === 'open') return ['open', LOOP.target, String(count)];
  if (op === 'exec') return ['exec', LOOP.noop, String(count)];
  return ['connect', String(count)];
}

function loop(op, count, profile) {
  const r = exec(confined(profile), LOOP.loadgen, loopArgs(op, count));
  if (r.status !== 0) fail(`loadgen ${op}${profile ? ` under ${profile}` : ''} failed (status ${r.status}): ${r.stderr.trim()}`);
  const j = JSON.parse(r.stdout.trim().split('\n').pop());
  if (j.timed_out) log(`warning: loadgen ${op} hit its time limit after ${j.ops} ops`);
  return j.ns_per_op_median_chunk;
}

// --- statistics and report -------------------------------------------------------------------

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function fmtNs(ns) {
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e4 ? `${(ns / 1e3).toFixed(1)} us` : `${Math.round(ns)} ns`;
}

function report(result) {
  const lines = [];
  const { configs, meta } = result;
  lines.push(`bpf-lsm vs AppArmor in the guest (kernel ${meta.kernel}, ${meta.cpus} vCPUs, LSMs ${meta.lsms}; ${meta.rounds} rounds, ~${meta.seconds} s per loop)`);
  lines.push(
    meta.clock === 'icount'
      ? 'clock: qemu -icount shift=3, guest time = 8 ns per guest instruction: ns/op counts instructions (no cache or memory effects)'
      : 'clock: the guest\'s real clock under TCG (absolute numbers are TCG\'s, many times a real CPU\'s)',
  );
  lines.push('ns/op: median over rounds of each loop\'s median slice; ratio: to the mean of the baselines run just before and after, median [min..max] over rounds;');
  lines.push('noise (A/A): every baseline against the two around it (a ratio means something only outside that spread)');
  const head = ['configuration'.padEnd(22), ...OPS.map((op) => `${op} ns/op`.padStart(14) + `${op} ratio`.padStart(24))].join('');
  lines.push(head);
  for (const c of configs) {
    const cells = OPS.map((op) => {
      const m = c.ops[op];
      const ratio = c.name === 'baseline' ? '1' : `${m.ratio.toFixed(3)} [${m.ratioMin.toFixed(3)}..${m.ratioMax.toFixed(3)}]`;
      return (Number.isNaN(m.ns) ? '' : fmtNs(m.ns)).padStart(14) + ratio.padStart(24);
    });
    lines.push([c.name.padEnd(22), ...cells].join(''));
  }
  lines.push('');
  lines.push('targets (not assertions):');
  const by = Object.fromEntries(configs.map((c) => [c.name, c]));
  const bigBpf = Math.max(...rules.BPF_SIZES);
  for (const op of OPS) {
    // a difference smaller than the A/A spread is not told apart from noise
    const noise = by['noise (A/A)'] ? (by['noise (A/A)'].ops[op].ratioMax - by['noise (A/A)'].ops[op].ratioMin) / 2 : 0;
    const within = (d) => (Math.abs(d) <= noise ? ` (within the A/A noise of +-${noise.toFixed(3)})` : '');
    const b = by[`bpf-lsm ${bigBpf}`].ops[op].ratio;
    lines.push(`  ${op}: bpf-lsm with ${bigBpf} rules ${b.toFixed(3)}x the baseline (target <= 1.05): ${b <= 1.05 ? 'met' : 'MISSED'}${within(b - 1)}`);
    const pairs = rules.AA_SIZES.map((n) => [rules.BPF_SIZES.includes(n) ? n : bigBpf, n]);
    for (const [nb, na] of pairs) {
      const bl = by[`bpf-lsm ${nb}`].ops[op].ratio;
      const aa = by[`apparmor ${na}`].ops[op].ratio;
      lines.push(`  ${op}: bpf-lsm ${nb} rules ${bl.toFixed(3)}x vs AppArmor ${na} rules ${aa.toFixed(3)}x (target: faster than AppArmor): ${bl < aa ? 'met' : 'MISSED'}${within(bl - aa)}`);
    }
  }
  lines.push(`  (AppArmor cannot hold ${bigBpf}+${bigBpf} such rules in one profile: see bench/lsm/rules.js AA_SIZES)`);
  lines.push('');
  lines.push(`kernel time in bpf-lsm programs per loop operation (bpf_stats, a separate pass; program name, runs per op, ns per op; ${meta.clock === 'icount' ? '8 ns per instruction' : 'guest TCG ns, relative only'}):`);
  for (const [n, byOp] of Object.entries(result.programTime)) {
    const cells = OPS.map((op) => {
      const progs = Object.entries(byOp[op].programs)
        .filter(([, v]) => v.nsPerOp >= 1)
        .sort((a, b) => b[1].nsPerOp - a[1].nsPerOp)
        .map(([name, v]) => `${name} ${v.runsPerOp.toFixed(1)}x ${Math.round(v.nsPerOp)}`)
        .join(', ');
      return `${op} ${Math.round(byOp[op].nsPerOp)} ns (${progs})`;
    });
    lines.push(`  ${String(n).padStart(5)} rules: ${cells.join('; ')}`);
  }
  for (const s of result.setup) lines.push(`setup: ${s}`);
  return lines.join('\n');
}

// --- main ------------------------------------------------------------------------------------

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n${USAGE}`);
      process.exit(2);
    }
    throw err;
  }
  const snap = path.resolve(opts.snap);
  const lsms = preflight(snap);
  const setup = [];
  let t0 = Date.now();
  setupFiles(snap);
  setup.push(`${2 * Math.max(...rules.SIZES)} rule target files made in ${Date.now() - t0} ms`);
  loadProfiles(snap);
  const bpf = bpfLsm(snap);

  const configs = [
    ...rules.BPF_SIZES.map((n) => ({ name: `bpf-lsm ${n}`, kind: 'bpf', n })),
    ...rules.AA_SIZES.map((n) => ({ name: `apparmor ${n}`, kind: 'apparmor', n, profile: rules.profileName(n) })),
  ];

  // Every configuration enforces its rules, the baseline none (checked once, before measuring).
  expectObserved('baseline (no program, unconfined)', observe(Math.max(...rules.SIZES), undefined), {
    'file first': 'ok', 'exec first': 'ok', 'file last': 'ok', 'exec last': 'ok', 'raw socket': 'ok', 'loop file': 'ok', 'loop program': 'ok',
  });
  for (const c of configs) {
    if (c.kind === 'bpf') {
      const t = bpf.attach(c.n);
      setup.push(`bpf-lsm ${c.n} rules: programs loaded in ${t.loadMs} ms, rules applied in ${t.applyMs} ms (first time, targets resolved)`);
      try {
        expectObserved(c.name, observe(c.n, undefined), expectedFor(c.n, 'EPERM'));
      } finally {
        bpf.detach();
      }
    } else {
      expectObserved(c.name, observe(c.n, c.profile), expectedFor(c.n, 'EACCES', c.profile));
    }
  }
  expectObserved('baseline after the checks', observe(Math.max(...rules.SIZES), undefined), {
    'file first': 'ok', 'exec first': 'ok', 'raw socket': 'ok', 'loop file': 'ok', 'loop program': 'ok',
  });

  // Loop lengths: about opts.seconds each on the baseline.
  const counts = {};
  for (const op of OPS) {
    const probeCount = op === 'exec' ? 50 : 2000;
    const ns = loop(op, probeCount);
    counts[op] = Math.max(64, Math.round((opts.seconds * 1e9) / ns));
  }
  log(`loop counts: ${JSON.stringify(counts)}`);

  // Where bpf-lsm's time goes: the kernel's run time of each program per loop
  // operation (bpf_stats), in a pass of its own because the counters cost time too.
  const programTime = {};
  for (const n of rules.BPF_SIZES) {
    bpf.attach(n);
    try {
      bpf.enableStats();
      programTime[n] = {};
      for (const op of OPS) {
        const count = Math.max(64, Math.round(counts[op] / 2));
        const before = bpf.programStats();
        loop(op, count);
        const after = bpf.programStats();
        const per = {};
        let total = 0;
        for (const [name, [runs, ns]] of Object.entries(after)) {
          const dRuns = runs - (before[name]?.[0] ?? 0);
          const dNs = ns - (before[name]?.[1] ?? 0);
          if (dRuns > 0) per[name] = { runsPerOp: dRuns / count, nsPerOp: dNs / count };
          total += dNs;
        }
        // the warm-up iterations of loadgen run programs too: count them in
        const warm = Math.min(Math.floor(count / 20), 2000);
        for (const v of Object.values(per)) {
          v.runsPerOp = (v.runsPerOp * count) / (count + warm);
          v.nsPerOp = (v.nsPerOp * count) / (count + warm);
        }
        programTime[n][op] = { nsPerOp: total / (count + warm), programs: per };
      }
    } finally {
      bpf.detach();
    }
    log(`bpf_stats, ${n} rules: ${OPS.map((op) => `${op} ${Math.round(programTime[n][op].nsPerOp)} ns/op in programs`).join(', ')}`);
  }

  const measure = (profile) => Object.fromEntries(OPS.map((op) => [op, loop(op, counts[op], profile)]));
  const baselines = []; // per round: list of baseline measurements in order
  const measured = Object.fromEntries(configs.map((c) => [c.name, []])); // { ns, before, after } per round
  for (let round = 0; round < opts.rounds; round++) {
    // the order rotates each round: no configuration always follows the same one
    const order = configs.map((_, i) => configs[(i + round) % configs.length]);
    let before = measure();
    baselines.push(before);
    for (const c of order) {
      let ns;
      let note = '';
      if (c.kind === 'bpf') {
        const t = bpf.attach(c.n);
        note = ` (load ${t.loadMs} ms, apply ${t.applyMs} ms)`;
        try {
          ns = measure();
        } finally {
          bpf.detach();
        }
      } else {
        ns = measure(c.profile);
      }
      const after = measure();
      baselines.push(after);
      measured[c.name].push({ ns, before, after });
      before = after;
      log(`round ${round + 1}/${opts.rounds} ${c.name}: ${OPS.map((op) => `${op} ${(ns[op] / ((measured[c.name].at(-1).before[op] + after[op]) / 2)).toFixed(3)}`).join(', ')}${note}`);
    }
  }
  bpf.close();

  const summary = [{ name: 'baseline', ops: Object.fromEntries(OPS.map((op) => [op, { ns: median(baselines.map((b) => b[op])) }])) }];
  // noise (A/A): each baseline against the two around it, the same formula as a configuration's ratio
  const aa = {};
  for (const op of OPS) {
    const ratios = [];
    for (let i = 1; i + 1 < baselines.length; i++) ratios.push(baselines[i][op] / ((baselines[i - 1][op] + baselines[i + 1][op]) / 2));
    aa[op] = { ns: NaN, ratio: median(ratios), ratioMin: Math.min(...ratios), ratioMax: Math.max(...ratios), ratios };
  }
  summary.push({ name: 'noise (A/A)', ops: aa });
  for (const c of configs) {
    const ops = {};
    for (const op of OPS) {
      const ratios = measured[c.name].map((m) => m.ns[op] / ((m.before[op] + m.after[op]) / 2));
      ops[op] = { ns: median(measured[c.name].map((m) => m.ns[op])), ratio: median(ratios), ratioMin: Math.min(...ratios), ratioMax: Math.max(...ratios), ratios };
    }
    summary.push({ name: c.name, ops });
  }
  const kernel = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  const result = { meta: { kernel, lsms, clock: opts.clock, cpus: require('os').cpus().length, rounds: opts.rounds, seconds: opts.seconds, counts }, configs: summary, baselines, programTime, setup };
  process.stdout.write(`${report(result)}\n`);
  if (opts.json) process.stdout.write(`JSON ${JSON.stringify(result)}\n`);
}

if (require.main === module) {
  try {
    main();
  } catch (err) {
    process.stderr.write(`guest-bench: error: ${err.message}\n`);
    process.exit(1);
  }
}

module.exports = { report };
