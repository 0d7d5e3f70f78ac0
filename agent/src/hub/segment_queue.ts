// One durable FIFO of records on disk: append-only segment files of
// checksummed records plus a small cursor file saying which records are done
// (delivered, or counted as dropped). Used twice by the spool (alerts,
// telemetry). Synchronous: an append has reached the file (and, with fsync
// "always", the disk) when it returns.
//
// Record:  u32 magic | u32 body length | u64 seq | u32 crc32(seq bytes + body) | body
// Cursor:  two 64-byte slots written alternately; the valid slot with the
//          higher generation wins, so a torn cursor write loses one update at
//          most (the records are then sent again: at-least-once).
import * as fs from 'fs';
import * as path from 'path';
import { fsyncDirectory } from './atomic_file';
import { crc32 } from './crc32';
import { err, hubError, ok, Result } from './result';

export type FsyncPolicy = 'always' | 'interval' | 'never';

export interface QueueOptions {
  directory: string;
  /** a segment is closed once it would grow past this */
  segmentBytes: number;
  fsync: FsyncPolicy;
}

export interface DropCounters {
  /** pushed out (or refused) because the spool was full */
  full: number;
  /** found damaged on disk at start (a checksum failed, or a torn write at the end) */
  corrupt: number;
  /** larger than a record may be */
  tooLarge: number;
}

export interface QueueRecord {
  seq: number;
  body: Buffer;
}

const RECORD_MAGIC = 0x31535745; // "EWS1"
const CURSOR_MAGIC = 0x31435745; // "EWC1"
export const RECORD_HEADER_BYTES = 20;
const SLOT_BYTES = 64;
const SEGMENT_NAME = /^seg-(\d{16})\.log$/;

interface Entry {
  seq: number;
  segment: Segment;
  offset: number;
  length: number;
  done: boolean;
}

interface Segment {
  firstSeq: number;
  file: string;
  bytes: number;
  entries: Entry[];
  readFd?: number;
}

export function encodeRecord(seq: number, body: Buffer): Buffer {
  const rec = Buffer.allocUnsafe(RECORD_HEADER_BYTES + body.length);
  rec.writeUInt32LE(RECORD_MAGIC, 0);
  rec.writeUInt32LE(body.length, 4);
  rec.writeBigUInt64LE(BigInt(seq), 8);
  body.copy(rec, RECORD_HEADER_BYTES);
  rec.writeUInt32LE(crc32(body, crc32(rec.subarray(8, 16))), 16);
  return rec;
}

/** The record at `offset` if it is whole and its checksum holds. */
function decodeAt(buf: Buffer, offset: number, maxBody: number): { seq: number; length: number } | undefined {
  if (offset + RECORD_HEADER_BYTES > buf.length) return undefined;
  if (buf.readUInt32LE(offset) !== RECORD_MAGIC) return undefined;
  const len = buf.readUInt32LE(offset + 4);
  if (len > maxBody || offset + RECORD_HEADER_BYTES + len > buf.length) return undefined;
  const crc = crc32(buf.subarray(offset + RECORD_HEADER_BYTES, offset + RECORD_HEADER_BYTES + len), crc32(buf.subarray(offset + 8, offset + 16)));
  if (crc !== buf.readUInt32LE(offset + 16)) return undefined;
  const seq = Number(buf.readBigUInt64LE(offset + 8));
  if (!Number.isSafeInteger(seq) || seq < 1) return undefined;
  return { seq, length: RECORD_HEADER_BYTES + len };
}

interface CursorState {
  generation: number;
  watermark: number;
  dropped: DropCounters;
}

function encodeCursor(c: CursorState): Buffer {
  const b = Buffer.alloc(SLOT_BYTES);
  b.writeUInt32LE(CURSOR_MAGIC, 0);
  b.writeBigUInt64LE(BigInt(c.generation), 8);
  b.writeBigUInt64LE(BigInt(c.watermark), 16);
  b.writeBigUInt64LE(BigInt(c.dropped.full), 24);
  b.writeBigUInt64LE(BigInt(c.dropped.corrupt), 32);
  b.writeBigUInt64LE(BigInt(c.dropped.tooLarge), 40);
  b.writeUInt32LE(crc32(b.subarray(0, 56)), 56);
  return b;
}

