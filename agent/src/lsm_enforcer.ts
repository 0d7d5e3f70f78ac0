// The bpf-lsm enforcer, TypeScript half: turns compiled rules into the
// kernel entries of bpf/lsm_enforcer.bpf.c (through native/src/lsm_enforcer.cc).
//
// Path rules are keyed by inode, not by string:
// - an exact file (matchPaths) by its (dev, ino): hard links, renames, bind
//   mounts, symlinks and chroots reach the same inode and are matched;
// - a directory (matchDirectories) by the directory's (dev, ino), matched by
//   walking up the file's d_parent chain in the kernel (non-recursive: the
//   parent only);
// - fromSource by the executable's (dev, ino) (net_enforcer.ts
//   resolveExecutableInode: scripts are refused, name their interpreter).
// dev is the kernel's sb->s_dev (mountinfo's major:minor of the mount the
// file is on), not st_dev: they differ on btrfs and overlayfs.
//
// Container rules (resolved to one container each by agent/src/workloads.ts)
// are keyed by the container's workload (its mount namespace inode) and
// their paths resolved inside its root (NativeAddon.resolveInContainer:
// symlinks stay inside the root); the kernel looks up only the acting
// task's workload's rules, so host rules do not apply inside containers.
// setWorkloads() tells the kernel which namespaces are which container.
//
// Allow-list mode (KubeArmor's default posture): Allow rules are kept in the
// same entries as bits (allowVariants), and each workload with a posture
// gets a posture entry per category (postures): in the kernel, an exec,
// open, path write or socket of a workload in allow-list mode that no Allow
// rule permits gets the posture (Block: EPERM; Audit: reported), Block
// rules first. Decision order, as on compat: Block, Allow, posture, Audit.
//
// Inode keys are resolved when a rule set is applied. A file replaced by a
// new inode at the same path later (an editor's save, a package upgrade) is
// not the inode the rule names: LsmBackend watches exact targets and applies
// the set again when their name changes (a short window remains).
import * as fs from 'fs';

import { Action, ProtoClass } from './abi';
import { toNativeWorkloads } from './file_enforcer';
import {
  executableResolver,
  ExecutableInode,
  ExecutableResolve,
  MountEntry,
  mountAwareResolver,
  mountOf,
  statDevToKernelDev,
} from './net_enforcer';
import type { ContainerPathInfo, NativeAddon, NativeEventRing, NativeNetRule, NativeWorkload } from './native';
import { encodeKernelGlob } from './policy/glob_kernel';
import type { WorkloadPosture } from './policy/posture';
import type { NetworkRule, PathRule, Protocol, SourceMatch, WorkloadTarget } from './policy/types';

// Kernel layout (bpf/include/ew_lsm_abi.h) -------------------------------------

export const enum LsmMatch {
  Exact = 0,
  Child = 1,
  Recursive = 2,
}
export const LSM_VARIANTS = 12;
export const LSM_OP_PROCESS = 1;
export const LSM_OP_FILE = 2;
export const LSM_OP_NETWORK = 3;

/** Index of a verdict in an entry: match * 4 + readOnly * 2 + ownerOnly. */
export function lsmVariant(match: LsmMatch, readOnly: boolean, ownerOnly: boolean): number {
  return match * 4 + (readOnly ? 2 : 0) + (ownerOnly ? 1 : 0);
}

// Native API (what native/src/lsm_enforcer.cc exports) ----------------------------

export interface NativeLsmVerdict {
  ruleId: number;
  /** EW_ACTION_*: 0 none, 1 Audit, 2 Block */
  action: number;
}

/** One key of the path rule map: a target inode for an op, with or without a source executable. */
export interface NativeLsmPathEntry {
  workload: bigint; // 0n: host; else a NativeWorkload's workload
  op: number; // 1 Process, 2 File
  dev: bigint;
  ino: bigint;
  /** the source executable's inode, or 0n/0n for any source */
  srcDev: bigint;
  srcIno: bigint;
  /** LSM_VARIANTS verdicts, indexed by lsmVariant() */
  verdicts: NativeLsmVerdict[];
  /** any-source entries only: entries with a source exist for this target */
  hasSourced: boolean;
  /** bit lsmVariant(): an Allow rule of that variant names the target (absent: 0) */
  allowVariants?: number;
}

