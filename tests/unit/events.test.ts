// decodeBatch on crafted records: every kind, batches, and malformed input
// (truncated, garbage, bad sizes) that must be counted, never thrown or looped on.
import { EventKind, EW_ABI_VERSION, EW_STR_AS_GIVEN, EW_STR_TRUNCATED, NetOp } from '../../agent/src/abi';
import { decodeBatch, DecisionEvent, EVENT_LAYOUT as L, ExecEvent, ExitEvent, FileOpenEvent, ForkEvent, ipv6, NetEvent } from '../../agent/src/events';

interface HeaderFields {
  kind: number;
  size: number;
  abi?: number;
  ts?: bigint;
  pid?: number;
  tid?: number;
  ppid?: number;
  uid?: number;
  cgroup?: bigint;
  mntNs?: number;
  pidNs?: number;
  comm?: string | Buffer;
  nsPid?: number;
  nsPpid?: number;
}

function header(buf: Buffer, h: HeaderFields): void {
  buf.writeUInt16LE(h.kind, L['ew_event_header.kind']);
  buf.writeUInt16LE(h.size, L['ew_event_header.size']);
  buf.writeUInt32LE(h.abi ?? EW_ABI_VERSION, L['ew_event_header.abi_version']);
  buf.writeBigUInt64LE(h.ts ?? 123456789012345n, L['ew_event_header.timestamp_ns']);
  buf.writeUInt32LE(h.pid ?? 100, L['ew_event_header.pid']);
  buf.writeUInt32LE(h.tid ?? 101, L['ew_event_header.tid']);
  buf.writeUInt32LE(h.ppid ?? 1, L['ew_event_header.ppid']);
  buf.writeUInt32LE(h.uid ?? 1000, L['ew_event_header.uid']);
  buf.writeBigUInt64LE(h.cgroup ?? 0x1_0000_0001n, L['ew_event_header.cgroup_id']);
  buf.writeUInt32LE(h.mntNs ?? 4026531841, L['ew_event_header.mnt_ns']);
  buf.writeUInt32LE(h.pidNs ?? 4026531836, L['ew_event_header.pid_ns']);
  const comm = typeof h.comm === 'string' || h.comm === undefined ? Buffer.from(h.comm ?? 'cat') : h.comm;
  comm.copy(buf, L['ew_event_header.comm'], 0, Math.min(comm.length, L['sizeof.ew_event_header.comm']));
  buf.writeUInt32LE(h.nsPid ?? 0, L['ew_event_header.ns_pid']);
  buf.writeUInt32LE(h.nsPpid ?? 0, L['ew_event_header.ns_ppid']);
}

function execRecord(path: string, opts: Partial<HeaderFields> & { flags?: number; pathLen?: number } = {}): Buffer {
  const p = Buffer.from(path);
  const size = L['ew_exec_event.path'] + p.length + 1;
  const buf = Buffer.alloc(size);
  header(buf, { kind: EventKind.Exec, size, ...opts });
  buf.writeUInt32LE(opts.pathLen ?? p.length, L['ew_exec_event.path_len']);
  buf.writeUInt32LE(opts.flags ?? 0, L['ew_exec_event.path_flags']);
  p.copy(buf, L['ew_exec_event.path']);
  return buf;
}

function forkRecord(childPid: number, childTid: number, opts: Partial<HeaderFields> = {}): Buffer {
  const size = L['sizeof.ew_fork_event'];
  const buf = Buffer.alloc(size);
  header(buf, { kind: EventKind.Fork, size, ...opts });
  buf.writeUInt32LE(childPid, L['ew_fork_event.child_pid']);
  buf.writeUInt32LE(childTid, L['ew_fork_event.child_tid']);
  return buf;
}

function exitRecord(code: number, opts: Partial<HeaderFields> = {}): Buffer {
  const size = L['sizeof.ew_exit_event'];
  const buf = Buffer.alloc(size);
  header(buf, { kind: EventKind.Exit, size, ...opts });
  buf.writeUInt32LE(code, L['ew_exit_event.exit_code']);
  return buf;
}

function fileRecord(path: string, flags: number, ret: number, pathFlags = 0): Buffer {
  const p = Buffer.from(path);
  const size = L['ew_file_event.path'] + p.length + 1;
  const buf = Buffer.alloc(size);
  header(buf, { kind: EventKind.FileOpen, size });
  buf.writeInt32LE(flags, L['ew_file_event.flags']);
  buf.writeInt32LE(ret, L['ew_file_event.ret']);
  buf.writeUInt32LE(p.length, L['ew_file_event.path_len']);
  buf.writeUInt32LE(pathFlags, L['ew_file_event.path_flags']);
  p.copy(buf, L['ew_file_event.path']);
  return buf;
}

