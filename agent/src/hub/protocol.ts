// Messages of the hub protocol other than bundles (see bundle.ts and
// docs/PROTOCOL.md). Everything a peer sends is parsed defensively: a hub
// must survive a compromised node, and a node a broken hub.
import type { BundleScope, BundleTarget } from './bundle';
import { err, hubError, ok, Result } from './result';
import type { DropCounters } from './segment_queue';
import type { SpoolKind } from './spool';

export const BATCH_FORMAT = 'edgeward.batch.v1';
export const ACK_FORMAT = 'edgeward.ack.v1';
export const STATUS_FORMAT = 'edgeward.status.v1';
export const REPORTED_FORMAT = 'edgeward.reported.v1';
export const HUB_STATUS_FORMAT = 'edgeward.hub-status.v1';

/** One spooled record on the wire. */
export interface WireRecord {
  seq: number;
  /** unique id (UUID) the hub deduplicates by */
  id: string;
  /** when the node spooled it, ms since the epoch */
  t: number;
  /** the alert (KubeArmor fields) or telemetry object */
  data: unknown;
}

/** alerts or telemetry, node -> hub, QoS 1; records in seq order */
export interface RecordBatch {
  format: typeof BATCH_FORMAT;
  kind: SpoolKind;
  /** the spool's epoch: seqs are unique within it */
  epoch: string;
  from: number;
  to: number;
  /** cumulative drop counters of this spool, both kinds */
  dropped: Record<SpoolKind, DropCounters>;
  records: WireRecord[];
}

/** hub -> node, QoS 1: records from..to of this epoch are stored at the hub */
export interface AckMessage {
  format: typeof ACK_FORMAT;
  kind: SpoolKind;
  epoch: string;
  from: number;
  to: number;
}

/** node -> hub, retained; the last will says offline */
export interface NodeStatusMessage {
  format: typeof STATUS_FORMAT;
  state: 'online' | 'offline';
  org: string;
  node: string;
  arch?: string;
  groups: string[];
  /** random per connection: a will of an older session never overrides a newer birth */
  session: string;
  at: string;
  reason?: string;
  spool?: { epoch: string; pending: Record<SpoolKind, number>; bytes: number; maxBytes: number; dropped: Record<SpoolKind, DropCounters> };
}

export interface HubStatusMessage {
  format: typeof HUB_STATUS_FORMAT;
  state: 'online' | 'offline';
  instance: string;
  session: string;
  at: string;
}

/** unknown: the agent has not reported a load since the policy was materialised */
export type DocumentStatus = 'enforced' | 'warning' | 'error' | 'overridden' | 'unknown';

export interface ScopeReport {
  scope: BundleScope;
  name: string;
  inForce: { version: number; contentHash: string; issuedAt: string } | null;
  /** the last bundle refused for this scope, if the one refused is newer than what is in force */
  refused?: { version?: number; contentHash?: string; code: string; reason: string; at: string };
}

export interface DocumentReport {
  scope: BundleScope;
  scopeName: string;
  version: number;
  document: string;
  policy: string;
  file?: string;
  status: DocumentStatus;
  errors: string[];
  overriddenBy?: BundleTarget;
}

