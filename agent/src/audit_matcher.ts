// Userspace matching of monitored events against the compiled rules, for the
// `audit-only` backend (kernels where nothing can be enforced): every rule
// still produces its alert, with Result "Passed" because nothing was refused.
// Pure: no kernel, no I/O.
import { Action, EnforcerCode, OperationCode, ProtoClass } from './abi';
import type { DecisionFacts } from './alerts';
import { compileGlob } from './policy/glob';
import { allowListModes } from './policy/posture';
import type { CompiledPolicySet, NetworkRule, PathRule, PathTarget, PostureCategory, PostureRule, Protocol, SourceMatch } from './policy/types';

/** What the matcher needs of a monitor event (agent/src/events.ts provides more). */
export interface ObservedTask {
  timestampNs: bigint;
  pid: number;
  ppid: number;
  uid: number;
  comm: string;
  /** the task's namespaces (which container) and its pids in its own pid namespace, as the record carries them */
  mntNs?: number;
  pidNs?: number;
  nsPid?: number;
  nsPpid?: number;
}

const AF_INET = 2;
const AF_INET6 = 10;
const AF_PACKET = 17;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_RAW = 3;
const IPPROTO_ICMP = 1;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_ICMPV6 = 58;
const O_ACCMODE = 3;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;
const O_APPEND = 0o2000;

/** The protocol class of a socket(2) call, as the cgroup-bpf enforcer classifies it. */
export function classifySocket(family: number, type: number, protocol: number): ProtoClass | undefined {
  const t = type & 0xf; // SOCK_NONBLOCK / SOCK_CLOEXEC live in the high bits
  if (family === AF_PACKET) return ProtoClass.Raw;
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  if (protocol === IPPROTO_ICMP && family === AF_INET) return ProtoClass.Icmp;
  if (protocol === IPPROTO_ICMPV6 && family === AF_INET6) return ProtoClass.Icmpv6;
  if (t === SOCK_RAW) return ProtoClass.Raw;
  if (t === SOCK_STREAM && (protocol === 0 || protocol === IPPROTO_TCP)) return ProtoClass.Tcp;
  if (t === SOCK_DGRAM && (protocol === 0 || protocol === IPPROTO_UDP)) return ProtoClass.Udp;
  return undefined;
}

const PROTOCOL_CLASS: Record<Protocol, ProtoClass> = {
  tcp: ProtoClass.Tcp,
  udp: ProtoClass.Udp,
  icmp: ProtoClass.Icmp,
  icmpv6: ProtoClass.Icmpv6,
  raw: ProtoClass.Raw,
};

/** An open that can change the file: KubeArmor's readOnly rules match only these. */
export function isWriteOpen(flags: number): boolean {
  return (flags & O_ACCMODE) !== 0 || (flags & (O_CREAT | O_TRUNC | O_APPEND)) !== 0;
}

function underDirectory(dir: string, p: string, recursive: boolean): boolean {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  if (!p.startsWith(prefix) || p.length === prefix.length) return false;
  return recursive || !p.slice(prefix.length).includes('/');
}

const globs = new Map<string, (p: string) => boolean>();
function globMatches(pattern: string, p: string): boolean {
  let m = globs.get(pattern);
  if (!m) {
    try {
      m = compileGlob(pattern);
    } catch {
      m = () => false; // the loader refuses invalid patterns; one that slips through matches nothing
    }
    if (globs.size > 4096) globs.clear();
    globs.set(pattern, m);
  }
  return m(p);
}

export function targetMatches(target: PathTarget | SourceMatch, p: string): boolean {
  switch (target.kind) {
    case 'path':
      return target.path === p;
    case 'dir':
      return underDirectory(target.path, p, target.recursive);
    case 'pattern':
      return globMatches(target.pattern, p);
    case 'execname':
      return p.slice(p.lastIndexOf('/') + 1) === target.name;
    default:
      return false;
  }
}

export function sourceMatches(sources: SourceMatch[], exe: string | undefined): boolean {
  if (sources.length === 0) return true;
  if (!exe) return false;
  return sources.some((s) => targetMatches(s, exe));
}

/** Block wins over Audit; the first rule (lowest id) among equals. Allow rules are not reported. */
function strongest<R extends { action: string; ruleId: number }>(rules: R[]): R | undefined {
  let best: R | undefined;
  for (const r of rules) {
    if (r.action === 'Allow') continue;
    if (!best || (r.action === 'Block' && best.action !== 'Block') || (r.action === best.action && r.ruleId < best.ruleId)) {
      best = r;
    }
  }
  return best;
}

