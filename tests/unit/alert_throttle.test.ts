import type { KubeArmorAlert } from '../../agent/src/alerts';
import { AlertThrottle, isThrottleSummary, MAX_SUMMARY_RESOURCES, OTHER_RESOURCES, ThrottleSummaryAlert, ThrottleTimers } from '../../agent/src/alert_throttle';

function alert(over: Partial<KubeArmorAlert> = {}): KubeArmorAlert {
  return {
    Timestamp: 1,
    UpdatedTime: '2026-11-23T00:00:00.000000Z',
    HostName: 'h',
    HostPPID: 1,
    HostPID: 2,
    PPID: 1,
    PID: 2,
    UID: 0,
    ParentProcessName: '/bin/sh',
    ProcessName: '/bin/x',
    PolicyName: 'p',
    Severity: '1',
    Tags: '',
    ATags: [],
    Message: '',
    Type: 'MatchedHostPolicy',
    Source: '/bin/sh',
    Operation: 'Process',
    Resource: '/bin/x',
    Data: '',
    Enforcer: 'fanotify',
    Action: 'Block',
    Result: 'Permission denied',
    ...over,
  };
}

/** A clock the test moves, with timers that fire when it passes their time. */
class FakeTimers implements ThrottleTimers {
  t = 0;
  private pending: Array<{ at: number; fn: () => void; cancelled: boolean }> = [];
  now(): number {
    return this.t;
  }
  schedule(fn: () => void, ms: number) {
    const entry = { at: this.t + ms, fn, cancelled: false };
    this.pending.push(entry);
    return { cancel: () => void (entry.cancelled = true) };
  }
  advance(ms: number): void {
    this.t += ms;
    const due = this.pending.filter((p) => p.at <= this.t && !p.cancelled);
    this.pending = this.pending.filter((p) => !due.includes(p));
    for (const p of due) p.fn();
  }
  scheduled(): number {
    return this.pending.filter((p) => !p.cancelled).length;
  }
}

const config = { enabled: true, maxAlerts: 3, windowMs: 1000 };

describe('AlertThrottle', () => {
  test('passes maxAlerts per window, then counts; the summary at the end of the window carries the count and the last alert', () => {
    const timers = new FakeTimers();
    const out: KubeArmorAlert[] = [];
    const t = new AlertThrottle(config, (a) => out.push(a), timers);
    for (let i = 0; i < 10; i++) t.offer(alert({ HostPID: 100 + i, UpdatedTime: `T${i}` }));
    expect(out.map((a) => a.HostPID)).toEqual([100, 101, 102]);
    timers.advance(999);
    expect(out).toHaveLength(3);
    timers.advance(1);
    expect(out).toHaveLength(4);
    const summary = out[3] as ThrottleSummaryAlert;
    expect(isThrottleSummary(summary)).toBe(true);
    expect(summary.Suppressed).toBe(7);
    expect(summary.SuppressedSince).toBe('T3');
    expect(summary.HostPID).toBe(109);
    expect(summary.PolicyName).toBe('p');
    expect(summary.SuppressedResources).toEqual({ 'Process /bin/x': 7 });
    expect(summary.Message).toMatch(/^7 more alert\(s\) of policy p on the host since T3/);
    expect(t.stats()).toEqual({ passed: 3, suppressed: 7, summaries: 1 });
    // the next window starts with a full budget
    for (let i = 0; i < 3; i++) t.offer(alert());
    expect(out).toHaveLength(7);
    expect(out.slice(4).some(isThrottleSummary)).toBe(false);
  });

  test('keys are (policy, container): another policy or container has its own budget', () => {
    const timers = new FakeTimers();
    const out: KubeArmorAlert[] = [];
    const t = new AlertThrottle(config, (a) => out.push(a), timers);
    for (let i = 0; i < 5; i++) {
      t.offer(alert());
      t.offer(alert({ PolicyName: 'q' }));
      t.offer(alert({ ContainerID: 'c1', ContainerName: 'web' }));
    }
    expect(out).toHaveLength(9);
    timers.advance(1000);
    const summaries = out.filter(isThrottleSummary);
    expect(summaries.map((s) => [s.PolicyName, s.ContainerID, s.Suppressed])).toEqual([
      ['p', undefined, 2],
      ['q', undefined, 2],
      ['p', 'c1', 2],
    ]);
    expect(summaries[2]!.Message).toContain('container web');
  });

  test('a window with nothing suppressed emits no summary and leaves no timer', () => {
    const timers = new FakeTimers();
    const out: KubeArmorAlert[] = [];
    const t = new AlertThrottle(config, (a) => out.push(a), timers);
    t.offer(alert());
    t.offer(alert());
    expect(timers.scheduled()).toBe(0);
    timers.advance(5000);
    expect(out).toHaveLength(2);
  });

  test('a late timer: the next alert after the window summarises first, then counts in a new window', () => {
    const timers = new FakeTimers();
    const out: KubeArmorAlert[] = [];
    const t = new AlertThrottle(config, (a) => out.push(a), timers);
    for (let i = 0; i < 5; i++) t.offer(alert());
    timers.t += 1500; // time passes without the timer firing (busy event loop)
    t.offer(alert({ HostPID: 7 }));
    expect(out).toHaveLength(5);
    expect((out[3] as ThrottleSummaryAlert).Suppressed).toBe(2);
    expect(out[4]!.HostPID).toBe(7);
    expect(isThrottleSummary(out[4]!)).toBe(false);
  });

  test('flush() emits pending summaries at once (agent stop)', () => {
    const timers = new FakeTimers();
    const out: KubeArmorAlert[] = [];
    const t = new AlertThrottle(config, (a) => out.push(a), timers);
    for (let i = 0; i < 4; i++) t.offer(alert());
    t.flush();
    expect(out.filter(isThrottleSummary).map((s) => s.Suppressed)).toEqual([1]);
    timers.advance(1000);
    expect(out).toHaveLength(4);
  });

  test('distinct resources are counted up to a limit, the rest together', () => {
    const timers = new FakeTimers();
    const out: KubeArmorAlert[] = [];
    const t = new AlertThrottle({ ...config, maxAlerts: 1 }, (a) => out.push(a), timers);
    t.offer(alert());
    const n = MAX_SUMMARY_RESOURCES + 5;
    for (let i = 0; i < n; i++) t.offer(alert({ Resource: `/f${i}`, Operation: 'File' }));
    t.flush();
    const s = out.find(isThrottleSummary)!;
    expect(s.Suppressed).toBe(n);
    expect(Object.keys(s.SuppressedResources)).toHaveLength(MAX_SUMMARY_RESOURCES + 1);
    expect(s.SuppressedResources[OTHER_RESOURCES]).toBe(5);
    expect(Object.values(s.SuppressedResources).reduce((a, b) => a + b, 0)).toBe(n);
  });

  test('disabled: everything passes', () => {
    const out: KubeArmorAlert[] = [];
    const t = new AlertThrottle({ ...config, enabled: false }, (a) => out.push(a), new FakeTimers());
    for (let i = 0; i < 50; i++) t.offer(alert());
    expect(out).toHaveLength(50);
    expect(out.some(isThrottleSummary)).toBe(false);
  });
});
