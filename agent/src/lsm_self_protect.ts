// Self-protection on bpf-lsm (bpf/lsm_self_protect.bpf.c through
// native/src/lsm_self_protect.cc): while the agent runs,
// - it cannot be signalled (killed, stopped, its inspector opened with
//   SIGUSR1) by anyone but itself and the stopper, the service manager
//   (pid 1: `systemctl stop` is the escape hatch); signal 0 and SIGHUP pass;
//   no signal-driven I/O signal (F_SETOWN + F_SETSIG, SIGKILL included,
//   sent by the kernel without a kill check) reaches it;
// - nobody else can ptrace it, write its memory or take its descriptors;
// - the files of its cgroup and of that cgroup's ancestors (cgroup v2, and
//   v1 hierarchies with a controller) are written by the agent and the
//   stopper only: no cgroup.kill (a kill without a signal), cgroup.freeze,
//   v1 freezer.state, memory.max, cpu.max... (cgroup.procs, cgroup.threads,
//   tasks, cgroup.subtree_control, cgroup.event_control and *.pressure stay
//   open); the cgroup is the agent's current one, however deep, so moving it
//   does not escape this;
// - /proc/<agent>/... (oom_score_adj, timerslack_ns...) are not written, nor
//   its rlimits (RLIMIT_CPU), nice value, scheduling policy/affinity or io
//   priority changed, by anyone but the agent and the stopper;
// - its protected files and directories (binary, state and install
//   directories, the pin root on bpffs) are written, removed, renamed,
//   linked, truncated, chmod/chown'ed, touched (utimes), given xattrs, ACLs
//   or inode flags (chattr) by the agent only;
// - nothing is mounted on or below them (a bind or tmpfs there would hide
//   them), nor on a directory above them where the agent would see it (from
//   its mount namespace, or onto a shared mount: other namespaces, such as
//   systemd's sandboxes and containers, mount there freely); mounts of them
//   and of such directories are not unmounted, and the filesystem holding
//   its pins cannot be unmounted; nobody pivot_roots its mount namespace;
// - only the agent may open its rule maps for writing.
// The programs are not pinned: they end with the agent (a stop through the
// service manager, or a crash), after which `edgeward unload`, upgrades and
// edits work again. Escape hatch: stop the agent with the service manager
// (or set stopperPid to the pid allowed to signal it).
//
// Known gaps (what root can still do while the agent runs):
// - move the agent into a cgroup prepared beforehand (memory.max tiny: the
//   OOM killer kills it; cpu.max tiny: starved): no LSM hook sees which pid
//   a cgroup.procs/tasks write moves;
// - `mount --move` of a mount holding the protected tree elsewhere (the move
//   source of mount(2) is a path string the hook cannot resolve), which
//   uncovers the directory below it; mounts, descriptors opened for writing
//   and fcntl(F_SETOWN) owners set before the agent protected itself (the
//   latter get no signal through, though);
// - the OOM killer and other kernel-sent signals; memory pressure from
//   outside its cgroup;
// - load its own BPF programs (bpf_send_signal() from a tracing program, its
//   own BPF-LSM program), load a kernel module, kexec, reboot with another
//   lsm= list.
import * as fs from 'fs';
import * as path from 'path';

import { targetResolver } from './lsm_enforcer';
import type { NativeAddon } from './native';

export interface NativeSelfProtectSet {
  inodes: Array<{ dev: bigint; ino: bigint; tree: boolean }>;
  /** directories above protected inodes: nothing new is mounted on them where the agent would see it */
  ancestors: Array<{ dev: bigint; ino: bigint }>;
  /** kernel devs of filesystems that cannot be unmounted */
  filesystems: bigint[];
  mapIds: number[];
}

export interface NativeSelfProtectStats {
  /** refusals since load, by kind */
  refused: {
    signal: number;
    ptrace: number;
    path: number;
    umount: number;
    map: number;
    /** write opens of its cgroups' files */
    cgroup: number;
    /** mounts on or below protected inodes */
    mount: number;
    /** utimes, xattrs, ACLs, inode flags of protected inodes */
    attr: number;
    /** /proc/<agent> writes, rlimits, nice, scheduling, io priority */
    process: number;
  };
  inodes: number;
  mapIds: number;
}

