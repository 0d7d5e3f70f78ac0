#!/usr/bin/env node
'use strict';
// edgeward hub sync benchmarks (docs/PERFORMANCE.md, "Hub sync").
//
//   node bench/hub/run.js [--nodes 1000] [--alerts 100000] [--quick] [--json] [--src] ...
//
// One real mosquitto (the shipped TLS/password/ACL config), the real hub
// service (SQLite) and an observer client in this process; nodes in child
// processes. Every measurement is paired with a plain-MQTT baseline measured
// in the same run against the same broker, and the report shows the ratio:
//
//  push      policy push -> the node reports the new version as enforced.
//            edgeward: HubService.push() signs and publishes; lightweight
//            nodes (real HubClients, no kernel: their reload loads and
//            compiles the materialised policies) verify, store,
//            materialise, reload and publish `reported`. Latency per node,
//            from the push call to (a) the observer seeing the report on the
//            broker and (b) the hub having recorded it in SQLite.
//            baseline: plain mqtt.js clients (same count, same processes
//            layout) answer a fan-out message of the bundle's size with one
//            QoS 1 reply of a report's size.
//            Cases: 1 node (node push, repeated); the fleet (group push to
//            all, and a burst of one node push per node); one node push
//            while the whole fleet is connected.
//  alerts    node -> hub throughput with the spool on (fsync always,
//            interval, never; delivery hub-ack, and puback) vs a plain
//            mqtt.js QoS 1 publish loop of the same alerts to a subscriber.
//  recovery  100k alerts spooled with no broker, the node SIGKILLed, then
//            started again: spool open (scan) time and time until the hub
//            stored all, vs the plain loop carrying the same count.
//
// Nothing asserts a time. Run as root or not (no kernel part); mosquitto,
// mosquitto_passwd and openssl are needed (scripts/install-deps.sh).
const { fork } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { loadModules, REPO } = require('./lib/load');
const { startBroker } = require('./lib/broker');
const { latencySummary, median } = require('./lib/stats');

const USAGE = `usage: node bench/hub/run.js [options]
  --nodes N            simulated nodes in the fleet (default 1000, quick 200)
  --procs P            node processes the fleet is split over (default 2)
  --rounds R           fleet rounds per case (default 5, quick 2)
  --solo-pushes S      pushes to a single node (default 40, quick 10)
  --alerts N           alerts for the spool recovery case (default 100000, quick 20000)
  --throughput-alerts N  alerts per throughput run (default 20000, quick 5000; fsync "always": a tenth)
  --alert-rounds R     rounds per alert configuration (default 3, quick 1)
  --only LIST          push,alerts,recovery (default all)
  --fleet-state tmpfs|disk  where the simulated nodes keep their state (default tmpfs: one
                       disk cannot stand in for a thousand nodes' disks; the single node uses disk)
  --src                run agent/src (transpiled on load) instead of dist/ (npm run build:ts)
  --json               print the results as JSON
`;

class UsageError extends Error {}

function parseArgs(argv) {
  const o = { quick: false, json: false, from: 'dist', parts: ['push', 'alerts', 'recovery'], fleetState: 'tmpfs' };
  const num = (name, v, min, max) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${name} must be an integer in ${min}..${max} (got ${v})`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--json') o.json = true;
    else if (a === '--src') o.from = 'src';
    else if (a === '--nodes') o.nodes = num(a, value(), 2, 10000);
    else if (a === '--procs') o.procs = num(a, value(), 1, 16);
    else if (a === '--rounds') o.rounds = num(a, value(), 1, 50);
    else if (a === '--solo-pushes') o.soloPushes = num(a, value(), 2, 1000);
    else if (a === '--alerts') o.alerts = num(a, value(), 100, 10_000_000);
    else if (a === '--throughput-alerts') o.throughputAlerts = num(a, value(), 100, 10_000_000);
    else if (a === '--alert-rounds') o.alertRounds = num(a, value(), 1, 20);
    else if (a === '--fleet-state') {
      o.fleetState = value();
      if (!['tmpfs', 'disk'].includes(o.fleetState)) throw new UsageError('--fleet-state must be tmpfs or disk');
    } else if (a === '--only') {
      o.parts = value().split(',').filter(Boolean);
      for (const p of o.parts) if (!['push', 'alerts', 'recovery'].includes(p)) throw new UsageError(`--only: unknown part "${p}"`);
    } else if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else throw new UsageError(`unknown option ${a}`);
  }
  o.nodes ??= o.quick ? 200 : 1000;
  o.procs ??= 2;
  o.procs = Math.min(o.procs, o.nodes);
  o.rounds ??= o.quick ? 2 : 5;
  o.soloPushes ??= o.quick ? 10 : 40;
  o.alerts ??= o.quick ? 20000 : 100000;
  o.throughputAlerts ??= o.quick ? 5000 : 20000;
  o.alertRounds ??= o.quick ? 1 : 3;
  return o;
}

const PREFIX = 'ewbench';
const ORG = 'bench';
const BASE = `${PREFIX}/base`; // baseline topics: outside every edgeward topic the hub subscribes to
const GROUP = 'fleet';
const HUB_USER = 'ewb-hub';
const OBSERVER_USER = 'ewb-observer';
const DRIVER_USER = 'ewb-driver'; // publishes the baseline's fan-out, as the hub publishes bundles
const REPLY_BYTES = 1500; // about the size of a node's `reported`
const ROUND_TIMEOUT_MS = 180_000;

const fleetName = (i) => `n${String(i).padStart(5, '0')}`;
const password = () => crypto.randomBytes(12).toString('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** wall-clock ms with sub-ms precision, comparable across the bench's processes */
const now = () => performance.timeOrigin + performance.now();

function openFileLimit() {
  const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const soft = line?.split(/\s{2,}/)[1];
  return soft === 'unlimited' ? Infinity : Number(soft);
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
    // other work on the machine shows here (the ratios to the same-run baseline absorb some of it)
    loadAverageAtStart: os.loadavg()[0],
  };
}

// ---------------------------------------------------------------- documents

const DEFAULT_POLICIES = path.join(REPO, 'policies', 'default');

/** The group bundle: the shipped default policies plus one that changes every round. */
function groupDocuments(round) {
  const docs = fs
    .readdirSync(DEFAULT_POLICIES)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => ({ name: f, yaml: fs.readFileSync(path.join(DEFAULT_POLICIES, f), 'utf8') }));
  docs.push({ name: 'fleet-round.yaml', yaml: hostPolicy(`fleet-round`, round) });
  return docs;
}

function nodeDocuments(node, round) {
  return [{ name: 'node.yaml', yaml: hostPolicy(`node-${node}`, round) }];
}

function hostPolicy(name, round) {
  return `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: ${name}
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  severity: 5
  message: "bench round ${round}"
  process:
    matchPaths:
    - path: /opt/bench/round-${round}/tool
    - path: /usr/bin/nc.openbsd
  file:
    matchDirectories:
    - dir: /opt/bench/secrets/
      recursive: true
  network:
    matchProtocols:
    - protocol: raw
      fromSource: []
  action: Block
`;
}

// ---------------------------------------------------------------- children

/** onEvent(m): messages that are events rather than answers (returns true when it took the message) */
function forkChild(script, startMsg, onEvent) {
  // HUB_BENCH_CHILD_ARGS: node options for the children, e.g. "--cpu-prof" to see where their time goes
  const execArgv = (process.env.HUB_BENCH_CHILD_ARGS ?? '').split(' ').filter(Boolean);
  const child = fork(path.join(__dirname, script), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  const inbox = [];
  const waiters = [];
  let failure;
  const deliver = () => {
    for (let i = 0; i < waiters.length; i++) {
      const w = waiters[i];
      if (failure) {
        waiters.splice(i--, 1);
        w.reject(failure);
        continue;
      }
      const k = inbox.findIndex((m) => m.type === w.type);
      if (k >= 0) {
        waiters.splice(i--, 1);
        w.resolve(inbox.splice(k, 1)[0]);
      }
    }
  };
  child.on('message', (m) => {
    if (m.type === 'error') failure = new Error(`${script} failed: ${m.message}`);
    else if (onEvent?.(m)) return;
    else inbox.push(m);
    deliver();
  });
  child.on('exit', (code, signal) => {
    failure ??= new Error(`${script} exited (${signal ?? code})`);
    deliver();
  });
  const wait = (type, timeoutMs = ROUND_TIMEOUT_MS) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${script}: no "${type}" within ${timeoutMs} ms`)), timeoutMs);
      waiters.push({ type, resolve: (v) => (clearTimeout(t), resolve(v)), reject: (e) => (clearTimeout(t), reject(e)) });
      deliver();
    });
  child.send(startMsg);
  return {
    child,
    wait,
    request: (msg, type, timeoutMs) => {
      child.send(msg);
      return wait(type, timeoutMs);
    },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      try {
        child.send({ cmd: 'stop' });
      } catch {
        child.kill('SIGKILL');
      }
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await gone;
      clearTimeout(t);
    },
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    },
  };
}

