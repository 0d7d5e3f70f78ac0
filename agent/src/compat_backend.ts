// The `compat` backend: process and file rules through fanotify permission
// events (agent/src/file_enforcer.ts), network protocol rules through
// cgroup-bpf (agent/src/net_enforcer.ts). Container rules are enforced per
// container (by namespace), host rules on the host only. Allow rules put
// the category of the workloads they apply to in allow-list mode with the
// set's default posture (agent/src/policy/posture.ts). Capability rules
// have no hook here: each policy that has them is reported as not enforced.
import { ApplyResult, COMPAT_SUPPORT, EnforcementBackend } from './backend';
import { FileEnforcer, FileEnforcerOptions } from './file_enforcer';
import type { NativeAddon, NativeEventRing, NativeEventSink } from './native';
import { NetEnforcer } from './net_enforcer';
import { allowListModes, capabilityErrors } from './policy/posture';
import type { CompiledPolicySet } from './policy/types';

export class CompatBackend implements EnforcementBackend {
  readonly name = 'compat' as const;
  readonly support = COMPAT_SUPPORT;
  private readonly files: FileEnforcer;
  private readonly net: NetEnforcer;

  constructor(
    native: NativeAddon,
    sink: NativeEventSink,
    ring: NativeEventRing,
    cgroup2Path: string,
    fileOptions: FileEnforcerOptions = {},
  ) {
    this.files = new FileEnforcer(native, sink, fileOptions);
    try {
      this.net = new NetEnforcer(native, ring, cgroup2Path);
    } catch (err) {
      this.files.close();
      throw err;
    }
  }

  /**
   * Rules resolved to containers (agent/src/workloads.ts) apply to those
   * containers only, host rules to the host only; `set.workloads` names every
   * container (absent: none, every process is the host).
   */
  apply(set: CompiledPolicySet): ApplyResult {
    const workloads = set.workloads ?? [];
    const postures = allowListModes(set);
    const fileResult = this.files.apply(set.pathRules, workloads, postures);
    const netResult = this.net.apply(set.networkRules, workloads, postures);
    const errors = [...fileResult.errors, ...netResult.errors, ...capabilityErrors(set, this.name)];
    return { errors, rules: set.pathRules.length + set.networkRules.length };
  }

  close(): void {
    this.files.close();
    this.net.close();
  }
}
