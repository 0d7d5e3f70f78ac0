// End to end on the real kernel: `edgeward agent` (compat backend) with a
// `hub:` section in its config file, a hub service and a real mosquitto. A
// push makes a program really fail with EPERM, the version in force is
// reported, the alert reaches the hub, a forged bundle changes nothing, and
// after a SIGKILL the node enforces from disk with no broker reachable.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as yaml from 'js-yaml';
import { renderAcl } from '../../agent/src/hub/acl';
import { generateSigningKeyPair, keyIdOf, signBundle } from '../../agent/src/hub/bundle';
import { parseHubServiceConfig } from '../../agent/src/hub/hub_config';
import { mqtt, MqttClientLike } from '../../agent/src/hub/mqtt_types';
import { HubService } from '../../agent/src/hub/service';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { Broker, startMosquitto } from '../helpers/mosquitto';
import { ADDON, BUSYBOX, busyboxCopy, run, waitFor } from '../helpers/system';
import { hostProcessPolicy } from '../helpers/policies';

const ORG = 'acme';
const PREFIX = 'ew';

/** Writes the agent's config file (the hub section as an operator writes it) and starts `edgeward agent`. */
async function startAgentWithHub(work: string, hub: Record<string, unknown>, name: string): Promise<AgentUnderTest> {
  const config = {
    backend: 'compat',
    stateDirectory: path.join(work, 'state'),
    policyDirectory: path.join(work, 'local-policies'),
    alerts: { stdout: false },
    hub,
  };
  fs.mkdirSync(config.policyDirectory, { recursive: true });
  const file = path.join(work, `${name}.yaml`);
  fs.writeFileSync(file, yaml.dump(config));
  const runDir = path.join(work, name);
  fs.mkdirSync(runDir, { recursive: true });
  return startAgent({ policies: config.policyDirectory, workDir: runDir, extraArgs: ['--config', file], readyTimeoutMs: 60_000 });
}