// ---------------------------------------------------------------- tracking

/**
 * Per-node completion of one round. observe() takes what a node said
 * (possibly before the version pushed to it is known); expect() says which
 * version of which target a node must report; done resolves when every node did.
 */
function tracker(names, verdict) {
  const entries = new Map(names.map((n) => [n, { buf: [], target: undefined, version: undefined, t0: undefined, doneAt: undefined, last: undefined }]));
  let remaining = names.length;
  let resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  if (remaining === 0) resolveDone();
  const settle = (e) => {
    while (e.version !== undefined && e.doneAt === undefined && e.buf.length) {
      const { t, state } = e.buf.shift();
      const v = verdict(state, e.target, e.version);
      e.last = v;
      if (v === 'done') {
        e.doneAt = t;
        if (--remaining === 0) resolveDone();
      }
    }
  };
  return {
    observe(name, t, state) {
      const e = entries.get(name);
      if (!e || e.doneAt !== undefined) return;
      e.buf.push({ t, state });
      settle(e);
    },
    expect(name, target, version, t0) {
      const e = entries.get(name);
      Object.assign(e, { target, version, t0 });
      settle(e);
    },
    done,
    latencies: () => [...entries.values()].filter((e) => e.doneAt !== undefined).map((e) => e.doneAt - e.t0),
    toAll: () => {
      const es = [...entries.values()];
      if (es.some((e) => e.doneAt === undefined)) return NaN;
      return Math.max(...es.map((e) => e.doneAt)) - Math.min(...es.map((e) => e.t0));
    },
    missing: () => [...entries.entries()].filter(([, e]) => e.doneAt === undefined).map(([n, e]) => `${n}: ${e.last ?? 'no report'}`),
  };
}

/** 'done' when `state` (edgeward.reported.v1) shows `version` of `target` in force and every document of it enforced. */
function reportedVerdict(state, target, version) {
  const scope = state.scopes?.find((s) => s.scope === target.scope && s.name === target.name);
  if (scope?.refused?.version === version) return `refused: ${scope.refused.code}: ${scope.refused.reason}`;
  if (scope?.inForce?.version !== version) return `version ${scope?.inForce?.version ?? 'none'} in force`;
  const docs = (state.documents ?? []).filter((d) => d.scope === target.scope && d.scopeName === target.name && d.version === version);
  if (!docs.length) return 'no documents reported';
  const bad = docs.filter((d) => d.status !== 'enforced' && d.status !== 'overridden');
  return bad.length ? `not enforced: ${bad.map((d) => `${d.document} ${d.status} ${d.errors.join('; ')}`).join(', ')}` : 'done';
}

