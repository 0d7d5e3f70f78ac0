import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BundleDocument, BundleTarget, generateSigningKeyPair, parsePublicKey, PinnedKey, policiesOf, signBundle, SigningKey, verifyBundle } from '../../agent/src/hub/bundle';
import { PolicyStore, PolicyStoreOptions } from '../../agent/src/hub/policy_store';
import { loadPolicyDirectory } from '../../agent/src/policy/loader';
import { hostProcessPolicy } from '../helpers/policies';

const pair = generateSigningKeyPair();
const signing: SigningKey = { keyId: pair.keyId, key: crypto.createPrivateKey(pair.privateKeyPem) };
const pinnedR = parsePublicKey(pair.publicKeyPem, 'hub.pub');
if (!pinnedR.ok) throw new Error('key');
const pinned: PinnedKey = pinnedR.value;

function storeOptions(dir: string, groups = ['cams', 'all']): PolicyStoreOptions {
  return { directory: dir, org: 'acme', node: 'n1', groups, keys: [pinned], maxBundleBytes: 1 << 20 };
}

function openStore(o: PolicyStoreOptions) {
  const r = PolicyStore.open(o);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

function accept(store: PolicyStore, target: BundleTarget, version: number, documents: BundleDocument[]): Buffer {
  const raw = signBundle({ org: 'acme', target, version, documents }, signing);
  const v = verifyBundle(raw, [pinned]);
  if (!v.ok) throw new Error(v.error.message);
  const p = policiesOf(v.value.payload);
  if (!p.ok) throw new Error(p.error.message);
  const r = store.accept({ payload: v.value.payload, keyId: v.value.keyId, documents: p.value }, raw);
  if (!r.ok) throw new Error(r.error.message);
  const m = store.materialise();
  if (!m.ok) throw new Error(m.error.message);
  return raw;
}

const pathsIn = (dir: string) =>
  Object.fromEntries(loadPolicyDirectory(dir).policies.map((p) => [p.name, p.spec.process?.matchPaths?.[0].path]));

describe('hub policy store', () => {
  test('a fresh store materialises an empty policy directory the loader reads without errors', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-store-'));
    const { store, problems } = openStore(storeOptions(dir));
    expect(problems).toEqual([]);
    expect(fs.lstatSync(store.policyDirectory).isSymbolicLink()).toBe(true);
    expect(loadPolicyDirectory(store.policyDirectory)).toEqual({ policies: [], errors: [] });
  });

  test('node-specific policies override group ones of the same name; earlier groups override later ones', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-store-'));
    const { store } = openStore(storeOptions(dir));
    accept(store, { scope: 'group', name: 'all' }, 1, [{ name: 'base.yaml', yaml: hostProcessPolicy('shared', ['/usr/bin/from-all']) + '---\n' + hostProcessPolicy('only-all', ['/usr/bin/all']) }]);
    accept(store, { scope: 'group', name: 'cams' }, 1, [{ name: 'cams.yaml', yaml: hostProcessPolicy('shared', ['/usr/bin/from-cams']) }]);
    expect(pathsIn(store.policyDirectory)).toEqual({ shared: '/usr/bin/from-cams', 'only-all': '/usr/bin/all' });
    accept(store, { scope: 'node', name: 'n1' }, 7, [{ name: 'mine.yaml', yaml: hostProcessPolicy('shared', ['/usr/bin/from-node']) }]);
    const loaded = loadPolicyDirectory(store.policyDirectory);
    expect(loaded.errors).toEqual([]);
    expect(pathsIn(store.policyDirectory)).toEqual({ shared: '/usr/bin/from-node', 'only-all': '/usr/bin/all' });
    const docs = store.documents();
    expect(docs.filter((d) => d.policy === 'KubeArmorHostPolicy/shared').map((d) => [d.scope.name, d.overriddenBy?.name])).toEqual([
      ['n1', undefined],
      ['cams', 'n1'],
      ['all', 'n1'],
    ]);
    expect(store.inForce({ scope: 'node', name: 'n1' })).toEqual({ version: 7, contentHash: expect.stringMatching(/^sha256:/) });
  });

  test('a restart restores the last good set from disk, untouched when intact and rewritten when not', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-store-'));
    const first = openStore(storeOptions(dir)).store;
    accept(first, { scope: 'node', name: 'n1' }, 3, [{ name: 'a.yaml', yaml: hostProcessPolicy('a', ['/usr/bin/a']) }]);
    const generation = fs.readlinkSync(first.policyDirectory);
    const again = openStore(storeOptions(dir));
    expect(again.problems).toEqual([]);
    expect(fs.readlinkSync(again.store.policyDirectory)).toBe(generation);
    expect(again.store.inForce({ scope: 'node', name: 'n1' })?.version).toBe(3);
    expect(again.store.seenBefore({ scope: 'node', name: 'n1' }, 3, again.store.inForce({ scope: 'node', name: 'n1' })!.contentHash)).toBe(true);
    // someone deletes a materialised file: the next start writes the set again
    for (const f of fs.readdirSync(first.policyDirectory)) fs.rmSync(path.join(first.policyDirectory, f));
    const repaired = openStore(storeOptions(dir)).store;
    expect(pathsIn(repaired.policyDirectory)).toEqual({ a: '/usr/bin/a' });
    expect(fs.readdirSync(path.join(dir, 'generations'))).toHaveLength(1);
  });

  test('a damaged stored bundle is not used and is named; the others still apply', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-store-'));
    const s = openStore(storeOptions(dir)).store;
    accept(s, { scope: 'node', name: 'n1' }, 3, [{ name: 'a.yaml', yaml: hostProcessPolicy('a', ['/usr/bin/a']) }]);
    accept(s, { scope: 'group', name: 'cams' }, 2, [{ name: 'c.yaml', yaml: hostProcessPolicy('c', ['/usr/bin/c']) }]);
    const file = path.join(dir, 'bundles', 'group.cams.bundle');
    fs.writeFileSync(file, fs.readFileSync(file).subarray(0, 100));
    const { store, problems } = openStore(storeOptions(dir));
    expect(problems).toHaveLength(1);
    expect(problems[0].error.message).toMatch(/group\.cams\.bundle: stored group cams bundle not used/);
    expect(pathsIn(store.policyDirectory)).toEqual({ a: '/usr/bin/a' });
  });

  test('a group the node left no longer contributes policies', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-store-'));
    const s = openStore(storeOptions(dir)).store;
    accept(s, { scope: 'group', name: 'cams' }, 2, [{ name: 'c.yaml', yaml: hostProcessPolicy('c', ['/usr/bin/c']) }]);
    const { store } = openStore(storeOptions(dir, ['all']));
    expect(pathsIn(store.policyDirectory)).toEqual({});
  });
});
