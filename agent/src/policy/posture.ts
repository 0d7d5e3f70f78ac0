// Which workloads are in allow-list mode, and with which default posture.
// Pure: reads a set resolved against the running containers
// (agent/src/workloads.ts) and gives, for the host and each container, the
// PostureRule of every category one of its Allow rules switches over
// (KubeArmor: one Allow rule in a category turns that category of that
// container, or of the host, into allow-list mode).
import { postureCategoryOf } from './compiler';
import type { CompiledPolicySet, PostureCategory, PostureRule, WorkloadTarget } from './types';

export interface WorkloadPosture {
  /** absent: the host */
  workload?: WorkloadTarget;
  postures: Partial<Record<PostureCategory, PostureRule>>;
}

/** The host first (when it has Allow rules), then containers in the set's workload order. */
export function allowListModes(set: CompiledPolicySet): WorkloadPosture[] {
  const postureRules = set.postureRules ?? [];
  if (postureRules.length === 0) return [];
  const find = (category: PostureCategory, scopeKind: 'host' | 'containers') =>
    postureRules.find((p) => p.category === category && p.scopeKind === scopeKind);
  const host: WorkloadPosture = { postures: {} };
  const byNs = new Map<number, WorkloadPosture>();
  const order: WorkloadPosture[] = [];
  for (const w of set.workloads ?? []) {
    const entry = { workload: w, postures: {} };
    byNs.set(w.mntNs, entry);
    order.push(entry);
  }
  for (const r of [...set.pathRules, ...set.networkRules, ...(set.capabilityRules ?? [])]) {
    if (r.action !== 'Allow') continue;
    const category = postureCategoryOf(r.operation);
    if (r.workload) {
      let entry = byNs.get(r.workload.mntNs);
      if (!entry) {
        entry = { workload: r.workload, postures: {} };
        byNs.set(r.workload.mntNs, entry);
        order.push(entry);
      }
      const p = find(category, 'containers');
      if (p) entry.postures[category] = p;
    } else if ((r.scope ?? { kind: 'host' }).kind === 'host') {
      const p = find(category, 'host');
      if (p) host.postures[category] = p;
    }
    // an unresolved container rule applies nowhere: it switches nothing
  }
  return [host, ...order].filter((e) => Object.keys(e.postures).length > 0);
}

/** One line per policy with capability rules, for a backend without a capability hook (compat, audit-only). */
export function capabilityErrors(set: CompiledPolicySet, backend: string): string[] {
  const byPolicy = new Map<string, string[]>();
  for (const r of set.capabilityRules ?? []) {
    const name = set.meta.get(r.ruleId)?.policyName ?? `rule ${r.ruleId}`;
    const where = r.workload ? ` in container ${r.workload.containerName}` : '';
    const list = byPolicy.get(name) ?? [];
    const item = `${r.capability} (${r.action}${where})`;
    if (!list.includes(item)) list.push(item);
    byPolicy.set(name, list);
  }
  const lines = [...byPolicy].map(
    ([name, caps]) =>
      `policy "${name}": capabilities rules not enforced: ${caps.join(', ')}: the ${backend} backend has no capability hook (neither enforced nor audited; see edgeward probe)`,
  );
  for (const w of allowListModes(set)) {
    if (w.postures.capabilities) {
      lines.push(
        `${w.workload ? `container ${w.workload.containerName}` : 'host'}: capabilities allow-list (default posture ${w.postures.capabilities.action}) not enforced by the ${backend} backend`,
      );
    }
  }
  return lines;
}