/** A workload in allow-list mode for one op: what no Allow rule permits gets `action`. */
export interface NativeLsmPosture {
  workload: bigint; // 0n: host
  op: number; // 1 process, 2 file, 3 network
  ruleId: number; // the PostureRule's (alerts name policy "DefaultPosture")
  action: number; // 1 Audit, 2 Block
}

/** A pattern or execname rule (per brace alternative and source), matched against the path of an open or exec. */
export interface NativeLsmPattern {
  workload: bigint;
  op: number; // 1 Process, 2 File
  ruleId: number;
  action: number; // 1 Audit, 2 Block, 3 Allow
  readOnly: boolean;
  ownerOnly: boolean;
  /** bytes is a file name: the path's last component must equal it */
  execname: boolean;
  /** an encoded glob (policy/glob_kernel.ts encodeKernelGlob) or the name */
  bytes: Buffer;
  srcDev: bigint;
  srcIno: bigint;
}

export interface NativeLsmRuleSet {
  /** absent: none */
  patterns?: NativeLsmPattern[];
  paths: NativeLsmPathEntry[];
  /** NativeNetRule.action may be 3 (Allow) */
  net: NativeNetRule[];
  /** absent: no workload is in allow-list mode */
  postures?: NativeLsmPosture[];
}

export interface NativeLsmProgramStats {
  name: string;
  /** kernel bpf_stats: counted while enableStats() is in effect */
  runCount: number;
  runTimeNs: number;
}

export interface NativeLsmStats {
  generation: number;
  active: number;
  pathEntries: number;
  netEntries: number;
  programs: NativeLsmProgramStats[];
}

export interface NativeLsmEnforcer {
  /** replaces the rule set atomically (two generations, one index switched); throws and keeps the old set on failure */
  setRules(set: NativeLsmRuleSet): { pathEntries: number; netEntries: number };
  /** replaces the containers told apart from the host (at most EW_MAX_WORKLOADS): new entries before stale ones go */
  setWorkloads(workloads: NativeWorkload[]): void;
  stats(): NativeLsmStats;
  /** starts the kernel's per-program run time statistics (BPF_ENABLE_STATS) */
  enableStats(): void;
  /** names of the LSM hooks attached */
  attached(): string[];
  /** whether the constructor adopted rules an earlier process pinned (they are in force) */
  adopted(): boolean;
  /** ids of the pinned maps (active, gen_info, path_rules, net_rules, workloads, workload_count): self-protection keeps others from writing them */
  mapIds(): number[];
  /** drops this process's handles; pinned programs and rules stay in force */
  release(): void;
  /** detaches every program and removes the pins: nothing is enforced any more */
  close(): void;
}

export interface NativeLsmOptions {
  /** pin maps and links there (a directory on bpffs); adopt what an earlier process pinned there */
  pinDir?: string;
}

export interface NativeLsmLimits {
  maxPathEntries: number;
  maxNetEntries: number;
  variants: number;
  walkMax: number;
  layoutVersion: number;
  maxPatterns: number;
  patternBytes: number;
}

/** The addon's bpf-lsm exports (to be merged into NativeAddon in native.ts). */
export interface NativeLsmAddon {
  LsmEnforcer: new (ring: NativeEventRing, options?: NativeLsmOptions) => NativeLsmEnforcer;
  lsmLimits: NativeLsmLimits;
}

export function lsmAddon(addon: NativeAddon): NativeLsmAddon {
  const a = addon as unknown as Partial<NativeLsmAddon>;
  if (typeof a.LsmEnforcer !== 'function' || !a.lsmLimits) {
    throw new Error('the native addon has no LsmEnforcer (rebuild it: npm run build)');
  }
  return a as NativeLsmAddon;
}

// Resolving targets ------------------------------------------------------------------

/** A rule target's identity as the kernel sees it. */
export interface TargetInode {
  dev: bigint;
  ino: bigint;
  isDir: boolean;
}

/**
 * Resolves a rule target to its inode (following symlinks, as opens and
 * execs do); dev from the mount the resolved path is on. Throws an Error
 * saying why the path cannot be one.
 */