function netRecord(f: { op: number; family: number; type: number; protocol: number; port: number; ret: number; addr: number[] }): Buffer {
  const size = L['sizeof.ew_net_event'];
  const buf = Buffer.alloc(size);
  header(buf, { kind: EventKind.Net, size });
  buf.writeUInt16LE(f.op, L['ew_net_event.op']);
  buf.writeUInt16LE(f.family, L['ew_net_event.family']);
  buf.writeUInt16LE(f.type, L['ew_net_event.sock_type']);
  buf.writeUInt16LE(f.protocol, L['ew_net_event.protocol']);
  buf.writeUInt16LE(f.port, L['ew_net_event.port']);
  buf.writeInt32LE(f.ret, L['ew_net_event.ret']);
  Buffer.from(f.addr).copy(buf, L['ew_net_event.addr']);
  return buf;
}

function decisionRecord(resource: string, exe: string, f: { ruleId: number; action: number; operation: number; enforcer: number; ret: number; flags: number }): Buffer {
  const r = Buffer.from(resource);
  const e = Buffer.from(exe);
  const size = L['ew_decision_event.strings'] + r.length + 1 + e.length + 1;
  const buf = Buffer.alloc(size);
  header(buf, { kind: EventKind.Decision, size });
  buf.writeUInt32LE(f.ruleId, L['ew_decision_event.rule_id']);
  buf[L['ew_decision_event.action']] = f.action;
  buf[L['ew_decision_event.operation']] = f.operation;
  buf[L['ew_decision_event.enforcer']] = f.enforcer;
  buf.writeInt32LE(f.ret, L['ew_decision_event.ret']);
  buf.writeInt32LE(f.flags, L['ew_decision_event.flags']);
  buf.writeUInt32LE(r.length, L['ew_decision_event.resource_len']);
  buf.writeUInt32LE(e.length, L['ew_decision_event.exe_len']);
  r.copy(buf, L['ew_decision_event.strings']);
  e.copy(buf, L['ew_decision_event.strings'] + r.length + 1);
  return buf;
}

