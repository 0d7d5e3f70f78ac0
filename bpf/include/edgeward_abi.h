/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * edgeward kernel ABI: every struct shared between bpf/ programs, the native
 * addon (native/) and, by byte offsets, the TypeScript decoder
 * (agent/src/events.ts). Change a field here and update EW_ABI_VERSION and
 * the decoder; tests/unit/abi.test.ts compares the offsets the addon reports
 * with the decoder's.
 *
 * Fixed-width types only. Records in the ring buffer are variable length:
 * a fixed part followed by NUL-terminated strings whose lengths are in the
 * fixed part; `header.size` is the whole record's length.
 */
#ifndef EDGEWARD_ABI_H
#define EDGEWARD_ABI_H

#ifdef __BPF__
/* vmlinux.h provides __u8 .. __u64 */
#else
#include <linux/types.h>
#endif

#define EW_ABI_VERSION 2 /* 2: ns_pid, ns_ppid in the header */

#define EW_PATH_MAX 4096 /* PATH_MAX, including the NUL */
#define EW_COMM_LEN 16

/* What a record is. */
enum ew_event_kind {
	EW_EVENT_EXEC = 1,      /* struct ew_exec_event */
	EW_EVENT_FORK = 2,      /* struct ew_fork_event */
	EW_EVENT_EXIT = 3,      /* struct ew_exit_event */
	EW_EVENT_FILE_OPEN = 4, /* struct ew_file_event */
	EW_EVENT_NET = 5,       /* struct ew_net_event */
	EW_EVENT_DECISION = 6,  /* struct ew_decision_event: an enforcer's Block/Audit */
};

/* Header of every record: who did it. */
struct ew_event_header {
	__u16 kind;          /* enum ew_event_kind */
	__u16 size;          /* bytes in the whole record, header included */
	__u32 abi_version;   /* EW_ABI_VERSION */
	__u64 timestamp_ns;  /* CLOCK_BOOTTIME */
	__u32 pid;           /* tgid, as userspace calls it */
	__u32 tid;
	__u32 ppid;          /* real parent's tgid */
	__u32 uid;
	__u64 cgroup_id;     /* cgroup v2 id of the task */
	__u32 mnt_ns;        /* mount namespace inode number */
	__u32 pid_ns;        /* pid namespace inode number */
	char comm[EW_COMM_LEN];
	/*
	 * pid and ppid as the task itself sees them (getpid(), getppid() in its
	 * own, innermost pid namespace): KubeArmor's PID/PPID. ns_ppid is 0 when
	 * the parent lives outside that namespace (a container's init); both are
	 * 0 when unknown.
	 */
	__u32 ns_pid;
	__u32 ns_ppid;
};

/* Flags on strings carried in records. */
#define EW_STR_TRUNCATED 0x1 /* deeper than the walker goes or longer than EW_PATH_MAX */
#define EW_STR_AS_GIVEN  0x2 /* the syscall's argument, not a resolved path */

/* exec: path is the resolved executable (bprm->file), not argv[0]. */
struct ew_exec_event {
	struct ew_event_header h;
	__u32 path_len;      /* bytes of path, excluding the NUL */
	__u32 path_flags;    /* EW_STR_* */
	char path[EW_PATH_MAX];
};

/* fork: the header describes the parent; child_* the new task. */
struct ew_fork_event {
	struct ew_event_header h;
	__u32 child_pid;
	__u32 child_tid;
};

/* exit of a whole thread group (emitted once, for the last thread). */
struct ew_exit_event {
	struct ew_event_header h;
	__u32 exit_code;     /* wait(2) status: code << 8 | signal */
	__u32 _pad;
};

struct ew_file_event {
	struct ew_event_header h;
	__s32 flags;         /* open(2) flags */
	__s32 ret;           /* fd, or -errno */
	__u32 path_len;
	__u32 path_flags;    /* EW_STR_* */
	char path[EW_PATH_MAX];
};

enum ew_net_op {
	EW_NET_SOCKET = 1,
	EW_NET_CONNECT = 2,
	EW_NET_BIND = 3,
	EW_NET_LISTEN = 4,
	EW_NET_ACCEPT = 5,
};