async function withTimeout(promise, ms, what) {
  let t;
  const timeout = new Promise((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(t);
  }
}

// ---------------------------------------------------------------- the bench context

async function setUp(opts, mods) {
  const need = 2 * opts.nodes + 200;
  const limit = openFileLimit();
  if (opts.parts.includes('push') && limit < need) {
    throw new Error(`open file limit ${limit} is too low for ${opts.nodes} nodes (mosquitto inherits it and needs about ${need}): raise it with \`ulimit -n ${need}\``);
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-benchhub-'));
  fs.chmodSync(work, 0o755); // mosquitto runs as its own user and reads the broker directory inside
  const fleetRoot = opts.fleetState === 'tmpfs' ? fs.mkdtempSync('/dev/shm/edgeward-benchhub-') : path.join(work, 'fleet');
  const ctx = { opts, mods, work, fleetRoot, children: [], roundSeq: 0 };
  try {
    await startServices(ctx);
  } catch (e) {
    // whatever started is stopped and the directories go, as after a run
    await tearDown(ctx);
    throw e;
  }
  return ctx;
}

/** Keys, users, the broker, the hub, the driver and the observer. */
async function startServices(ctx) {
  const { opts, mods, work } = ctx;
  // signing key: the hub signs, the nodes pin the public key
  const pair = mods.bundle.generateSigningKeyPair();
  ctx.signingKeyFile = path.join(work, 'signing.key');
  fs.writeFileSync(ctx.signingKeyFile, pair.privateKeyPem, { mode: 0o600 });
  ctx.publicKeyFile = path.join(work, 'signing.pub');
  fs.writeFileSync(ctx.publicKeyFile, pair.publicKeyPem);
  ctx.signingKey = { keyId: pair.keyId, key: crypto.createPrivateKey(pair.privateKeyPem) };

  // identities: fleet nodes, the single node, alert nodes; p-* are the baseline's plain clients
  const fleet = opts.parts.includes('push') ? Array.from({ length: opts.nodes }, (_, i) => fleetName(i)) : [];
  const alertNodes = [];
  if (opts.parts.includes('alerts')) for (const c of alertConfigs()) for (let r = 0; r < opts.alertRounds; r++) alertNodes.push(`alerts-${c.name}-${r}`);
  if (opts.parts.includes('recovery')) alertNodes.push('recover');
  const edgewardNodes = [...fleet, ...(opts.parts.includes('push') ? ['solo'] : []), ...alertNodes];
  ctx.passwords = new Map();
  const users = [];
  const addUser = (u) => {
    const pw = password();
    ctx.passwords.set(u, pw);
    users.push({ username: u, password: pw });
  };
  addUser(HUB_USER);
  addUser(OBSERVER_USER);
  addUser(DRIVER_USER);
  for (const n of edgewardNodes) addUser(`${n}@${ORG}`);
  for (const n of [...fleet, 'solo', 'alert']) addUser(`p-${n}`);
  const acl = [
    '# baseline clients (bench/hub): fan-out in, replies and alerts out, each under its own user name',
    `pattern read ${BASE}/fanout/all`,
    `pattern read ${BASE}/fanout/%u`,
    `pattern write ${BASE}/reply/%u`,
    `pattern write ${BASE}/alerts/%u`,
    '',
    mods.acl.renderAcl({
      prefix: PREFIX,
      hubUsers: [HUB_USER, OBSERVER_USER, DRIVER_USER],
      nodes: edgewardNodes.map((n) => ({ org: ORG, node: n, groups: fleet.includes(n) ? [GROUP] : [] })),
    }),
  ].join('\n');
  ctx.broker = await startBroker({ dir: path.join(work, 'broker'), users, acl });
  ctx.children.push({ stop: () => ctx.broker.stop() });

  // the hub service, as `edgeward hub serve` runs it
  const hubPw = path.join(work, 'hub.password');
  fs.writeFileSync(hubPw, ctx.passwords.get(HUB_USER), { mode: 0o600 });
  const cfg = mods.hub_config.parseHubServiceConfig(
    {
      broker: { url: ctx.broker.url, username: HUB_USER, passwordFile: hubPw, tls: { ca: ctx.broker.ca } },
      topicPrefix: PREFIX,
      database: path.join(work, 'hub', 'hub.db'),
      signingKey: ctx.signingKeyFile,
      reconnect: { initialDelayMs: 200, maxDelayMs: 2000 },
    },
    'bench',
  );
  if (!cfg.ok) throw new Error(cfg.error.map((e) => e.message).join('; '));
  const h = mods.service.HubService.create(cfg.value, { controlSocket: false, reconcileDelayMs: 500 });
  if (!h.ok) throw new Error(h.error.map((e) => e.message).join('; '));
  ctx.hub = h.value;
  const started = await ctx.hub.start();
  if (!started.ok) throw new Error(started.error.message);
  ctx.children.push({ stop: () => ctx.hub.stop() });
  await waitUntil('the hub to connect', () => ctx.hub.isConnected(), 20_000);
  ctx.hubReported = new Set();
  ctx.hub.on('reported', (org, node, state) => {
    const t = now();
    for (const f of ctx.hubReported) f(node, t, state);
  });
  ctx.hubStored = new Set();
  ctx.hub.on('stored', (org, node, kind, inserted) => {
    const t = Date.now();
    for (const f of ctx.hubStored) f(node, kind, inserted, t);
  });

  // the driver publishes the baseline's fan-out (in this process, like the hub's pushes)
  const { mqtt } = mods.mqtt_types;
  ctx.driver = mqtt.connect(ctx.broker.url, {
    protocolVersion: 5,
    clientId: DRIVER_USER,
    username: DRIVER_USER,
    password: ctx.passwords.get(DRIVER_USER),
    ca: fs.readFileSync(ctx.broker.ca),
    rejectUnauthorized: true,
    clean: true,
    reconnectPeriod: 0,
    keepalive: 60,
  });
  await new Promise((resolve, reject) => {
    ctx.driver.once('connect', resolve);
    ctx.driver.once('error', reject);
  });
  ctx.children.push({ stop: () => new Promise((r) => ctx.driver.end(false, {}, () => r())) });

  // the observer: its own process, so the hub's database commits here never delay what it sees
  ctx.onReported = new Set();
  ctx.onReply = new Set();
  ctx.observer = forkChild(
    'observer.js',
    {
      cmd: 'start',
      from: opts.from,
      url: ctx.broker.url,
      ca: ctx.broker.ca,
      username: OBSERVER_USER,
      password: ctx.passwords.get(OBSERVER_USER),
      filters: [`${PREFIX}/${ORG}/nodes/+/policy/reported`, `${BASE}/reply/#`, `${BASE}/alerts/#`],
      reportedPattern: `^${PREFIX}/${ORG}/nodes/([^/]+)/policy/reported$`,
      basePrefix: BASE,
    },
    (m) => {
      if (m.type === 'reported') for (const f of ctx.onReported) f(m.node, m.t, m.state);
      else if (m.type === 'reply') for (const f of ctx.onReply) f(m.user, m.t, m.id);
      else return false;
      return true;
    },
  );
  ctx.children.push(ctx.observer);
  await ctx.observer.wait('ready', 30_000);
}

async function waitUntil(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function tearDown(ctx) {
  for (const c of ctx.children.reverse()) {
    try {
      await c.stop();
    } catch (e) {
      process.stderr.write(`cleanup: ${e.message}\n`);
    }
  }
  fs.rmSync(ctx.work, { recursive: true, force: true });
  fs.rmSync(ctx.fleetRoot, { recursive: true, force: true });
}

function publish(ctx, topic, payload, opts) {
  return new Promise((resolve, reject) => ctx.driver.publish(topic, payload, opts, (e) => (e ? reject(e) : resolve())));
}

// ---------------------------------------------------------------- push rounds

/**
 * One edgeward round: pushes (one group push, or one node push per node)
 * and waits until every node reported the version enforced. Latency per
 * node from its push call, seen by the observer and recorded by the hub.
 */
async function edgewardRound(ctx, kind, names, fleetChildren) {
  const round = ++ctx.roundSeq;
  const obs = tracker(names, reportedVerdict);
  const hub = tracker(names, reportedVerdict);
  const onObs = (n, t, s) => obs.observe(n, t, s);
  const onHub = (n, t, s) => hub.observe(n, t, s);
  ctx.onReported.add(onObs);
  ctx.hubReported.add(onHub);
  try {
    if (kind === 'group') {
      const target = { scope: 'group', name: GROUP };
      const t0 = now();
      const r = await ctx.hub.push(ORG, target, groupDocuments(round));
      if (!r.ok) throw new Error(`push: ${r.error.message}${r.error.cause ? ` (${r.error.cause})` : ""}`);
      for (const n of names) {
        obs.expect(n, target, r.value.version, t0);
        hub.expect(n, target, r.value.version, t0);
      }
    } else {
      await Promise.all(
        names.map((n) => {
          const target = { scope: 'node', name: n };
          const t0 = now();
          return ctx.hub.push(ORG, target, nodeDocuments(n, round)).then((r) => {
            if (!r.ok) throw new Error(`push to ${n}: ${r.error.message}${r.error.cause ? ` (${r.error.cause})` : ""}`);
            obs.expect(n, target, r.value.version, t0);
            hub.expect(n, target, r.value.version, t0);
          });
        }),
      );
    }
    try {
      await withTimeout(Promise.all([obs.done, hub.done]), ROUND_TIMEOUT_MS, `edgeward ${kind} round`);
    } catch (e) {
      const miss = hub.missing();
      throw new Error(`${e.message}; ${miss.length} nodes not recorded by the hub, e.g. ${miss.slice(0, 3).join(' | ')}`);
    }
  } finally {
    ctx.onReported.delete(onObs);
    ctx.hubReported.delete(onHub);
  }
  const stats = await Promise.all(fleetChildren.map((c) => c.request({ cmd: 'stats', reset: true }, 'stats')));
  return {
    observed: obs.latencies(),
    recorded: hub.latencies(),
    toAllObserved: obs.toAll(),
    toAllRecorded: hub.toAll(),
    reloadMs: stats.flatMap((s) => s.reloadMs),
    nodeCpuMsPerNode: stats.reduce((a, s) => a + s.cpuMs, 0) / names.length,
    nodeErrors: stats.reduce((a, s) => a + s.errors, 0),
    nodeRssKiB: stats.reduce((a, s) => a + s.rssKiB, 0),
  };
}

/** The baseline round: the same fan-out shape over plain MQTT, one QoS 1 reply per client. */
async function plainRound(ctx, kind, users, payloadBytes) {
  const id = `base-${++ctx.roundSeq}`;
  const tr = tracker(users, (gotId, _target, want) => (gotId === want ? 'done' : `answered ${gotId}`));
  const onReply = (u, t, gotId) => tr.observe(u, t, gotId);
  ctx.onReply.add(onReply);
  const body = (what) => Buffer.concat([Buffer.from(`${id}\n`), Buffer.alloc(Math.max(0, payloadBytes - id.length - 1), what)]);
  try {
    if (kind === 'group') {
      const t0 = now();
      await publish(ctx, `${BASE}/fanout/all`, body(0x61), { qos: 1, retain: true });
      for (const u of users) tr.expect(u, null, id, t0);
    } else {
      await Promise.all(
        users.map((u) => {
          const t0 = now();
          return publish(ctx, `${BASE}/fanout/${u}`, body(0x62), { qos: 1, retain: true }).then(() => tr.expect(u, null, id, t0));
        }),
      );
    }
    try {
      await withTimeout(tr.done, ROUND_TIMEOUT_MS, `baseline ${kind} round`);
    } catch (e) {
      throw new Error(`${e.message}: ${tr.missing().length} clients did not answer, e.g. ${tr.missing().slice(0, 3).join(' | ')}`);
    }
  } finally {
    ctx.onReply.delete(onReply);
  }
  return { observed: tr.latencies(), toAll: tr.toAll() };
}

function sampleBundleBytes(ctx, kind, names) {
  const target = kind === 'group' ? { scope: 'group', name: GROUP } : { scope: 'node', name: names[0] };
  const documents = kind === 'group' ? groupDocuments(0) : nodeDocuments(names[0], 0);
  return ctx.mods.bundle.signBundle({ org: ORG, target, version: 1, documents }, ctx.signingKey).length;
}

async function startFleet(ctx, mode, names, procs, stateRoot) {
  const per = Math.ceil(names.length / procs);
  const children = [];
  const t0 = now();
  for (let p = 0; p < procs; p++) {
    const part = names.slice(p * per, (p + 1) * per);
    if (!part.length) continue;
    const nodes = part.map((n) => (mode === 'edgeward' ? { node: n, username: `${n}@${ORG}`, password: ctx.passwords.get(`${n}@${ORG}`) } : { node: n, username: `p-${n}`, password: ctx.passwords.get(`p-${n}`) }));
    const c = forkChild('fleet.js', {
      cmd: 'start',
      mode,
      from: ctx.opts.from,
      nodes,
      common: {
        url: ctx.broker.url,
        ca: ctx.broker.ca,
        prefix: PREFIX,
        org: ORG,
        groups: names.length > 1 ? [GROUP] : [],
        publicKeyFile: ctx.publicKeyFile,
        stateRoot,
        connectWave: 50,
        baselinePrefix: BASE,
        replyBytes: REPLY_BYTES,
      },
    });
    ctx.children.push(c);
    children.push(c);
  }
  const ready = await Promise.all(children.map((c) => c.wait('ready', 300_000)));
  return { children, setupMs: now() - t0, rssKiB: ready.reduce((a, r) => a + r.rssKiB, 0) };
}

async function stopFleet(ctx, fleet) {
  await Promise.all(fleet.children.map((c) => c.stop()));
  ctx.children = ctx.children.filter((c) => !fleet.children.includes(c));
}

const ms = (v) => (Number.isFinite(v) ? v : NaN);

/** Per case: both sides' pooled latencies, times to all per round, bracketed ratios. */
function caseResult(edgeward, plain) {
  // plain[i] ran before edgeward[i] and plain[i + 1] after it
  const ratio = (pick) => edgeward.map((e, i) => pick(e) / ((pick(plain[i]) + pick(plain[i + 1] ?? plain[i])) / 2));
  const pooled = (rs, k) => rs.flatMap((r) => r[k]);
  const e = {
    observed: latencySummary(pooled(edgeward, 'observed')),
    recorded: latencySummary(pooled(edgeward, 'recorded')),
    toAllObserved: edgeward.map((r) => ms(r.toAllObserved)),
    toAllRecorded: edgeward.map((r) => ms(r.toAllRecorded)),
    reload: latencySummary(pooled(edgeward, 'reloadMs')),
    nodeCpuMsPerNode: median(edgeward.map((r) => r.nodeCpuMsPerNode)),
    nodeErrors: edgeward.reduce((a, r) => a + r.nodeErrors, 0),
  };
  const p = { observed: latencySummary(pooled(plain, 'observed')), toAll: plain.map((r) => ms(r.toAll)) };
  return {
    rounds: edgeward.length,
    edgeward: e,
    baseline: p,
    ratio: {
      p50: median(ratio((r) => latencySummary(r.observed).p50)),
      p99: median(ratio((r) => latencySummary(r.observed).p99)),
      toAll: median(ratio((r) => (r.toAllObserved ?? r.toAll))),
    },
  };
}

async function benchPush(ctx, log) {
  const o = ctx.opts;
  const out = {};

  // 1 node: node pushes one after another, alternating with the baseline
  log('push: 1 node');
  const soloState = path.join(ctx.work, 'solo-state');
  const solo = await startFleet(ctx, 'edgeward', ['solo'], 1, soloState);
  const soloPlain = await startFleet(ctx, 'plain', ['solo'], 1, soloState);
  {
    const bytes = sampleBundleBytes(ctx, 'node', ['solo']);
    // warm-up (not counted): first loads, JIT, the broker's first retained message on each topic
    await edgewardRound(ctx, 'node', ['solo'], solo.children);
    await plainRound(ctx, 'node', ['p-solo'], bytes);
    const plain = [await plainRound(ctx, 'node', ['p-solo'], bytes)];
    const edge = [];
    for (let i = 0; i < o.soloPushes; i++) {
      edge.push(await edgewardRound(ctx, 'node', ['solo'], solo.children));
      plain.push(await plainRound(ctx, 'node', ['p-solo'], bytes));
    }
    out.solo = caseResult(edge, plain);
    out.solo.bundleBytes = bytes;
  }
  await stopFleet(ctx, solo);
  await stopFleet(ctx, soloPlain);

  // the fleet
  log(`push: starting ${o.nodes} lightweight nodes in ${o.procs} processes (+ as many plain clients)`);
  const names = Array.from({ length: o.nodes }, (_, i) => fleetName(i));
  const plainNames = names.map((n) => `p-${n}`);
  const fleet = await startFleet(ctx, 'edgeward', names, o.procs, ctx.fleetRoot);
  const plainFleet = await startFleet(ctx, 'plain', names, o.procs, ctx.fleetRoot);
  out.fleetSetup = { nodes: o.nodes, procs: o.procs, connectSeconds: fleet.setupMs / 1000, nodeProcessesRssKiB: fleet.rssKiB, plainProcessesRssKiB: plainFleet.rssKiB };
  await sleep(2000); // the connect storm's status and reported messages settle at the hub
  await Promise.all(fleet.children.map((c) => c.request({ cmd: 'stats', reset: true }, 'stats')));
  for (const kind of ['group', 'node']) {
    const bytes = sampleBundleBytes(ctx, kind, names);
    log(`push: fleet, ${kind === 'group' ? 'one group push' : 'one node push per node'}, ${o.rounds} rounds after a warm-up round`);
    const warm = await edgewardRound(ctx, kind, names, fleet.children);
    await plainRound(ctx, kind, plainNames, bytes);
    log(`  warm-up: edgeward all reported in ${warm.toAllObserved.toFixed(0)} ms`);
    const plain = [await plainRound(ctx, kind, plainNames, bytes)];
    const edge = [];
    for (let r = 0; r < o.rounds; r++) {
      edge.push(await edgewardRound(ctx, kind, names, fleet.children));
      plain.push(await plainRound(ctx, kind, plainNames, bytes));
      log(
        `  round ${r + 1}: edgeward all reported in ${edge[r].toAllObserved.toFixed(0)} ms (hub recorded all in ${edge[r].toAllRecorded.toFixed(0)} ms), ` +
          `baseline ${plain[r + 1].toAll.toFixed(0)} ms; node processes RSS ${(edge[r].nodeRssKiB / 1024).toFixed(0)} MiB`,
      );
    }
    out[kind === 'group' ? 'fleetGroup' : 'fleetNodes'] = { ...caseResult(edge, plain), bundleBytes: bytes };
  }
  // one node push while the whole fleet is connected
  log('push: one node of the connected fleet');
  {
    const pick = (i) => names[(i * 7919) % names.length];
    const bytes = sampleBundleBytes(ctx, 'node', names);
    const plain = [await plainRound(ctx, 'node', [`p-${pick(0)}`], bytes)];
    const edge = [];
    for (let i = 0; i < o.soloPushes; i++) {
      edge.push(await edgewardRound(ctx, 'node', [pick(i)], fleet.children));
      plain.push(await plainRound(ctx, 'node', [`p-${pick(i + 1)}`], bytes));
    }
    out.fleetOne = { ...caseResult(edge, plain), bundleBytes: bytes };
  }
  const st = await Promise.all(fleet.children.map((c) => c.request({ cmd: 'stats' }, 'stats')));
  out.fleetSetup.connectedAtEnd = st.reduce((a, s) => a + s.connected, 0);
  out.fleetSetup.nodeProcessesRssKiBAtEnd = st.reduce((a, s) => a + s.rssKiB, 0);
  out.fleetSetup.clientErrors = st.reduce((a, s) => a + s.errors, 0);
  out.hubRssKiB = Math.round(process.memoryUsage().rss / 1024);
  await stopFleet(ctx, fleet);
  await stopFleet(ctx, plainFleet);
  return out;
}

// ---------------------------------------------------------------- alerts

function alertConfigs() {
  return [
    { name: 'always', fsync: 'always', delivery: 'hub-ack', share: 0.1 },
    { name: 'interval', fsync: 'interval', delivery: 'hub-ack', share: 1 },
    { name: 'never', fsync: 'never', delivery: 'hub-ack', share: 1 },
    { name: 'interval-puback', fsync: 'interval', delivery: 'puback', share: 1 },
  ];
}

function alertChild(ctx, msg) {
  const c = forkChild('alert_node.js', {
    cmd: 'start',
    from: ctx.opts.from,
    url: ctx.broker.url,
    ca: ctx.broker.ca,
    prefix: PREFIX,
    org: ORG,
    publicKeyFile: ctx.publicKeyFile,
    baselinePrefix: BASE,
    burst: 500,
    fsyncIntervalMs: 1000,
    spoolMaxBytes: 64 * 1024 * 1024,
    ...msg,
  });
  ctx.children.push(c);
  return c;
}

/** Resolves with the wall-clock time at which the hub had stored `count` alerts of `node`. */
function hubStoredAll(ctx, node, count) {
  let stored = 0;
  let f;
  const p = new Promise((resolve) => {
    f = (n, kind, inserted, t) => {
      if (n !== node || kind !== 'alerts') return;
      stored += inserted;
      if (stored >= count) resolve(t);
    };
    ctx.hubStored.add(f);
  });
  return { done: p.finally(() => ctx.hubStored.delete(f)), stored: () => stored };
}

/**
 * The baseline: count alerts published one by one with QoS 1 from a plain
 * mqtt.js client; its rate is count / time until the broker acknowledged
 * (PUBACK) the last one. A subscriber (the observer) counts what reached it:
 * mosquitto drops QoS 1 messages for a subscriber that falls more than
 * max_queued_messages behind, which plain QoS 1 does not notice.
 */
async function plainAlerts(ctx, count) {
  const c = alertChild(ctx, { mode: 'plain', username: 'p-alert', password: ctx.passwords.get('p-alert'), count });
  await c.wait('ready');
  const received = async () => (await ctx.observer.request({ cmd: 'count' }, 'count')).alerts;
  const start = await received();
  try {
    const done = await c.request({ cmd: 'go' }, 'done', 600_000);
    // what is still on its way to the subscriber arrives now, or was dropped
    let got = (await received()) - start;
    let before = -1;
    while (got < count && got !== before) {
      before = got;
      await sleep(1000);
      got = (await received()) - start;
    }
    const seconds = done.deliveredMs / 1000;
    return { count, seconds, perSecond: count / seconds, publishFailures: done.refused, subscriberReceived: got };
  } finally {
    await c.stop();
  }
}

async function edgewardAlerts(ctx, config, round, count) {
  const node = `alerts-${config.name}-${round}`;
  const c = alertChild(ctx, {
    mode: 'edgeward',
    node,
    username: `${node}@${ORG}`,
    password: ctx.passwords.get(`${node}@${ORG}`),
    stateDirectory: path.join(ctx.work, 'alert-state', node),
    fsync: config.fsync,
    delivery: config.delivery,
    count,
  });
  await c.wait('ready');
  const hub = hubStoredAll(ctx, node, count);
  try {
    const done = await c.request({ cmd: 'go' }, 'done', 600_000);
    const tAll = await withTimeout(hub.done, ROUND_TIMEOUT_MS, `hub storing ${node}'s alerts (${hub.stored()} of ${count})`);
    const seconds = (tAll - done.t0Wall) / 1000;
    return {
      count,
      seconds,
      perSecond: count / seconds,
      enqueuePerSecond: count / (done.enqueueMs / 1000),
      spoolEmptySeconds: done.deliveredMs / 1000,
      refused: done.refused,
    };
  } finally {
    await c.stop();
  }
}

async function benchAlerts(ctx, log) {
  const o = ctx.opts;
  const configs = alertConfigs();
  const plain = [];
  const edge = Object.fromEntries(configs.map((c) => [c.name, []]));
  const plainCount = o.throughputAlerts;
  for (let r = 0; r < o.alertRounds; r++) {
    for (const c of configs) {
      plain.push(await plainAlerts(ctx, plainCount));
      const e = await edgewardAlerts(ctx, c, r, Math.max(100, Math.round(plainCount * c.share)));
      e.baselineBefore = plain[plain.length - 1].perSecond;
      edge[c.name].push(e);
      log(`alerts: round ${r + 1}, fsync ${c.fsync}, ${c.delivery}: ${e.perSecond.toFixed(0)}/s into the hub (baseline ${e.baselineBefore.toFixed(0)}/s)`);
    }
  }
  plain.push(await plainAlerts(ctx, plainCount));
  // each run's ratio to the baseline runs just before and after it
  let k = 0;
  const out = { baseline: latencyless(plain), configs: {} };
  for (let r = 0; r < o.alertRounds; r++) {
    for (const c of configs) {
      const e = edge[c.name][r];
      e.ratio = e.perSecond / ((plain[k].perSecond + plain[k + 1].perSecond) / 2);
      k++;
    }
  }
  for (const c of configs) {
    const runs = edge[c.name];
    out.baseline.subscriberReceivedMin = Math.min(...plain.map((x) => x.subscriberReceived / x.count));
    out.configs[c.name] = {
      fsync: c.fsync,
      delivery: c.delivery,
      count: runs[0].count,
      perSecond: median(runs.map((x) => x.perSecond)),
      enqueuePerSecond: median(runs.map((x) => x.enqueuePerSecond)),
      ratio: median(runs.map((x) => x.ratio)),
      ratioMin: Math.min(...runs.map((x) => x.ratio)),
      ratioMax: Math.max(...runs.map((x) => x.ratio)),
      refused: runs.reduce((a, x) => a + x.refused, 0),
    };
  }
  return out;
}

function latencyless(runs) {
  return { perSecond: median(runs.map((r) => r.perSecond)), min: Math.min(...runs.map((r) => r.perSecond)), max: Math.max(...runs.map((r) => r.perSecond)), runs: runs.length };
}

async function benchRecovery(ctx, log) {
  const count = ctx.opts.alerts;
  const node = 'recover';
  const base = {
    node,
    username: `${node}@${ORG}`,
    password: ctx.passwords.get(`${node}@${ORG}`),
    stateDirectory: path.join(ctx.work, 'recover-state'),
    fsync: 'interval',
    delivery: 'hub-ack',
    count,
    // room for all of them: the default 64 MiB holds about 70k of these alerts
    spoolMaxBytes: 512 * 1024 * 1024,
  };
  log(`recovery: spooling ${count} alerts with no broker reachable`);
  const fill = alertChild(ctx, { ...base, mode: 'fill', unreachableUrl: 'mqtts://127.0.0.1:1' });
  await fill.wait('ready');
  const filled = await fill.request({ cmd: 'go' }, 'done', 1_200_000);
  await fill.kill(); // a crash: no clean close of the spool
  log('recovery: node SIGKILLed; starting it again');
  const hub = hubStoredAll(ctx, node, count);
  const drain = alertChild(ctx, { ...base, mode: 'drain' });
  const ready = await drain.wait('ready', 600_000);
  const done = await drain.request({ cmd: 'go' }, 'done', 1_200_000);
  const tAll = await withTimeout(hub.done, 600_000, `hub storing the recovered alerts (${hub.stored()} of ${count})`);
  await drain.stop();
  log(`recovery: baseline, ${count} plain QoS 1 publishes`);
  const plainBefore = await plainAlerts(ctx, count);
  const seconds = (tAll - done.t0Wall) / 1000;
  return {
    count,
    spoolBytes: filled.bytes,
    fillPerSecond: count / (filled.enqueueMs / 1000),
    refusedWhileFilling: filled.refused,
    pendingAfterCrash: ready.pendingAtOpen,
    openSeconds: ready.openMs / 1000,
    connectSeconds: done.connectedMs / 1000,
    toHubSeconds: seconds,
    spoolEmptySeconds: done.deliveredMs / 1000,
    perSecond: count / seconds,
    baselineSeconds: plainBefore.seconds,
    baselineSubscriberReceived: plainBefore.subscriberReceived,
    ratio: seconds / plainBefore.seconds,
  };
}

// ---------------------------------------------------------------- report

const f0 = (v) => (Number.isFinite(v) ? v.toFixed(0) : 'n/a');
const f1 = (v) => (Number.isFinite(v) ? v.toFixed(1) : 'n/a');
const f2 = (v) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
const msText = (v) => (!Number.isFinite(v) ? 'n/a' : v >= 10000 ? `${(v / 1000).toFixed(1)} s` : v >= 100 ? `${v.toFixed(0)} ms` : `${v.toFixed(1)} ms`);
const range = (vs) => `${msText(median(vs))} (${msText(Math.min(...vs))}-${msText(Math.max(...vs))})`;

function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

function formatReport(r) {
  const m = r.machine;
  const lines = [`edgeward hub bench${r.quick ? ' (quick)' : ''} — kernel ${m.kernel}, ${m.cpu}, ${m.cores} cores, ${m.memoryMiB} MiB, node ${m.node}, mosquitto ${r.mosquitto}, ${m.date}, ${f0(r.elapsedSeconds)} s, load average ${f1(m.loadAverageAtStart)} at start, ${f1(m.loadAverageAtEnd)} at end`, ''];
  if (r.push) {
    const p = r.push;
    lines.push(
      'Policy push -> node reports the version enforced (latency per node from the push call; baseline: plain MQTT fan-out + one QoS 1 reply, same broker, same clients layout)',
    );
    const rows = [['case', 'samples', 'seen on broker p50 / p99', 'recorded by hub p50 / p99', 'to all (median, min-max)', 'baseline p50 / p99', 'baseline to all', 'ratio p50 / p99 / to all']];
    const add = (label, c) => {
      if (!c) return;
      rows.push([
        label,
        c.edgeward.observed.n,
        `${msText(c.edgeward.observed.p50)} / ${msText(c.edgeward.observed.p99)}`,
        `${msText(c.edgeward.recorded.p50)} / ${msText(c.edgeward.recorded.p99)}`,
        range(c.edgeward.toAllObserved),
        `${msText(c.baseline.observed.p50)} / ${msText(c.baseline.observed.p99)}`,
        range(c.baseline.toAll),
        `${f2(c.ratio.p50)}x / ${f2(c.ratio.p99)}x / ${f2(c.ratio.toAll)}x`,
      ]);
    };
    add('1 node, node push', p.solo);
    add(`${p.fleetSetup.nodes} nodes, one group push`, p.fleetGroup);
    add(`${p.fleetSetup.nodes} nodes, a node push to each (burst)`, p.fleetNodes);
    add(`1 of ${p.fleetSetup.nodes} connected nodes, node push`, p.fleetOne);
    lines.push(table(rows));
    const reload = (label, c) => c && `${label}: load+compile ${msText(c.edgeward.reload.p50)} p50 / ${msText(c.edgeward.reload.p99)} p99, node-process CPU ${msText(c.edgeward.nodeCpuMsPerNode)} per node per push`;
    lines.push(
      'node side (in the simulated nodes):',
      ...[reload('  1 node', p.solo), reload('  group push', p.fleetGroup), reload('  node pushes', p.fleetNodes)].filter(Boolean),
      `bundle sizes: node ${p.solo?.bundleBytes} bytes, group ${p.fleetGroup?.bundleBytes} bytes (${groupDocuments(0).length} documents)`,
      `fleet: ${p.fleetSetup.nodes} nodes in ${p.fleetSetup.procs} processes connected in ${f1(p.fleetSetup.connectSeconds)} s (waves of 50); node processes RSS ${f0(p.fleetSetup.nodeProcessesRssKiB / 1024)} MiB after connect, ${f0(p.fleetSetup.nodeProcessesRssKiBAtEnd / 1024)} MiB at the end (plain clients ${f0(p.fleetSetup.plainProcessesRssKiB / 1024)} MiB); ${p.fleetSetup.connectedAtEnd} connected at the end; client errors ${p.fleetSetup.clientErrors}; hub+observer process RSS ${f0(p.hubRssKiB / 1024)} MiB`,
      '',
    );
  }
  if (r.alerts) {
    const a = r.alerts;
    lines.push('Alert throughput node -> hub (enqueue to stored in the hub database; baseline: a plain mqtt.js QoS 1 publish per alert, same JSON, same broker)');
    const rows = [['spool fsync', 'delivery', 'alerts per run', 'into hub/s', 'enqueue/s', 'ratio to baseline (min-max)', 'refused']];
    for (const c of Object.values(a.configs)) rows.push([c.fsync, c.delivery, c.count, f0(c.perSecond), f0(c.enqueuePerSecond), `${f2(c.ratio)}x (${f2(c.ratioMin)}-${f2(c.ratioMax)})`, c.refused]);
    rows.push(['(baseline)', 'QoS 1 each', '', f0(a.baseline.perSecond), '', `${f0(a.baseline.min)}-${f0(a.baseline.max)}/s over ${a.baseline.runs} runs`, '']);
    lines.push(
      table(rows),
      `baseline rate: until the broker acknowledged (PUBACK) the last alert; its subscriber received as few as ${f1(100 * a.baseline.subscriberReceivedMin)}% of them in a run`,
      '(mosquitto drops QoS 1 messages for a subscriber more than max_queued_messages behind); edgeward\'s hub-ack rate is what the hub stored.',
      '',
    );
  }
  if (r.recovery) {
    const c = r.recovery;
    lines.push(
      `Spool recovery: ${c.count} alerts spooled with no broker (${f1(c.spoolBytes / 2 ** 20)} MiB, ${f0(c.fillPerSecond)}/s, ${c.refusedWhileFilling} refused), node SIGKILLed, started again`,
      `  open (createHubClient: spool scan, ${c.pendingAfterCrash} pending found): ${f2(c.openSeconds)} s; connected after ${f2(c.connectSeconds)} s`,
      `  all stored by the hub after ${f1(c.toHubSeconds)} s (${f0(c.perSecond)}/s), spool empty after ${f1(c.spoolEmptySeconds)} s`,
      `  baseline: the same count as plain QoS 1 publishes, all acknowledged by the broker after ${f1(c.baselineSeconds)} s (its subscriber received ${c.baselineSubscriberReceived}); ratio ${f2(c.ratio)}x`,
      '',
    );
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------- main

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`${e.message}\n${USAGE}`);
      process.exit(2);
    }
    throw e;
  }
  const mods = loadModules(opts.from);
  const log = (s) => process.stderr.write(`[hub-bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const started = Date.now();
  const results = { machine: machineInfo(), quick: opts.quick, options: { ...opts } };
  results.mosquitto = require('child_process').spawnSync('mosquitto', ['-h'], { encoding: 'utf8' }).stdout?.match(/version (\S+)/)?.[1] ?? 'unknown';
  const ctx = await setUp(opts, mods);
  let failed;
  try {
    if (opts.parts.includes('push')) results.push = await benchPush(ctx, log);
    if (opts.parts.includes('alerts')) results.alerts = await benchAlerts(ctx, log);
    if (opts.parts.includes('recovery')) results.recovery = await benchRecovery(ctx, log);
  } catch (e) {
    failed = e;
    if (ctx.broker.exited() !== undefined) process.stderr.write(`mosquitto exited (${ctx.broker.exited()}):\n${ctx.broker.logTail()}\n`);
  } finally {
    await tearDown(ctx);
  }
  if (failed) throw failed;
  results.elapsedSeconds = (Date.now() - started) / 1000;
  results.machine.loadAverageAtEnd = os.loadavg()[0];
  process.stdout.write(opts.json ? `${JSON.stringify(results, null, 2)}\n` : formatReport(results));
}

main().catch((e) => {
  process.stderr.write(`hub bench failed: ${e.stack ?? e}\n`);
  process.exit(1);
});
