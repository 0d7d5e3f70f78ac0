import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AppliedPolicyStore, policyFileName, serializePolicy, specFingerprint } from '../../agent/src/control/applied_store';
import { applyPolicies, deletePolicies, listPolicies, PolicyHost } from '../../agent/src/control/policy_ops';
import { compilePolicies, formatCompileError } from '../../agent/src/policy/compiler';
import { LoadedPolicy, loadPolicyDirectories, parsePolicyText } from '../../agent/src/policy/loader';
import { hostProcessPolicy } from '../helpers/policies';

/** A host over real directories, loaded with the real loader and compiler; `refuse` makes a reload drop a policy. */
class FakeHost implements PolicyHost {
  accepted: LoadedPolicy[] = [];
  reloads = 0;
  refuse = new Set<string>();
  constructor(
    readonly operatorDir: string,
    readonly store: AppliedPolicyStore,
  ) {
    this.reload();
  }
  inForce = () => this.accepted;
  compileErrors = (ps: LoadedPolicy[]) => compilePolicies(ps, { hostname: 'node-1' }).errors.map(formatCompileError);
  reload() {
    this.reloads++;
    const dirs = [this.operatorDir, this.store.directory].filter((d) => fs.existsSync(d));
    const r = loadPolicyDirectories(dirs);
    const errors = r.errors.map((e) => `${e.file}: ${e.message}`);
    this.accepted = r.policies.filter((p) => {
      if (!this.refuse.has(p.name)) return true;
      errors.push(`policy "${p.name}": refused by the backend`);
      return false;
    });
    return { files: 0, policies: this.accepted.length, rules: this.accepted.length, errors, warnings: [] };
  }
  originOf = (file: string) => (path.dirname(file) === this.operatorDir ? ('operator' as const) : ('applied' as const));
}

let tmp: string;
let host: FakeHost;
let store: AppliedPolicyStore;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-ops-'));
  fs.mkdirSync(path.join(tmp, 'operator'));
  store = new AppliedPolicyStore(path.join(tmp, 'state', 'policies'));
  host = new FakeHost(path.join(tmp, 'operator'), store);
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

const file = (source: string, text: string) => ({ source, text });

describe('applied policy store', () => {
  test('file names are unique per (kind, namespace, name) and refuse anything but DNS names', () => {
    expect(policyFileName({ kind: 'KubeArmorHostPolicy', name: 'a.b' })).toBe('hostpolicy_a.b.yaml');
    expect(policyFileName({ kind: 'KubeArmorPolicy', namespace: 'ns', name: 'a' })).toBe('policy_ns_a.yaml');
    expect(() => policyFileName({ kind: 'KubeArmorHostPolicy', name: '../x' })).toThrow(/not a DNS-1123 name/);
    expect(() => policyFileName({ kind: 'KubeArmorPolicy', namespace: 'a_b', name: 'x' })).toThrow(/not a DNS-1123 name/);
  });

  test('the stored form loads back as the same policy', () => {
    const p = parsePolicyText(hostProcessPolicy('p', ['/usr/bin/nc', '/usr/bin/curl']), 'in.yaml').policies[0]!;
    const text = serializePolicy(p, 'applied\nwith a newline');
    expect(text.split('\n')[0]).toBe('# applied with a newline');
    const back = parsePolicyText(text, 'stored.yaml');
    expect(back.errors).toEqual([]);
    expect(specFingerprint(back.policies[0]!)).toBe(specFingerprint(p));
  });
});