struct ew_net_event {
	struct ew_event_header h;
	__u16 op;            /* enum ew_net_op */
	__u16 family;        /* AF_INET, AF_INET6, AF_UNIX, ... */
	__u16 sock_type;     /* SOCK_STREAM, ... (0 when unknown) */
	__u16 protocol;      /* IPPROTO_* (0 when unknown) */
	__u16 port;          /* host byte order; 0 when none */
	__u16 _pad;
	__s32 ret;           /* result, or -errno */
	__u8 addr[16];       /* IPv4 in the first 4 bytes, or IPv6 */
};

/* Enforcement decisions --------------------------------------------------- */

enum ew_action {
	EW_ACTION_NONE = 0,
	EW_ACTION_AUDIT = 1, /* let it through, report "Passed" */
	EW_ACTION_BLOCK = 2, /* refuse with EPERM/EACCES, report "Permission denied" */
	EW_ACTION_ALLOW = 3, /* rules only: permitted in allow-list mode, not reported */
};

enum ew_operation {
	EW_OP_PROCESS = 1,
	EW_OP_FILE = 2,
	EW_OP_NETWORK = 3,
	EW_OP_CAPABILITIES = 4,  /* bpf/lsm_capable.bpf.c */
};

/* Protocol classes for network rules (KubeArmor's matchProtocols). */
enum ew_proto_class {
	EW_PROTO_TCP = 1,
	EW_PROTO_UDP = 2,
	EW_PROTO_ICMP = 3,
	EW_PROTO_ICMPV6 = 4,
	EW_PROTO_RAW = 5,
};

/* Which enforcer decided (Enforcer field of the alert). */
enum ew_enforcer {
	EW_ENFORCER_CGROUP_BPF = 1, /* compat: cgroup/sock_create etc. */
	EW_ENFORCER_FANOTIFY = 2,   /* compat: fanotify permission events */
	EW_ENFORCER_BPF_LSM = 3,
	EW_ENFORCER_MONITOR = 4,    /* userspace match of monitor events (audit-only) */
};

/*
 * An enforcer's decision. strings: `resource` (path, or protocol name for
 * network) then `exe` (the acting process's executable, when the enforcer
 * knows it; empty otherwise), each NUL-terminated, back to back.
 */
struct ew_decision_event {
	struct ew_event_header h;
	__u32 rule_id;       /* the compiler's rule id (0: none) */
	__u8 action;         /* enum ew_action */
	__u8 operation;      /* enum ew_operation */
	__u8 enforcer;       /* enum ew_enforcer */
	__u8 _pad;
	__s32 ret;           /* 0 when allowed, -EPERM / -EACCES when refused */
	__s32 flags;         /* open flags (file), protocol class (network) */
	__u32 resource_len;
	__u32 exe_len;
	char strings[2 * EW_PATH_MAX];
};

/* Network rules (compat: cgroup/sock_create) ------------------------------- */

/*
 * A rule applies to `workload` (0: the host, i.e. every process for now;
 * containers get their cgroup id) and a protocol class; with a source
 * (src_dev, src_ino = the executable's inode) it applies only to processes
 * running that executable; src_dev = src_ino = 0 means any source.
 */
struct ew_net_rule_key {
	__u64 workload;
	__u64 src_dev;       /* MKDEV(major, minor) = major << 20 | minor: the kernel's sb->s_dev, not userspace st_dev */
	__u64 src_ino;
	__u32 proto_class;   /* enum ew_proto_class */
	__u32 _pad;
};

struct ew_net_rule_value {
	__u32 rule_id;
	__u32 action;        /* enum ew_action */
};

#define EW_MAX_NET_RULES 16384

/*
 * Network allow-list mode: the entry {workload, src 0/0, proto_class
 * EW_NET_POSTURE_CLASS} holds the workload's default posture (rule_id: the
 * posture's rule id, action: EW_ACTION_BLOCK or EW_ACTION_AUDIT); a socket no
 * EW_ACTION_ALLOW (or Block) entry matches gets it.
 */
#define EW_NET_POSTURE_CLASS 0

#endif /* EDGEWARD_ABI_H */
