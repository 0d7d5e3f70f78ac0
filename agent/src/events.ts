// Decoder of the kernel's event records (bpf/include/edgeward_abi.h). A batch
// from the native EventSink is records back to back, each starting with
// struct ew_event_header whose `size` is the whole record's length.
//
// This runs for every monitored event (150k/s at peak): one pass, direct
// Buffer reads at fixed offsets, one object per event, strings sliced once.
// A malformed record is counted, never thrown: the kernel is trusted for
// framing, but a bad size must not loop forever or read out of bounds.
import { EventKind, EW_ABI_VERSION, NetOp } from './abi';

/**
 * Byte offsets and sizes the decoder relies on, keyed as the addon's
 * abiLayout() (tests/unit/abi.test.ts checks they are equal).
 */
export const EVENT_LAYOUT = {
  'sizeof.ew_event_header': 72,
  'ew_event_header.kind': 0,
  'sizeof.ew_event_header.kind': 2,
  'ew_event_header.size': 2,
  'sizeof.ew_event_header.size': 2,
  'ew_event_header.abi_version': 4,
  'sizeof.ew_event_header.abi_version': 4,
  'ew_event_header.timestamp_ns': 8,
  'sizeof.ew_event_header.timestamp_ns': 8,
  'ew_event_header.pid': 16,
  'sizeof.ew_event_header.pid': 4,
  'ew_event_header.tid': 20,
  'sizeof.ew_event_header.tid': 4,
  'ew_event_header.ppid': 24,
  'sizeof.ew_event_header.ppid': 4,
  'ew_event_header.uid': 28,
  'sizeof.ew_event_header.uid': 4,
  'ew_event_header.cgroup_id': 32,
  'sizeof.ew_event_header.cgroup_id': 8,
  'ew_event_header.mnt_ns': 40,
  'sizeof.ew_event_header.mnt_ns': 4,
  'ew_event_header.pid_ns': 44,
  'sizeof.ew_event_header.pid_ns': 4,
  'ew_event_header.comm': 48,
  'sizeof.ew_event_header.comm': 16,
  'ew_event_header.ns_pid': 64,
  'sizeof.ew_event_header.ns_pid': 4,
  'ew_event_header.ns_ppid': 68,
  'sizeof.ew_event_header.ns_ppid': 4,

  'sizeof.ew_exec_event': 4176,
  'ew_exec_event.h': 0,
  'sizeof.ew_exec_event.h': 72,
  'ew_exec_event.path_len': 72,
  'sizeof.ew_exec_event.path_len': 4,
  'ew_exec_event.path_flags': 76,
  'sizeof.ew_exec_event.path_flags': 4,
  'ew_exec_event.path': 80,
  'sizeof.ew_exec_event.path': 4096,

  'sizeof.ew_fork_event': 80,
  'ew_fork_event.h': 0,
  'sizeof.ew_fork_event.h': 72,
  'ew_fork_event.child_pid': 72,
  'sizeof.ew_fork_event.child_pid': 4,
  'ew_fork_event.child_tid': 76,
  'sizeof.ew_fork_event.child_tid': 4,

  'sizeof.ew_exit_event': 80,
  'ew_exit_event.h': 0,
  'sizeof.ew_exit_event.h': 72,
  'ew_exit_event.exit_code': 72,
  'sizeof.ew_exit_event.exit_code': 4,
  'ew_exit_event._pad': 76,
  'sizeof.ew_exit_event._pad': 4,

  'sizeof.ew_file_event': 4184,
  'ew_file_event.h': 0,
  'sizeof.ew_file_event.h': 72,
  'ew_file_event.flags': 72,
  'sizeof.ew_file_event.flags': 4,
  'ew_file_event.ret': 76,
  'sizeof.ew_file_event.ret': 4,
  'ew_file_event.path_len': 80,
  'sizeof.ew_file_event.path_len': 4,
  'ew_file_event.path_flags': 84,
  'sizeof.ew_file_event.path_flags': 4,
  'ew_file_event.path': 88,
  'sizeof.ew_file_event.path': 4096,

  'sizeof.ew_net_event': 104,
  'ew_net_event.h': 0,
  'sizeof.ew_net_event.h': 72,
  'ew_net_event.op': 72,
  'sizeof.ew_net_event.op': 2,
  'ew_net_event.family': 74,
  'sizeof.ew_net_event.family': 2,
  'ew_net_event.sock_type': 76,
  'sizeof.ew_net_event.sock_type': 2,
  'ew_net_event.protocol': 78,
  'sizeof.ew_net_event.protocol': 2,
  'ew_net_event.port': 80,
  'sizeof.ew_net_event.port': 2,
  'ew_net_event._pad': 82,
  'sizeof.ew_net_event._pad': 2,
  'ew_net_event.ret': 84,
  'sizeof.ew_net_event.ret': 4,
  'ew_net_event.addr': 88,
  'sizeof.ew_net_event.addr': 16,

  'sizeof.ew_decision_event': 8288,
  'ew_decision_event.h': 0,
  'sizeof.ew_decision_event.h': 72,
  'ew_decision_event.rule_id': 72,
  'sizeof.ew_decision_event.rule_id': 4,
  'ew_decision_event.action': 76,
  'sizeof.ew_decision_event.action': 1,
  'ew_decision_event.operation': 77,
  'sizeof.ew_decision_event.operation': 1,
  'ew_decision_event.enforcer': 78,
  'sizeof.ew_decision_event.enforcer': 1,
  'ew_decision_event._pad': 79,
  'sizeof.ew_decision_event._pad': 1,
  'ew_decision_event.ret': 80,
  'sizeof.ew_decision_event.ret': 4,
  'ew_decision_event.flags': 84,
  'sizeof.ew_decision_event.flags': 4,
  'ew_decision_event.resource_len': 88,
  'sizeof.ew_decision_event.resource_len': 4,
  'ew_decision_event.exe_len': 92,
  'sizeof.ew_decision_event.exe_len': 4,
  'ew_decision_event.strings': 96,
  'sizeof.ew_decision_event.strings': 8192,
} as const;

