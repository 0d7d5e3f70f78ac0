import type { LoadedPolicy, PolicyError } from '../../agent/src/policy/loader';
import { mergeWithLastGood } from '../../agent/src/policy/last_good';

function policy(name: string, source: string, marker = ''): LoadedPolicy {
  return { kind: 'KubeArmorHostPolicy', name, spec: { message: marker } as LoadedPolicy['spec'], source, documentIndex: 0, line: 1 };
}
const broken = (file: string): PolicyError => ({ file, documentIndex: 0, path: 'spec', message: 'bad' });
const exists = () => true;

describe('mergeWithLastGood', () => {
  test('a file broken on reload keeps its previous policies', () => {
    const prev = [policy('a', '/p/a.yaml', 'old'), policy('b', '/p/b.yaml')];
    const r = mergeWithLastGood([policy('b', '/p/b.yaml')], [broken('/p/a.yaml')], new Set(), prev, exists);
    expect(r.policies.map((p) => p.name).sort()).toEqual(['a', 'b']);
    expect(r.policies.find((p) => p.name === 'a')!.spec.message).toBe('old');
    expect(r.kept).toEqual(['/p/a.yaml: policy "a": keeping the last good version until the file is fixed']);
  });

  test('a policy the compiler refuses now falls back to its previous version', () => {
    const prev = [policy('a', '/p/a.yaml', 'old')];
    const r = mergeWithLastGood([policy('a', '/p/a.yaml', 'new')], [], new Set(['a']), prev, exists);
    expect(r.policies.map((p) => p.spec.message)).toEqual(['old']);
  });

  test('a removed file, or a policy removed from a good file, is dropped', () => {
    const prev = [policy('a', '/p/a.yaml'), policy('c', '/p/b.yaml')];
    expect(mergeWithLastGood([], [], new Set(), prev, (f) => f !== '/p/a.yaml').policies).toEqual([]);
  });

  test('new versions replace old ones', () => {
    const r = mergeWithLastGood([policy('a', '/p/a.yaml', 'new')], [], new Set(), [policy('a', '/p/a.yaml', 'old')], exists);
    expect(r.policies.map((p) => p.spec.message)).toEqual(['new']);
    expect(r.kept).toEqual([]);
  });
});
