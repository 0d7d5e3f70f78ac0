'use strict';
// Child process of bench/hub/run.js: a share of the simulated fleet.
//
// mode "edgeward": lightweight nodes in no-kernel mode. Each is a real
//   HubClient (createHubClient: its own state directory, spool, policy store,
//   TLS connection) whose requestReload loads the materialised policy
//   directory with the agent's loader and compiles it with the agent's
//   compiler (the work a real agent does before its kernel update), then the
//   client reports back on `reported` as usual.
// mode "plain": the baseline. Plain mqtt.js clients over the same TLS
//   listener that answer every fan-out message with one QoS 1 publish.
//
// IPC: parent sends {cmd: 'start', ...} | {cmd: 'stats'} | {cmd: 'stop'};
// the child answers {type: 'ready'} | {type: 'stats'} | {type: 'stopped'} | {type: 'error'}.
const fs = require('fs');
const path = require('path');
const { loadModules } = require('./lib/load');

let mods;
const nodes = [];
let reloadMs = [];
let cpuAtReset = process.cpuUsage();
let errors = 0;
let lastError = '';

function send(m) {
  if (process.connected) process.send(m);
}

function fail(e) {
  send({ type: 'error', message: e?.stack ?? String(e) });
  setTimeout(() => process.exit(1), 100);
}

/** A real HubClient whose "agent" loads and compiles the hub policy directory. */
function startEdgewardNode(spec, common) {
  const { client: clientMod, options, loader, compiler } = mods;
  const state = path.join(common.stateRoot, spec.node);
  fs.mkdirSync(state, { recursive: true, mode: 0o700 });
  const passwordFile = path.join(state, 'password');
  fs.writeFileSync(passwordFile, `${spec.password}\n`, { mode: 0o600 });
  const cfg = options.parseHubConfig({
    url: common.url,
    topicPrefix: common.prefix,
    organization: common.org,
    nodeId: spec.node,
    groups: common.groups,
    tls: { ca: common.ca },
    passwordFile,
    policyPublicKeys: [common.publicKeyFile],
    reconnect: { initialDelayMs: 500, maxDelayMs: 5000, multiplier: 2, resetAfterMs: 30000 },
  });
  if (!cfg.ok) throw new Error(cfg.error.map((e) => e.message).join('; '));
  let client;
  let lastLoad;
  const requestReload = () => {
    const t = performance.now();
    const loaded = loader.loadPolicyDirectory(client.policyDirectory);
    const compiled = compiler.compilePolicies(loaded.policies, { hostname: spec.node, nodeLabels: {} });
    const errs = [...loaded.errors.map(loader.formatPolicyError), ...compiled.errors.map(compiler.formatCompileError)];
    lastLoad = {
      files: fs.readdirSync(client.policyDirectory).length,
      policies: loaded.policies.length - compiled.errors.length,
      rules: compiled.set.pathRules.length + compiled.set.networkRules.length,
      errors: errs,
      warnings: [],
    };
    reloadMs.push(performance.now() - t);
    return lastLoad;
  };
  const r = clientMod.createHubClient({ config: cfg.value, stateDirectory: state, requestReload, currentLoad: () => lastLoad, env: {} });
  if (!r.ok) throw new Error(r.error.map((e) => e.message).join('; '));
  client = r.value;
  client.on('error', (e) => {
    errors++;
    lastError = e.message;
  });
  return {
    connected: () => client.status().connected,
    start: () => client.start(),
    stop: () => client.stop(),
  };
}

/** The baseline: answers every fan-out message with one QoS 1 publish of a reply of the same size as a report. */
function startPlainNode(spec, common) {
  const { mqtt } = mods.mqtt_types;
  let client;
  let up = false;
  const pad = 'x'.repeat(common.replyBytes);
  return {
    connected: () => up,
    start: () => {
      client = mqtt.connect(common.url, {
        protocolVersion: 5,
        clientId: spec.username,
        username: spec.username,
        password: spec.password,
        ca: fs.readFileSync(common.ca),
        rejectUnauthorized: true,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: 30000,
        keepalive: 30,
      });
      client.on('connect', () => {
        client.subscribe({ [`${common.baselinePrefix}/fanout/all`]: { qos: 1 }, [`${common.baselinePrefix}/fanout/${spec.username}`]: { qos: 1 } }, (e) => {
          if (e) return fail(e);
          up = true;
        });
      });
      client.on('message', (topic, payload, packet) => {
        if (packet.retain) return; // an earlier round's message replayed on subscribe
        // what the fan-out carried, so the observer can tell rounds apart: its first line
        const id = payload.subarray(0, payload.indexOf(10)).toString();
        client.publish(`${common.baselinePrefix}/reply/${spec.username}`, JSON.stringify({ id, pad }), { qos: 1 });
      });
      client.on('error', (e) => {
        errors++;
        lastError = e.message;
      });
      client.on('close', () => (up = false));
    },
    stop: () => new Promise((resolve) => (client ? client.end(false, {}, () => resolve()) : resolve())),
  };
}

async function start(msg) {
  mods = loadModules(msg.from);
  // the loader compiles its schema on first use: not part of any push
  mods.loader.parsePolicyText('apiVersion: v1\n', 'warm-up');
  const t0 = performance.now();
  for (const spec of msg.nodes) nodes.push(msg.mode === 'edgeward' ? startEdgewardNode(spec, msg.common) : startPlainNode(spec, msg.common));
  // connect in waves: a thousand TLS handshakes at once only measure the handshake storm
  const wave = msg.common.connectWave;
  for (let i = 0; i < nodes.length; i += wave) {
    const part = nodes.slice(i, i + wave);
    for (const n of part) n.start();
    const deadline = Date.now() + 60_000;
    while (part.some((n) => !n.connected())) {
      if (Date.now() > deadline) throw new Error(`nodes ${i}..${i + wave - 1} did not connect within 60 s (${errors} errors, last: ${lastError})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  send({ type: 'ready', nodes: nodes.length, setupMs: performance.now() - t0, rssKiB: Math.round(process.memoryUsage().rss / 1024) });
}

process.on('message', (msg) => {
  if (msg.cmd === 'start') start(msg).catch(fail);
  else if (msg.cmd === 'stats') {
    const cpu = process.cpuUsage(cpuAtReset);
    send({ type: 'stats', reloadMs, cpuMs: (cpu.user + cpu.system) / 1000, errors, lastError, connected: nodes.filter((n) => n.connected()).length, rssKiB: Math.round(process.memoryUsage().rss / 1024) });
    if (msg.reset) {
      reloadMs = [];
      cpuAtReset = process.cpuUsage();
    }
  } else if (msg.cmd === 'stop') {
    Promise.all(nodes.map((n) => n.stop()))
      .then(() => {
        send({ type: 'stopped' });
        setTimeout(() => process.exit(0), 50);
      })
      .catch(fail);
  }
});
process.on('disconnect', () => process.exit(0));
