// Selector matching and workload resolution (agent/src/workloads.ts): pure,
// no kernel and no Docker.
import * as yaml from 'js-yaml';
import { compilePolicies } from '../../agent/src/policy/compiler';
import { formatPolicyError, parsePolicyText } from '../../agent/src/policy/loader';
import type { CompiledPolicySet, ContainerSelector } from '../../agent/src/policy/types';
import {
  containerIdentities,
  hostRulesOnly,
  resolveWorkloads,
  selectedContainers,
  selectorMatches,
  WorkloadBinding,
  WorkloadContainer,
} from '../../agent/src/workloads';

function container(over: Partial<WorkloadContainer> & { name: string }): WorkloadContainer {
  return { id: `id-${over.name}`, labels: {}, namespaceName: 'container_namespace', pid: 100, mntNs: 4026530001, pidNs: 4026530002, ...over };
}

function sel(over: Partial<ContainerSelector>): ContainerSelector {
  return { matchLabels: {}, matchExpressions: [], ...over };
}

describe('containerIdentities', () => {
  test('labels, then the container name and namespace as KubeArmor adds them', () => {
    const ids = containerIdentities({ name: 'web', labels: { app: 'x' }, namespaceName: 'edge' });
    expect([...ids.entries()]).toEqual([
      ['app', 'x'],
      ['kubearmor.io/container.name', 'web'],
      ['namespaceName', 'edge'],
    ]);
  });

  test('a kubearmor.io/container.name label wins over the Docker name', () => {
    const ids = containerIdentities({ name: 'web-1', labels: { 'kubearmor.io/container.name': 'web' }, namespaceName: 'n' });
    expect(ids.get('kubearmor.io/container.name')).toBe('web');
  });
});

describe('selectorMatches', () => {
  const web = container({ name: 'web-1', labels: { app: 'web', tier: 'front' } });

  test('matchLabels: every pair, exact values', () => {
    expect(selectorMatches(sel({ matchLabels: { app: 'web' } }), web)).toBe(true);
    expect(selectorMatches(sel({ matchLabels: { app: 'web', tier: 'front' } }), web)).toBe(true);
    expect(selectorMatches(sel({ matchLabels: { app: 'web', tier: 'back' } }), web)).toBe(false);
    expect(selectorMatches(sel({ matchLabels: { app: 'We' } }), web)).toBe(false);
    expect(selectorMatches(sel({ matchLabels: { missing: 'x' } }), web)).toBe(false);
    expect(selectorMatches(sel({ matchLabels: { namespaceName: 'container_namespace' } }), web)).toBe(true);
  });

  test('container name: anchored at the start, open at the end unless "$" (as KubeArmor matches it)', () => {
    expect(selectorMatches(sel({ containerName: 'web-1' }), web)).toBe(true);
    expect(selectorMatches(sel({ containerName: 'web' }), web)).toBe(true); // prefix, like KubeArmor
    expect(selectorMatches(sel({ containerName: 'web$' }), web)).toBe(false);
    expect(selectorMatches(sel({ containerName: '^web-[0-9]+$' }), web)).toBe(true);
    expect(selectorMatches(sel({ containerName: 'eb-1' }), web)).toBe(false); // not found in the middle
    expect(selectorMatches(sel({ containerName: '.*' }), web)).toBe(true);
    expect(selectorMatches(sel({ containerName: '*' }), web)).toBe(true);
    expect(selectorMatches(sel({ containerName: 'db|web' }), web)).toBe(true); // alternation stays anchored
    expect(selectorMatches(sel({ containerName: 'db|eb' }), web)).toBe(false);
  });

  test('container name and labels together: both must hold', () => {
    expect(selectorMatches(sel({ containerName: 'web', matchLabels: { app: 'web' } }), web)).toBe(true);
    expect(selectorMatches(sel({ containerName: 'web', matchLabels: { app: 'db' } }), web)).toBe(false);
  });

  test('matchExpressions: In needs one of the values, NotIn none; all expressions hold', () => {
    expect(selectorMatches(sel({ matchExpressions: [{ operator: 'In', values: ['app=db', 'app=web'] }] }), web)).toBe(true);
    expect(selectorMatches(sel({ matchExpressions: [{ operator: 'In', values: ['app=db'] }] }), web)).toBe(false);
    expect(selectorMatches(sel({ matchExpressions: [{ operator: 'NotIn', values: ['app=db'] }] }), web)).toBe(true);
    expect(selectorMatches(sel({ matchExpressions: [{ operator: 'NotIn', values: ['app=db', 'tier=front'] }] }), web)).toBe(false);
    expect(
      selectorMatches(
        sel({
          matchExpressions: [
            { operator: 'In', values: ['app=web'] },
            { operator: 'NotIn', values: ['tier=front'] },
          ],
        }),
        web,
      ),
    ).toBe(false);
    // values compare whole identities: "app=we" is not "app=web"
    expect(selectorMatches(sel({ matchExpressions: [{ operator: 'In', values: ['app=we'] }] }), web)).toBe(false);
    // the name identity takes part too (KubeArmor's container=ubuntu-1 style works on labels)
    expect(selectorMatches(sel({ matchExpressions: [{ operator: 'In', values: ['kubearmor.io/container.name=web-1'] }] }), web)).toBe(true);
  });

  test('an empty selector (which the compiler refuses) selects every container', () => {
    expect(selectorMatches(sel({}), web)).toBe(true);
  });
});

