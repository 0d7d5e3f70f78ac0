/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Capability rules of bpf/lsm_capable.bpf.c (SEC("lsm/capable")), shared
 * with native/src/lsm_capable.cc.
 *
 * One hash map holds two generations of rules, told apart by `gen` in the
 * key: userspace writes the new generation beside the one in force, writes
 * its summary (cap_gen_info[gen]), switches cap_active[0], then deletes the
 * old generation's entries. A check reads cap_active once and uses that
 * generation only, so a rule set never has a window without rules.
 */
#ifndef EW_CAPABLE_ABI_H
#define EW_CAPABLE_ABI_H

#include "edgeward_abi.h"

/* Capability numbers the rules may name: 0 .. EW_CAP_MAX (CAP_LAST_CAP is 40 on 6.1 and 6.18). */
#define EW_CAP_MAX 63

/*
 * A rule entry: `workload` (0 the host, else a container's mount namespace
 * inode, see ew_workload_abi.h), capability `cap`, and the source
 * executable's inode (kernel sb->s_dev in MKDEV form, i_ino), 0/0 for any
 * process.
 */
struct ew_cap_key {
	__u64 workload;
	__u64 src_dev;
	__u64 src_ino;
	__u32 cap;
	__u32 gen;      /* 0 or 1 */
};

struct ew_cap_value {
	__u32 rule_id;
	__u32 action;   /* enum ew_action: EW_ACTION_AUDIT or EW_ACTION_BLOCK */
};

/* What a generation holds, so checks of capabilities no rule names cost two array lookups. */
struct ew_cap_gen_info {
	__u64 caps;     /* bit c: some entry names capability c */
	__u64 sourced;  /* bit c: some entry with a source names capability c */
	__u32 entries;
	__u32 _pad;
	__u64 generation; /* userspace's counter, for stats */
};

struct ew_cap_config {
	__u32 agent_tgid; /* never refused (0: none) */
	__u32 _pad;
};

/* Entries per generation; the map holds two. */
#define EW_CAP_MAX_ENTRIES 4096

#endif /* EW_CAPABLE_ABI_H */