describe('hub push enforced by a real agent (compat backend, real kernel, real mosquitto)', () => {
  let broker: Broker;
  let hub: HubService;
  let work: string;
  let blocked: string;
  let agent: AgentUnderTest | undefined;
  let nodeCfg: Record<string, unknown>;
  let raw: MqttClientLike | undefined;
  let signingPem: string;
  const pw: Record<string, string> = {};

  const reported = () => hub.store.nodes().find((n) => n.node === 'n1')?.reported;
  const nodeScope = () => reported()?.scopes.find((s) => s.scope === 'node');

  beforeAll(async () => {
    const problems: string[] = [];
    if (process.getuid?.() !== 0) problems.push('must run as root');
    if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
    if (!fs.existsSync(BUSYBOX)) problems.push(`${BUSYBOX} missing: run scripts/install-deps.sh`);
    if (problems.length) throw new Error(`hub agent test cannot run: ${problems.join('; ')}`);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-hubagent-'));
    blocked = busyboxCopy(work, 'hub-blocked');
    for (const u of ['n1', 'hub-1', 'hub-2']) pw[u] = crypto.randomBytes(12).toString('hex');
    broker = await startMosquitto({
      users: [
        { username: 'hub-1', password: pw['hub-1'] },
        { username: 'hub-2', password: pw['hub-2'] },
        { username: `n1@${ORG}`, password: pw.n1 },
      ],
      acl: renderAcl({ prefix: PREFIX, hubUsers: ['hub-1', 'hub-2'], nodes: [{ org: ORG, node: 'n1', groups: [] }] }),
    });
    const pair = generateSigningKeyPair();
    signingPem = pair.privateKeyPem;
    fs.writeFileSync(path.join(work, 'signing.key'), pair.privateKeyPem, { mode: 0o600 });
    fs.writeFileSync(path.join(work, 'signing.pub'), pair.publicKeyPem);
    fs.writeFileSync(path.join(work, 'hub.pw'), pw['hub-1'], { mode: 0o600 });
    fs.writeFileSync(path.join(work, 'n1.pw'), pw.n1, { mode: 0o600 });
    const cfg = parseHubServiceConfig(
      {
        broker: { url: broker.passwordUrl, username: 'hub-1', passwordFile: path.join(work, 'hub.pw'), tls: { ca: broker.ca } },
        topicPrefix: PREFIX,
        database: path.join(work, 'hub', 'hub.db'),
        signingKey: path.join(work, 'signing.key'),
        reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
      },
      'test',
    );
    if (!cfg.ok) throw new Error(cfg.error.map((e) => e.message).join('; '));
    const h = HubService.create(cfg.value, { controlSocket: false });
    if (!h.ok) throw new Error(h.error.map((e) => e.message).join('; '));
    hub = h.value;
    await hub.start();
    await waitFor('the hub to connect', () => (hub.isConnected() ? true : undefined), 10_000);
    nodeCfg = {
      url: broker.passwordUrl,
      topicPrefix: PREFIX,
      organization: ORG,
      nodeId: 'n1',
      tls: { ca: broker.ca },
      passwordFile: path.join(work, 'n1.pw'),
      policyPublicKeys: [path.join(work, 'signing.pub')],
      reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
      ackTimeoutMs: 1000,
    };
    agent = await startAgentWithHub(work, nodeCfg, 'agent-1');
    await waitFor('the node online at the hub', () => (hub.store.nodes().find((x) => x.node === 'n1')?.state === 'online' ? true : undefined), 20_000);
  }, 120_000);

  afterAll(async () => {
    raw?.end(true);
    await agent?.stop();
    await hub?.stop();
    await broker?.stop();
  });

  test('before any push the program runs', () => {
    expect(run(blocked, ['true']).status).toBe(0);
  });

  test('push -> enforced (EPERM) and reported as the version in force, the alert reaches the hub with the node identity', async () => {
    const pushed = await hub.push(ORG, { scope: 'node', name: 'n1' }, [{ name: 'block.yaml', yaml: hostProcessPolicy('hub-block', [blocked], { severity: 8 }) }]);
    if (!pushed.ok) throw new Error(pushed.error.message);
    await waitFor('n1 to report the version enforced', () => {
      const d = reported()?.documents.find((x) => x.policy === 'KubeArmorHostPolicy/hub-block');
      return nodeScope()?.inForce?.version === pushed.value.version && d?.status === 'enforced' ? true : undefined;
    }, 20_000);
    expect(reported()?.agent?.rules).toBeGreaterThan(0);
    expect(run(blocked, ['true']).spawnError).toBe('EPERM');
    const alert = await waitFor('the alert at the hub', () => hub.store.alertsAfter(0, 1000, { node: 'n1' }).find((a) => a.alert.Resource === blocked), 20_000);
    expect(alert).toMatchObject({ org: ORG, node: 'n1', alert: { PolicyName: 'hub-block', Action: 'Block', Result: 'Permission denied', Operation: 'Process' } });
  });

  test('a forged bundle is refused and reported; the block stays', async () => {
    raw = mqtt.connect(broker.passwordUrl, {
      protocolVersion: 5,
      clientId: 'hub-2',
      username: 'hub-2',
      password: pw['hub-2'],
      ca: fs.readFileSync(broker.ca),
      rejectUnauthorized: true,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      keepalive: 30,
    });
    await new Promise<void>((resolve, reject) => {
      raw!.on('connect', () => resolve());
      raw!.on('error', reject);
    });
    const other = generateSigningKeyPair();
    const inForce = nodeScope()!.inForce!.version;
    const forged = JSON.parse(
      signBundle({ org: ORG, target: { scope: 'node', name: 'n1' }, version: inForce + 1, documents: [] }, { keyId: other.keyId, key: crypto.createPrivateKey(other.privateKeyPem) }).toString(),
    );
    forged.keyId = keyIdOf(crypto.createPublicKey(signingPem)); // claims the pinned key
    await new Promise<void>((resolve, reject) =>
      raw!.publish(`${PREFIX}/${ORG}/nodes/n1/policy/desired`, Buffer.from(JSON.stringify(forged)), { qos: 1, retain: true }, (e) => (e ? reject(e) : resolve())),
    );
    await waitFor('the refusal reported', () => (nodeScope()?.refused?.code === 'bad-signature' ? true : undefined), 20_000);
    expect(nodeScope()?.inForce?.version).toBe(inForce);
    expect(run(blocked, ['true']).spawnError).toBe('EPERM');
  });

  test('agent SIGKILLed, restarted with no broker reachable: the last good policy is enforced from disk; its alerts arrive later', async () => {
    agent!.child.kill('SIGKILL');
    await agent!.stop();
    const offline = await startAgentWithHub(work, { ...nodeCfg, url: 'mqtts://127.0.0.1:1' }, 'agent-offline');
    agent = offline;
    expect(run(blocked, ['true']).spawnError).toBe('EPERM');
    // the local alert log has it too, with the hub's policy name
    await waitFor('the offline alert in the local log', () => offline.alerts().find((a) => a.Resource === blocked && a.PolicyName === 'hub-block'), 10_000);
    const before = hub.store.alertsAfter(0, 1000, { node: 'n1' }).length;
    // give the agent a moment to spool the alert of that exec, then stop it cleanly
    await new Promise((r) => setTimeout(r, 1000));
    expect(await offline.stop()).toBe(0);
    expect(hub.store.alertsAfter(0, 1000, { node: 'n1' }).length).toBe(before);
    // back online: the alert spooled while offline reaches the hub
    agent = await startAgentWithHub(work, nodeCfg, 'agent-2');
    await waitFor('the offline alert at the hub', () => (hub.store.alertsAfter(0, 1000, { node: 'n1' }).length > before ? true : undefined), 20_000);
    const rows = hub.store.alertsAfter(0, 1000, { node: 'n1' });
    expect(rows[rows.length - 1].alert).toMatchObject({ Resource: blocked, PolicyName: 'hub-block' });
  }, 120_000);

  test('a hub that cannot be set up (CA file missing) is reported; the local policies are still enforced', async () => {
    const dir = path.join(work, 'nohub');
    fs.mkdirSync(path.join(dir, 'local-policies'), { recursive: true });
    const local = busyboxCopy(work, 'local-blocked');
    fs.writeFileSync(path.join(dir, 'local-policies', 'local.yaml'), hostProcessPolicy('local-block', [local], { severity: 8 }));
    const a = await startAgentWithHub(dir, { ...nodeCfg, tls: { ca: path.join(dir, 'missing-ca.crt') } }, 'agent-nohub');
    try {
      expect(a.logs().some((l) => l.level === 'error' && /hub: .*missing-ca\.crt.*not syncing with the hub/.test(String(l.message)))).toBe(true);
      expect(run(local, ['true']).spawnError).toBe('EPERM');
    } finally {
      expect(await a.stop()).toBe(0);
    }
  }, 120_000);
});
