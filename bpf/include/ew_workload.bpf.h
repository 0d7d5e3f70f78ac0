/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The current task's workload (ew_workload_abi.h): its mount namespace's
 * entry in `workloads`, else the entry of its pid namespace or the nearest
 * ancestor of it (a task that unshared its mount namespace is still under its
 * container's pid namespace), else the host (0). Every object including this
 * gets its own `workloads` map; userspace fills it (setWorkloads).
 */
#ifndef EW_WORKLOAD_BPF_H
#define EW_WORKLOAD_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "ew_workload_abi.h"

/*
 * Containers by namespace (one mount and one pid namespace key each); twice
 * the cap so userspace can add the new set before removing the old.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4 * EW_MAX_WORKLOADS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ew_workload_key);
	__type(value, struct ew_workload_value);
} workloads SEC(".maps");

/* The workload of a namespace of `kind`, 0 when it is no container's. */
static __always_inline __u64 ew_workload_of(__u32 inum, __u32 kind)
{
	struct ew_workload_key key = { .ns_inum = inum, .ns_kind = kind };
	struct ew_workload_value *w;

	if (!inum)
		return 0;
	w = bpf_map_lookup_elem(&workloads, &key);
	return w ? w->workload : 0;
}

/* The current task's workload (see the top of the file). */
static __always_inline __u64 ew_current_workload(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pid *pid;
	struct upid *upids;
	__u64 w;
	__u32 level;

	w = ew_workload_of(BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum), EW_NS_MNT);
	if (w)
		return w;
	pid = BPF_CORE_READ(task, thread_pid);
	if (!pid)
		return 0;
	level = BPF_CORE_READ(pid, level);
	/* numbers[level] is the task's own pid namespace, numbers[0] the
	 * initial one (never a container's): nearest first. */
	upids = (struct upid *)((char *)pid + bpf_core_field_offset(struct pid, numbers));
	for (__u32 i = 0; i < 32; i++) {
		struct upid *up;

		if (i >= level)
			break;
		up = upids + ((level - i) & 31);
		w = ew_workload_of(BPF_CORE_READ(up, ns, ns.inum), EW_NS_PID);
		if (w)
			return w;
	}
	return 0;
}

/*
 * Objects that define EW_WORKLOAD_COUNTED before including this header also
 * get `workload_count` (entry 0: how many containers `workloads` holds,
 * written by userspace after the entries) and ew_current_workload_counted():
 * the host, without any lookup in `workloads`, while no container is
 * registered (the common case on a node without containers).
 */
#ifdef EW_WORKLOAD_COUNTED
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} workload_count SEC(".maps");

static __always_inline __u64 ew_current_workload_counted(void)
{
	__u32 zero = 0;
	__u32 *n = bpf_map_lookup_elem(&workload_count, &zero);

	if (!n || !*n)
		return 0;
	return ew_current_workload();
}
#endif /* EW_WORKLOAD_COUNTED */

#endif /* EW_WORKLOAD_BPF_H */
