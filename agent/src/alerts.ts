// Turns enforcer decisions into alerts with KubeArmor's field names, so
// existing KubeArmor consumers (karmor, SIEM parsers) read them unchanged.
import * as fs from 'fs';
import { Action, EnforcerCode, OperationCode } from './abi';
import { lsmPathOperation } from './events';
import type { RuleMeta } from './policy/types';
import type { ProcessTable } from './process_table';

export interface KubeArmorAlert {
  Timestamp: number;
  UpdatedTime: string;
  HostName: string;
  /** container fields: present when the process runs in a known container */
  NamespaceName?: string;
  ContainerID?: string;
  ContainerName?: string;
  ContainerImage?: string;
  Labels?: string;
  HostPPID: number;
  HostPID: number;
  PPID: number;
  PID: number;
  UID: number;
  ParentProcessName: string;
  ProcessName: string;
  PolicyName: string;
  Severity: string;
  Tags: string;
  ATags: string[];
  Message: string;
  Type: 'MatchedHostPolicy' | 'MatchedPolicy';
  Source: string;
  Operation: 'Process' | 'File' | 'Network' | 'Capabilities';
  Resource: string;
  Data: string;
  Enforcer: string;
  Action: 'Block' | 'Audit';
  Result: string;
}

/** The fields of a decision record the alert needs (see agent/src/events.ts). */
export interface DecisionFacts {
  timestampNs: bigint;
  pid: number;
  ppid: number;
  uid: number;
  comm: string;
  ruleId: number;
  action: number;
  operation: number;
  enforcer: number;
  ret: number;
  flags: number;
  resource: string;
  exe: string;
  /** mount and pid namespaces of the acting process, when the record carries them */
  mntNs?: number;
  pidNs?: number;
  /**
   * pid / ppid in the acting process's own pid namespace, as the record
   * carries them (events.ts EventHeader); nsPid absent or 0: not known.
   */
  nsPid?: number;
  nsPpid?: number;
}

/** What the alert needs of a container (agent/src/containers.ts). */
export interface ContainerFacts {
  id: string;
  name: string;
  image: string;
  labels: Record<string, string>;
  namespaceName: string;
}

export type ContainerResolver = (
  mntNs: number | undefined,
  pidNs: number | undefined,
  hostPid: number,
) => ContainerFacts | undefined;

/**
 * PID and PPID as a process in a container sees them (KubeArmor's PID/PPID).
 * The record's own numbers, read by the kernel (or the fanotify answerer)
 * while the process was there, when it carries them (nsPid > 0; nsPpid 0
 * then means the parent is outside the namespace); otherwise, as a last
 * resort for records without them (the audit-only backend's matches), /proc
 * now, which is wrong once the process has exited (the host pid is kept).
 */
export function namespacePids(
  r: { pid: number; ppid: number; nsPid?: number; nsPpid?: number },
  fromProc: (hostPid: number) => number | undefined = namespacePid,
): { pid: number; ppid: number } {
  if (r.nsPid !== undefined && r.nsPid > 0) return { pid: r.nsPid, ppid: r.nsPpid ?? 0 };
  return { pid: fromProc(r.pid) ?? r.pid, ppid: fromProc(r.ppid) ?? r.ppid };
}

/** A process's pid inside its own pid namespace (last NSpid field), or undefined when gone. */
export function namespacePid(hostPid: number, procRoot = '/proc'): number | undefined {
  try {
    const m = /^NSpid:\t([\d\t ]+)$/m.exec(fs.readFileSync(`${procRoot}/${hostPid}/status`, 'latin1'));
    if (!m) return undefined;
    const ids = m[1].trim().split(/\s+/);
    return Number(ids[ids.length - 1]);
  } catch {
    return undefined;
  }
}

/** KubeArmor prints labels as "k=v,k2=v2"; sorted for stable output. */
export function formatLabels(labels: Record<string, string>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');
}

const OPERATION_NAMES: Record<number, KubeArmorAlert['Operation']> = {
  [OperationCode.Process]: 'Process',
  [OperationCode.File]: 'File',
  [OperationCode.Network]: 'Network',
  [OperationCode.Capabilities]: 'Capabilities',
};

const ENFORCER_NAMES: Record<number, string> = {
  [EnforcerCode.CgroupBpf]: 'cgroup-bpf',
  [EnforcerCode.Fanotify]: 'fanotify',
  [EnforcerCode.BpfLsm]: 'BPFLSM',
  [EnforcerCode.Monitor]: 'eBPF Monitor',
};

/** open(2) access mode and the flags that make an open a write. */
export function describeOpenFlags(flags: number): string {
  const names = ['O_RDONLY', 'O_WRONLY', 'O_RDWR'];
  const out = [names[flags & 3] ?? 'O_ACCMODE'];
  const bits: Array<[number, string]> = [
    [0o100, 'O_CREAT'],
    [0o1000, 'O_TRUNC'],
    [0o2000, 'O_APPEND'],
  ];
  for (const [bit, name] of bits) if (flags & bit) out.push(name);
  return out.join('|');
}

