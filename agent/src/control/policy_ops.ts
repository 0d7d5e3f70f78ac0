// `policy apply|delete|list` on the running agent. An apply is all or
// nothing: every document is validated (loader, then compiler) before
// anything is written; the new files are written atomically and the agent
// reloads once, which publishes the new rule table in one step (the old rules
// stay in force until then: no gap). If the reload still refuses one of them,
// the previous files are put back and the agent reloads again.
import * as path from 'path';
import { formatPolicyError, LoadedPolicy, parsePolicyText } from '../policy/loader';
import { AppliedPolicyStore, describeKey, keyOf, PolicyKey, sameKey, serializePolicy, specFingerprint } from './applied_store';
import type { ControlError, Parsed, PolicyFileText } from './protocol';

/** Where a policy in force comes from. */
export type PolicyOrigin = 'operator' | 'applied' | 'hub';

export interface LoadSummary {
  files: number;
  policies: number;
  rules: number;
  errors: string[];
  warnings: string[];
}

/** What the operations need of the agent. */
export interface PolicyHost {
  /** the policies in force (the last good version of each), with their files */
  inForce(): LoadedPolicy[];
  /** the compiler's refusals for these policies on this node (same options as a reload) */
  compileErrors(policies: LoadedPolicy[]): string[];
  /** loads every policy directory again and replaces the rules in force */
  reload(): LoadSummary;
  originOf(file: string): PolicyOrigin;
}

export type ApplyChange = 'created' | 'replaced' | 'unchanged';

export interface AppliedPolicy {
  kind: LoadedPolicy['kind'];
  name: string;
  namespace?: string;
  change: ApplyChange;
  file: string;
}

export interface ApplyResult {
  applied: AppliedPolicy[];
  /** load warnings that name one of these policies (e.g. a rule's file does not exist here) */
  warnings: string[];
  rulesInForce: number;
}

export interface DeleteResult {
  deleted: Array<{ kind: LoadedPolicy['kind']; name: string; namespace?: string; file: string }>;
  rulesInForce: number;
}

export interface PolicyListEntry {
  name: string;
  kind: LoadedPolicy['kind'];
  namespace?: string;
  action: string;
  origin: PolicyOrigin;
  file: string;
}

const failure = (code: ControlError['code'], message: string, details?: string[]): { ok: false; error: ControlError } => ({
  ok: false,
  error: { code, message, ...(details && details.length ? { details } : {}) },
});

const mentions = (line: string, names: string[]): boolean => names.some((n) => line.includes(`"${n}"`) || line.includes(` ${n}:`) || line.includes(`/${n}`) || line.includes(`_${n}.yaml`));

