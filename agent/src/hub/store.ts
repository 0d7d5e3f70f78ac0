// The hub's local store (SQLite through better-sqlite3, WAL so the CLI can
// read while `hub serve` writes). Alerts are deduplicated by their id: a
// node sends again whatever the hub did not acknowledge, so duplicates are
// normal and are counted, never stored twice.
import Database from 'better-sqlite3';
import * as fs from 'fs';
import * as path from 'path';
import type { BundleTarget } from './bundle';
import type { NodeStatusMessage, RecordBatch, ReportedState } from './protocol';
import { err, hubError, ok, Result } from './result';
import type { DropCounters } from './segment_queue';
import type { SpoolKind } from './spool';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS nodes (
  org TEXT NOT NULL, node TEXT NOT NULL,
  state TEXT, session TEXT, status_at TEXT, status_json TEXT,
  reported_json TEXT, reported_at TEXT,
  last_seen INTEGER,
  duplicates INTEGER NOT NULL DEFAULT 0,
  rejected INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (org, node)
);
CREATE TABLE IF NOT EXISTS desired (
  org TEXT NOT NULL, scope TEXT NOT NULL, name TEXT NOT NULL,
  version INTEGER NOT NULL, content_hash TEXT NOT NULL, bundle BLOB NOT NULL,
  documents TEXT NOT NULL, pushed_at TEXT NOT NULL,
  PRIMARY KEY (org, scope, name)
);
CREATE TABLE IF NOT EXISTS alerts (
  n INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL,
  org TEXT NOT NULL, node TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
  spooled_at INTEGER NOT NULL, received_at INTEGER NOT NULL,
  alert TEXT NOT NULL,
  -- per node: another node cannot suppress an alert by sending its id first
  UNIQUE (org, node, id)
);
CREATE INDEX IF NOT EXISTS alerts_by_node ON alerts (org, node, epoch, seq);
CREATE TABLE IF NOT EXISTS telemetry (
  n INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL,
  org TEXT NOT NULL, node TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
  spooled_at INTEGER NOT NULL, received_at INTEGER NOT NULL,
  data TEXT NOT NULL,
  UNIQUE (org, node, id)
);
CREATE TABLE IF NOT EXISTS drops (
  org TEXT NOT NULL, node TEXT NOT NULL, epoch TEXT NOT NULL, kind TEXT NOT NULL,
  full INTEGER NOT NULL, corrupt INTEGER NOT NULL, too_large INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (org, node, epoch, kind)
);
`;

export interface StoredAlert {
  n: number;
  id: string;
  org: string;
  node: string;
  epoch: string;
  seq: number;
  spooledAt: number;
  receivedAt: number;
  alert: Record<string, unknown>;
}

/** A node's status or reported message, for recordNodeUpdates. */
export type NodeUpdate =
  | { kind: 'status'; org: string; node: string; status: NodeStatusMessage }
  | { kind: 'reported'; org: string; node: string; reported: ReportedState };

export interface DesiredRow {
  org: string;
  target: BundleTarget;
  version: number;
  contentHash: string;
  bundle: Buffer;
  documents: string[];
  pushedAt: string;
}

export interface NodeRow {
  org: string;
  node: string;
  state?: 'online' | 'offline';
  statusAt?: string;
  status?: NodeStatusMessage;
  reported?: ReportedState;
  reportedAt?: string;
  lastSeen?: number;
  duplicates: number;
  rejected: number;
  alerts: number;
  dropped: Record<SpoolKind, DropCounters>;
}

const targetKey = (org: string, scope: string, name: string) => JSON.stringify([org, scope, name]);
const isVersion = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

export class HubStore {
  /** highest reported in-force version per (org, scope, name); built on first use */
  private reportedMax: Map<string, number> | undefined;

  private constructor(private readonly db: Database.Database) {}

  static open(file: string): Result<HubStore> {
    try {
      if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      const db = new Database(file);
      db.pragma('journal_mode = WAL');
      // an acknowledged alert must survive a power cut of the hub, not only a crash
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      db.exec(SCHEMA);
      return ok(new HubStore(db));
    } catch (e) {
      return err(hubError('io', `hub database ${file}: cannot open`, e));
    }
  }

  /** Stores a batch's records (once per id) and the node's drop counters, in one transaction. */
  storeBatch(org: string, node: string, batch: RecordBatch, now = Date.now()): Result<{ inserted: number; duplicates: number }> {
    try {
      return ok(this.db.transaction(() => this.writeBatch(org, node, batch, now))());
    } catch (e) {
      return err(hubError('io', `hub database: cannot store a batch from ${node}@${org}`, e));
    }
  }

  /**
   * Several batches (of one or many nodes) in one transaction: one commit, one fsync, for
   * all of them. All are stored or none is (then none may be acknowledged).
   */
  storeBatches(items: ReadonlyArray<{ org: string; node: string; batch: RecordBatch }>, now = Date.now()): Result<Array<{ inserted: number; duplicates: number }>> {
    try {
      return ok(this.db.transaction(() => items.map((i) => this.writeBatch(i.org, i.node, i.batch, now)))());
    } catch (e) {
      return err(hubError('io', `hub database: cannot store ${items.length} batches (${[...new Set(items.map((i) => `${i.node}@${i.org}`))].slice(0, 5).join(', ')})`, e));
    }
  }

  private writeBatch(org: string, node: string, batch: RecordBatch, now: number): { inserted: number; duplicates: number } {
    const table = batch.kind === 'alerts' ? 'alerts' : 'telemetry';
    const column = batch.kind === 'alerts' ? 'alert' : 'data';
    const insert = this.db.prepare(`INSERT OR IGNORE INTO ${table} (id, org, node, epoch, seq, spooled_at, received_at, ${column}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    const drops = this.db.prepare(
      `INSERT INTO drops (org, node, epoch, kind, full, corrupt, too_large, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (org, node, epoch, kind) DO UPDATE SET full = max(full, excluded.full), corrupt = max(corrupt, excluded.corrupt),
         too_large = max(too_large, excluded.too_large), updated_at = excluded.updated_at`,
    );
    const touch = this.db.prepare(
      `INSERT INTO nodes (org, node, last_seen, duplicates) VALUES (?, ?, ?, ?)
       ON CONFLICT (org, node) DO UPDATE SET last_seen = excluded.last_seen, duplicates = duplicates + excluded.duplicates`,
    );
    let inserted = 0;
    for (const r of batch.records) {
      inserted += insert.run(r.id, org, node, batch.epoch, r.seq, Math.floor(r.t), now, JSON.stringify(r.data ?? null)).changes;
    }
    for (const kind of ['alerts', 'telemetry'] as const) {
      const d = batch.dropped[kind];
      drops.run(org, node, batch.epoch, kind, d.full, d.corrupt, d.tooLarge, now);
    }
    const duplicates = batch.records.length - inserted;
    touch.run(org, node, now, duplicates);
    return { inserted, duplicates };
  }

  countRejected(org: string, node: string): void {
    this.db
      .prepare(`INSERT INTO nodes (org, node, rejected) VALUES (?, ?, 1) ON CONFLICT (org, node) DO UPDATE SET rejected = rejected + 1`)
      .run(org, node);
  }

  /**
   * Status and reported messages, in arrival order, in one transaction: a
   * fleet answering a push together costs the hub one commit (one fsync), not
   * one per node.
   */
  recordNodeUpdates(updates: readonly NodeUpdate[], now = Date.now()): void {
    this.db.transaction(() => {
      for (const u of updates) {
        if (u.kind === 'status') this.recordStatus(u.org, u.node, u.status, now);
        else this.recordReported(u.org, u.node, u.reported, now);
      }
    })();
  }

  /** A status message; an offline will of an older session does not override a newer online birth. */
  recordStatus(org: string, node: string, s: NodeStatusMessage, now = Date.now()): void {
    // one transaction (the row and its drop counters together; nested in recordNodeUpdates' one)
    this.db.transaction(() => this.writeStatus(org, node, s, now))();
  }

  private writeStatus(org: string, node: string, s: NodeStatusMessage, now: number): void {
    const current = this.db.prepare('SELECT state, session FROM nodes WHERE org = ? AND node = ?').get(org, node) as { state?: string; session?: string } | undefined;
    if (s.state === 'offline' && current?.state === 'online' && current.session && current.session !== s.session) return;
    this.db
      .prepare(
        `INSERT INTO nodes (org, node, state, session, status_at, status_json, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (org, node) DO UPDATE SET state = excluded.state, session = excluded.session, status_at = excluded.status_at,
           status_json = excluded.status_json, last_seen = excluded.last_seen`,
      )
      .run(org, node, s.state, s.session, s.at, JSON.stringify(s), now);
    if (s.spool) {
      const drops = this.db.prepare(
        `INSERT INTO drops (org, node, epoch, kind, full, corrupt, too_large, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (org, node, epoch, kind) DO UPDATE SET full = max(full, excluded.full), corrupt = max(corrupt, excluded.corrupt),
           too_large = max(too_large, excluded.too_large), updated_at = excluded.updated_at`,
      );
      for (const kind of ['alerts', 'telemetry'] as const) {
        const d = s.spool.dropped?.[kind];
        if (d && typeof d.full === 'number') drops.run(org, node, s.spool.epoch, kind, d.full, d.corrupt, d.tooLarge, now);
      }
    }
  }

  recordReported(org: string, node: string, r: ReportedState, now = Date.now()): void {
    this.db
      .prepare(
        `INSERT INTO nodes (org, node, reported_json, reported_at, last_seen) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (org, node) DO UPDATE SET reported_json = excluded.reported_json, reported_at = excluded.reported_at, last_seen = excluded.last_seen`,
      )
      .run(org, node, JSON.stringify(r), r.at, now);
    if (this.reportedMax) {
      for (const sc of r.scopes ?? []) {
        const v = sc.inForce?.version;
        if (!isVersion(v)) continue;
        const key = targetKey(org, sc.scope, sc.name);
        if (v > (this.reportedMax.get(key) ?? 0)) this.reportedMax.set(key, v);
      }
    }
  }

  recordDesired(d: DesiredRow): void {
    this.db
      .prepare(
        `INSERT INTO desired (org, scope, name, version, content_hash, bundle, documents, pushed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (org, scope, name) DO UPDATE SET version = excluded.version, content_hash = excluded.content_hash,
           bundle = excluded.bundle, documents = excluded.documents, pushed_at = excluded.pushed_at
         WHERE excluded.version > desired.version`,
      )
      .run(d.org, d.target.scope, d.target.name, d.version, d.contentHash, d.bundle, JSON.stringify(d.documents), d.pushedAt);
  }

  desired(org: string, target: BundleTarget): DesiredRow | undefined {
    const r = this.db.prepare('SELECT * FROM desired WHERE org = ? AND scope = ? AND name = ?').get(org, target.scope, target.name) as RawDesired | undefined;
    return r ? desiredRow(r) : undefined;
  }

  allDesired(): DesiredRow[] {
    return (this.db.prepare('SELECT * FROM desired ORDER BY org, scope, name').all() as RawDesired[]).map(desiredRow);
  }

  /**
   * Highest version any node reported in force for a target (so a new push can exceed it).
   * Asked on every push: scanning every node's report each time made a burst of pushes to a
   * thousand nodes quadratic, so the maxima are read once (inside SQLite) and then kept up
   * to date by recordReported. A version once reported stays counted (versions only need to
   * be exceeded).
   */
  highestReportedVersion(org: string, target: BundleTarget): number {
    return this.reportedMaxima().get(targetKey(org, target.scope, target.name)) ?? 0;
  }

  private reportedMaxima(): Map<string, number> {
    if (this.reportedMax) return this.reportedMax;
    const rows = this.db
      .prepare(
        `SELECT nodes.org AS org, json_extract(s.value, '$.scope') AS scope, json_extract(s.value, '$.name') AS name,
                max(json_extract(s.value, '$.inForce.version')) AS v
           FROM nodes, json_each(nodes.reported_json, '$.scopes') AS s
          WHERE nodes.reported_json IS NOT NULL AND json_type(s.value, '$.inForce.version') = 'integer'
          GROUP BY 1, 2, 3`,
      )
      .all() as Array<{ org: string; scope: unknown; name: unknown; v: unknown }>;
    const max = new Map<string, number>();
    for (const r of rows) if (typeof r.scope === 'string' && typeof r.name === 'string' && isVersion(r.v)) max.set(targetKey(r.org, r.scope, r.name), r.v);
    this.reportedMax = max;
    return max;
  }

  /** Alerts stored after `afterN` (insertion order), oldest first. */
  alertsAfter(afterN: number, limit: number, filter: { org?: string; node?: string } = {}): StoredAlert[] {
    const { where, args } = alertFilter(filter);
    const rows = this.db.prepare(`SELECT * FROM alerts WHERE n > ? ${where} ORDER BY n LIMIT ?`).all(afterN, ...args, limit) as RawAlert[];
    return rows.map(storedAlert);
  }

  /** The newest `limit` alerts, oldest first. */
  lastAlerts(limit: number, filter: { org?: string; node?: string } = {}): StoredAlert[] {
    const { where, args } = alertFilter(filter);
    const rows = this.db.prepare(`SELECT * FROM (SELECT * FROM alerts WHERE 1 ${where} ORDER BY n DESC LIMIT ?) ORDER BY n`).all(...args, limit) as RawAlert[];
    return rows.map(storedAlert);
  }

  /** n of the newest alert (0 when none): `alerts --follow` starts after it. */
  maxAlertN(): number {
    const r = this.db.prepare('SELECT max(n) AS m FROM alerts').get() as { m: number | null };
    return r.m ?? 0;
  }

  telemetryCount(org: string, node: string): number {
    return (this.db.prepare('SELECT count(*) AS c FROM telemetry WHERE org = ? AND node = ?').get(org, node) as { c: number }).c;
  }

  nodes(): NodeRow[] {
    const rows = this.db.prepare('SELECT * FROM nodes ORDER BY org, node').all() as RawNode[];
    const counts = new Map(
      (this.db.prepare('SELECT org, node, count(*) AS c FROM alerts GROUP BY org, node').all() as Array<{ org: string; node: string; c: number }>).map((r) => [
        `${r.org}/${r.node}`,
        r.c,
      ]),
    );
    const drops = this.db.prepare('SELECT kind, sum(full) AS full, sum(corrupt) AS corrupt, sum(too_large) AS too_large FROM drops WHERE org = ? AND node = ? GROUP BY kind');
    return rows.map((r) => {
      const dropped: Record<SpoolKind, DropCounters> = { alerts: { full: 0, corrupt: 0, tooLarge: 0 }, telemetry: { full: 0, corrupt: 0, tooLarge: 0 } };
      for (const d of drops.all(r.org, r.node) as Array<{ kind: SpoolKind; full: number; corrupt: number; too_large: number }>) {
        dropped[d.kind] = { full: d.full, corrupt: d.corrupt, tooLarge: d.too_large };
      }
      const row: NodeRow = { org: r.org, node: r.node, duplicates: r.duplicates, rejected: r.rejected, alerts: counts.get(`${r.org}/${r.node}`) ?? 0, dropped };
      if (r.state === 'online' || r.state === 'offline') row.state = r.state;
      if (r.status_at) row.statusAt = r.status_at;
      if (r.status_json) row.status = JSON.parse(r.status_json);
      if (r.reported_json) row.reported = JSON.parse(r.reported_json);
      if (r.reported_at) row.reportedAt = r.reported_at;
      if (r.last_seen !== null) row.lastSeen = r.last_seen;
      return row;
    });
  }

  close(): void {
    this.db.close();
  }
}

