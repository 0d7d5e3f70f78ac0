import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Spool, SpoolOptions } from '../../agent/src/hub/spool';
import { encodeRecord, SegmentQueue } from '../../agent/src/hub/segment_queue';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-spool-'));

function options(dir: string, over: Partial<SpoolOptions> = {}): SpoolOptions {
  return { directory: dir, maxBytes: 64 * 1024, segmentBytes: 4096, fsync: 'never', fsyncIntervalMs: 1000, maxRecordBytes: 2048, ...over };
}

function open(o: SpoolOptions): Spool {
  const r = Spool.open(o);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

const body = (n: number, size = 100) => Buffer.from(JSON.stringify({ n, pad: 'x'.repeat(size) }));
const numbers = (records: Array<{ body: Buffer }>) => records.map((r) => JSON.parse(r.body.toString()).n as number);

describe('spool', () => {
  test('records come back in order, are deleted once acknowledged, and seqs keep growing across restarts', () => {
    const dir = tmp();
    let s = open(options(dir));
    for (let i = 0; i < 100; i++) expect(s.append('alerts', body(i))).toEqual({ ok: true, value: i + 1 });
    const all = s.read('alerts', 1, 1000, 1 << 20);
    expect(all.ok && numbers(all.value)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    const segmentsBefore = fs.readdirSync(path.join(dir, 'alerts')).filter((n) => n.startsWith('seg-')).length;
    expect(segmentsBefore).toBeGreaterThan(2);
    expect(s.acknowledge('alerts', 1, 60)).toEqual({ ok: true, value: 60 });
    expect(s.watermark('alerts')).toBe(60);
    expect(fs.readdirSync(path.join(dir, 'alerts')).filter((n) => n.startsWith('seg-')).length).toBeLessThan(segmentsBefore);
    s.close();

    s = open(options(dir));
    expect(s.pending('alerts')).toBe(40);
    const rest = s.read('alerts', 1, 1000, 1 << 20);
    expect(rest.ok && rest.value.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => 61 + i));
    expect(s.append('alerts', body(100))).toEqual({ ok: true, value: 101 });
    s.acknowledge('alerts', 1, 101);
    expect(s.pending('alerts')).toBe(0);
    s.close();
    // everything delivered: a restart still continues the seq space
    s = open(options(dir));
    expect(s.append('alerts', body(101))).toEqual({ ok: true, value: 102 });
    s.close();
  });

  test('acknowledgements out of order move the watermark only over a contiguous prefix', () => {
    const s = open(options(tmp()));
    for (let i = 0; i < 10; i++) s.append('alerts', body(i));
    s.acknowledge('alerts', 4, 6);
    expect(s.watermark('alerts')).toBe(0);
    expect(s.pending('alerts')).toBe(7);
    const from3 = s.read('alerts', 3, 100, 1 << 20);
    expect(from3.ok && from3.value.map((r) => r.seq)).toEqual([3, 7, 8, 9, 10]);
    s.acknowledge('alerts', 1, 3);
    expect(s.watermark('alerts')).toBe(6);
    s.close();
  });

  test('read honours the record and byte limits but always returns at least one record', () => {
    const s = open(options(tmp()));
    for (let i = 0; i < 10; i++) s.append('alerts', body(i, 500));
    const few = s.read('alerts', 1, 3, 1 << 20);
    expect(few.ok && few.value.length).toBe(3);
    const small = s.read('alerts', 1, 100, 10);
    expect(small.ok && small.value.length).toBe(1);
    s.close();
  });

  test('a torn write at the end is cut off and counted; appends continue after it', () => {
    const dir = tmp();
    let s = open(options(dir));
    for (let i = 0; i < 5; i++) s.append('alerts', body(i));
    s.close();
    const segs = fs.readdirSync(path.join(dir, 'alerts')).filter((n) => n.startsWith('seg-')).sort();
    const last = path.join(dir, 'alerts', segs[segs.length - 1]);
    const sizeBefore = fs.statSync(last).size;
    fs.appendFileSync(last, encodeRecord(6, body(5)).subarray(0, 37)); // a crash in the middle of a write
    s = open(options(dir));
    expect(fs.statSync(last).size).toBe(sizeBefore);
    expect(s.dropped().alerts.corrupt).toBe(1);
    const r = s.read('alerts', 1, 100, 1 << 20);
    expect(r.ok && numbers(r.value)).toEqual([0, 1, 2, 3, 4]);
    expect(s.append('alerts', body(5))).toEqual({ ok: true, value: 6 });
    s.close();
  });

  test('a damaged record in the middle is skipped and counted; the records after it survive', () => {
    const dir = tmp();
    let s = open(options(dir, { segmentBytes: 64 * 1024, maxBytes: 256 * 1024 }));
    for (let i = 0; i < 5; i++) s.append('alerts', body(i));
    s.close();
    const seg = path.join(dir, 'alerts', fs.readdirSync(path.join(dir, 'alerts')).find((n) => n.startsWith('seg-'))!);
    const buf = fs.readFileSync(seg);
    const recordLength = buf.length / 5;
    buf[recordLength * 2 + 30] ^= 0xff; // one bit flip in record 3's body
    fs.writeFileSync(seg, buf);
    s = open(options(dir, { segmentBytes: 64 * 1024, maxBytes: 256 * 1024 }));
    const r = s.read('alerts', 1, 100, 1 << 20);
    expect(r.ok && numbers(r.value)).toEqual([0, 1, 3, 4]);
    expect(s.dropped().alerts.corrupt).toBe(1);
    s.close();
  });

  test('when full, telemetry is pushed out first (oldest first), then alerts are refused; all drops counted and kept across restarts', () => {
    const dir = tmp();
    const o = options(dir, { maxBytes: 16 * 1024, segmentBytes: 4096 });
    let s = open(o);
    let telemetry = 0;
    while (s.bytes() < 12 * 1024) expect(s.append('telemetry', body(telemetry++)).ok).toBe(true);
    // alerts keep being accepted while telemetry can make room
    let alerts = 0;
    while (s.stats().telemetry.pending > 0) expect(s.append('alerts', body(alerts++)).ok).toBe(true);
    const droppedTelemetry = s.dropped().telemetry.full;
    expect(droppedTelemetry).toBe(telemetry);
    expect(s.dropped().alerts.full).toBe(0);
    // now only alerts are left: the next ones are refused, the oldest kept
    let refused = 0;
    for (let i = 0; i < 50; i++) {
      const r = s.append('alerts', body(alerts + i));
      if (!r.ok) {
        expect(r.error.code).toBe('spool-full');
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(0);
    expect(s.dropped().alerts.full).toBe(refused);
    const kept = s.read('alerts', 1, 1000, 1 << 20);
    expect(kept.ok && numbers(kept.value)[0]).toBe(0);
    // new telemetry while full of alerts is refused too
    expect(s.append('telemetry', body(-1))).toEqual({ ok: false, error: expect.objectContaining({ code: 'spool-full' }) });
    expect(s.bytes()).toBeLessThanOrEqual(o.maxBytes);
    s.close();
    s = open(o);
    expect(s.dropped()).toEqual({
      alerts: { full: refused, corrupt: 0, tooLarge: 0 },
      telemetry: { full: droppedTelemetry + 1, corrupt: 0, tooLarge: 0 },
    });
    s.close();
  });

  test('a record larger than the limit is refused and counted', () => {
    const s = open(options(tmp()));
    expect(s.append('alerts', Buffer.alloc(3000, 0x61))).toEqual({ ok: false, error: expect.objectContaining({ code: 'record-too-large' }) });
    expect(s.dropped().alerts.tooLarge).toBe(1);
    s.close();
  });

  test('a torn cursor update falls back to the previous one (records are sent again, never lost)', () => {
    const dir = tmp();
    let s = open(options(dir));
    for (let i = 0; i < 10; i++) s.append('alerts', body(i));
    s.acknowledge('alerts', 1, 3);
    s.acknowledge('alerts', 4, 5);
    s.close();
    const cursor = path.join(dir, 'alerts', 'cursor');
    const raw = fs.readFileSync(cursor);
    // the newest slot holds watermark 5: damage it
    const newest = raw.readBigUInt64LE(8) > raw.readBigUInt64LE(64 + 8) ? 0 : 64;
    raw[newest + 20] ^= 0xff;
    fs.writeFileSync(cursor, raw);
    s = open(options(dir));
    expect(s.watermark('alerts')).toBe(3);
    expect(s.pending('alerts')).toBe(7);
    s.close();
  });

  test('the epoch survives restarts; a new spool directory gets a new one', () => {
    const dir = tmp();
    const a = open(options(dir));
    const epoch = a.epoch;
    a.close();
    const b = open(options(dir));
    expect(b.epoch).toBe(epoch);
    b.close();
    const c = open(options(tmp()));
    expect(c.epoch).not.toBe(epoch);
    c.close();
  });

  test('fsync "always" and "interval" write the same records', () => {
    for (const fsync of ['always', 'interval'] as const) {
      const dir = tmp();
      let s = open(options(dir, { fsync, fsyncIntervalMs: 10 }));
      for (let i = 0; i < 20; i++) s.append('alerts', body(i));
      s.close();
      s = open(options(dir, { fsync }));
      expect(s.pending('alerts')).toBe(20);
      s.close();
    }
  });

  test('bad options are refused with the key named', () => {
    const r = Spool.open(options('relative/dir', { maxBytes: 100 }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.message).toMatch(/hub\.spool: directory "relative\/dir" must be absolute; maxBytes/);
  });

  test('a queue keeps 100k records and recovers them in order', () => {
    const dir = tmp();
    const q = SegmentQueue.open({ directory: dir, segmentBytes: 1024 * 1024, fsync: 'never' });
    if (!q.ok) throw new Error(q.error.message);
    const rec = Buffer.from(JSON.stringify({ alert: 'y'.repeat(200) }));
    for (let i = 0; i < 100_000; i++) q.value.append(rec);
    q.value.close();
    const started = Date.now();
    const again = SegmentQueue.open({ directory: dir, segmentBytes: 1024 * 1024, fsync: 'never' });
    if (!again.ok) throw new Error(again.error.message);
    const elapsed = Date.now() - started;
    expect(again.value.pending()).toBe(100_000);
    expect(again.value.lastSequence()).toBe(100_000);
    const tail = again.value.read(99_990, 100, 1 << 20);
    expect(tail.ok && tail.value.map((r) => r.seq)).toEqual(Array.from({ length: 11 }, (_, i) => 99_990 + i));
    again.value.close();
    // recovery is a scan: a few seconds at most even on a small board
    expect(elapsed).toBeLessThan(5000);
  });
});
