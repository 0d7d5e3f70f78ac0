import type { KubeArmorAlert } from '../../agent/src/alerts';
import { formatAlert, formatPolicyList, formatStatus, table } from '../../agent/src/control/format';
import { matchesFilter, parseRequest, PROTOCOL_VERSION } from '../../agent/src/control/protocol';

const req = (o: Record<string, unknown>) => parseRequest(JSON.stringify({ version: PROTOCOL_VERSION, ...o }));

describe('parseRequest', () => {
  test('every op in its valid form', () => {
    expect(req({ op: 'status' })).toEqual({ ok: true, value: { version: 1, op: 'status' } });
    expect(req({ op: 'policy.list' })).toEqual({ ok: true, value: { version: 1, op: 'policy.list' } });
    expect(req({ op: 'policy.apply', files: [{ source: '/a.yaml', text: 'x' }] })).toEqual({
      ok: true,
      value: { version: 1, op: 'policy.apply', files: [{ source: '/a.yaml', text: 'x' }] },
    });
    expect(req({ op: 'policy.delete', names: ['a', 'b', 'a'] })).toEqual({ ok: true, value: { version: 1, op: 'policy.delete', names: ['a', 'b'] } });
    expect(req({ op: 'logs', follow: true, filter: { container: 'web', operation: 'File', policy: 'p' }, limit: 5 })).toEqual({
      ok: true,
      value: { version: 1, op: 'logs', follow: true, filter: { container: 'web', operation: 'File', policy: 'p' }, limit: 5 },
    });
    expect(req({ op: 'logs' })).toEqual({ ok: true, value: { version: 1, op: 'logs', follow: false, filter: {} } });
  });

  test.each([
    ['not JSON', '{op:', 'malformed', /not JSON/],
    ['not an object', '[1]', 'malformed', /JSON object/],
    ['no version', JSON.stringify({ op: 'status' }), 'version', /protocol version undefined is not supported \(this agent speaks 1\)/],
    ['another version', JSON.stringify({ version: 2, op: 'status' }), 'version', /protocol version 2/],
    ['unknown op', JSON.stringify({ version: 1, op: 'reboot' }), 'malformed', /unknown op "reboot"/],
    ['unknown key', JSON.stringify({ version: 1, op: 'status', force: true }), 'malformed', /status: unknown key "force"/],
    ['apply without files', JSON.stringify({ version: 1, op: 'policy.apply', files: [] }), 'malformed', /files must be a non-empty array/],
    ['apply file without text', JSON.stringify({ version: 1, op: 'policy.apply', files: [{ source: 'a' }] }), 'malformed', /files\[0\]/],
    ['delete with a number', JSON.stringify({ version: 1, op: 'policy.delete', names: [1] }), 'malformed', /names must be/],
    ['bad operation filter', JSON.stringify({ version: 1, op: 'logs', filter: { operation: 'Syscall' } }), 'malformed', /filter\.operation: must be one of Process, File, Network \(got "Syscall"\)/],
    ['empty container filter', JSON.stringify({ version: 1, op: 'logs', filter: { container: '' } }), 'malformed', /filter\.container/],
    ['bad limit', JSON.stringify({ version: 1, op: 'logs', limit: 0 }), 'malformed', /limit must be a positive integer/],
    ['follow not boolean', JSON.stringify({ version: 1, op: 'logs', follow: 'yes' }), 'malformed', /follow must be a boolean/],
  ])('%s is refused with a clear error', (_name, line, code, message) => {
    const r = parseRequest(line);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe(code);
      expect(r.error.message).toMatch(message);
    }
  });
});

function alert(over: Partial<KubeArmorAlert> = {}): KubeArmorAlert {
  return {
    Timestamp: 1,
    UpdatedTime: '2026-11-23T10:00:00.000000Z',
    HostName: 'h',
    HostPPID: 1,
    HostPID: 42,
    PPID: 1,
    PID: 42,
    UID: 0,
    ParentProcessName: '/bin/sh',
    ProcessName: '/usr/bin/curl',
    PolicyName: 'block-curl',
    Severity: '1',
    Tags: '',
    ATags: [],
    Message: '',
    Type: 'MatchedHostPolicy',
    Source: '/bin/sh',
    Operation: 'Process',
    Resource: '/usr/bin/curl',
    Data: '',
    Enforcer: 'fanotify',
    Action: 'Block',
    Result: 'Permission denied',
    ...over,
  };
}

const inWeb = {
  ContainerID: '0123456789abcdef0123',
  ContainerName: 'web',
  ContainerImage: 'nginx:1.25',
  Labels: 'app=web,tier=front',
  NamespaceName: 'container_namespace',
  Type: 'MatchedPolicy' as const,
};

