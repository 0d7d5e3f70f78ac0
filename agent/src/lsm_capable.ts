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
// EPERM) and reports; Audit reports. Allow rules (allow-list mode) are not
// enforced yet: each is named in the errors. The agent's own process and
// kernel threads are never refused.
import { Action } from './abi';
import { toNativeWorkloads } from './file_enforcer';
import { executableResolver, ExecutableResolve } from './net_enforcer';
import type { NativeAddon, NativeCapRule, NativeEventRing, NativeLsmCapable, NativeLsmCapableStats } from './native';
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

const ACTION: Record<string, Action> = { Block: Action.Block, Audit: Action.Audit };

/** The kernel entries of a rule set, and a line per rule (or source) that is not enforced. */
export interface NativeCapRuleSet {
  rules: NativeCapRule[];
  errors: string[];
}

/**
 * Converts compiled capability rules into kernel entries: one per rule and
 * source executable (srcDev = srcIno = 0n without fromSource). Entries with
 * the same key keep the stronger action (Block > Audit). A rule that cannot
 * be enforced as written is left out whole, never widened (a rule whose
 * sources all fail does not become an any-process rule). Pure apart from
 * `resolve` (injectable for tests).
 */
export function toNativeCapRules(rules: readonly CapabilityRule[], resolve: ExecutableResolve = executableResolver()): NativeCapRuleSet {
  const errors: string[] = [];
  const entries = new Map<string, NativeCapRule>();
  const add = (e: NativeCapRule) => {
    const key = `${e.workload}/${e.cap}/${e.srcDev}/${e.srcIno}`;
    const had = entries.get(key);
    if (!had || e.action > had.action) entries.set(key, e);
  };
  rules.forEach((rule, index) => {
    const w = rule.workload;
    const where = `capability rule ${String(rule.ruleId)} (#${index}${w ? `, container ${w.containerName}` : ''})`;
    if (!Number.isInteger(rule.ruleId) || rule.ruleId < 0 || rule.ruleId > 0xffffffff) {
      errors.push(`capability rule #${index}: ruleId must be an integer in 0..4294967295, got ${String(rule.ruleId)}`);
      return;
    }
    if (rule.action === 'Allow') {
      errors.push(
        `${where}: Allow capability rules (allow-list mode with a default posture) are not enforced by the bpf-lsm backend yet; ` +
          'rule not enforced (use Block or Audit rules)',
      );
      return;
    }
    const action = Object.prototype.hasOwnProperty.call(ACTION, rule.action) ? ACTION[rule.action] : undefined;
    if (action === undefined) {
      errors.push(`${where}: action must be Block or Audit, got ${String(rule.action)}`);
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
  return { rules: [...entries.values()], errors };
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
}

/** The native part, or an Error saying the addon lacks it. */
export function capableAddon(addon: NativeAddon): NonNullable<NativeAddon['LsmCapable']> {
  if (typeof addon.LsmCapable !== 'function') throw new Error('the native addon has no LsmCapable (rebuild it: npm run build)');
  return addon.LsmCapable;
}

/**
 * Capability rules decided in the kernel by lsm/capable. Not pinned: the
 * program ends with the agent (release() and close() both detach it).
 */
export class LsmCapable {
  private native: NativeLsmCapable | undefined;

  /** Loads and attaches lsm/capable; throws when the kernel refuses. No rules yet. */
  constructor(
    private readonly addon: NativeAddon,
    ring: NativeEventRing,
    options: LsmCapableOptions = {},
  ) {
    this.native = new (capableAddon(addon))(ring, { agentPid: options.agentPid ?? process.pid });
  }

  /**
   * Replaces the rules in force, all at once (the new set is written beside
   * the old one and switched to). `workloads`: every running container, so
   * host rules do not apply to them (absent: every process is the host).
   * When the set cannot be loaded the previous one stays and the reason is
   * reported.
   */
  apply(rules: readonly CapabilityRule[], workloads: readonly WorkloadTarget[] = []): LsmCapableApplyResult {
    const native = this.open();
    const set = toNativeCapRules(rules, executableResolver(this.addon));
    if (set.rules.length > CAP_MAX_ENTRIES) {
      return {
        errors: [...set.errors, `bpf-lsm capability rules refused: ${set.rules.length} entries (one per rule and source; at most ${CAP_MAX_ENTRIES}); the previous rules stay in force`],
        applied: false,
        entries: this.stats().entries,
      };
    }
    try {
      // containers first: a new container's rules must not meet it as "the host"
      native.setWorkloads(toNativeWorkloads(workloads));
      native.setRules(set.rules);
    } catch (err) {
      return { errors: [...set.errors, `bpf-lsm capability rules not applied: ${(err as Error).message}`], applied: false, entries: native.stats().entries };
    }
    return { errors: set.errors, applied: true, entries: set.rules.length };
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

  /** Detaches: no capability is refused any more. Idempotent. */
  close(): void {
    this.native?.close();
    this.native = undefined;
  }

  /** The same as close(): the program is not pinned, it cannot outlive the agent. */
  release(): void {
    this.close();
  }

  private open(): NativeLsmCapable {
    if (!this.native) throw new Error('LsmCapable is closed');
    return this.native;
  }
}
