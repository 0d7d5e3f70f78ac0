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
 *   socket was already reported once, when it was created. These hooks
 *   exist for TCP and UDP only: a ping or raw socket handed over is not
 *   checked again, and neither are sends on an already connected socket
 *   or accept() on an already listening one.
 *
 * Allow-list mode (KubeArmor's Allow with a default posture): entries with
 * action EW_ACTION_ALLOW permit; a workload with a posture entry
 * (EW_NET_POSTURE_CLASS) refuses or reports, under the posture's rule id,
 * every classified socket no Allow or Block entry matches. Block wins over
 * Allow. Unclassified sockets (AF_UNIX, netlink, ...) are never subject to
 * the posture.
 *
 * Rules name a workload (ew_workload_abi.h): the host (0) or a container. The
 * current task's workload is its mount namespace's entry in `workloads`,
 * else the entry of its pid namespace or the nearest ancestor of it (a task
 * that unshared its mount namespace is still under its container's pid
 * namespace), else the host: host rules never apply in containers, and a
 * container's rules only there.
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
#include "ew_net_classify.bpf.h"
#include "ew_task.bpf.h"
#include "ew_workload.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EW_EPERM 1

/* cgroup programs: 1 lets the operation through, 0 refuses it with EPERM. */
#define EW_CG_ALLOW 1
#define EW_CG_REFUSE 0

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

/* The executable's path is resolved here, at a fixed offset, then copied
 * after the resource name (whose length varies) in the record. */
struct ew_exe_path {
	char path[EW_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_exe_path);
} exe_scratch SEC(".maps");

/*
 * A decision packed in a scalar (global functions return scalars only):
 * rule id << 32 | protocol class << 8 | action. 0: no rule matched.
 */
#define EW_VERDICT(rule_id, cls, action) (((__u64)(rule_id) << 32) | ((cls) << 8) | (action))
#define EW_VERDICT_ACTION(v) ((__u32)(v) & 0xff)
#define EW_VERDICT_CLASS(v) (((__u32)(v) >> 8) & 0xff)
#define EW_VERDICT_RULE(v) ((__u32)((v) >> 32))

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

/* What the lookups found: the first Block and Audit verdicts, whether an Allow matched. */
struct ew_net_found {
	__u64 block;
	__u64 audit;
	__u32 allowed;
};

static __always_inline void ew_lookup(struct ew_net_rule_key *key, __u32 cls, struct ew_net_found *f)
{
	struct ew_net_rule_value *rule;

	key->proto_class = cls;
	rule = bpf_map_lookup_elem(&net_rules, key);
	if (!rule)
		return;
	if (rule->action == EW_ACTION_BLOCK && !f->block)
		f->block = EW_VERDICT(rule->rule_id, cls, EW_ACTION_BLOCK);
	else if (rule->action == EW_ACTION_AUDIT && !f->audit)
		f->audit = EW_VERDICT(rule->rule_id, cls, EW_ACTION_AUDIT);
	else if (rule->action == EW_ACTION_ALLOW)
		f->allowed = 1;
}

/*
 * The verdict for a socket of (family, type, protocol) made or used by the
 * current task: Block (the executable's own rules, then any-source ones)
 * wins; else, in allow-list mode, no Allow match gets the workload's
 * posture; else the first Audit. A global function: the verifier checks it
 * once, not at every call.
 */
__noinline __u64 ew_net_decide(__u32 family, __u32 type, __u32 protocol)
{
	__u32 classes = ew_net_classify(family, type, protocol);
	__u32 first = classes & 0xff, second = classes >> 8;
	struct ew_net_rule_key key = {};
	struct ew_net_found found = {};
	struct ew_net_rule_value *posture;
	__u64 dev, ino;

	if (!first)
		return 0;
	key.workload = ew_current_workload();
	ew_current_exe(&dev, &ino);
	if (ino) {
		key.src_dev = dev;
		key.src_ino = ino;
		ew_lookup(&key, first, &found);
		if (second)
			ew_lookup(&key, second, &found);
	}
	key.src_dev = 0;
	key.src_ino = 0;
	ew_lookup(&key, first, &found);
	if (second)
		ew_lookup(&key, second, &found);
	if (found.block)
		return found.block;
	if (!found.allowed) {
		key.proto_class = EW_NET_POSTURE_CLASS;
		posture = bpf_map_lookup_elem(&net_rules, &key);
		if (posture && (posture->action == EW_ACTION_BLOCK || posture->action == EW_ACTION_AUDIT))
			return EW_VERDICT(posture->rule_id, first, posture->action);
	}
	return found.audit;
}

/* Sends the decision record for `verdict` with result `ret` (urgent wake-up). */
__noinline int ew_net_report(__u64 verdict, __s32 ret)
{
	__u32 zero = 0, cls = EW_VERDICT_CLASS(verdict) & 7;
	struct ew_decision_event *e = bpf_map_lookup_elem(&decision_scratch, &zero);
	struct ew_exe_path *exe_path = bpf_map_lookup_elem(&exe_scratch, &zero);
	struct task_struct *task = bpf_get_current_task_btf();
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	__u32 len, exe_len = 0, exe_flags = 0;
	__u64 size;

	if (!e || !exe_path)
		return 0;
	len = ew_net_class_name_lens[cls] & 7;
	__builtin_memcpy(e->strings, ew_net_class_names[cls], 8);
	/* Decisions are rare (Block/Audit only): walking the exe's path is affordable. */
	exe_path->path[0] = 0;
	if (exe)
		exe_len = ew_resolve_file(exe, exe_path->path, &exe_flags);
	if (exe_len >= EW_PATH_MAX)
		exe_len = EW_PATH_MAX - 1;
	bpf_probe_read_kernel(&e->strings[len + 1], exe_len + 1, exe_path->path);
	e->resource_len = len;
	e->exe_len = exe_len;
	e->rule_id = EW_VERDICT_RULE(verdict);
	e->action = EW_VERDICT_ACTION(verdict);
	e->operation = EW_OP_NETWORK;
	e->enforcer = EW_ENFORCER_CGROUP_BPF;
	e->_pad = 0;
	e->ret = ret;
	e->flags = cls;
	size = offsetof(struct ew_decision_event, strings) + len + 1 + exe_len + 1;
	ew_fill_header(&e->h, EW_EVENT_DECISION, size);
	ew_output(e, size, 1);
	return 0;
}

/* At creation: Block refuses, Audit allows; both report. */
SEC("cgroup/sock_create")
int ew_net_sock_create(struct bpf_sock *sk)
{
	__u64 v = ew_net_decide(sk->family, sk->type, sk->protocol);

	if (EW_VERDICT_ACTION(v) == EW_ACTION_BLOCK) {
		ew_net_report(v, -EW_EPERM);
		return EW_CG_REFUSE;
	}
	if (EW_VERDICT_ACTION(v) == EW_ACTION_AUDIT)
		ew_net_report(v, 0);
	return EW_CG_ALLOW;
}

/* At use: only refusals are reported (audits were reported at creation). */
static __always_inline int ew_on_use(struct bpf_sock_addr *ctx)
{
	__u64 v = ew_net_decide(ctx->family, ctx->type, ctx->protocol);

	if (EW_VERDICT_ACTION(v) == EW_ACTION_BLOCK) {
		ew_net_report(v, -EW_EPERM);
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
