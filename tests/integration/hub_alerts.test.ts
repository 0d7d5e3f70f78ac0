// Alerts node -> hub through a real mosquitto, with the node client running
// in child processes that are SIGKILLed, and the broker SIGKILLed too:
// every alert arrives, once after deduplication, in order per node.
import { ChildProcess, spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { renderAcl } from '../../agent/src/hub/acl';
import { generateSigningKeyPair } from '../../agent/src/hub/bundle';
import { createHubClient } from '../../agent/src/hub/client';
import { HubServiceConfig, parseHubServiceConfig } from '../../agent/src/hub/hub_config';
import { HubConfig, parseHubConfig } from '../../agent/src/hub/options';
import { HubService } from '../../agent/src/hub/service';
import type { StoredAlert } from '../../agent/src/hub/store';
import { Broker, startMosquitto, TS_REQUIRE_HOOK } from '../helpers/mosquitto';
import { REPO, waitFor } from '../helpers/system';

const ORG = 'acme';
const PREFIX = 'ew';

// Runs the node client from the TypeScript sources (transpiled on load), so
// the test needs no build; prints "E <n> <id>" once alert n is in the spool.
const CHILD = `
${TS_REQUIRE_HOOK}
const fs = require('fs');
const { createHubClient } = require(${JSON.stringify(path.join(REPO, 'agent', 'src', 'hub', 'client.ts'))});
const args = JSON.parse(process.argv[1]);
const r = createHubClient({ config: args.config, stateDirectory: args.state, requestReload: () => ({ files: 0, policies: 0, rules: 0, errors: [], warnings: [] }), env: {} });
if (!r.ok) { console.error(JSON.stringify(r.error)); process.exit(3); }
const client = r.value;
client.start();
let n = args.base;
const end = args.base + args.count;
const say = (s) => {
  const b = Buffer.from(s + '\\n');
  // stdout is a non-blocking pipe: wait out EAGAIN rather than die of it
  for (let off = 0; off < b.length; ) {
    try { off += fs.writeSync(1, b, off); } catch (e) { if (e.code !== 'EAGAIN') throw e; }
  }
};
say('READY');
const tick = () => {
  for (let i = 0; i < args.perTick && n < end; i++, n++) {
    const a = { Timestamp: 0, HostName: 'n1', PID: n, Message: 'm-' + n, PolicyName: 'p', Action: 'Block', Result: 'Permission denied' };
    const e = client.enqueueAlert(a);
    if (!e.ok) { say('X ' + n + ' ' + e.error.code); continue; }
    say('E ' + n + ' ' + e.value.id);
  }
  if (n < end) setTimeout(tick, args.intervalMs);
  else {
    say('DONE');
    const drained = () => client.status().spool.alerts.pending === 0 ? say('DRAINED') : setTimeout(drained, 20);
    drained();
  }
};
tick();
process.on('SIGTERM', () => client.stop().then(() => process.exit(0)));
`;

interface Child {
  proc: ChildProcess;
  enqueued: () => number[];
  lines: () => string[];
  exited: Promise<number | null>;
}

function runChild(args: Record<string, unknown>): Child {
  const proc = spawn(process.execPath, ['-e', CHILD, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let errText = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (errText += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  void exited.then((code) => {
    if (code !== null && code !== 0) process.stderr.write(`hub child exited ${code}: ${errText}\n`);
  });
  const lines = () => out.split('\n').filter(Boolean);
  return {
    proc,
    lines,
    enqueued: () => lines().filter((l) => l.startsWith('E ')).map((l) => Number(l.split(' ')[1])),
    exited,
  };
}

async function kill(child: Child): Promise<void> {
  child.proc.kill('SIGKILL');
  await child.exited;
}

describe('alerts to the hub through outages and crashes (real mosquitto)', () => {
  let broker: Broker;
  let hub: HubService;
  let hubConfig: HubServiceConfig;
  let work: string;
  let publicKeyFile: string;
  const passwords: Record<string, string> = {};

  function nodeConfig(name: string, overrides: Record<string, unknown> = {}): HubConfig {
    const pw = path.join(work, `${name}.password`);
    fs.writeFileSync(pw, passwords[name], { mode: 0o600 });
    const c = parseHubConfig({
      url: broker.passwordUrl,
      topicPrefix: PREFIX,
      organization: ORG,
      nodeId: name,
      tls: { ca: broker.ca },
      passwordFile: pw,
      policyPublicKeys: [publicKeyFile],
      reconnect: { initialDelayMs: 100, maxDelayMs: 400, multiplier: 2, resetAfterMs: 1000 },
      ackTimeoutMs: 1000,
      batch: { maxRecords: 50 },
      ...overrides,
    });
    if (!c.ok) throw new Error(c.error.map((e) => e.message).join('; '));
    return c.value;
  }

  /** the alerts the hub stored for a node, in the order it stored them */
  const storedFor = (node: string): StoredAlert[] => hub.store.alertsAfter(0, 1_000_000, { org: ORG, node });
  const messageNumbers = (rows: StoredAlert[]) => rows.map((r) => Number(String(r.alert.Message).slice(2)));

  function expectContiguousInOrder(rows: StoredAlert[], ranges: Array<[number, number]>) {
    const got = messageNumbers(rows);
    // stored in order: seqs and message numbers only grow
    for (let i = 1; i < rows.length; i++) {
      expect(rows[i].seq).toBeGreaterThan(rows[i - 1].seq);
      expect(got[i]).toBeGreaterThan(got[i - 1]);
    }
    // nothing lost, nothing twice: exactly the ranges (a range may end later than
    // the child reported, when it was killed between spooling and printing)
    const want: number[] = [];
    let at = 0;
    for (const [from, minTo] of ranges) {
      let to = minTo;
      while (got.includes(to + 1)) to++;
      for (let n = from; n <= to; n++) want.push(n);
      at += to - from + 1;
    }
    expect(got).toEqual(want);
    expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
    return at;
  }

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-hubalerts-'));
    const fleet = ['n1', 'n2', 'n3', 'n4', 'n5'].map((node) => ({ org: ORG, node, groups: [] }));
    for (const n of [...fleet.map((f) => f.node), 'hub-1']) passwords[n] = crypto.randomBytes(12).toString('hex');
    broker = await startMosquitto({
      users: [{ username: 'hub-1', password: passwords['hub-1'] }, ...fleet.map((f) => ({ username: `${f.node}@${ORG}`, password: passwords[f.node] }))],
      acl: renderAcl({ prefix: PREFIX, hubUsers: ['hub-1'], nodes: fleet }),
    });
    const pair = generateSigningKeyPair();
    publicKeyFile = path.join(work, 'signing.pub');
    fs.writeFileSync(publicKeyFile, pair.publicKeyPem);
    const hubPw = path.join(work, 'hub.password');
    fs.writeFileSync(hubPw, passwords['hub-1'], { mode: 0o600 });
    const cfg = parseHubServiceConfig(
      {
        broker: { url: broker.passwordUrl, username: 'hub-1', passwordFile: hubPw, tls: { ca: broker.ca } },
        topicPrefix: PREFIX,
        database: path.join(work, 'hub', 'hub.db'),
        reconnect: { initialDelayMs: 100, maxDelayMs: 400 },
      },
      'test',
    );
    if (!cfg.ok) throw new Error(cfg.error.map((e) => e.message).join('; '));
    hubConfig = cfg.value;
    const h = HubService.create(cfg.value, { controlSocket: false });
    if (!h.ok) throw new Error(h.error.map((e) => e.message).join('; '));
    hub = h.value;
    const s = await hub.start();
    if (!s.ok) throw new Error(s.error.message);
    await waitFor('the hub to connect', () => (hub.isConnected() ? true : undefined), 10_000);
  }, 60_000);

  afterAll(async () => {
    await hub?.stop();
    await broker?.stop();
  });

  test('alerts arrive in order and leave the spool once the hub acknowledged them', async () => {
    const child = runChild({ config: nodeConfig('n1'), state: path.join(work, 'state-n1'), base: 0, count: 500, perTick: 50, intervalMs: 5 });
    await waitFor('the spool to drain', () => (child.lines().includes('DRAINED') ? true : undefined), 30_000);
    await waitFor('all 500 at the hub', () => (storedFor('n1').length >= 500 ? true : undefined), 10_000);
    expectContiguousInOrder(storedFor('n1'), [[0, 499]]);
    child.proc.kill('SIGTERM');
    await child.exited;
    // the node told the hub it went away on purpose
    await waitFor('n1 offline at the hub', () => (hub.store.nodes().find((r) => r.node === 'n1')?.state === 'offline' ? true : undefined));
  });

  test('broker SIGKILLed while alerts are produced, node SIGKILLed and restarted during the outage: all arrive, once, in order', async () => {
    const state = path.join(work, 'state-n2');
    const config = nodeConfig('n2');
    const first = runChild({ config, state, base: 0, count: 400, perTick: 5, intervalMs: 10 });
    await waitFor('some alerts at the hub', () => (storedFor('n2').length >= 50 ? true : undefined), 20_000);
    await broker.kill();
    const atKill = storedFor('n2').length;
    // alerts keep coming while the broker is gone
    await waitFor('more alerts spooled during the outage', () => (first.enqueued().length >= atKill + 100 ? true : undefined), 20_000);
    await kill(first);
    const firstMax = Math.max(...first.enqueued());
    // the agent comes back (still no broker) and raises more alerts
    const second = runChild({ config, state, base: 1_000_000, count: 100, perTick: 10, intervalMs: 5 });
    await waitFor('the restarted node to spool its alerts', () => (second.lines().includes('DONE') ? true : undefined), 20_000);
    expect(storedFor('n2').length).toBe(atKill); // nothing could have arrived
    await broker.restart();
    await waitFor('everything at the hub', () => (second.lines().includes('DRAINED') ? true : undefined), 30_000);
    const rows = storedFor('n2');
    const total = expectContiguousInOrder(rows, [
      [0, firstMax],
      [1_000_000, 1_000_099],
    ]);
    expect(total).toBe(rows.length);
    // one spool across both processes: one epoch, seqs strictly growing
    expect(new Set(rows.map((r) => r.epoch)).size).toBe(1);
    second.proc.kill('SIGTERM');
    await second.exited;
  }, 120_000);

  test('node SIGKILLed while sending (broker up) and restarted: nothing lost, duplicates dropped by id', async () => {
    const state = path.join(work, 'state-n3');
    const config = nodeConfig('n3');
    const first = runChild({ config, state, base: 0, count: 3000, perTick: 100, intervalMs: 1 });
    await waitFor('sending under way', () => (storedFor('n3').length >= 300 ? true : undefined), 20_000);
    await kill(first);
    const firstMax = Math.max(...first.enqueued());
    expect(firstMax).toBeGreaterThan(300);
    const second = runChild({ config, state, base: 1_000_000, count: 10, perTick: 10, intervalMs: 1 });
    await waitFor('the spool to drain', () => (second.lines().includes('DRAINED') ? true : undefined), 30_000);
    const rows = storedFor('n3');
    expectContiguousInOrder(rows, [
      [0, firstMax],
      [1_000_000, 1_000_009],
    ]);
    second.proc.kill('SIGTERM');
    await second.exited;
  }, 120_000);

  test('spool full: telemetry is dropped first, alerts last, and the hub learns the counts', async () => {
    const state = path.join(work, 'state-n4');
    const small = { spool: { maxBytes: 64 * 1024, segmentBytes: 8192, maxRecordBytes: 4096, fsync: 'never' } };
    // offline (nothing listens on port 1): everything stays in the spool
    const offline = createHubClient({ config: nodeConfig('n4', { ...small, url: 'mqtts://127.0.0.1:1' }), stateDirectory: state, requestReload: () => ({ files: 0, policies: 0, rules: 0, errors: [], warnings: [] }), env: {} });
    if (!offline.ok) throw new Error(offline.error.map((e) => e.message).join('; '));
    const c = offline.value;
    const pad = 'x'.repeat(400);
    let telemetry = 0;
    for (let i = 0; i < 60; i++) if (c.enqueueTelemetry({ i, pad }).ok) telemetry++;
    expect(telemetry).toBe(60);
    const accepted: number[] = [];
    let refused = 0;
    for (let i = 0; i < 200; i++) {
      const r = c.enqueueAlert({ Message: `m-${i}`, pad } as never);
      if (r.ok) accepted.push(i);
      else {
        expect(r.error.code).toBe('spool-full');
        refused++;
      }
    }
    const st = c.status().spool;
    expect(st.telemetry.dropped.full).toBe(60); // all telemetry went before any alert
    expect(st.telemetry.pending).toBe(0);
    expect(refused).toBeGreaterThan(0);
    expect(st.alerts.dropped.full).toBe(refused);
    // the oldest alerts were kept
    expect(accepted).toEqual(Array.from({ length: accepted.length }, (_, i) => i));
    await c.stop();

    // back online: the kept alerts arrive and the drops are reported
    const online = createHubClient({ config: nodeConfig('n4', small), stateDirectory: state, requestReload: () => ({ files: 0, policies: 0, rules: 0, errors: [], warnings: [] }), env: {} });
    if (!online.ok) throw new Error(online.error.map((e) => e.message).join('; '));
    online.value.start();
    await waitFor('the kept alerts at the hub', () => (storedFor('n4').length === accepted.length ? true : undefined), 20_000);
    expect(messageNumbers(storedFor('n4'))).toEqual(accepted);
    const row = await waitFor('drop counts at the hub', () => {
      const r = hub.store.nodes().find((x) => x.node === 'n4');
      return r && r.dropped.alerts.full === refused ? r : undefined;
    });
    expect(row.dropped.telemetry.full).toBe(60);
    await online.value.stop();
  }, 60_000);

  test('hub down: alerts wait in the spool; the hub coming back gets them at once, not after the (grown) ack timeout', async () => {
    const c = createHubClient({
      config: nodeConfig('n5', { ackTimeoutMs: 30_000 }),
      stateDirectory: path.join(work, 'state-n5'),
      requestReload: () => ({ files: 0, policies: 0, rules: 0, errors: [], warnings: [] }),
      env: {},
    });
    if (!c.ok) throw new Error(c.error.map((e) => e.message).join('; '));
    const client = c.value;
    client.start();
    await waitFor('n5 to connect', () => (client.status().connected ? true : undefined), 10_000);
    await hub.stop();
    for (let i = 0; i < 50; i++) expect(client.enqueueAlert({ Message: `m-${i}` } as never).ok).toBe(true);
    // the broker took them (no subscriber), but nobody stored them: they stay
    await new Promise((r) => setTimeout(r, 1000));
    expect(client.status().spool.alerts.pending).toBe(50);
    const h = HubService.create(hubConfig, { controlSocket: false });
    if (!h.ok) throw new Error(h.error.map((e) => e.message).join('; '));
    hub = h.value;
    const back = Date.now();
    await hub.start();
    await waitFor('all 50 at the restarted hub', () => (storedFor('n5').length === 50 ? true : undefined), 10_000);
    expect(Date.now() - back).toBeLessThan(10_000); // far below the 30 s ack timeout
    expectContiguousInOrder(storedFor('n5'), [[0, 49]]);
    await waitFor('the spool to empty', () => (client.status().spool.alerts.pending === 0 ? true : undefined), 10_000);
    await client.stop();
  }, 60_000);
});
