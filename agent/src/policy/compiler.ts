// Turns validated KubeArmor policies into the backend-neutral rule set of
// ./types. Pure: no I/O, same input -> same output (rule ids included).
//
// Semantics follow KubeArmor (core/kubeUpdate.go, host policy path):
//  - spec.severity defaults to 1, spec.action to Block;
//  - each rule's severity / tags / message / action is its own if set, else
//    its section's (process, file, network) if set, else the policy's;
//  - "protocol: tcp,udp" is a list (KubeArmor's ObjCommaExpandFirstDupOthers),
//    "all" stands for every protocol class;
//  - nodeSelector.matchLabels must all match the node; kubearmor.io/hostname
//    also accepts "*".
//  - KubeArmorPolicy (containers, outside Kubernetes as KubeArmor's
//    unorchestrated mode reads it): selector.matchLabels against the
//    container's identities, kubearmor.io/container.name a regular expression
//    on its name, matchExpressions (key "label", In/NotIn on "k=v" values);
//    metadata.namespace does not select (KubeArmor puts every container in
//    "container_namespace" there). Its rules get a container scope and alerts
//    Type "MatchedPolicy"; host policies get the host scope.
//  - action Allow: the rule's category (process, file, network,
//    capabilities) of every workload it applies to switches to allow-list
//    mode; the compiler emits a PostureRule per category and scope kind
//    with Allow rules, carrying the configured default posture (process
//    takes the file posture, as in KubeArmor) and a RuleMeta naming policy
//    "DefaultPosture" for the alerts of its decisions.
//  - process.matchPaths.execname: an executable name in any directory;
//    matchPatterns: globs (./glob.ts); capabilities.matchCapabilities:
//    compiled into CapabilityRules (which backends report as not enforced).
// What no backend can express (syscalls, raw AppArmor) is refused with a
// CompileError, never silently dropped; the policy is then refused as a whole.

import type {
  CapabilityRule,
  CompiledPolicySet,
  ContainerSelector,
  DefaultPosture,
  NetworkRule,
  Operation,
  PathRule,
  PathTarget,
  PostureCategory,
  PostureRule,
  Protocol,
  RuleAction,
  RuleMeta,
  RuleScope,
  SourceMatch,
} from './types';
import { DEFAULT_POSTURE_POLICY, KUBEARMOR_DEFAULT_POSTURE, POSTURE_CATEGORIES } from './types';
import type { LoadedPolicy, PolicySpec, RuleMetaFields, SourceSpec } from './loader';
import { fieldPath } from './loader';

export interface CompileOptions {
  /** this node's host name (matched against kubearmor.io/hostname and kubernetes.io/hostname) */
  hostname: string;
  /** this node's labels (matched against nodeSelector.matchLabels) */
  nodeLabels?: Record<string, string>;
  /**
   * What allow-list mode does to accesses no rule allows, per category (the
   * agent config's defaultPosture). Absent: KubeArmor's default, audit.
   */
  posture?: DefaultPosture;
}

export interface CompileError {
  policyName: string;
  /** file the policy came from */
  source: string;
  /** dotted field path, e.g. spec.process.matchPaths[0].execname */
  field: string;
  /** short reason, e.g. "not supported yet: execname" */
  reason: string;
  /** the full line: `file: policy "name": field: reason (policy refused)` */
  message: string;
}

/** A policy that is valid but selects other nodes (information, not an error). */
export interface SkippedPolicy {
  policyName: string;
  source: string;
  reason: string;
  message: string;
}

export interface CompileResult {
  set: CompiledPolicySet;
  errors: CompileError[];
  /** policies not compiled because their nodeSelector does not match this node */
  skipped: SkippedPolicy[];
}

export const HOSTNAME_LABEL = 'kubearmor.io/hostname';
/** KubeArmor's non-Kubernetes container selector label: a regex on the container name. */
export const CONTAINER_NAME_LABEL = 'kubearmor.io/container.name';
export const K8S_HOSTNAME_LABEL = 'kubernetes.io/hostname';

/** Every protocol class the backends know; what `protocol: all` expands into. */
export const ALL_PROTOCOLS: readonly Protocol[] = ['tcp', 'udp', 'icmp', 'icmpv6', 'raw'];

export function formatCompileError(e: CompileError): string {
  return e.message;
}