function decodeCursor(b: Buffer): CursorState | undefined {
  if (b.length < SLOT_BYTES || b.readUInt32LE(0) !== CURSOR_MAGIC || crc32(b.subarray(0, 56)) !== b.readUInt32LE(56)) return undefined;
  return {
    generation: Number(b.readBigUInt64LE(8)),
    watermark: Number(b.readBigUInt64LE(16)),
    dropped: { full: Number(b.readBigUInt64LE(24)), corrupt: Number(b.readBigUInt64LE(32)), tooLarge: Number(b.readBigUInt64LE(40)) },
  };
}

export class SegmentQueue {
  private segments: Segment[] = [];
  /** entries not yet done, in seq order */
  private pendingEntries: Entry[] = [];
  private pendingHead = 0;
  private writeFd: number | undefined;
  private cursorFd: number;
  private cursor: CursorState;
  private lastSeq: number;
  private totalBytes = 0;
  private dirty = false;
  private closed = false;

  private constructor(
    private readonly options: QueueOptions,
    cursorFd: number,
    cursor: CursorState,
  ) {
    this.cursorFd = cursorFd;
    this.cursor = cursor;
    this.lastSeq = cursor.watermark;
  }

  /** Opens (creating) the queue and recovers it: torn tails cut, damaged records counted. */
  static open(options: QueueOptions): Result<SegmentQueue> {
    try {
      fs.mkdirSync(options.directory, { recursive: true, mode: 0o700 });
      const cursorFile = path.join(options.directory, 'cursor');
      const cursorFd = fs.openSync(cursorFile, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
      const raw = Buffer.alloc(SLOT_BYTES * 2);
      fs.readSync(cursorFd, raw, 0, raw.length, 0);
      const slots = [decodeCursor(raw.subarray(0, SLOT_BYTES)), decodeCursor(raw.subarray(SLOT_BYTES))].filter((s): s is CursorState => !!s);
      const cursor = slots.sort((a, b) => b.generation - a.generation)[0] ?? { generation: 0, watermark: 0, dropped: { full: 0, corrupt: 0, tooLarge: 0 } };
      const q = new SegmentQueue(options, cursorFd, cursor);
      q.recover();
      return ok(q);
    } catch (e) {
      return err(hubError('io', `spool ${options.directory}: cannot open`, e));
    }
  }

  private recover(): void {
    const dir = this.options.directory;
    const names = fs
      .readdirSync(dir)
      .filter((n) => SEGMENT_NAME.test(n))
      .sort();
    const maxBody = this.options.segmentBytes;
    let lost = 0;
    let previousSeq = 0;
    const watermark = this.cursor.watermark;
    names.forEach((name, index) => {
      const file = path.join(dir, name);
      const buf = fs.readFileSync(file);
      const seg: Segment = { firstSeq: Number(SEGMENT_NAME.exec(name)![1]), file, bytes: buf.length, entries: [] };
      let offset = 0;
      while (offset < buf.length) {
        const r = decodeAt(buf, offset, maxBody);
        if (r && r.seq > previousSeq) {
          // seqs are consecutive as written: a gap above the watermark is records lost to damage
          const gapFrom = Math.max(previousSeq, watermark) + 1;
          if (r.seq > gapFrom) lost += r.seq - gapFrom;
          seg.entries.push({ seq: r.seq, segment: seg, offset, length: r.length, done: r.seq <= watermark });
          previousSeq = r.seq;
          offset += r.length;
          continue;
        }
        // Damaged bytes: resume at the next record that decodes, or stop when none follows.
        let next = offset + 1;
        while (next < buf.length && !decodeAt(buf, next, maxBody)) next++;
        if (next < buf.length) {
          offset = next;
          continue;
        }
        if (index === names.length - 1) {
          // a torn write at the end of the newest segment: cut it off; it held one record
          // not yet delivered (it was never whole, so never sent)
          fs.truncateSync(file, offset);
          seg.bytes = offset;
          if (previousSeq >= watermark) lost++;
        }
        break;
      }
      this.segments.push(seg);
    });
    this.cursor.dropped.corrupt += lost;
    for (const seg of this.segments) for (const e of seg.entries) if (!e.done) this.pendingEntries.push(e);
    this.lastSeq = Math.max(this.cursor.watermark, previousSeq);
    this.totalBytes = this.segments.reduce((n, s) => n + s.bytes, 0);
    if (lost) this.writeCursor(true);
    this.advance();
    this.removeFinishedSegments();
  }

  /** Appends one record; its seq is one more than the last one's. */
  append(body: Buffer): Result<number> {
    if (this.closed) return err(hubError('closed', `spool ${this.options.directory} is closed`));
    const seq = this.lastSeq + 1;
    const rec = encodeRecord(seq, body);
    try {
      let seg = this.segments[this.segments.length - 1];
      if (!seg || this.writeFd === undefined || (seg.bytes > 0 && seg.bytes + rec.length > this.options.segmentBytes)) {
        seg = this.startSegment(seq);
      }
      fs.writeSync(this.writeFd!, rec, 0, rec.length);
      if (this.options.fsync === 'always') fs.fsyncSync(this.writeFd!);
      else this.dirty = true;
      const entry: Entry = { seq, segment: seg, offset: seg.bytes, length: rec.length, done: false };
      seg.entries.push(entry);
      seg.bytes += rec.length;
      this.totalBytes += rec.length;
      this.pendingEntries.push(entry);
      this.lastSeq = seq;
      return ok(seq);
    } catch (e) {
      return err(hubError('io', `spool ${this.options.directory}: cannot append`, e));
    }
  }

  private startSegment(firstSeq: number): Segment {
    if (this.writeFd !== undefined) {
      if (this.options.fsync !== 'never') fs.fsyncSync(this.writeFd);
      fs.closeSync(this.writeFd);
      this.writeFd = undefined;
    }
    const last = this.segments[this.segments.length - 1];
    if (last && last.bytes === 0 && last.entries.length === 0) {
      // reuse an empty newest segment (e.g. all of its records were cut as torn)
      this.writeFd = fs.openSync(last.file, fs.constants.O_WRONLY | fs.constants.O_APPEND);
      return last;
    }
    if (last && last.firstSeq >= firstSeq) throw new Error(`segment order: new segment ${firstSeq} after ${last.firstSeq}`);
    const file = path.join(this.options.directory, `seg-${String(firstSeq).padStart(16, '0')}.log`);
    this.writeFd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600);
    if (this.options.fsync !== 'never') fsyncDirectory(this.options.directory);
    const seg: Segment = { firstSeq, file, bytes: 0, entries: [] };
    this.segments.push(seg);
    return seg;
  }

