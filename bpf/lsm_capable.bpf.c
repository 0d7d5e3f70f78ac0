// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpf-lsm capability rules (KubeArmor's capabilities.matchCapabilities):
 * lsm/capable runs after the kernel's own capability check granted a
 * capability and can still refuse it (Block: -EPERM) or report it (Audit).
 *
 * capable is one of the hottest hooks (every capable()/ns_capable() in the
 * kernel): with no rule naming the capability checked and no workload in
 * allow-list mode it costs two array lookups and a bit test. Rules are keyed
 * by (workload, capability, source executable inode) in two generations
 * (include/ew_capable_abi.h); a workload in allow-list mode has a posture
 * entry. Order: Block, Allow, the posture, Audit (as the compat backend's
 * file rules and agent/src/audit_matcher.ts decide).
 *
 * The acting process is the current task: its executable (fromSource) and
 * its workload (ew_workload.bpf.h). Never refused nor reported: kernel
 * threads and the agent (cap_config: pid and start time), so a rule or a
 * posture cannot lock the agent out and a policy can always be replaced.
 * Never given the default posture: the host's init (pid 1).
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "ew_capable_abi.h"
#include "ew_events.bpf.h"
#include "ew_task.bpf.h"
#include "ew_workload.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EW_EPERM 1
#define EW_PF_KTHREAD 0x00200000
/* CAP_OPT_NOAUDIT: a quiet probe of a capability (refused alike, never reported) */
#define EW_CAP_OPT_NOAUDIT 0x2

/* cap_active[0]: the generation (0 or 1) in force. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cap_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct ew_cap_gen_info);
} cap_gen_info SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * EW_CAP_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ew_cap_key);
	__type(value, struct ew_cap_value);
} cap_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_cap_config);
} cap_config SEC(".maps");

/*
 * Never read by the program: userspace updates its slot after switching
 * generations, because a map-in-map update returns only once every BPF
 * program running at that moment has finished (maybe_wait_bpf_programs(),
 * synchronize_rcu): no check still reads the old generation when its
 * entries are deleted.
 */
struct ew_cap_sync_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct ew_cap_sync_inner);
} cap_sync SEC(".maps");

/* One decision record per CPU: too big for the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_decision_event);
} cap_decision_scratch SEC(".maps");

/* Resource names of decision records (the kernel's list, include/uapi/linux/capability.h). */
#define EW_CAP_NAMES 41
#define EW_CAP_NAME_LEN 24
static const char ew_cap_names[EW_CAP_NAMES][EW_CAP_NAME_LEN] = {
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
};

/* Adds the entry for `key` to *found (a sourced entry, looked up first, keeps its rule ids). */
static __always_inline void ew_cap_merge(struct ew_cap_key *key, struct ew_cap_value *found)
{
	struct ew_cap_value *v = bpf_map_lookup_elem(&cap_rules, key);
	if (!v)
		return;
	__u32 fresh = v->actions & ~found->actions;
	if (fresh & EW_CAP_F_BLOCK)
		found->block_rule = v->block_rule;
	if (fresh & EW_CAP_F_AUDIT)
		found->audit_rule = v->audit_rule;
	if (fresh & EW_CAP_F_ALLOW)
		found->allow_rule = v->allow_rule;
	found->actions |= v->actions;
}

/* Whether the current task belongs to the agent (the pid and the start time of its process). */
static __always_inline int ew_cap_is_agent(struct task_struct *task, __u32 tgid)
{
	__u32 zero = 0;
	struct ew_cap_config *cfg = bpf_map_lookup_elem(&cap_config, &zero);
	if (!cfg || !cfg->agent_tgid || cfg->agent_tgid != tgid)
		return 0;
	if (!cfg->tick_ns)
		return 1;
	__u64 start = BPF_CORE_READ(task, group_leader, start_boottime);
	return start / cfg->tick_ns == cfg->agent_start_ticks;
}

