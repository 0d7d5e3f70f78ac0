// Allow-list mode of the bpf-lsm capability rules, pure parts
// (agent/src/lsm_capable.ts): Allow rules become kernel entries beside
// Audit ones, Block replaces both, and each workload in allow-list mode
// gets one posture entry.
import { Action } from '../../agent/src/abi';
import { toNativeCapPostures, toNativeCapRules } from '../../agent/src/lsm_capable';
import type { ExecutableResolve } from '../../agent/src/net_enforcer';
import type { CapabilityRule, WorkloadTarget } from '../../agent/src/policy/types';

const rule = (over: Partial<CapabilityRule> = {}): CapabilityRule => ({
  ruleId: 7,
  action: 'Allow',
  operation: 'Capabilities',
  capability: 'net_raw',
  fromSource: [],
  ...over,
});
const resolve: ExecutableResolve = (p) => {
  if (p === '/usr/bin/ping') return { dev: 0x800001n, ino: 1234n };
  throw new Error(`${p}: ENOENT`);
};
const container: WorkloadTarget = { mntNs: 4026532000, pidNs: 4026532001, pid: 4242, containerId: 'c1', containerName: 'web' };

describe('toNativeCapRules with Allow rules', () => {
  it('makes an Allow entry (action 3), sourced or not', () => {
    const r = toNativeCapRules([rule(), rule({ ruleId: 8, fromSource: [{ kind: 'path', path: '/usr/bin/ping' }] })], resolve);
    expect(r.errors).toEqual([]);
    expect(r.rules).toEqual([
      { ruleId: 7, action: Action.Allow, cap: 13, workload: 0n, srcDev: 0n, srcIno: 0n },
      { ruleId: 8, action: Action.Allow, cap: 13, workload: 0n, srcDev: 0x800001n, srcIno: 1234n },
    ]);
  });

  it('keeps Allow and Audit of one key, Block alone when there is one, the first rule per action', () => {
    expect(toNativeCapRules([rule({ ruleId: 1 }), rule({ ruleId: 2, action: 'Audit' }), rule({ ruleId: 3 })], resolve).rules.map((e) => [e.ruleId, e.action])).toEqual([
      [1, Action.Allow],
      [2, Action.Audit],
    ]);
    expect(toNativeCapRules([rule({ ruleId: 1 }), rule({ ruleId: 2, action: 'Block' }), rule({ ruleId: 3, action: 'Audit' })], resolve).rules.map((e) => [e.ruleId, e.action])).toEqual([
      [2, Action.Block],
    ]);
  });

  it('leaves out an Allow rule whose sources all fail (narrower, never wider)', () => {
    const r = toNativeCapRules([rule({ fromSource: [{ kind: 'path', path: '/gone' }] })], resolve);
    expect(r.rules).toEqual([]);
    expect(r.errors).toEqual(['capability rule 7 (#0): fromSource /gone is not enforced: /gone: ENOENT', 'capability rule 7 (#0): no usable fromSource entry; rule not enforced']);
  });

  it('still refuses other actions, naming them', () => {
    expect(toNativeCapRules([rule({ action: 'Deny' as never })], resolve).errors).toEqual(['capability rule 7 (#0): action must be Block, Audit or Allow, got Deny']);
  });
});

describe('toNativeCapPostures', () => {
  it('one entry per workload with a capabilities posture: the host as 0n, a container by its mount namespace', () => {
    const r = toNativeCapPostures([
      { postures: { capabilities: { ruleId: 90, category: 'capabilities', action: 'Block', scopeKind: 'host' } } },
      { workload: container, postures: { capabilities: { ruleId: 91, category: 'capabilities', action: 'Audit', scopeKind: 'containers' } } },
      { workload: { ...container, mntNs: 5 }, postures: { file: { ruleId: 92, category: 'file', action: 'Block', scopeKind: 'containers' } } },
    ]);
    expect(r.errors).toEqual([]);
    expect(r.postures).toEqual([
      { workload: 0n, ruleId: 90, action: Action.Block },
      { workload: 4026532000n, ruleId: 91, action: Action.Audit },
    ]);
  });

  it('names a posture it cannot enforce', () => {
    const r = toNativeCapPostures([
      { workload: { ...container, mntNs: 0 }, postures: { capabilities: { ruleId: 91, category: 'capabilities', action: 'Audit', scopeKind: 'containers' } } },
      { postures: { capabilities: { ruleId: 90, category: 'capabilities', action: 'Allow' as never, scopeKind: 'host' } } },
    ]);
    expect(r.postures).toEqual([]);
    expect(r.errors).toEqual([
      'container web: no usable mount namespace; capabilities allow-list not enforced',
      expect.stringMatching(/^host: capabilities default posture .* is not Block or Audit with a rule id; allow-list not enforced$/),
    ]);
  });
});