type RawAlert = Omit<StoredAlert, 'alert' | 'spooledAt' | 'receivedAt'> & { alert: string; spooled_at: number; received_at: number };

function alertFilter(filter: { org?: string; node?: string }): { where: string; args: unknown[] } {
  let where = '';
  const args: unknown[] = [];
  if (filter.org) {
    where += ' AND org = ?';
    args.push(filter.org);
  }
  if (filter.node) {
    where += ' AND node = ?';
    args.push(filter.node);
  }
  return { where, args };
}

function storedAlert(r: RawAlert): StoredAlert {
  return {
    n: r.n,
    id: r.id,
    org: r.org,
    node: r.node,
    epoch: r.epoch,
    seq: r.seq,
    spooledAt: r.spooled_at,
    receivedAt: r.received_at,
    alert: JSON.parse(r.alert),
  };
}

interface RawDesired {
  org: string;
  scope: 'node' | 'group';
  name: string;
  version: number;
  content_hash: string;
  bundle: Buffer;
  documents: string;
  pushed_at: string;
}

interface RawNode {
  org: string;
  node: string;
  state: string | null;
  session: string | null;
  status_at: string | null;
  status_json: string | null;
  reported_json: string | null;
  reported_at: string | null;
  last_seen: number | null;
  duplicates: number;
  rejected: number;
}

function desiredRow(r: RawDesired): DesiredRow {
  return {
    org: r.org,
    target: { scope: r.scope, name: r.name },
    version: r.version,
    contentHash: r.content_hash,
    bundle: r.bundle,
    documents: JSON.parse(r.documents),
    pushedAt: r.pushed_at,
  };
}