export function resolveTargetInode(path: string, mounts: MountEntry[]): TargetInode {
  let st: fs.BigIntStats;
  let real: string;
  try {
    st = fs.statSync(path, { bigint: true });
    real = fs.realpathSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Error(`cannot stat ${path} (${code})`);
  }
  const mount = mountOf(real, mounts);
  return { dev: mount ? mount.dev : statDevToKernelDev(st.dev), ino: st.ino, isDir: st.isDirectory() };
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

/**
 * A container rule target's inode from what resolveInContainer found
 * (`info.path`: canonical inside the root); dev from the container's own
 * mount table (its mount points are relative to its root).
 */
export function containerTargetInode(info: ContainerPathInfo, mounts: MountEntry[]): TargetInode {
  const mount = mountOf(info.path, mounts);
  return { dev: mount ? mount.dev : statDevToKernelDev(info.dev), ino: info.ino, isDir: (info.mode & S_IFMT) === S_IFDIR };
}

/** Finds a rule target: on the host, or inside the root of the container a rule was resolved to. */
export type TargetResolve = (path: string, workload?: WorkloadTarget) => TargetInode;

/**
 * A resolver reading each mount table once (for one apply()). Paths in
 * containers need the addon (resolveInContainer); without it they fail.
 */
export function targetResolver(addon?: Pick<NativeAddon, 'resolveInContainer'>): TargetResolve {
  return mountAwareResolver(addon, resolveTargetInode, (_path, info, mounts) => containerTargetInode(info, mounts));
}

export interface LsmResolvers {
  target: TargetResolve;
  source: ExecutableResolve;
}

/** The key rules of `workload` carry: its mount namespace inode; 0n for the host. */
export function workloadId(workload: WorkloadTarget | undefined): bigint {
  return workload ? BigInt(workload.mntNs) : 0n;
}

/** Where a path of a rule lives, for watching: container paths through the container init's root. */
function watchPath(p: string, workload: WorkloadTarget | undefined): string {
  return workload ? `/proc/${workload.pid}/root${p}` : p;
}

// Conversion ------------------------------------------------------------------------------

const ACTION: Record<string, Action> = { Block: Action.Block, Audit: Action.Audit, Allow: Action.Allow };
const POSTURE_OP: Record<string, number> = { process: LSM_OP_PROCESS, file: LSM_OP_FILE, network: LSM_OP_NETWORK };
const POSTURE_ACTION: Record<string, Action> = { Block: Action.Block, Audit: Action.Audit };
const PROTO_CLASS: Record<Protocol, ProtoClass> = {
  tcp: ProtoClass.Tcp,
  udp: ProtoClass.Udp,
  icmp: ProtoClass.Icmp,
  icmpv6: ProtoClass.Icmpv6,
  raw: ProtoClass.Raw,
};
const PATH_MAX = 4096;

function own<T>(table: Record<string, T>, key: unknown): T | undefined {
  return typeof key === 'string' && Object.prototype.hasOwnProperty.call(table, key) ? table[key] : undefined;
}

function pathProblem(p: unknown): string | undefined {
  if (typeof p !== 'string' || p.length === 0) return 'is not a path';
  if (!p.startsWith('/')) return `${p} is not absolute`;
  if (p.includes('\0')) return 'contains a NUL byte';
  if (Buffer.byteLength(p) >= PATH_MAX) return `is longer than ${PATH_MAX - 1} bytes`;
  return undefined;
}

/** The kernel entries for a rule set, the paths to watch, and a line per rule (or source) not enforced. */
export interface LsmRuleSet extends NativeLsmRuleSet {
  errors: string[];
  /**
   * every target and source path of the set, resolved or not: a new inode
   * at one of them (replaced, created, removed) needs the set resolved again
   */
  watchPaths: string[];
}

/** The kernel bytes of a pattern (one per brace alternative) or execname target, or why it has none. */
function patternBytes(target: { kind: 'pattern'; pattern: string } | { kind: 'execname'; name: string }): Buffer[] | string {
  if (target.kind === 'pattern') {
    if (typeof target.pattern !== 'string' || !target.pattern.startsWith('/')) return `pattern ${String(target.pattern)} is not absolute`;
    const enc = encodeKernelGlob(target.pattern);
    return typeof enc === 'string' ? `pattern ${target.pattern} ${enc}` : enc;
  }
  const name = target.name;
  if (typeof name !== 'string' || name.length === 0 || name.includes('/') || name.includes('\0') || name === '.' || name === '..') {
    return `execname ${String(name)} is not a file name`;
  }
  if (Buffer.byteLength(name) > 255) return `execname ${name} is longer than 255 bytes`;
  return [Buffer.from(name)];
}

function actionProblem(action: unknown): string {
  return `action must be Block, Audit or Allow, got ${String(action)}`;
}

const emptyVerdicts = (): NativeLsmVerdict[] => Array.from({ length: LSM_VARIANTS }, () => ({ ruleId: 0, action: 0 }));

/**
 * Adds a rule to an entry: Block and Audit keep the stronger verdict in the
 * variant's slot (Block > Audit; on a tie the first rule stays); Allow sets
 * the variant's bit (an Allow and an Audit of one variant both hold).
 */
function mergeVerdict(e: NativeLsmPathEntry, variant: number, ruleId: number, action: Action): void {
  if (action === Action.Allow) {
    e.allowVariants = (e.allowVariants ?? 0) | (1 << variant);
    return;
  }
  if (action > e.verdicts[variant].action) e.verdicts[variant] = { ruleId, action };
}

/** The posture entries of the workloads in allow-list mode (capabilities: lsm_capable's own). */
export function toLsmPostures(modes: readonly WorkloadPosture[], errors: string[]): NativeLsmPosture[] {
  const out: NativeLsmPosture[] = [];
  for (const w of modes) {
    for (const [category, rule] of Object.entries(w.postures)) {
      const op = own(POSTURE_OP, category);
      if (!rule || op === undefined) continue;
      const action = own(POSTURE_ACTION, rule.action);
      if (action === undefined || !Number.isInteger(rule.ruleId) || rule.ruleId < 0 || rule.ruleId > 0xffffffff) {
        errors.push(
          `${w.workload ? `container ${w.workload.containerName}` : 'host'}: ${category} posture must be Block or Audit with a rule id, got ${String(rule.action)} (rule ${String(rule.ruleId)}); allow-list mode not enforced`,
        );
        continue;
      }
      out.push({ workload: workloadId(w.workload), op, ruleId: rule.ruleId, action });
    }
  }
  return out;
}

/** Resolved sources of a rule: inodes, or undefined for "any process"; errors appended. */
function resolveSources(
  fromSource: SourceMatch[] | undefined,
  where: string,
  resolve: ExecutableResolve,
  workload: WorkloadTarget | undefined,
  errors: string[],
): ExecutableInode[] | undefined | 'none' {
  const list = Array.isArray(fromSource) ? fromSource : [];
  if (list.length === 0) return undefined;
  const out: ExecutableInode[] = [];
  for (const source of list) {
    const bad = pathProblem(source?.path);
    if (bad) {
      errors.push(`${where}: fromSource ${bad}; ignored`);
      continue;
    }
    if (source.kind === 'dir') {
      errors.push(
        `${where}: fromSource dir ${source.path} is not enforced by bpf-lsm (it matches executables by inode); list the executables by path`,
      );
      continue;
    }
    try {
      out.push(resolve(source.path, workload));
    } catch (err) {
      errors.push(`${where}: fromSource ${source.path} is not enforced: ${(err as Error).message}`);
    }
  }
  // Without any source left the rule would apply to every process.
  if (out.length === 0) {
    errors.push(`${where}: no usable fromSource entry; rule not enforced`);
    return 'none';
  }
  return out;
}

/**
 * Converts compiled rules into kernel entries. Rules (or sources) that
 * cannot be enforced are left out with an error naming them. Pure apart
 * from the resolvers (injectable for tests).
 */
export function toLsmRuleSet(
  pathRules: PathRule[],
  networkRules: NetworkRule[],
  resolvers: LsmResolvers = { target: targetResolver(), source: executableResolver() },
  postures: readonly WorkloadPosture[] = [],
): LsmRuleSet {
  const errors: string[] = [];
  const watchPaths = new Set<string>();
  const patterns: NativeLsmPattern[] = [];
  // key: workload/op/dev/ino/srcDev/srcIno
  const entries = new Map<string, NativeLsmPathEntry>();
  const entry = (workload: bigint, op: number, t: TargetInode, src: ExecutableInode | undefined): NativeLsmPathEntry => {
    const srcDev = src?.dev ?? 0n;
    const srcIno = src?.ino ?? 0n;
    const key = `${workload}/${op}/${t.dev}/${t.ino}/${srcDev}/${srcIno}`;
    let e = entries.get(key);
    if (!e) {
      e = { workload, op, dev: t.dev, ino: t.ino, srcDev, srcIno, verdicts: emptyVerdicts(), hasSourced: false };
      entries.set(key, e);
    }
    return e;
  };

  pathRules.forEach((rule, index) => {
    const w = rule.workload;
    const where = `${String(rule.operation).toLowerCase()} rule ${rule.ruleId} (#${index}${w ? `, container ${w.containerName}` : ''})`;
    if (!Number.isInteger(rule.ruleId) || rule.ruleId < 0 || rule.ruleId > 0xffffffff) {
      errors.push(`path rule #${index}: ruleId must be an integer in 0..4294967295, got ${String(rule.ruleId)}`);
      return;
    }
    const action = own(ACTION, rule.action);
    if (action === undefined) {
      errors.push(`${where}: ${actionProblem(rule.action)}`);
      return;
    }
    if (rule.operation !== 'Process' && rule.operation !== 'File') {
      errors.push(`path rule ${rule.ruleId} (#${index}): operation must be Process or File, got ${String(rule.operation)}`);
      return;
    }
    const exec = rule.operation === 'Process';
    const target = rule.target;
    if (target?.kind === 'pattern' || target?.kind === 'execname') {
      const bytes = patternBytes(target);
      if (typeof bytes === 'string') {
        errors.push(`${where}: ${bytes}; rule not enforced`);
        return;
      }
      if (exec && rule.readOnly) errors.push(`${where}: readOnly does not apply to process rules; enforced without it`);
      for (const source of Array.isArray(rule.fromSource) ? rule.fromSource : []) {
        if (source?.kind === 'path' && !pathProblem(source.path)) watchPaths.add(watchPath(source.path, w));
      }
      const sources = resolveSources(rule.fromSource, where, resolvers.source, w, errors);
      if (sources === 'none') return;
      const base = {
        workload: workloadId(w),
        op: exec ? LSM_OP_PROCESS : LSM_OP_FILE,
        ruleId: rule.ruleId,
        action,
        readOnly: !exec && rule.readOnly === true,
        ownerOnly: rule.ownerOnly === true,
        execname: target.kind === 'execname',
      };
      for (const b of bytes) {
        for (const src of sources ?? [undefined]) patterns.push({ ...base, bytes: b, srcDev: src?.dev ?? 0n, srcIno: src?.ino ?? 0n });
      }
      return;
    }
    if (!target || (target.kind !== 'path' && target.kind !== 'dir')) {
      errors.push(`${where}: target must be a path, a directory, a pattern or an execname`);
      return;
    }
    const problem = pathProblem(target.path);
    if (problem) {
      errors.push(`${where}: target ${problem}`);
      return;
    }
    watchPaths.add(watchPath(target.path, w));
    for (const source of Array.isArray(rule.fromSource) ? rule.fromSource : []) {
      if (source?.kind === 'path' && !pathProblem(source.path)) watchPaths.add(watchPath(source.path, w));
    }
    if (exec && rule.readOnly) errors.push(`${where}: readOnly does not apply to process rules; enforced without it`);
    let inode: TargetInode;
    try {
      inode = resolvers.target(target.path, w);
    } catch (err) {
      errors.push(`${where}: ${target.path} is not enforced: ${(err as Error).message}`);
      return;
    }
    let match: LsmMatch;
    if (target.kind === 'dir') {
      if (!inode.isDir) {
        errors.push(`${where}: ${target.path} is not a directory; rule not enforced`);
        return;
      }
      match = target.recursive ? LsmMatch.Recursive : LsmMatch.Child;
    } else {
      match = LsmMatch.Exact;
    }
    const sources = resolveSources(rule.fromSource, where, resolvers.source, w, errors);
    if (sources === 'none') return;
    const op = exec ? LSM_OP_PROCESS : LSM_OP_FILE;
    const workload = workloadId(w);
    const variant = lsmVariant(match, !exec && rule.readOnly === true, rule.ownerOnly === true);
    if (sources === undefined) {
      mergeVerdict(entry(workload, op, inode, undefined), variant, rule.ruleId, action);
      return;
    }
    for (const src of sources) mergeVerdict(entry(workload, op, inode, src), variant, rule.ruleId, action);
    // the kernel looks sourced entries up only when the target's any-source entry says so
    entry(workload, op, inode, undefined).hasSourced = true;
  });

  const net: NativeNetRule[] = [];
  networkRules.forEach((rule, index) => {
    const w = rule.workload;
    const where = `network rule ${rule.ruleId} (#${index}${w ? `, container ${w.containerName}` : ''})`;
    if (!Number.isInteger(rule.ruleId) || rule.ruleId < 0 || rule.ruleId > 0xffffffff) {
      errors.push(`network rule #${index}: ruleId must be an integer in 0..4294967295, got ${String(rule.ruleId)}`);
      return;
    }
    const action = own(ACTION, rule.action);
    if (action === undefined) {
      errors.push(`${where}: ${actionProblem(rule.action)}`);
      return;
    }
    const protoClass = own(PROTO_CLASS, rule.protocol);
    if (protoClass === undefined) {
      errors.push(`${where}: protocol must be one of tcp, udp, icmp, icmpv6, raw, got ${String(rule.protocol)}`);
      return;
    }
    const base = { ruleId: rule.ruleId, action, protoClass, workload: workloadId(w) };
    for (const source of Array.isArray(rule.fromSource) ? rule.fromSource : []) {
      if (source?.kind === 'path' && !pathProblem(source.path)) watchPaths.add(watchPath(source.path, w));
    }
    const sources = resolveSources(rule.fromSource, where, resolvers.source, w, errors);
    if (sources === 'none') return;
    if (sources === undefined) net.push({ ...base, srcDev: 0n, srcIno: 0n });
    else for (const src of sources) net.push({ ...base, srcDev: src.dev, srcIno: src.ino });
  });

  const postureEntries = toLsmPostures(postures, errors);
  return {
    ...(patterns.length > 0 ? { patterns } : {}),
    paths: [...entries.values()],
    net,
    ...(postureEntries.length > 0 ? { postures: postureEntries } : {}),
    errors,
    watchPaths: [...watchPaths],
  };
}

export interface LsmApplyResult {
  errors: string[];
  /** see LsmRuleSet.watchPaths */
  watchPaths: string[];
  /** false: the whole set was refused and the previous one is still in force */
  applied: boolean;
}

// Pinned state ------------------------------------------------------------------

/** Where edgeward pins BPF objects (bpffs). */
export const PIN_ROOT = '/sys/fs/bpf/edgeward';

/** The pin directory of this build's map layout: another layout gets another directory. */
export function lsmPinDir(layoutVersion: number, root = PIN_ROOT): string {
  return `${root}/lsm-v${layoutVersion}`;
}

/**
 * Removes pinned bpf-lsm state under `root` (every layout, or all but
 * `keep`): unlinking a pinned link detaches its program once no process
 * holds it. Returns the directories removed. What `edgeward unload` does.
 */
export function unloadPinnedLsm(root = PIN_ROOT, keep?: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new Error(`cannot list ${root}: ${(err as Error).message}`);
  }
  const removed: string[] = [];
  for (const name of names.filter((n) => /^lsm-v\d+$/.test(n)).sort()) {
    const dir = `${root}/${name}`;
    if (dir === keep) continue;
    // links first: programs stop before their maps go
    const files = fs.readdirSync(dir).sort((a, b) => Number(b.startsWith('link_')) - Number(a.startsWith('link_')));
    for (const f of files) fs.unlinkSync(`${dir}/${f}`);
    fs.rmdirSync(dir);
    removed.push(dir);
  }
  return removed;
}

