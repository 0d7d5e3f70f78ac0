// Capability rules on bpf-lsm, TypeScript half: turns compiled
// capabilities.matchCapabilities rules into the kernel entries of
// bpf/lsm_capable.bpf.c (through native/src/lsm_capable.cc).
//
// An entry is (workload, capability number, source executable inode):
// workload 0n is the host, a container is its mount namespace inode (the
// containers are told apart from the host through setWorkloads, so host
// rules never reach them); fromSource executables are keyed by inode like
// the other bpf-lsm rules (net_enforcer.ts resolveExecutableInode).
//
// Block refuses the capability (the syscall needing it fails, usually with
// EPERM) and reports; Audit reports. Allow rules switch their workload's
// capabilities to allow-list mode (agent/src/policy/posture.ts): a check no
// Allow rule matches gets the default posture, decided in the kernel. Order:
// Block, Allow, posture, Audit. Never refused: the agent's own process and
// kernel threads; never given the posture: the host's init (pid 1).
//
// Pinned (pin option), the rules outlive the agent like the path and network
// rules (agent/src/lsm_enforcer.ts): under <root>/cap-v<layout>.
import * as fs from 'fs';

import { Action } from './abi';
import { toNativeWorkloads } from './file_enforcer';
import { executableResolver, ExecutableResolve } from './net_enforcer';
import { PIN_ROOT } from './lsm_enforcer';
import type { NativeAddon, NativeCapPosture, NativeCapRule, NativeEventRing, NativeLsmCapable, NativeLsmCapableStats } from './native';
import type { WorkloadPosture } from './policy/posture';
import type { CapabilityRule, SourceMatch, WorkloadTarget } from './policy/types';

/** The kernel's capability numbers (include/uapi/linux/capability.h), by KubeArmor's names. */
export const CAPABILITY_NUMBERS: Readonly<Record<string, number>> = Object.freeze({
  chown: 0,
  dac_override: 1,
  dac_read_search: 2,
  fowner: 3,
  fsetid: 4,
  kill: 5,
  setgid: 6,
  setuid: 7,
  setpcap: 8,
  linux_immutable: 9,
  net_bind_service: 10,
  net_broadcast: 11,
  net_admin: 12,
  net_raw: 13,
  ipc_lock: 14,
  ipc_owner: 15,
  sys_module: 16,
  sys_rawio: 17,
  sys_chroot: 18,
  sys_ptrace: 19,
  sys_pacct: 20,
  sys_admin: 21,
  sys_boot: 22,
  sys_nice: 23,
  sys_resource: 24,
  sys_time: 25,
  sys_tty_config: 26,
  mknod: 27,
  lease: 28,
  audit_write: 29,
  audit_control: 30,
  setfcap: 31,
  mac_override: 32,
  mac_admin: 33,
  syslog: 34,
  wake_alarm: 35,
  block_suspend: 36,
  audit_read: 37,
  perfmon: 38,
  bpf: 39,
  checkpoint_restore: 40,
});

/** Entries per rule set (bpf/include/ew_capable_abi.h EW_CAP_MAX_ENTRIES). */
export const CAP_MAX_ENTRIES = 4096;

/**
 * The kernel number of a capability named as KubeArmor writes it ("net_raw",
 * "NET_RAW", "CAP_NET_RAW"); undefined when the kernel has no such capability.
 */
export function capabilityNumber(name: unknown): number | undefined {
  if (typeof name !== 'string') return undefined;
  const key = name.trim().toLowerCase().replace(/^cap_/, '');
  return Object.prototype.hasOwnProperty.call(CAPABILITY_NUMBERS, key) ? CAPABILITY_NUMBERS[key] : undefined;
}

/** "CAP_NET_RAW" for 13: the Resource of capability alerts. */
export function capabilityName(cap: number): string | undefined {
  const entry = Object.entries(CAPABILITY_NUMBERS).find(([, n]) => n === cap);
  return entry ? `CAP_${entry[0].toUpperCase()}` : undefined;
}