/** Node labels a host policy's nodeSelector is matched against. */
export function effectiveNodeLabels(options: CompileOptions): Record<string, string> {
  // KubeArmor outside Kubernetes gives the node kubearmor.io/hostname; policies
  // written for a Kubernetes node use kubernetes.io/hostname. Both name this host
  // unless the operator set them explicitly.
  return { [HOSTNAME_LABEL]: options.hostname, [K8S_HOSTNAME_LABEL]: options.hostname, ...(options.nodeLabels ?? {}) };
}

/** Why a nodeSelector does not select this node, or undefined if it does. */
export function nodeSelectorMismatch(matchLabels: Record<string, string>, options: CompileOptions): string | undefined {
  const labels = effectiveNodeLabels(options);
  for (const key of Object.keys(matchLabels).sort()) {
    const want = matchLabels[key];
    if (key === HOSTNAME_LABEL && want === '*') continue;
    const have = labels[key];
    if (have === undefined) return `node has no label ${key} (wanted "${want}")`;
    if (have !== want) return `${key} is "${have}", policy wants "${want}"`;
  }
  return undefined;
}

/**
 * The regular expression a kubearmor.io/container.name value stands for, or
 * an error message. KubeArmor compiles "kubearmor.io/container.name=<value>"
 * and searches it in "kubearmor.io/container.name=<name>": the value is
 * anchored at the name's first character and open at its end; a leading "^"
 * changes nothing, a trailing "$" makes the match exact. "*" (KubeArmor's
 * VM daemon) selects every container.
 */
export function containerNamePattern(value: string): RegExp | string {
  if (value === '*') return /^/;
  try {
    return new RegExp(`^(?:${value.startsWith('^') ? value.slice(1) : value})`);
  } catch (err) {
    return `invalid regular expression ${JSON.stringify(value)}: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`;
  }
}

/** The selector of a KubeArmorPolicy, or the problems that make it unusable. */
function compileSelector(spec: PolicySpec): { selector?: ContainerSelector; problems: Array<{ segs: Array<string | number>; reason: string }> } {
  const problems: Array<{ segs: Array<string | number>; reason: string }> = [];
  const matchLabels: Record<string, string> = {};
  let containerName: string | undefined;
  const labels = spec.selector?.matchLabels ?? {};
  for (const key of Object.keys(labels).sort()) {
    const value = labels[key];
    if (key === CONTAINER_NAME_LABEL) {
      const re = containerNamePattern(value);
      if (typeof re === 'string') problems.push({ segs: ['spec', 'selector', 'matchLabels', key], reason: re });
      containerName = value;
    } else {
      matchLabels[key] = value;
    }
  }
  const matchExpressions: ContainerSelector['matchExpressions'] = [];
  (spec.selector?.matchExpressions ?? []).forEach((e, i) => {
    e.values.forEach((v, j) => {
      if (!v.includes('=')) {
        problems.push({
          segs: ['spec', 'selector', 'matchExpressions', i, 'values', j],
          reason: `must be a label as key=value (got ${JSON.stringify(v)})`,
        });
      }
    });
    matchExpressions.push({ operator: e.operator, values: [...e.values] });
  });
  if (Object.keys(labels).length === 0 && matchExpressions.length === 0) {
    // KubeArmor outside Kubernetes refuses such a policy too ("No labels to match").
    problems.push({
      segs: ['spec', 'selector'],
      reason: `selects no container: give matchLabels or matchExpressions (every container: ${CONTAINER_NAME_LABEL}: ".*")`,
    });
  }
  if (problems.length) return { problems };
  return { selector: { matchLabels, ...(containerName !== undefined ? { containerName } : {}), matchExpressions }, problems };
}

interface Inherited {
  severity: number;
  tags: string[];
  message: string;
  action: 'Allow' | 'Audit' | 'Block';
}

/** KubeArmor's precedence: rule, else section, else policy (after the policy's defaults). */
function inherit(rule: RuleMetaFields, section: RuleMetaFields | undefined, policy: Inherited): Inherited {
  const pick = <T>(r: T | undefined, s: T | undefined, p: T, empty: (v: T) => boolean): T =>
    r !== undefined && !empty(r) ? r : s !== undefined && !empty(s) ? s : p;
  return {
    severity: pick(rule.severity, section?.severity, policy.severity, (v) => v === 0),
    tags: [...pick(rule.tags, section?.tags, policy.tags, (v) => v.length === 0)],
    message: pick(rule.message, section?.message, policy.message, (v) => v.length === 0),
    action: pick(rule.action, section?.action, policy.action, () => false),
  };
}

