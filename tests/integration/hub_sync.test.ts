// Policy distribution through a real mosquitto (TLS, passwords, client
// certificates, the shipped ACL): hub service in this process, node clients
// in this process with a fake agent reload that loads the materialised
// directory with the agent's own loader.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { renderAcl } from '../../agent/src/hub/acl';
import { BundleDocument, BundleTarget, generateSigningKeyPair, signBundle, SigningKey } from '../../agent/src/hub/bundle';
import { BundleOutcome, createHubClient, HubClient, PolicyLoadReport } from '../../agent/src/hub/client';
import { HubConfig, parseHubConfig } from '../../agent/src/hub/options';
import { mqtt } from '../../agent/src/hub/mqtt_types';
import { HubService } from '../../agent/src/hub/service';
import { parseHubServiceConfig } from '../../agent/src/hub/hub_config';
import { loadPolicyDirectory } from '../../agent/src/policy/loader';
import { Broker, startMosquitto } from '../helpers/mosquitto';
import { waitFor } from '../helpers/system';
import { hostProcessPolicy } from '../helpers/policies';

const ORG = 'acme';
const PREFIX = 'ew';

interface Node {
  name: string;
  client: HubClient;
  state: string;
  outcomes: BundleOutcome[];
  reloads: number;
}

describe('hub policy sync over a real mosquitto', () => {
  let broker: Broker;
  let hub: HubService;
  let work: string;
  let signing: SigningKey;
  let publicKeyFile: string;
  const nodes = new Map<string, Node>();
  const passwords: Record<string, string> = {};
  let raw: ReturnType<typeof mqtt.connect> | undefined;

  const fleet = [
    { org: ORG, node: 'n1', groups: ['cams', 'all'] },
    { org: ORG, node: 'n2', groups: ['cams', 'all'] },
    { org: ORG, node: 'n3', groups: ['all'] },
  ];

  function nodeConfig(name: string, overrides: Partial<HubConfig> = {}): HubConfig {
    const member = fleet.find((f) => f.node === name)!;
    const viaCert = name === 'n1'; // n1 uses a client certificate, the others passwords
    const raw: Record<string, unknown> = {
      url: viaCert ? broker.mtlsUrl : broker.passwordUrl,
      topicPrefix: PREFIX,
      organization: ORG,
      nodeId: name,
      groups: member.groups,
      tls: viaCert ? { ca: broker.ca, ...broker.certFor(`${name}@${ORG}`) } : { ca: broker.ca },
      policyPublicKeys: [publicKeyFile],
      reconnect: { initialDelayMs: 100, maxDelayMs: 500, multiplier: 2, resetAfterMs: 1000 },
      ackTimeoutMs: 1000,
    };
    if (!viaCert) {
      const pw = path.join(work, `${name}.password`);
      fs.writeFileSync(pw, passwords[name] + '\n', { mode: 0o600 });
      raw.passwordFile = pw;
    }
    const c = parseHubConfig({ ...raw, ...overrides });
    if (!c.ok) throw new Error(c.error.map((e) => e.message).join('; '));
    return c.value;
  }

  function startNode(name: string): Node {
    const state = path.join(work, `state-${name}`);
    let client: HubClient | undefined;
    const node: Node = { name, client: undefined as unknown as HubClient, state, outcomes: [], reloads: 0 };
    const requestReload = (): PolicyLoadReport => {
      node.reloads++;
      const loaded = loadPolicyDirectory(client!.policyDirectory);
      return { files: fs.readdirSync(client!.policyDirectory).length, policies: loaded.policies.length, rules: loaded.policies.length, errors: loaded.errors.map((e) => `${e.file}: ${e.message}`), warnings: [] };
    };
    const r = createHubClient({ config: nodeConfig(name), stateDirectory: state, requestReload, env: {} });
    if (!r.ok) throw new Error(r.error.map((e) => e.message).join('; '));
    client = r.value;
    node.client = client;
    client.on('bundle', (o) => node.outcomes.push(o));
    client.start();
    nodes.set(name, node);
    return node;
  }

  const policiesOn = (n: Node) => Object.fromEntries(loadPolicyDirectory(n.client.policyDirectory).policies.map((p) => [p.name, p.spec.process?.matchPaths?.[0].path]));
  const reportedAtHub = (name: string) => hub.store.nodes().find((r) => r.node === name)?.reported;
  const scopeAtHub = (name: string, target: BundleTarget) => reportedAtHub(name)?.scopes.find((s) => s.scope === target.scope && s.name === target.name);

  async function push(target: BundleTarget, documents: BundleDocument[]): Promise<number> {
    const r = await hub.push(ORG, target, documents);
    if (!r.ok) throw new Error(r.error.message);
    return r.value.version;
  }

  async function publishRaw(target: BundleTarget, payload: Buffer): Promise<void> {
    const topic = `${PREFIX}/${ORG}/${target.scope === 'node' ? 'nodes' : 'groups'}/${target.name}/policy/desired`;
    await new Promise<void>((resolve, reject) => raw!.publish(topic, payload, { qos: 1, retain: true }, (e) => (e ? reject(e) : resolve())));
  }

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-hubsync-'));
    for (const n of fleet) passwords[n.node] = crypto.randomBytes(12).toString('hex');
    passwords['hub-1'] = crypto.randomBytes(12).toString('hex');
    passwords['hub-2'] = crypto.randomBytes(12).toString('hex');
    broker = await startMosquitto({
      users: [
        { username: 'hub-1', password: passwords['hub-1'] },
        { username: 'hub-2', password: passwords['hub-2'] },
        { username: `n1@${ORG}`, cert: true },
        { username: `n2@${ORG}`, password: passwords.n2 },
        { username: `n3@${ORG}`, password: passwords.n3 },
      ],
      acl: renderAcl({ prefix: PREFIX, hubUsers: ['hub-1', 'hub-2'], nodes: fleet }),
    });
    const pair = generateSigningKeyPair();
    signing = { keyId: pair.keyId, key: crypto.createPrivateKey(pair.privateKeyPem) };
    const keyFile = path.join(work, 'signing.key');
    fs.writeFileSync(keyFile, pair.privateKeyPem, { mode: 0o600 });
    publicKeyFile = path.join(work, 'signing.pub');
    fs.writeFileSync(publicKeyFile, pair.publicKeyPem);
    const hubPw = path.join(work, 'hub-1.password');
    fs.writeFileSync(hubPw, passwords['hub-1'], { mode: 0o600 });
    const cfg = parseHubServiceConfig(
      {
        broker: { url: broker.passwordUrl, username: 'hub-1', passwordFile: hubPw, tls: { ca: broker.ca } },
        topicPrefix: PREFIX,
        database: path.join(work, 'hub', 'hub.db'),
        signingKey: keyFile,
        reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
      },
      'test',
    );
    if (!cfg.ok) throw new Error(cfg.error.map((e) => e.message).join('; '));
    const h = HubService.create(cfg.value, { reconcileDelayMs: 200 });
    if (!h.ok) throw new Error(h.error.map((e) => e.message).join('; '));
    hub = h.value;
    const started = await hub.start();
    if (!started.ok) throw new Error(started.error.message);
    await waitFor('the hub to connect', () => (hub.isConnected() ? true : undefined), 10_000);
    // the policy loader compiles its schema on first use: not part of a push's latency
    loadPolicyDirectory(work);
    startNode('n1');
    startNode('n2');
    await waitFor('n1 and n2 to connect', () => (nodes.get('n1')!.client.status().connected && nodes.get('n2')!.client.status().connected ? true : undefined), 10_000);
    raw = mqtt.connect(broker.passwordUrl, {
      protocolVersion: 5,
      clientId: 'hub-2',
      username: 'hub-2',
      password: passwords['hub-2'],
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
  }, 60_000);

  afterAll(async () => {
    raw?.end(true);
    for (const n of nodes.values()) await n.client.stop();
    await hub?.stop();
    await broker?.stop();
  });

  test('a node push is verified, materialised, reloaded and reported back as the version in force', async () => {
    const n1 = nodes.get('n1')!;
    const version = await push({ scope: 'node', name: 'n1' }, [{ name: 'nc.yaml', yaml: hostProcessPolicy('block-nc', ['/usr/bin/nc.openbsd']) }]);
    const started = Date.now(); // published (PUBACK): from here the node's side
    await waitFor('n1 to report the version', () => (scopeAtHub('n1', { scope: 'node', name: 'n1' })?.inForce?.version === version ? true : undefined), 10_000);
    const elapsed = Date.now() - started;
    expect(policiesOn(n1)).toEqual({ 'block-nc': '/usr/bin/nc.openbsd' });
    expect(n1.outcomes.find((o) => o.outcome === 'applied' && o.version === version)?.load?.policies).toBe(1);
    const docs = reportedAtHub('n1')!.documents;
    expect(docs).toEqual([expect.objectContaining({ scope: 'node', scopeName: 'n1', version, policy: 'KubeArmorHostPolicy/block-nc', status: 'enforced', errors: [] })]);
    // the bar: within a second for a connected node (verify, store, materialise, reload, report)
    expect(elapsed).toBeLessThan(1000);
    // the other node was not concerned
    expect(policiesOn(nodes.get('n2')!)).toEqual({});
  });

  test('a group push reaches every member and only them; a member that was offline gets it when it connects', async () => {
    const version = await push({ scope: 'group', name: 'cams' }, [{ name: 'cams.yaml', yaml: hostProcessPolicy('cams-only', ['/usr/bin/cams-tool']) }]);
    const all = await push({ scope: 'group', name: 'all' }, [{ name: 'all.yaml', yaml: hostProcessPolicy('everyone', ['/usr/bin/everyone-tool']) }]);
    for (const n of ['n1', 'n2']) {
      await waitFor(`${n} to report group cams`, () => (scopeAtHub(n, { scope: 'group', name: 'cams' })?.inForce?.version === version ? true : undefined), 10_000);
      await waitFor(`${n} to report group all`, () => (scopeAtHub(n, { scope: 'group', name: 'all' })?.inForce?.version === all ? true : undefined), 10_000);
      expect(policiesOn(nodes.get(n)!)).toMatchObject({ 'cams-only': '/usr/bin/cams-tool', everyone: '/usr/bin/everyone-tool' });
    }
    // n3 was never connected: it gets the retained bundle of its group on connect, not cams'
    const n3 = startNode('n3');
    await waitFor('n3 to report group all', () => (scopeAtHub('n3', { scope: 'group', name: 'all' })?.inForce?.version === all ? true : undefined), 10_000);
    expect(policiesOn(n3)).toEqual({ everyone: '/usr/bin/everyone-tool' });
    expect(scopeAtHub('n3', { scope: 'group', name: 'cams' })).toBeUndefined();
  });

  test('a node-specific policy overrides the group policy of the same name on that node only', async () => {
    await push({ scope: 'group', name: 'cams' }, [{ name: 'cams.yaml', yaml: hostProcessPolicy('camera-guard', ['/usr/bin/from-group']) }]);
    const nodeVersion = await push({ scope: 'node', name: 'n1' }, [
      { name: 'nc.yaml', yaml: hostProcessPolicy('block-nc', ['/usr/bin/nc.openbsd']) },
      { name: 'guard.yaml', yaml: hostProcessPolicy('camera-guard', ['/usr/bin/from-node']) },
    ]);
    await waitFor('n1 to apply', () => (scopeAtHub('n1', { scope: 'node', name: 'n1' })?.inForce?.version === nodeVersion ? true : undefined), 10_000);
    await waitFor('n2 to apply the group policy', () => (policiesOn(nodes.get('n2')!)['camera-guard'] ? true : undefined), 10_000);
    await waitFor('n1 to materialise both', () => (policiesOn(nodes.get('n1')!)['camera-guard'] === '/usr/bin/from-node' ? true : undefined), 10_000);
    expect(policiesOn(nodes.get('n2')!)['camera-guard']).toBe('/usr/bin/from-group');
    await waitFor('the override in n1 reported', () =>
      reportedAtHub('n1')!.documents.find((d) => d.policy === 'KubeArmorHostPolicy/camera-guard' && d.status === 'overridden' && d.overriddenBy?.name === 'n1'),
    );
  });

  describe('bad bundles are refused, reported, and the previous policy stays', () => {
    const target: BundleTarget = { scope: 'node', name: 'n1' };
    let captured: Buffer; // a bundle that was in force once, for the replay
    let inForce: number;
    let filesBefore: string;
    const snapshot = () => {
      const dir = nodes.get('n1')!.client.policyDirectory;
      return fs.readdirSync(dir).sort().map((f) => f + ':' + crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, f))).digest('hex')).join('\n');
    };

    beforeAll(async () => {
      const hubRow = hub.store.desired(ORG, target)!;
      captured = hubRow.bundle; // the version in force now
      const next = await push(target, [
        { name: 'nc.yaml', yaml: hostProcessPolicy('block-nc', ['/usr/bin/nc.openbsd']) },
        { name: 'guard.yaml', yaml: hostProcessPolicy('camera-guard', ['/usr/bin/from-node']) },
        { name: 'extra.yaml', yaml: hostProcessPolicy('extra', ['/usr/bin/extra']) },
      ]);
      await waitFor('n1 to apply', () => (scopeAtHub('n1', target)?.inForce?.version === next ? true : undefined), 10_000);
      inForce = next;
      filesBefore = snapshot();
    });

    async function expectRefused(payload: Buffer, code: string, reason: RegExp) {
      const n1 = nodes.get('n1')!;
      const before = n1.outcomes.length;
      const reloads = n1.reloads;
      await publishRaw(target, payload);
      const outcome = await waitFor(`n1 to refuse (${code})`, () => n1.outcomes.slice(before).find((o) => o.outcome === 'refused'), 10_000);
      expect(outcome.error?.code).toBe(code);
      expect(outcome.error?.message).toMatch(reason);
      const reported = await waitFor(`the refusal (${code}) reported at the hub`, () => {
        const s = scopeAtHub('n1', target);
        return s?.refused?.code === code ? s : undefined;
      });
      expect(reported.inForce?.version).toBe(inForce);
      expect(reported.refused?.reason).toMatch(reason);
      // nothing changed on the node: same files, no reload, same version in force
      expect(snapshot()).toBe(filesBefore);
      expect(n1.reloads).toBe(reloads);
      expect(n1.client.status().scopes.find((s) => s.scope === 'node')?.inForce?.version).toBe(inForce);
    }

    const next = (documents: BundleDocument[] = [{ name: 'x.yaml', yaml: hostProcessPolicy('x', ['/usr/bin/x']) }], version = inForce + 1, t: BundleTarget = target, key = signing) =>
      signBundle({ org: ORG, target: t, version, documents }, key);

    test('forged signature', async () => {
      const other = generateSigningKeyPair();
      const forged = JSON.parse(next([], inForce + 1, target, { keyId: other.keyId, key: crypto.createPrivateKey(other.privateKeyPem) }).toString());
      forged.keyId = signing.keyId; // claims the pinned key
      await expectRefused(Buffer.from(JSON.stringify(forged)), 'bad-signature', /does not verify/);
    });

    test('unsigned', async () => {
      const env = JSON.parse(next().toString());
      delete env.signature;
      await expectRefused(Buffer.from(JSON.stringify(env)), 'unsigned', /no signature/);
    });

    test('replayed old version', async () => {
      await expectRefused(captured, 'replayed', /was in force before/);
    });

    test('downgraded version', async () => {
      await expectRefused(next(undefined, inForce - 5), 'downgrade', /older than version/);
    });

    test('same version, different content', async () => {
      await expectRefused(next(undefined, inForce), 'version-conflict', /content differs/);
    });

    test('truncated payload', async () => {
      const b = next();
      await expectRefused(b.subarray(0, Math.floor(b.length * 0.7)), 'malformed', /truncated/);
    });

    test('payload of 10 MB', async () => {
      await expectRefused(Buffer.alloc(10 * 1024 * 1024, 0x7b), 'too-large', /limit is/);
    });

    test('invalid YAML inside a valid signature', async () => {
      await expectRefused(next([{ name: 'bad.yaml', yaml: 'apiVersion: [unclosed\n' }]), 'invalid-policy', /bad\.yaml.*invalid YAML/);
    });

    test('a valid bundle of another node replayed onto this node', async () => {
      await expectRefused(next(undefined, inForce + 10, { scope: 'node', name: 'n2' }), 'wrong-target', /arrived on the topic of/);
    });

    test('a good bundle after the refusals applies and clears the refusal', async () => {
      const v = await push(target, [{ name: 'nc.yaml', yaml: hostProcessPolicy('block-nc', ['/usr/bin/nc.openbsd']) }]);
      const s = await waitFor('n1 to apply', () => {
        const x = scopeAtHub('n1', target);
        return x?.inForce?.version === v ? x : undefined;
      });
      expect(s.refused).toBeUndefined();
    });
  });

  test('a node restarted without any network enforces its last good policies from disk', async () => {
    const n2 = nodes.get('n2')!;
    const before = policiesOn(n2);
    await n2.client.stop();
    // a broker URL nothing listens on: only the disk can supply the policies
    const cfg = nodeConfig('n2', { url: 'mqtts://127.0.0.1:1' } as Partial<HubConfig>);
    // the agent's own load (e.g. at start) is what the first report describes
    let agentLoad: PolicyLoadReport | undefined;
    const again = createHubClient({
      config: cfg,
      stateDirectory: n2.state,
      requestReload: () => ({ files: 0, policies: 0, rules: 0, errors: [], warnings: [] }),
      currentLoad: () => agentLoad,
      env: {},
    });
    if (!again.ok) throw new Error(again.error.map((e) => e.message).join('; '));
    expect(again.value.restoreProblems).toEqual([]);
    const restored = Object.fromEntries(loadPolicyDirectory(again.value.policyDirectory).policies.map((p) => [p.name, p.spec.process?.matchPaths?.[0].path]));
    expect(restored).toEqual(before);
    expect(Object.keys(restored).length).toBeGreaterThan(0);
    expect(again.value.reportedState().documents.every((d) => d.status === 'unknown' || d.status === 'overridden')).toBe(true);
    const files = fs.readdirSync(again.value.policyDirectory).sort();
    agentLoad = { files: files.length, policies: files.length - 1, rules: 3, errors: [`${path.join(again.value.policyDirectory, files[0])}: policy "x": not supported here (policy refused)`], warnings: [] };
    const docs = again.value.reportedState().documents.filter((d) => d.file !== undefined);
    expect(docs.find((d) => d.file === files[0])).toMatchObject({ status: 'error', errors: [expect.stringMatching(/not supported here/)] });
    expect(docs.filter((d) => d.file !== files[0]).every((d) => d.status === 'enforced')).toBe(true);
    expect(again.value.reportedState().agent?.rules).toBe(3);
    await again.value.stop();
    nodes.delete('n2');
  });

  test('the broker SIGKILLed right after a push loses the retained bundle; the hub puts it back and a new node still gets it', async () => {
    const version = await push({ scope: 'group', name: 'all' }, [{ name: 'all.yaml', yaml: hostProcessPolicy('everyone-v2', ['/usr/bin/everyone-v2']) }]);
    await broker.kill(); // before mosquitto's autosave: the retained message is gone
    await broker.restart();
    await waitFor('the hub to reconnect', () => (hub.isConnected() ? true : undefined), 20_000);
    // a node installed now, with empty state
    const fresh = createHubClient({
      config: nodeConfig('n3'),
      stateDirectory: path.join(work, 'state-n3-fresh'),
      requestReload: () => ({ files: 0, policies: 0, rules: 0, errors: [], warnings: [] }),
      env: {},
    });
    if (!fresh.ok) throw new Error(fresh.error.map((e) => e.message).join('; '));
    for (const n of nodes.values()) if (n.name === 'n3') await n.client.stop();
    nodes.delete('n3');
    fresh.value.start();
    await waitFor('the new node to get the bundle', () => (fresh.value.status().scopes.find((s) => s.name === 'all')?.inForce?.version === version ? true : undefined), 20_000);
    expect(loadPolicyDirectory(fresh.value.policyDirectory).policies.map((p) => p.name)).toEqual(['everyone-v2']);
    await fresh.value.stop();
  });
});
