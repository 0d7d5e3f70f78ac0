// The compiler's output: backend-neutral rules plus the metadata alerts need.
// agent/src/policy/compiler.ts produces it; backends (agent/src/backends/*)
// consume it. Pure data, no kernel.

/**
 * KubeArmor's actions. Block refuses and reports, Audit lets through and
 * reports, Allow lets through silently and switches its category of the
 * workload it applies to into allow-list mode (see PostureRule).
 */
export type RuleAction = 'Allow' | 'Block' | 'Audit';
export type Operation = 'Process' | 'File' | 'Network' | 'Capabilities';
export type Protocol = 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'raw';

/** What the default posture does to an access no Allow rule covers. */
export type PostureAction = 'Block' | 'Audit';

/**
 * The categories that switch to allow-list mode separately (KubeArmor:
 * process, file, network, capabilities; process takes the file posture).
 */
export type PostureCategory = 'process' | 'file' | 'network' | 'capabilities';
export const POSTURE_CATEGORIES: readonly PostureCategory[] = ['process', 'file', 'network', 'capabilities'];

/** The agent config's defaultPosture section (KubeArmor's defaultFilePosture etc.). */
export interface DefaultPosture {
  file: 'block' | 'audit';
  network: 'block' | 'audit';
  capabilities: 'block' | 'audit';
}

/** KubeArmor's global default since v0.7: audit everything an allow-list does not name. */
export const KUBEARMOR_DEFAULT_POSTURE: Readonly<DefaultPosture> = Object.freeze({
  file: 'audit',
  network: 'audit',
  capabilities: 'audit',
});

/** Policy name alerts of default-posture decisions carry (as KubeArmor's). */
export const DEFAULT_POSTURE_POLICY = 'DefaultPosture';

/**
 * The default posture of one category for one kind of workload. A workload
 * (the host, or one container) is in allow-list mode for `category` when at
 * least one Allow rule of that category applies to it: then every access of
 * that category no Allow (or Block) rule matches gets `action`, reported
 * under `ruleId` (whose RuleMeta names policy "DefaultPosture"). The
 * compiler emits one per (category, host/containers) that has Allow rules;
 * agent/src/policy/posture.ts tells which workloads are in allow-list mode.
 */
export interface PostureRule {
  ruleId: number;
  category: PostureCategory;
  action: PostureAction;
  /** host: host Allow rules switch the host; containers: each container its own Allow rules select */
  scopeKind: 'host' | 'containers';
}

/** What alerts say about a rule (policy, severity, tags, message). */
export interface RuleMeta {
  ruleId: number;
  policyName: string;
  /** 'MatchedHostPolicy' for KubeArmorHostPolicy, 'MatchedPolicy' for KubeArmorPolicy */
  policyType: 'MatchedHostPolicy' | 'MatchedPolicy';
  /** 1..10; 0 for default-posture decisions (KubeArmor prints none) */
  severity: number;
  tags: string[];
  message: string;
  action: RuleAction;
  operation: Operation;
  /** the policy file it came from */
  source: string;
}

/**
 * What a process or file rule names: a path, a directory, a glob pattern
 * (matchPatterns: `*` and `?` stay within one path component, `**` crosses
 * them, `[...]` is a character class; see policy/glob.ts), or (process rules
 * only) an executable name in any directory (matchPaths.execname).
 */
export type PathTarget =
  | { kind: 'path'; path: string }
  | { kind: 'dir'; path: string; recursive: boolean }
  | { kind: 'pattern'; pattern: string }
  | { kind: 'execname'; name: string };

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

/**
 * capabilities.matchCapabilities: `capability` is the name without "cap_",
 * lowercase (net_raw, sys_admin). No backend enforces these yet: they are
 * compiled so backends can say so per rule.
 */
export interface CapabilityRule {
  ruleId: number;
  action: RuleAction;
  operation: 'Capabilities';
  capability: string;
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
  /** absent in sets built before capabilities were compiled: none */
  capabilityRules?: CapabilityRule[];
  /**
   * Default postures of the categories that have Allow rules (absent or
   * empty: no allow-list anywhere). Their ruleIds have RuleMeta too.
   */
  postureRules?: PostureRule[];
  /** by ruleId */
  meta: Map<number, RuleMeta>;
  /**
   * Set by workload resolution: every running container the enforcers must
   * tell apart from the host (host rules do not apply to them), whether or
   * not a rule selects it. Absent: nothing resolved, every process is the host.
   */
  workloads?: WorkloadTarget[];
}
