'use strict';
// Child process of bench/hub/run.js: one node sending alerts.
//
//   edgeward  a real HubClient (spool on disk with the given fsync policy and
//             delivery mode); alerts enqueued in bursts as the agent does
//   plain     the baseline: one mqtt.js QoS 1 publish per alert, same JSON
//   fill      a HubClient with no broker reachable: the alerts pile up in the
//             spool; the parent SIGKILLs this process afterwards (a crash)
//   drain     a HubClient opened on that spool: time to open it (scan), then
//             to deliver everything
//
// IPC: {cmd: 'start', ...} -> {type: 'ready'}; {cmd: 'go'} -> {type: 'done'};
// {cmd: 'stop'} -> {type: 'stopped'}; failures -> {type: 'error'}.
const fs = require('fs');
const path = require('path');
const { loadModules } = require('./lib/load');

let mods;
let opts;
let node; // { go(): Promise<done message>, stop(): Promise<void> }

function send(m) {
  if (process.connected) process.send(m);
}

function fail(e) {
  send({ type: 'error', message: e?.stack ?? String(e) });
  setTimeout(() => process.exit(1), 100);
}

/** A KubeArmor alert as the agent emits it (about 700 bytes of JSON). */
function alert(i) {
  const now = Date.now();
  return {
    Timestamp: Math.floor(now / 1000),
    UpdatedTime: new Date(now).toISOString(),
    HostName: opts.node,
    HostPPID: 1234,
    HostPID: 40000 + (i % 20000),
    PPID: 1234,
    PID: 40000 + (i % 20000),
    UID: 1000,
    ParentProcessName: '/usr/bin/bash',
    ProcessName: '/usr/bin/cat',
    PolicyName: 'credential-files-audit',
    Severity: '5',
    Tags: 'MITRE,T1552',
    ATags: ['MITRE', 'T1552'],
    Message: 'credential file opened',
    Type: 'MatchedHostPolicy',
    Source: '/usr/bin/cat /etc/shadow',
    Operation: 'File',
    Resource: '/etc/shadow',
    Data: `syscall=SYS_OPENAT fd=-100 flags=O_RDONLY seq=${i}`,
    Enforcer: 'eBPF Monitor',
    Action: 'Audit',
    Result: 'Passed',
  };
}

const tick = () => new Promise((r) => setImmediate(r));

function hubClient(url) {
  const { client: clientMod, options } = mods;
  const passwordFile = path.join(opts.stateDirectory, 'password');
  fs.mkdirSync(opts.stateDirectory, { recursive: true, mode: 0o700 });
  fs.writeFileSync(passwordFile, `${opts.password}\n`, { mode: 0o600 });
  const cfg = options.parseHubConfig({
    url,
    topicPrefix: opts.prefix,
    organization: opts.org,
    nodeId: opts.node,
    tls: { ca: opts.ca },
    passwordFile,
    policyPublicKeys: [opts.publicKeyFile],
    spool: { fsync: opts.fsync, maxBytes: opts.spoolMaxBytes },
    delivery: opts.delivery,
    reconnect: { initialDelayMs: 200, maxDelayMs: 2000, multiplier: 2, resetAfterMs: 30000 },
  });
  if (!cfg.ok) throw new Error(cfg.error.map((e) => e.message).join('; '));
  const t = performance.now();
  const r = clientMod.createHubClient({
    config: cfg.value,
    stateDirectory: opts.stateDirectory,
    requestReload: () => ({ files: 0, policies: 0, rules: 0, errors: [], warnings: [] }),
    env: {},
  });
  if (!r.ok) throw new Error(r.error.map((e) => e.message).join('; '));
  return { client: r.value, openMs: performance.now() - t };
}

