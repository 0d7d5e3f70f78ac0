// The compiler's output: backend-neutral rules plus the metadata alerts need.
// agent/src/policy/compiler.ts produces it; backends (agent/src/backends/*)
// consume it. Pure data, no kernel.

export type RuleAction = 'Block' | 'Audit';
export type Operation = 'Process' | 'File' | 'Network';
export type Protocol = 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'raw';

/** What alerts say about a rule (policy, severity, tags, message). */
export interface RuleMeta {
  ruleId: number;
  policyName: string;
  /** 'MatchedHostPolicy' for KubeArmorHostPolicy, 'MatchedPolicy' for KubeArmorPolicy */
  policyType: 'MatchedHostPolicy' | 'MatchedPolicy';
  severity: number;
  tags: string[];
  message: string;
  action: RuleAction;
  operation: Operation;
  /** the policy file it came from */
  source: string;
}

export type PathTarget =
  | { kind: 'path'; path: string }
  | { kind: 'dir'; path: string; recursive: boolean };

/**
 * Which containers a KubeArmorPolicy selects (agent/src/workloads.ts
 * matches it). A container's identities are its Docker labels plus
 * `kubearmor.io/container.name=<name>` and `namespaceName=<namespace>`, as
 * KubeArmor builds them outside Kubernetes.
 */
export interface ContainerSelector {
  /** every pair must be one of the container's identities (exact values) */
  matchLabels: Record<string, string>;
  /**
   * kubearmor.io/container.name: a regular expression the container name
   * must match from its first character (KubeArmor matches
   * "kubearmor.io/container.name=<regex>" unanchored against
   * "kubearmor.io/container.name=<name>", which anchors only the start;
   * end it with "$" for an exact name). "*" selects every container.
   */
  containerName?: string;
  /**
   * matchExpressions with key "label": In needs one of `values` ("k=v")
   * among the identities, NotIn none of them; all expressions must hold.
   */
  matchExpressions: Array<{ operator: 'In' | 'NotIn'; values: string[] }>;
}

/** Where a rule applies: the host's own processes, or the containers a selector picks. */
export type RuleScope = { kind: 'host' } | { kind: 'containers'; selector: ContainerSelector };

/**
 * One running container a container rule was resolved to
 * (agent/src/workloads.ts): the enforcers apply the rule to processes in its
 * mount namespace (or, having unshared it, under its pid namespace) and find
 * the rule's paths inside its root.
 */
export interface WorkloadTarget {
  /** the workload id: the container's mount namespace inode (never 0: 0 is the host) */
  mntNs: number;
  pidNs: number;
  /** host pid of the container's init: its /proc/<pid>/root is where paths are resolved */
  pid: number;
  containerId: string;
  containerName: string;
}

/** A fromSource entry: only processes running this executable are matched. */
export type SourceMatch = { kind: 'path'; path: string } | { kind: 'dir'; path: string; recursive: boolean };

/** process.* rules (exec) and file.* rules (open). */
export interface PathRule {
  ruleId: number;
  action: RuleAction;
  operation: 'Process' | 'File';
  target: PathTarget;
  /** File only: reads allowed, opens for writing matched */
  readOnly: boolean;
  /** matched unless the process's uid owns the file or executable */
  ownerOnly: boolean;
  /** empty: any process */
  fromSource: SourceMatch[];
  /** absent: the host (what the compiler gives host policies) */
  scope?: RuleScope;
  /** set by workload resolution for container rules: the one container this copy of the rule is for */
  workload?: WorkloadTarget;
}

export interface NetworkRule {
  ruleId: number;
  action: RuleAction;
  operation: 'Network';
  protocol: Protocol;
  /** empty: any process */
  fromSource: SourceMatch[];
  /** absent: the host */
  scope?: RuleScope;
  /** set by workload resolution for container rules */
  workload?: WorkloadTarget;
}

export interface CompiledPolicySet {
  pathRules: PathRule[];
  networkRules: NetworkRule[];
  /** by ruleId */
  meta: Map<number, RuleMeta>;
  /**
   * Set by workload resolution: every running container the enforcers must
   * tell apart from the host (host rules do not apply to them), whether or
   * not a rule selects it. Absent: nothing resolved, every process is the host.
   */
  workloads?: WorkloadTarget[];
}
