import { Backoff } from '../../agent/src/hub/backoff';

/** A deterministic generator (mulberry32) so schedules are reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const opts = { initialDelayMs: 1000, maxDelayMs: 30_000, multiplier: 2, resetAfterMs: 10_000 };

describe('reconnect backoff', () => {
  test('the ceiling doubles per failed attempt up to the cap', () => {
    const b = new Backoff(opts, () => 0.999999);
    const delays = Array.from({ length: 8 }, () => b.next());
    expect(delays.map((d) => Math.round(d / 1000))).toEqual([1, 2, 4, 8, 16, 30, 30, 30]);
  });

  test('every delay lies in [0, ceiling) (full jitter)', () => {
    const b = new Backoff(opts, seeded(1));
    for (let i = 0; i < 200; i++) {
      const ceiling = b.ceiling();
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(ceiling);
    }
  });

  test('a connection that stayed up long enough resets the schedule; a flapping one does not', () => {
    const b = new Backoff(opts, () => 0.5);
    b.next();
    b.next();
    b.next();
    expect(b.ceiling()).toBe(8000);
    b.connectionEnded(500); // accepted then dropped at once
    expect(b.ceiling()).toBe(8000);
    b.connectionEnded(10_000);
    expect(b.ceiling()).toBe(1000);
  });

  test('a thousand nodes losing the broker at once spread their reconnects (no stampede)', () => {
    // first retry of 1000 nodes: bucket per 100 ms of the 1 s window
    const buckets = new Array(10).fill(0);
    for (let n = 0; n < 1000; n++) buckets[Math.floor(new Backoff(opts, seeded(n + 1)).next() / 100)]++;
    // uniform would be 100 per bucket; no bucket gets more than twice that
    expect(Math.max(...buckets)).toBeLessThan(200);
    expect(Math.min(...buckets)).toBeGreaterThan(40);
    // and nodes that keep failing spread over wider windows: after 5 failures, 16 s
    const fifth = Array.from({ length: 1000 }, (_, n) => {
      const b = new Backoff(opts, seeded(10_000 + n));
      for (let i = 0; i < 4; i++) b.next();
      return b.next();
    });
    expect(Math.max(...fifth)).toBeGreaterThan(14_000);
    expect(fifth.filter((d) => d < 1000).length).toBeLessThan(120);
  });

  test('a huge attempt count stays at the cap (no overflow to NaN)', () => {
    const b = new Backoff(opts, () => 0.5);
    for (let i = 0; i < 5000; i++) b.next();
    expect(b.next()).toBe(15_000);
  });
});
