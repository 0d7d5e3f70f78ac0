// How resolved rules reach the compat enforcers (agent/src/file_enforcer.ts):
// container copies carry their workload and root, host rules workload 0n.
import { Action } from '../../agent/src/abi';
import { toNativeFileRules, toNativeWorkloads } from '../../agent/src/file_enforcer';
import type { PathRule, WorkloadTarget } from '../../agent/src/policy/types';

const box: WorkloadTarget = { mntNs: 4026532100, pidNs: 4026532101, pid: 4242, containerId: 'c0ffee', containerName: 'box' };
const rule = (over: Partial<PathRule>): PathRule => ({
  ruleId: 1,
  action: 'Block',
  operation: 'File',
  target: { kind: 'path', path: '/etc/cred' },
  readOnly: false,
  ownerOnly: false,
  fromSource: [],
  ...over,
});

describe('toNativeFileRules with workloads', () => {
  test('host rules: workload 0n, no root; container copies: their workload and the root to resolve paths in', () => {
    const out = toNativeFileRules([
      rule({ ruleId: 1, scope: { kind: 'host' } }),
      rule({ ruleId: 2, workload: box, fromSource: [{ kind: 'path', path: '/usr/bin/reader' }] }),
    ]);
    expect(out.errors).toEqual([]);
    expect(out.rules).toEqual([
      expect.objectContaining({ ruleId: 1, action: Action.Block, path: '/etc/cred', workloads: [0n] }),
      expect.objectContaining({ ruleId: 2, workloads: [4026532100n], root: { pid: 4242, mntNs: 4026532100 }, sources: ['/usr/bin/reader'] }),
    ]);
    expect(out.rules[0]).not.toHaveProperty('root');
  });

  test('an unresolved container rule is refused (it would apply to the host); errors name the container', () => {
    const out = toNativeFileRules([
      rule({ ruleId: 3, scope: { kind: 'containers', selector: { matchLabels: { app: 'x' }, matchExpressions: [] } } }),
      rule({ ruleId: 4, workload: { ...box, pid: 0 } }),
      rule({ ruleId: 5, workload: box, target: { kind: 'path', path: 'relative' } }),
    ]);
    expect(out.rules).toEqual([]);
    expect(out.errors).toEqual([
      'file rule 3 (#0): a container rule not resolved to a container; not enforced',
      'file rule 4 (#1, container box): container box has no usable mount namespace or pid; not enforced',
      'file rule 5 (#2, container box): target relative is not absolute',
    ]);
  });

  test('workloads for the native tables: id = mount namespace inode', () => {
    expect(toNativeWorkloads([box])).toEqual([{ workload: 4026532100n, mntNs: 4026532100, pidNs: 4026532101 }]);
  });
});
