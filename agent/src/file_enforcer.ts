// The compat process/file enforcer, TypeScript half: turns compiled PathRules
// into rules for the native fanotify enforcer (native/src/file_enforcer.cc),
// which marks the named inodes and directories and answers every permission
// event on its own C++ thread.
//
// fromSource: `path` entries are matched by the acting process's executable
// inode and path; `dir` entries by the executable's path under the directory
// (recursive or not), so binaries installed there later are covered too. A
// copy of a source binary elsewhere is a different executable (as in
// KubeArmor).
//
// Containers: a resolved container rule (PathRule.workload) applies to that
// container's processes only, and its path and fromSource are paths inside
// the container, looked up in its root by the native side; host rules apply
// to host processes only (agent/src/workloads.ts).
//
// Allow-list mode (PathRule action Allow plus the set's PostureRules): the
// workloads whose process (file) category has Allow rules get every exec
// (open) on their mounts decided by the native side: what no Allow rule
// permits gets the posture (Block refuses, Audit reports), reported under
// the posture's rule id ("DefaultPosture"). Block rules win over Allow.
// Pattern (glob) and execname rules are matched by path on the same mount
// coverage. See native/src/file_enforcer.h for what is not covered.
import { Action } from './abi';
import type { FileEnforcerStats, NativeAddon, NativeEventSink, NativeFileEnforcer, NativeFileRule, NativeWorkload } from './native';
import { expandBraces } from './policy/glob';
import type { WorkloadPosture } from './policy/posture';
import type { PathRule, WorkloadTarget } from './policy/types';

/** Executables under a directory, as fromSource `dir` entries name them. */
export interface NativeSourceDir {
  path: string;
  recursive: boolean;
}

/**
 * A NativeFileRule plus what the native enforcer also reads: `ownerOnly`
 * (file rules: processes whose fsuid owns the file do not match) and
 * `sourceDirs` (fromSource directories).
 */
export interface CompatFileRule extends NativeFileRule {
  ownerOnly: boolean;
  sourceDirs: NativeSourceDir[];
  workloads: bigint[];
  /** a glob without braces (path is then "/"): matched on every covered event */
  pattern?: string;
  /** an executable name (path is then "/"): any exec of a file so named */
  execName?: string;
}

/** A posture as the native side takes it: the posture's rule id and EW_ACTION_BLOCK / EW_ACTION_AUDIT. */
export interface NativePosture {
  ruleId: number;
  action: number;
}

/**
 * setRules' second argument, one per workload that is in allow-list mode or
 * has pattern/execname rules: which events of its mounts to watch and the
 * postures. `mounts` (host only) limits the coverage to these mount points.
 */
export interface NativeWorkloadPolicy {
  workload: bigint;
  coverExec: boolean;
  coverOpen: boolean;
  execPosture?: NativePosture;
  openPosture?: NativePosture;
  root?: { pid: number; mntNs: number };
  mounts?: string[];
}

/** The native enforcer with setRules' allow-list argument (agent/src/native.ts has the one-argument form). */
type NativeFileEnforcerWithPolicies = NativeFileEnforcer & {
  setRules(rules: NativeFileRule[], options?: { policies: NativeWorkloadPolicy[] }): { marks: number; errors: string[] };
};

export interface FileEnforcerOptions {
  /**
   * Host mount points allow-list, pattern and execname coverage is limited
   * to (absent: every mount but pseudo filesystems). For tests on a shared
   * machine: a host allow-list in block posture would otherwise refuse every
   * other program on it.
   */
  hostCoverageMounts?: string[];
}

/** The enforcers' view of the containers: workload id = mount namespace inode. */
export function toNativeWorkloads(workloads: readonly WorkloadTarget[]): NativeWorkload[] {
  return workloads.map((w) => ({ workload: BigInt(w.mntNs), mntNs: w.mntNs, pidNs: w.pidNs }));
}

/** The native enforcer's counters (events, denials, marks, internal and watch errors). */
export type CompatFileEnforcerStats = FileEnforcerStats;

const ACTION: Record<string, Action> = { Block: Action.Block, Audit: Action.Audit, Allow: Action.Allow };
const PATH_MAX = 4096;

function pathProblem(p: unknown): string | undefined {
  if (typeof p !== 'string' || p.length === 0) return 'is not a path';
  if (!p.startsWith('/')) return `${p} is not absolute`;
  if (p.includes('\0')) return 'contains a NUL byte';
  if (Buffer.byteLength(p) >= PATH_MAX) return `is longer than ${PATH_MAX - 1} bytes`;
  return undefined;
}

/**
 * Converts compiled rules into native rules. Rules that cannot be expressed
 * are left out with an error naming them; nothing here touches the kernel.
 */
