// The hub store's node bookkeeping at fleet scale: status and reported
// messages written together in one transaction, and the highest version the
// fleet reports for a target read inside SQLite.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { NodeStatusMessage, RecordBatch, ReportedState } from '../../agent/src/hub/protocol';
import { HubStore, NodeUpdate } from '../../agent/src/hub/store';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function open(): HubStore {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-hubstore-'));
  dirs.push(dir);
  const r = HubStore.open(path.join(dir, 'hub.db'));
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

const status = (node: string, state: 'online' | 'offline', session: string): NodeStatusMessage => ({
  format: 'edgeward.status.v1',
  state,
  session,
  org: 'acme',
  node,
  groups: ['cams'],
  at: new Date().toISOString(),
  spool: { epoch: 'e'.repeat(32), pending: { alerts: 0, telemetry: 0 }, bytes: 0, maxBytes: 1 << 20, dropped: { alerts: { full: 2, corrupt: 0, tooLarge: 1 }, telemetry: { full: 0, corrupt: 0, tooLarge: 0 } } },
});

function reported(node: string, scopes: Array<{ scope: 'node' | 'group'; name: string; version: number | null }>, org = 'acme'): ReportedState {
  return {
    format: 'edgeward.reported.v1',
    org,
    node,
    groups: ['cams'],
    at: new Date().toISOString(),
    scopes: scopes.map((s) => ({ scope: s.scope, name: s.name, inForce: s.version === null ? null : { version: s.version, contentHash: 'sha256:x', issuedAt: 'then' } })),
    documents: [],
  };
}

describe('hub store: node updates', () => {
  test('status and reported messages of many nodes are recorded in one call, in order', () => {
    const s = open();
    const updates: NodeUpdate[] = [];
    for (let i = 0; i < 50; i++) {
      const node = `n${i}`;
      updates.push({ kind: 'status', org: 'acme', node, status: status(node, 'online', `s${i}`) });
      updates.push({ kind: 'reported', org: 'acme', node, reported: reported(node, [{ scope: 'group', name: 'cams', version: 100 + i }]) });
    }
    // an older session's will arriving after the birth changes nothing, inside the batch too
    updates.push({ kind: 'status', org: 'acme', node: 'n0', status: status('n0', 'offline', 'older') });
    // the same node's later report wins
    updates.push({ kind: 'reported', org: 'acme', node: 'n1', reported: reported('n1', [{ scope: 'group', name: 'cams', version: 500 }]) });
    s.recordNodeUpdates(updates);
    const rows = new Map(s.nodes().map((n) => [n.node, n]));
    expect(rows.size).toBe(50);
    expect(rows.get('n0')).toMatchObject({ state: 'online', dropped: { alerts: { full: 2, corrupt: 0, tooLarge: 1 } } });
    expect(rows.get('n1')!.reported!.scopes[0].inForce!.version).toBe(500);
    expect(rows.get('n49')!.reported!.scopes[0].inForce!.version).toBe(149);
    s.close();
  });

  test('the highest reported version counts only the target asked for, in its organisation, and ignores empty scopes', () => {
    const s = open();
    expect(s.highestReportedVersion('acme', { scope: 'group', name: 'cams' })).toBe(0);
    s.recordReported('acme', 'n1', reported('n1', [{ scope: 'node', name: 'n1', version: 900 }, { scope: 'group', name: 'cams', version: 120 }]));
    s.recordReported('acme', 'n2', reported('n2', [{ scope: 'group', name: 'cams', version: 130 }, { scope: 'group', name: 'doors', version: 990 }]));
    s.recordReported('acme', 'n3', reported('n3', [{ scope: 'group', name: 'cams', version: null }]));
    s.recordReported('other', 'n4', reported('n4', [{ scope: 'group', name: 'cams', version: 5000 }], 'other'));
    expect(s.highestReportedVersion('acme', { scope: 'group', name: 'cams' })).toBe(130);
    expect(s.highestReportedVersion('acme', { scope: 'node', name: 'n1' })).toBe(900);
    expect(s.highestReportedVersion('acme', { scope: 'node', name: 'n2' })).toBe(0);
    expect(s.highestReportedVersion('other', { scope: 'group', name: 'cams' })).toBe(5000);
    // later reports count at once, alone or in a batch
    s.recordReported('acme', 'n3', reported('n3', [{ scope: 'group', name: 'cams', version: 140 }]));
    expect(s.highestReportedVersion('acme', { scope: 'group', name: 'cams' })).toBe(140);
    s.recordNodeUpdates([{ kind: 'reported', org: 'acme', node: 'n1', reported: reported('n1', [{ scope: 'group', name: 'cams', version: 150 }]) }]);
    expect(s.highestReportedVersion('acme', { scope: 'group', name: 'cams' })).toBe(150);
    s.close();
  });

  test('the highest reported version survives a restart of the hub (read back from the database)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-hubstore-'));
    dirs.push(dir);
    const first = HubStore.open(path.join(dir, 'hub.db'));
    if (!first.ok) throw new Error(first.error.message);
    first.value.recordReported('acme', 'n1', reported('n1', [{ scope: 'group', name: 'cams', version: 777 }]));
    first.value.close();
    const again = HubStore.open(path.join(dir, 'hub.db'));
    if (!again.ok) throw new Error(again.error.message);
    expect(again.value.highestReportedVersion('acme', { scope: 'group', name: 'cams' })).toBe(777);
    again.value.close();
  });
});

