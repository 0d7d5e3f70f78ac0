// Telemetry logs (KubeArmor's "visibility"): with config `visibility` on for
// a group, every monitored exec, open or socket call becomes a log record
// with KubeArmor's field names, Type "HostLog" on the host and
// "ContainerLog" (with the container's identity) in a container, Result
// "Passed" or the error text. KubeArmor turns this on per node or pod with
// the kubearmor-visibility annotation ("process,file,network"); edgeward
// turns it on for the whole node (host and containers) in its config.
//
// Records are throttled like alerts (alerts.throttle, per container / host)
// and go to the alert outputs or visibility.logFile, `edgeward logs --type
// log`, and the hub as telemetry (dropped before alerts when the spool fills).
import * as os from 'os';
import { NetOp } from './abi';
import { BootClock, ContainerFields, containerFields, ContainerResolver, describeOpenFlags, isoMicros, KubeArmorAlert, namespacePid, namespacePids } from './alerts';
import { AlertThrottle, SummaryMessage, ThrottleStats, ThrottleSummaryFields } from './alert_throttle';
import type { AlertThrottleConfig, RotatingFileConfig } from './config';
import type { ExecEvent, FileOpenEvent, NetEvent } from './events';
import type { ProcessTable } from './process_table';

export interface VisibilityConfig {
  /** exec: Operation Process */
  process: boolean;
  /** open/openat/openat2: Operation File */
  file: boolean;
  /** socket/connect/bind/listen/accept: Operation Network */
  network: boolean;
  /** absent: log records go to the alert outputs (stdout / alerts.file) */
  logFile?: RotatingFileConfig;
}

export const DEFAULT_VISIBILITY: VisibilityConfig = { process: false, file: false, network: false };

export const LOG_TYPES = ['HostLog', 'ContainerLog'] as const;
export type LogType = (typeof LOG_TYPES)[number];

/** A telemetry log record (KubeArmor's Log message; no policy, action or enforcer). */
export interface KubeArmorLog extends ContainerFields {
  Timestamp: number;
  UpdatedTime: string;
  HostName: string;
  HostPPID: number;
  HostPID: number;
  PPID: number;
  PID: number;
  UID: number;
  ParentProcessName: string;
  ProcessName: string;
  Type: LogType;
  Source: string;
  Operation: 'Process' | 'File' | 'Network';
  Resource: string;
  Data: string;
  Result: string;
}

/** A throttle summary of log records: the last one suppressed, and what it stands for. */
export type KubeArmorLogSummary = KubeArmorLog & ThrottleSummaryFields & { Message: string };

/** Everything the agent's outputs carry. */
export type KubeArmorRecord = KubeArmorAlert | KubeArmorLog;

export function isLogRecord(r: { Type: string }): r is KubeArmorLog {
  return r.Type === 'HostLog' || r.Type === 'ContainerLog';
}

export function visibilityEnabled(v: VisibilityConfig): boolean {
  return v.process || v.file || v.network;
}

/** strerror() text of the errors these calls commonly return; others by their errno name. */
const ERRNO_TEXT: Record<number, string> = {
  1: 'Operation not permitted',
  2: 'No such file or directory',
  4: 'Interrupted system call',
  9: 'Bad file descriptor',
  11: 'Resource temporarily unavailable',
  12: 'Cannot allocate memory',
  13: 'Permission denied',
  17: 'File exists',
  20: 'Not a directory',
  21: 'Is a directory',
  22: 'Invalid argument',
  23: 'Too many open files in system',
  24: 'Too many open files',
  26: 'Text file busy',
  30: 'Read-only file system',
  36: 'File name too long',
  40: 'Too many levels of symbolic links',
  93: 'Protocol not supported',
  97: 'Address family not supported by protocol',
  98: 'Address already in use',
  99: 'Cannot assign requested address',
  101: 'Network is unreachable',
  104: 'Connection reset by peer',
  110: 'Connection timed out',
  111: 'Connection refused',
  113: 'No route to host',
  115: 'Operation now in progress',
};

const ERRNO_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