function policyDefaults(spec: PolicySpec): Inherited {
  return {
    severity: spec.severity ?? 1,
    tags: spec.tags ?? [],
    message: spec.message ?? '',
    action: spec.action ?? 'Block',
  };
}

function sources(list: SourceSpec[] | undefined): SourceMatch[] {
  return (list ?? []).map((s) =>
    s.dir !== undefined ? { kind: 'dir', path: s.dir, recursive: s.recursive ?? false } : { kind: 'path', path: s.path as string },
  );
}

/** One rule before ids are given out: the rule body and its metadata. */
type Draft =
  | { kind: 'path'; rule: Omit<PathRule, 'ruleId'>; meta: Inherited }
  | { kind: 'network'; rule: Omit<NetworkRule, 'ruleId'>; meta: Inherited }
  | { kind: 'capability'; rule: Omit<CapabilityRule, 'ruleId'>; meta: Inherited };

interface PolicyCompilation {
  drafts: Draft[];
  problems: Array<{ segs: Array<string | number>; reason: string }>;
}

/** The rules of a policy (either kind; the caller adds the scope). */
function compilePolicyRules(p: LoadedPolicy): PolicyCompilation {
  const spec = p.spec;
  const base = policyDefaults(spec);
  const out: PolicyCompilation = { drafts: [], problems: [] };
  const refuse = (segs: Array<string | number>, reason: string) => out.problems.push({ segs, reason });

  const accept = (_segs: Array<string | number>, meta: Inherited): RuleAction => meta.action;

  const proc = spec.process;
  proc?.matchPaths?.forEach((r, i) => {
    const segs = ['spec', 'process', 'matchPaths', i];
    const meta = inherit(r, proc, base);
    const action = accept(segs, meta);
    const target: PathTarget =
      r.execname !== undefined ? { kind: 'execname', name: r.execname } : { kind: 'path', path: r.path as string };
    out.drafts.push({
      kind: 'path',
      rule: { action, operation: 'Process', target, readOnly: false, ownerOnly: r.ownerOnly ?? false, fromSource: sources(r.fromSource) },
      meta,
    });
  });
  proc?.matchDirectories?.forEach((r, i) => {
    const segs = ['spec', 'process', 'matchDirectories', i];
    const meta = inherit(r, proc, base);
    const action = accept(segs, meta);
    out.drafts.push({
      kind: 'path',
      rule: {
        action,
        operation: 'Process',
        target: { kind: 'dir', path: r.dir, recursive: r.recursive ?? false },
        readOnly: false,
        ownerOnly: r.ownerOnly ?? false,
        fromSource: sources(r.fromSource),
      },
      meta,
    });
  });
  proc?.matchPatterns?.forEach((r, i) => {
    const meta = inherit(r, proc, base);
    const action = accept(['spec', 'process', 'matchPatterns', i], meta);
    out.drafts.push({
      kind: 'path',
      rule: {
        action,
        operation: 'Process',
        target: { kind: 'pattern', pattern: r.pattern },
        readOnly: false,
        ownerOnly: r.ownerOnly ?? false,
        fromSource: [],
      },
      meta,
    });
  });

  const file = spec.file;
  file?.matchPaths?.forEach((r, i) => {
    const segs = ['spec', 'file', 'matchPaths', i];
    const meta = inherit(r, file, base);
    const action = accept(segs, meta);
    out.drafts.push({
      kind: 'path',
      rule: {
        action,
        operation: 'File',
        target: { kind: 'path', path: r.path },
        readOnly: r.readOnly ?? false,
        ownerOnly: r.ownerOnly ?? false,
        fromSource: sources(r.fromSource),
      },
      meta,
    });
  });
  file?.matchDirectories?.forEach((r, i) => {
    const segs = ['spec', 'file', 'matchDirectories', i];
    const meta = inherit(r, file, base);
    const action = accept(segs, meta);
    out.drafts.push({
      kind: 'path',
      rule: {
        action,
        operation: 'File',
        target: { kind: 'dir', path: r.dir, recursive: r.recursive ?? false },
        readOnly: r.readOnly ?? false,
        ownerOnly: r.ownerOnly ?? false,
        fromSource: sources(r.fromSource),
      },
      meta,
    });
  });
  file?.matchPatterns?.forEach((r, i) => {
    const meta = inherit(r, file, base);
    const action = accept(['spec', 'file', 'matchPatterns', i], meta);
    out.drafts.push({
      kind: 'path',
      rule: {
        action,
        operation: 'File',
        target: { kind: 'pattern', pattern: r.pattern },
        readOnly: r.readOnly ?? false,
        ownerOnly: r.ownerOnly ?? false,
        fromSource: [],
      },
      meta,
    });
  });

  const net = spec.network;
  net?.matchProtocols?.forEach((r, i) => {
    const segs = ['spec', 'network', 'matchProtocols', i];
    const protocols = expandProtocols(r.protocol);
    if (protocols.unsupported.length) {
      refuse([...segs, 'protocol'], `not supported yet: protocol ${protocols.unsupported.join(', ')}`);
      return;
    }
    const meta = inherit(r, net, base);
    const action = accept(segs, meta);
    for (const protocol of protocols.classes) {
      out.drafts.push({ kind: 'network', rule: { action, operation: 'Network', protocol, fromSource: sources(r.fromSource) }, meta });
    }
  });

  const caps = spec.capabilities;
  caps?.matchCapabilities?.forEach((r, i) => {
    const meta = inherit(r, caps, base);
    const action = accept(['spec', 'capabilities', 'matchCapabilities', i], meta);
    for (const capability of expandCapabilities(r.capability)) {
      out.drafts.push({
        kind: 'capability',
        rule: { action, operation: 'Capabilities', capability, fromSource: sources(r.fromSource) },
        meta,
      });
    }
  });
  if (spec.syscalls) refuse(['spec', 'syscalls'], 'not supported yet: syscalls');
  if (spec.apparmor !== undefined) refuse(['spec', 'apparmor'], 'not supported: raw AppArmor profiles');
  return out;
}