const ACTION: Record<string, Action> = { Block: Action.Block, Audit: Action.Audit, Allow: Action.Allow };

/** The kernel entries of a rule set, and a line per rule (or source) that is not enforced. */
export interface NativeCapRuleSet {
  rules: NativeCapRule[];
  errors: string[];
}

/**
 * Converts compiled capability rules into kernel entries: one per rule and
 * source executable (srcDev = srcIno = 0n without fromSource). For one key a
 * Block entry replaces every other (Block wins); Allow and Audit entries are
 * both kept (an allowed check is still audited); the first rule of an action
 * is kept. A rule that cannot be enforced as written is left out whole,
 * never widened (a rule whose sources all fail does not become an
 * any-process rule; an Allow rule left out only narrows what is allowed).
 * Pure apart from `resolve` (injectable for tests).
 */
export function toNativeCapRules(rules: readonly CapabilityRule[], resolve: ExecutableResolve = executableResolver()): NativeCapRuleSet {
  const errors: string[] = [];
  const entries = new Map<string, Map<Action, NativeCapRule>>();
  const add = (e: NativeCapRule) => {
    const key = `${e.workload}/${e.cap}/${e.srcDev}/${e.srcIno}`;
    const byAction = entries.get(key) ?? new Map<Action, NativeCapRule>();
    entries.set(key, byAction);
    if (byAction.has(Action.Block)) return;
    if (e.action === Action.Block) byAction.clear();
    if (!byAction.has(e.action)) byAction.set(e.action, e);
  };
  rules.forEach((rule, index) => {
    const w = rule.workload;
    const where = `capability rule ${String(rule.ruleId)} (#${index}${w ? `, container ${w.containerName}` : ''})`;
    if (!Number.isInteger(rule.ruleId) || rule.ruleId < 0 || rule.ruleId > 0xffffffff) {
      errors.push(`capability rule #${index}: ruleId must be an integer in 0..4294967295, got ${String(rule.ruleId)}`);
      return;
    }
    const action = Object.prototype.hasOwnProperty.call(ACTION, rule.action) ? ACTION[rule.action] : undefined;
    if (action === undefined) {
      errors.push(`${where}: action must be Block, Audit or Allow, got ${String(rule.action)}`);
      return;
    }
    const cap = capabilityNumber(rule.capability);
    if (cap === undefined) {
      errors.push(`${where}: unknown capability ${JSON.stringify(rule.capability)} (the kernel's names, e.g. net_raw, sys_admin); rule not enforced`);
      return;
    }
    if (rule.scope?.kind === 'containers' && !w) {
      // unresolved, it would apply to the host: never
      errors.push(`${where}: a container rule not resolved to a container; not enforced`);
      return;
    }
    if (w && !(Number.isInteger(w.mntNs) && w.mntNs > 0)) {
      errors.push(`${where}: container ${w.containerName} has no usable mount namespace; not enforced`);
      return;
    }
    const base = { ruleId: rule.ruleId, action, cap, workload: w ? BigInt(w.mntNs) : 0n };
    const sources: SourceMatch[] = Array.isArray(rule.fromSource) ? rule.fromSource : [];
    if (sources.length === 0) {
      add({ ...base, srcDev: 0n, srcIno: 0n });
      return;
    }
    let usable = 0;
    for (const source of sources) {
      if (source?.kind !== 'path' || typeof source.path !== 'string' || !source.path.startsWith('/')) {
        errors.push(
          `${where}: fromSource ${source?.kind === 'dir' ? `dir ${source.path}` : JSON.stringify(source)} is not enforced by bpf-lsm ` +
            '(it matches executables by inode); list the executables by absolute path',
        );
        continue;
      }
      try {
        const { dev, ino } = resolve(source.path, w);
        add({ ...base, srcDev: dev, srcIno: ino });
        usable++;
      } catch (err) {
        errors.push(`${where}: fromSource ${source.path} is not enforced: ${(err as Error).message}`);
      }
    }
    if (usable === 0) errors.push(`${where}: no usable fromSource entry; rule not enforced`);
  });
  return { rules: [...entries.values()].flatMap((byAction) => [...byAction.values()]), errors };
}

