// How resolved rules reach the compat enforcers (agent/src/file_enforcer.ts):
// container copies carry their workload and root, host rules workload 0n.
import { Action } from '../../agent/src/abi';
import { toNativeFilePolicies, toNativeFileRules, toNativeWorkloads } from '../../agent/src/file_enforcer';
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

describe('allow-list, patterns and execname for the fanotify enforcer', () => {
  test('Allow is action 3; patterns expand their braces into one native rule each on path "/"; execname likewise', () => {
    const out = toNativeFileRules([
      rule({ ruleId: 1, action: 'Allow' }),
      rule({ ruleId: 2, target: { kind: 'pattern', pattern: '/etc/{a,b}*.key' } }),
      rule({ ruleId: 3, operation: 'Process', target: { kind: 'execname', name: 'nc' } }),
    ]);
    expect(out.errors).toEqual([]);
    expect(out.rules.map((r) => [r.ruleId, r.action, r.path, r.pattern, r.execName])).toEqual([
      [1, Action.Allow, '/etc/cred', undefined, undefined],
      [2, Action.Block, '/', '/etc/a*.key', undefined],
      [2, Action.Block, '/', '/etc/b*.key', undefined],
      [3, Action.Block, '/', undefined, 'nc'],
    ]);
  });

  test('bad patterns and execname on a file rule are refused with the rule named', () => {
    const out = toNativeFileRules([
      rule({ ruleId: 4, target: { kind: 'pattern', pattern: '/etc/{a' } }),
      rule({ ruleId: 5, target: { kind: 'execname', name: 'nc' } }),
    ]);
    expect(out.rules).toEqual([]);
    expect(out.errors).toEqual([
      'file rule 4 (#0): pattern "/etc/{a" has "{" without "}" at position 5; not enforced',
      'file rule 5 (#1): execname must be a file name on a process rule; not enforced',
    ]);
  });

  test('policies: postures per workload, coverage for allow-lists and for pattern/execname rules', () => {
    const rules = [
      rule({ ruleId: 1, operation: 'Process', target: { kind: 'pattern', pattern: '/tmp/*' } }),
      rule({ ruleId: 2, workload: box, target: { kind: 'pattern', pattern: '/etc/*' } }),
      // unresolved container rule: no coverage anywhere
      rule({ ruleId: 3, target: { kind: 'pattern', pattern: '/x/*' }, scope: { kind: 'containers', selector: { matchLabels: {}, matchExpressions: [] } } }),
    ];
    const policies = toNativeFilePolicies(
      rules,
      [
        { postures: { file: { ruleId: 9, category: 'file', action: 'Block', scopeKind: 'host' } } },
        { workload: box, postures: { process: { ruleId: 10, category: 'process', action: 'Audit', scopeKind: 'containers' } } },
      ],
      { hostCoverageMounts: ['/mnt/t'] },
    );
    expect(policies).toEqual([
      { workload: 0n, coverExec: true, coverOpen: true, openPosture: { ruleId: 9, action: Action.Block }, mounts: ['/mnt/t'] },
      {
        workload: 4026532100n,
        coverExec: true,
        coverOpen: true,
        execPosture: { ruleId: 10, action: Action.Audit },
        root: { pid: 4242, mntNs: 4026532100 },
      },
    ]);
    expect(toNativeFilePolicies([rule({ ruleId: 1 })], [])).toEqual([]);
  });
});
