// fromSource dir on bpf-lsm, the pure part: rules sourced by a directory
// become entries keyed by the directory's inode (srcKind Dir or Tree), the
// target's any-source entry says the kernel must walk the executable's
// directories (hasDirSourced), and a Deep entry holds the Block/Audit
// verdicts an executable too deep to walk gets (fail-safe; never Allow).
import { Action, ProtoClass } from '../../agent/src/abi';
import { LsmResolvers, LsmSrcKind, lsmVariant, LsmMatch, TargetInode, toLsmRuleSet } from '../../agent/src/lsm_enforcer';
import type { NetworkRule, PathRule } from '../../agent/src/policy/types';

const FILES: Record<string, TargetInode> = {
  '/data/secret': { dev: 0x800001n, ino: 11n, isDir: false },
  '/data': { dev: 0x800001n, ino: 10n, isDir: true },
  '/opt/app': { dev: 0x800002n, ino: 50n, isDir: true },
  '/opt/app/tool': { dev: 0x800002n, ino: 51n, isDir: false },
};
const EXES: Record<string, { dev: bigint; ino: bigint }> = { '/usr/bin/a': { dev: 0x800001n, ino: 101n } };
const resolvers: LsmResolvers = {
  target: (p) => {
    const t = FILES[p.replace(/(.)\/$/, '$1')];
    if (!t) throw new Error(`cannot stat ${p} (ENOENT)`);
    return t;
  },
  source: (p) => {
    const e = EXES[p];
    if (!e) throw new Error(`cannot stat ${p} (ENOENT)`);
    return e;
  },
};

function fileRule(ruleId: number, over: Partial<PathRule> = {}): PathRule {
  return { ruleId, action: 'Block', operation: 'File', target: { kind: 'path', path: '/data/secret' }, readOnly: false, ownerOnly: false, fromSource: [], ...over };
}

