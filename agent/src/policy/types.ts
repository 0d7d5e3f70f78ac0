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
  /** 'MatchedHostPolicy' for KubeArmorHostPolicy */
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
}

export interface NetworkRule {
  ruleId: number;
  action: RuleAction;
  operation: 'Network';
  protocol: Protocol;
  /** empty: any process */
  fromSource: SourceMatch[];
}

export interface CompiledPolicySet {
  pathRules: PathRule[];
  networkRules: NetworkRule[];
  /** by ruleId */
  meta: Map<number, RuleMeta>;
}
