// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * compat network enforcer: cgroup-bpf programs that refuse sockets by
 * protocol class (KubeArmor network.matchProtocols), optionally only for
 * processes running a given executable (fromSource, matched by the inode of
 * current->mm->exe_file).
 *
 * - cgroup/sock_create decides when a socket is made: Block refuses with
 *   EPERM, Audit lets it through; both are reported.
 * - cgroup/connect4/6, bind4/6 and sendmsg4/6 apply the same rules when a
 *   socket is used, so a socket made by an allowed process and handed to a
 *   blocked one (SCM_RIGHTS, fork, pidfd_getfd) or made before the rules
 *   were loaded is refused there. They only report refusals: an audited
 *   socket was already reported once, when it was created.
 *
 * cgroup programs may call bpf_get_current_task_btf() and
 * bpf_probe_read_kernel(): both are in bpf_base_func_proto() for
 * perfmon-capable loaders since 5.15 (and lockdown=integrity does not block
 * reading kernel memory), so the executable's inode is read directly here;
 * no exec-tracking map is needed. Decisions carry the executable's path
 * (ew_resolve_file(), a dentry walk under bpf_loop(), also base helpers).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "ew_events.bpf.h"
#include "ew_task.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EW_EPERM 1

/* Not in vmlinux.h (macros in the uapi headers). */
#define EW_AF_INET 2
#define EW_AF_INET6 10
#define EW_AF_PACKET 17
#define EW_SOCK_STREAM 1
#define EW_SOCK_DGRAM 2
#define EW_SOCK_RAW 3
#define EW_IPPROTO_ICMPV6 58

/* cgroup programs: 1 lets the operation through, 0 refuses it with EPERM. */
#define EW_CG_ALLOW 1
#define EW_CG_REFUSE 0

#define EW_CLASS_BIT(c) (1u << (c))

/*
 * Rule sets are capped at EW_MAX_NET_RULES; twice that fits the old and the
 * new set together while userspace replaces one with the other (new keys
 * first, stale ones after), so no rule is ever missing. Not preallocated:
 * memory follows the rules actually loaded.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * EW_MAX_NET_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ew_net_rule_key);
	__type(value, struct ew_net_rule_value);
} net_rules SEC(".maps");

/* One decision record per CPU: too big for the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_decision_event);
} decision_scratch SEC(".maps");

struct ew_net_verdict {
	__u32 rule_id;
	__u32 action;      /* enum ew_action; NONE when no rule matched */
	__u32 proto_class; /* the class of the rule that decided */
};

/*
 * Protocol classes a socket belongs to, as a bit set. A raw ICMP socket is
 * both ICMP and RAW: with IP_HDRINCL it can write whole IP packets of any
 * protocol, so a `raw` rule must catch it too.
 */
static __always_inline __u32 ew_classify(__u32 family, __u32 type, __u32 protocol)
{
	if (family == EW_AF_PACKET)
		return EW_CLASS_BIT(EW_PROTO_RAW);
	if (family != EW_AF_INET && family != EW_AF_INET6)
		return 0;

	__u32 icmp = family == EW_AF_INET ? IPPROTO_ICMP : EW_IPPROTO_ICMPV6;
	__u32 icmp_class = family == EW_AF_INET ? EW_PROTO_ICMP : EW_PROTO_ICMPV6;

	switch (type) {
	case EW_SOCK_STREAM:
		/* MPTCP is TCP on the wire (subflows are TCP connections). */
		if (protocol == 0 || protocol == IPPROTO_TCP || protocol == IPPROTO_MPTCP)
			return EW_CLASS_BIT(EW_PROTO_TCP);
		return 0;
	case EW_SOCK_DGRAM:
		/* UDP-Lite shares UDP's datagram semantics; a udp rule covers it. */
		if (protocol == 0 || protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE)
			return EW_CLASS_BIT(EW_PROTO_UDP);
		if (protocol == icmp)
			return EW_CLASS_BIT(icmp_class); /* unprivileged "ping" socket */
		return 0;
	case EW_SOCK_RAW:
		if (protocol == icmp)
			return EW_CLASS_BIT(icmp_class) | EW_CLASS_BIT(EW_PROTO_RAW);
		return EW_CLASS_BIT(EW_PROTO_RAW);
	}
	return 0;
}

/* The running executable's inode as (sb->s_dev, i_ino); 0/0 when unknown. */
static __always_inline void ew_current_exe(__u64 *dev, __u64 *ino)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);

	*dev = 0;
	*ino = 0;
	if (!inode)
		return; /* kernel thread, or a task past exit_mm() */
	*ino = BPF_CORE_READ(inode, i_ino);
	*dev = BPF_CORE_READ(inode, i_sb, s_dev);
}

static __always_inline void ew_consider(struct ew_net_rule_key *key, __u32 cls,
					struct ew_net_verdict *best)
{
	struct ew_net_rule_value *rule;

	key->proto_class = cls;
	rule = bpf_map_lookup_elem(&net_rules, key);
	/* Block (2) wins over Audit (1); on a tie the first found stays. */
	if (rule && rule->action > best->action && rule->action <= EW_ACTION_BLOCK) {
		best->action = rule->action;
		best->rule_id = rule->rule_id;
		best->proto_class = cls;
	}
}

static __always_inline void ew_consider_class(__u32 classes, __u32 cls, __u64 dev, __u64 ino,
					      struct ew_net_verdict *best)
{
	struct ew_net_rule_key key = {};

