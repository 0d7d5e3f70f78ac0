'use strict';
// Child process of bench/hub/run.js: watches the broker on its own event
// loop, so the hub's SQLite commits (in the parent) never delay when a
// message is seen. Timestamps are wall-clock milliseconds with sub-ms
// precision (performance.timeOrigin + performance.now()), comparable with
// the parent's.
//
// IPC: {cmd: 'start', url, ca, username, password, reportedFilter, basePrefix}
//   -> {type: 'ready'}; then {type: 'reported', node, t, state} per report and
//   {type: 'reply', user, t, id} per baseline reply; {cmd: 'count'} -> {type:
//   'count', alerts} (baseline alerts received); {cmd: 'stop'} -> {type: 'stopped'}.
const fs = require('fs');
const { loadModules } = require('./lib/load');

const now = () => performance.timeOrigin + performance.now();
let client;
let alerts = 0;

function send(m) {
  if (process.connected) process.send(m);
}

function start(msg) {
  const { mqtt } = loadModules(msg.from).mqtt_types;
  const reportedTopic = new RegExp(msg.reportedPattern);
  client = mqtt.connect(msg.url, {
    protocolVersion: 5,
    clientId: msg.username,
    username: msg.username,
    password: msg.password,
    ca: fs.readFileSync(msg.ca),
    rejectUnauthorized: true,
    clean: true,
    reconnectPeriod: 0,
    keepalive: 60,
  });
  client.on('error', (e) => send({ type: 'error', message: `observer: ${e.message}` }));
  client.on('close', () => send({ type: 'error', message: 'observer: connection closed' }));
  client.on('message', (topic, payload, packet) => {
    const t = now();
    let m;
    if ((m = reportedTopic.exec(topic))) {
      if (packet.retain || !payload.length) return; // a report from before, replayed on subscribe
      const s = JSON.parse(payload.toString());
      // only what the verdict needs travels to the parent
      send({
        type: 'reported',
        node: m[1],
        t,
        state: { scopes: s.scopes, documents: (s.documents ?? []).map((d) => ({ scope: d.scope, scopeName: d.scopeName, version: d.version, document: d.document, status: d.status, errors: d.errors })) },
      });
    } else if (topic.startsWith(`${msg.basePrefix}/reply/`)) {
      send({ type: 'reply', user: topic.slice(`${msg.basePrefix}/reply/`.length), t, id: JSON.parse(payload.toString()).id });
    } else if (topic.startsWith(`${msg.basePrefix}/alerts/`)) {
      alerts++;
    }
  });
  client.on('connect', () => {
    client.subscribe(msg.filters.reduce((a, f) => ({ ...a, [f]: { qos: 1 } }), {}), (e, granted) => {
      if (e) return send({ type: 'error', message: `observer: ${e.message}` });
      if (granted.some((g) => g.qos & 0x80)) return send({ type: 'error', message: `observer: subscriptions refused: ${JSON.stringify(granted)}` });
      send({ type: 'ready' });
    });
  });
}

process.on('message', (msg) => {
  if (msg.cmd === 'start') start(msg);
  else if (msg.cmd === 'count') send({ type: 'count', alerts });
  else if (msg.cmd === 'stop') {
    client.removeAllListeners('close');
    client.end(false, {}, () => {
      send({ type: 'stopped' });
      setTimeout(() => process.exit(0), 50);
    });
  }
});
process.on('disconnect', () => process.exit(0));
