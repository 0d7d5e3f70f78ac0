// Pure parts of the bpf-lsm capability rules: names to kernel numbers and
// CapabilityRule -> kernel entry conversion (agent/src/lsm_capable.ts).
import * as fs from 'fs';

import { Action } from '../../agent/src/abi';
import { CAP_MAX_ENTRIES, CAPABILITY_NUMBERS, capabilityName, capabilityNumber, toNativeCapRules } from '../../agent/src/lsm_capable';
import type { ExecutableResolve } from '../../agent/src/net_enforcer';
import type { CapabilityRule, WorkloadTarget } from '../../agent/src/policy/types';

const rule = (over: Partial<CapabilityRule> = {}): CapabilityRule => ({
  ruleId: 7,
  action: 'Block',
  operation: 'Capabilities',
  capability: 'net_raw',
  fromSource: [],
  ...over,
});

const inodes: Record<string, { dev: bigint; ino: bigint }> = {
  '/usr/bin/ping': { dev: 0x800001n, ino: 1234n },
  '/usr/bin/python3.11': { dev: 0x800001n, ino: 5678n },
};
const resolve: ExecutableResolve = (p, w) => {
  const hit = inodes[w ? `${w.containerName}:${p}` : p];
  if (!hit) throw new Error(`${p}: ENOENT`);
  return hit;
};

const container: WorkloadTarget = { mntNs: 4026532000, pidNs: 4026532001, pid: 4242, containerId: 'c1', containerName: 'web' };

describe('capability numbers', () => {
  it("follows the kernel's list (include/uapi/linux/capability.h)", () => {
    expect(capabilityNumber('chown')).toBe(0);
    expect(capabilityNumber('net_bind_service')).toBe(10);
    expect(capabilityNumber('net_raw')).toBe(13);
    expect(capabilityNumber('sys_admin')).toBe(21);
    expect(capabilityNumber('audit_read')).toBe(37);
    expect(capabilityNumber('checkpoint_restore')).toBe(40);
    const numbers = Object.values(CAPABILITY_NUMBERS).sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: 41 }, (_, i) => i)); // no gap, no duplicate
  });

  it("agrees with the kernel headers' CAP_* defines when they are installed", () => {
    const header = '/usr/include/linux/capability.h';
    if (!fs.existsSync(header)) throw new Error(`${header} missing (install linux-libc-dev)`);
    const defines = new Map<string, number>();
    for (const m of fs.readFileSync(header, 'utf8').matchAll(/^#define CAP_([A-Z_]+)\s+(\d+)\s*$/gm)) defines.set(m[1], Number(m[2]));
    defines.delete('LAST_CAP');
    expect(defines.size).toBeGreaterThanOrEqual(41);
    for (const [name, n] of defines) expect([name, capabilityNumber(name)]).toEqual([name, n]);
  });

  it('accepts CAP_ prefixes and any case, and knows no other names', () => {
    expect(capabilityNumber('CAP_NET_RAW')).toBe(13);
    expect(capabilityNumber('Net_Admin')).toBe(12);
    expect(capabilityNumber('net-raw')).toBeUndefined();
    expect(capabilityNumber('toString')).toBeUndefined();
    expect(capabilityNumber('')).toBeUndefined();
    expect(capabilityNumber(13)).toBeUndefined();
    expect(capabilityName(13)).toBe('CAP_NET_RAW');
    expect(capabilityName(99)).toBeUndefined();
  });
});

