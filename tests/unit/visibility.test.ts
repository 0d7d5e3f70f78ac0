// Telemetry log records (config visibility): their KubeArmor shape for an
// exec, an open and network calls, on the host and in a container; Result
// texts; the throttle applied to them; the logs filter of the control socket.
import { EventKind, NetOp } from '../../agent/src/abi';
import { BootClock, ContainerFacts, KubeArmorAlert } from '../../agent/src/alerts';
import { matchesFilter, parseRequest } from '../../agent/src/control/protocol';
import { formatRecord } from '../../agent/src/control/format';
import type { ExecEvent, FileOpenEvent, NetEvent } from '../../agent/src/events';
import { ProcessTable } from '../../agent/src/process_table';
import {
  describeNet,
  isLogRecord,
  KubeArmorLog,
  KubeArmorLogSummary,
  LogBuilder,
  LogThrottle,
  resultText,
  socketTypeName,
  visibilityEnabled,
} from '../../agent/src/visibility';

const HOST_MNT = 4026531841;
const WEB_MNT = 4026532500;
const web: ContainerFacts = { id: 'f'.repeat(64), name: 'web', image: 'nginx:1', labels: { tier: 'edge', app: 'web' }, namespaceName: 'edge-ns' };

const header = (over: Partial<ExecEvent> = {}) => ({
  timestampNs: 5_000_000_000n,
  pid: 100,
  tid: 100,
  ppid: 50,
  uid: 1000,
  cgroupId: 1n,
  mntNs: HOST_MNT,
  pidNs: 1,
  comm: 'sh',
  ...over,
});

function builder(): LogBuilder {
  const table = new ProcessTable('/nonexistent-proc');
  table.onExec(50, 1, 0, '/usr/bin/bash', 'bash');
  table.onExec(100, 50, 1000, '/bin/sh', 'sh');
  // boot 1000 s before "now" = 2_000_000 ms: 5 s after boot is 1_005_000 ms
  const clock = new BootClock(1000, 2_000_000);
  return new LogBuilder('node-1', clock, table, (mntNs) => (mntNs === WEB_MNT ? web : undefined));
}

const exec = (over: Partial<ExecEvent> = {}): ExecEvent => ({ ...header(over), kind: EventKind.Exec, path: '/usr/bin/curl', pathFlags: 0, ...over });
const open = (over: Partial<FileOpenEvent> = {}): FileOpenEvent => ({
  ...header(),
  kind: EventKind.FileOpen,
  flags: 0o1101, // O_WRONLY|O_CREAT|O_TRUNC
  ret: 3,
  path: '/etc/passwd',
  pathFlags: 0,
  ...over,
});
const net = (over: Partial<NetEvent> = {}): NetEvent => ({
  ...header(),
  kind: EventKind.Net,
  op: NetOp.Socket,
  family: 2,
  sockType: 1 | 0o4000 | 0o2000000,
  protocol: 6,
  port: 0,
  ret: 4,
  addr: '',
  ...over,
});