const POSTURE_ACTION: Record<string, Action> = { Block: Action.Block, Audit: Action.Audit };

/**
 * The kernel's posture entries: one per workload whose capabilities are in
 * allow-list mode (allowListModes() of the set). A container without a usable
 * mount namespace is named in the errors (its Allow rules are left out too).
 */
export function toNativeCapPostures(modes: readonly WorkloadPosture[]): { postures: NativeCapPosture[]; errors: string[] } {
  const postures: NativeCapPosture[] = [];
  const errors: string[] = [];
  for (const m of modes) {
    const p = m.postures.capabilities;
    if (!p) continue;
    const where = m.workload ? `container ${m.workload.containerName}` : 'host';
    const action = Object.prototype.hasOwnProperty.call(POSTURE_ACTION, p.action) ? POSTURE_ACTION[p.action] : undefined;
    if (action === undefined || !Number.isInteger(p.ruleId) || p.ruleId < 0 || p.ruleId > 0xffffffff) {
      errors.push(`${where}: capabilities default posture ${JSON.stringify(p)} is not Block or Audit with a rule id; allow-list not enforced`);
      continue;
    }
    if (m.workload && !(Number.isInteger(m.workload.mntNs) && m.workload.mntNs > 0)) {
      errors.push(`${where}: no usable mount namespace; capabilities allow-list not enforced`);
      continue;
    }
    postures.push({ workload: m.workload ? BigInt(m.workload.mntNs) : 0n, ruleId: p.ruleId, action });
  }
  return { postures, errors };
}

/** What an apply() did. */
export interface LsmCapableApplyResult {
  errors: string[];
  /** false: the previous rule set stays in force */
  applied: boolean;
  entries: number;
}

export interface LsmCapableOptions {
  /** never refused (default: this process) */
  agentPid?: number;
  /**
   * Pin the program and the rules under PIN_ROOT (or this root) so they
   * keep enforcing after the agent; a restart adopts them. Default: not pinned.
   */
  pin?: boolean | { root: string };
}

/** The native part, or an Error saying the addon lacks it. */
export function capableAddon(addon: NativeAddon): NonNullable<NativeAddon['LsmCapable']> {
  if (typeof addon.LsmCapable !== 'function') throw new Error('the native addon has no LsmCapable (rebuild it: npm run build)');
  return addon.LsmCapable;
}

/** The pin directory of a capable layout: another layout gets another directory. */
export function capablePinDir(layoutVersion: number, root = PIN_ROOT): string {
  return `${root}/cap-v${layoutVersion}`;
}

const CAP_PIN_DIR = /^cap-v\d+$/;

/**
 * Removes pinned capability state under `root` (every layout, or all but
 * `keep`): the link first (its program detaches once no process holds it),
 * then the maps. Returns the directories removed; throws naming the path.
 */
export function unloadPinnedCapable(root = PIN_ROOT, keep?: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new Error(`cannot list ${root}: ${(err as Error).message}`);
  }
  const removed: string[] = [];
  for (const name of names.filter((n) => CAP_PIN_DIR.test(n)).sort()) {
    const dir = `${root}/${name}`;
    if (dir === keep) continue;
    const files = fs.readdirSync(dir).sort((a, b) => Number(b.startsWith('link_')) - Number(a.startsWith('link_')));
    for (const f of files) {
      try {
        fs.unlinkSync(`${dir}/${f}`);
      } catch (err) {
        throw Object.assign(new Error(`cannot remove ${dir}/${f}: ${(err as Error).message}`), { code: (err as NodeJS.ErrnoException).code });
      }
    }
    fs.rmdirSync(dir);
    removed.push(dir);
  }
  return removed;
}

/** Capability rules decided in the kernel by lsm/capable. */
export class LsmCapable {
  private native: NativeLsmCapable | undefined;
  /** where it is pinned (undefined: not pinned) */
  readonly pinDir: string | undefined;
  private readonly pinRoot: string | undefined;
  private staleRemoved = false;

