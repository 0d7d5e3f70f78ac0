// Pure parts of the bpf-lsm enforcer: compiled rules -> inode-keyed kernel
// entries (verdict slots, sources, merging, errors), target resolution
// against a mount table.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Action, ProtoClass } from '../../agent/src/abi';
import {
  containerTargetInode,
  LsmEnforcer,
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
  workloadId,
} from '../../agent/src/lsm_enforcer';
import type { NativeAddon, NativeEventRing, NativeWorkload } from '../../agent/src/native';
import type { MountEntry } from '../../agent/src/net_enforcer';
import type { NetworkRule, PathRule, WorkloadTarget } from '../../agent/src/policy/types';

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

describe('toLsmRuleSet: container rules (workloads)', () => {
  const A: WorkloadTarget = { mntNs: 4026532001, pidNs: 4026532002, pid: 501, containerId: 'aaa', containerName: 'alpha' };
  const B: WorkloadTarget = { mntNs: 4026532101, pidNs: 4026532102, pid: 601, containerId: 'bbb', containerName: 'beta' };
  // each container's /data/secret is its own inode; resolvers see which root they resolve in
  const inRoot: LsmResolvers = {
    target: (p, w) => {
      const t = FILES[p];
      if (!t) throw new Error(`cannot stat ${p} (ENOENT)`);
      return w ? { ...t, ino: t.ino + BigInt(w.pid) * 1000n } : t;
    },
    source: (p, w) => {
      const e = EXES[p];
      if (!e) throw new Error(`cannot stat ${p} (ENOENT)`);
      return w ? { ...e, ino: e.ino + BigInt(w.pid) * 1000n } : e;
    },
  };

  test('a rule resolved to a container is keyed by its workload (mount namespace inode), its paths resolved in its root', () => {
    const set = toLsmRuleSet([fileRule(1), fileRule(2, { workload: A }), fileRule(3, { workload: B, action: 'Audit' })], [], inRoot);
    expect(set.errors).toEqual([]);
    expect(set.paths.map((e) => [e.workload, e.dev, e.ino, setVerdicts(e)])).toEqual([
      [0n, 0x800001n, 11n, { 0: [1, Action.Block] }],
      [4026532001n, 0x800001n, 501011n, { 0: [2, Action.Block] }],
      [4026532101n, 0x800001n, 601011n, { 0: [3, Action.Audit] }],
    ]);
    expect(workloadId(undefined)).toBe(0n);
    expect(workloadId(A)).toBe(4026532001n);
  });

  test('the same inode named by host and container rules gets one entry per workload, never merged', () => {
    const same: LsmResolvers = { ...inRoot, target: (p) => FILES[p] };
    const set = toLsmRuleSet([fileRule(1, { action: 'Audit' }), fileRule(2, { workload: A })], [], same);
    expect(set.paths.map((e) => [e.workload, e.ino, setVerdicts(e)])).toEqual([
      [0n, 11n, { 0: [1, Action.Audit] }],
      [4026532001n, 11n, { 0: [2, Action.Block] }],
    ]);
  });

  test('fromSource of a container rule resolves inside that container; sourced entries carry the workload', () => {
    const set = toLsmRuleSet([fileRule(1, { workload: A, fromSource: [{ kind: 'path', path: '/usr/bin/a' }] })], [], inRoot);
    expect(set.errors).toEqual([]);
    expect(set.paths.map((e) => [e.workload, e.srcIno, e.hasSourced])).toEqual([
      [4026532001n, 501101n, false],
      [4026532001n, 0n, true],
    ]);
  });

  test('network rules of a container carry its workload and its sources', () => {
    const set = toLsmRuleSet([], [netRule(1, { workload: B }), netRule(2, { workload: A, fromSource: [{ kind: 'path', path: '/usr/bin/b' }] })], inRoot);
    expect(set.errors).toEqual([]);
    expect(set.net).toEqual([
      { ruleId: 1, action: Action.Block, protoClass: ProtoClass.Udp, workload: 4026532101n, srcDev: 0n, srcIno: 0n },
      { ruleId: 2, action: Action.Block, protoClass: ProtoClass.Udp, workload: 4026532001n, srcDev: 0x800001n, srcIno: 501102n },
    ]);
  });

  test('errors name the container; container paths are watched through its init\'s root', () => {
    const set = toLsmRuleSet(
      [fileRule(1, { workload: A, target: { kind: 'path', path: '/nope' } }), fileRule(2, { workload: B, fromSource: [{ kind: 'path', path: '/usr/bin/a' }] })],
      [],
      inRoot,
    );
    expect(set.errors).toEqual(['file rule 1 (#0, container alpha): /nope is not enforced: cannot stat /nope (ENOENT)']);
    expect(set.watchPaths.sort()).toEqual(['/proc/501/root/nope', '/proc/601/root/data/secret', '/proc/601/root/usr/bin/a']);
  });

  test('containerTargetInode: dev from the container\'s mount table by the path inside its root; directories known by mode', () => {
    const mounts: MountEntry[] = [
      { mountPoint: '/', dev: 0x2an, fsType: 'overlay' },
      { mountPoint: '/data', dev: 0x800003n, fsType: 'ext4' },
    ];
    const file = { path: '/data/x', dev: 0x803n, ino: 77n, mode: 0o100644, shebang: false };
    expect(containerTargetInode(file, mounts)).toEqual({ dev: 0x800003n, ino: 77n, isDir: false });
    expect(containerTargetInode({ ...file, path: '/etc', mode: 0o040755 }, mounts)).toEqual({ dev: 0x2an, ino: 77n, isDir: true });
    // no mount found: st_dev converted to the kernel's form
    expect(containerTargetInode(file, [])).toEqual({ dev: 0x800003n, ino: 77n, isDir: false });
  });
});