	if (!(classes & EW_CLASS_BIT(cls)))
		return;
	key.workload = 0; /* host rules; per-container workloads come later */
	if (ino) {
		key.src_dev = dev;
		key.src_ino = ino;
		ew_consider(&key, cls, best);
	}
	key.src_dev = 0;
	key.src_ino = 0;
	ew_consider(&key, cls, best);
}

static __always_inline void ew_decide(__u32 family, __u32 type, __u32 protocol,
				      struct ew_net_verdict *best)
{
	__u32 classes = ew_classify(family, type, protocol);
	__u64 dev, ino;

	best->action = EW_ACTION_NONE;
	best->rule_id = 0;
	best->proto_class = 0;
	if (!classes)
		return;
	ew_current_exe(&dev, &ino);
	ew_consider_class(classes, EW_PROTO_TCP, dev, ino, best);
	ew_consider_class(classes, EW_PROTO_UDP, dev, ino, best);
	ew_consider_class(classes, EW_PROTO_ICMP, dev, ino, best);
	ew_consider_class(classes, EW_PROTO_ICMPV6, dev, ino, best);
	ew_consider_class(classes, EW_PROTO_RAW, dev, ino, best);
}

/* Writes the class's name and its NUL; returns the length without the NUL. */
static __always_inline __u32 ew_proto_name(__u32 cls, char *out)
{
	switch (cls) {
	case EW_PROTO_TCP:
		__builtin_memcpy(out, "tcp", 4);
		return 3;
	case EW_PROTO_UDP:
		__builtin_memcpy(out, "udp", 4);
		return 3;
	case EW_PROTO_ICMP:
		__builtin_memcpy(out, "icmp", 5);
		return 4;
	case EW_PROTO_ICMPV6:
		__builtin_memcpy(out, "icmpv6", 7);
		return 6;
	case EW_PROTO_RAW:
		__builtin_memcpy(out, "raw", 4);
		return 3;
	}
	out[0] = 0;
	return 0;
}

static __always_inline void ew_report(const struct ew_net_verdict *v, __s32 ret)
{
	__u32 zero = 0;
	struct ew_decision_event *e = bpf_map_lookup_elem(&decision_scratch, &zero);
	struct task_struct *task = bpf_get_current_task_btf();
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	__u32 len, exe_len = 0, exe_flags = 0;
	__u64 size;

	if (!e)
		return;
	len = ew_proto_name(v->proto_class, e->strings);
	/* Decisions are rare (Block/Audit only): walking the exe's path is affordable. */
	if (exe)
		exe_len = ew_resolve_file(exe, &e->strings[len + 1], &exe_flags);
	else
		e->strings[len + 1] = 0;
	if (exe_len >= EW_PATH_MAX)
		exe_len = EW_PATH_MAX - 1;
	e->resource_len = len;
	e->exe_len = exe_len;
	e->rule_id = v->rule_id;
	e->action = v->action;
	e->operation = EW_OP_NETWORK;
	e->enforcer = EW_ENFORCER_CGROUP_BPF;
	e->_pad = 0;
	e->ret = ret;
	e->flags = v->proto_class;
	size = offsetof(struct ew_decision_event, strings) + len + 1 + exe_len + 1;
	ew_fill_header(&e->h, EW_EVENT_DECISION, size);
	ew_output(e, size, 1);
}

/* At creation: Block refuses, Audit allows; both report. */
SEC("cgroup/sock_create")
int ew_net_sock_create(struct bpf_sock *sk)
{
	struct ew_net_verdict v;

	ew_decide(sk->family, sk->type, sk->protocol, &v);
	if (v.action == EW_ACTION_BLOCK) {
		ew_report(&v, -EW_EPERM);
		return EW_CG_REFUSE;
	}
	if (v.action == EW_ACTION_AUDIT)
		ew_report(&v, 0);
	return EW_CG_ALLOW;
}

/* At use: only refusals are reported (audits were reported at creation). */
static __always_inline int ew_on_use(struct bpf_sock_addr *ctx)
{
	struct ew_net_verdict v;

	ew_decide(ctx->family, ctx->type, ctx->protocol, &v);
	if (v.action == EW_ACTION_BLOCK) {
		ew_report(&v, -EW_EPERM);
		return EW_CG_REFUSE;
	}
	return EW_CG_ALLOW;
}

SEC("cgroup/connect4")
int ew_net_connect4(struct bpf_sock_addr *ctx)
{
	return ew_on_use(ctx);
}

SEC("cgroup/connect6")
int ew_net_connect6(struct bpf_sock_addr *ctx)
{
	return ew_on_use(ctx);
}

SEC("cgroup/bind4")
int ew_net_bind4(struct bpf_sock_addr *ctx)
{
	return ew_on_use(ctx);
}

SEC("cgroup/bind6")
int ew_net_bind6(struct bpf_sock_addr *ctx)
{
	return ew_on_use(ctx);
}

/* Unconnected UDP: each sendmsg() with a destination address. */
SEC("cgroup/sendmsg4")
int ew_net_sendmsg4(struct bpf_sock_addr *ctx)
{
	return ew_on_use(ctx);
}

SEC("cgroup/sendmsg6")
int ew_net_sendmsg6(struct bpf_sock_addr *ctx)
{
	return ew_on_use(ctx);
}
