// The node's outbox: alerts and telemetry written to disk before they are
// sent, removed only once delivered. Bounded: when full, telemetry is pushed
// out first (oldest segment first), and only when no telemetry is left is an
// alert refused. The oldest alerts are kept rather than the newest, since
// the first alerts of an attack are the evidence a flood would bury. Every
// record refused or pushed out is counted, the counts survive restarts and
// are sent with every batch and the node's status.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic } from './atomic_file';
import { err, hubError, HubError, ok, Result } from './result';
import { DropCounters, FsyncPolicy, QueueRecord, RECORD_HEADER_BYTES, SegmentQueue } from './segment_queue';

export type SpoolKind = 'alerts' | 'telemetry';
export const SPOOL_KINDS: readonly SpoolKind[] = ['alerts', 'telemetry'];

export interface SpoolOptions {
  directory: string;
  /** all segment files together stay below this */
  maxBytes: number;
  segmentBytes: number;
  fsync: FsyncPolicy;
  /** with fsync "interval" */
  fsyncIntervalMs: number;
  /** a larger record is refused (and counted) */
  maxRecordBytes: number;
}

export const DEFAULT_SPOOL: Omit<SpoolOptions, 'directory'> = {
  maxBytes: 64 * 1024 * 1024,
  segmentBytes: 1024 * 1024,
  fsync: 'interval',
  fsyncIntervalMs: 1000,
  maxRecordBytes: 256 * 1024,
};

export interface SpoolKindStats {
  pending: number;
  bytes: number;
  watermark: number;
  lastSeq: number;
  dropped: DropCounters;
}

export type SpoolStats = Record<SpoolKind, SpoolKindStats> & { bytes: number; maxBytes: number; epoch: string };

export class Spool {
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    readonly options: SpoolOptions,
    /** random id of this spool's seq space; a new spool (e.g. the state wiped) starts a new epoch */
    readonly epoch: string,
    private readonly queues: Record<SpoolKind, SegmentQueue>,
  ) {
    if (options.fsync === 'interval') {
      this.timer = setInterval(() => this.sync(), options.fsyncIntervalMs);
      this.timer.unref();
    }
  }

  static open(options: SpoolOptions): Result<Spool> {
    const problems = checkSpoolOptions(options);
    if (problems) return err(problems);
    try {
      fs.mkdirSync(options.directory, { recursive: true, mode: 0o700 });
    } catch (e) {
      return err(hubError('io', `spool ${options.directory}: cannot create`, e));
    }
    const epoch = readOrCreateEpoch(options.directory);
    if (!epoch.ok) return epoch;
    const queues: Partial<Record<SpoolKind, SegmentQueue>> = {};
    for (const kind of SPOOL_KINDS) {
      const q = SegmentQueue.open({ directory: path.join(options.directory, kind), segmentBytes: options.segmentBytes, fsync: options.fsync });
      if (!q.ok) {
        for (const open of Object.values(queues)) open?.close();
        return q;
      }
      queues[kind] = q.value;
    }
    return ok(new Spool(options, epoch.value, queues as Record<SpoolKind, SegmentQueue>));
  }

  /** Writes one record; refused (and counted) when too large or when the spool is full of alerts. */
  append(kind: SpoolKind, body: Buffer): Result<number> {
    const q = this.queues[kind];
    if (body.length > this.options.maxRecordBytes) {
      q.countDropped('tooLarge');
      return err(hubError('record-too-large', `${kind} record of ${body.length} bytes refused: the limit is ${this.options.maxRecordBytes} bytes`));
    }
    const need = body.length + RECORD_HEADER_BYTES;
    // Telemetry makes room first, oldest segment first.
    while (this.bytes() + need > this.options.maxBytes && this.queues.telemetry.segmentCount() > 0) this.queues.telemetry.evictOldest();
    if (this.bytes() + need > this.options.maxBytes) {
      q.countDropped('full');
      return err(hubError('spool-full', `spool full (${this.bytes()} of ${this.options.maxBytes} bytes, all alerts): ${kind} record dropped and counted`));
    }
    return q.append(body);
  }

  read(kind: SpoolKind, fromSeq: number, maxRecords: number, maxBytes: number): Result<QueueRecord[]> {
    return this.queues[kind].read(fromSeq, maxRecords, maxBytes);
  }

  acknowledge(kind: SpoolKind, from: number, to: number): Result<number> {
    return this.queues[kind].acknowledge(from, to);
  }

  bytes(): number {
    return this.queues.alerts.bytes() + this.queues.telemetry.bytes();
  }

  pending(kind: SpoolKind): number {
    return this.queues[kind].pending();
  }

  watermark(kind: SpoolKind): number {
    return this.queues[kind].watermark();
  }

  dropped(): Record<SpoolKind, DropCounters> {
    return { alerts: this.queues.alerts.dropped(), telemetry: this.queues.telemetry.dropped() };
  }

  stats(): SpoolStats {
    const one = (q: SegmentQueue): SpoolKindStats => ({
      pending: q.pending(),
      bytes: q.bytes(),
      watermark: q.watermark(),
      lastSeq: q.lastSequence(),
      dropped: q.dropped(),
    });
    return { alerts: one(this.queues.alerts), telemetry: one(this.queues.telemetry), bytes: this.bytes(), maxBytes: this.options.maxBytes, epoch: this.epoch };
  }

  sync(): Result<void> {
    for (const kind of SPOOL_KINDS) {
      const r = this.queues[kind].sync();
      if (!r.ok) return r;
    }
    return ok(undefined);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const kind of SPOOL_KINDS) this.queues[kind].close();
  }
}

export function checkSpoolOptions(o: SpoolOptions): HubError | undefined {
  const problems: string[] = [];
  if (!path.isAbsolute(o.directory)) problems.push(`directory ${JSON.stringify(o.directory)} must be absolute`);
  if (!Number.isInteger(o.segmentBytes) || o.segmentBytes < 4096) problems.push('segmentBytes must be an integer >= 4096');
  if (!Number.isInteger(o.maxBytes) || o.maxBytes < 4 * o.segmentBytes) problems.push('maxBytes must be at least 4 segments (4 * segmentBytes)');
  if (!Number.isInteger(o.maxRecordBytes) || o.maxRecordBytes < 1024 || o.maxRecordBytes + RECORD_HEADER_BYTES > o.segmentBytes) {
    problems.push('maxRecordBytes must be >= 1024 and fit in a segment');
  }
  if (!['always', 'interval', 'never'].includes(o.fsync)) problems.push('fsync must be always, interval or never');
  if (!Number.isInteger(o.fsyncIntervalMs) || o.fsyncIntervalMs < 10) problems.push('fsyncIntervalMs must be an integer >= 10');
  return problems.length ? hubError('invalid-options', `hub.spool: ${problems.join('; ')}`) : undefined;
}

function readOrCreateEpoch(dir: string): Result<string> {
  const file = path.join(dir, 'epoch');
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f]{32}$/.test(text)) return ok(text);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return err(hubError('io', `spool ${file}: cannot read`, e));
  }
  // new (or damaged) epoch file: the seq space starts anew, the hub tells them apart by epoch
  const epoch = crypto.randomBytes(16).toString('hex');
  const w = writeFileAtomic(file, epoch + '\n');
  return w.ok ? ok(epoch) : w;
}