export interface NativeLsmSelfProtect {
  /** replaces what is protected (new entries in before stale ones out) */
  protect(set: NativeSelfProtectSet): void;
  stats(): NativeSelfProtectStats;
  attached(): string[];
  /** the protected map ids, its own maps included */
  mapIds(): number[];
  close(): void;
}

export interface NativeSelfProtectAddon {
  LsmSelfProtect: new (options: { agentPid: number; stopperPid: number }) => NativeLsmSelfProtect;
}

export function selfProtectAddon(addon: NativeAddon): NativeSelfProtectAddon {
  const a = addon as unknown as Partial<NativeSelfProtectAddon>;
  if (typeof a.LsmSelfProtect !== 'function') throw new Error('the native addon has no LsmSelfProtect (rebuild it: npm run build)');
  return a as NativeSelfProtectAddon;
}

export interface SelfProtectTargets {
  /** protected with everything below them: state directory, install directory, pin root */
  directories: string[];
  /** protected files: the agent's binary (and node's, when the agent runs on a dedicated copy) */
  files: string[];
  /** paths whose filesystem must stay mounted (the pin root on bpffs) */
  keepMounted: string[];
  /** BPF map ids only the agent may open for writing (LsmEnforcer.mapIds()) */
  mapIds: number[];
}

export interface SelfProtectionOptions {
  /** the protected process (default: this one) */
  agentPid?: number;
  /** the only other process that may signal it: the service manager (default 1; 0: nobody) */
  stopperPid?: number;
}

export class SelfProtection {
  private native: NativeLsmSelfProtect | undefined;

  /** Loads and attaches the programs; throws when the kernel refuses. Nothing is protected until protect(). */
  constructor(addon: NativeAddon, options: SelfProtectionOptions = {}) {
    this.native = new (selfProtectAddon(addon).LsmSelfProtect)({
      agentPid: options.agentPid ?? process.pid,
      stopperPid: options.stopperPid ?? 1,
    });
  }

  /**
   * Replaces what is protected. Paths that cannot be resolved are left out
   * and reported, one line each.
   */
  protect(targets: SelfProtectTargets): { errors: string[] } {
    const native = this.open();
    const resolve = targetResolver();
    const errors: string[] = [];
    const set: NativeSelfProtectSet = { inodes: [], ancestors: [], filesystems: [], mapIds: [...targets.mapIds] };
    const above = new Set<string>();
    const add = (p: string, tree: boolean) => {
      try {
        const t = resolve(p);
        if (tree && !t.isDir) {
          errors.push(`self-protection: ${p} is not a directory; protected as a file`);
          tree = false;
        }
        set.inodes.push({ dev: t.dev, ino: t.ino, tree });
        // a mount on any directory above it (tmpfs on /var/lib) would hide it as well
        for (let dir = path.dirname(fs.realpathSync(p)); ; dir = path.dirname(dir)) {
          if (!above.has(dir)) {
            above.add(dir);
            const a = resolve(dir);
            set.ancestors.push({ dev: a.dev, ino: a.ino });
          }
          if (dir === '/') break;
        }
      } catch (err) {
        errors.push(`self-protection: ${p} not protected: ${(err as Error).message}`);
      }
    };
    for (const d of targets.directories) add(d, true);
    for (const f of targets.files) add(f, false);
    for (const p of targets.keepMounted) {
      try {
        set.filesystems.push(resolve(fs.realpathSync(p)).dev);
      } catch (err) {
        errors.push(`self-protection: the filesystem of ${p} not kept mounted: ${(err as Error).message}`);
      }
    }
    native.protect(set);
    return { errors };
  }

  stats(): NativeSelfProtectStats {
    return this.open().stats();
  }

  attached(): string[] {
    return this.open().attached();
  }

  mapIds(): number[] {
    return this.open().mapIds();
  }

  /** Detaches: nothing of the agent is protected any more. Idempotent. */
  close(): void {
    this.native?.close();
    this.native = undefined;
  }

  private open(): NativeLsmSelfProtect {
    if (!this.native) throw new Error('SelfProtection is closed');
    return this.native;
  }
}