describe('toLsmRuleSet: fromSource dir', () => {
  test('a dir source is keyed by the directory inode; recursive gives Tree; the any-source entry asks for the walk; Deep holds Block', () => {
    const set = toLsmRuleSet(
      [
        fileRule(1, { fromSource: [{ kind: 'dir', path: '/opt/app/', recursive: false }] }),
        fileRule(2, { action: 'Audit', readOnly: true, fromSource: [{ kind: 'dir', path: '/opt/app/', recursive: true }] }),
      ],
      [],
      resolvers,
    );
    expect(set.errors).toEqual([]);
    const byKind = (k: LsmSrcKind | undefined) => set.paths.filter((p) => p.srcKind === k);
    const any = byKind(undefined);
    expect(any).toHaveLength(1);
    expect(any[0]).toMatchObject({ srcDev: 0n, srcIno: 0n, hasSourced: false, hasDirSourced: true });
    const dir = byKind(LsmSrcKind.Dir);
    expect(dir).toHaveLength(1);
    expect(dir[0]).toMatchObject({ dev: 0x800001n, ino: 11n, srcDev: 0x800002n, srcIno: 50n });
    expect(dir[0].verdicts[lsmVariant(LsmMatch.Exact, false, false)]).toEqual({ ruleId: 1, action: Action.Block });
    const tree = byKind(LsmSrcKind.Tree);
    expect(tree).toHaveLength(1);
    expect(tree[0].verdicts[lsmVariant(LsmMatch.Exact, true, false)]).toEqual({ ruleId: 2, action: Action.Audit });
    const deep = byKind(LsmSrcKind.Deep);
    expect(deep).toHaveLength(1);
    expect(deep[0]).toMatchObject({ srcDev: 0n, srcIno: 0n });
    expect(deep[0].verdicts[lsmVariant(LsmMatch.Exact, false, false)]).toEqual({ ruleId: 1, action: Action.Block });
    expect(deep[0].verdicts[lsmVariant(LsmMatch.Exact, true, false)]).toEqual({ ruleId: 2, action: Action.Audit });
    // a replaced source directory is a new inode: watched
    expect(set.watchPaths).toContain('/opt/app/');
  });

  test('Allow sourced by a dir: a bit on the dir entry, nothing in Deep (too deep to place is allowed by none)', () => {
    const set = toLsmRuleSet([fileRule(1, { action: 'Allow', fromSource: [{ kind: 'dir', path: '/opt/app/', recursive: true }] })], [], resolvers);
    expect(set.errors).toEqual([]);
    const tree = set.paths.find((p) => p.srcKind === LsmSrcKind.Tree)!;
    expect(tree.allowVariants).toBe(1 << lsmVariant(LsmMatch.Exact, false, false));
    expect(set.paths.some((p) => p.srcKind === LsmSrcKind.Deep)).toBe(false);
  });

  test('executable and dir sources of one rule: both kinds of entries, both flags', () => {
    const set = toLsmRuleSet(
      [fileRule(1, { fromSource: [{ kind: 'path', path: '/usr/bin/a' }, { kind: 'dir', path: '/opt/app/', recursive: false }] })],
      [],
      resolvers,
    );
    expect(set.errors).toEqual([]);
    const any = set.paths.find((p) => p.srcIno === 0n && p.srcKind === undefined)!;
    expect(any.hasSourced).toBe(true);
    expect(any.hasDirSourced).toBe(true);
    expect(set.paths.find((p) => p.srcIno === 101n)!.srcKind).toBeUndefined();
  });

  test('a dir source that is not a directory, or missing, is named and never widens the rule to every process', () => {
    const set = toLsmRuleSet(
      [
        fileRule(1, { fromSource: [{ kind: 'dir', path: '/opt/app/tool', recursive: false }] }),
        fileRule(2, { fromSource: [{ kind: 'dir', path: '/nope/', recursive: true }] }),
      ],
      [],
      resolvers,
    );
    expect(set.errors).toEqual([
      'file rule 1 (#0): fromSource dir /opt/app/tool is not enforced: not a directory',
      'file rule 1 (#0): no usable fromSource entry; rule not enforced',
      'file rule 2 (#1): fromSource dir /nope/ is not enforced: cannot stat /nope/ (ENOENT)',
      'file rule 2 (#1): no usable fromSource entry; rule not enforced',
    ]);
    expect(set.paths).toEqual([]);
  });

  test('pattern rules with a dir source are refused (not matched by the kernel pattern path)', () => {
    const set = toLsmRuleSet(
      [fileRule(1, { target: { kind: 'pattern', pattern: '/data/*' }, fromSource: [{ kind: 'dir', path: '/opt/app/', recursive: false }] })],
      [],
      resolvers,
    );
    expect(set.errors[0]).toMatch(/fromSource dir \/opt\/app\/ is not enforced by bpf-lsm on pattern rules/);
    expect(set.patterns).toBeUndefined();
  });

  test('network: a dir entry per source, and a Deep entry for Block/Audit only', () => {
    const net = (ruleId: number, action: NetworkRule['action'], recursive: boolean): NetworkRule => ({
      ruleId,
      action,
      operation: 'Network',
      protocol: 'udp',
      fromSource: [{ kind: 'dir', path: '/opt/app/', recursive }],
    });
    const set = toLsmRuleSet([], [net(1, 'Block', false), net(2, 'Allow', true)], resolvers);
    expect(set.errors).toEqual([]);
    expect(set.net).toEqual([
      { ruleId: 1, action: Action.Block, protoClass: ProtoClass.Udp, workload: 0n, srcDev: 0x800002n, srcIno: 50n, srcKind: LsmSrcKind.Dir },
      { ruleId: 1, action: Action.Block, protoClass: ProtoClass.Udp, workload: 0n, srcDev: 0n, srcIno: 0n, srcKind: LsmSrcKind.Deep },
      { ruleId: 2, action: Action.Allow, protoClass: ProtoClass.Udp, workload: 0n, srcDev: 0x800002n, srcIno: 50n, srcKind: LsmSrcKind.Tree },
    ]);
  });
});
