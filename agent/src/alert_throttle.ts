// Alert throttling per (policy, container): within each window the first
// maxAlerts alerts of a key pass; the rest are counted, and when the window
// ends one summary alert says how many were suppressed (and of which
// operation/resource), with the last suppressed alert's fields. Nothing is
// dropped without a trace (KubeArmor #2789 drops real alerts once its
// threshold is reached).
import type { KubeArmorAlert } from './alerts';
import type { AlertThrottleConfig } from './config';

/** A summary alert: the last suppressed alert, plus what it stands for. */
export interface ThrottleSummaryFields {
  /** alerts of this (policy, container) not written one by one in this window */
  Suppressed: number;
  /** UpdatedTime of the first suppressed alert */
  SuppressedSince: string;
  /** "Operation Resource" -> count; at most MAX_SUMMARY_RESOURCES entries, the rest under OTHER_RESOURCES */
  SuppressedResources: Record<string, number>;
}

export type ThrottleSummaryAlert = KubeArmorAlert & ThrottleSummaryFields;

/** What the throttle reads of a record: alerts, and telemetry logs (no PolicyName: one window per container). */
export interface ThrottledRecord {
  PolicyName?: string;
  ContainerID?: string;
  ContainerName?: string;
  Operation: string;
  Resource: string;
  UpdatedTime: string;
}

/** The Message of a summary record (the default names the policy). */
export type SummaryMessage = (last: ThrottledRecord, suppressed: number, since: string, config: AlertThrottleConfig) => string;

export const MAX_SUMMARY_RESOURCES = 16;
export const OTHER_RESOURCES = '(other)';
/** windows kept without suppressed alerts before expired ones are swept */
const SWEEP_ABOVE = 1024;

export interface ThrottleStats {
  /** alerts passed on one by one */
  passed: number;
  /** alerts counted into a summary */
  suppressed: number;
  /** summary alerts emitted */
  summaries: number;
}

export interface ThrottleTimers {
  now(): number;
  /** calls fn after ms; must not keep the process alive */
  schedule(fn: () => void, ms: number): { cancel(): void };
}

const realTimers: ThrottleTimers = {
  now: () => Date.now(),
  schedule(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

interface Window<R> {
  start: number;
  passed: number;
  suppressed: number;
  firstSuppressed?: string;
  last?: R;
  resources: Map<string, number>;
  timer?: { cancel(): void };
}

export function throttleKey(record: ThrottledRecord): string {
  return `${record.PolicyName ?? ''}\u0000${record.ContainerID ?? ''}`;
}

export function isThrottleSummary<R extends ThrottledRecord>(record: R): record is R & ThrottleSummaryFields {
  return typeof (record as Partial<ThrottleSummaryFields>).Suppressed === 'number';
}

/** Throttles alerts (the default) or any record with the ThrottledRecord fields. */
export class AlertThrottle<R extends ThrottledRecord = KubeArmorAlert> {
  private readonly windows = new Map<string, Window<R>>();
  private readonly counters: ThrottleStats = { passed: 0, suppressed: 0, summaries: 0 };

  constructor(
    private readonly config: AlertThrottleConfig,
    private readonly deliver: (record: R | (R & ThrottleSummaryFields)) => void,
    private readonly timers: ThrottleTimers = realTimers,
    private readonly message: SummaryMessage = policySummaryMessage,
  ) {}

  offer(alert: R): void {
    if (!this.config.enabled) {
      this.counters.passed++;
      this.deliver(alert);
      return;
    }
    const now = this.timers.now();
    const key = throttleKey(alert);
    let w = this.windows.get(key);
    if (w && now - w.start >= this.config.windowMs) {
      // the timer is late (a busy event loop): summarise before the new window starts
      this.endWindow(key);
      w = undefined;
    }
    if (!w) {
      if (this.windows.size >= SWEEP_ABOVE) this.sweep(now);
      w = { start: now, passed: 0, suppressed: 0, resources: new Map() };
      this.windows.set(key, w);
    }
    if (w.passed < this.config.maxAlerts) {
      w.passed++;
      this.counters.passed++;
      this.deliver(alert);
      return;
    }
    w.suppressed++;
    this.counters.suppressed++;
    w.firstSuppressed ??= alert.UpdatedTime;
    w.last = alert;
    const what = `${alert.Operation} ${alert.Resource}`;
    const bucket = w.resources.has(what) || w.resources.size < MAX_SUMMARY_RESOURCES ? what : OTHER_RESOURCES;
    w.resources.set(bucket, (w.resources.get(bucket) ?? 0) + 1);
    if (!w.timer) w.timer = this.timers.schedule(() => this.endWindow(key), Math.max(0, w.start + this.config.windowMs - now));
  }

  /** Emits every pending summary now (before the outputs close). */
  flush(): void {
    for (const key of [...this.windows.keys()]) this.endWindow(key);
  }

  stats(): ThrottleStats {
    return { ...this.counters };
  }

  private endWindow(key: string): void {
    const w = this.windows.get(key);
    if (!w) return;
    this.windows.delete(key);
    w.timer?.cancel();
    if (w.suppressed === 0 || !w.last) return;
    this.counters.summaries++;
    this.deliver(summaryRecord(w.last, w.suppressed, w.firstSuppressed ?? w.last.UpdatedTime, w.resources, this.config, this.message));
  }

  /** Drops windows that ended with nothing suppressed (those with suppressed alerts end on their timer). */
  private sweep(now: number): void {
    for (const [key, w] of this.windows) {
      if (w.suppressed === 0 && now - w.start >= this.config.windowMs) this.windows.delete(key);
    }
  }
}

function policySummaryMessage(last: ThrottledRecord, suppressed: number, since: string, config: AlertThrottleConfig): string {
  const where = last.ContainerName ? `container ${last.ContainerName}` : last.ContainerID ? `container ${last.ContainerID}` : 'the host';
  return `${suppressed} more alert(s) of policy ${last.PolicyName} on ${where} since ${since} were not written one by one (alerts.throttle: at most ${config.maxAlerts} per ${config.windowMs} ms); this is the last of them`;
}

/** The last suppressed record with what it stands for. */
export function summaryRecord<R extends ThrottledRecord>(
  last: R,
  suppressed: number,
  since: string,
  resources: Map<string, number>,
  config: AlertThrottleConfig,
  message: SummaryMessage = policySummaryMessage,
): R & ThrottleSummaryFields {
  return {
    ...last,
    Message: message(last, suppressed, since, config),
    Suppressed: suppressed,
    SuppressedSince: since,
    SuppressedResources: Object.fromEntries(resources),
  };
}