/* Resource = the capability's name, exe = the acting executable's path. */
static __noinline int ew_cap_report(__u32 cap, __u32 rule_id, __u32 action, __s32 ret)
{
	__u32 zero = 0, flags = 0;
	struct ew_decision_event *e = bpf_map_lookup_elem(&cap_decision_scratch, &zero);
	if (!e)
		return 0;
	long n = 0;
	__u64 idx = cap;
	asm volatile("" : "+r"(idx)); /* keep the bound check on the register indexing the table */
	if (idx < EW_CAP_NAMES)
		n = bpf_probe_read_kernel_str(e->strings, EW_CAP_NAME_LEN, ew_cap_names[idx]);
	__u32 res_len = n > 0 ? (n - 1) & 31 /* < EW_CAP_NAME_LEN */ : 0;
	if (n <= 0)
		e->strings[0] = 0; /* a capability newer than the table: named by `flags` only */

	struct task_struct *task = bpf_get_current_task_btf();
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	__u32 exe_len = 0;
	char *exe_out = &e->strings[(res_len + 1) & 63];
	if (exe) {
		const struct path *fpath = (const struct path *)__builtin_preserve_access_index(&exe->f_path);
		exe_len = ew_resolve_path(fpath, exe_out, &flags);
	} else {
		exe_out[0] = 0;
	}
	exe_len &= EW_PATH_MAX - 1;

	__u64 size = offsetof(struct ew_decision_event, strings) + res_len + 1 + exe_len + 1;
	e->rule_id = rule_id;
	e->action = action;
	e->operation = EW_OP_CAPABILITIES;
	e->enforcer = EW_ENFORCER_BPF_LSM;
	e->_pad = 0;
	e->ret = ret;
	e->flags = (__s32)cap;
	e->resource_len = res_len;
	e->exe_len = exe_len;
	ew_fill_header(&e->h, EW_EVENT_DECISION, size);
	ew_output(e, size, 1);
	return 0;
}

SEC("lsm/capable")
int BPF_PROG(ew_cap_capable, const struct cred *cred, struct user_namespace *ns, int cap, unsigned int opts, int ret)
{
	if (ret)
		return ret; /* already refused (by the kernel's own check, mostly) */
	__u32 zero = 0;
	__u32 *active = bpf_map_lookup_elem(&cap_active, &zero);
	if (!active)
		return 0;
	__u32 gen = *active & 1;
	struct ew_cap_gen_info *info = bpf_map_lookup_elem(&cap_gen_info, &gen);
	if (!info || cap < 0 || cap > EW_CAP_MAX)
		return 0;
	__u64 bit = 1ULL << cap;
	if (!(info->caps & bit) && !info->postures)
		return 0; /* the common case: no rule names this capability, no workload is in allow-list mode */

	struct task_struct *task = bpf_get_current_task_btf();
	if (task->flags & EW_PF_KTHREAD)
		return 0;
	__u32 tgid = (__u32)(bpf_get_current_pid_tgid() >> 32);
	if (ew_cap_is_agent(task, tgid))
		return 0;

	struct ew_cap_key key = {.workload = ew_current_workload(), .cap = cap, .gen = gen};
	struct ew_cap_value found = {};
	if (info->sourced & bit) {
		struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
		if (inode) {
			key.src_ino = BPF_CORE_READ(inode, i_ino);
			key.src_dev = BPF_CORE_READ(inode, i_sb, s_dev);
			ew_cap_merge(&key, &found);
			key.src_dev = 0;
			key.src_ino = 0;
		}
	}
	if (info->caps & bit)
		ew_cap_merge(&key, &found);

	int quiet = (opts & EW_CAP_OPT_NOAUDIT) != 0;
	if (found.actions & EW_CAP_F_BLOCK) {
		if (!quiet)
			ew_cap_report(cap, found.block_rule, EW_ACTION_BLOCK, -EW_EPERM);
		return -EW_EPERM;
	}
	/* Allow-list mode: what no Allow entry matches gets the workload's
	 * posture. The host's init (pid 1) is exempt: refusing it a capability
	 * can take the whole machine down (no service started or stopped, no
	 * clean shutdown), and it is the one process a policy cannot restart. */
	if (info->postures && !(found.actions & EW_CAP_F_ALLOW) && tgid != 1) {
		key.cap = EW_CAP_POSTURE;
		struct ew_cap_value *posture = bpf_map_lookup_elem(&cap_rules, &key);
		if (posture && (posture->actions & EW_CAP_F_BLOCK)) {
			if (!quiet)
				ew_cap_report(cap, posture->block_rule, EW_ACTION_BLOCK, -EW_EPERM);
			return -EW_EPERM;
		}
		if (posture && (posture->actions & EW_CAP_F_AUDIT)) {
			if (!quiet)
				ew_cap_report(cap, posture->audit_rule, EW_ACTION_AUDIT, 0);
			return 0;
		}
	}
	if ((found.actions & EW_CAP_F_AUDIT) && !quiet)
		ew_cap_report(cap, found.audit_rule, EW_ACTION_AUDIT, 0);
	return 0;
}