async function waitConnected(client) {
  const deadline = Date.now() + 30_000;
  while (!client.status().connected) {
    if (Date.now() > deadline) throw new Error(`${opts.node} did not connect within 30 s: ${client.status().lastError ?? ''}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Resolves once the spool holds no alert that was not delivered. status()
 * counts the pending records one by one, so it is asked only once the
 * newest record was acknowledged, not on every batch.
 */
function drained(client) {
  const last = client.status().spool.alerts.lastSeq;
  return new Promise((resolve) => {
    let reachedLast = false;
    const check = (kind, _from, to) => {
      if (kind !== undefined && kind !== 'alerts') return false;
      if (to !== undefined && to >= last) reachedLast = true;
      if ((kind === undefined || reachedLast) && client.status().spool.alerts.pending === 0) {
        client.off('delivered', check);
        resolve();
        return true;
      }
      return false;
    };
    if (!check()) client.on('delivered', check);
  });
}

async function enqueueAll(client) {
  let refused = 0;
  const t = performance.now();
  for (let i = 0; i < opts.count; i += opts.burst) {
    const end = Math.min(opts.count, i + opts.burst);
    for (let j = i; j < end; j++) if (!client.enqueueAlert(alert(j)).ok) refused++;
    await tick(); // the agent hands over one burst per event-loop turn
  }
  return { enqueueMs: performance.now() - t, refused };
}

async function startEdgeward() {
  const { client, openMs } = hubClient(opts.url);
  client.start();
  await waitConnected(client);
  return {
    openMs,
    go: async () => {
      const t0Wall = Date.now();
      const t = performance.now();
      const { enqueueMs, refused } = await enqueueAll(client);
      await drained(client);
      return { t0Wall, enqueueMs, deliveredMs: performance.now() - t, refused, spool: client.status().spool.alerts };
    },
    stop: () => client.stop(),
  };
}

async function startFill() {
  // nothing listens there: the alerts stay in the spool
  const { client, openMs } = hubClient(opts.unreachableUrl);
  client.start();
  return {
    openMs,
    go: async () => {
      const { enqueueMs, refused } = await enqueueAll(client);
      // the "interval" policy's timer has run at least once more: what a crash now keeps
      await new Promise((r) => setTimeout(r, opts.fsyncIntervalMs + 200));
      return { enqueueMs, refused, spool: client.status().spool.alerts, bytes: client.status().spool.bytes };
    },
    stop: () => client.stop(),
  };
}

async function startDrain() {
  const { client, openMs } = hubClient(opts.url);
  const pendingAtOpen = client.status().spool.alerts.pending;
  return {
    openMs,
    pendingAtOpen,
    go: async () => {
      const t0Wall = Date.now();
      const t = performance.now();
      client.start();
      await waitConnected(client);
      const connectedMs = performance.now() - t;
      await drained(client);
      return { t0Wall, connectedMs, deliveredMs: performance.now() - t, spool: client.status().spool.alerts };
    },
    stop: () => client.stop(),
  };
}

async function startPlain() {
  const { mqtt } = mods.mqtt_types;
  const client = mqtt.connect(opts.url, {
    protocolVersion: 5,
    clientId: opts.username,
    username: opts.username,
    password: opts.password,
    ca: fs.readFileSync(opts.ca),
    rejectUnauthorized: true,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: 30000,
    keepalive: 30,
  });
  await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const topic = `${opts.baselinePrefix}/alerts/${opts.username}`;
  return {
    go: async () => {
      const t0Wall = Date.now();
      const t = performance.now();
      let acked = 0;
      let failed = 0;
      let resolveAll;
      const allAcked = new Promise((resolve) => (resolveAll = resolve));
      const done = (e) => {
        if (e) failed++;
        if (++acked === opts.count) resolveAll();
      };
      for (let i = 0; i < opts.count; i += opts.burst) {
        const end = Math.min(opts.count, i + opts.burst);
        for (let j = i; j < end; j++) client.publish(topic, JSON.stringify(alert(j)), { qos: 1 }, done);
        await tick();
      }
      const enqueueMs = performance.now() - t;
      await allAcked;
      return { t0Wall, enqueueMs, deliveredMs: performance.now() - t, refused: failed };
    },
    stop: () => new Promise((resolve) => client.end(false, {}, () => resolve())),
  };
}

process.on('message', (msg) => {
  if (msg.cmd === 'start') {
    opts = msg;
    mods = loadModules(msg.from);
    const starter = { edgeward: startEdgeward, fill: startFill, drain: startDrain, plain: startPlain }[msg.mode];
    starter()
      .then((n) => {
        node = n;
        send({ type: 'ready', openMs: n.openMs, pendingAtOpen: n.pendingAtOpen });
      })
      .catch(fail);
  } else if (msg.cmd === 'go') {
    node
      .go()
      .then((r) => send({ type: 'done', ...r }))
      .catch(fail);
  } else if (msg.cmd === 'stop') {
    node
      .stop()
      .then(() => {
        send({ type: 'stopped' });
        setTimeout(() => process.exit(0), 50);
      })
      .catch(fail);
  }
});
process.on('disconnect', () => process.exit(0));