describe('matchesFilter', () => {
  test('policy and operation match exactly', () => {
    expect(matchesFilter(alert(), { policy: 'block-curl', operation: 'Process' })).toBe(true);
    expect(matchesFilter(alert(), { policy: 'block' })).toBe(false);
    expect(matchesFilter(alert(), { operation: 'File' })).toBe(false);
  });

  test('container by name, full ID or an ID prefix of 6+ characters; "host" for host alerts', () => {
    const a = alert(inWeb);
    expect(matchesFilter(a, { container: 'web' })).toBe(true);
    expect(matchesFilter(a, { container: inWeb.ContainerID })).toBe(true);
    expect(matchesFilter(a, { container: '012345' })).toBe(true);
    expect(matchesFilter(a, { container: '01234' })).toBe(false); // too short a prefix to mean one container
    expect(matchesFilter(a, { container: 'db' })).toBe(false);
    expect(matchesFilter(a, { container: 'host' })).toBe(false);
    expect(matchesFilter(alert(), { container: 'host' })).toBe(true);
    expect(matchesFilter(alert(), { container: 'web' })).toBe(false);
  });
});

describe('formatting', () => {
  test('an alert line names the container ID, name, image and labels', () => {
    const line = formatAlert(alert(inWeb));
    expect(line).toContain('container=web id=0123456789ab image=nginx:1.25 labels=app=web,tier=front');
    expect(line).toContain('Block  block-curl  Process  /usr/bin/curl  /usr/bin/curl (pid 42)  Permission denied');
    expect(formatAlert(alert())).toMatch(/ {2}host$/);
  });

  test('a throttle summary says how many more there were', () => {
    const line = formatAlert({ ...alert(), Suppressed: 12, SuppressedSince: 'T0', SuppressedResources: {} } as KubeArmorAlert);
    expect(line).toMatch(/\[\+12 more since T0, not written one by one\]$/);
  });

  test('tables pad every column but the last', () => {
    expect(table(['A', 'BB'], [['xxx', 'y'], ['z', 'long value']])).toBe('A    BB\nxxx  y\nz    long value');
    expect(formatPolicyList([])).toBe('no policies in force');
    expect(formatPolicyList([{ name: 'p', kind: 'KubeArmorHostPolicy', action: 'Block', origin: 'applied', file: '/s/p.yaml' }])).toContain(
      'p     KubeArmorHostPolicy  -          Block   applied  /s/p.yaml',
    );
  });

  test('status shows the load errors and warnings', () => {
    const text = formatStatus({
      pid: 1,
      startedAt: 'S',
      socket: '/run/x.sock',
      backend: 'compat',
      policyDirectories: ['/a', '/b'],
      rulesInForce: 3,
      alerts: 5,
      alertsSuppressed: 2,
      processes: 9,
      containers: [],
      lastLoad: { files: 1, policies: 1, rules: 3, errors: ['bad.yaml: broken'], warnings: ['rule not in force'] },
    });
    expect(text).toMatch(/^policies: +1 in force, 3 rules \(from \/a, \/b\)$/m);
    expect(text).toMatch(/^alerts: +5 since start, 2 summarised by the throttle$/m);
    expect(text).toMatch(/^error: +bad\.yaml: broken$/m);
    expect(text).toMatch(/^warning: +rule not in force$/m);
    expect(text).not.toMatch(/self-protection/);
  });

  test('status shows self-protection refusals by kind when it is in force', () => {
    const text = formatStatus({
      pid: 1,
      startedAt: 'S',
      socket: '/run/x.sock',
      backend: 'bpf-lsm',
      policyDirectories: ['/a'],
      rulesInForce: 0,
      alerts: 0,
      alertsSuppressed: 0,
      processes: 1,
      containers: [],
      selfProtection: { refused: { signal: 2, cgroup: 1 } },
    });
    expect(text).toMatch(/^self-protection: in force, refused signal 2, cgroup 1$/m);
  });

  test('status names container starts that went around the runtime hook (latest three), and nothing when there were none', () => {
    const base = { pid: 1, startedAt: 'S', socket: '/s', backend: 'compat', policyDirectories: ['/a'], rulesInForce: 0, alerts: 0, alertsSuppressed: 0, processes: 1, containers: [] };
    const start = (n: number) => ({ id: `${n}`.repeat(64).slice(0, 64), name: `c${n}`, image: 'img', runtime: n === 4 ? '' : 'runc', at: `T${n}` });
    const text = formatStatus({ ...base, containersStartedWithoutHook: { count: 4, recent: [1, 2, 3, 4].map(start) } });
    expect(text).toMatch(/^unhooked: +4 container start\(s\) without the runtime hook \(first program ran before the rules\): c2 \(222222222222\) runtime runc at T2; c3 \(333333333333\) runtime runc at T3; c4 \(444444444444\) runtime \? at T4$/m);
    expect(formatStatus({ ...base, containersStartedWithoutHook: { count: 0, recent: [] } })).not.toMatch(/unhooked/);
  });
});
