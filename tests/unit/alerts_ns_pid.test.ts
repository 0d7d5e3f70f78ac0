// PID/PPID of container alerts and logs come from the record (the kernel's
// or the fanotify answerer's reading while the process was there), not from
// /proc when the alert is built: a process that has exited by then (a blocked
// exec, then its shell exits) must still get its namespace pids.
import { spawnSync } from 'child_process';
import { Action, EnforcerCode, EventKind, OperationCode } from '../../agent/src/abi';
import { AlertBuilder, BootClock, ContainerFacts, DecisionFacts, namespacePids } from '../../agent/src/alerts';
import type { ExecEvent } from '../../agent/src/events';
import type { RuleMeta } from '../../agent/src/policy/types';
import { ProcessTable } from '../../agent/src/process_table';
import { LogBuilder } from '../../agent/src/visibility';

const CT_MNT = 4026532600;
const ct: ContainerFacts = { id: 'c'.repeat(64), name: 'box', image: 'busybox', labels: {}, namespaceName: 'container_namespace' };
const resolver = (mntNs: number | undefined) => (mntNs === CT_MNT ? ct : undefined);

const meta: RuleMeta = {
  ruleId: 3,
  policyName: 'ksp-tool',
  policyType: 'MatchedPolicy',
  severity: 5,
  tags: [],
  message: '',
  action: 'Block',
  operation: 'Process',
  source: 'x.yaml',
};

/** A pid that no longer exists (a child reaped here): what a blocked exec's shell is by alert time. */
function deadPid(): number {
  const r = spawnSync('/bin/sh', ['-c', 'echo $$']);
  return Number(String(r.stdout).trim());
}

function decision(over: Partial<DecisionFacts>): DecisionFacts {
  return {
    timestampNs: 1n,
    pid: 4242,
    ppid: 4241,
    uid: 0,
    comm: 'sh',
    ruleId: 3,
    action: Action.Block,
    operation: OperationCode.Process,
    enforcer: EnforcerCode.Fanotify,
    ret: -1,
    flags: 0,
    resource: '/usr/bin/tool',
    exe: '/bin/sh',
    mntNs: CT_MNT,
    pidNs: 4026532601,
    ...over,
  };
}

const alerts = () => new AlertBuilder('node', new BootClock(1), new ProcessTable('/nonexistent-proc'), () => meta, resolver);

describe('namespacePids', () => {
  test('the record`s numbers win; nsPpid 0 (parent outside the namespace) is kept', () => {
    const never = () => {
      throw new Error('/proc must not be read when the record carries the numbers');
    };
    expect(namespacePids({ pid: 4242, ppid: 4241, nsPid: 7, nsPpid: 1 }, never)).toEqual({ pid: 7, ppid: 1 });
    expect(namespacePids({ pid: 4242, ppid: 4241, nsPid: 1, nsPpid: 0 }, never)).toEqual({ pid: 1, ppid: 0 });
  });

  test('without them (absent or 0): /proc as a last resort, the host pid when that fails', () => {
    const proc = (p: number) => (p === 4242 ? 9 : undefined);
    expect(namespacePids({ pid: 4242, ppid: 4241 }, proc)).toEqual({ pid: 9, ppid: 4241 });
    expect(namespacePids({ pid: 4242, ppid: 4241, nsPid: 0, nsPpid: 0 }, proc)).toEqual({ pid: 9, ppid: 4241 });
  });
});

describe('alerts and logs of a container process that has exited', () => {
  test('alert: PID/PPID from the record, HostPID/HostPPID the host numbers', () => {
    const gone = deadPid();
    const a = alerts().build(decision({ pid: gone, ppid: gone, nsPid: 12, nsPpid: 11 }))!;
    expect(a).toMatchObject({ ContainerName: 'box', PID: 12, PPID: 11, HostPID: gone, HostPPID: gone });
  });

  test('alert of a host process: the host numbers whatever the record says', () => {
    const a = alerts().build(decision({ mntNs: 4026531841, nsPid: 12, nsPpid: 11 }))!;
    expect(a).toMatchObject({ PID: 4242, PPID: 4241, HostPID: 4242, HostPPID: 4241 });
  });

  test('log record: PID/PPID from the record', () => {
    const gone = deadPid();
    const b = new LogBuilder('node', new BootClock(1), new ProcessTable('/nonexistent-proc'), resolver);
    const ev: ExecEvent = {
      kind: EventKind.Exec,
      timestampNs: 1n,
      pid: gone,
      tid: gone,
      ppid: gone,
      uid: 0,
      cgroupId: 1n,
      mntNs: CT_MNT,
      pidNs: 4026532601,
      comm: 'cat',
      nsPid: 5,
      nsPpid: 0,
      path: '/bin/cat',
      pathFlags: 0,
    };
    expect(b.exec(ev, '/bin/sh')).toMatchObject({ Type: 'ContainerLog', PID: 5, PPID: 0, HostPID: gone, HostPPID: gone });
  });
});
