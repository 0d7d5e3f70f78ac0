import { Action, EnforcerCode, OperationCode, ProtoClass } from '../../agent/src/abi';
import { AuditMatcher, classifySocket, isWriteOpen, sourceMatches, targetMatches } from '../../agent/src/audit_matcher';
import type { CompiledPolicySet, PathRule } from '../../agent/src/policy/types';

const task = { timestampNs: 1n, pid: 10, ppid: 1, uid: 0, comm: 'x' };

function pathRule(over: Partial<PathRule>): PathRule {
  return {
    ruleId: 1,
    action: 'Block',
    operation: 'File',
    target: { kind: 'path', path: '/etc/shadow' },
    readOnly: false,
    ownerOnly: false,
    fromSource: [],
    ...over,
  };
}

function set(pathRules: PathRule[], networkRules: CompiledPolicySet['networkRules'] = []): CompiledPolicySet {
  return { pathRules, networkRules, meta: new Map() };
}

describe('path and source matching', () => {
  test('directories: direct children only unless recursive; the directory itself is not its child', () => {
    const dir = { kind: 'dir' as const, path: '/var/log/', recursive: false };
    expect(targetMatches(dir, '/var/log/syslog')).toBe(true);
    expect(targetMatches(dir, '/var/log/apt/history.log')).toBe(false);
    expect(targetMatches({ ...dir, recursive: true }, '/var/log/apt/history.log')).toBe(true);
    expect(targetMatches(dir, '/var/log')).toBe(false);
    expect(targetMatches(dir, '/var/logs/x')).toBe(false);
  });

  test('fromSource: empty matches anyone; otherwise the executable must match', () => {
    expect(sourceMatches([], undefined)).toBe(true);
    expect(sourceMatches([{ kind: 'path', path: '/bin/sh' }], '/bin/sh')).toBe(true);
    expect(sourceMatches([{ kind: 'path', path: '/bin/sh' }], '/bin/bash')).toBe(false);
    expect(sourceMatches([{ kind: 'path', path: '/bin/sh' }], undefined)).toBe(false);
    expect(sourceMatches([{ kind: 'dir', path: '/usr/bin/', recursive: false }], '/usr/bin/curl')).toBe(true);
  });

  test('write opens', () => {
    expect(isWriteOpen(0)).toBe(false);
    expect(isWriteOpen(1)).toBe(true);
    expect(isWriteOpen(2)).toBe(true);
    expect(isWriteOpen(0o1000)).toBe(true); // O_RDONLY|O_TRUNC still truncates
  });
});

describe('classifySocket', () => {
  test.each([
    [2, 1, 0, ProtoClass.Tcp],
    [10, 1 | 0o4000, 6, ProtoClass.Tcp], // SOCK_NONBLOCK ignored
    [2, 2, 0, ProtoClass.Udp],
    [2, 2, 1, ProtoClass.Icmp], // ping socket
    [10, 3, 58, ProtoClass.Icmpv6],
    [2, 3, 255, ProtoClass.Raw],
    [17, 3, 0, ProtoClass.Raw], // AF_PACKET
    [1, 1, 0, undefined], // AF_UNIX is not a network protocol rule
  ])('family %i type %i protocol %i', (f, t, p, want) => expect(classifySocket(f, t, p)).toBe(want));
});

describe('AuditMatcher', () => {
  test('Block wins over Audit and the decision is marked as observed, not refused', () => {
    const m = new AuditMatcher(set([pathRule({ ruleId: 1, action: 'Audit' }), pathRule({ ruleId: 2, action: 'Block' })]));
    expect(m.matchOpen(task, '/etc/shadow', 0, '/bin/cat')).toEqual({
      ...task,
      ruleId: 2,
      action: Action.Block,
      operation: OperationCode.File,
      enforcer: EnforcerCode.Monitor,
      ret: 0,
      flags: 0,
      resource: '/etc/shadow',
      exe: '/bin/cat',
    });
  });

  test('readOnly rules match writes only', () => {
    const m = new AuditMatcher(set([pathRule({ readOnly: true })]));
    expect(m.matchOpen(task, '/etc/shadow', 0, '/bin/cat')).toBeUndefined();
    expect(m.matchOpen(task, '/etc/shadow', 1, '/bin/cat')?.ruleId).toBe(1);
  });

  test('process rules use the caller as the source', () => {
    const m = new AuditMatcher(
      set([pathRule({ operation: 'Process', target: { kind: 'path', path: '/usr/bin/nc' }, fromSource: [{ kind: 'path', path: '/bin/bash' }] })]),
    );
    expect(m.matchExec(task, '/usr/bin/nc', '/bin/bash')?.operation).toBe(OperationCode.Process);
    expect(m.matchExec(task, '/usr/bin/nc', '/bin/sh')).toBeUndefined();
    expect(m.matchOpen(task, '/usr/bin/nc', 0, '/bin/bash')).toBeUndefined(); // an open is not an exec
  });

  test('network rules by protocol class and source', () => {
    const m = new AuditMatcher(set([], [{ ruleId: 5, action: 'Block', operation: 'Network', protocol: 'udp', fromSource: [] }]));
    expect(m.matchSocket(task, 2, 2, 0, '/bin/x')).toMatchObject({ ruleId: 5, resource: 'udp', flags: ProtoClass.Udp });
    expect(m.matchSocket(task, 2, 1, 0, '/bin/x')).toBeUndefined();
    expect(m.needs()).toEqual({ process: false, file: false, network: true });
  });
});

