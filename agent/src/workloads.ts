// Workloads: which rules apply to which processes. The host is workload 0;
// every running container known to the registry (agent/src/containers.ts) is
// a workload of its own, named by its mount namespace inode. Host policies
// apply to the host only, container policies to the containers their
// selector picks.
//
// resolveWorkloads() is pure: given the compiled set and the containers,
// it gives each container rule one concrete copy per selected container
// (WorkloadTarget: where its paths are resolved, which processes it covers)
// and lists every container, so the enforcers can tell container processes
// from host ones even when no rule selects them. WorkloadBinding is the glue
// that re-runs it when containers come, go or are renamed.
import { CONTAINER_NAME_LABEL, containerNamePattern } from './policy/compiler';
import type { CapabilityRule, CompiledPolicySet, ContainerSelector, NetworkRule, PathRule, WorkloadTarget } from './policy/types';

/** What selection and resolution need of a container (ContainerIdentity has it). */
export interface WorkloadContainer {
  id: string;
  name: string;
  labels: Record<string, string>;
  namespaceName: string;
  /** host pid of the container's init */
  pid: number;
  mntNs: number;
  pidNs: number;
}

/**
 * A container's identities as KubeArmor builds them outside Kubernetes:
 * its labels, then kubearmor.io/container.name (unless a label sets it) and
 * namespaceName.
 */
export function containerIdentities(c: Pick<WorkloadContainer, 'name' | 'labels' | 'namespaceName'>): Map<string, string> {
  const out = new Map<string, string>(Object.entries(c.labels));
  if (!out.has(CONTAINER_NAME_LABEL)) out.set(CONTAINER_NAME_LABEL, c.name);
  out.set('namespaceName', c.namespaceName);
  return out;
}

function hasIdentity(ids: Map<string, string>, pair: string): boolean {
  const eq = pair.indexOf('=');
  if (eq < 0) return false;
  return ids.get(pair.slice(0, eq)) === pair.slice(eq + 1);
}

/** Whether `selector` picks container `c` (every part of the selector must hold). */
export function selectorMatches(selector: ContainerSelector, c: Pick<WorkloadContainer, 'name' | 'labels' | 'namespaceName'>): boolean {
  const ids = containerIdentities(c);
  for (const [key, value] of Object.entries(selector.matchLabels)) {
    if (ids.get(key) !== value) return false;
  }
  if (selector.containerName !== undefined) {
    const re = containerNamePattern(selector.containerName);
    // The compiler refuses invalid patterns; one that slips through selects nothing.
    if (typeof re === 'string' || !re.test(ids.get(CONTAINER_NAME_LABEL) ?? '')) return false;
  }
  for (const e of selector.matchExpressions) {
    const any = e.values.some((v) => hasIdentity(ids, v));
    if (e.operator === 'In' ? !any : any) return false;
  }
  return true;
}

function target(c: WorkloadContainer): WorkloadTarget {
  return { mntNs: c.mntNs, pidNs: c.pidNs, pid: c.pid, containerId: c.id, containerName: c.name };
}

/** Containers usable as workloads, one per mount namespace, in a stable order (by id). */
function usableContainers(containers: readonly WorkloadContainer[]): WorkloadContainer[] {
  const byNs = new Map<number, WorkloadContainer>();
  for (const c of [...containers].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    // mntNs 0 would be the host; a container without namespaces cannot be told apart
    if (!Number.isInteger(c.mntNs) || c.mntNs <= 0 || !Number.isInteger(c.pid) || c.pid <= 0) continue;
    if (!byNs.has(c.mntNs)) byNs.set(c.mntNs, c);
  }
  return [...byNs.values()];
}

function expand<R extends PathRule | NetworkRule | CapabilityRule>(rules: readonly R[], containers: readonly WorkloadContainer[]): R[] {
  const out: R[] = [];
  for (const rule of rules) {
    const scope = rule.scope ?? { kind: 'host' as const };
    if (scope.kind === 'host') {
      const { workload: _ignored, ...hostRule } = rule;
      out.push(hostRule as R);
      continue;
    }
    for (const c of containers) {
      if (selectorMatches(scope.selector, c)) out.push({ ...rule, workload: target(c) });
    }
  }
  return out;
}

