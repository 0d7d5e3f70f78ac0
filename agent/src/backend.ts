// An enforcement backend takes the compiler's rule set and makes the kernel
// enforce it. `compat` (fanotify + cgroup-bpf) runs on kernels without
// BPF-LSM; `bpf-lsm` is the in-kernel backend; `audit-only` enforces nothing.
import type { CompiledPolicySet } from './policy/types';

export type BackendName = 'bpf-lsm' | 'compat' | 'audit-only';

/** What a backend can do with each kind of rule on this kernel. */
export type RuleSupport = 'enforce' | 'audit' | 'unsupported';

export interface RuleKindSupport {
  process: RuleSupport;
  file: RuleSupport;
  network: RuleSupport;
  capabilities: RuleSupport;
}

export interface ApplyResult {
  /** one clear line each: which rule and why it is not in force */
  errors: string[];
  /** rules now in force */
  rules: number;
}

export interface EnforcementBackend {
  readonly name: BackendName;
  readonly support: RuleKindSupport;
  /** Replaces the rules in force. The previous set stays in force for what fails to apply. */
  apply(set: CompiledPolicySet): ApplyResult;
  /** Removes everything the backend attached. */
  close(): void;
}

/** compat: exec and open via fanotify, socket protocols via cgroup-bpf; no capability hook. */
export const COMPAT_SUPPORT: RuleKindSupport = {
  process: 'enforce',
  file: 'enforce',
  network: 'enforce',
  capabilities: 'unsupported',
};

/** audit-only: the monitor sees exec, open and socket calls; nothing is refused. */
export const AUDIT_ONLY_SUPPORT: RuleKindSupport = {
  process: 'audit',
  file: 'audit',
  network: 'audit',
  capabilities: 'unsupported',
};
