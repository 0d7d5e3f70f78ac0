// The compat network enforcer, TypeScript half: turns compiled NetworkRules
// into kernel map entries for the cgroup-bpf programs (bpf/net_enforcer.bpf.c,
// native/src/net_enforcer.cc).
//
// fromSource is matched by the executable's inode, the kernel's
// current->mm->exe_file: immune to renames, symlinks, hard links, bind mounts
// and chroots, but a copy of the binary is a different inode (and so is the
// file after a package upgrade replaces it: apply() again after upgrades).
// The device half is the kernel's sb->s_dev (MKDEV form), not st_dev.
//
// Containers: a resolved container rule (NetworkRule.workload) is keyed by
// the container's workload id and applies to its processes only; its
// fromSource paths are found inside the container's root (symlinks stay
// inside it). Host rules (workload 0) apply to host processes only.
//
// Allow-list mode: Allow rules become EW_ACTION_ALLOW entries, and each
// workload whose network category has an Allow rule gets a posture entry
// (protoClass EW_NET_POSTURE_CLASS): a classified socket no Allow or Block
// entry matches is refused or reported under the posture's rule id.
import * as fs from 'fs';

import { Action, EW_MAX_NET_RULES, EW_NET_POSTURE_CLASS, ProtoClass } from './abi';
import { toNativeWorkloads } from './file_enforcer';
import type { ContainerPathInfo, NativeAddon, NativeEventRing, NativeNetEnforcer, NativeNetRule } from './native';
import type { WorkloadPosture } from './policy/posture';
import type { NetworkRule, Protocol, SourceMatch, WorkloadTarget } from './policy/types';

const MINORBITS = 20n; // the kernel's dev_t: major << 20 | minor
const MAX_MAJOR = (1n << 12n) - 1n;
const MAX_MINOR = (1n << MINORBITS) - 1n;

/**
 * Converts a userspace st_dev (glibc's 64-bit makedev() encoding, which is
 * the kernel's new_encode_dev() form for 32-bit values) into the kernel's
 * internal dev_t, MKDEV(major, minor) = major << 20 | minor, the form of
 * inode->i_sb->s_dev that the BPF programs read.
 */
export function statDevToKernelDev(stDev: bigint): bigint {
  if (stDev < 0n || stDev >= 1n << 64n) {
    throw new RangeError(`st_dev ${stDev} is not a 64-bit unsigned device number`);
  }
  const major = ((stDev >> 8n) & 0xfffn) | ((stDev >> 32n) & 0xfffff000n);
  const minor = (stDev & 0xffn) | ((stDev >> 12n) & 0xffffff00n);
  if (major > MAX_MAJOR || minor > MAX_MINOR) {
    throw new RangeError(`st_dev ${stDev} (major ${major}, minor ${minor}) does not fit the kernel's dev_t (12-bit major, 20-bit minor)`);
  }
  return (major << MINORBITS) | minor;
}

const PROTO_CLASS: Record<Protocol, ProtoClass> = {
  tcp: ProtoClass.Tcp,
  udp: ProtoClass.Udp,
  icmp: ProtoClass.Icmp,
  icmpv6: ProtoClass.Icmpv6,
  raw: ProtoClass.Raw,
};

const ACTION: Record<string, Action> = { Block: Action.Block, Audit: Action.Audit, Allow: Action.Allow };

/** An executable's identity as the kernel sees it (kernel dev_t, inode number). */
export interface ExecutableInode {
  dev: bigint;
  ino: bigint;
}

/** One line of /proc/self/mountinfo: where a filesystem is mounted and its superblock's s_dev. */
export interface MountEntry {
  mountPoint: string;
  /** MKDEV(major, minor) of the mount's superblock, the kernel's form */
  dev: bigint;
  fsType: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parses /proc/self/mountinfo text (lines that do not parse are skipped). */
export function parseMountInfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const f = line.slice(0, sep).split(' ');
    const m = /^(\d+):(\d+)$/.exec(f[2] ?? '');
    if (!m || f.length < 5) continue;
    out.push({
      mountPoint: unescapeMountField(f[4]),
      dev: (BigInt(m[1]) << MINORBITS) | BigInt(m[2]),
      fsType: line.slice(sep + 3).split(' ')[0],
    });
  }
  return out;
}

/**
 * The mount a resolved absolute path lives on: the longest mount point that
 * is a path prefix of it; among mounts on the same point the last one (the
 * top of the stack) wins. undefined when the table has no root mount.
 */