  /** Records not yet done from `fromSeq` on, at most `maxRecords` and (after the first) `maxBytes` of bodies. */
  read(fromSeq: number, maxRecords: number, maxBytes: number): Result<QueueRecord[]> {
    const out: QueueRecord[] = [];
    let bytes = 0;
    try {
      for (let i = this.firstPendingIndexAtOrAfter(fromSeq); i < this.pendingEntries.length && out.length < maxRecords; i++) {
        const e = this.pendingEntries[i];
        if (e.done) continue;
        const bodyLen = e.length - RECORD_HEADER_BYTES;
        if (out.length > 0 && bytes + bodyLen > maxBytes) break;
        const seg = e.segment;
        if (seg.readFd === undefined) seg.readFd = fs.openSync(seg.file, fs.constants.O_RDONLY);
        const body = Buffer.allocUnsafe(bodyLen);
        const n = fs.readSync(seg.readFd, body, 0, bodyLen, e.offset + RECORD_HEADER_BYTES);
        if (n !== bodyLen) throw new Error(`short read at ${seg.file}:${e.offset}`);
        out.push({ seq: e.seq, body });
        bytes += bodyLen;
      }
      return ok(out);
    } catch (e) {
      return err(hubError('io', `spool ${this.options.directory}: cannot read`, e));
    }
  }