describe('LogBuilder', () => {
  test('a host exec: HostLog, the new program as ProcessName and Resource, the caller as Source, no container fields', () => {
    const l = builder().exec(exec(), '/bin/sh');
    expect(l).toEqual({
      Timestamp: 1005,
      UpdatedTime: '1970-01-01T00:16:45.000000Z',
      HostName: 'node-1',
      HostPPID: 50,
      HostPID: 100,
      PPID: 50,
      PID: 100,
      UID: 1000,
      ParentProcessName: '/usr/bin/bash',
      ProcessName: '/usr/bin/curl',
      Type: 'HostLog',
      Source: '/bin/sh',
      Operation: 'Process',
      Resource: '/usr/bin/curl',
      Data: 'syscall=SYS_EXECVE',
      Result: 'Passed',
    });
    expect(isLogRecord(l)).toBe(true);
    // no alert fields: a log names no policy, action or enforcer
    for (const k of ['PolicyName', 'Action', 'Enforcer', 'Severity', 'ContainerID']) expect(l).not.toHaveProperty(k);
  });

  test('an exec whose caller is unknown names the command (comm) as Source', () => {
    expect(builder().exec(exec(), undefined).Source).toBe('sh');
  });

  test('a container exec: ContainerLog with ContainerID, ContainerName, ContainerImage, sorted Labels and NamespaceName', () => {
    // pid 999999999 has no /proc entry: PID falls back to the host pid, as alerts do
    const l = builder().exec(exec({ mntNs: WEB_MNT, pid: 999_999_999, ppid: 999_999_998 }), '/bin/sh');
    expect(l).toMatchObject({
      Type: 'ContainerLog',
      ContainerID: web.id,
      ContainerName: 'web',
      ContainerImage: 'nginx:1',
      Labels: 'app=web,tier=edge',
      NamespaceName: 'edge-ns',
      HostPID: 999_999_999,
      PID: 999_999_999,
      Operation: 'Process',
    });
  });

  test('a container process reports its pid inside the container (read once, forgotten at exit)', () => {
    const b = builder();
    // this test's own process: NSpid's last field is the pid in its own namespace
    const l = b.exec(exec({ mntNs: WEB_MNT, pid: process.pid, ppid: process.ppid }), '/bin/sh');
    expect(l.HostPID).toBe(process.pid);
    expect(l.PID).toBe(process.pid); // jest runs in the host pid namespace
    b.forget(process.pid);
    expect(b.exec(exec({ mntNs: WEB_MNT, pid: process.pid }), '/bin/sh').PID).toBe(process.pid);
  });

  test('an open: File, the path, the flags in Data, the acting program as ProcessName and Source', () => {
    expect(builder().open(open())).toMatchObject({
      Type: 'HostLog',
      Operation: 'File',
      Resource: '/etc/passwd',
      Data: 'syscall=SYS_OPEN flags=O_WRONLY|O_CREAT|O_TRUNC',
      Result: 'Passed',
      ProcessName: '/bin/sh',
      Source: '/bin/sh',
      ParentProcessName: '/usr/bin/bash',
    });
  });

  test('a failed open reports the error as Result', () => {
    expect(builder().open(open({ ret: -2, flags: 0 }))).toMatchObject({ Result: 'No such file or directory', Data: 'syscall=SYS_OPEN flags=O_RDONLY' });
    expect(builder().open(open({ ret: -13 })).Result).toBe('Permission denied');
  });

  test('network calls: socket with domain/type/protocol, connect with the remote address', () => {
    expect(builder().net(net())).toMatchObject({
      Operation: 'Network',
      Resource: 'domain=AF_INET type=SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC protocol=6',
      Data: 'syscall=SYS_SOCKET',
      Result: 'Passed',
    });
    expect(builder().net(net({ op: NetOp.Connect, port: 443, addr: '10.0.0.1', ret: -111, mntNs: WEB_MNT }))).toMatchObject({
      Type: 'ContainerLog',
      ContainerName: 'web',
      Resource: 'sa_family=AF_INET sin_port=443 sin_addr=10.0.0.1',
      Data: 'syscall=SYS_CONNECT',
      Result: 'Connection refused',
    });
  });
});

describe('record pieces', () => {
  test('Result: Passed, strerror text, errno name, number', () => {
    expect(resultText(0)).toBe('Passed');
    expect(resultText(7)).toBe('Passed');
    expect(resultText(-1)).toBe('Operation not permitted');
    expect(resultText(-115)).toBe('Operation now in progress');
    expect(resultText(-7)).toBe('E2BIG');
    expect(resultText(-4000)).toBe('errno 4000');
  });

  test('socket types and every network call', () => {
    expect(socketTypeName(2)).toBe('SOCK_DGRAM');
    expect(socketTypeName(9)).toBe('SOCK_9');
    const base = { family: 10, sockType: 1, protocol: 0, port: 8080, addr: '::1' };
    expect(describeNet({ ...base, op: NetOp.Bind })).toEqual({ resource: 'sa_family=AF_INET6 sin6_port=8080 sin6_addr=::1', data: 'syscall=SYS_BIND' });
    expect(describeNet({ ...base, op: NetOp.Listen, addr: '' })).toEqual({ resource: 'sa_family=AF_INET6 sin6_port=8080', data: 'syscall=SYS_LISTEN' });
    expect(describeNet({ ...base, op: NetOp.Accept, family: 2, addr: '1.2.3.4' }).data).toBe('syscall=SYS_ACCEPT');
    expect(describeNet({ ...base, op: NetOp.Connect, family: 1, addr: '' }).resource).toBe('sa_family=AF_UNIX');
    expect(describeNet({ ...base, op: NetOp.Socket, family: 42 }).resource).toBe('domain=AF_42 type=SOCK_STREAM protocol=0');
  });

  test('visibilityEnabled: any group', () => {
    expect(visibilityEnabled({ process: false, file: false, network: false })).toBe(false);
    expect(visibilityEnabled({ process: false, file: false, network: true })).toBe(true);
  });
});