/** Who did it: the header every record starts with. */
export interface EventHeader {
  /** CLOCK_BOOTTIME, ns */
  timestampNs: bigint;
  /** tgid */
  pid: number;
  tid: number;
  /** real parent's tgid */
  ppid: number;
  uid: number;
  /** cgroup v2 id (the inode number of the cgroup's directory) */
  cgroupId: bigint;
  /** mount / pid namespace inode numbers */
  mntNs: number;
  pidNs: number;
  comm: string;
  /**
   * pid and ppid in the task's own pid namespace (getpid()/getppid() inside
   * a container), read by the kernel when the record was made; nsPpid is 0
   * when the parent is outside that namespace. Always set by decodeBatch;
   * optional for records built elsewhere (0 or absent: unknown).
   */
  nsPid?: number;
  nsPpid?: number;
}

/** An exec: `path` is the executable that runs (symlinks resolved; the interpreter for scripts). */
export interface ExecEvent extends EventHeader {
  kind: EventKind.Exec;
  path: string;
  /** EW_STR_* */
  pathFlags: number;
}

/** A new process (threads are not reported); the header describes the parent. */
export interface ForkEvent extends EventHeader {
  kind: EventKind.Fork;
  childPid: number;
  childTid: number;
}

/** A whole process (thread group) ended. */
export interface ExitEvent extends EventHeader {
  kind: EventKind.Exit;
  /** wait(2) status: exit status << 8 | terminating signal */
  exitCode: number;
  /** exit status (meaningful when signal is 0) */
  exitStatus: number;
  /** terminating signal, 0 for a normal exit */
  signal: number;
}

/** open/openat/openat2. */
export interface FileOpenEvent extends EventHeader {
  kind: EventKind.FileOpen;
  /** open(2) flags */
  flags: number;
  /** fd, or -errno */
  ret: number;
  /** the opened file's absolute path; on failure the argument as given (pathFlags has EW_STR_AS_GIVEN) */
  path: string;
  pathFlags: number;
}