  /**
   * Loads and attaches lsm/capable; throws when the kernel refuses (or,
   * pinned, when the pin directory cannot be used). No rules yet, unless
   * pinned rules were adopted (see adopted()).
   */
  constructor(
    private readonly addon: NativeAddon,
    ring: NativeEventRing,
    options: LsmCapableOptions = {},
  ) {
    const Native = capableAddon(addon);
    if (options.pin) {
      if (!addon.capableLimits) throw new Error('the native addon has no capableLimits (rebuild it: npm run build)');
      this.pinRoot = typeof options.pin === 'object' ? options.pin.root : PIN_ROOT;
      fs.mkdirSync(this.pinRoot, { recursive: true, mode: 0o700 });
      this.pinDir = capablePinDir(addon.capableLimits.layoutVersion, this.pinRoot);
    }
    this.native = new Native(ring, { agentPid: options.agentPid ?? process.pid, ...(this.pinDir ? { pinDir: this.pinDir } : {}) });
  }

  /** Whether rules pinned by an earlier agent were adopted (in force now). */
  adopted(): boolean {
    return this.open().adopted();
  }

  /** Why pinned state of another layout was replaced instead of adopted ('' when it was not). */
  replaced(): string {
    return this.open().replaced();
  }

  /**
   * Replaces the rules in force, all at once (the new set is written beside
   * the old one and switched to). `workloads`: every running container, so
   * host rules do not apply to them (absent: every process is the host).
   * `modes`: the workloads in allow-list mode (allowListModes() of the set);
   * those with a capabilities posture get it in the kernel. When the set
   * cannot be loaded the previous one stays and the reason is reported.
   */
  apply(rules: readonly CapabilityRule[], workloads: readonly WorkloadTarget[] = [], modes: readonly WorkloadPosture[] = []): LsmCapableApplyResult {
    const native = this.open();
    const set = toNativeCapRules(rules, executableResolver(this.addon));
    const posture = toNativeCapPostures(modes);
    const errors = [...set.errors, ...posture.errors];
    const size = set.rules.length + posture.postures.length;
    if (size > CAP_MAX_ENTRIES) {
      return {
        errors: [...errors, `bpf-lsm capability rules refused: ${size} entries (one per rule and source, one per allow-list workload; at most ${CAP_MAX_ENTRIES}); the previous rules stay in force`],
        applied: false,
        entries: this.stats().entries,
      };
    }
    try {
      // containers first: a new container's rules must not meet it as "the host"
      native.setWorkloads(toNativeWorkloads(workloads));
      native.setRules(set.rules, posture.postures);
    } catch (err) {
      return { errors: [...errors, `bpf-lsm capability rules not applied: ${(err as Error).message}`], applied: false, entries: native.stats().entries };
    }
    if (this.pinRoot && !this.staleRemoved) {
      // another layout's pinned program enforced the old rules until now
      try {
        unloadPinnedCapable(this.pinRoot, this.pinDir);
        this.staleRemoved = true;
      } catch (err) {
        errors.push(`bpf-lsm: removing pinned capability state of another version failed: ${(err as Error).message}`);
      }
    }
    return { errors, applied: true, entries: set.rules.length };
  }

  stats(): NativeLsmCapableStats {
    return this.open().stats();
  }

  attached(): string[] {
    return this.open().attached();
  }

  /** Ids of its maps, for self-protection (agent/src/lsm_self_protect.ts). */
  mapIds(): number[] {
    return this.open().mapIds();
  }

  /** Detaches and removes the pins: no capability is refused any more. Idempotent. */
  close(): void {
    this.native?.close();
    this.native = undefined;
  }

  /** Lets go: pinned, the rules keep enforcing (edgeward unload removes them); unpinned, the same as close(). Idempotent. */
  release(): void {
    this.native?.release();
    this.native = undefined;
  }

  private open(): NativeLsmCapable {
    if (!this.native) throw new Error('LsmCapable is closed');
    return this.native;
  }
}