function compiled(docs: object[]): CompiledPolicySet {
  const text = docs.map((d) => yaml.dump(d)).join('---\n');
  const loaded = parsePolicyText(text, 'p.yaml');
  if (loaded.errors.length) throw new Error(loaded.errors.map(formatPolicyError).join('\n'));
  const r = compilePolicies(loaded.policies, { hostname: 'edge-1' });
  if (r.errors.length) throw new Error(r.errors.map((e) => e.message).join('\n'));
  return r.set;
}

const ksp = (name: string, selector: object, spec: object) => ({
  apiVersion: 'security.kubearmor.com/v1',
  kind: 'KubeArmorPolicy',
  metadata: { name },
  spec: { selector, ...spec },
});
const hsp = (name: string, spec: object) => ({
  apiVersion: 'security.kubearmor.com/v1',
  kind: 'KubeArmorHostPolicy',
  metadata: { name },
  spec: { nodeSelector: { matchLabels: { 'kubearmor.io/hostname': '*' } }, ...spec },
});

describe('resolveWorkloads', () => {
  const a = container({ id: 'aaa', name: 'a', labels: { app: 'web' }, pid: 11, mntNs: 4026531101, pidNs: 4026531102 });
  const b = container({ id: 'bbb', name: 'b', labels: { app: 'web' }, pid: 22, mntNs: 4026531201, pidNs: 4026531202 });
  const c = container({ id: 'ccc', name: 'c', labels: { app: 'db' }, pid: 33, mntNs: 4026531301, pidNs: 4026531302 });
  const set = compiled([
    hsp('host', { process: { matchPaths: [{ path: '/usr/bin/host-thing' }] } }),
    ksp('web', { matchLabels: { app: 'web' } }, { file: { matchPaths: [{ path: '/etc/secret' }] }, network: { matchProtocols: [{ protocol: 'udp' }] } }),
    ksp('only-c', { matchLabels: { 'kubearmor.io/container.name': 'c$' } }, { process: { matchPaths: [{ path: '/bin/x' }] } }),
  ]);

  test('host rules stay host rules; container rules get one copy per selected container; every container is a workload', () => {
    const r = resolveWorkloads(set, [c, b, a]);
    expect(r.pathRules.map((p) => [p.ruleId, (p.target as { path: string }).path, p.workload?.containerName ?? 'host'])).toEqual([
      [1, '/usr/bin/host-thing', 'host'],
      [2, '/etc/secret', 'a'],
      [2, '/etc/secret', 'b'],
      [4, '/bin/x', 'c'],
    ]);
    expect(r.networkRules.map((n) => [n.ruleId, n.protocol, n.workload?.containerName])).toEqual([
      [3, 'udp', 'a'],
      [3, 'udp', 'b'],
    ]);
    expect(r.pathRules[1].workload).toEqual({ mntNs: 4026531101, pidNs: 4026531102, pid: 11, containerId: 'aaa', containerName: 'a' });
    expect(r.workloads?.map((w) => w.containerName)).toEqual(['a', 'b', 'c']);
    expect(r.meta).toBe(set.meta);
    expect(selectedContainers(r)).toEqual(
      new Map([
        [2, ['a', 'b']],
        [3, ['a', 'b']],
        [4, ['c']],
      ]),
    );
  });

  test('without containers, container rules are in force nowhere and nothing is a workload', () => {
    const r = resolveWorkloads(set, []);
    expect(r.pathRules.map((p) => p.ruleId)).toEqual([1]);
    expect(r.networkRules).toEqual([]);
    expect(r.workloads).toEqual([]);
  });

  test('containers without usable namespaces are left out; one workload per mount namespace', () => {
    const broken = container({ id: 'ddd', name: 'd', labels: { app: 'web' }, mntNs: 0 });
    const twin = container({ id: 'zzz', name: 'twin', labels: { app: 'web' }, mntNs: a.mntNs, pid: 44 });
    const r = resolveWorkloads(set, [broken, twin, a]);
    expect(r.workloads?.map((w) => w.containerName)).toEqual(['a']);
    expect(r.networkRules.map((n) => n.workload?.containerName)).toEqual(['a']);
  });

  test('a rename changes what a name selector picks', () => {
    expect(resolveWorkloads(set, [c]).pathRules.map((p) => p.ruleId)).toEqual([1, 4]);
    expect(resolveWorkloads(set, [{ ...c, name: 'c-renamed' }]).pathRules.map((p) => p.ruleId)).toEqual([1]);
  });

  test('pure: the input set is not changed and the same input gives the same output', () => {
    const before = JSON.stringify([set.pathRules, set.networkRules]);
    const first = resolveWorkloads(set, [a, b, c]);
    const second = resolveWorkloads(set, [c, a, b]);
    expect(JSON.stringify([set.pathRules, set.networkRules])).toBe(before);
    expect(JSON.stringify([second.pathRules, second.networkRules, second.workloads])).toBe(
      JSON.stringify([first.pathRules, first.networkRules, first.workloads]),
    );
  });

  test('a resolved set resolved again keeps host rules free of a stale workload', () => {
    const r = resolveWorkloads(set, [a]);
    const poisoned = { ...r, pathRules: r.pathRules.map((p) => (p.ruleId === 1 ? { ...p, workload: r.workloads![0] } : p)) };
    expect(resolveWorkloads(poisoned, []).pathRules.find((p) => p.ruleId === 1)?.workload).toBeUndefined();
  });
});