describe('hub store: batches stored together', () => {
  const EPOCH = 'b'.repeat(32);
  const drops = { alerts: { full: 0, corrupt: 0, tooLarge: 0 }, telemetry: { full: 0, corrupt: 0, tooLarge: 0 } };
  const batch = (from: number, n: number): RecordBatch => ({
    format: 'edgeward.batch.v1',
    kind: 'alerts',
    epoch: EPOCH,
    from,
    to: from + n - 1,
    dropped: drops,
    records: Array.from({ length: n }, (_, i) => ({ seq: from + i, id: `id-${from + i}`, t: 1000 + i, data: { Message: `m-${from + i}` } })),
  });

  test('batches of several nodes in one call: each counted on its own, duplicates included', () => {
    const s = open();
    const r = s.storeBatches([
      { org: 'acme', node: 'n1', batch: batch(1, 3) },
      { org: 'acme', node: 'n2', batch: batch(1, 2) },
      { org: 'acme', node: 'n1', batch: batch(3, 3) },
    ]);
    expect(r).toEqual({ ok: true, value: [{ inserted: 3, duplicates: 0 }, { inserted: 2, duplicates: 0 }, { inserted: 2, duplicates: 1 }] });
    expect(s.alertsAfter(0, 100, { node: 'n1' }).map((a) => a.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(s.alertsAfter(0, 100, { node: 'n2' }).map((a) => a.seq)).toEqual([1, 2]);
    s.close();
  });

  test('all or nothing: a batch the database refuses leaves the others of the call unstored too', () => {
    const s = open();
    const bad = batch(1, 2);
    bad.records[1].data = { n: BigInt(1) }; // cannot be written (JSON.stringify throws inside the transaction)
    const r = s.storeBatches([
      { org: 'acme', node: 'n1', batch: batch(1, 2) },
      { org: 'acme', node: 'n2', batch: bad },
    ]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.message).toMatch(/cannot store 2 batches \(n1@acme, n2@acme\)/);
    expect(s.alertsAfter(0, 100)).toEqual([]);
    // on its own the good batch goes in (what the hub falls back to)
    expect(s.storeBatch('acme', 'n1', batch(1, 2))).toEqual({ ok: true, value: { inserted: 2, duplicates: 0 } });
    s.close();
  });
});
