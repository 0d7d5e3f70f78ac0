// Allow-list mode on the bpf-lsm backend, the pure part: Allow rules become
// variant bits of the path entries (next to Block/Audit verdicts) or Allow
// network entries, and each workload in allow-list mode gets posture entries
// (kernel side: tests/integration/lsm_allow_list.test.ts, in the guest).
import { Action, ProtoClass } from '../../agent/src/abi';
import {
  LSM_OP_FILE,
  LSM_OP_NETWORK,
  LSM_OP_PROCESS,
  LsmMatch,
  LsmResolvers,
  lsmVariant,
  TargetInode,
  toLsmPostures,
  toLsmRuleSet,
} from '../../agent/src/lsm_enforcer';
import { compilePolicies } from '../../agent/src/policy/compiler';
import { parsePolicyText } from '../../agent/src/policy/loader';
import { allowListModes, WorkloadPosture } from '../../agent/src/policy/posture';
import type { NetworkRule, PathRule, WorkloadTarget } from '../../agent/src/policy/types';

const FILES: Record<string, TargetInode> = {
  '/data/ok': { dev: 0x800001n, ino: 11n, isDir: false },
  '/data': { dev: 0x800001n, ino: 10n, isDir: true },
  '/usr/bin/tool': { dev: 0x800001n, ino: 20n, isDir: false },
};
const resolvers: LsmResolvers = {
  target: (p) => {
    const t = FILES[p];
    if (!t) throw new Error(`cannot stat ${p} (ENOENT)`);
    return t;
  },
  source: () => ({ dev: 0x800001n, ino: 101n }),
};

const rule = (ruleId: number, over: Partial<PathRule> = {}): PathRule => ({
  ruleId,
  action: 'Allow',
  operation: 'File',
  target: { kind: 'path', path: '/data/ok' },
  readOnly: false,
  ownerOnly: false,
  fromSource: [],
  ...over,
});
const net = (ruleId: number, over: Partial<NetworkRule> = {}): NetworkRule => ({
  ruleId,
  action: 'Allow',
  operation: 'Network',
  protocol: 'tcp',
  fromSource: [],
  ...over,
});
const container: WorkloadTarget = { mntNs: 4026532000, pidNs: 4026532001, pid: 42, containerId: 'c1', containerName: 'web' };

describe('toLsmRuleSet: Allow rules', () => {
  test('an Allow sets its variant bit; an Audit of the same variant keeps its verdict slot (both hold)', () => {
    const set = toLsmRuleSet(
      [
        rule(1, { readOnly: true }),
        rule(2, { action: 'Audit', readOnly: true }),
        rule(3, { target: { kind: 'dir', path: '/data', recursive: true } }),
        rule(4, { operation: 'Process', target: { kind: 'path', path: '/usr/bin/tool' } }),
      ],
      [],
      resolvers,
    );
    expect(set.errors).toEqual([]);
    const ok = set.paths.find((p) => p.ino === 11n)!;
    expect(ok.allowVariants).toBe(1 << lsmVariant(LsmMatch.Exact, true, false));
    expect(ok.verdicts[lsmVariant(LsmMatch.Exact, true, false)]).toEqual({ ruleId: 2, action: Action.Audit });
    expect(set.paths.find((p) => p.ino === 10n)!.allowVariants).toBe(1 << lsmVariant(LsmMatch.Recursive, false, false));
    const tool = set.paths.find((p) => p.ino === 20n)!;
    expect(tool.op).toBe(LSM_OP_PROCESS);
    expect(tool.allowVariants).toBe(1);
    expect(tool.verdicts.every((v) => v.action === Action.None)).toBe(true);
  });

  test('Allow network rules are entries with action Allow', () => {
    const set = toLsmRuleSet([], [net(5), net(6, { protocol: 'udp', action: 'Block' })], resolvers);
    expect(set.errors).toEqual([]);
    expect(set.net).toEqual([
      { ruleId: 5, action: Action.Allow, protoClass: ProtoClass.Tcp, workload: 0n, srcDev: 0n, srcIno: 0n },
      { ruleId: 6, action: Action.Block, protoClass: ProtoClass.Udp, workload: 0n, srcDev: 0n, srcIno: 0n },
    ]);
    expect(set.postures).toBeUndefined();
  });

  test('an unknown action is still refused, naming the rule', () => {
    const set = toLsmRuleSet([rule(7, { action: 'Permit' as never })], [], resolvers);
    expect(set.errors).toEqual(['file rule 7 (#0): action must be Block, Audit or Allow, got Permit']);
    expect(set.paths).toEqual([]);
  });
});

