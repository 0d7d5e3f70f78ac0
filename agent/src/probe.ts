// What this kernel can do, and which backend edgeward runs on it.
import * as fs from 'fs';
import * as os from 'os';
import { AUDIT_ONLY_SUPPORT, BackendName, COMPAT_SUPPORT, RuleKindSupport } from './backend';
import { LSM_SUPPORT } from './lsm_backend';
import type { NativeAddon, NativeProbe } from './native';

export type BackendChoice = 'auto' | BackendName;

export interface ProbeReport {
  kernel: string;
  arch: string;
  /** active LSMs from /sys/kernel/security/lsm */
  lsms: string[];
  backend: BackendName;
  /** why this backend, and why not the better ones */
  reasons: string[];
  features: NativeProbe;
  ruleKinds: RuleKindSupport;
}

export function readLsms(file = '/sys/kernel/security/lsm'): string[] {
  try {
    return fs
      .readFileSync(file, 'utf8')
      .trim()
      .split(',')
      .filter((s) => s.length > 0);
  } catch {
    return [];
  }
}

/** Pure: picks the backend from the probed features. */
export function chooseBackend(
  features: NativeProbe,
  lsms: string[],
  forced: BackendChoice,
): { backend: BackendName; reasons: string[]; error?: string } {
  const reasons: string[] = [];
  const compatOk = features.fanotifyPerm.ok && features.cgroupSock.ok && features.cgroup2Path !== '';
  const compatWhyNot = [
    !features.fanotifyPerm.ok && `fanotify permission events: ${features.fanotifyPerm.error}`,
    !features.cgroupSock.ok && `cgroup/sock_create: ${features.cgroupSock.error}`,
    features.cgroup2Path === '' && 'no cgroup v2 mount',
  ].filter(Boolean) as string[];

  // the probe loads AND attaches an LSM program; listed alone is not enough
  const lsmOk = lsms.includes('bpf') && features.bpfLsm.ok;
  if (!lsms.includes('bpf')) reasons.push('bpf-lsm: "bpf" is not in the active LSM list');
  else if (!features.bpfLsm.ok) reasons.push(`bpf-lsm: loading an LSM program failed (${features.bpfLsm.error})`);
  else reasons.push('bpf-lsm: an LSM program loads and attaches');

  if (forced === 'bpf-lsm') {
    if (lsmOk) return { backend: 'bpf-lsm', reasons: [...reasons, 'bpf-lsm: forced by config'] };
    return { backend: 'bpf-lsm', reasons, error: 'backend bpf-lsm was requested but is not available: ' + reasons[0] };
  }
  if (forced === 'audit-only') return { backend: 'audit-only', reasons: [...reasons, 'audit-only: forced by config'] };
  if (forced === 'auto' && lsmOk) return { backend: 'bpf-lsm', reasons };
  if (compatOk) return { backend: 'compat', reasons: [...reasons, 'compat: fanotify permission events and cgroup-bpf work'] };
  const why = `compat: ${compatWhyNot.join('; ')}`;
  if (forced === 'compat') return { backend: 'compat', reasons: [...reasons, why], error: `backend compat was requested but is not available: ${why}` };
  return { backend: 'audit-only', reasons: [...reasons, why, 'audit-only: nothing can be enforced on this kernel'] };
}

export function supportOf(backend: BackendName): RuleKindSupport {
  if (backend === 'bpf-lsm') return LSM_SUPPORT;
  return backend === 'compat' ? COMPAT_SUPPORT : AUDIT_ONLY_SUPPORT;
}

export function probe(native: NativeAddon, forced: BackendChoice = 'auto'): ProbeReport & { error?: string } {
  const features = native.probe();
  const lsms = readLsms();
  const choice = chooseBackend(features, lsms, forced);
  return {
    kernel: features.kernelRelease || os.release(),
    arch: os.arch(),
    lsms,
    backend: choice.backend,
    reasons: choice.reasons,
    features,
    ruleKinds: supportOf(choice.backend),
    ...(choice.error ? { error: choice.error } : {}),
  };
}

/** What each level means for a policy that has such rules (the probe's rule table). */
export const SUPPORT_NOTES: Record<string, string> = {
  enforce: 'Block refuses, Audit reports, Allow switches to allow-list mode with the default posture',
  audit: 'nothing is refused: matches and default-posture decisions are reported with Result Passed',
  unsupported: 'policies still load; their rules of this kind are reported as not enforced in the policy status',
};

export function formatProbe(r: ProbeReport): string {
  const lines = [
    `kernel:   ${r.kernel} (${r.arch})`,
    `lsms:     ${r.lsms.join(',') || '(securityfs not readable)'}`,
    `backend:  ${r.backend}`,
    ...r.reasons.map((x) => `          - ${x}`),
    'features:',
  ];
  for (const [name, value] of Object.entries(r.features)) {
    if (typeof value === 'object' && value && 'ok' in value) {
      lines.push(`  ${name.padEnd(13)} ${value.ok ? 'yes' : `no (${value.error ?? 'unknown'})`}`);
    }
  }
  lines.push(`  cgroup2       ${r.features.cgroup2Path || 'not mounted'}`);
  lines.push('rules:');
  for (const [kind, support] of Object.entries(r.ruleKinds)) {
    lines.push(`  ${kind.padEnd(13)} ${support}${SUPPORT_NOTES[support] ? ` (${SUPPORT_NOTES[support]})` : ''}`);
  }
  return lines.join('\n');
}
