// TypeScript mirror of the enums in bpf/include/edgeward_abi.h. Struct
// offsets live in agent/src/events.ts (the decoder); tests/unit/abi.test.ts
// checks both against what the addon was compiled with.

/** 2: the header carries ns_pid / ns_ppid (the task's own pid namespace). */
export const EW_ABI_VERSION = 2;
export const EW_PATH_MAX = 4096;
export const EW_COMM_LEN = 16;

export const enum EventKind {
  Exec = 1,
  Fork = 2,
  Exit = 3,
  FileOpen = 4,
  Net = 5,
  Decision = 6,
}

export const EW_STR_TRUNCATED = 0x1;
export const EW_STR_AS_GIVEN = 0x2;

export const enum NetOp {
  Socket = 1,
  Connect = 2,
  Bind = 3,
  Listen = 4,
  Accept = 5,
}

export const enum Action {
  None = 0,
  Audit = 1,
  Block = 2,
  /** rules only: permitted in allow-list mode, never reported */
  Allow = 3,
}

/** proto_class of a workload's network posture entry (edgeward_abi.h EW_NET_POSTURE_CLASS). */
export const EW_NET_POSTURE_CLASS = 0;

export const enum OperationCode {
  Process = 1,
  File = 2,
  Network = 3,
  Capabilities = 4,
}

export const enum ProtoClass {
  Tcp = 1,
  Udp = 2,
  Icmp = 3,
  Icmpv6 = 4,
  Raw = 5,
}

export const enum EnforcerCode {
  CgroupBpf = 1,
  Fanotify = 2,
  BpfLsm = 3,
  /** userspace matching of monitor events (audit-only backend) */
  Monitor = 4,
}

export const EW_MAX_NET_RULES = 16384;