describe('postures', () => {
  test('one entry per workload and category (process, file, network); capabilities are not this enforcer\'s', () => {
    const modes: WorkloadPosture[] = [
      {
        postures: {
          process: { ruleId: 90, category: 'process', action: 'Block', scopeKind: 'host' },
          network: { ruleId: 91, category: 'network', action: 'Audit', scopeKind: 'host' },
          capabilities: { ruleId: 92, category: 'capabilities', action: 'Block', scopeKind: 'host' },
        },
      },
      { workload: container, postures: { file: { ruleId: 93, category: 'file', action: 'Block', scopeKind: 'containers' } } },
    ];
    const errors: string[] = [];
    expect(toLsmPostures(modes, errors)).toEqual([
      { workload: 0n, op: LSM_OP_PROCESS, ruleId: 90, action: Action.Block },
      { workload: 0n, op: LSM_OP_NETWORK, ruleId: 91, action: Action.Audit },
      { workload: BigInt(container.mntNs), op: LSM_OP_FILE, ruleId: 93, action: Action.Block },
    ]);
    expect(errors).toEqual([]);
  });

  test('a bad posture is reported, not guessed', () => {
    const errors: string[] = [];
    const out = toLsmPostures([{ postures: { file: { ruleId: 1, category: 'file', action: 'Allow' as never, scopeKind: 'host' } } }], errors);
    expect(out).toEqual([]);
    expect(errors).toEqual(['host: file posture must be Block or Audit with a rule id, got Allow (rule 1); allow-list mode not enforced']);
  });

  test('from policy YAML: the compiler\'s posture rules reach the set through allowListModes', () => {
    const yaml = JSON.stringify({
      apiVersion: 'security.kubearmor.com/v1',
      kind: 'KubeArmorHostPolicy',
      metadata: { name: 'allow-tool' },
      spec: { nodeSelector: { matchLabels: { 'kubearmor.io/hostname': '*' } }, process: { matchPaths: [{ path: '/usr/bin/tool' }] }, action: 'Allow' },
    });
    const loaded = parsePolicyText(yaml, 'x.yaml');
    expect(loaded.errors).toEqual([]);
    const compiled = compilePolicies(loaded.policies, { hostname: 'n', posture: { file: 'block', network: 'audit', capabilities: 'audit' } });
    expect(compiled.errors).toEqual([]);
    const set = toLsmRuleSet(compiled.set.pathRules, compiled.set.networkRules, resolvers, allowListModes(compiled.set));
    const posture = compiled.set.postureRules!.find((p) => p.category === 'process')!;
    expect(set.postures).toEqual([{ workload: 0n, op: LSM_OP_PROCESS, ruleId: posture.ruleId, action: Action.Block }]);
    expect(set.paths.find((p) => p.ino === 20n)!.allowVariants).toBe(1);
  });
});

describe('toLsmRuleSet: pattern and execname rules', () => {
  test('one kernel pattern per brace alternative and source; execname as the name\'s bytes', () => {
    const set = toLsmRuleSet(
      [
        rule(1, { action: 'Block', target: { kind: 'pattern', pattern: '/data/*.{key,pem}' }, readOnly: true }),
        rule(2, { action: 'Allow', operation: 'Process', target: { kind: 'execname', name: 'tool' }, fromSource: [{ kind: 'path', path: '/usr/bin/a' }] }),
      ],
      [],
      resolvers,
    );
    expect(set.errors).toEqual([]);
    expect(set.paths).toEqual([]);
    expect(set.patterns).toEqual([
      expect.objectContaining({ ruleId: 1, op: LSM_OP_FILE, action: Action.Block, readOnly: true, execname: false, srcIno: 0n }),
      expect.objectContaining({ ruleId: 1, op: LSM_OP_FILE, action: Action.Block, readOnly: true, execname: false, srcIno: 0n }),
      { workload: 0n, op: LSM_OP_PROCESS, ruleId: 2, action: Action.Allow, readOnly: false, ownerOnly: false, execname: true, bytes: Buffer.from('tool'), srcDev: 0x800001n, srcIno: 101n },
    ]);
    // the encodings: literal bytes and STAR (0x01), per alternative
    expect(set.patterns![0].bytes).toEqual(Buffer.from([...Buffer.from('/data/'), 0x01, ...Buffer.from('.key')]));
    expect(set.patterns![1].bytes).toEqual(Buffer.from([...Buffer.from('/data/'), 0x01, ...Buffer.from('.pem')]));
  });

  test('patterns the kernel matcher cannot take, and bad names, are reported per rule', () => {
    const set = toLsmRuleSet(
      [
        rule(3, { action: 'Block', target: { kind: 'pattern', pattern: `/${'x'.repeat(300)}*` } }),
        rule(4, { action: 'Block', target: { kind: 'execname', name: 'a/b' } }),
        rule(5, { action: 'Block', target: { kind: 'pattern', pattern: 'relative*' } }),
      ],
      [],
      resolvers,
    );
    expect(set.patterns).toBeUndefined();
    expect(set.errors).toEqual([
      expect.stringMatching(/^file rule 3 \(#0\): pattern \/x+\* encodes into \d+ bytes for the kernel matcher \(at most 256\); rule not enforced$/),
      'file rule 4 (#1): execname a/b is not a file name; rule not enforced',
      'file rule 5 (#2): pattern relative* is not absolute; rule not enforced',
    ]);
  });
});