  private firstPendingIndexAtOrAfter(seq: number): number {
    let lo = this.pendingHead;
    let hi = this.pendingEntries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.pendingEntries[mid].seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Marks records from..to (inclusive) done; files whose records are all done are deleted. */
  acknowledge(from: number, to: number): Result<number> {
    if (this.closed) return err(hubError('closed', `spool ${this.options.directory} is closed`));
    let n = 0;
    for (let i = this.firstPendingIndexAtOrAfter(from); i < this.pendingEntries.length && this.pendingEntries[i].seq <= to; i++) {
      if (!this.pendingEntries[i].done) {
        this.pendingEntries[i].done = true;
        n++;
      }
    }
    if (n === 0) return ok(0);
    try {
      if (this.advance()) this.writeCursor(false);
      this.removeFinishedSegments();
      return ok(n);
    } catch (e) {
      return err(hubError('io', `spool ${this.options.directory}: cannot record delivery`, e));
    }
  }

  /** Moves the watermark over the done records at the head; true when it moved. */
  private advance(): boolean {
    const before = this.cursor.watermark;
    while (this.pendingHead < this.pendingEntries.length && this.pendingEntries[this.pendingHead].done) {
      this.cursor.watermark = Math.max(this.cursor.watermark, this.pendingEntries[this.pendingHead].seq);
      this.pendingHead++;
    }
    if (this.pendingHead === this.pendingEntries.length) this.cursor.watermark = Math.max(this.cursor.watermark, this.lastSeq);
    // compact now and then so the array does not grow forever
    if (this.pendingHead > 4096 && this.pendingHead * 2 > this.pendingEntries.length) {
      this.pendingEntries = this.pendingEntries.slice(this.pendingHead);
      this.pendingHead = 0;
    }
    return this.cursor.watermark !== before;
  }

  private removeFinishedSegments(): void {
    // never the newest one while it is open for appends
    while (this.segments.length > 1 && this.segments[0].entries.every((e) => e.done)) this.deleteSegment(this.segments.shift()!);
  }

  private deleteSegment(seg: Segment): void {
    if (seg.readFd !== undefined) fs.closeSync(seg.readFd);
    seg.readFd = undefined;
    fs.rmSync(seg.file, { force: true });
    this.totalBytes -= seg.bytes;
  }

  /**
   * Drops the oldest segment, open or not, to make room; its records not yet
   * done are counted as dropped (full). Undefined when the queue is empty.
   */
  evictOldest(): { records: number; bytes: number } | undefined {
    const seg = this.segments[0];
    if (!seg) return undefined;
    const records = seg.entries.filter((e) => !e.done).length;
    for (const e of seg.entries) e.done = true;
    this.segments.shift();
    if (this.segments.length === 0 && this.writeFd !== undefined) {
      fs.closeSync(this.writeFd);
      this.writeFd = undefined;
    }
    this.deleteSegment(seg);
    this.cursor.dropped.full += records;
    this.advance();
    this.writeCursor(true);
    return { records, bytes: seg.bytes };
  }

  /** Counts a record refused before it was written. */
  countDropped(reason: keyof DropCounters, n = 1): void {
    this.cursor.dropped[reason] += n;
    try {
      // not forced: under a flood into a full spool an fsync per refused record would stall the
      // agent; the fsync policy's timer makes it durable
      this.writeCursor(false);
    } catch {
      // the count stays in memory and is reported; the disk is failing anyway
    }
  }

  private writeCursor(force: boolean): void {
    this.cursor.generation++;
    const slot = this.cursor.generation % 2;
    fs.writeSync(this.cursorFd, encodeCursor(this.cursor), 0, SLOT_BYTES, slot * SLOT_BYTES);
    if (this.options.fsync === 'always' || (force && this.options.fsync !== 'never')) fs.fsyncSync(this.cursorFd);
    else this.dirty = true;
  }

  /** fsync of the open segment and the cursor (the "interval" policy calls this on a timer). */
  sync(): Result<void> {
    if (!this.dirty || this.closed) return ok(undefined);
    try {
      if (this.writeFd !== undefined) fs.fsyncSync(this.writeFd);
      fs.fsyncSync(this.cursorFd);
      this.dirty = false;
      return ok(undefined);
    } catch (e) {
      return err(hubError('io', `spool ${this.options.directory}: fsync failed`, e));
    }
  }

  close(): void {
    if (this.closed) return;
    if (this.options.fsync !== 'never') this.sync();
    this.closed = true;
    if (this.writeFd !== undefined) fs.closeSync(this.writeFd);
    for (const s of this.segments) if (s.readFd !== undefined) fs.closeSync(s.readFd);
    fs.closeSync(this.cursorFd);
  }

  /** bytes of segment files on disk */
  bytes(): number {
    return this.totalBytes;
  }

  segmentCount(): number {
    return this.segments.length;
  }

  /** records written and not yet done */
  pending(): number {
    let n = 0;
    for (let i = this.pendingHead; i < this.pendingEntries.length; i++) if (!this.pendingEntries[i].done) n++;
    return n;
  }

  /** every record with seq <= watermark is done */
  watermark(): number {
    return this.cursor.watermark;
  }

  /** seq of the newest record (0 when none was ever written) */
  lastSequence(): number {
    return this.lastSeq;
  }

  dropped(): DropCounters {
    return { ...this.cursor.dropped };
  }
}