/** socket/connect/bind/listen/accept. */
export interface NetEvent extends EventHeader {
  kind: EventKind.Net;
  op: NetOp;
  family: number;
  sockType: number;
  protocol: number;
  /** host byte order; the remote port for connect/accept, the local one for bind/listen */
  port: number;
  /** result, or -errno */
  ret: number;
  /** dotted IPv4 or IPv6 text; '' when the family has no IP address */
  addr: string;
}

/** An enforcer's decision (Block or Audit of a rule). */
export interface DecisionEvent extends EventHeader {
  kind: EventKind.Decision;
  ruleId: number;
  /** EW_ACTION_* */
  action: number;
  /** EW_OP_* */
  operation: number;
  /** EW_ENFORCER_* */
  enforcer: number;
  /** 0 when allowed, -EPERM / -EACCES when refused */
  ret: number;
  /** open flags (file) or protocol class (network) */
  flags: number;
  /** path, or protocol name for network */
  resource: string;
  /** the acting executable when the enforcer knows it, else '' */
  exe: string;
}

/**
 * The path operation of a bpf-lsm File decision taken by a path hook
 * rather than an open (bpf/include/ew_lsm_abi.h enum ew_lsm_path_hook):
 * such records carry flags = O_WRONLY | hook << 24 and nothing else, where
 * an open's flags always hold more (O_LARGEFILE at least), so an open
 * whose f_flags carry a kernel-internal high bit (FMODE_NONOTIFY) is not
 * taken for one.
 */
export const LSM_PATH_OPERATIONS = ['unlink', 'rmdir', 'mkdir', 'mknod', 'symlink', 'link', 'rename', 'truncate', 'chmod', 'chown'] as const;
export type LsmPathOperation = (typeof LSM_PATH_OPERATIONS)[number];
export const LSM_PATH_OP_SHIFT = 24;
const O_WRONLY = 1;

/** The path hook a File decision's flags name, or undefined for an open. */
export function lsmPathOperation(flags: number): LsmPathOperation | undefined {
  if ((flags & ((1 << LSM_PATH_OP_SHIFT) - 1)) !== O_WRONLY) return undefined;
  const hook = flags >>> LSM_PATH_OP_SHIFT;
  return hook >= 1 && hook <= LSM_PATH_OPERATIONS.length ? LSM_PATH_OPERATIONS[hook - 1] : undefined;
}

export type EwEvent = ExecEvent | ForkEvent | ExitEvent | FileOpenEvent | NetEvent | DecisionEvent;

export interface DecodedBatch {
  events: EwEvent[];
  /** records that could not be decoded (bad size, version, kind or string lengths) */
  errors: number;
}

const L = EVENT_LAYOUT;
const HEADER_SIZE = L['sizeof.ew_event_header'];
const H_KIND = L['ew_event_header.kind'];
const H_SIZE = L['ew_event_header.size'];
const H_ABI = L['ew_event_header.abi_version'];
const H_TS = L['ew_event_header.timestamp_ns'];
const H_PID = L['ew_event_header.pid'];
const H_TID = L['ew_event_header.tid'];
const H_PPID = L['ew_event_header.ppid'];
const H_UID = L['ew_event_header.uid'];
const H_CGROUP = L['ew_event_header.cgroup_id'];
const H_MNTNS = L['ew_event_header.mnt_ns'];
const H_PIDNS = L['ew_event_header.pid_ns'];
const H_COMM = L['ew_event_header.comm'];
const COMM_LEN = L['sizeof.ew_event_header.comm'];
const H_NSPID = L['ew_event_header.ns_pid'];
const H_NSPPID = L['ew_event_header.ns_ppid'];

