// The node's policy bundles on disk, under <stateDirectory>/hub/:
//
//   bundles/node.bundle, bundles/group.<name>.bundle   the signed bundles in force, verbatim
//   history.json                                       versions seen per scope (replay detection)
//   generations/<id>/*.yaml                            one materialised policy set
//   policies -> generations/<id>                       the set the agent loads (symlink)
//
// A new set is written into a fresh generation directory and the `policies`
// symlink is replaced by rename(2), so the agent only ever sees a whole set.
// Precedence when the same policy (kind, namespace, name) comes from several
// bundles: the node's own bundle wins, then the groups in the order the node
// lists them (earlier wins). Shadowed policies are reported as "overridden".
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as yaml from 'js-yaml';
import { ensureDirectory, fsyncDirectory, writeFileAtomic } from './atomic_file';
import { BundlePayload, BundleScope, BundleTarget, InForce, PinnedKey, policiesOf, policyIdentity, verifyBundle } from './bundle';
import { err, hubError, HubError, ok, Result } from './result';
import type { LoadedPolicy } from '../policy/loader';

/** materialised policies live in <hub state directory>/policies */
export const POLICY_SUBDIRECTORY = 'policies';

export interface AcceptedBundle {
  payload: BundlePayload;
  keyId: string;
  /** policies per bundle document, as validated */
  documents: Array<{ document: string; policies: LoadedPolicy[] }>;
}

export interface MaterialisedPolicy {
  /** file name inside the policy directory */
  file: string;
  scope: BundleTarget;
  version: number;
  /** the bundle document it came from */
  document: string;
  /** kind/[namespace/]name */
  policy: string;
  /** undefined when in force; else the scope whose policy of the same identity wins */
  overriddenBy?: BundleTarget;
}

const HISTORY_LIMIT = 32;

/** a stored bundle that could not be used at start */
export interface StoreProblem {
  target: BundleTarget;
  error: HubError;
}

export function scopeLabel(t: BundleTarget): string {
  return t.scope === 'node' ? 'node' : `group ${t.name}`;
}

function bundleFileName(t: BundleTarget): string {
  return t.scope === 'node' ? 'node.bundle' : `group.${t.name}.bundle`;
}

function scopeKey(t: BundleTarget): string {
  return `${t.scope}:${t.name}`;
}

/** A file name for a policy: readable, unique, never hidden, within NAME_MAX. */
function policyFileName(p: LoadedPolicy, taken: Set<string>): string {
  const prefix = p.kind === 'KubeArmorHostPolicy' ? 'hsp' : 'ksp';
  let base = `${prefix}-${p.namespace ? `${p.namespace}-` : ''}${p.name}`.replace(/[^A-Za-z0-9._-]/g, '_');
  const hash = crypto.createHash('sha256').update(policyIdentity(p)).digest('hex').slice(0, 8);
  if (base.length > 200) base = `${base.slice(0, 200)}-${hash}`;
  let name = `${base}.yaml`;
  if (taken.has(name)) name = `${base}-${hash}.yaml`;
  taken.add(name);
  return name;
}

function renderPolicy(p: LoadedPolicy, from: { scope: BundleTarget; version: number; document: string }): string {
  const doc: Record<string, unknown> = {
    apiVersion: 'security.kubearmor.com/v1',
    kind: p.kind,
    metadata: p.namespace !== undefined ? { name: p.name, namespace: p.namespace } : { name: p.name },
    spec: p.spec,
  };
  return (
    `# written by edgeward from the hub's ${scopeLabel(from.scope)} bundle version ${from.version}, document ${from.document}.\n` +
    `# Do not edit: the next bundle replaces this directory.\n` +
    yaml.dump(doc, { noRefs: true, lineWidth: -1 })
  );
}

export interface PolicyStoreOptions {
  /** <stateDirectory>/hub */
  directory: string;
  org: string;
  node: string;
  /** the node's groups; earlier ones win over later ones */
  groups: string[];
  keys: readonly PinnedKey[];
  maxBundleBytes: number;
}

