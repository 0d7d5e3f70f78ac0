// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Kernel event monitor: process lifecycle (exec/fork/exit), file opens and
 * socket syscalls, written as ABI records (edgeward_abi.h) into the shared
 * ring. Userspace (native/src/monitor.cc) loads and attaches only the groups
 * asked for, so a disabled group costs nothing on its hot path.
 *
 * Syscall tracepoints (not tp_btf/raw sys_enter) are used for opens and
 * sockets: each attaches to one syscall, while raw_syscalls would run on
 * every syscall of the node.
 */
#include "ew_task.bpf.h"
#include "ew_events.bpf.h"
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define EINPROGRESS 115
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* Scratch records too large for the 512-byte stack. Separate maps per use so
 * programs that could run back to back on one CPU never share one. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_exec_event);
} exec_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_file_event);
} file_scratch SEC(".maps");

/* Syscall arguments kept from sys_enter to sys_exit, per thread. LRU: a
 * thread killed inside a syscall never reaches sys_exit. */
struct open_args {
	const char *path; /* user pointer */
	__s32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct open_args);
} open_stash SEC(".maps");

struct net_args {
	struct ew_net_event e; /* filled at sys_enter, completed at sys_exit */
	__s64 fd;              /* the socket argument */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct net_args);
} net_stash SEC(".maps");

/* Process lifecycle ---------------------------------------------------------- */

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ew_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 zero = 0;
	struct ew_exec_event *e = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!e)
		return 0;
	/* bprm->file is what runs: the interpreter for scripts, the target of symlinks */
	e->path_flags = 0;
	e->path_len = ew_resolve_file(BPF_CORE_READ(bprm, file), e->path, &e->path_flags);
	__u32 size = offsetof(struct ew_exec_event, path) + (e->path_len & EW_PATH_MASK) + 1;
	ew_fill_header(&e->h, EW_EVENT_EXEC, size);
	ew_output(e, size & 0xffff, 0);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(ew_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 child_pid = BPF_CORE_READ(child, tgid);
	__u32 child_tid = BPF_CORE_READ(child, pid);
	/* new threads are not processes: only a new thread group is reported */
	if (child_pid != child_tid)
		return 0;
	struct ew_fork_event e = {};
	ew_fill_header(&e.h, EW_EVENT_FORK, sizeof(e));
	e.child_pid = child_pid;
	e.child_tid = child_tid;
	ew_output(&e, sizeof(e), 0);
	return 0;
}

/* The tracepoint's arguments differ (6.18 added group_dead): only `p` is used. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(ew_exit, struct task_struct *p)
{
	/* do_exit() decrements signal->live before this tracepoint: 0 means the
	 * last thread of the group is leaving, so the process is gone. */
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	struct ew_exit_event e = {};
	ew_fill_header(&e.h, EW_EVENT_EXIT, sizeof(e));
	e.exit_code = BPF_CORE_READ(p, exit_code);
	ew_output(&e, sizeof(e), 0);
	return 0;
}

/* File opens ------------------------------------------------------------------ */

/* The file behind `fd` in the current task's table, or NULL. */
static __always_inline struct file *ew_fd_file(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

static __always_inline int stash_open(const char *path, __s32 flags)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct open_args a = {.path = path, .flags = flags};
	bpf_map_update_elem(&open_stash, &id, &a, BPF_ANY);
	return 0;
}