export interface LsmEnforcerOptions {
  /**
   * Pin programs and rules under PIN_ROOT (or this root) so enforcement
   * survives the agent; a restarted agent adopts them. Default: not pinned.
   */
  pin?: boolean | { root: string };
}

/** Process, file and network rules decided in the kernel by BPF-LSM programs. */
export class LsmEnforcer {
  private native: NativeLsmEnforcer | undefined;
  private readonly addon: NativeAddon;
  private readonly limits: NativeLsmLimits;
  private readonly pinRoot: string | undefined;
  private readonly pinDir: string | undefined;
  private staleRemoved = false;

  /**
   * Loads and attaches the LSM programs; throws when the kernel refuses.
   * No rules yet, unless pinned rules were adopted (see adopted()).
   */
  constructor(addon: NativeAddon, ring: NativeEventRing, options: LsmEnforcerOptions = {}) {
    const lsm = lsmAddon(addon);
    this.addon = addon;
    this.limits = lsm.lsmLimits;
    if (options.pin) {
      this.pinRoot = typeof options.pin === 'object' ? options.pin.root : PIN_ROOT;
      fs.mkdirSync(this.pinRoot, { recursive: true, mode: 0o700 });
      this.pinDir = lsmPinDir(this.limits.layoutVersion, this.pinRoot);
    }
    this.native = new lsm.LsmEnforcer(ring, this.pinDir ? { pinDir: this.pinDir } : {});
  }

