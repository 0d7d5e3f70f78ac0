// Policies applied through the control socket, kept on disk in
// <stateDirectory>/policies (0700), one file per policy, each written
// atomically (temporary file, fsync, rename, fsync of the directory): after a
// crash a policy file holds its old or its new version, never a mix. The
// agent loads this directory like the operator's (policyDirectories()), so
// applied policies are in force from the first load after a restart.
import * as fs from 'fs';
import * as path from 'path';
import * as yaml from 'js-yaml';
import { ensureDirectory, fsyncDirectory, writeFileAtomic } from '../hub/atomic_file';
import { formatHubError } from '../hub/result';
import type { LoadedPolicy, PolicyKind } from '../policy/loader';

export const APPLIED_SUBDIRECTORY = 'policies';

export function appliedPolicyDirectory(stateDirectory: string): string {
  return path.join(stateDirectory, APPLIED_SUBDIRECTORY);
}

export interface PolicyKey {
  kind: PolicyKind;
  name: string;
  /** KubeArmorPolicy only */
  namespace?: string;
}

export const keyOf = (p: LoadedPolicy): PolicyKey => ({ kind: p.kind, name: p.name, ...(p.namespace !== undefined ? { namespace: p.namespace } : {}) });

export function sameKey(a: PolicyKey, b: PolicyKey): boolean {
  return a.kind === b.kind && a.name === b.name && (a.kind === 'KubeArmorHostPolicy' || (a.namespace ?? '') === (b.namespace ?? ''));
}

export function describeKey(k: PolicyKey): string {
  return k.kind === 'KubeArmorPolicy' && k.namespace ? `${k.kind} ${k.namespace}/${k.name}` : `${k.kind} ${k.name}`;
}

// DNS-1123 names never hold "_" or "/": the file name is unique per key and stays in the directory.
const SAFE = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;

/** hostpolicy_<name>.yaml, policy_<namespace>_<name>.yaml */
export function policyFileName(k: PolicyKey): string {
  for (const part of [k.name, k.namespace ?? 'x']) {
    if (!SAFE.test(part) || part.length > 253) throw new Error(`policy name ${JSON.stringify(part)} is not a DNS-1123 name`);
  }
  return k.kind === 'KubeArmorHostPolicy' ? `hostpolicy_${k.name}.yaml` : `policy_${k.namespace ?? ''}_${k.name}.yaml`;
}

/** JSON form of a spec, for comparing two versions (key order as written, undefined dropped). */
export function specFingerprint(p: Pick<LoadedPolicy, 'kind' | 'name' | 'namespace' | 'spec'>): string {
  return JSON.stringify({ kind: p.kind, name: p.name, namespace: p.namespace ?? null, spec: p.spec });
}

/** The YAML document stored for one policy; `origin` ends up in a leading comment. */
export function serializePolicy(p: LoadedPolicy, origin: string): string {
  const doc = {
    apiVersion: 'security.kubearmor.com/v1',
    kind: p.kind,
    metadata: { name: p.name, ...(p.namespace !== undefined ? { namespace: p.namespace } : {}) },
    // JSON round trip: drops undefined members the dumper would refuse
    spec: JSON.parse(JSON.stringify(p.spec)) as unknown,
  };
  const comment = origin.replace(/[\r\n]+/g, ' ');
  return `# ${comment}\n# written by edgeward; change it with edgeward policy apply|delete\n${yaml.dump(doc, { noRefs: true, lineWidth: -1, schema: yaml.CORE_SCHEMA })}`;
}

export class AppliedPolicyStore {
  constructor(readonly directory: string) {}

  fileOf(k: PolicyKey): string {
    return path.join(this.directory, policyFileName(k));
  }

  /** Creates the directory (0700) if needed; throws saying why not. */
  ensure(): void {
    const r = ensureDirectory(this.directory, 0o700);
    if (!r.ok) throw new Error(formatHubError(r.error));
  }

  /** The stored text, or undefined when there is none. */
  read(k: PolicyKey): string | undefined {
    try {
      return fs.readFileSync(this.fileOf(k), 'utf8');
    } catch {
      return undefined;
    }
  }

  write(k: PolicyKey, text: string): void {
    this.ensure();
    const r = writeFileAtomic(this.fileOf(k), text, 0o600);
    if (!r.ok) throw new Error(formatHubError(r.error));
  }

  remove(k: PolicyKey): void {
    fs.rmSync(this.fileOf(k), { force: true });
    fsyncDirectory(this.directory);
  }

  /** Puts back what read() returned before a change (undefined: the policy did not exist). */
  restore(k: PolicyKey, previous: string | undefined): void {
    if (previous === undefined) this.remove(k);
    else this.write(k, previous);
  }

  /** Is `file` one of this store's policy files? */
  holds(file: string): boolean {
    return path.dirname(path.resolve(file)) === path.resolve(this.directory);
  }
}