/** "CAP_NET_RAW, sys_admin" -> [net_raw, sys_admin]: lowercase, no cap_ prefix, duplicates removed, order kept. */
export function expandCapabilities(text: string): string[] {
  const out: string[] = [];
  for (const word of text.split(',').map((w) => w.trim().toLowerCase().replace(/^cap_/, ''))) {
    if (word && !out.includes(word)) out.push(word);
  }
  return out;
}

/** The posture category of a rule's operation (KubeArmor: process under file posture, own allow-list). */
export function postureCategoryOf(operation: Operation): PostureCategory {
  switch (operation) {
    case 'Process':
      return 'process';
    case 'File':
      return 'file';
    case 'Network':
      return 'network';
    default:
      return 'capabilities';
  }
}

const POSTURE_OPERATION: Record<PostureCategory, Operation> = {
  process: 'Process',
  file: 'File',
  network: 'Network',
  capabilities: 'Capabilities',
};

/** "TCP, udp" -> [tcp, udp]; "all" -> every class; duplicates removed, order kept. */
export function expandProtocols(text: string): { classes: Protocol[]; unsupported: string[] } {
  const classes: Protocol[] = [];
  const unsupported: string[] = [];
  for (const word of text.split(',').map((w) => w.replace(/\s+/g, '').toLowerCase())) {
    if (word === 'all') {
      for (const p of ALL_PROTOCOLS) if (!classes.includes(p)) classes.push(p);
    } else if ((ALL_PROTOCOLS as readonly string[]).includes(word)) {
      if (!classes.includes(word as Protocol)) classes.push(word as Protocol);
    } else if (word && !unsupported.includes(word)) {
      // KubeArmor also names sctp, stream, dgram, rdm, seqpacket, dccp, packet
      unsupported.push(word);
    }
  }
  return { classes, unsupported };
}

function cloneSelector(s: ContainerSelector): ContainerSelector {
  return {
    matchLabels: { ...s.matchLabels },
    ...(s.containerName !== undefined ? { containerName: s.containerName } : {}),
    matchExpressions: s.matchExpressions.map((e) => ({ operator: e.operator, values: [...e.values] })),
  };
}

