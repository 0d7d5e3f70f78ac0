// The `bpf-lsm` backend: process, file and network rules decided in the
// kernel by BPF-LSM programs (agent/src/lsm_enforcer.ts).
//
// Rules name inodes, resolved when a set is applied. A rule's file or
// directory (or a fromSource executable) replaced by a new inode, created
// after the set, or removed, changes what its path names: the parent
// directories of every target and source are watched and the set is
// resolved and switched in again shortly after such a change. Until then
// (about RESOLVE_DELAY_MS plus the resolve) the new inode is not covered.
//
// Container rules come resolved to one container each (agent/src/workloads.ts
// WorkloadBinding: re-applied whenever containers come and go); the set's
// `workloads` (every running container) tell the kernel which processes are
// which container's, so host rules stay on the host.
//
// Capability rules have their own program (agent/src/lsm_capable.ts), with
// allow-list mode (default posture) decided in the kernel. Pinned (the agent
// always pins), both programs and their rules outlive the agent; a restart
// adopts them. When pinning or adoption fails the rules are enforced unpinned
// (they end with the agent) and every apply() names the path and the reason.
import * as fs from 'fs';
import * as path from 'path';

import type { ApplyResult, EnforcementBackend, RuleKindSupport } from './backend';
import { LsmEnforcer, LsmEnforcerOptions, lsmAddon, lsmPinDir, NativeLsmStats, PIN_ROOT, unloadPinnedLsm } from './lsm_enforcer';
import type { NativeAddon, NativeEventRing } from './native';
import { acquireInstanceLock, InstanceLock, InstanceLockedError } from './instance_lock';
import { capablePinDir, LsmCapable, unloadPinnedCapable } from './lsm_capable';
import { allowListModes } from './policy/posture';
import type { CompiledPolicySet } from './policy/types';

/** bpf-lsm: exec, open, sockets and capabilities in the kernel. */
export const LSM_SUPPORT: RuleKindSupport = {
  process: 'enforce',
  file: 'enforce',
  network: 'enforce',
  capabilities: 'enforce',
};

/** Wait after a watched name changes before resolving again (editors replace in several steps). */
const RESOLVE_DELAY_MS = 50;

export interface LsmBackendOptions {
  /** pin programs and rules (see LsmEnforcerOptions.pin): enforcement survives the agent; a restart adopts it */
  pin?: LsmEnforcerOptions['pin'];
  /** called after a set was resolved again because a watched path changed */
  onReapply?: (result: ApplyResult & { trigger: string }) => void;
  /** watch rule targets and sources for new inodes (default true) */
  watchTargets?: boolean;
  /** the lock file guarding the pins (default pinLockPath(root)) */
  lockPath?: string;
}

/** Where the lock guarding the pins under `root` is: one agent at a time adopts and writes them. */
export function pinLockPath(root = PIN_ROOT): string {
  return root === PIN_ROOT ? '/run/edgeward/bpf-lsm-pins.lock' : `/run/edgeward/bpf-lsm-pins${root.replace(/[^A-Za-z0-9]+/g, '-')}.lock`;
}

export class LsmBackend implements EnforcementBackend {
  readonly name = 'bpf-lsm' as const;
  readonly support = LSM_SUPPORT;
  private readonly enforcer: LsmEnforcer;
  private readonly capable: LsmCapable;
  /** why some rules are not pinned (pinning or adoption failed): named in every apply() */
  readonly pinWarnings: string[] = [];
  /** held while pinned: a second agent must not adopt (and rewrite) the same pins */
  private pinLock: InstanceLock | undefined;
  private last: CompiledPolicySet | undefined;
  private watchers = new Map<string, fs.FSWatcher>(); // by directory
  private watchedNames = new Map<string, Set<string>>(); // directory -> base names
  private pending: NodeJS.Timeout | undefined;
  private pendingTrigger = '';
  /** watch failures (e.g. ENOSPC: inotify limits), newest last */
  readonly watchErrors: string[] = [];