/** Converts CLOCK_BOOTTIME nanoseconds to wall-clock milliseconds. */
export class BootClock {
  private readonly bootEpochMs: number;

  constructor(uptimeSeconds: number, nowMs = Date.now()) {
    this.bootEpochMs = nowMs - uptimeSeconds * 1000;
  }

  wallMs(boottimeNs: bigint): number {
    return this.bootEpochMs + Number(boottimeNs / 1000n) / 1000;
  }
}

export function isoMicros(ms: number): string {
  // toISOString has millisecond precision; KubeArmor prints microseconds.
  const iso = new Date(Math.floor(ms)).toISOString();
  const micros = Math.floor((ms % 1) * 1000)
    .toString()
    .padStart(3, '0');
  return `${iso.slice(0, 23)}${micros}Z`;
}

export type ContainerFields = Pick<KubeArmorAlert, 'NamespaceName' | 'ContainerID' | 'ContainerName' | 'ContainerImage' | 'Labels'>;

/** The container fields of an alert or log record; none for the host. */
export function containerFields(c: ContainerFacts | undefined): ContainerFields {
  if (!c) return {};
  return { NamespaceName: c.namespaceName, ContainerID: c.id, ContainerName: c.name, ContainerImage: c.image, Labels: formatLabels(c.labels) };
}

export class AlertBuilder {
  constructor(
    private readonly hostName: string,
    private readonly clock: BootClock,
    private readonly processes: ProcessTable,
    private readonly ruleMeta: (ruleId: number) => RuleMeta | undefined,
    private readonly container: ContainerResolver = () => undefined,
  ) {}

  /** undefined when the decision names no rule the agent knows (e.g. a rule set just replaced). */
  build(d: DecisionFacts): KubeArmorAlert | undefined {
    const meta = this.ruleMeta(d.ruleId);
    if (!meta) return undefined;
    const proc = this.processes.get(d.pid);
    const parent = this.processes.get(d.ppid);
    const actor = d.exe || proc?.exe || d.comm;
    const parentName = parent?.exe ?? '';
    const operation = OPERATION_NAMES[d.operation] ?? meta.operation;
    const action: KubeArmorAlert['Action'] = d.action === Action.Block ? 'Block' : 'Audit';
    const denied = d.ret !== 0;
    const wall = this.clock.wallMs(d.timestampNs);
    // As KubeArmor reports them: for an exec, ProcessName is the program
    // asked for and Source the caller (still the old image when the exec is
    // decided); for files and sockets both are the acting executable.
    let data: string;
    let processName = actor;
    switch (operation) {
      case 'Process':
        data = 'syscall=SYS_EXECVE';
        processName = d.resource;
        break;
      case 'File': {
        // bpf-lsm path hooks (unlink, rename, ...) name their LSM hook instead of open flags
        const pathOp = d.enforcer === EnforcerCode.BpfLsm ? lsmPathOperation(d.flags) : undefined;
        data = pathOp ? `lsm=SECURITY_PATH_${pathOp.toUpperCase()}` : `syscall=SYS_OPEN flags=${describeOpenFlags(d.flags)}`;
        break;
      }
      case 'Capabilities':
        // as KubeArmor's feeder: the LSM hook, then the capability (the alert's Resource)
        data = `lsm=SECURITY_CAPABLE ${d.resource}`;
        break;
      default:
        data = 'syscall=SYS_SOCKET';
    }
    const source = actor;
    const c = this.container(d.mntNs, d.pidNs, d.pid);
    // KubeArmor reports PID/PPID as seen inside the container, HostPID/HostPPID on the host.
    const { pid, ppid } = c ? namespacePids(d) : d;
    return {
      Timestamp: Math.floor(wall / 1000),
      UpdatedTime: isoMicros(wall),
      HostName: this.hostName,
      ...containerFields(c),
      HostPPID: d.ppid,
      HostPID: d.pid,
      PPID: ppid,
      PID: pid,
      UID: d.uid,
      ParentProcessName: parentName,
      ProcessName: processName,
      PolicyName: meta.policyName,
      // default-posture decisions carry no severity (KubeArmor prints none for "DefaultPosture")
      Severity: meta.severity > 0 ? String(meta.severity) : '',
      Tags: meta.tags.join(','),
      ATags: meta.tags,
      Message: meta.message,
      Type: meta.policyType,
      Source: source,
      Operation: operation,
      Resource: d.resource,
      Data: data,
      Enforcer: ENFORCER_NAMES[d.enforcer] ?? 'unknown',
      Action: action,
      Result: denied ? 'Permission denied' : 'Passed',
    };
  }
}