static __always_inline int emit_open(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct open_args *a = bpf_map_lookup_elem(&open_stash, &id);
	if (!a)
		return 0;
	const char *upath = a->path;
	__s32 flags = a->flags;
	bpf_map_delete_elem(&open_stash, &id);

	__u32 zero = 0;
	struct ew_file_event *e = bpf_map_lookup_elem(&file_scratch, &zero);
	if (!e)
		return 0;
	e->flags = flags;
	e->ret = ret;
	e->path_flags = 0;
	e->path_len = 0;
	e->path[0] = 0;
	struct file *f = ret >= 0 ? ew_fd_file(ret) : NULL;
	if (f) {
		e->path_len = ew_resolve_file(f, e->path, &e->path_flags);
	} else {
		/* failed: what the caller asked for, unresolved (it may have
		 * changed since the kernel read it: only a failure is reported so) */
		long n = upath ? bpf_probe_read_user_str(e->path, EW_PATH_MAX, upath) : 0;
		e->path_flags = EW_STR_AS_GIVEN;
		if (n > 0)
			e->path_len = n - 1;
		if (n == EW_PATH_MAX)
			e->path_flags |= EW_STR_TRUNCATED;
	}
	__u32 size = offsetof(struct ew_file_event, path) + (e->path_len & EW_PATH_MASK) + 1;
	ew_fill_header(&e->h, EW_EVENT_FILE_OPEN, size);
	ew_output(e, size & 0xffff, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int enter_open(struct trace_event_raw_sys_enter *ctx)
{
	return stash_open((const char *)ctx->args[0], (__s32)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_exit_open")
int exit_open(struct trace_event_raw_sys_exit *ctx)
{
	return emit_open(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	return stash_open((const char *)ctx->args[1], (__s32)ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	return emit_open(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int enter_openat2(struct trace_event_raw_sys_enter *ctx)
{
	__u64 flags = 0;
	/* struct open_how starts with __u64 flags */
	bpf_probe_read_user(&flags, sizeof(flags), (const void *)ctx->args[2]);
	return stash_open((const char *)ctx->args[1], (__s32)flags);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int exit_openat2(struct trace_event_raw_sys_exit *ctx)
{
	return emit_open(ctx->ret);
}

/* creat(2) is open(path, O_CREAT|O_WRONLY|O_TRUNC) (x86; absent on arm64). */
SEC("tracepoint/syscalls/sys_enter_creat")
int enter_creat(struct trace_event_raw_sys_enter *ctx)
{
	return stash_open((const char *)ctx->args[0], 01 | 0100 | 01000);
}

SEC("tracepoint/syscalls/sys_exit_creat")
int exit_creat(struct trace_event_raw_sys_exit *ctx)
{
	return emit_open(ctx->ret);
}

/* open_by_handle_at(2): no path argument; the opened file's path on success. */
SEC("tracepoint/syscalls/sys_enter_open_by_handle_at")
int enter_open_by_handle_at(struct trace_event_raw_sys_enter *ctx)
{
	return stash_open(NULL, (__s32)ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_open_by_handle_at")
int exit_open_by_handle_at(struct trace_event_raw_sys_exit *ctx)
{
	return emit_open(ctx->ret);
}

/* Network ------------------------------------------------------------------------ */

/* The socket behind `fd`, or NULL when fd is not a socket. */
static __always_inline struct socket *ew_fd_socket(long fd)
{
	struct file *f = ew_fd_file(fd);
	if (!f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	return (struct socket *)BPF_CORE_READ(f, private_data);
}

/* family/type/protocol of a socket. */
static __always_inline void ew_sock_kind(struct ew_net_event *e, struct socket *sock)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);
	e->sock_type = BPF_CORE_READ(sock, type);
	if (!sk)
		return;
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->protocol = BPF_CORE_READ(sk, sk_protocol);
}

/* Local (listen) or remote (accept) address and port of a socket. */
static __always_inline void ew_sock_addr(struct ew_net_event *e, struct socket *sock, int remote)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return;
	if (remote)
		e->port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	else
		e->port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (e->family == AF_INET) {
		__u32 a = remote ? BPF_CORE_READ(sk, __sk_common.skc_daddr)
				 : BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(e->addr, &a, 4);
	} else if (e->family == AF_INET6) {
		if (remote)
			BPF_CORE_READ_INTO(&e->addr, sk, __sk_common.skc_v6_daddr);
		else
			BPF_CORE_READ_INTO(&e->addr, sk, __sk_common.skc_v6_rcv_saddr);
	}
}

/* family, port and address of a user sockaddr (connect/bind argument). */
static __always_inline void ew_user_sockaddr(struct ew_net_event *e, const void *uaddr, long len)
{
	__u16 family = 0;
	if (!uaddr || len < (long)sizeof(family))
		return;
	bpf_probe_read_user(&family, sizeof(family), uaddr);
	e->family = family;
	if (family == AF_INET && len >= 8) {
		__u16 port = 0;
		bpf_probe_read_user(&port, sizeof(port), uaddr + 2);
		e->port = bpf_ntohs(port);
		bpf_probe_read_user(e->addr, 4, uaddr + 4);
	} else if (family == AF_INET6 && len >= 24) {
		__u16 port = 0;
		bpf_probe_read_user(&port, sizeof(port), uaddr + 2);
		e->port = bpf_ntohs(port);
		bpf_probe_read_user(e->addr, 16, uaddr + 8);
	}
}

static __always_inline int stash_net(struct net_args *a)
{
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&net_stash, &id, a, BPF_ANY);
	return 0;
}

/* What this thread stashed at sys_enter, or NULL. */
static __always_inline struct net_args *take_net(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	return bpf_map_lookup_elem(&net_stash, &id);
}

static __always_inline void drop_net(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&net_stash, &id);
}

static __always_inline int emit_net(struct ew_net_event *stashed, long ret)
{
	struct ew_net_event e;
	__builtin_memcpy(&e, stashed, sizeof(e));
	drop_net();
	e.ret = ret;
	ew_fill_header(&e.h, EW_EVENT_NET, sizeof(e));
	ew_output(&e, sizeof(e), 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_socket")
int enter_socket(struct trace_event_raw_sys_enter *ctx)
{
	struct net_args a = {};
	a.e.op = EW_NET_SOCKET;
	a.e.family = ctx->args[0];
	a.e.sock_type = ctx->args[1] & 0xf; /* without SOCK_NONBLOCK/SOCK_CLOEXEC */
	a.e.protocol = ctx->args[2];
	return stash_net(&a);
}

SEC("tracepoint/syscalls/sys_exit_socket")
int exit_socket(struct trace_event_raw_sys_exit *ctx)
{
	struct net_args *a = take_net();
	if (!a)
		return 0;
	if (ctx->ret >= 0) {
		/* the kernel's view: protocol 0 resolved to the real one */
		struct socket *sock = ew_fd_socket(ctx->ret);
		if (sock)
			ew_sock_kind(&a->e, sock);
	}
	return emit_net(&a->e, ctx->ret);
}

static __always_inline int enter_addr_op(struct trace_event_raw_sys_enter *ctx, __u16 op)
{
	struct net_args a = {};
	a.e.op = op;
	a.fd = ctx->args[0];
	struct socket *sock = ew_fd_socket(a.fd);
	if (sock)
		ew_sock_kind(&a.e, sock);
	/* the address asked for: what a failed call reports */
	ew_user_sockaddr(&a.e, (const void *)ctx->args[1], ctx->args[2]);
	return stash_net(&a);
}

/*
 * After a connect/bind that took effect, the socket's own address replaces
 * the user's sockaddr: another thread may have rewritten that buffer after it
 * was read at sys_enter, the socket holds what the kernel really used.
 */
static __always_inline int exit_addr_op(struct trace_event_raw_sys_exit *ctx, int remote)
{
	struct net_args *a = take_net();
	if (!a)
		return 0;
	long ret = ctx->ret;
	__u16 family = a->e.family;
	if ((ret == 0 || (remote && ret == -EINPROGRESS)) && (family == AF_INET || family == AF_INET6)) {
		struct socket *sock = ew_fd_socket(a->fd);
		if (sock) {
			ew_sock_kind(&a->e, sock);
			__builtin_memset(a->e.addr, 0, sizeof(a->e.addr));
			ew_sock_addr(&a->e, sock, remote);
		}
	}
	return emit_net(&a->e, ret);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	return enter_addr_op(ctx, EW_NET_CONNECT);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	return exit_addr_op(ctx, 1);
}

SEC("tracepoint/syscalls/sys_enter_bind")
int enter_bind(struct trace_event_raw_sys_enter *ctx)
{
	return enter_addr_op(ctx, EW_NET_BIND);
}

SEC("tracepoint/syscalls/sys_exit_bind")
int exit_bind(struct trace_event_raw_sys_exit *ctx)
{
	return exit_addr_op(ctx, 0);
}

SEC("tracepoint/syscalls/sys_enter_listen")
int enter_listen(struct trace_event_raw_sys_enter *ctx)
{
	struct net_args a = {};
	a.e.op = EW_NET_LISTEN;
	a.fd = ctx->args[0];
	struct socket *sock = ew_fd_socket(a.fd);
	if (sock) {
		ew_sock_kind(&a.e, sock);
		ew_sock_addr(&a.e, sock, 0);
	}
	return stash_net(&a);
}

SEC("tracepoint/syscalls/sys_exit_listen")
int exit_listen(struct trace_event_raw_sys_exit *ctx)
{
	struct net_args *a = take_net();
	return a ? emit_net(&a->e, ctx->ret) : 0;
}

static __always_inline int enter_accept_op(struct trace_event_raw_sys_enter *ctx)
{
	struct net_args a = {};
	a.e.op = EW_NET_ACCEPT;
	a.fd = ctx->args[0];
	struct socket *sock = ew_fd_socket(a.fd);
	if (sock)
		ew_sock_kind(&a.e, sock);
	return stash_net(&a);
}

static __always_inline int exit_accept_op(struct trace_event_raw_sys_exit *ctx)
{
	struct net_args *a = take_net();
	if (!a)
		return 0;
	if (ctx->ret >= 0) {
		/* the accepted connection: its peer */
		struct socket *sock = ew_fd_socket(ctx->ret);
		if (sock) {
			ew_sock_kind(&a->e, sock);
			ew_sock_addr(&a->e, sock, 1);
		}
	}
	return emit_net(&a->e, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_accept")
int enter_accept(struct trace_event_raw_sys_enter *ctx)
{
	return enter_accept_op(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return exit_accept_op(ctx);
}

SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(struct trace_event_raw_sys_enter *ctx)
{
	return enter_accept_op(ctx);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return exit_accept_op(ctx);
}