/** node -> hub, retained: what is in force, what was refused and why */
export interface ReportedState {
  format: typeof REPORTED_FORMAT;
  org: string;
  node: string;
  groups: string[];
  at: string;
  scopes: ScopeReport[];
  documents: DocumentReport[];
  /** the agent's last policy load (all directories) */
  agent?: { files: number; policies: number; rules: number; errors: string[]; warnings: string[] };
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
const EPOCH = /^[0-9a-f]{32}$/;

function parseJson(buf: Buffer, what: string, maxBytes: number): Result<Record<string, unknown>> {
  if (buf.length > maxBytes) return err(hubError('too-large', `${what} of ${buf.length} bytes refused (limit ${maxBytes})`));
  try {
    const v = JSON.parse(buf.toString('utf8'));
    if (!isRecord(v)) return err(hubError('malformed', `${what} is not a JSON object`));
    return ok(v);
  } catch (e) {
    return err(hubError('malformed', `${what} is not valid JSON`, e));
  }
}

function counters(v: unknown): DropCounters | undefined {
  if (!isRecord(v)) return undefined;
  const n = (x: unknown) => (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 ? x : undefined);
  const full = n(v.full);
  const corrupt = n(v.corrupt);
  const tooLarge = n(v.tooLarge);
  return full === undefined || corrupt === undefined || tooLarge === undefined ? undefined : { full, corrupt, tooLarge };
}

export function parseBatch(buf: Buffer, maxBytes: number): Result<RecordBatch> {
  const j = parseJson(buf, 'batch', maxBytes);
  if (!j.ok) return j;
  const b = j.value;
  const bad = (what: string) => err(hubError('malformed', `batch: ${what}`));
  if (b.format !== BATCH_FORMAT) return bad(`format is not ${BATCH_FORMAT}`);
  if (b.kind !== 'alerts' && b.kind !== 'telemetry') return bad('kind must be alerts or telemetry');
  if (typeof b.epoch !== 'string' || !EPOCH.test(b.epoch)) return bad('epoch must be 32 hex digits');
  if (!isSeq(b.from) || !isSeq(b.to) || b.to < b.from) return bad('from/to must be seqs with from <= to');
  const dropped = isRecord(b.dropped) ? { alerts: counters(b.dropped.alerts), telemetry: counters(b.dropped.telemetry) } : undefined;
  if (!dropped || !dropped.alerts || !dropped.telemetry) return bad('dropped counters missing');
  if (!Array.isArray(b.records) || b.records.length === 0) return bad('records must be a non-empty list');
  let previous = 0;
  for (const [i, r] of b.records.entries()) {
    if (!isRecord(r) || !isSeq(r.seq) || typeof r.id !== 'string' || r.id.length === 0 || r.id.length > 64 || typeof r.t !== 'number') {
      return bad(`records[${i}] must be {seq, id, t, data}`);
    }
    if (r.seq <= previous || r.seq < b.from || r.seq > b.to) return bad(`records[${i}].seq ${r.seq} out of order or outside ${b.from}..${b.to}`);
    previous = r.seq;
  }
  return ok({
    format: BATCH_FORMAT,
    kind: b.kind,
    epoch: b.epoch,
    from: b.from,
    to: b.to,
    dropped: { alerts: dropped.alerts, telemetry: dropped.telemetry },
    records: b.records as WireRecord[],
  });
}

/**
 * Builds a batch's bytes from spooled record bodies ({"id","t","data"} JSON)
 * without parsing them again.
 */
export function encodeBatch(
  kind: SpoolKind,
  epoch: string,
  dropped: Record<SpoolKind, DropCounters>,
  records: Array<{ seq: number; body: Buffer }>,
): Buffer {
  const head = JSON.stringify({ format: BATCH_FORMAT, kind, epoch, from: records[0].seq, to: records[records.length - 1].seq, dropped });
  const parts: Buffer[] = [Buffer.from(head.slice(0, -1) + ',"records":[')];
  records.forEach((r, i) => {
    parts.push(Buffer.from(`${i ? ',' : ''}{"seq":${r.seq},`));
    parts.push(r.body.subarray(1)); // the body's own fields and closing brace
  });
  parts.push(Buffer.from(']}'));
  return Buffer.concat(parts);
}

export function encodeRecordBody(id: string, t: number, data: unknown): Buffer {
  return Buffer.from(JSON.stringify({ id, t, data }), 'utf8');
}

export function parseAck(buf: Buffer): Result<AckMessage> {
  const j = parseJson(buf, 'ack', 4096);
  if (!j.ok) return j;
  const a = j.value;
  if (a.format !== ACK_FORMAT || (a.kind !== 'alerts' && a.kind !== 'telemetry') || typeof a.epoch !== 'string' || !isSeq(a.from) || !isSeq(a.to) || a.to < a.from) {
    return err(hubError('malformed', 'ack must be {format, kind, epoch, from, to}'));
  }
  return ok({ format: ACK_FORMAT, kind: a.kind, epoch: a.epoch, from: a.from, to: a.to });
}

export function parseNodeStatus(buf: Buffer): Result<NodeStatusMessage> {
  const j = parseJson(buf, 'status', 64 * 1024);
  if (!j.ok) return j;
  const s = j.value;
  if (s.format !== STATUS_FORMAT || (s.state !== 'online' && s.state !== 'offline') || typeof s.session !== 'string' || typeof s.at !== 'string') {
    return err(hubError('malformed', 'status must be {format, state: online|offline, session, at, ...}'));
  }
  return ok(s as unknown as NodeStatusMessage);
}

export function parseHubStatus(buf: Buffer): Result<HubStatusMessage> {
  const j = parseJson(buf, 'hub status', 4096);
  if (!j.ok) return j;
  const s = j.value;
  if (s.format !== HUB_STATUS_FORMAT || (s.state !== 'online' && s.state !== 'offline') || typeof s.session !== 'string') {
    return err(hubError('malformed', 'hub status must be {format, state, instance, session, at}'));
  }
  return ok(s as unknown as HubStatusMessage);
}

export function parseReported(buf: Buffer): Result<ReportedState> {
  const j = parseJson(buf, 'reported', 1024 * 1024);
  if (!j.ok) return j;
  const r = j.value;
  if (r.format !== REPORTED_FORMAT || !Array.isArray(r.scopes) || !Array.isArray(r.documents)) {
    return err(hubError('malformed', 'reported must be {format, scopes: [...], documents: [...]}'));
  }
  for (const [i, s] of (r.scopes as unknown[]).entries()) {
    if (!isRecord(s) || (s.scope !== 'node' && s.scope !== 'group') || typeof s.name !== 'string') return err(hubError('malformed', `reported.scopes[${i}] must be {scope, name, inForce}`));
    if (s.inForce !== null && (!isRecord(s.inForce) || !isSeq(s.inForce.version))) return err(hubError('malformed', `reported.scopes[${i}].inForce must be null or {version, ...}`));
  }
  return ok(r as unknown as ReportedState);
}