  /** Whether rules pinned by an earlier agent were adopted (and are in force now). */
  adopted(): boolean {
    return this.open().adopted();
  }

  /**
   * Replaces the rules in force, all at once, then the containers told
   * apart from the host (`workloads`: every running container, whether a
   * rule names it or not; rules with `workload` set are that container's).
   * Rules (or sources) that cannot be enforced are left out and reported;
   * when the whole set cannot be loaded (capacity, kernel refusal) the
   * previous set stays in force and the reason is reported.
   * `postures`: the workloads in allow-list mode (policy/posture.ts
   * allowListModes(set)); their process, file and network postures are
   * decided in the kernel (capabilities: LsmCapable).
   */
  apply(
    pathRules: PathRule[],
    networkRules: NetworkRule[],
    resolvers?: LsmResolvers,
    workloads: readonly WorkloadTarget[] = [],
    postures: readonly WorkloadPosture[] = [],
  ): LsmApplyResult {
    const native = this.open();
    const set = toLsmRuleSet(
      pathRules,
      networkRules,
      resolvers ?? { target: targetResolver(this.addon), source: executableResolver(this.addon) },
      postures,
    );
    // After the rules (as the compat enforcers do): a new container is the
    // host until its rules are in place, never a workload without them.
    // Done even when the set is refused: host rules must not reach into new containers.
    const setWorkloads = (): string[] => {
      try {
        native.setWorkloads(toNativeWorkloads(workloads));
        return [];
      } catch (err) {
        return [`bpf-lsm: containers not updated: ${(err as Error).message}`];
      }
    };
    const over: string[] = [];
    if (set.paths.length > this.limits.maxPathEntries) {
      over.push(`${set.paths.length} path entries (one per target, operation and source; at most ${this.limits.maxPathEntries})`);
    }
    if ((set.patterns?.length ?? 0) > this.limits.maxPatterns) {
      over.push(`${set.patterns!.length} pattern entries (one per pattern or execname rule, brace alternative and source; at most ${this.limits.maxPatterns})`);
    }
    if (set.net.length > this.limits.maxNetEntries) {
      over.push(`${set.net.length} network entries (one per rule and source; at most ${this.limits.maxNetEntries})`);
    }
    if (over.length > 0) {
      return {
        errors: [`bpf-lsm rule set refused: ${over.join(' and ')}; the previous rules stay in force`, ...setWorkloads()],
        watchPaths: set.watchPaths,
        applied: false,
      };
    }
    try {
      native.setRules({
        paths: set.paths,
        net: set.net,
        ...(set.postures ? { postures: set.postures } : {}),
        ...(set.patterns ? { patterns: set.patterns } : {}),
      });
    } catch (err) {
      return {
        errors: [...set.errors, `bpf-lsm rules not applied: ${(err as Error).message}`, ...setWorkloads()],
        watchPaths: set.watchPaths,
        applied: false,
      };
    }
    const errors = [...set.errors, ...setWorkloads()];
    if (this.pinRoot && !this.staleRemoved) {
      // another layout's pinned programs enforced the old rules until now
      try {
        unloadPinnedLsm(this.pinRoot, this.pinDir);
        this.staleRemoved = true;
      } catch (err) {
        errors.push(`bpf-lsm: removing pinned state of another version failed: ${(err as Error).message}`);
      }
    }
    return { errors, watchPaths: set.watchPaths, applied: true };
  }

  stats(): NativeLsmStats {
    return this.open().stats();
  }

  enableStats(): void {
    this.open().enableStats();
  }

  attached(): string[] {
    return this.open().attached();
  }

  /** Ids of the rule maps (see NativeLsmEnforcer.mapIds). */
  mapIds(): number[] {
    return this.open().mapIds();
  }

  /** Detaches the programs and removes the pins: everything is allowed again. Idempotent. */
  close(): void {
    this.native?.close();
    this.native = undefined;
  }

  /** Lets go of the programs; pinned ones keep enforcing (unpinned ones detach). Idempotent. */
  release(): void {
    this.native?.release();
    this.native = undefined;
  }

  private open(): NativeLsmEnforcer {
    if (!this.native) throw new Error('LsmEnforcer is closed');
    return this.native;
  }
}