/** KubeArmor's Result: "Passed", or the error of a call that failed (ret = -errno). */
export function resultText(ret: number): string {
  if (ret >= 0) return 'Passed';
  const errno = -ret;
  return ERRNO_TEXT[errno] ?? ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

const FAMILIES: Record<number, string> = { 0: 'AF_UNSPEC', 1: 'AF_UNIX', 2: 'AF_INET', 10: 'AF_INET6', 16: 'AF_NETLINK', 17: 'AF_PACKET' };
const SOCKET_TYPES: Record<number, string> = { 1: 'SOCK_STREAM', 2: 'SOCK_DGRAM', 3: 'SOCK_RAW', 4: 'SOCK_RDM', 5: 'SOCK_SEQPACKET', 10: 'SOCK_PACKET' };
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;

export const familyName = (f: number): string => FAMILIES[f] ?? `AF_${f}`;

/** socket(2)'s type argument as KubeArmor prints it: SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC. */
export function socketTypeName(type: number): string {
  const base = type & 0xf;
  const out = [SOCKET_TYPES[base] ?? `SOCK_${base}`];
  if (type & SOCK_NONBLOCK) out.push('SOCK_NONBLOCK');
  if (type & SOCK_CLOEXEC) out.push('SOCK_CLOEXEC');
  return out.join('|');
}

const NET_SYSCALLS: Record<number, string> = {
  [NetOp.Socket]: 'SYS_SOCKET',
  [NetOp.Connect]: 'SYS_CONNECT',
  [NetOp.Bind]: 'SYS_BIND',
  [NetOp.Listen]: 'SYS_LISTEN',
  [NetOp.Accept]: 'SYS_ACCEPT',
};

/** Resource and Data of a network call, after KubeArmor's (sockaddr fields for address calls). */
export function describeNet(ev: Pick<NetEvent, 'op' | 'family' | 'sockType' | 'protocol' | 'port' | 'addr'>): { resource: string; data: string } {
  const data = `syscall=${NET_SYSCALLS[ev.op] ?? `SYS_NET_${ev.op}`}`;
  if (ev.op === NetOp.Socket) {
    return { resource: `domain=${familyName(ev.family)} type=${socketTypeName(ev.sockType)} protocol=${ev.protocol}`, data };
  }
  const parts = [`sa_family=${familyName(ev.family)}`];
  const v6 = ev.family === 10;
  if (ev.family === 2 || v6) {
    parts.push(`${v6 ? 'sin6_port' : 'sin_port'}=${ev.port}`);
    if (ev.addr) parts.push(`${v6 ? 'sin6_addr' : 'sin_addr'}=${ev.addr}`);
  }
  return { resource: parts.join(' '), data };
}

/** How many namespace pids LogBuilder remembers (a log for a container process needs its pid inside). */
const NS_PID_CACHE = 4096;

/** Builds log records from monitor events. */
export class LogBuilder {
  private readonly nsPids = new Map<number, number>();

  constructor(
    private readonly hostName: string,
    private readonly clock: BootClock,
    private readonly processes: ProcessTable,
    private readonly container: ContainerResolver,
  ) {}

  /** An exec: ProcessName is the new program, Source the caller's image (`callerExe`, from before the exec). */
  exec(ev: ExecEvent, callerExe: string | undefined): KubeArmorLog {
    return this.record(ev, 'Process', ev.path, 'syscall=SYS_EXECVE', 'Passed', callerExe || ev.comm, ev.path);
  }

  open(ev: FileOpenEvent): KubeArmorLog {
    const exe = this.processes.get(ev.pid)?.exe || ev.comm;
    return this.record(ev, 'File', ev.path, `syscall=SYS_OPEN flags=${describeOpenFlags(ev.flags)}`, resultText(ev.ret), exe, exe);
  }

  net(ev: NetEvent): KubeArmorLog {
    const exe = this.processes.get(ev.pid)?.exe || ev.comm;
    const { resource, data } = describeNet(ev);
    return this.record(ev, 'Network', resource, data, resultText(ev.ret), exe, exe);
  }

  /** The process exited: its pid may be reused. */
  forget(pid: number): void {
    this.nsPids.delete(pid);
  }

  private record(
    ev: ExecEvent | FileOpenEvent | NetEvent,
    operation: KubeArmorLog['Operation'],
    resource: string,
    data: string,
    result: string,
    source: string,
    processName: string,
  ): KubeArmorLog {
    const c = this.container(ev.mntNs, ev.pidNs, ev.pid);
    const wall = this.clock.wallMs(ev.timestampNs);
    const ns = c ? namespacePids(ev, (hostPid) => this.namespacePid(hostPid)) : ev;
    return {
      Timestamp: Math.floor(wall / 1000),
      UpdatedTime: isoMicros(wall),
      HostName: this.hostName,
      ...containerFields(c),
      HostPPID: ev.ppid,
      HostPID: ev.pid,
      PPID: ns.ppid,
      PID: ns.pid,
      UID: ev.uid,
      ParentProcessName: this.processes.get(ev.ppid)?.exe ?? '',
      ProcessName: processName,
      Type: c ? 'ContainerLog' : 'HostLog',
      Source: source,
      Operation: operation,
      Resource: resource,
      Data: data,
      Result: result,
    };
  }

  /**
   * PID inside the container from /proc, for records that do not carry it
   * (last resort, see namespacePids); cached per host pid until its exit
   * (every record would read /proc otherwise).
   */
  private namespacePid(hostPid: number): number | undefined {
    const known = this.nsPids.get(hostPid);
    if (known !== undefined) return known;
    const ns = namespacePid(hostPid);
    if (ns === undefined) return undefined; // already gone: the host pid, as alerts do
    if (this.nsPids.size >= NS_PID_CACHE) this.nsPids.clear();
    this.nsPids.set(hostPid, ns);
    return ns;
  }
}

const logSummaryMessage: SummaryMessage = (last, suppressed, since, config) =>
  `${suppressed} more log record(s) of ${last.ContainerName ? `container ${last.ContainerName}` : 'the host'} since ${since} were not written one by one (alerts.throttle: at most ${config.maxAlerts} per ${config.windowMs} ms); this is the last of them`;

/**
 * The alert throttle applied to log records (per container / the host, its
 * own windows and counters: logs never use up the alerts' allowance). A
 * summary is the last suppressed record with Suppressed, SuppressedSince,
 * SuppressedResources and a Message saying what was left out.
 */
export class LogThrottle {
  private readonly throttle: AlertThrottle<KubeArmorLog>;

  constructor(config: AlertThrottleConfig, deliver: (record: KubeArmorLog | KubeArmorLogSummary) => void) {
    // A log has no PolicyName, so every log of one container (or of the
    // host) shares one window; the summary's Message names no policy.
    this.throttle = new AlertThrottle<KubeArmorLog>(config, (log) => deliver(log as KubeArmorLog | KubeArmorLogSummary), undefined, logSummaryMessage);
  }

  offer(log: KubeArmorLog): void {
    this.throttle.offer(log);
  }

  flush(): void {
    this.throttle.flush();
  }

  stats(): ThrottleStats {
    return this.throttle.stats();
  }
}
