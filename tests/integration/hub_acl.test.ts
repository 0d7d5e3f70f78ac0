// The shipped mosquitto template and rendered ACL, enforced by a real
// mosquitto: a node reads only its own and its groups' desired topics and
// writes only its own reported/alerts/telemetry/status; credentials and
// client ids cannot be borrowed.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { renderAcl } from '../../agent/src/hub/acl';
import { MqttClientLike, MqttConnectOptions, mqtt } from '../../agent/src/hub/mqtt_types';
import { groupDesiredTopic, nodeTopics } from '../../agent/src/hub/topics';
import { Broker, startMosquitto } from '../helpers/mosquitto';
import { REPO } from '../helpers/system';

const ORG = 'acme';
const PREFIX = 'ew';

interface Conn {
  client: MqttClientLike;
  received: Array<{ topic: string; payload: string }>;
}

describe('broker ACLs and authentication (real mosquitto, TLS)', () => {
  let broker: Broker;
  let ca: Buffer;
  const pw: Record<string, string> = {};
  const open: MqttClientLike[] = [];
  const t1 = nodeTopics(PREFIX, ORG, 'n1');
  const t2 = nodeTopics(PREFIX, ORG, 'n2');

  function connect(url: string, opts: Partial<MqttConnectOptions>): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const client = mqtt.connect(url, {
        protocolVersion: 5,
        clientId: opts.username ?? `c-${crypto.randomBytes(4).toString('hex')}`,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: 5000,
        keepalive: 30,
        ca,
        rejectUnauthorized: true,
        ...opts,
      });
      open.push(client);
      const conn: Conn = { client, received: [] };
      client.on('message', (topic, payload) => conn.received.push({ topic, payload: payload.toString() }));
      client.on('connect', () => resolve(conn));
      client.on('error', (e) => reject(e));
      client.on('close', () => reject(new Error('closed before connect')));
    });
  }

  const asNode = (node: string) => connect(broker.passwordUrl, { username: `${node}@${ORG}`, password: pw[node] });
  const asHub = () => connect(broker.passwordUrl, { username: 'hub-1', password: pw['hub-1'] });

  function publish(c: Conn, topic: string, payload: string, retain = false): Promise<number> {
    return new Promise((resolve) => c.client.publish(topic, payload, { qos: 1, retain }, (e) => resolve(e ? (e.code ?? -1) : 0)));
  }

  function subscribe(c: Conn, filter: string): Promise<number> {
    return new Promise((resolve, reject) => c.client.subscribe({ [filter]: { qos: 1 } }, (e, granted) => (e ? reject(e) : resolve(granted![0].qos))));
  }

  const settle = () => new Promise((r) => setTimeout(r, 400));

  beforeAll(async () => {
    for (const n of ['n1', 'n2', 'n3', 'hub-1']) pw[n] = crypto.randomBytes(12).toString('hex');
    const fleet = [
      { org: ORG, node: 'n1', groups: ['cams'] },
      { org: ORG, node: 'n2', groups: ['doors'] },
      { org: ORG, node: 'n3', groups: [] },
    ];
    broker = await startMosquitto({
      users: [
        { username: 'hub-1', password: pw['hub-1'] },
        { username: `n1@${ORG}`, password: pw.n1, cert: true },
        { username: `n2@${ORG}`, password: pw.n2, cert: true },
        { username: `n3@${ORG}`, password: pw.n3 },
      ],
      acl: renderAcl({ prefix: PREFIX, hubUsers: ['hub-1'], nodes: fleet }),
    });
    ca = fs.readFileSync(broker.ca);
    // retained desired state for both nodes and both groups
    const hub = await asHub();
    for (const t of [t1.desired, t2.desired, groupDesiredTopic(PREFIX, ORG, 'cams'), groupDesiredTopic(PREFIX, ORG, 'doors')]) {
      expect(await publish(hub, t, `retained:${t}`, true)).toBe(0);
    }
  }, 60_000);

  afterAll(async () => {
    for (const c of open) c.end(true);
    await broker?.stop();
  });

  test('a node reads its own and its groups\' desired policy, not another node\'s or another group\'s', async () => {
    const n1 = await asNode('n1');
    for (const f of [t1.desired, groupDesiredTopic(PREFIX, ORG, 'cams'), t2.desired, groupDesiredTopic(PREFIX, ORG, 'doors'), `${PREFIX}/#`]) await subscribe(n1, f);
    await settle();
    const topics = [...new Set(n1.received.map((m) => m.topic))].sort();
    expect(topics).toEqual([groupDesiredTopic(PREFIX, ORG, 'cams'), t1.desired].sort());
    // and a live (non-retained) message to n2 does not reach n1 either
    const hub = await asHub();
    await publish(hub, t2.desired, 'live');
    await settle();
    expect(n1.received.filter((m) => m.topic === t2.desired)).toEqual([]);
  });

  test('a node cannot publish to another node\'s desired or its own desired, nor to a group', async () => {
    const n2 = await asNode('n2');
    const n1 = await asNode('n1');
    await subscribe(n1, t1.desired);
    await settle();
    n1.received.length = 0;
    expect(await publish(n2, t1.desired, 'forged', true)).toBe(135); // Not authorized
    expect(await publish(n1, t1.desired, 'self-granted', true)).toBe(135);
    expect(await publish(n2, groupDesiredTopic(PREFIX, ORG, 'cams'), 'forged')).toBe(135);
    await settle();
    expect(n1.received).toEqual([]);
    // the retained desired state is untouched
    const fresh = await asNode('n1');
    await subscribe(fresh, t1.desired);
    await settle();
    expect(fresh.received.map((m) => m.payload)).toEqual([`retained:${t1.desired}`]);
  });

  test('a node writes only its own reported, alerts, telemetry and status', async () => {
    const n2 = await asNode('n2');
    const hub = await asHub();
    for (const f of [t1.reported, t1.alerts, t1.telemetry, t1.status, t2.alerts]) await subscribe(hub, f);
    for (const t of [t1.reported, t1.alerts, t1.telemetry, t1.status, t1.ack]) expect(await publish(n2, t, 'impersonation')).toBe(135);
    expect(await publish(n2, t2.alerts, 'own')).toBe(0);
    await settle();
    expect(hub.received).toEqual([{ topic: t2.alerts, payload: 'own' }]);
  });

  test('a node cannot read another node\'s acknowledgements, alerts or reported state', async () => {
    const n2 = await asNode('n2');
    for (const f of [t1.ack, t1.alerts, t1.reported, `${PREFIX}/${ORG}/nodes/+/alerts`]) await subscribe(n2, f);
    const hub = await asHub();
    const n1 = await asNode('n1');
    await publish(hub, t1.ack, 'ack-for-n1');
    await publish(n1, t1.alerts, 'n1-alert');
    await publish(n1, t1.reported, 'n1-reported');
    await settle();
    expect(n2.received).toEqual([]);
  });

  test('the client certificate is the identity: a node with a certificate cannot claim another user name', async () => {
    // mTLS listener: the CN replaces whatever user name is sent
    const n1 = await connect(broker.mtlsUrl, { ...readCert(broker.certFor(`n1@${ORG}`)), username: `n2@${ORG}` });
    await subscribe(n1, t2.desired);
    await subscribe(n1, t1.desired);
    await settle();
    expect(n1.received.map((m) => m.topic)).toEqual([t1.desired]);
  });

  test('a node cannot take over another node\'s session by reusing its client id', async () => {
    const n1 = await asNode('n1');
    let closed = false;
    n1.client.on('close', () => (closed = true));
    await connect(broker.passwordUrl, { username: `n3@${ORG}`, password: pw.n3, clientId: `n1@${ORG}` });
    await settle();
    expect(closed).toBe(false);
    expect(n1.client.connected).toBe(true);
  });

  test('no anonymous clients, no wrong passwords, no certificates from another CA, no plain TCP', async () => {
    await expect(connect(broker.passwordUrl, {})).rejects.toThrow(/Not authorized|closed/);
    await expect(connect(broker.passwordUrl, { username: `n1@${ORG}`, password: 'wrong' })).rejects.toThrow(/Not authorized|Bad user name/i);
    await expect(connect(broker.mtlsUrl, { username: `n1@${ORG}`, password: pw.n1 })).rejects.toThrow(); // no certificate
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-otherca-'));
    for (const args of [['ca'], ['client', 'rogue', `n1@${ORG}`]]) {
      const r = spawnSync('bash', [path.join(REPO, 'scripts', 'hub-certs.sh'), other, ...args], { encoding: 'utf8' });
      expect(r.status).toBe(0);
    }
    await expect(connect(broker.mtlsUrl, readCert({ cert: path.join(other, 'rogue.crt'), key: path.join(other, 'rogue.key') }))).rejects.toThrow();
    await expect(connect(broker.mtlsUrl.replace('mqtts:', 'mqtt:'), { username: `n1@${ORG}`, password: pw.n1 })).rejects.toThrow();
  });
});

function readCert(files: { cert: string; key: string }): { cert: Buffer; key: Buffer } {
  return { cert: fs.readFileSync(files.cert), key: fs.readFileSync(files.key) };
}
