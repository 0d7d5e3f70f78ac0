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
 *
 * Allow-list mode (KubeArmor's default posture): a workload with a posture
 * entry (cap EW_CAP_POSTURE) refuses or reports every capability check that
 * no Allow (or Block) entry of it matches. Decision order: Block, then Allow,
 * then the posture, then Audit.
 *
 * The maps are pinned (native/src/lsm_capable.cc): bump EW_CAP_LAYOUT_VERSION
 * whenever a pinned map's key, value or size changes.
 */
#ifndef EW_CAPABLE_ABI_H
#define EW_CAPABLE_ABI_H

#include "edgeward_abi.h"

/* Capability numbers the rules may name: 0 .. EW_CAP_MAX (CAP_LAST_CAP is 40 on 6.1 and 6.18). */
#define EW_CAP_MAX 63
/* `cap` of a workload's posture entry (src_dev = src_ino = 0) */
#define EW_CAP_POSTURE 64

/* The pinned maps' layout: another value gets another pin directory. */
#define EW_CAP_LAYOUT_VERSION 1

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
	__u32 cap;      /* 0..EW_CAP_MAX, or EW_CAP_POSTURE */
	__u32 gen;      /* 0 or 1 */
};

/* Bits of ew_cap_value.actions: 1 << enum ew_action. */
#define EW_CAP_F_AUDIT (1u << EW_ACTION_AUDIT)
#define EW_CAP_F_BLOCK (1u << EW_ACTION_BLOCK)
#define EW_CAP_F_ALLOW (1u << EW_ACTION_ALLOW)

/*
 * The rules of one key, by action (rule ids are valid where `actions` has
 * the bit). A posture entry has exactly one of EW_CAP_F_BLOCK and
 * EW_CAP_F_AUDIT, its rule id (the posture's, policy "DefaultPosture") in
 * the matching field.
 */
struct ew_cap_value {
	__u32 block_rule;
	__u32 audit_rule;
	__u32 allow_rule; /* never reported: Allow lets the check through silently */
	__u32 actions;
};

/* What a generation holds, so checks of capabilities no rule names cost two array lookups. */
struct ew_cap_gen_info {
	__u64 caps;     /* bit c: some rule entry names capability c */
	__u64 sourced;  /* bit c: some entry with a source names capability c */
	__u32 entries;  /* rule and posture entries */
	__u32 postures; /* posture entries (workloads in allow-list mode); 0: no check needs the workload */
	__u64 generation; /* userspace's counter, for stats */
};

/*
 * The agent, never refused nor reported. Its start time tells it apart from
 * a later process given the same pid once it died (its pinned program keeps
 * running): the process's start in clock ticks since boot, as /proc/PID/stat
 * field 22 gives it (start_boottime / tick_ns).
 */
struct ew_cap_config {
	__u32 agent_tgid; /* 0: none */
	__u32 _pad;
	__u64 agent_start_ticks;
	__u64 tick_ns;    /* 0: the start time is not compared */
};

/* Entries per generation (rules and postures); the map holds two. */
#define EW_CAP_MAX_ENTRIES 4096

#endif /* EW_CAPABLE_ABI_H */