describe('decodeBatch: well-formed records', () => {
  test('exec: header fields, u64 as bigint, resolved path', () => {
    const { events, errors } = decodeBatch(
      execRecord('/usr/bin/dash', { pid: 4242, tid: 4243, ppid: 77, uid: 0, cgroup: 0xffff_ffff_ffffn, ts: 2n ** 60n, comm: 'sh', nsPid: 7, nsPpid: 0xffff_fff0 }),
    );
    expect(errors).toBe(0);
    expect(events).toEqual<ExecEvent[]>([
      {
        kind: EventKind.Exec,
        timestampNs: 2n ** 60n,
        pid: 4242,
        tid: 4243,
        ppid: 77,
        uid: 0,
        cgroupId: 0xffff_ffff_ffffn,
        mntNs: 4026531841,
        pidNs: 4026531836,
        comm: 'sh',
        nsPid: 7,
        nsPpid: 0xffff_fff0,
        path: '/usr/bin/dash',
        pathFlags: 0,
      },
    ]);
  });

  test('fork and exit (wait status split into status and signal)', () => {
    const { events, errors } = decodeBatch(Buffer.concat([forkRecord(501, 501), exitRecord(3 << 8), exitRecord(9)]));
    expect(errors).toBe(0);
    const [fork, exit3, killed] = events as [ForkEvent, ExitEvent, ExitEvent];
    expect(fork).toMatchObject({ kind: EventKind.Fork, pid: 100, childPid: 501, childTid: 501 });
    expect(exit3).toMatchObject({ kind: EventKind.Exit, exitCode: 768, exitStatus: 3, signal: 0 });
    expect(killed).toMatchObject({ kind: EventKind.Exit, exitCode: 9, exitStatus: 0, signal: 9 });
  });

  test('file open: flags, fd, negative errno, path flags, UTF-8 names', () => {
    const ok = fileRecord('/tmp/é ü/x', 0o101, 5);
    const failed = fileRecord('missing.txt', 0, -2, EW_STR_AS_GIVEN);
    const { events, errors } = decodeBatch(Buffer.concat([ok, failed]));
    expect(errors).toBe(0);
    expect(events[0]).toMatchObject<Partial<FileOpenEvent>>({ kind: EventKind.FileOpen, flags: 0o101, ret: 5, path: '/tmp/é ü/x', pathFlags: 0 });
    expect(events[1]).toMatchObject<Partial<FileOpenEvent>>({ ret: -2, path: 'missing.txt', pathFlags: EW_STR_AS_GIVEN });
  });

  test('net: IPv4 and IPv6 addresses as text, unix without address', () => {
    const v4 = netRecord({ op: NetOp.Connect, family: 2, type: 1, protocol: 6, port: 8080, ret: -111, addr: [127, 0, 0, 1] });
    const v6addr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const v6 = netRecord({ op: NetOp.Bind, family: 10, type: 2, protocol: 17, port: 53, ret: 0, addr: v6addr });
    const unix = netRecord({ op: NetOp.Socket, family: 1, type: 1, protocol: 0, port: 0, ret: 7, addr: [] });
    const { events, errors } = decodeBatch(Buffer.concat([v4, v6, unix]));
    expect(errors).toBe(0);
    expect(events[0]).toMatchObject<Partial<NetEvent>>({ op: NetOp.Connect, family: 2, sockType: 1, protocol: 6, port: 8080, ret: -111, addr: '127.0.0.1' });
    expect(events[1]).toMatchObject<Partial<NetEvent>>({ op: NetOp.Bind, family: 10, port: 53, addr: '2001:db8::1' });
    expect(events[2]).toMatchObject<Partial<NetEvent>>({ op: NetOp.Socket, family: 1, ret: 7, addr: '' });
  });

  test('ipv6 text follows RFC 5952', () => {
    const b = (a: number[]) => Buffer.from(a);
    expect(ipv6(b([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), 0)).toBe('::1');
    expect(ipv6(b(new Array(16).fill(0)), 0)).toBe('::');
    expect(ipv6(b([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1]), 0)).toBe('::ffff:10.0.0.1');
    // a lone zero group stays, the longer run is compressed
    expect(ipv6(b([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]), 0)).toBe('2001:db8:0:1::1');
    expect(ipv6(b([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0xab, 0xcd]), 0)).toBe('fe80::1234:0:0:abcd');
  });

  test('decision: rule, action, strings back to back, empty exe', () => {
    const withExe = decisionRecord('/etc/shadow', '/usr/bin/cat', { ruleId: 7, action: 2, operation: 2, enforcer: 2, ret: -13, flags: 0 });
    const noExe = decisionRecord('udp', '', { ruleId: 9, action: 1, operation: 3, enforcer: 1, ret: 0, flags: 2 });
    const { events, errors } = decodeBatch(Buffer.concat([withExe, noExe]));
    expect(errors).toBe(0);
    expect(events[0]).toMatchObject<Partial<DecisionEvent>>({
      kind: EventKind.Decision,
      ruleId: 7,
      action: 2,
      operation: 2,
      enforcer: 2,
      ret: -13,
      flags: 0,
      resource: '/etc/shadow',
      exe: '/usr/bin/cat',
      comm: 'cat',
    });
    expect(events[1]).toMatchObject<Partial<DecisionEvent>>({ ruleId: 9, action: 1, operation: 3, ret: 0, flags: 2, resource: 'udp', exe: '' });
  });

  test('every kind carries the namespace pid and ppid of its header (ABI 2)', () => {
    const records = [
      execRecord('/bin/true'),
      forkRecord(501, 501),
      exitRecord(0),
      fileRecord('/etc/hosts', 0, 3),
      netRecord({ op: NetOp.Socket, family: 2, type: 1, protocol: 6, port: 0, ret: 3, addr: [] }),
      decisionRecord('/bin/ls', '/bin/sh', { ruleId: 1, action: 2, operation: 1, enforcer: 3, ret: -1, flags: 0 }),
    ];
    records.forEach((r, i) => {
      r.writeUInt32LE(10 + i, L['ew_event_header.ns_pid']);
      r.writeUInt32LE(i, L['ew_event_header.ns_ppid']); // 0 included: a parent outside the namespace
    });
    const { events, errors } = decodeBatch(Buffer.concat(records));
    expect(errors).toBe(0);
    expect(events.map((e) => [e.kind, e.pid, e.nsPid, e.nsPpid])).toEqual([
      [EventKind.Exec, 100, 10, 0],
      [EventKind.Fork, 100, 11, 1],
      [EventKind.Exit, 100, 12, 2],
      [EventKind.FileOpen, 100, 13, 3],
      [EventKind.Net, 100, 14, 4],
      [EventKind.Decision, 100, 15, 5],
    ]);
  });

  test('comm filling all 16 bytes (no NUL) is read whole, not past the field', () => {
    const { events } = decodeBatch(execRecord('/x', { comm: Buffer.from('abcdefghijklmnop') }));
    expect(events[0].comm).toBe('abcdefghijklmnop');
  });

  test('truncated-path flag is passed through', () => {
    const { events } = decodeBatch(execRecord('a/b', { flags: EW_STR_TRUNCATED }));
    expect((events[0] as ExecEvent).pathFlags).toBe(EW_STR_TRUNCATED);
  });

  test('an empty batch has no events and no errors', () => {
    expect(decodeBatch(Buffer.alloc(0))).toEqual({ events: [], errors: 0 });
  });
});

describe('decodeBatch: malformed input is counted, never thrown', () => {
  test('a record cut short at the end: earlier records kept, one error', () => {
    const whole = execRecord('/bin/true');
    const batch = Buffer.concat([forkRecord(2, 2), whole.subarray(0, whole.length - 3)]);
    const { events, errors } = decodeBatch(batch);
    expect(events.map((e) => e.kind)).toEqual([EventKind.Fork]);
    expect(errors).toBe(1);
  });

  test('a tail shorter than a header is one error', () => {
    const { events, errors } = decodeBatch(Buffer.concat([forkRecord(2, 2), Buffer.alloc(10, 0xff)]));
    expect(events).toHaveLength(1);
    expect(errors).toBe(1);
  });

  test('size 0 or below the header size stops decoding (no infinite loop)', () => {
    for (const size of [0, 1, L['sizeof.ew_event_header'] - 1]) {
      const bad = forkRecord(3, 3);
      bad.writeUInt16LE(size, L['ew_event_header.size']);
      const { events, errors } = decodeBatch(Buffer.concat([forkRecord(2, 2), bad, forkRecord(4, 4)]));
      expect(events.map((e) => (e as ForkEvent).childPid)).toEqual([2]);
      expect(errors).toBe(1);
    }
  });

  test('wrong abi_version and unknown kind are skipped by size; later records decode', () => {
    const oldVersion = execRecord('/bin/old', { abi: EW_ABI_VERSION + 1 });
    const unknown = forkRecord(5, 5);
    unknown.writeUInt16LE(99, L['ew_event_header.kind']);
    const { events, errors } = decodeBatch(Buffer.concat([oldVersion, unknown, forkRecord(6, 6)]));
    expect(events.map((e) => (e as ForkEvent).childPid)).toEqual([6]);
    expect(errors).toBe(2);
  });

  test('string lengths disagreeing with the record size are skipped', () => {
    const longExec = execRecord('/bin/x', { pathLen: 5000 });
    const overExec = execRecord('/bin/x', { pathLen: 7 }); // 7 + NUL does not fit in 6 + NUL
    const dec = decisionRecord('/a', '/b', { ruleId: 1, action: 1, operation: 2, enforcer: 2, ret: 0, flags: 0 });
    dec.writeUInt32LE(3, L['ew_decision_event.exe_len']);
    const shortFork = Buffer.alloc(L['sizeof.ew_event_header']);
    header(shortFork, { kind: EventKind.Fork, size: shortFork.length });
    const { events, errors } = decodeBatch(Buffer.concat([longExec, overExec, dec, shortFork, exitRecord(0)]));
    expect(events.map((e) => e.kind)).toEqual([EventKind.Exit]);
    expect(errors).toBe(4);
  });

  test('random garbage never throws, always terminates, yields only well-formed events', () => {
    let seed = 12345;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const valid = Buffer.concat([execRecord('/bin/sh'), fileRecord('/etc/passwd', 0, 3), forkRecord(9, 9)]);
    for (let i = 0; i < 2000; i++) {
      const buf = Buffer.from(valid);
      // flip a few random bytes, sometimes cut the batch
      for (let k = 0; k < 1 + (rand() % 8); k++) buf[rand() % buf.length] = rand() & 0xff;
      const input = rand() % 3 === 0 ? buf.subarray(0, rand() % buf.length) : buf;
      const { events, errors } = decodeBatch(input);
      expect(events.length + errors).toBeLessThanOrEqual(Math.ceil(input.length / L['sizeof.ew_event_header']) + 1);
      for (const e of events) expect([1, 2, 3, 4, 5, 6]).toContain(e.kind);
    }
    // pure noise
    for (let i = 0; i < 500; i++) {
      const noise = Buffer.alloc(rand() % 9000);
      for (let j = 0; j < noise.length; j++) noise[j] = rand() & 0xff;
      expect(() => decodeBatch(noise)).not.toThrow();
    }
  });
});

describe('decodeBatch: speed', () => {
  test('decodes 150k file-open events in well under a second', () => {
    const one = fileRecord('/usr/lib/x86_64-linux-gnu/libc.so.6', 0o2000000, 3);
    const batch = Buffer.concat(new Array(5000).fill(one));
    decodeBatch(batch); // warm up
    const t0 = process.hrtime.bigint();
    let count = 0;
    for (let i = 0; i < 30; i++) count += decodeBatch(batch).events.length;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    expect(count).toBe(150_000);
    // 150k/s is the peak load; decoding must leave most of a core for the rest
    expect(ms).toBeLessThan(500);
  });
});
