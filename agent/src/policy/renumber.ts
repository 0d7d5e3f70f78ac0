// Rule ids are per compiled set; the agent moves each load into its own id
// range so decisions taken under the previous set still name its policies.
import type { CompiledPolicySet, RuleMeta } from './types';

/** Moves every rule id of `set` up by `base` (ids must stay below 2^20 per set). */
export function renumberRules(set: CompiledPolicySet, base: number): CompiledPolicySet {
  const meta = new Map<number, RuleMeta>();
  for (const [id, m] of set.meta) meta.set(base + id, { ...m, ruleId: base + id });
  return {
    pathRules: set.pathRules.map((r) => ({ ...r, ruleId: base + r.ruleId })),
    networkRules: set.networkRules.map((r) => ({ ...r, ruleId: base + r.ruleId })),
    capabilityRules: (set.capabilityRules ?? []).map((r) => ({ ...r, ruleId: base + r.ruleId })),
    postureRules: (set.postureRules ?? []).map((r) => ({ ...r, ruleId: base + r.ruleId })),
    meta,
    ...(set.workloads ? { workloads: set.workloads } : {}),
  };
}