export function toNativeFileRules(rules: PathRule[]): { rules: CompatFileRule[]; errors: string[] } {
  const out: CompatFileRule[] = [];
  const errors: string[] = [];
  rules.forEach((rule, index) => {
    const w = rule.workload;
    const where = `${String(rule.operation).toLowerCase()} rule ${rule.ruleId} (#${index}${w ? `, container ${w.containerName}` : ''})`;
    if (!Number.isInteger(rule.ruleId) || rule.ruleId < 0 || rule.ruleId > 0xffffffff) {
      errors.push(`path rule #${index}: ruleId must be an integer in 0..4294967295, got ${String(rule.ruleId)}`);
      return;
    }
    const action = Object.prototype.hasOwnProperty.call(ACTION, rule.action) ? ACTION[rule.action] : undefined;
    if (action === undefined) {
      errors.push(`${where}: action must be Block, Audit or Allow, got ${String(rule.action)}`);
      return;
    }
    if (rule.operation !== 'Process' && rule.operation !== 'File') {
      errors.push(
        `path rule ${rule.ruleId} (#${index}): operation must be Process or File, got ${String(rule.operation)}`,
      );
      return;
    }
    const exec = rule.operation === 'Process';
    const target = rule.target;
    let patterns: string[] | undefined;
    let execName: string | undefined;
    if (target && target.kind === 'pattern') {
      const expanded = typeof target.pattern === 'string' && target.pattern.startsWith('/') ? expandBraces(target.pattern) : 'is not an absolute pattern';
      if (typeof expanded === 'string') {
        errors.push(`${where}: pattern ${JSON.stringify(target.pattern)} ${expanded}; not enforced`);
        return;
      }
      const bad = expanded.find((p) => Buffer.byteLength(p) >= PATH_MAX || p.includes('\0'));
      if (bad !== undefined) {
        errors.push(`${where}: pattern alternative is longer than ${PATH_MAX - 1} bytes or contains NUL; not enforced`);
        return;
      }
      patterns = expanded;
    } else if (target && target.kind === 'execname') {
      if (!exec || typeof target.name !== 'string' || target.name === '' || target.name.includes('/') || target.name.includes('\0')) {
        errors.push(`${where}: execname must be a file name on a process rule; not enforced`);
        return;
      }
      execName = target.name;
    } else if (!target || (target.kind !== 'path' && target.kind !== 'dir')) {
      errors.push(`${where}: target must be a path, a directory, a pattern or an execname`);
      return;
    } else {
      const problem = pathProblem(target.path);
      if (problem) {
        errors.push(`${where}: target ${problem}`);
        return;
      }
    }
    // Process rules have no readOnly/ownerOnly in KubeArmor: drop them (the
    // rule then matches every exec, the stricter reading) and say so.
    if (exec && (rule.readOnly || rule.ownerOnly)) {
      errors.push(`${where}: readOnly/ownerOnly do not apply to process rules; enforced without them`);
    }
    const sources: string[] = [];
    const sourceDirs: NativeSourceDir[] = [];
    const fromSource = Array.isArray(rule.fromSource) ? rule.fromSource : [];
    for (const source of fromSource) {
      const bad = pathProblem(source?.path);
      if (bad) {
        errors.push(`${where}: fromSource ${bad}; ignored`);
        continue;
      }
      if (source.kind === 'dir') sourceDirs.push({ path: source.path, recursive: source.recursive === true });
      else sources.push(source.path);
    }
    if (fromSource.length > 0 && sources.length === 0 && sourceDirs.length === 0) {
      // Without any source left the rule would apply to every process.
      errors.push(`${where}: no usable fromSource entry; rule not enforced`);
      return;
    }
    if (rule.scope?.kind === 'containers' && !w) {
      // Unresolved, it would apply to the host: never.
      errors.push(`${where}: a container rule not resolved to a container; not enforced`);
      return;
    }
    if (w && !(Number.isInteger(w.mntNs) && w.mntNs > 0 && Number.isInteger(w.pid) && w.pid > 0)) {
      errors.push(`${where}: container ${w.containerName} has no usable mount namespace or pid; not enforced`);
      return;
    }
    const common = {
      ruleId: rule.ruleId,
      action,
      exec,
      readOnly: !exec && rule.readOnly === true,
      ownerOnly: !exec && rule.ownerOnly === true,
      sources,
      sourceDirs,
      workloads: [w ? BigInt(w.mntNs) : 0n],
      ...(w ? { root: { pid: w.pid, mntNs: w.mntNs } } : {}),
    };
    if (patterns) {
      for (const pattern of patterns) out.push({ ...common, path: '/', isDir: false, recursive: false, pattern });
    } else if (execName !== undefined) {
      out.push({ ...common, path: '/', isDir: false, recursive: false, execName });
    } else if (target.kind === 'path' || target.kind === 'dir') {
      out.push({
        ...common,
        path: target.path,
        isDir: target.kind === 'dir',
        recursive: target.kind === 'dir' && target.recursive === true,
      });
    }
  });
  return { rules: out, errors };
}