function compileError(p: LoadedPolicy, segs: Array<string | number>, reason: string): CompileError {
  const field = fieldPath(segs);
  return {
    policyName: p.name,
    source: p.source,
    field,
    reason,
    message: `${p.source}: policy "${p.name}": ${field ? `${field}: ` : ''}${reason} (policy refused)`,
  };
}

/**
 * Compiles the policies for this node. Rule ids start at 1 and follow the
 * input order (policy, then section, then rule), so the same input always
 * gives the same ids. A refused policy takes no ids.
 */
export function compilePolicies(policies: readonly LoadedPolicy[], options: CompileOptions): CompileResult {
  const set: CompiledPolicySet = {
    pathRules: [],
    networkRules: [],
    capabilityRules: [],
    postureRules: [],
    meta: new Map<number, RuleMeta>(),
  };
  const errors: CompileError[] = [];
  const skipped: SkippedPolicy[] = [];
  let nextId = 1;

  for (const p of policies) {
    let scope: RuleScope;
    const problems: PolicyCompilation['problems'] = [];
    if (p.kind === 'KubeArmorPolicy') {
      if (p.spec.status === 'Inactive') {
        const reason = 'spec.status is Inactive';
        skipped.push({ policyName: p.name, source: p.source, reason, message: `${p.source}: policy "${p.name}" is not applied: ${reason}` });
        continue;
      }
      const sel = compileSelector(p.spec);
      problems.push(...sel.problems);
      scope = sel.selector ? { kind: 'containers', selector: sel.selector } : { kind: 'host' };
    } else {
      const mismatch = nodeSelectorMismatch(p.spec.nodeSelector?.matchLabels ?? {}, options);
      if (mismatch) {
        skipped.push({
          policyName: p.name,
          source: p.source,
          reason: mismatch,
          message: `${p.source}: policy "${p.name}" is not for this node: ${mismatch}`,
        });
        continue;
      }
      scope = { kind: 'host' };
    }
    const c = compilePolicyRules(p);
    problems.push(...c.problems);
    if (problems.length) {
      for (const pr of problems) errors.push(compileError(p, pr.segs, pr.reason));
      continue;
    }
    for (const d of c.drafts) {
      const ruleId = nextId++;
      set.meta.set(ruleId, {
        ruleId,
        policyName: p.name,
        policyType: p.kind === 'KubeArmorPolicy' ? 'MatchedPolicy' : 'MatchedHostPolicy',
        severity: d.meta.severity,
        tags: d.meta.tags,
        message: d.meta.message,
        action: d.rule.action,
        operation: d.rule.operation,
        source: p.source,
      });
      // Each rule gets its own copy: resolution and backends never share a selector object.
      const ruleScope: RuleScope = scope.kind === 'host' ? { kind: 'host' } : { kind: 'containers', selector: cloneSelector(scope.selector) };
      if (d.kind === 'path') set.pathRules.push({ ruleId, ...d.rule, scope: ruleScope });
      else if (d.kind === 'network') set.networkRules.push({ ruleId, ...d.rule, scope: ruleScope });
      else set.capabilityRules!.push({ ruleId, ...d.rule, scope: ruleScope });
    }
  }
  // Default postures last, so policy rule ids do not depend on them.
  const posture = options.posture ?? KUBEARMOR_DEFAULT_POSTURE;
  const allows = new Set<string>();
  for (const r of [...set.pathRules, ...set.networkRules, ...set.capabilityRules!]) {
    if (r.action === 'Allow') allows.add(`${postureCategoryOf(r.operation)}/${r.scope?.kind ?? 'host'}`);
  }
  for (const scopeKind of ['host', 'containers'] as const) {
    for (const category of POSTURE_CATEGORIES) {
      if (!allows.has(`${category}/${scopeKind}`)) continue;
      const setting = category === 'process' ? posture.file : posture[category];
      const action = setting === 'block' ? 'Block' : 'Audit';
      const ruleId = nextId++;
      const rule: PostureRule = { ruleId, category, action, scopeKind };
      set.postureRules!.push(rule);
      set.meta.set(ruleId, {
        ruleId,
        policyName: DEFAULT_POSTURE_POLICY,
        policyType: scopeKind === 'host' ? 'MatchedHostPolicy' : 'MatchedPolicy',
        severity: 0,
        tags: [],
        message: '',
        action,
        operation: POSTURE_OPERATION[category],
        source: '',
      });
    }
  }
  return { set, errors, skipped };
}