export class PolicyStore {
  private readonly bundles = new Map<string, AcceptedBundle>();
  private history: Record<string, Array<{ version: number; contentHash: string }>> = {};
  private materialised: MaterialisedPolicy[] = [];

  private constructor(private readonly options: PolicyStoreOptions) {}

  /** <stateDirectory>/hub/policies: the directory the agent loads besides its own. */
  get policyDirectory(): string {
    return path.join(this.options.directory, POLICY_SUBDIRECTORY);
  }

  /** The node's scopes, highest precedence first. */
  scopes(): BundleTarget[] {
    return [{ scope: 'node', name: this.options.node }, ...this.options.groups.map((g) => ({ scope: 'group' as BundleScope, name: g }))];
  }

  /**
   * Reads the stored bundles (verified again: a damaged or no longer trusted
   * file is dropped and named in `problems`) and makes sure the policy
   * directory holds exactly their policies. No network: this is what a node
   * enforces from boot on.
   */
  static open(options: PolicyStoreOptions): Result<{ store: PolicyStore; problems: StoreProblem[] }> {
    const store = new PolicyStore(options);
    const problems: StoreProblem[] = [];
    for (const sub of ['bundles', 'generations']) {
      const r = ensureDirectory(path.join(options.directory, sub));
      if (!r.ok) return r;
    }
    store.history = readHistory(path.join(options.directory, 'history.json'));
    for (const target of store.scopes()) {
      const file = path.join(options.directory, 'bundles', bundleFileName(target));
      let raw: Buffer;
      try {
        raw = fs.readFileSync(file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') problems.push({ target, error: hubError('io', `${file}: cannot read the stored bundle`, e) });
        continue;
      }
      const v = verifyBundle(raw, options.keys, options.maxBundleBytes);
      const checked = v.ok ? (v.value.payload.target.scope === target.scope && v.value.payload.target.name === target.name && v.value.payload.org === options.org ? v : err(hubError('wrong-target', 'stored for another target'))) : v;
      const policies = checked.ok ? policiesOf(checked.value.payload) : checked;
      if (!checked.ok || !policies.ok) {
        const e = !checked.ok ? checked.error : (policies as { ok: false; error: HubError }).error;
        problems.push({ target, error: hubError(e.code, `${file}: stored ${scopeLabel(target)} bundle not used: ${e.message}`) });
        continue;
      }
      store.bundles.set(scopeKey(target), { payload: checked.value.payload, keyId: checked.value.keyId, documents: policies.value });
    }
    const m = store.materialise();
    if (!m.ok) return m;
    return ok({ store, problems });
  }

  inForce(target: BundleTarget): InForce | undefined {
    const b = this.bundles.get(scopeKey(target));
    return b ? { version: b.payload.version, contentHash: b.payload.contentHash } : undefined;
  }

  accepted(target: BundleTarget): AcceptedBundle | undefined {
    return this.bundles.get(scopeKey(target));
  }

  seenBefore(target: BundleTarget, version: number, contentHash: string): boolean {
    return (this.history[scopeKey(target)] ?? []).some((h) => h.version === version && h.contentHash === contentHash);
  }

  /** Stores a verified, checked bundle as the one in force for its scope (atomically). Call materialise() after. */
  accept(bundle: AcceptedBundle, raw: Buffer): Result<void> {
    const target = bundle.payload.target;
    const w = writeFileAtomic(path.join(this.options.directory, 'bundles', bundleFileName(target)), raw);
    if (!w.ok) return w;
    const key = scopeKey(target);
    const h = (this.history[key] ?? []).filter((x) => x.version !== bundle.payload.version);
    h.push({ version: bundle.payload.version, contentHash: bundle.payload.contentHash });
    this.history[key] = h.slice(-HISTORY_LIMIT);
    // best effort: history only turns "downgrade" into the more precise "replayed"
    writeFileAtomic(path.join(this.options.directory, 'history.json'), JSON.stringify(this.history));
    this.bundles.set(key, bundle);
    return ok(undefined);
  }

  /** The merged policy set, by precedence, with the shadowed ones marked. */
  plan(): Array<MaterialisedPolicy & { content: string }> {
    const owner = new Map<string, BundleTarget>();
    const taken = new Set<string>();
    const out: Array<MaterialisedPolicy & { content: string }> = [];
    for (const target of this.scopes()) {
      const b = this.bundles.get(scopeKey(target));
      if (!b) continue;
      for (const d of b.documents) {
        for (const p of d.policies) {
          const id = policyIdentity(p);
          const from = { scope: target, version: b.payload.version, document: d.document };
          const winner = owner.get(id);
          if (winner) {
            out.push({ file: '', ...from, policy: id, overriddenBy: winner, content: '' });
            continue;
          }
          owner.set(id, target);
          out.push({ file: policyFileName(p, taken), ...from, policy: id, content: renderPolicy(p, from) });
        }
      }
    }
    return out;
  }

  /** Makes the policy directory hold the current merged set; a no-op when it already does. */
  materialise(): Result<MaterialisedPolicy[]> {
    const plan = this.plan();
    const files = plan.filter((p) => !p.overriddenBy);
    const strip = (p: MaterialisedPolicy & { content: string }): MaterialisedPolicy => {
      const { content: _content, ...rest } = p;
      return rest;
    };
    if (this.matches(files)) {
      this.materialised = plan.map(strip);
      return ok(this.materialised);
    }
    const dir = this.options.directory;
    const id = `${Date.now()}-${crypto.randomBytes(4).toString('hex')}`;
    const gen = path.join(dir, 'generations', id);
    try {
      fs.mkdirSync(gen, { mode: 0o700 });
      for (const f of files) {
        const fd = fs.openSync(path.join(gen, f.file), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
        try {
          fs.writeFileSync(fd, f.content);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
      }
      fsyncDirectory(gen);
      const link = this.policyDirectory;
      const tmpLink = path.join(dir, `.policies.${id}`);
      fs.symlinkSync(path.join('generations', id), tmpLink);
      const st = fs.lstatSync(link, { throwIfNoEntry: false });
      if (st && !st.isSymbolicLink()) fs.rmSync(link, { recursive: true, force: true }); // not ours: replace it
      fs.renameSync(tmpLink, link);
      fsyncDirectory(dir);
    } catch (e) {
      fs.rmSync(gen, { recursive: true, force: true });
      return err(hubError('io', `cannot write the hub policy set under ${dir}`, e));
    }
    // the agent reads through the symlink, so older generations are unused from here on
    for (const old of fs.readdirSync(path.join(dir, 'generations'))) {
      if (old !== id) fs.rmSync(path.join(dir, 'generations', old), { recursive: true, force: true });
    }
    this.materialised = plan.map(strip);
    return ok(this.materialised);
  }

  /** the merged set as last materialised, overridden policies included */
  documents(): MaterialisedPolicy[] {
    return this.materialised;
  }

  private matches(files: Array<{ file: string; content: string }>): boolean {
    try {
      if (!fs.lstatSync(this.policyDirectory).isSymbolicLink()) return false;
      const names = fs.readdirSync(this.policyDirectory).sort();
      const want = files.map((f) => f.file).sort();
      if (names.length !== want.length || names.some((n, i) => n !== want[i])) return false;
      return files.every((f) => fs.readFileSync(path.join(this.policyDirectory, f.file), 'utf8') === f.content);
    } catch {
      return false;
    }
  }
}

function readHistory(file: string): Record<string, Array<{ version: number; contentHash: string }>> {
  try {
    const h = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (h && typeof h === 'object' && !Array.isArray(h)) return h;
  } catch {
    // missing or damaged: only the replay/downgrade wording depends on it
  }
  return {};
}