const POSTURE_ACTION: Record<string, number> = { Block: Action.Block, Audit: Action.Audit };

/**
 * The per-workload part of setRules: postures of the workloads in
 * allow-list mode, and mount coverage for them and for the workloads with
 * pattern/execname rules. Pure.
 */
export function toNativeFilePolicies(
  rules: readonly PathRule[],
  postures: readonly WorkloadPosture[],
  options: FileEnforcerOptions = {},
): NativeWorkloadPolicy[] {
  const byWorkload = new Map<bigint, NativeWorkloadPolicy>();
  const entry = (w: WorkloadTarget | undefined): NativeWorkloadPolicy => {
    const key = w ? BigInt(w.mntNs) : 0n;
    let e = byWorkload.get(key);
    if (!e) {
      e = { workload: key, coverExec: false, coverOpen: false };
      if (w) e.root = { pid: w.pid, mntNs: w.mntNs };
      else if (options.hostCoverageMounts) e.mounts = [...options.hostCoverageMounts];
      byWorkload.set(key, e);
    }
    return e;
  };
  for (const p of postures) {
    const e = entry(p.workload);
    const proc = p.postures.process;
    const file = p.postures.file;
    if (proc && POSTURE_ACTION[proc.action] !== undefined) {
      e.coverExec = true;
      e.execPosture = { ruleId: proc.ruleId, action: POSTURE_ACTION[proc.action] };
    }
    if (file && POSTURE_ACTION[file.action] !== undefined) {
      e.coverOpen = true;
      e.openPosture = { ruleId: file.ruleId, action: POSTURE_ACTION[file.action] };
    }
  }
  for (const r of rules) {
    const kind = r.target?.kind;
    if (kind !== 'pattern' && kind !== 'execname') continue;
    if (r.scope?.kind === 'containers' && !r.workload) continue; // not in force anywhere
    const e = entry(r.workload);
    if (r.operation === 'Process') e.coverExec = true;
    else e.coverOpen = true;
  }
  return [...byWorkload.values()].filter((e) => e.coverExec || e.coverOpen);
}

/** Process (exec) and file (open) rules enforced with fanotify permission events. */
export class FileEnforcer {
  private native: NativeFileEnforcer | undefined;

  /** Creates the fanotify groups and the answering thread; decisions go to `sink`. */
  constructor(
    addon: NativeAddon,
    sink: NativeEventSink,
    private readonly options: FileEnforcerOptions = {},
  ) {
    this.native = new addon.FileEnforcer(sink);
  }

  /**
   * Replaces the rules in force. Targets that do not exist, rules that cannot
   * be expressed and marks past the caps are reported in `errors`; the rest is
   * enforced. If the native side rejects the whole set, the previous rules
   * stay in force and the reason is reported.
   */
  apply(
    rules: PathRule[],
    workloads: readonly WorkloadTarget[] = [],
    postures: readonly WorkloadPosture[] = [],
  ): { errors: string[]; marks?: number } {
    const native = this.open() as NativeFileEnforcerWithPolicies;
    const converted = toNativeFileRules(rules);
    const policies = toNativeFilePolicies(rules, postures, this.options);
    let result: { marks: number; errors: string[] };
    try {
      result = policies.length ? native.setRules(converted.rules, { policies }) : native.setRules(converted.rules);
    } catch (err) {
      return { errors: [...converted.errors, `process/file rules not applied: ${(err as Error).message}`] };
    }
    // After the rules: a new container's processes count as the host (host
    // rules) until now, and as the container (with its rules in place) after.
    try {
      native.setWorkloads(toNativeWorkloads(workloads));
    } catch (err) {
      return { errors: [...converted.errors, ...result.errors, `containers not updated: ${(err as Error).message}`], marks: result.marks };
    }
    return { errors: [...converted.errors, ...result.errors], marks: result.marks };
  }

  stats(): CompatFileEnforcerStats {
    return this.open().stats() as CompatFileEnforcerStats;
  }

  /** Removes every mark: everything is allowed again. Idempotent. */
  close(): void {
    this.native?.close();
    this.native = undefined;
  }

  private open(): NativeFileEnforcer {
    if (!this.native) throw new Error('FileEnforcer is closed');
    return this.native;
  }
}