  constructor(
    native: NativeAddon,
    ring: NativeEventRing,
    private readonly options: LsmBackendOptions = {},
  ) {
    const root = typeof options.pin === 'object' ? options.pin.root : PIN_ROOT;
    // the lock before any adoption; held by another agent: refused (never two agents on the same pins)
    const pin = options.pin ? this.lockPins(native, options.lockPath ?? pinLockPath(root)) : undefined;
    try {
      this.enforcer = this.pinnedOrNot(
        pin,
        () => new LsmEnforcer(native, ring, { pin }),
        () => new LsmEnforcer(native, ring),
        () => lsmPinDir(lsmAddon(native).lsmLimits.layoutVersion, root),
        'path and network rules',
      );
    } catch (err) {
      this.pinLock?.release();
      throw err;
    }
    try {
      // capability rules: their own program (bpf/lsm_capable.bpf.c), pinned beside the others
      this.capable = this.pinnedOrNot(
        pin,
        () => new LsmCapable(native, ring, { pin }),
        () => new LsmCapable(native, ring),
        () => capablePinDir(native.capableLimits?.layoutVersion ?? 0, root),
        'capability rules',
      );
    } catch (err) {
      this.enforcer.release(); // pinned rules an earlier agent left stay in force
      this.pinLock?.release();
      throw err;
    }
  }

  /**
   * Takes the pin lock: the pin option when taken; undefined (unpinned, with
   * a warning) when the lock cannot be used at all. Throws
   * InstanceLockedError when another agent holds it.
   */
  private lockPins(native: NativeAddon, lockPath: string): LsmBackendOptions['pin'] {
    try {
      if (typeof native.tryLockFile !== 'function') throw new Error('the native addon has no tryLockFile (rebuild it: npm run build)');
      this.pinLock = acquireInstanceLock(lockPath, (fd) => native.tryLockFile!(fd), 'edgeward agent (bpf-lsm, pinned rules)');
      return this.options.pin;
    } catch (err) {
      if (err instanceof InstanceLockedError) throw err;
      this.pinWarnings.push(
        `bpf-lsm: rules not pinned: the pin lock ${lockPath} cannot be taken: ${(err as Error).message}; enforced unpinned instead: ` +
          'they end with the agent (a crash or stop leaves them unenforced until the next start)',
      );
      return undefined;
    }
  }

  /**
   * Makes the pinned enforcer when pinning is asked for; when that fails
   * (pin directory unusable, pinned state that cannot be adopted), the
   * unpinned one, with a warning naming the pin directory and the reason.
   * A failure of the unpinned one (the kernel refuses the programs) throws.
   */
  private pinnedOrNot<T>(pin: LsmBackendOptions['pin'], pinned: () => T, unpinned: () => T, dir: () => string, what: string): T {
    if (!pin) return unpinned();
    try {
      return pinned();
    } catch (err) {
      let where: string;
      try {
        where = dir();
      } catch {
        where = typeof pin === 'object' ? pin.root : PIN_ROOT;
      }
      const made = unpinned();
      this.pinWarnings.push(
        `bpf-lsm: ${what} not pinned at ${where}: ${(err as Error).message}; enforced unpinned instead: ` +
          'they end with the agent (a crash or stop leaves them unenforced until the next start)',
      );
      return made;
    }
  }

  /** Whether rules pinned by an earlier agent were adopted (in force before the first apply()). */
  adopted(): boolean {
    return this.enforcer.adopted();
  }

  /** Whether capability rules pinned by an earlier agent were adopted. */
  capabilitiesAdopted(): boolean {
    return this.capable.adopted();
  }

  apply(set: CompiledPolicySet): ApplyResult {
    this.last = set;
    // container rules come resolved to one container each (agent/src/workloads.ts WorkloadBinding)
    // allow-list mode: each workload's default postures are decided in the kernel (process, file and
    // network by lsm_enforcer, capabilities by lsm_capable); what a rule cannot have is named per rule
    const postures = allowListModes(set);
    const result = this.enforcer.apply(set.pathRules, set.networkRules, undefined, set.workloads ?? [], postures);
    if (this.options.watchTargets !== false) this.watch(result.watchPaths);
    const caps = this.capable.apply(set.capabilityRules ?? [], set.workloads ?? [], postures);
    return {
      errors: [...this.pinWarnings, ...result.errors, ...caps.errors],
      rules: set.pathRules.length + set.networkRules.length + (set.capabilityRules?.length ?? 0),
    };
  }