describe('LogThrottle', () => {
  test('beyond maxAlerts per window, one summary per container names the logs left out, never a policy', () => {
    const out: Array<KubeArmorLog | KubeArmorLogSummary> = [];
    const t = new LogThrottle({ enabled: true, maxAlerts: 2, windowMs: 1000 }, (l) => out.push(l));
    const b = builder();
    for (let i = 0; i < 5; i++) t.offer(b.open(open({ path: `/tmp/f${i % 2}` })));
    // the container has its own window
    t.offer(b.open(open({ mntNs: WEB_MNT, pid: 999_999_999 })));
    expect(out).toHaveLength(3);
    t.flush();
    const summary = out.find((l) => 'Suppressed' in l) as KubeArmorLogSummary;
    expect(summary).toMatchObject({ Type: 'HostLog', Suppressed: 3, SuppressedResources: { 'File /tmp/f0': 2, 'File /tmp/f1': 1 } });
    expect(summary.Message).toMatch(/^3 more log record\(s\) of the host since .* were not written one by one \(alerts.throttle: at most 2 per 1000 ms\)/);
    expect(summary).not.toHaveProperty('PolicyName');
    expect(t.stats()).toEqual({ passed: 3, suppressed: 3, summaries: 1 });
    expect(formatRecord(summary)).toMatch(/HostLog {2}File {2}\/tmp\/f0 {2}\/bin\/sh \(pid 100\) {2}Passed {2}host {2}\[\+3 more since/);
  });

  test('alerts.throttle.enabled false lets every log record through', () => {
    const out: KubeArmorLog[] = [];
    const t = new LogThrottle({ enabled: false, maxAlerts: 1, windowMs: 1000 }, (l) => out.push(l));
    for (let i = 0; i < 4; i++) t.offer(builder().exec(exec(), '/bin/sh'));
    expect(out).toHaveLength(4); // throttle disabled: every record passes
  });
});

describe('edgeward logs filter', () => {
  const alert = { Type: 'MatchedHostPolicy', PolicyName: 'p', Operation: 'Process' } as unknown as KubeArmorAlert;
  const hostLog = builder().exec(exec(), '/bin/sh');
  const webLog = builder().open(open({ mntNs: WEB_MNT, pid: 999_999_999 }));

  test('without a type: alerts only (as before visibility existed)', () => {
    expect(matchesFilter(alert, {})).toBe(true);
    expect(matchesFilter(hostLog, {})).toBe(false);
  });

  test('type log: logs only; all: both; a policy filter asks for alerts', () => {
    expect(matchesFilter(hostLog, { type: 'log' })).toBe(true);
    expect(matchesFilter(alert, { type: 'log' })).toBe(false);
    expect(matchesFilter(alert, { type: 'all' })).toBe(true);
    expect(matchesFilter(hostLog, { type: 'all' })).toBe(true);
    expect(matchesFilter(hostLog, { type: 'all', policy: 'p' })).toBe(false);
  });

  test('container and operation filters apply to logs', () => {
    expect(matchesFilter(webLog, { type: 'log', container: 'web' })).toBe(true);
    expect(matchesFilter(webLog, { type: 'log', container: 'host' })).toBe(false);
    expect(matchesFilter(hostLog, { type: 'log', container: 'host' })).toBe(true);
    expect(matchesFilter(webLog, { type: 'log', operation: 'Process' })).toBe(false);
    expect(matchesFilter(webLog, { type: 'log', operation: 'File' })).toBe(true);
  });

  test('the request carries the type; a bad type is refused with the choices', () => {
    const req = (filter: unknown) => parseRequest(JSON.stringify({ version: 1, op: 'logs', follow: true, filter }));
    expect(req({ type: 'log' })).toEqual({ ok: true, value: { version: 1, op: 'logs', follow: true, filter: { type: 'log' } } });
    const bad = req({ type: 'logs' });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error.message).toBe('filter.type: must be one of alert, log, all (got "logs")');
  });

  test('one line per log record: time, type, operation, resource, process (its command when the table does not know it), result, where', () => {
    expect(formatRecord(webLog)).toBe(
      `${webLog.UpdatedTime}  ContainerLog  File  /etc/passwd  sh (pid 999999999)  Passed  container=web id=ffffffffffff image=nginx:1 labels=app=web,tier=edge`,
    );
  });
});