describe('LsmEnforcer.apply: rules, then the containers', () => {
  const W: WorkloadTarget = { mntNs: 4026532001, pidNs: 4026532002, pid: 501, containerId: 'aaa', containerName: 'alpha' };

  /** A fake addon recording the calls in order; setRules throws when `refuse` is set. */
  function fakeAddon(refuse?: string) {
    const calls: Array<[string, unknown]> = [];
    class FakeLsm {
      setRules(set: unknown) {
        calls.push(['setRules', set]);
        if (refuse) throw new Error(refuse);
        return { pathEntries: 0, netEntries: 0 };
      }
      setWorkloads(w: NativeWorkload[]) {
        calls.push(['setWorkloads', w]);
      }
    }
    const addon = { LsmEnforcer: FakeLsm, lsmLimits: { maxPathEntries: 10, maxNetEntries: 10, variants: 12, walkMax: 2048, layoutVersion: 2 } };
    return { addon: addon as unknown as NativeAddon, calls };
  }

  test('the workloads follow the rules (a new container is the host until its rules are in place)', () => {
    const { addon, calls } = fakeAddon();
    const lsm = new LsmEnforcer(addon, {} as NativeEventRing);
    const r = lsm.apply([], [netRule(1, { workload: W })], resolvers, [W]);
    expect(r).toMatchObject({ applied: true, errors: [] });
    expect(calls.map((c) => c[0])).toEqual(['setRules', 'setWorkloads']);
    expect(calls[1][1]).toEqual([{ workload: 4026532001n, mntNs: 4026532001, pidNs: 4026532002 }]);
  });

  test('a refused rule set still updates the containers, so host rules do not reach into new ones', () => {
    const { addon, calls } = fakeAddon('EINVAL');
    const lsm = new LsmEnforcer(addon, {} as NativeEventRing);
    const r = lsm.apply([], [], resolvers, [W]);
    expect(r.applied).toBe(false);
    expect(r.errors).toEqual(['bpf-lsm rules not applied: EINVAL']);
    expect(calls.map((c) => c[0])).toEqual(['setRules', 'setWorkloads']);
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
