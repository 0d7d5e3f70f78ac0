// The `compat` backend: process and file rules through fanotify permission
// events (agent/src/file_enforcer.ts), network protocol rules through
// cgroup-bpf (agent/src/net_enforcer.ts).
import { ApplyResult, COMPAT_SUPPORT, EnforcementBackend } from './backend';
import { FileEnforcer } from './file_enforcer';
import type { NativeAddon, NativeEventRing, NativeEventSink } from './native';
import { NetEnforcer } from './net_enforcer';
import type { CompiledPolicySet } from './policy/types';

export class CompatBackend implements EnforcementBackend {
  readonly name = 'compat' as const;
  readonly support = COMPAT_SUPPORT;
  private readonly files: FileEnforcer;
  private readonly net: NetEnforcer;

  constructor(native: NativeAddon, sink: NativeEventSink, ring: NativeEventRing, cgroup2Path: string) {
    this.files = new FileEnforcer(native, sink);
    try {
      this.net = new NetEnforcer(native, ring, cgroup2Path);
    } catch (err) {
      this.files.close();
      throw err;
    }
  }

  apply(set: CompiledPolicySet): ApplyResult {
    const fileResult = this.files.apply(set.pathRules);
    const netResult = this.net.apply(set.networkRules);
    const errors = [...fileResult.errors, ...netResult.errors];
    return { errors, rules: set.pathRules.length + set.networkRules.length };
  }

  close(): void {
    this.files.close();
    this.net.close();
  }
}