describe('applyPolicies', () => {
  test('creates, then replaces, then leaves unchanged; files are 0600 in a 0700 directory', () => {
    const r1 = applyPolicies(host, store, [file('/ops/a.yaml', hostProcessPolicy('a', ['/usr/bin/nc']))], 'test');
    expect(r1.ok && r1.value.applied.map((a) => a.change)).toEqual(['created']);
    expect(fs.statSync(store.directory).mode & 0o777).toBe(0o700);
    const stored = store.fileOf({ kind: 'KubeArmorHostPolicy', name: 'a' });
    expect(fs.statSync(stored).mode & 0o777).toBe(0o600);
    expect(listPolicies(host)).toEqual([{ name: 'a', kind: 'KubeArmorHostPolicy', action: 'Block', origin: 'applied', file: stored }]);

    const r2 = applyPolicies(host, store, [file('/ops/a.yaml', hostProcessPolicy('a', ['/usr/bin/curl']))], 'test');
    expect(r2.ok && r2.value.applied.map((a) => a.change)).toEqual(['replaced']);
    expect(host.accepted[0]!.spec.process?.matchPaths?.[0]?.path).toBe('/usr/bin/curl');
    const r3 = applyPolicies(host, store, [file('/ops/a.yaml', hostProcessPolicy('a', ['/usr/bin/curl']))], 'test');
    expect(r3.ok && r3.value.applied.map((a) => a.change)).toEqual(['unchanged']);
    // no temporary files left behind
    expect(fs.readdirSync(store.directory)).toEqual(['hostpolicy_a.yaml']);
  });

  test('an invalid document refuses the whole request with the loader message; nothing is written', () => {
    const bad = hostProcessPolicy('b', ['usr/bin/nc']);
    const r = applyPolicies(host, store, [file('/ops/good.yaml', hostProcessPolicy('a', ['/usr/bin/nc'])), file('/ops/bad.yaml', bad)], 'test');
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe('invalid-policy');
      expect(r.error.details).toEqual([expect.stringMatching(/^\/ops\/bad\.yaml: document 1: spec\.process\.matchPaths\[0\]\.path: /)]);
    }
    expect(fs.existsSync(store.directory)).toBe(false);
    expect(host.reloads).toBe(1);
  });

  test('a name used by the operator directory is a conflict naming that file', () => {
    fs.writeFileSync(path.join(host.operatorDir, 'mine.yaml'), hostProcessPolicy('a', ['/usr/bin/nc']));
    host.reload();
    const r = applyPolicies(host, store, [file('/ops/a.yaml', hostProcessPolicy('a', ['/usr/bin/curl']))], 'test');
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe('conflict');
      expect(r.error.details![0]).toContain(`"a" is already in force from ${path.join(host.operatorDir, 'mine.yaml')} (operator)`);
    }
  });

  test('the same policy twice in one request is refused', () => {
    const r = applyPolicies(host, store, [file('/ops/1.yaml', hostProcessPolicy('a', ['/x'])), file('/ops/2.yaml', hostProcessPolicy('a', ['/y']))], 'test');
    expect(!r.ok && r.error.details![0]).toMatch(/^\/ops\/2\.yaml: document 1: metadata\.name: KubeArmorHostPolicy a is also defined in \/ops\/1\.yaml document 1$/);
  });

  test('refused at reload: the previous version is put back and reloaded', () => {
    applyPolicies(host, store, [file('/ops/a.yaml', hostProcessPolicy('a', ['/usr/bin/nc']))], 'test');
    const before = fs.readFileSync(store.fileOf({ kind: 'KubeArmorHostPolicy', name: 'a' }), 'utf8');
    host.refuse.add('a');
    const r = applyPolicies(host, store, [file('/ops/a.yaml', hostProcessPolicy('a', ['/usr/bin/curl']))], 'test');
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe('refused');
      expect(r.error.details).toEqual(['policy "a": refused by the backend']);
    }
    expect(fs.readFileSync(store.fileOf({ kind: 'KubeArmorHostPolicy', name: 'a' }), 'utf8')).toBe(before);
    // a new policy refused at reload leaves no file
    host.refuse.add('n');
    expect(applyPolicies(host, store, [file('/ops/n.yaml', hostProcessPolicy('n', ['/usr/bin/nc']))], 'test').ok).toBe(false);
    expect(fs.existsSync(store.fileOf({ kind: 'KubeArmorHostPolicy', name: 'n' }))).toBe(false);
  });
});

describe('deletePolicies', () => {
  test('removes applied policies; refuses names from elsewhere or unknown, deleting nothing', () => {
    applyPolicies(host, store, [file('/ops/a.yaml', hostProcessPolicy('a', ['/x']) + '---\n' + hostProcessPolicy('b', ['/y']))], 'test');
    fs.writeFileSync(path.join(host.operatorDir, 'op.yaml'), hostProcessPolicy('op', ['/z']));
    host.reload();

    const mixed = deletePolicies(host, store, ['a', 'op']);
    expect(mixed.ok).toBe(false);
    if (!mixed.ok) {
      expect(mixed.error.code).toBe('conflict');
      expect(mixed.error.details).toEqual([`"op" comes from ${path.join(host.operatorDir, 'op.yaml')} (operator), not from policy apply; remove it there`]);
    }
    expect(host.accepted.map((p) => p.name).sort()).toEqual(['a', 'b', 'op']);
    const unknown = deletePolicies(host, store, ['nope']);
    expect(!unknown.ok && unknown.error.code).toBe('not-found');

    const r = deletePolicies(host, store, ['a']);
    expect(r.ok && r.value.deleted.map((d) => d.name)).toEqual(['a']);
    expect(host.accepted.map((p) => p.name).sort()).toEqual(['b', 'op']);
    expect(fs.readdirSync(store.directory)).toEqual(['hostpolicy_b.yaml']);
  });
});