const EXEC_PATH_LEN = L['ew_exec_event.path_len'];
const EXEC_PATH_FLAGS = L['ew_exec_event.path_flags'];
const EXEC_PATH = L['ew_exec_event.path'];
const FORK_CHILD_PID = L['ew_fork_event.child_pid'];
const FORK_CHILD_TID = L['ew_fork_event.child_tid'];
const FORK_SIZE = L['ew_fork_event.child_tid'] + L['sizeof.ew_fork_event.child_tid'];
const EXIT_CODE = L['ew_exit_event.exit_code'];
const EXIT_SIZE = L['ew_exit_event.exit_code'] + L['sizeof.ew_exit_event.exit_code'];
const FILE_FLAGS = L['ew_file_event.flags'];
const FILE_RET = L['ew_file_event.ret'];
const FILE_PATH_LEN = L['ew_file_event.path_len'];
const FILE_PATH_FLAGS = L['ew_file_event.path_flags'];
const FILE_PATH = L['ew_file_event.path'];
const NET_OP = L['ew_net_event.op'];
const NET_FAMILY = L['ew_net_event.family'];
const NET_TYPE = L['ew_net_event.sock_type'];
const NET_PROTOCOL = L['ew_net_event.protocol'];
const NET_PORT = L['ew_net_event.port'];
const NET_RET = L['ew_net_event.ret'];
const NET_ADDR = L['ew_net_event.addr'];
const NET_SIZE = L['ew_net_event.addr'] + L['sizeof.ew_net_event.addr'];
const DEC_RULE = L['ew_decision_event.rule_id'];
const DEC_ACTION = L['ew_decision_event.action'];
const DEC_OPERATION = L['ew_decision_event.operation'];
const DEC_ENFORCER = L['ew_decision_event.enforcer'];
const DEC_RET = L['ew_decision_event.ret'];
const DEC_FLAGS = L['ew_decision_event.flags'];
const DEC_RESOURCE_LEN = L['ew_decision_event.resource_len'];
const DEC_EXE_LEN = L['ew_decision_event.exe_len'];
const DEC_STRINGS = L['ew_decision_event.strings'];
const PATH_MAX = L['sizeof.ew_exec_event.path'];

const AF_INET = 2;
const AF_INET6 = 10;

/** The NUL-terminated string in buf[start, start+max). */
function cString(buf: Buffer, start: number, max: number): string {
  let end = start;
  const limit = start + max;
  while (end < limit && buf[end] !== 0) end++;
  return buf.toString('utf8', start, end);
}

function ipv4(buf: Buffer, o: number): string {
  return `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
}

/** RFC 5952 text of the 16 bytes at o (longest zero run as ::, IPv4-mapped as ::ffff:a.b.c.d). */
export function ipv6(buf: Buffer, o: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(o + 2 * i));
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
    return `::ffff:${ipv4(buf, o + 12)}`;
  }
  let bestStart = -1;
  let bestLen = 1; // a single zero group is not compressed
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string =>
    groups
      .slice(from, to)
      .map((g) => g.toString(16))
      .join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLen, 8)}`;
}

/**
 * Decodes a batch of records. Stops at the first record whose size cannot be
 * trusted (shorter than a header or past the end of the batch); skips records
 * with a bad version, unknown kind or inconsistent lengths. Each is one error.
 */
export function decodeBatch(buf: Buffer): DecodedBatch {
  const events: EwEvent[] = [];
  let errors = 0;
  let o = 0;
  const n = buf.length;
  while (o < n) {
    if (n - o < HEADER_SIZE) {
      errors++;
      break;
    }
    const size = buf.readUInt16LE(o + H_SIZE);
    if (size < HEADER_SIZE || size > n - o) {
      errors++;
      break;
    }
    const ev = buf.readUInt32LE(o + H_ABI) === EW_ABI_VERSION ? decodeRecord(buf, o, size) : undefined;
    if (ev === undefined) errors++;
    else events.push(ev);
    o += size;
  }
  return { events, errors };
}

/**
 * One record of `size` bytes at `o` (the header fits); undefined when malformed.
 * The header fields are written out in each kind's object literal on purpose:
 * one literal per kind gives V8 one stable shape per kind and allocates no
 * intermediate header object on a path that carries 150k events/s.
 */
