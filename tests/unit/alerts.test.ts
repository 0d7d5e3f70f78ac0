import { Action, EnforcerCode, OperationCode } from '../../agent/src/abi';
import { AlertBuilder, BootClock, DecisionFacts, describeOpenFlags } from '../../agent/src/alerts';
import type { RuleMeta } from '../../agent/src/policy/types';
import { ProcessTable } from '../../agent/src/process_table';

const meta: RuleMeta = {
  ruleId: 7,
  policyName: 'block-tool',
  policyType: 'MatchedHostPolicy',
  severity: 5,
  tags: ['MITRE', 'T1059'],
  message: 'no',
  action: 'Block',
  operation: 'Process',
  source: 'x.yaml',
};

function decision(over: Partial<DecisionFacts>): DecisionFacts {
  return {
    timestampNs: 5_000_000_000n,
    pid: 100,
    ppid: 50,
    uid: 0,
    comm: 'sh',
    ruleId: 7,
    action: Action.Block,
    operation: OperationCode.Process,
    enforcer: EnforcerCode.Fanotify,
    ret: -1,
    flags: 0,
    resource: '/usr/bin/nc',
    exe: '/bin/sh',
    ...over,
  };
}

function builder(): AlertBuilder {
  const table = new ProcessTable('/nonexistent-proc');
  table.onExec(50, 1, 0, '/usr/bin/bash', 'bash');
  table.onExec(100, 50, 0, '/bin/sh', 'sh');
  // boot was 1000 s before "now" = 2_000_000 ms
  const clock = new BootClock(1000, 2_000_000);
  return new AlertBuilder('node-1', clock, table, (id) => (id === 7 ? meta : undefined));
}

describe('AlertBuilder', () => {
  test('a blocked exec names the program asked for, the caller as Source, the parent', () => {
    const a = builder().build(decision({}))!;
    expect(a).toMatchObject({
      HostName: 'node-1',
      PID: 100,
      HostPID: 100,
      PPID: 50,
      ProcessName: '/usr/bin/nc',
      Source: '/bin/sh',
      ParentProcessName: '/usr/bin/bash',
      PolicyName: 'block-tool',
      Severity: '5',
      Tags: 'MITRE,T1059',
      ATags: ['MITRE', 'T1059'],
      Type: 'MatchedHostPolicy',
      Operation: 'Process',
      Data: 'syscall=SYS_EXECVE',
      Enforcer: 'fanotify',
      Action: 'Block',
      Result: 'Permission denied',
    });
    // boot epoch 1_000_000 ms + 5 s
    expect(a.Timestamp).toBe(1005);
    expect(a.UpdatedTime).toBe('1970-01-01T00:16:45.000000Z');
  });

  test('an audited open is Passed, names the acting executable and the flags', () => {
    const a = builder().build(
      decision({ action: Action.Audit, ret: 0, operation: OperationCode.File, resource: '/etc/x', flags: 0o1101 }),
    )!;
    expect(a).toMatchObject({ Action: 'Audit', Result: 'Passed', ProcessName: '/bin/sh', Resource: '/etc/x', Operation: 'File' });
    expect(a.Data).toBe('syscall=SYS_OPEN flags=O_WRONLY|O_CREAT|O_TRUNC');
  });

  test('a refused capability check: Operation Capabilities, Resource the capability, Data the LSM hook', () => {
    const a = builder().build(
      decision({ operation: OperationCode.Capabilities, resource: 'CAP_NET_RAW', enforcer: EnforcerCode.BpfLsm, flags: 13 }),
    )!;
    expect(a).toMatchObject({ Operation: 'Capabilities', Resource: 'CAP_NET_RAW', Result: 'Permission denied', ProcessName: '/bin/sh' });
    expect(a.Data).toBe('lsm=SECURITY_CAPABLE CAP_NET_RAW');
  });

  test('the process table fills in a missing executable', () => {
    const a = builder().build(decision({ operation: OperationCode.Network, exe: '', enforcer: EnforcerCode.CgroupBpf }))!;
    expect(a.ProcessName).toBe('/bin/sh');
    expect(a.Enforcer).toBe('cgroup-bpf');
  });

  test('a default-posture decision names policy DefaultPosture, with no severity', () => {
    const posture: RuleMeta = {
      ruleId: 8,
      policyName: 'DefaultPosture',
      policyType: 'MatchedPolicy',
      severity: 0,
      tags: [],
      message: '',
      action: 'Block',
      operation: 'Network',
      source: '',
    };
    const clock = new BootClock(1000, 2_000_000);
    const b = new AlertBuilder('node-1', clock, new ProcessTable('/nonexistent-proc'), (id) => (id === 8 ? posture : undefined));
    const a = b.build(decision({ ruleId: 8, operation: OperationCode.Network, enforcer: EnforcerCode.CgroupBpf, resource: 'udp' }))!;
    expect(a).toMatchObject({
      PolicyName: 'DefaultPosture',
      Severity: '',
      Type: 'MatchedPolicy',
      Operation: 'Network',
      Resource: 'udp',
      Action: 'Block',
      Result: 'Permission denied',
    });
  });

  test('an unknown rule id gives no alert', () => {
    expect(builder().build(decision({ ruleId: 99 }))).toBeUndefined();
  });
});

describe('describeOpenFlags', () => {
  test.each([
    [0, 'O_RDONLY'],
    [1, 'O_WRONLY'],
    [2, 'O_RDWR'],
    [0o2001, 'O_WRONLY|O_APPEND'],
  ])('%o -> %s', (flags, text) => expect(describeOpenFlags(flags)).toBe(text));
});

describe('BootClock', () => {
  test('converts boot-time nanoseconds to wall-clock milliseconds', () => {
    const c = new BootClock(10, 100_000);
    expect(c.wallMs(0n)).toBe(90_000);
    expect(c.wallMs(1_500_000n)).toBe(90_001.5);
  });
});
