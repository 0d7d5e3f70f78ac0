// Telling the service manager (systemd) what the agent is doing, over the
// sd_notify(3) protocol: READY=1 once enforcement is in force (the unit is
// Type=notify, so units ordered after edgeward start only then), WATCHDOG=1
// at half of WatchdogSec (a hung agent is restarted), RELOADING=1/READY=1
// around a reload and STOPPING=1 on the way out. Without NOTIFY_SOCKET (run
// by hand, in a container) every call is a no-op.

/** Sends one datagram; the native addon's sdNotify by default. */
export type NotifySender = (socketPath: string, message: string) => void;

export interface ServiceManagerOptions {
  /** default: process.env; NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID are read from it */
  env?: NodeJS.ProcessEnv;
  /** default: the addon's sdNotify (loaded only when NOTIFY_SOCKET is set) */
  send?: NotifySender;
  /** default: process.pid; WATCHDOG_PID naming another process means the watchdog is not ours */
  pid?: number;
  /**
   * Asked before every watchdog ping: false skips the ping, so systemd
   * restarts an agent that runs but no longer enforces. Default: always healthy.
   */
  healthy?: () => boolean;
  /** a failed send (never thrown: losing systemd's socket must not stop enforcement) */
  onError?: (err: Error) => void;
  /** default CLOCK_MONOTONIC in µs, for RELOADING=1's MONOTONIC_USEC */
  monotonicUsec?: () => bigint;
}

/** The environment variables of the protocol; removed from process.env so children do not inherit them. */
const NOTIFY_VARIABLES = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'];

export class ServiceManager {
  /** the notification socket, or undefined when not run by a service manager */
  readonly socketPath: string | undefined;
  /** how often the watchdog is pinged (half of WATCHDOG_USEC), or undefined without a watchdog */
  readonly watchdogIntervalMs: number | undefined;
  private readonly send: NotifySender | undefined;
  private readonly opts: ServiceManagerOptions;
  private watchdogTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(opts: ServiceManagerOptions = {}) {
    this.opts = opts;
    const env = opts.env ?? process.env;
    const socketPath = env.NOTIFY_SOCKET || undefined;
    this.socketPath = socketPath;
    this.watchdogIntervalMs = socketPath ? watchdogInterval(env, opts.pid ?? process.pid) : undefined;
    if (env === process.env) for (const v of NOTIFY_VARIABLES) delete process.env[v];
    if (socketPath) this.send = opts.send ?? defaultSender();
  }

  /** true when a service manager listens (NOTIFY_SOCKET was set) */
  get enabled(): boolean {
    return this.socketPath !== undefined;
  }

  /** Enforcement is in force: READY=1 (and the status line); starts the watchdog pings. */
  notifyReady(status?: string): void {
    this.notify(['READY=1', ...statusLine(status)]);
    this.startWatchdog();
  }

  /** A reload starts; follow with notifyReady() when it is done. */
  notifyReloading(status?: string): void {
    const now = (this.opts.monotonicUsec ?? monotonicUsec)();
    this.notify(['RELOADING=1', `MONOTONIC_USEC=${now}`, ...statusLine(status)]);
  }

  /** The agent is detaching and exiting; the watchdog stops. */
  notifyStopping(status?: string): void {
    this.stopWatchdog();
    this.stopped = true;
    this.notify(['STOPPING=1', ...statusLine(status)]);
  }

  /** A free-form status line (`systemctl status` shows it). */
  notifyStatus(status: string): void {
    this.notify(statusLine(status));
  }

  /** Stops the watchdog timer (also done by notifyStopping). */
  stopWatchdog(): void {
    if (this.watchdogTimer) clearInterval(this.watchdogTimer);
    this.watchdogTimer = undefined;
  }

  private startWatchdog(): void {
    if (this.watchdogIntervalMs === undefined || this.watchdogTimer || this.stopped) return;
    this.pingWatchdog();
    // Not unref'd on purpose: the pings come from the event loop, so a
    // blocked loop misses them and systemd restarts the agent.
    this.watchdogTimer = setInterval(() => this.pingWatchdog(), this.watchdogIntervalMs);
  }

  private pingWatchdog(): void {
    if (this.opts.healthy && !this.opts.healthy()) return;
    this.notify(['WATCHDOG=1']);
  }

  private notify(lines: string[]): void {
    if (!this.socketPath || !this.send || lines.length === 0) return;
    try {
      this.send(this.socketPath, lines.join('\n'));
    } catch (err) {
      this.opts.onError?.(err as Error);
    }
  }
}

/** Half of WATCHDOG_USEC in ms (as sd_watchdog_enabled(3) advises), or undefined. */
export function watchdogInterval(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usecText = env.WATCHDOG_USEC;
  if (!usecText) return undefined;
  if (!/^[0-9]+$/.test(usecText)) return undefined;
  const usec = Number(usecText);
  if (!Number.isSafeInteger(usec) || usec <= 0) return undefined;
  const pidText = env.WATCHDOG_PID;
  if (pidText && Number(pidText) !== pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

function statusLine(status: string | undefined): string[] {
  // One line: a newline would start a new (possibly meaningful) assignment.
  return status === undefined ? [] : [`STATUS=${status.replace(/[\r\n]+/g, ' ')}`];
}

function monotonicUsec(): bigint {
  // process.hrtime is CLOCK_MONOTONIC on Linux, the clock systemd compares with.
  return process.hrtime.bigint() / 1000n;
}

function defaultSender(): NotifySender {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { loadNative } = require('./native') as typeof import('./native');
  const native = loadNative();
  return (socketPath, message) => native.sdNotify(socketPath, message);
}