  stats(): NativeLsmStats {
    return this.enforcer.stats();
  }

  /** Ids of the rule maps, for self-protection (agent/src/lsm_self_protect.ts). */
  mapIds(): number[] {
    return [...this.enforcer.mapIds(), ...this.capable.mapIds()];
  }

  /** The kernel's per-program run counts and times from now on (bpf_stats). */
  enableStats(): void {
    this.enforcer.enableStats();
  }

  /** Detaches everything (and removes pinned state): nothing is enforced any more. */
  close(): void {
    this.stopWatching();
    this.enforcer.close();
    this.capable.close();
    this.pinLock?.release();
    this.pinLock = undefined;
  }

  /** Exits without detaching: pinned programs and rules keep enforcing (--detach-on-exit not given). */
  release(): void {
    this.stopWatching();
    this.enforcer.release();
    this.capable.release();
    this.pinLock?.release();
    this.pinLock = undefined;
  }

  private stopWatching(): void {
    if (this.pending) clearTimeout(this.pending);
    this.pending = undefined;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    this.watchedNames.clear();
  }

  /** Watches the parent directory of each path for its base name. */
  private watch(paths: string[]): void {
    const wanted = new Map<string, Set<string>>();
    for (const p of paths) {
      const dir = path.dirname(p);
      const names = wanted.get(dir) ?? new Set<string>();
      names.add(path.basename(p));
      wanted.set(dir, names);
    }
    for (const [dir, w] of this.watchers) {
      if (!wanted.has(dir)) {
        w.close();
        this.watchers.delete(dir);
      }
    }
    this.watchedNames = wanted;
    for (const dir of wanted.keys()) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = fs.watch(dir, { persistent: false }, (_event, name) => this.changed(dir, name ? String(name) : undefined));
        w.on('error', (err) => this.noteWatchError(`${dir}: ${err.message}`));
        this.watchers.set(dir, w);
      } catch (err) {
        // the directory does not exist (yet): the rule is reported as not in force
        this.noteWatchError(`${dir}: ${(err as Error).message}`);
      }
    }
  }

  private changed(dir: string, name: string | undefined): void {
    const names = this.watchedNames.get(dir);
    if (!names || (name !== undefined && !names.has(name))) return;
    this.pendingTrigger = path.join(dir, name ?? '');
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      if (!this.last) return;
      let result: ApplyResult;
      try {
        result = this.apply(this.last);
      } catch (err) {
        result = { errors: [`bpf-lsm: resolving the rules again failed: ${(err as Error).message}`], rules: 0 };
      }
      this.options.onReapply?.({ ...result, trigger: this.pendingTrigger });
    }, RESOLVE_DELAY_MS);
    this.pending.unref();
  }

  private noteWatchError(message: string): void {
    this.watchErrors.push(message);
    if (this.watchErrors.length > 100) this.watchErrors.shift();
  }
}

/**
 * `edgeward unload`: removes every pinned bpf-lsm state under `root` (the
 * path, network and capability rules an agent left in force when it stopped
 * or crashed). Once no process
 * holds them any more, the programs detach and nothing is enforced by them.
 * A running agent keeps its own programs attached until it stops; stop it
 * first. Returns the directories removed; throws naming the path that could
 * not be removed.
 */
export function unloadPinned(root = PIN_ROOT): string[] {
  try {
    return [...unloadPinnedLsm(root), ...unloadPinnedCapable(root)];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EPERM') {
      // self-protection (agent/src/lsm_self_protect.ts) keeps the pins while the agent runs
      throw new Error(`${(err as Error).message}: a running agent protects its pinned state; stop it with the service manager first`);
    }
    throw err;
  }
}