export function mountOf(realPath: string, mounts: MountEntry[]): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const p = m.mountPoint;
    const under = p === '/' || realPath === p || realPath.startsWith(p.endsWith('/') ? p : `${p}/`);
    if (under && (!best || p.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/**
 * Resolves an executable path to the inode that processes running it have
 * as their exe_file: the inode number from stat(), the device from the
 * superblock of the mount the file is on (mountinfo's major:minor). That is
 * the kernel's sb->s_dev even where st_dev is not: btrfs reports a
 * per-subvolume st_dev, overlayfs the underlying filesystem's.
 * Throws an Error saying why a path cannot be one.
 */
export function resolveExecutableInode(path: string, mounts?: MountEntry[]): ExecutableInode {
  let st: fs.BigIntStats;
  let real: string;
  try {
    st = fs.statSync(path, { bigint: true }); // follows symlinks, as exec does
    real = fs.realpathSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Error(`cannot stat ${path} (${code})`);
  }
  if (!st.isFile()) throw new Error(`${path} is not a regular file`);
  // A script's processes run its interpreter: its own inode is never an exe_file.
  const head = Buffer.alloc(2);
  let fd = -1;
  try {
    fd = fs.openSync(path, 'r');
    fs.readSync(fd, head, 0, 2, 0);
  } catch {
    // unreadable to us: still a valid inode to match
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
  if (head.toString('latin1') === '#!') {
    throw new Error(`${path} is a script: processes running it have its interpreter as executable; name the interpreter`);
  }
  const table = mounts ?? parseMountInfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
  const mount = mountOf(real, table);
  return { dev: mount ? mount.dev : statDevToKernelDev(st.dev), ino: st.ino };
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

/**
 * The executable inode of a path found inside a container (`info`, from
 * NativeAddon.resolveInContainer) with the container's mount table: as for
 * the host, the device is the superblock's from mountinfo.
 */
export function containerExecutableInode(path: string, info: ContainerPathInfo, mounts: MountEntry[]): ExecutableInode {
  if ((info.mode & S_IFMT) !== S_IFREG) throw new Error(`${path} is not a regular file in the container`);
  if (info.shebang) {
    throw new Error(`${path} is a script: processes running it have its interpreter as executable; name the interpreter`);
  }
  const mount = mountOf(info.path, mounts);
  return { dev: mount ? mount.dev : statDevToKernelDev(info.dev), ino: info.ino };
}

/** Finds a fromSource executable: on the host, or inside the container a rule was resolved to. */
export type ExecutableResolve = (path: string, workload?: WorkloadTarget) => ExecutableInode;

/**
 * A resolver reading each mount table once (for one apply()). Paths in
 * containers need the addon (resolveInContainer); without it they fail.
 */
export function executableResolver(addon?: Pick<NativeAddon, 'resolveInContainer'>): ExecutableResolve {
  return mountAwareResolver(addon, resolveExecutableInode, containerExecutableInode);
}

/**
 * Resolves paths to inodes on the host or inside a container's root,
 * reading each mount table (the host's, each container's) once per resolver:
 * make one per apply(). Paths in containers need the addon
 * (resolveInContainer, which checks that the pid is still the container's);
 * without it they fail.
 */
export function mountAwareResolver<T>(
  addon: Pick<NativeAddon, 'resolveInContainer'> | undefined,
  onHost: (path: string, mounts: MountEntry[]) => T,
  inContainer: (path: string, info: ContainerPathInfo, mounts: MountEntry[]) => T,
): (path: string, workload?: WorkloadTarget) => T {
  let mounts: MountEntry[] | undefined;
  const containerMounts = new Map<number, MountEntry[]>();
  return (path, workload) => {
    if (!workload) {
      mounts ??= parseMountInfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
      return onHost(path, mounts);
    }
    if (!addon) throw new Error('paths inside containers cannot be resolved here');
    const info = addon.resolveInContainer(workload.pid, workload.mntNs, path);
    let table = containerMounts.get(workload.pid);
    if (!table) {
      table = parseMountInfo(fs.readFileSync(`/proc/${workload.pid}/mountinfo`, 'utf8'));
      containerMounts.set(workload.pid, table);
    }
    return inContainer(path, info, table);
  };
}

/** The kernel entries for a rule set, and a line per rule (or source) that cannot be enforced. */
export interface NativeNetRuleSet {
  rules: NativeNetRule[];
  errors: string[];
}

/**
 * Converts compiled rules into kernel entries: one per source executable
 * (or one with srcDev = srcIno = 0n when the rule has no fromSource).
 * Pure apart from `resolve` (injectable for tests).
 */
export function toNativeNetRules(rules: NetworkRule[], resolve: ExecutableResolve = executableResolver()): NativeNetRuleSet {
  const out: NativeNetRule[] = [];
  const errors: string[] = [];
  rules.forEach((rule, index) => {
    const w = rule.workload;
    const where = `network rule ${rule.ruleId} (#${index}${w ? `, container ${w.containerName}` : ''})`;
    if (!Number.isInteger(rule.ruleId) || rule.ruleId < 0 || rule.ruleId > 0xffffffff) {
      errors.push(`network rule #${index}: ruleId must be an integer in 0..4294967295, got ${String(rule.ruleId)}`);
      return;
    }
    const action = Object.prototype.hasOwnProperty.call(ACTION, rule.action) ? ACTION[rule.action] : undefined;
    if (action === undefined) {
      errors.push(`${where}: action must be Block, Audit or Allow, got ${String(rule.action)}`);
      return;
    }
    const protoClass = Object.prototype.hasOwnProperty.call(PROTO_CLASS, rule.protocol)
      ? PROTO_CLASS[rule.protocol]
      : undefined;
    if (protoClass === undefined) {
      errors.push(`${where}: protocol must be one of tcp, udp, icmp, icmpv6, raw, got ${String(rule.protocol)}`);
      return;
    }
    if (rule.scope?.kind === 'containers' && !w) {
      // Unresolved, it would apply to the host: never.
      errors.push(`${where}: a container rule not resolved to a container; not enforced`);
      return;
    }
    if (w && !(Number.isInteger(w.mntNs) && w.mntNs > 0)) {
      errors.push(`${where}: container ${w.containerName} has no usable mount namespace; not enforced`);
      return;
    }
    const base = { ruleId: rule.ruleId, action, protoClass, workload: w ? BigInt(w.mntNs) : 0n };
    const sources: SourceMatch[] = Array.isArray(rule.fromSource) ? rule.fromSource : [];
    if (sources.length === 0) {
      out.push({ ...base, srcDev: 0n, srcIno: 0n });
      return;
    }
    for (const source of sources) {
      if (source.kind === 'dir') {
        errors.push(
          `${where}: fromSource dir ${source.path} cannot be enforced by the compat network enforcer ` +
            '(it matches executables by inode); list the executables by path',
        );
        continue;
      }
      try {
        const { dev, ino } = resolve(source.path, w);
        out.push({ ...base, srcDev: dev, srcIno: ino });
      } catch (err) {
        errors.push(`${where}: fromSource ${source.path} is not enforced: ${(err as Error).message}`);
      }
    }
  });
  return { rules: out, errors };
}

/** The posture entries of the workloads whose network category is in allow-list mode. Pure. */
export function toNativeNetPostures(postures: readonly WorkloadPosture[]): NativeNetRule[] {
  const out: NativeNetRule[] = [];
  for (const p of postures) {
    const n = p.postures.network;
    if (!n) continue;
    out.push({
      ruleId: n.ruleId,
      action: n.action === 'Block' ? Action.Block : Action.Audit,
      protoClass: EW_NET_POSTURE_CLASS,
      workload: p.workload ? BigInt(p.workload.mntNs) : 0n,
      srcDev: 0n,
      srcIno: 0n,
    });
  }
  return out;
}

/** Network protocol rules enforced by cgroup-bpf on the whole host (the cgroup v2 root). */
export class NetEnforcer {
  private native: NativeNetEnforcer | undefined;

  /** Loads and attaches the programs to `cgroup2Path`; throws when the kernel refuses. */
  constructor(
    private readonly addon: NativeAddon,
    ring: NativeEventRing,
    cgroup2Path: string,
  ) {
    this.native = new addon.NetEnforcer(ring, { cgroupPath: cgroup2Path });
  }

  /**
   * Replaces the rules in force. Rules (or sources) that cannot be enforced
   * are left out and reported; when the whole set cannot be loaded the
   * previous set stays in force and the reason is the only error.
   */
  apply(
    rules: NetworkRule[],
    workloads: readonly WorkloadTarget[] = [],
    postures: readonly WorkloadPosture[] = [],
  ): { errors: string[] } {
    const native = this.open();
    const converted = toNativeNetRules(rules, executableResolver(this.addon));
    converted.rules.push(...toNativeNetPostures(postures));
    if (converted.rules.length > EW_MAX_NET_RULES) {
      return {
        errors: [
          `network rules: ${converted.rules.length} kernel entries (one per rule and source), at most ` +
            `${EW_MAX_NET_RULES} are supported; the previous network rules stay in force`,
        ],
      };
    }
    try {
      native.setRules(converted.rules);
    } catch (err) {
      return { errors: [...converted.errors, `network rules not applied: ${(err as Error).message}`] };
    }
    // After the rules, as for files: no moment where a container is neither the host nor itself with its rules.
    try {
      native.setWorkloads(toNativeWorkloads(workloads));
    } catch (err) {
      return { errors: [...converted.errors, `containers not updated for network rules: ${(err as Error).message}`] };
    }
    return { errors: converted.errors };
  }

  /** Entries in the kernel map. */
  ruleCount(): number {
    return this.open().ruleCount();
  }

  /** Detaches the programs: every socket is allowed again. Idempotent. */
  close(): void {
    this.native?.close();
    this.native = undefined;
  }

  private open(): NativeNetEnforcer {
    if (!this.native) throw new Error('NetEnforcer is closed');
    return this.native;
  }
}