export function listPolicies(host: PolicyHost): PolicyListEntry[] {
  return host
    .inForce()
    .map((p) => ({
      name: p.name,
      kind: p.kind,
      ...(p.namespace !== undefined ? { namespace: p.namespace } : {}),
      action: p.spec.action ?? 'Block',
      origin: host.originOf(p.source),
      file: p.source,
    }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Parses and checks every document of every file; nothing is written. */
function validate(files: PolicyFileText[], host: PolicyHost, store: AppliedPolicyStore): Parsed<LoadedPolicy[]> {
  const policies: LoadedPolicy[] = [];
  const errors: string[] = [];
  for (const f of files) {
    const r = parsePolicyText(f.text, f.source);
    errors.push(...r.errors.map(formatPolicyError));
    policies.push(...r.policies);
  }
  if (errors.length) return failure('invalid-policy', 'invalid policy; nothing was applied', errors);

  const seen: LoadedPolicy[] = [];
  for (const p of policies) {
    const twice = seen.find((q) => sameKey(keyOf(q), keyOf(p)));
    if (twice) {
      errors.push(`${p.source}: document ${p.documentIndex + 1}: metadata.name: ${describeKey(keyOf(p))} is also defined in ${twice.source} document ${twice.documentIndex + 1}`);
    }
    seen.push(p);
  }
  // Names are unique across the operator's directory, the applied policies and the
  // hub's: alerts name the policy, and a reload keeps last good versions by name.
  for (const p of policies) {
    const own = store.fileOf(keyOf(p));
    const other = host.inForce().find((q) => q.name === p.name && path.resolve(q.source) !== path.resolve(own));
    if (other) {
      errors.push(
        `${p.source}: document ${p.documentIndex + 1}: metadata.name: "${p.name}" is already in force from ${other.source} (${host.originOf(other.source)}); change or remove it there, or choose another name`,
      );
    }
  }
  if (errors.length) return failure('conflict', 'policy name already in use; nothing was applied', errors);

  const compileErrors = host.compileErrors(policies);
  if (compileErrors.length) return failure('invalid-policy', 'policy refused by the compiler; nothing was applied', compileErrors);
  return { ok: true, value: policies };
}

export function applyPolicies(host: PolicyHost, store: AppliedPolicyStore, files: PolicyFileText[], origin: string): Parsed<ApplyResult> {
  const checked = validate(files, host, store);
  if (!checked.ok) return checked;
  const policies = checked.value;

  const previous = new Map<string, { key: PolicyKey; text: string | undefined }>();
  const applied: AppliedPolicy[] = [];
  try {
    for (const p of policies) {
      const key = keyOf(p);
      const file = store.fileOf(key);
      const before = host.inForce().find((q) => path.resolve(q.source) === path.resolve(file));
      const change: ApplyChange = !before ? 'created' : specFingerprint(before) === specFingerprint(p) ? 'unchanged' : 'replaced';
      const text = serializePolicy(p, `applied from ${JSON.stringify(p.source)} (document ${p.documentIndex + 1}) by ${origin} at ${new Date().toISOString()}`);
      // what is stored must load back as the same policy
      const back = parsePolicyText(text, file);
      if (back.errors.length || back.policies.length !== 1 || specFingerprint(back.policies[0]!) !== specFingerprint(p)) {
        throw new Error(`${describeKey(key)}: the stored form does not load back as the same policy (${back.errors.map(formatPolicyError).join('; ')})`);
      }
      applied.push({ kind: p.kind, name: p.name, ...(p.namespace !== undefined ? { namespace: p.namespace } : {}), change, file });
      if (change === 'unchanged') continue;
      previous.set(file, { key, text: store.read(key) });
      store.write(key, text);
    }
  } catch (e) {
    rollBack(store, previous);
    return failure('internal', `cannot store the policies: ${(e as Error).message}; nothing was applied`);
  }
  if (previous.size === 0) {
    return { ok: true, value: { applied, warnings: [], rulesInForce: host.reload().rules } };
  }

  const load = host.reload();
  const fingerprints = new Map(policies.map((p) => [path.resolve(store.fileOf(keyOf(p))), specFingerprint(p)]));
  const notInForce = [...fingerprints].filter(([file, fp]) => !host.inForce().some((q) => path.resolve(q.source) === file && specFingerprint(q) === fp));
  const names = policies.map((p) => p.name);
  if (notInForce.length) {
    rollBack(store, previous);
    host.reload();
    const why = load.errors.filter((e) => mentions(e, names) || notInForce.some(([f]) => e.includes(f)));
    return failure('refused', 'the agent refused the new version when loading it; the previous version stays in force', why.length ? why : load.errors);
  }
  return { ok: true, value: { applied, warnings: load.warnings.filter((w) => mentions(w, names)), rulesInForce: load.rules } };
}

function rollBack(store: AppliedPolicyStore, previous: Map<string, { key: PolicyKey; text: string | undefined }>): void {
  for (const { key, text } of previous.values()) {
    try {
      store.restore(key, text);
    } catch {
      // best effort; the caller reports the original failure
    }
  }
}

export function deletePolicies(host: PolicyHost, store: AppliedPolicyStore, names: string[]): Parsed<DeleteResult> {
  const targets: LoadedPolicy[] = [];
  const errors: string[] = [];
  let elsewhere = false;
  for (const name of names) {
    const matching = host.inForce().filter((p) => p.name === name);
    const ours = matching.filter((p) => store.holds(p.source));
    if (ours.length) {
      targets.push(...ours);
    } else if (matching.length) {
      elsewhere = true;
      errors.push(`"${name}" comes from ${matching[0]!.source} (${host.originOf(matching[0]!.source)}), not from policy apply; remove it there`);
    } else {
      errors.push(`"${name}": no policy of that name is in force`);
    }
  }
  if (errors.length) {
    return failure(elsewhere ? 'conflict' : 'not-found', 'nothing was deleted', errors);
  }
  try {
    for (const p of targets) store.remove(keyOf(p));
  } catch (e) {
    // some files may be gone already: the reload makes the agent match the disk
    host.reload();
    return failure('internal', `cannot remove a policy file: ${(e as Error).message}`);
  }
  const load = host.reload();
  return {
    ok: true,
    value: {
      deleted: targets.map((p) => ({ kind: p.kind, name: p.name, ...(p.namespace !== undefined ? { namespace: p.namespace } : {}), file: p.source })),
      rulesInForce: load.rules,
    },
  };
}
