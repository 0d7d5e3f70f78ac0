/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Workloads (containers) as the kernel-side enforcers see them, shared by
 * bpf/net_enforcer.bpf.c and native/src/net_enforcer.cc (and usable by any
 * object that scopes rules to containers). Kept beside edgeward_abi.h, whose
 * structs tests/unit/abi.test.ts checks against native/src/abi_layout.cc:
 * these never travel in event records.
 *
 * Rules name a workload: 0 is the host, a container is its mount namespace
 * inode. A task's workload is its mount namespace's entry (EW_NS_MNT); for a
 * task that unshared it, the entry of its pid namespace or the nearest
 * ancestor of it (EW_NS_PID), which no task can leave; anything not found is
 * the host. Keys are namespace inode numbers (ns_common.inum).
 */
#ifndef EW_WORKLOAD_ABI_H
#define EW_WORKLOAD_ABI_H

#include "edgeward_abi.h"

enum ew_ns_kind {
	EW_NS_MNT = 1,
	EW_NS_PID = 2,
};

struct ew_workload_key {
	__u32 ns_inum;
	__u32 ns_kind;       /* enum ew_ns_kind */
};

struct ew_workload_value {
	__u64 workload;      /* never 0 */
};

#define EW_MAX_WORKLOADS 4096 /* containers; each has up to one key per kind */

#endif /* EW_WORKLOAD_ABI_H */