describe('toNativeCapRules', () => {
  it('makes one any-source host entry for a rule without fromSource', () => {
    expect(toNativeCapRules([rule()], resolve)).toEqual({
      rules: [{ ruleId: 7, action: Action.Block, cap: 13, workload: 0n, srcDev: 0n, srcIno: 0n }],
      errors: [],
    });
    expect(toNativeCapRules([rule({ action: 'Audit', capability: 'sys_admin' })], resolve).rules).toEqual([
      { ruleId: 7, action: Action.Audit, cap: 21, workload: 0n, srcDev: 0n, srcIno: 0n },
    ]);
  });

  it('makes one entry per fromSource executable, keyed by inode', () => {
    const r = toNativeCapRules(
      [rule({ fromSource: [{ kind: 'path', path: '/usr/bin/ping' }, { kind: 'path', path: '/usr/bin/python3.11' }] })],
      resolve,
    );
    expect(r.errors).toEqual([]);
    expect(r.rules).toEqual([
      { ruleId: 7, action: Action.Block, cap: 13, workload: 0n, srcDev: 0x800001n, srcIno: 1234n },
      { ruleId: 7, action: Action.Block, cap: 13, workload: 0n, srcDev: 0x800001n, srcIno: 5678n },
    ]);
  });

  it('never widens a sourced rule to every process when its sources cannot be resolved', () => {
    const r = toNativeCapRules(
      [rule({ ruleId: 9, fromSource: [{ kind: 'path', path: '/nope' }, { kind: 'dir', path: '/usr/bin/', recursive: false }] })],
      resolve,
    );
    expect(r.rules).toEqual([]);
    expect(r.errors).toEqual([
      'capability rule 9 (#0): fromSource /nope is not enforced: /nope: ENOENT',
      expect.stringMatching(/^capability rule 9 \(#0\): fromSource dir \/usr\/bin\/ is not enforced by bpf-lsm/),
      'capability rule 9 (#0): no usable fromSource entry; rule not enforced',
    ]);
  });

  it('keeps the usable sources of a rule and names the others', () => {
    const r = toNativeCapRules([rule({ fromSource: [{ kind: 'path', path: '/usr/bin/ping' }, { kind: 'path', path: '/gone' }] })], resolve);
    expect(r.rules).toEqual([{ ruleId: 7, action: Action.Block, cap: 13, workload: 0n, srcDev: 0x800001n, srcIno: 1234n }]);
    expect(r.errors).toEqual(['capability rule 7 (#0): fromSource /gone is not enforced: /gone: ENOENT']);
  });

  it('converts Allow rules; names unknown capabilities and bad actions or ids, per rule', () => {
    const r = toNativeCapRules(
      [
        rule({ ruleId: 1, capability: 'net_rawr' }),
        rule({ ruleId: 2, action: 'Allow' }),
        rule({ ruleId: 3, action: 'Deny' as never }),
        rule({ ruleId: -1 }),
        rule({ ruleId: 5, capability: 'kill' }),
      ],
      resolve,
    );
    expect(r.rules).toEqual([
      { ruleId: 2, action: Action.Allow, cap: 13, workload: 0n, srcDev: 0n, srcIno: 0n },
      { ruleId: 5, action: Action.Block, cap: 5, workload: 0n, srcDev: 0n, srcIno: 0n },
    ]);
    expect(r.errors).toEqual([
      'capability rule 1 (#0): unknown capability "net_rawr" (the kernel\'s names, e.g. net_raw, sys_admin); rule not enforced',
      'capability rule 3 (#2): action must be Block, Audit or Allow, got Deny',
      'capability rule #3: ruleId must be an integer in 0..4294967295, got -1',
    ]);
  });

  it('keeps Block over Audit when two rules give the same entry', () => {
    const r = toNativeCapRules([rule({ ruleId: 1, action: 'Audit' }), rule({ ruleId: 2, action: 'Block' }), rule({ ruleId: 3, action: 'Audit' })], resolve);
    expect(r.rules).toEqual([{ ruleId: 2, action: Action.Block, cap: 13, workload: 0n, srcDev: 0n, srcIno: 0n }]);
  });

  it('scopes container rules to the container and refuses unresolved ones', () => {
    inodes['web:/bin/ping'] = { dev: 0x1n, ino: 99n };
    const selector = { matchLabels: { app: 'web' }, matchExpressions: [] };
    const r = toNativeCapRules(
      [
        rule({ ruleId: 1, scope: { kind: 'containers', selector }, workload: container }),
        rule({ ruleId: 2, scope: { kind: 'containers', selector }, workload: container, fromSource: [{ kind: 'path', path: '/bin/ping' }] }),
        rule({ ruleId: 3, scope: { kind: 'containers', selector } }),
        rule({ ruleId: 4, scope: { kind: 'containers', selector }, workload: { ...container, mntNs: 0 } }),
      ],
      resolve,
    );
    expect(r.rules).toEqual([
      { ruleId: 1, action: Action.Block, cap: 13, workload: 4026532000n, srcDev: 0n, srcIno: 0n },
      { ruleId: 2, action: Action.Block, cap: 13, workload: 4026532000n, srcDev: 0x1n, srcIno: 99n },
    ]);
    expect(r.errors).toEqual([
      'capability rule 3 (#2): a container rule not resolved to a container; not enforced',
      'capability rule 4 (#3, container web): container web has no usable mount namespace; not enforced',
    ]);
  });

  it('has the kernel map capacity as its limit constant', () => {
    const src = fs.readFileSync(`${__dirname}/../../bpf/include/ew_capable_abi.h`, 'utf8');
    expect(src).toMatch(new RegExp(`#define EW_CAP_MAX_ENTRIES ${CAP_MAX_ENTRIES}\\b`));
  });
});