/**
 * Concrete rules for the running containers: host rules as they are, each
 * container rule once per container its selector picks (none: the rule is
 * not in force anywhere until such a container runs), and every container in
 * `workloads`. Pure; same input, same output.
 */
export function resolveWorkloads(set: CompiledPolicySet, containers: readonly WorkloadContainer[]): CompiledPolicySet {
  const usable = usableContainers(containers);
  return {
    pathRules: expand(set.pathRules, usable),
    networkRules: expand(set.networkRules, usable),
    capabilityRules: expand(set.capabilityRules ?? [], usable),
    postureRules: set.postureRules ?? [],
    meta: set.meta,
    workloads: usable.map(target),
  };
}

/** Per rule id of a container rule: the names of the containers it is now in force for. */
export function selectedContainers(resolved: CompiledPolicySet): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const r of [...resolved.pathRules, ...resolved.networkRules, ...(resolved.capabilityRules ?? [])]) {
    if (!r.workload) continue;
    const names = out.get(r.ruleId) ?? [];
    if (!names.includes(r.workload.containerName)) names.push(r.workload.containerName);
    out.set(r.ruleId, names);
  }
  return out;
}

export interface BindingResult {
  errors: string[];
  rules: number;
}

/**
 * Keeps the backend's rules resolved against the running containers: apply()
 * with each new compiled set, containersChanged() whenever the registry
 * reports a container added, removed or renamed (re-resolved once per burst
 * of events, on the next tick). Backends replace rules new-before-old, so a
 * re-resolution never leaves a gap.
 */
export class WorkloadBinding {
  private set: CompiledPolicySet | undefined;
  private pending: NodeJS.Immediate | undefined;
  private closed = false;

  constructor(
    private readonly backendApply: (set: CompiledPolicySet) => BindingResult,
    private readonly containers: () => readonly WorkloadContainer[],
    private readonly onReapplied: (result: BindingResult) => void = () => undefined,
  ) {}

  /** Resolves `set` against the containers running now and applies it. */
  apply(set: CompiledPolicySet): BindingResult {
    this.set = set;
    return this.backendApply(resolveWorkloads(set, this.containers()));
  }

  containersChanged(): void {
    if (this.closed || !this.set || this.pending) return;
    this.pending = setImmediate(() => {
      this.pending = undefined;
      if (this.closed || !this.set) return;
      this.onReapplied(this.backendApply(resolveWorkloads(this.set, this.containers())));
    });
  }

  close(): void {
    this.closed = true;
    if (this.pending) clearImmediate(this.pending);
    this.pending = undefined;
  }
}

/**
 * For a backend that cannot scope rules to containers: the host rules only
 * (a container rule handed to it would apply to every process), and one line
 * per policy saying which container rules are not in force.
 */
export function hostRulesOnly(set: CompiledPolicySet, backend: string): { set: CompiledPolicySet; errors: string[] } {
  const isHost = (r: PathRule | NetworkRule | CapabilityRule) => (r.scope ?? { kind: 'host' }).kind === 'host' && !r.workload;
  const left = new Map<string, number>();
  for (const r of [...set.pathRules, ...set.networkRules, ...(set.capabilityRules ?? [])]) {
    if (isHost(r)) continue;
    const name = set.meta.get(r.ruleId)?.policyName ?? `rule ${r.ruleId}`;
    left.set(name, (left.get(name) ?? 0) + 1);
  }
  const errors = [...left].map(
    ([name, n]) => `policy "${name}": ${n} container rule(s) not enforced: the ${backend} backend does not scope rules to containers yet`,
  );
  return {
    set: {
      pathRules: set.pathRules.filter(isHost),
      networkRules: set.networkRules.filter(isHost),
      capabilityRules: (set.capabilityRules ?? []).filter(isHost),
      postureRules: (set.postureRules ?? []).filter((p) => p.scopeKind === 'host'),
      meta: set.meta,
    },
    errors,
  };
}
