// Pure parts of the bpf-lsm enforcer: compiled rules -> inode-keyed kernel
// entries (verdict slots, sources, merging, errors), target resolution
// against a mount table.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Action, ProtoClass } from '../../agent/src/abi';
import {
  LSM_OP_FILE,
  LSM_OP_PROCESS,
  LSM_VARIANTS,
  LsmMatch,
  LsmResolvers,
  lsmPinDir,
  lsmVariant,
  NativeLsmPathEntry,
  PIN_ROOT,
  resolveTargetInode,
  TargetInode,
  toLsmRuleSet,
  unloadPinnedLsm,
} from '../../agent/src/lsm_enforcer';
import type { MountEntry } from '../../agent/src/net_enforcer';
import type { NetworkRule, PathRule } from '../../agent/src/policy/types';

const FILES: Record<string, TargetInode> = {
  '/data/secret': { dev: 0x800001n, ino: 11n, isDir: false },
  '/data/other': { dev: 0x800001n, ino: 12n, isDir: false },
  '/data': { dev: 0x800001n, ino: 10n, isDir: true },
  '/usr/bin/tool': { dev: 0x800001n, ino: 20n, isDir: false },
};
const EXES: Record<string, { dev: bigint; ino: bigint }> = {
  '/usr/bin/a': { dev: 0x800001n, ino: 101n },
  '/usr/bin/b': { dev: 0x800001n, ino: 102n },
};
const resolvers: LsmResolvers = {
  target: (p) => {
    const t = FILES[p];
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
  return {
    ruleId,
    action: 'Block',
    operation: 'File',
    target: { kind: 'path', path: '/data/secret' },
    readOnly: false,
    ownerOnly: false,
    fromSource: [],
    ...over,
  };
}

function netRule(ruleId: number, over: Partial<NetworkRule> = {}): NetworkRule {
  return { ruleId, action: 'Block', operation: 'Network', protocol: 'udp', fromSource: [], ...over };
}

/** The verdicts of an entry that are set, as {variant: [ruleId, action]}. */
function setVerdicts(e: NativeLsmPathEntry): Record<number, [number, number]> {
  const out: Record<number, [number, number]> = {};
  e.verdicts.forEach((v, i) => {
    if (v.action !== 0) out[i] = [v.ruleId, v.action];
  });
  return out;
}

describe('lsmVariant', () => {
  test('match * 4 + readOnly * 2 + ownerOnly, within the kernel array', () => {
    expect(lsmVariant(LsmMatch.Exact, false, false)).toBe(0);
    expect(lsmVariant(LsmMatch.Exact, false, true)).toBe(1);
    expect(lsmVariant(LsmMatch.Exact, true, false)).toBe(2);
    expect(lsmVariant(LsmMatch.Child, false, false)).toBe(4);
    expect(lsmVariant(LsmMatch.Recursive, true, true)).toBe(11);
    expect(lsmVariant(LsmMatch.Recursive, true, true)).toBeLessThan(LSM_VARIANTS);
  });
});

describe('toLsmRuleSet: path rules', () => {
  test('an exact file rule is one any-source entry with the exact verdict', () => {
    const set = toLsmRuleSet([fileRule(5)], [], resolvers);
    expect(set.errors).toEqual([]);
    expect(set.paths).toHaveLength(1);
    const e = set.paths[0];
    expect(e).toMatchObject({ workload: 0n, op: LSM_OP_FILE, dev: 0x800001n, ino: 11n, srcDev: 0n, srcIno: 0n, hasSourced: false });
    expect(e.verdicts).toHaveLength(LSM_VARIANTS);
    expect(setVerdicts(e)).toEqual({ 0: [5, Action.Block] });
    expect(set.watchPaths).toEqual(['/data/secret']);
  });

  test('readOnly and ownerOnly pick their slot; process rules use op 1', () => {
    const set = toLsmRuleSet(
      [fileRule(1, { readOnly: true, ownerOnly: true, action: 'Audit' }), fileRule(2, { operation: 'Process', target: { kind: 'path', path: '/usr/bin/tool' } })],
      [],
      resolvers,
    );
    expect(set.errors).toEqual([]);
    const file = set.paths.find((p) => p.op === LSM_OP_FILE)!;
    expect(setVerdicts(file)).toEqual({ [lsmVariant(LsmMatch.Exact, true, true)]: [1, Action.Audit] });
    const proc = set.paths.find((p) => p.op === LSM_OP_PROCESS)!;
    expect(proc.ino).toBe(20n);
    expect(setVerdicts(proc)).toEqual({ 0: [2, Action.Block] });
  });

  test('directory rules: child for non-recursive, recursive otherwise, on the directory inode', () => {
    const set = toLsmRuleSet(
      [
        fileRule(1, { target: { kind: 'dir', path: '/data', recursive: false } }),
        fileRule(2, { target: { kind: 'dir', path: '/data', recursive: true }, action: 'Audit' }),
      ],
      [],
      resolvers,
    );
    expect(set.errors).toEqual([]);
    expect(set.paths).toHaveLength(1);
    expect(set.paths[0].ino).toBe(10n);
    expect(setVerdicts(set.paths[0])).toEqual({ 4: [1, Action.Block], 8: [2, Action.Audit] });
  });

  test('two rules in one slot: Block wins over Audit whatever the order; equal actions keep the first', () => {
    const a = toLsmRuleSet([fileRule(1, { action: 'Audit' }), fileRule(2, { action: 'Block' })], [], resolvers);
    expect(setVerdicts(a.paths[0])).toEqual({ 0: [2, Action.Block] });
    const b = toLsmRuleSet([fileRule(1, { action: 'Block' }), fileRule(2, { action: 'Audit' })], [], resolvers);
    expect(setVerdicts(b.paths[0])).toEqual({ 0: [1, Action.Block] });
    const c = toLsmRuleSet([fileRule(3), fileRule(4)], [], resolvers);
    expect(setVerdicts(c.paths[0])).toEqual({ 0: [3, Action.Block] });
  });

  test('fromSource: one entry per source executable plus an any-source entry marked hasSourced', () => {
    const set = toLsmRuleSet(
      [fileRule(7, { fromSource: [{ kind: 'path', path: '/usr/bin/a' }, { kind: 'path', path: '/usr/bin/b' }] })],
      [],
      resolvers,
    );
    expect(set.errors).toEqual([]);
    const any = set.paths.filter((p) => p.srcIno === 0n);
    const sourced = set.paths.filter((p) => p.srcIno !== 0n);
    expect(any).toHaveLength(1);
    expect(any[0].hasSourced).toBe(true);
    expect(setVerdicts(any[0])).toEqual({}); // no rule for every process
    expect(sourced.map((p) => p.srcIno).sort()).toEqual([101n, 102n]);
    for (const p of sourced) {
      expect(p).toMatchObject({ dev: 0x800001n, ino: 11n, srcDev: 0x800001n, hasSourced: false });
      expect(setVerdicts(p)).toEqual({ 0: [7, Action.Block] });
    }
    expect(set.watchPaths.sort()).toEqual(['/data/secret', '/usr/bin/a', '/usr/bin/b']);
  });

  test('a rule with a source and one without on the same target share the any-source entry', () => {
    const set = toLsmRuleSet([fileRule(1, { action: 'Audit' }), fileRule(2, { fromSource: [{ kind: 'path', path: '/usr/bin/a' }] })], [], resolvers);
    const any = set.paths.find((p) => p.srcIno === 0n)!;
    expect(any.hasSourced).toBe(true);
    expect(setVerdicts(any)).toEqual({ 0: [1, Action.Audit] });
    expect(set.paths).toHaveLength(2);
  });

  test('sources that cannot be enforced are named; a rule left without sources is not enforced at all', () => {
    const set = toLsmRuleSet(
      [
        fileRule(1, { fromSource: [{ kind: 'dir', path: '/usr/bin', recursive: false }, { kind: 'path', path: '/usr/bin/a' }] }),
        fileRule(2, { target: { kind: 'path', path: '/data/other' }, fromSource: [{ kind: 'path', path: '/nope' }] }),
      ],
      [],
      resolvers,
    );
    expect(set.errors).toEqual([
      expect.stringMatching(/file rule 1 \(#0\): fromSource dir \/usr\/bin is not enforced by bpf-lsm/),
      expect.stringMatching(/file rule 2 \(#1\): fromSource \/nope is not enforced: cannot stat \/nope \(ENOENT\)/),
      expect.stringMatching(/file rule 2 \(#1\): no usable fromSource entry; rule not enforced/),
    ]);
    // rule 2 must not turn into a rule for every process
    expect(set.paths.some((p) => p.ino === 12n)).toBe(false);
    expect(set.paths.filter((p) => p.ino === 11n)).toHaveLength(2);
  });

  test('bad targets are reported with rule and reason; the others still convert', () => {
    const set = toLsmRuleSet(
      [
        fileRule(1, { target: { kind: 'path', path: 'relative' } }),
        fileRule(2, { target: { kind: 'path', path: '/missing' } }),
        fileRule(3, { target: { kind: 'dir', path: '/data/secret', recursive: true } }),
        fileRule(4, { operation: 'Process', readOnly: true, target: { kind: 'path', path: '/usr/bin/tool' } }),
        fileRule(5, { action: 'Allow' as never }),
        fileRule(6),
      ],
      [],
      resolvers,
    );
    expect(set.errors).toEqual([
      'file rule 1 (#0): target relative is not absolute',
      'file rule 2 (#1): /missing is not enforced: cannot stat /missing (ENOENT)',
      'file rule 3 (#2): /data/secret is not a directory; rule not enforced',
      'process rule 4 (#3): readOnly does not apply to process rules; enforced without it',
      'file rule 5 (#4): Allow rules (allow-list mode) are not enforced by the bpf-lsm backend yet: this rule is not in force (the compat backend enforces them)',
    ]);
    expect(set.paths.map((p) => [p.op, p.ino, setVerdicts(p)])).toEqual([
      [LSM_OP_PROCESS, 20n, { 0: [4, Action.Block] }],
      [LSM_OP_FILE, 11n, { 0: [6, Action.Block] }],
    ]);
    // a missing target is still watched: it is enforced once it appears
    expect(set.watchPaths).toContain('/missing');
  });
});

describe('toLsmRuleSet: network rules', () => {
  test('one entry per rule, or per source executable', () => {
    const set = toLsmRuleSet([], [netRule(1), netRule(2, { protocol: 'tcp', action: 'Audit', fromSource: [{ kind: 'path', path: '/usr/bin/a' }] })], resolvers);
    expect(set.errors).toEqual([]);
    expect(set.net).toEqual([
      { ruleId: 1, action: Action.Block, protoClass: ProtoClass.Udp, workload: 0n, srcDev: 0n, srcIno: 0n },
      { ruleId: 2, action: Action.Audit, protoClass: ProtoClass.Tcp, workload: 0n, srcDev: 0x800001n, srcIno: 101n },
    ]);
  });

  test('unknown protocols and unusable sources are reported, never widened to every process', () => {
    const set = toLsmRuleSet([], [netRule(1, { protocol: 'sctp' as never }), netRule(2, { fromSource: [{ kind: 'dir', path: '/usr/bin', recursive: true }] })], resolvers);
    expect(set.net).toEqual([]);
    expect(set.errors).toEqual([
      'network rule 1 (#0): protocol must be one of tcp, udp, icmp, icmpv6, raw, got sctp',
      expect.stringMatching(/network rule 2 \(#1\): fromSource dir \/usr\/bin is not enforced by bpf-lsm/),
      'network rule 2 (#1): no usable fromSource entry; rule not enforced',
    ]);
  });
});

describe('resolveTargetInode', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-lsm-unit-'));
    fs.writeFileSync(path.join(dir, 'f'), 'x');
    fs.symlinkSync(path.join(dir, 'f'), path.join(dir, 'link'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('follows symlinks to the file; dev from the mount the real path is on', () => {
    const mounts: MountEntry[] = [
      { mountPoint: '/', dev: 0x800001n, fsType: 'ext4' },
      { mountPoint: fs.realpathSync(dir), dev: 0x1234n, fsType: 'tmpfs' },
    ];
    const ino = fs.statSync(path.join(dir, 'f'), { bigint: true }).ino;
    expect(resolveTargetInode(path.join(dir, 'link'), mounts)).toEqual({ dev: 0x1234n, ino, isDir: false });
    expect(resolveTargetInode(dir, mounts)).toMatchObject({ dev: 0x1234n, isDir: true });
  });

  test('a missing path is an error naming it', () => {
    expect(() => resolveTargetInode(path.join(dir, 'missing'), [])).toThrow(/cannot stat .*missing \(ENOENT\)/);
  });
});

describe('pinned state paths and unloading', () => {
  test('one directory per map layout under /sys/fs/bpf/edgeward', () => {
    expect(PIN_ROOT).toBe('/sys/fs/bpf/edgeward');
    expect(lsmPinDir(1)).toBe('/sys/fs/bpf/edgeward/lsm-v1');
    expect(lsmPinDir(3, '/x')).toBe('/x/lsm-v3');
  });

  test('unloadPinnedLsm removes every layout directory (links first) except the one kept, and nothing else', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-pins-'));
    try {
      for (const d of ['lsm-v1', 'lsm-v2', 'other']) {
        fs.mkdirSync(path.join(root, d));
        for (const f of ['active', 'link_file_open']) fs.writeFileSync(path.join(root, d, f), '');
      }
      expect(unloadPinnedLsm(root, path.join(root, 'lsm-v2'))).toEqual([path.join(root, 'lsm-v1')]);
      expect(fs.readdirSync(root).sort()).toEqual(['lsm-v2', 'other']);
      expect(unloadPinnedLsm(root)).toEqual([path.join(root, 'lsm-v2')]);
      expect(fs.readdirSync(root)).toEqual(['other']);
      expect(unloadPinnedLsm(path.join(root, 'missing'))).toEqual([]);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