function decodeRecord(buf: Buffer, o: number, size: number): EwEvent | undefined {
  const kind = buf.readUInt16LE(o + H_KIND);
  switch (kind) {
    case EventKind.Exec: {
      if (size < EXEC_PATH + 1) return undefined;
      const len = buf.readUInt32LE(o + EXEC_PATH_LEN);
      if (len >= PATH_MAX || EXEC_PATH + len + 1 > size) return undefined;
      return {
        kind: EventKind.Exec,
        timestampNs: buf.readBigUInt64LE(o + H_TS),
        pid: buf.readUInt32LE(o + H_PID),
        tid: buf.readUInt32LE(o + H_TID),
        ppid: buf.readUInt32LE(o + H_PPID),
        uid: buf.readUInt32LE(o + H_UID),
        cgroupId: buf.readBigUInt64LE(o + H_CGROUP),
        mntNs: buf.readUInt32LE(o + H_MNTNS),
        pidNs: buf.readUInt32LE(o + H_PIDNS),
        comm: cString(buf, o + H_COMM, COMM_LEN),
        nsPid: buf.readUInt32LE(o + H_NSPID),
        nsPpid: buf.readUInt32LE(o + H_NSPPID),
        path: buf.toString('utf8', o + EXEC_PATH, o + EXEC_PATH + len),
        pathFlags: buf.readUInt32LE(o + EXEC_PATH_FLAGS),
      };
    }
    case EventKind.Fork:
      if (size < FORK_SIZE) return undefined;
      return {
        kind: EventKind.Fork,
        timestampNs: buf.readBigUInt64LE(o + H_TS),
        pid: buf.readUInt32LE(o + H_PID),
        tid: buf.readUInt32LE(o + H_TID),
        ppid: buf.readUInt32LE(o + H_PPID),
        uid: buf.readUInt32LE(o + H_UID),
        cgroupId: buf.readBigUInt64LE(o + H_CGROUP),
        mntNs: buf.readUInt32LE(o + H_MNTNS),
        pidNs: buf.readUInt32LE(o + H_PIDNS),
        comm: cString(buf, o + H_COMM, COMM_LEN),
        nsPid: buf.readUInt32LE(o + H_NSPID),
        nsPpid: buf.readUInt32LE(o + H_NSPPID),
        childPid: buf.readUInt32LE(o + FORK_CHILD_PID),
        childTid: buf.readUInt32LE(o + FORK_CHILD_TID),
      };
    case EventKind.Exit: {
      if (size < EXIT_SIZE) return undefined;
      const code = buf.readUInt32LE(o + EXIT_CODE);
      return {
        kind: EventKind.Exit,
        timestampNs: buf.readBigUInt64LE(o + H_TS),
        pid: buf.readUInt32LE(o + H_PID),
        tid: buf.readUInt32LE(o + H_TID),
        ppid: buf.readUInt32LE(o + H_PPID),
        uid: buf.readUInt32LE(o + H_UID),
        cgroupId: buf.readBigUInt64LE(o + H_CGROUP),
        mntNs: buf.readUInt32LE(o + H_MNTNS),
        pidNs: buf.readUInt32LE(o + H_PIDNS),
        comm: cString(buf, o + H_COMM, COMM_LEN),
        nsPid: buf.readUInt32LE(o + H_NSPID),
        nsPpid: buf.readUInt32LE(o + H_NSPPID),
        exitCode: code,
        exitStatus: (code >> 8) & 0xff,
        signal: code & 0x7f,
      };
    }
    case EventKind.FileOpen: {
      if (size < FILE_PATH + 1) return undefined;
      const len = buf.readUInt32LE(o + FILE_PATH_LEN);
      if (len >= PATH_MAX || FILE_PATH + len + 1 > size) return undefined;
      return {
        kind: EventKind.FileOpen,
        timestampNs: buf.readBigUInt64LE(o + H_TS),
        pid: buf.readUInt32LE(o + H_PID),
        tid: buf.readUInt32LE(o + H_TID),
        ppid: buf.readUInt32LE(o + H_PPID),
        uid: buf.readUInt32LE(o + H_UID),
        cgroupId: buf.readBigUInt64LE(o + H_CGROUP),
        mntNs: buf.readUInt32LE(o + H_MNTNS),
        pidNs: buf.readUInt32LE(o + H_PIDNS),
        comm: cString(buf, o + H_COMM, COMM_LEN),
        nsPid: buf.readUInt32LE(o + H_NSPID),
        nsPpid: buf.readUInt32LE(o + H_NSPPID),
        flags: buf.readInt32LE(o + FILE_FLAGS),
        ret: buf.readInt32LE(o + FILE_RET),
        path: buf.toString('utf8', o + FILE_PATH, o + FILE_PATH + len),
        pathFlags: buf.readUInt32LE(o + FILE_PATH_FLAGS),
      };
    }
    case EventKind.Net: {
      if (size < NET_SIZE) return undefined;
      const family = buf.readUInt16LE(o + NET_FAMILY);
      return {
        kind: EventKind.Net,
        timestampNs: buf.readBigUInt64LE(o + H_TS),
        pid: buf.readUInt32LE(o + H_PID),
        tid: buf.readUInt32LE(o + H_TID),
        ppid: buf.readUInt32LE(o + H_PPID),
        uid: buf.readUInt32LE(o + H_UID),
        cgroupId: buf.readBigUInt64LE(o + H_CGROUP),
        mntNs: buf.readUInt32LE(o + H_MNTNS),
        pidNs: buf.readUInt32LE(o + H_PIDNS),
        comm: cString(buf, o + H_COMM, COMM_LEN),
        nsPid: buf.readUInt32LE(o + H_NSPID),
        nsPpid: buf.readUInt32LE(o + H_NSPPID),
        op: buf.readUInt16LE(o + NET_OP) as NetOp,
        family,
        sockType: buf.readUInt16LE(o + NET_TYPE),
        protocol: buf.readUInt16LE(o + NET_PROTOCOL),
        port: buf.readUInt16LE(o + NET_PORT),
        ret: buf.readInt32LE(o + NET_RET),
        addr: family === AF_INET ? ipv4(buf, o + NET_ADDR) : family === AF_INET6 ? ipv6(buf, o + NET_ADDR) : '',
      };
    }
    case EventKind.Decision: {
      if (size < DEC_STRINGS + 2) return undefined;
      const resourceLen = buf.readUInt32LE(o + DEC_RESOURCE_LEN);
      const exeLen = buf.readUInt32LE(o + DEC_EXE_LEN);
      if (resourceLen >= PATH_MAX || exeLen >= PATH_MAX) return undefined;
      const resourceAt = o + DEC_STRINGS;
      const exeAt = resourceAt + resourceLen + 1;
      if (exeAt + exeLen + 1 > o + size) return undefined;
      return {
        kind: EventKind.Decision,
        timestampNs: buf.readBigUInt64LE(o + H_TS),
        pid: buf.readUInt32LE(o + H_PID),
        tid: buf.readUInt32LE(o + H_TID),
        ppid: buf.readUInt32LE(o + H_PPID),
        uid: buf.readUInt32LE(o + H_UID),
        cgroupId: buf.readBigUInt64LE(o + H_CGROUP),
        mntNs: buf.readUInt32LE(o + H_MNTNS),
        pidNs: buf.readUInt32LE(o + H_PIDNS),
        comm: cString(buf, o + H_COMM, COMM_LEN),
        nsPid: buf.readUInt32LE(o + H_NSPID),
        nsPpid: buf.readUInt32LE(o + H_NSPPID),
        ruleId: buf.readUInt32LE(o + DEC_RULE),
        action: buf[o + DEC_ACTION],
        operation: buf[o + DEC_OPERATION],
        enforcer: buf[o + DEC_ENFORCER],
        ret: buf.readInt32LE(o + DEC_RET),
        flags: buf.readInt32LE(o + DEC_FLAGS),
        resource: buf.toString('utf8', resourceAt, resourceAt + resourceLen),
        exe: buf.toString('utf8', exeAt, exeAt + exeLen),
      };
    }
    default:
      return undefined;
  }
}