describe('allow-list, patterns and execname (audit-only backend)', () => {
  const posture = (category: 'process' | 'file' | 'network', ruleId: number) => ({ ruleId, category, action: 'Block' as const, scopeKind: 'host' as const });

  test('patterns and execname match as the kernel enforcers do', () => {
    expect(targetMatches({ kind: 'pattern', pattern: '/etc/*shadow*' }, '/etc/gshadow')).toBe(true);
    expect(targetMatches({ kind: 'pattern', pattern: '/etc/*shadow*' }, '/etc/x/shadow')).toBe(false);
    expect(targetMatches({ kind: 'execname', name: 'nc' }, '/usr/bin/nc')).toBe(true);
    expect(targetMatches({ kind: 'execname', name: 'nc' }, '/usr/bin/ncat')).toBe(false);
  });

  test('Allow rules are never reported; outside them the posture is, under its rule id', () => {
    const m = new AuditMatcher({
      pathRules: [
        pathRule({ ruleId: 1, action: 'Allow', operation: 'Process', target: { kind: 'path', path: '/usr/bin/ok' } }),
        pathRule({ ruleId: 2, action: 'Block', operation: 'Process', target: { kind: 'path', path: '/usr/bin/ok' }, fromSource: [{ kind: 'path', path: '/bin/evil' }] }),
      ],
      networkRules: [],
      postureRules: [posture('process', 9)],
      meta: new Map(),
    });
    expect(m.matchExec(task, '/usr/bin/ok', '/bin/sh')).toBeUndefined();
    expect(m.matchExec(task, '/usr/bin/other', '/bin/sh')).toMatchObject({ ruleId: 9, action: Action.Block, ret: 0 });
    // Block wins over Allow
    expect(m.matchExec(task, '/usr/bin/ok', '/bin/evil')).toMatchObject({ ruleId: 2, action: Action.Block });
  });

  test('a readOnly Allow permits reads only; writes get the posture', () => {
    const m = new AuditMatcher({
      pathRules: [pathRule({ ruleId: 1, action: 'Allow', readOnly: true })],
      networkRules: [],
      postureRules: [posture('file', 5)],
      meta: new Map(),
    });
    expect(m.matchOpen(task, '/etc/shadow', 0, '/bin/cat')).toBeUndefined();
    expect(m.matchOpen(task, '/etc/shadow', 1, '/bin/cat')).toMatchObject({ ruleId: 5 });
  });

  test('network: allowed class silent, other classes get the posture with the class name as resource', () => {
    const m = new AuditMatcher({
      pathRules: [],
      networkRules: [{ ruleId: 1, action: 'Allow', operation: 'Network', protocol: 'tcp', fromSource: [] }],
      postureRules: [posture('network', 7)],
      meta: new Map(),
    });
    expect(m.matchSocket(task, 2, 1, 0, '/bin/x')).toBeUndefined();
    expect(m.matchSocket(task, 2, 2, 0, '/bin/x')).toMatchObject({ ruleId: 7, resource: 'udp', flags: ProtoClass.Udp });
  });

  test("a decision keeps the task's namespaces and namespace pids (container identity and PID of an exited process)", () => {
    const m = new AuditMatcher(set([pathRule({})]));
    const inContainer = { ...task, mntNs: 4026532000, pidNs: 4026532001, nsPid: 7, nsPpid: 1 };
    expect(m.matchOpen(inContainer, '/etc/shadow', 0, '/bin/cat')).toMatchObject({ pid: 10, mntNs: 4026532000, pidNs: 4026532001, nsPid: 7, nsPpid: 1 });
  });
});
