// bpf-lsm path-hook decisions (unlink, rename, ...): their File decision
// flags carry the hook (bits 24+, bpf/include/ew_lsm_abi.h) and the alert
// names it.
import * as fs from 'fs';
import * as path from 'path';

import { Action, EnforcerCode, OperationCode } from '../../agent/src/abi';
import { AlertBuilder, BootClock, DecisionFacts } from '../../agent/src/alerts';
import { LSM_PATH_OP_SHIFT, LSM_PATH_OPERATIONS, lsmPathOperation } from '../../agent/src/events';
import type { RuleMeta } from '../../agent/src/policy/types';
import { ProcessTable } from '../../agent/src/process_table';

const HEADER = path.join(__dirname, '..', '..', 'bpf', 'include', 'ew_lsm_abi.h');
const O_WRONLY = 1;

/** enum ew_lsm_path_hook as the kernel side declares it: name -> value. */
function headerHooks(): Map<string, number> {
  const text = fs.readFileSync(HEADER, 'utf8');
  const body = /enum ew_lsm_path_hook \{([^}]*)\}/.exec(text);
  if (!body) throw new Error(`enum ew_lsm_path_hook not found in ${HEADER}`);
  const hooks = new Map<string, number>();
  for (const m of body[1].matchAll(/EW_LSM_HOOK_(\w+)\s*=\s*(\d+)/g)) hooks.set(m[1].toLowerCase(), Number(m[2]));
  return hooks;
}

describe('lsmPathOperation', () => {
  test('decodes every hook of the kernel header, with the header shift', () => {
    const hooks = headerHooks();
    expect([...hooks.keys()].sort()).toEqual([...LSM_PATH_OPERATIONS].sort());
    expect(fs.readFileSync(HEADER, 'utf8')).toMatch(new RegExp(`#define EW_LSM_PATH_OP_SHIFT ${LSM_PATH_OP_SHIFT}\\b`));
    for (const [name, value] of hooks) expect(lsmPathOperation(O_WRONLY | (value << LSM_PATH_OP_SHIFT))).toBe(name);
  });

  test.each([
    ['a plain write open', O_WRONLY],
    ['an open with O_LARGEFILE and a high kernel-internal bit (FMODE_NONOTIFY)', O_WRONLY | 0o100000 | 0x4000000],
    ['a read-only open with a high bit', 0x4000000],
    ['a hook past the last', O_WRONLY | (11 << LSM_PATH_OP_SHIFT)],
    ['a negative int32 (bit 31)', O_WRONLY | (0x80 << LSM_PATH_OP_SHIFT)],
  ])('%s is not a path operation', (_what, flags) => expect(lsmPathOperation(flags)).toBeUndefined());
});

describe('alerts of path-hook decisions', () => {
  const meta: RuleMeta = {
    ruleId: 9,
    policyName: 'protect-etc',
    policyType: 'MatchedHostPolicy',
    severity: 3,
    tags: [],
    message: '',
    action: 'Block',
    operation: 'File',
    source: 'x.yaml',
  };
  const builder = () => new AlertBuilder('node-1', new BootClock(1000, 2_000_000), new ProcessTable('/nonexistent-proc'), (id) => (id === 9 ? meta : undefined));
  const decision = (over: Partial<DecisionFacts>): DecisionFacts => ({
    timestampNs: 1n,
    pid: 100,
    ppid: 50,
    uid: 0,
    comm: 'rm',
    ruleId: 9,
    action: Action.Block,
    operation: OperationCode.File,
    enforcer: EnforcerCode.BpfLsm,
    ret: -1,
    flags: O_WRONLY,
    resource: '/etc/x',
    exe: '/usr/bin/rm',
    ...over,
  });

  test.each([...headerHooks()])('%s: Data names the LSM hook, Operation stays File', (name, value) => {
    const a = builder().build(decision({ flags: O_WRONLY | (value << LSM_PATH_OP_SHIFT) }))!;
    expect(a).toMatchObject({ Operation: 'File', Data: `lsm=SECURITY_PATH_${name.toUpperCase()}`, Resource: '/etc/x', Result: 'Permission denied' });
  });

  test('an open decided by bpf-lsm keeps the open flags', () => {
    expect(builder().build(decision({ flags: O_WRONLY | 0o100000 }))!.Data).toBe('syscall=SYS_OPEN flags=O_WRONLY');
  });

  test('the same bits from another enforcer are open flags', () => {
    const a = builder().build(decision({ enforcer: EnforcerCode.Fanotify, flags: O_WRONLY | (7 << LSM_PATH_OP_SHIFT) }))!;
    expect(a.Data).toBe('syscall=SYS_OPEN flags=O_WRONLY');
  });
});