describe('WorkloadBinding', () => {
  const set = compiled([ksp('web', { matchLabels: { app: 'web' } }, { network: { matchProtocols: [{ protocol: 'tcp' }] } })]);

  test('applies resolved sets, and re-resolves once per burst of container changes', async () => {
    let running: WorkloadContainer[] = [];
    const applied: CompiledPolicySet[] = [];
    const reapplied: number[] = [];
    const binding = new WorkloadBinding(
      (s) => {
        applied.push(s);
        return { errors: [], rules: s.pathRules.length + s.networkRules.length };
      },
      () => running,
      (r) => reapplied.push(r.rules),
    );
    binding.containersChanged(); // nothing applied yet: nothing to re-resolve
    await new Promise((r) => setImmediate(r));
    expect(applied).toHaveLength(0);

    expect(binding.apply(set).rules).toBe(0);
    running = [container({ id: 'x1', name: 'x', labels: { app: 'web' }, mntNs: 4026532001 })];
    binding.containersChanged();
    running = [...running, container({ id: 'y1', name: 'y', labels: { app: 'web' }, mntNs: 4026532002 })];
    binding.containersChanged();
    await new Promise((r) => setImmediate(r));
    expect(applied).toHaveLength(2);
    expect(reapplied).toEqual([2]);
    expect(applied[1].workloads?.map((w) => w.containerName)).toEqual(['x', 'y']);

    binding.close();
    binding.containersChanged();
    await new Promise((r) => setImmediate(r));
    expect(applied).toHaveLength(2);
  });
});

describe('hostRulesOnly', () => {
  test('keeps host rules and says which container policies are left out', () => {
    const set = compiled([
      hsp('host', { process: { matchPaths: [{ path: '/usr/bin/x' }] }, network: { matchProtocols: [{ protocol: 'udp', fromSource: [] }] } }),
      ksp('ctr', { matchLabels: { app: 'web' } }, { file: { matchPaths: [{ path: '/a' }, { path: '/b' }] } }),
    ]);
    const r = hostRulesOnly(set, 'audit-only');
    expect(r.set.pathRules.map((p) => p.ruleId)).toEqual([1]);
    expect(r.set.networkRules.map((p) => p.ruleId)).toEqual([2]);
    expect(r.errors).toEqual(['policy "ctr": 2 container rule(s) not enforced: the audit-only backend does not scope rules to containers yet']);
  });
});
