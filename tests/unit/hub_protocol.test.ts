import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { renderAcl } from '../../agent/src/hub/acl';
import { parseHubServiceConfig } from '../../agent/src/hub/hub_config';
import { parseHubConfig } from '../../agent/src/hub/options';
import { encodeBatch, encodeRecordBody, parseAck, parseBatch, parseNodeStatus, RecordBatch } from '../../agent/src/hub/protocol';
import { HubStore } from '../../agent/src/hub/store';

const EPOCH = 'a'.repeat(32);
const noDrops = { alerts: { full: 0, corrupt: 0, tooLarge: 0 }, telemetry: { full: 3, corrupt: 1, tooLarge: 0 } };

function batch(from: number, n: number, ids = (i: number) => `id-${i}`): RecordBatch {
  const records = Array.from({ length: n }, (_, i) => ({ seq: from + i, body: encodeRecordBody(ids(from + i), 1000 + i, { Message: `m-${from + i}` }) }));
  const r = parseBatch(encodeBatch('alerts', EPOCH, noDrops, records), 1 << 20);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

describe('hub protocol messages', () => {
  test('a batch built from spooled bodies parses back to the same records', () => {
    const b = batch(7, 3);
    expect(b).toMatchObject({ kind: 'alerts', epoch: EPOCH, from: 7, to: 9, dropped: noDrops });
    expect(b.records).toEqual([
      { seq: 7, id: 'id-7', t: 1000, data: { Message: 'm-7' } },
      { seq: 8, id: 'id-8', t: 1001, data: { Message: 'm-8' } },
      { seq: 9, id: 'id-9', t: 1002, data: { Message: 'm-9' } },
    ]);
  });

  test('batches from a misbehaving node are refused with a reason', () => {
    const good = JSON.parse(encodeBatch('alerts', EPOCH, noDrops, [{ seq: 1, body: encodeRecordBody('x', 1, {}) }]).toString());
    const bad = (mutate: (b: Record<string, unknown>) => void) => {
      const b = JSON.parse(JSON.stringify(good));
      mutate(b);
      return parseBatch(Buffer.from(JSON.stringify(b)), 1 << 20);
    };
    expect(bad(() => undefined).ok).toBe(true);
    expect(bad((b) => (b.epoch = '../x')).ok).toBe(false);
    expect(bad((b) => (b.records = [])).ok).toBe(false);
    expect(bad((b) => (b.from = 5)).ok).toBe(false); // record seq 1 outside 5..1
    expect(bad((b) => ((b.records as Array<Record<string, unknown>>)[0].id = 'y'.repeat(65))).ok).toBe(false);
    expect(bad((b) => delete b.dropped).ok).toBe(false);
    expect(bad((b) => (b.kind = 'commands')).ok).toBe(false);
    expect(parseBatch(Buffer.from('{'), 1 << 20).ok).toBe(false);
    expect(parseBatch(Buffer.alloc(100, 0x20), 10)).toEqual({ ok: false, error: expect.objectContaining({ code: 'too-large' }) });
    const twice = bad((b) => {
      const r = (b.records as unknown[])[0];
      b.records = [r, r];
      b.to = 1;
    });
    expect(twice.ok).toBe(false);
  });

  test('acks and statuses are checked', () => {
    expect(parseAck(Buffer.from(JSON.stringify({ format: 'edgeward.ack.v1', kind: 'alerts', epoch: EPOCH, from: 1, to: 5 }))).ok).toBe(true);
    expect(parseAck(Buffer.from(JSON.stringify({ format: 'edgeward.ack.v1', kind: 'alerts', epoch: EPOCH, from: 5, to: 1 }))).ok).toBe(false);
    expect(parseNodeStatus(Buffer.from(JSON.stringify({ format: 'edgeward.status.v1', state: 'sleeping', session: 's', at: 'x' }))).ok).toBe(false);
  });
});

describe('hub store', () => {
  const open = () => {
    const r = HubStore.open(path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-hubstore-')), 'hub.db'));
    if (!r.ok) throw new Error(r.error.message);
    return r.value;
  };

  test('alerts are stored once per id; duplicates are counted', () => {
    const s = open();
    expect(s.storeBatch('acme', 'n1', batch(1, 5))).toEqual({ ok: true, value: { inserted: 5, duplicates: 0 } });
    expect(s.storeBatch('acme', 'n1', batch(3, 5))).toEqual({ ok: true, value: { inserted: 2, duplicates: 3 } });
    const rows = s.alertsAfter(0, 100);
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(rows[0]).toMatchObject({ org: 'acme', node: 'n1', epoch: EPOCH, id: 'id-1', alert: { Message: 'm-1' } });
    const node = s.nodes()[0];
    expect(node).toMatchObject({ duplicates: 3, alerts: 7, dropped: noDrops });
    expect(s.alertsAfter(rows[4].n, 100).map((r) => r.seq)).toEqual([6, 7]);
    expect(s.alertsAfter(0, 100, { node: 'other' })).toEqual([]);
    s.close();
  });

  test('an alert id is unique per node: another node cannot suppress it by sending the id first', () => {
    const s = open();
    expect(s.storeBatch('acme', 'evil', batch(1, 2))).toEqual({ ok: true, value: { inserted: 2, duplicates: 0 } });
    expect(s.storeBatch('acme', 'n1', batch(1, 2))).toEqual({ ok: true, value: { inserted: 2, duplicates: 0 } });
    expect(s.alertsAfter(0, 10, { node: 'n1' })).toHaveLength(2);
    s.close();
  });

  test('an offline will of an older session does not override a newer online birth', () => {
    const s = open();
    const status = (state: 'online' | 'offline', session: string) => ({ format: 'edgeward.status.v1' as const, state, session, org: 'acme', node: 'n1', groups: [], at: new Date().toISOString() });
    s.recordStatus('acme', 'n1', status('online', 'new'));
    s.recordStatus('acme', 'n1', status('offline', 'old'));
    expect(s.nodes()[0].state).toBe('online');
    s.recordStatus('acme', 'n1', status('offline', 'new'));
    expect(s.nodes()[0].state).toBe('offline');
    s.close();
  });

  test('desired bundles only move forward', () => {
    const s = open();
    const row = (version: number) => ({ org: 'acme', target: { scope: 'group' as const, name: 'g' }, version, contentHash: `h${version}`, bundle: Buffer.from(`b${version}`), documents: ['a.yaml'], pushedAt: 'now' });
    s.recordDesired(row(5));
    s.recordDesired(row(3));
    expect(s.desired('acme', { scope: 'group', name: 'g' })?.version).toBe(5);
    s.recordDesired(row(6));
    expect(s.desired('acme', { scope: 'group', name: 'g' })).toMatchObject({ version: 6, contentHash: 'h6', bundle: Buffer.from('b6') });
    s.close();
  });
});

describe('configuration', () => {
  const base = { url: 'mqtts://hub:8883', tls: { ca: '/ca.crt' }, passwordFile: '/pw', policyPublicKeys: ['/k.pub'] };

  test('the node\'s hub section gets defaults', () => {
    const r = parseHubConfig(base);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value).toMatchObject({ topicPrefix: 'edgeward', groups: [], delivery: 'hub-ack', spool: { fsync: 'interval' }, reconnect: { initialDelayMs: 2000 } });
  });

  test('errors name the key', () => {
    const msgs = (raw: unknown) => {
      const r = parseHubConfig(raw);
      return r.ok ? [] : r.error.map((e) => e.message);
    };
    expect(msgs({ ...base, url: 'mqtt://plain:1883' })).toEqual([expect.stringMatching(/^hub\.url: has an invalid format/)]);
    expect(msgs({ ...base, spool: { maxBytes: 'big' } })).toEqual([expect.stringMatching(/^hub\.spool\.maxBytes: must be integer/)]);
    expect(msgs({ ...base, groups: ['a/b'] })).toEqual([expect.stringMatching(/^hub\.groups\[0\]: has an invalid format/)]);
    expect(msgs({ ...base, colour: 1 })).toEqual(['hub.colour: unknown key']);
    expect(msgs({ url: base.url, tls: base.tls, policyPublicKeys: base.policyPublicKeys })).toEqual([expect.stringMatching(/no credentials/)]);
    expect(msgs({ ...base, tls: { ca: '/ca', cert: '/c' } })).toEqual([expect.stringMatching(/cert and key go together/)]);
    expect(msgs({ ...base, spool: { maxBytes: 16384, segmentBytes: 8192, maxRecordBytes: 4096 } })).toEqual([expect.stringMatching(/4 \* segmentBytes/)]);
    expect(msgs({ ...base, policyPublicKeys: [] })[0]).toMatch(/^hub\.policyPublicKeys/);
  });

  test('the hub service config is checked too', () => {
    const r = parseHubServiceConfig({ broker: { url: 'mqtts://b:8884', username: 'hub-1', tls: { ca: '/ca' } }, database: '/db' }, 'hub.yaml');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error[0].message).toMatch(/hub\.yaml: broker: no credentials/);
    const good = parseHubServiceConfig({ broker: { url: 'mqtts://b:8884', username: 'hub-1', passwordFile: '/pw', tls: { ca: '/ca' } }, database: '/db', nodes: [{ org: 'a', node: 'n' }] }, 'hub.yaml');
    expect(good.ok && good.value).toMatchObject({ topicPrefix: 'edgeward', shareGroup: 'edgeward-hub', instance: 'hub-1', hubUsers: ['hub-1'], nodes: [{ org: 'a', node: 'n', groups: [] }] });
    const bad = parseHubServiceConfig({ broker: {}, database: 'relative', extra: 1 }, 'hub.yaml');
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error.map((e) => e.message)).toEqual(expect.arrayContaining(['hub.yaml: extra: unknown key', 'hub.yaml: broker.url: is required', 'hub.yaml: database: must be an absolute path (got "relative")']));
  });

  test('the ACL gives each node exactly its topics', () => {
    const acl = renderAcl({ prefix: 'ew', hubUsers: ['hub-1'], nodes: [{ org: 'acme', node: 'n1', groups: ['cams'] }] });
    const block = acl.split('user n1@acme\n')[1].trim().split('\n');
    expect(block).toEqual([
      'topic read ew/acme/nodes/n1/policy/desired',
      'topic read ew/acme/groups/cams/policy/desired',
      'topic write ew/acme/nodes/n1/policy/reported',
      'topic write ew/acme/nodes/n1/alerts',
      'topic write ew/acme/nodes/n1/telemetry',
      'topic read ew/acme/nodes/n1/ack',
      'topic readwrite ew/acme/nodes/n1/status',
      'topic read ew/hub/+/status',
    ]);
    expect(acl).toMatch(/user hub-1\ntopic readwrite ew\/#/);
    // nothing for anonymous clients: the first non-comment line is a user line
    expect(acl.split('\n').find((l) => l && !l.startsWith('#'))).toBe('user hub-1');
  });
});