/**
 * The reported decision among the matching rules: Block wins; then, in
 * allow-list mode, an Allow match lets the access through silently and no
 * Allow match gets the default posture; otherwise the first Audit match.
 */
function decide<R extends { action: string; ruleId: number }>(
  matching: R[],
  posture: PostureRule | undefined,
): { ruleId: number; action: 'Block' | 'Audit' } | undefined {
  const best = strongest(matching);
  if (best?.action === 'Block') return { ruleId: best.ruleId, action: 'Block' };
  if (posture && !matching.some((r) => r.action === 'Allow')) return { ruleId: posture.ruleId, action: posture.action };
  return best ? { ruleId: best.ruleId, action: 'Audit' } : undefined;
}

export class AuditMatcher {
  private readonly processRules: PathRule[];
  private readonly fileRules: PathRule[];
  private readonly networkRules: NetworkRule[];

  /** The host's default postures (this backend sees host rules only). */
  private readonly postures: Partial<Record<PostureCategory, PostureRule>>;

  constructor(set: CompiledPolicySet) {
    this.processRules = set.pathRules.filter((r) => r.operation === 'Process');
    this.fileRules = set.pathRules.filter((r) => r.operation === 'File');
    this.networkRules = set.networkRules;
    this.postures = allowListModes(set).find((w) => !w.workload)?.postures ?? {};
  }

  /** What the monitor must observe for these rules. */
  needs(): { process: boolean; file: boolean; network: boolean } {
    return {
      process: this.processRules.length > 0,
      file: this.fileRules.length > 0,
      network: this.networkRules.length > 0,
    };
  }

  /** An exec of `path`; `callerExe` is the image that asked for it (KubeArmor's fromSource). */
  matchExec(task: ObservedTask, path: string, callerExe: string | undefined): DecisionFacts | undefined {
    const d = decide(
      this.processRules.filter((r) => targetMatches(r.target, path) && sourceMatches(r.fromSource, callerExe)),
      this.postures.process,
    );
    return d && this.decision(task, d.ruleId, d.action, OperationCode.Process, 0, path, callerExe);
  }

  matchOpen(task: ObservedTask, path: string, flags: number, exe: string | undefined): DecisionFacts | undefined {
    const write = isWriteOpen(flags);
    // Block/Audit rules match what they forbid (readOnly: writes); Allow rules what they permit (readOnly: reads).
    const d = decide(
      this.fileRules.filter(
        (r) =>
          (r.action === 'Allow' ? !r.readOnly || !write : !r.readOnly || write) &&
          targetMatches(r.target, path) &&
          sourceMatches(r.fromSource, exe),
      ),
      this.postures.file,
    );
    return d && this.decision(task, d.ruleId, d.action, OperationCode.File, flags, path, exe);
  }

  matchSocket(task: ObservedTask, family: number, type: number, protocol: number, exe: string | undefined): DecisionFacts | undefined {
    const cls = classifySocket(family, type, protocol);
    if (cls === undefined) return undefined;
    const matching = this.networkRules.filter((r) => PROTOCOL_CLASS[r.protocol] === cls && sourceMatches(r.fromSource, exe));
    const d = decide(matching, this.postures.network);
    if (!d) return undefined;
    const name = (Object.keys(PROTOCOL_CLASS) as Protocol[]).find((p) => PROTOCOL_CLASS[p] === cls) ?? 'raw';
    return this.decision(task, d.ruleId, d.action, OperationCode.Network, cls, name, exe);
  }

  private decision(
    task: ObservedTask,
    ruleId: number,
    action: 'Block' | 'Audit',
    operation: OperationCode,
    flags: number,
    resource: string,
    exe: string | undefined,
  ): DecisionFacts {
    return {
      timestampNs: task.timestampNs,
      pid: task.pid,
      ppid: task.ppid,
      uid: task.uid,
      comm: task.comm,
      mntNs: task.mntNs,
      pidNs: task.pidNs,
      nsPid: task.nsPid,
      nsPpid: task.nsPpid,
      ruleId,
      action: action === 'Block' ? Action.Block : Action.Audit,
      operation,
      enforcer: EnforcerCode.Monitor,
      ret: 0, // observed after the fact: nothing was refused
      flags,
      resource,
      exe: exe ?? '',
    };
  }
}
