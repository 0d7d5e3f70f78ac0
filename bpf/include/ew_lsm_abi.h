/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Rule maps of the bpf-lsm enforcer (bpf/lsm_enforcer.bpf.c), shared with
 * native/src/lsm_enforcer.cc. Kept beside edgeward_abi.h so the LSM layout
 * can change without touching the records every object writes.
 *
 * Rule sets come in generations: the programs read `lsm_active` (0 or 1)
 * once per hook call and use that generation's info and inner maps only.
 * Userspace builds the other generation beside it, then switches the index.
 */
#ifndef EW_LSM_ABI_H
#define EW_LSM_ABI_H

#include "edgeward_abi.h"

/*
 * Layout version of the maps below (pinned state from another version is
 * replaced). 2: keys name workloads (containers), `workloads` and
 * `workload_count` are pinned with the rules. 3: Allow rules
 * (allow_variants), default postures and the agent's tgid (gen info).
 * 4: pattern and execname rules (lsm_patterns, pinned).
 */
#define EW_LSM_LAYOUT_VERSION 4

/*
 * How a path rule's target relates to the inode being checked. Each key's
 * value holds one verdict per variant:
 *   variant = match * 4 + readOnly * 2 + ownerOnly.
 */
enum ew_lsm_match {
	EW_LSM_MATCH_EXACT = 0,     /* the target is the file itself */
	EW_LSM_MATCH_CHILD = 1,     /* the target is the file's directory (non-recursive dir rule) */
	EW_LSM_MATCH_RECURSIVE = 2, /* the target is any directory above the file */
};
#define EW_LSM_VARIANTS 12
#define EW_LSM_VARIANT(match, read_only, owner_only) ((match) * 4 + (read_only) * 2 + (owner_only))

/*
 * A path rule target: the inode (kernel sb->s_dev in MKDEV form, i_ino) of
 * a file or directory, for `op` (EW_OP_PROCESS: exec, EW_OP_FILE: open).
 * src_dev/src_ino: the acting process's executable (fromSource); 0/0 for
 * rules without a source.
 */
struct ew_lsm_path_key {
	__u64 workload; /* 0: the host; else a container (ew_workload_abi.h) */
	__u64 dev;
	__u64 ino;
	__u64 src_dev;
	__u64 src_ino;
	__u32 op;       /* enum ew_operation: EW_OP_PROCESS or EW_OP_FILE */
	__u32 _pad;
};

struct ew_lsm_verdict {
	__u32 rule_id;
	__u32 action;   /* enum ew_action; EW_ACTION_NONE: no rule of this variant */
};

struct ew_lsm_path_value {
	struct ew_lsm_verdict v[EW_LSM_VARIANTS];
	/* on the any-source entry (src 0/0): entries with a source exist for
	 * this target, look the acting executable up too */
	__u32 has_sourced;
	/* bit EW_LSM_VARIANT(...): an Allow rule of that variant names the
	 * target (allow-list mode; Allow is never a verdict in v[]). A readOnly
	 * Allow permits reads only, an ownerOnly one the owner only. */
	__u32 allow_variants;
};

/*
 * Allow-list mode (KubeArmor's default posture). The path entry
 * {workload, dev 0, ino 0, src 0/0, op} holds in v[0] the workload's
 * posture for op (EW_OP_PROCESS or EW_OP_FILE): an access of that op by a
 * task of the workload that no Allow (nor Block) rule matches gets it. No
 * inode has dev 0 or ino 0, so no target lookup ever finds these entries.
 * The network posture is the net entry {workload, src 0/0,
 * EW_NET_POSTURE_CLASS} (edgeward_abi.h), as on the compat backend.
 */
#define EW_LSM_POSTURE_BIT(op) (1u << (op))

/*
 * Per-generation summary, so hooks skip what no rule can match. Indexed by
 * enum ew_operation (1 process, 2 file; 0 and 3 unused: four entries let
 * programs index with `op & 3` without a bounds check).
 */
struct ew_lsm_gen_info {
	__u32 path_entries[4];      /* entries of this op: 0 = nothing to look up */
	__u32 dir_entries[4];       /* entries with a directory (child or recursive) verdict */
	__u32 recursive_entries[4]; /* entries with a recursive verdict: walk above the parent */
	__u32 net_entries;
	/*
	 * Applied when the directory walk is cut (deeper than EW_LSM_WALK_MAX):
	 * the strongest recursive any-source verdict of the op (of any
	 * workload: fail-safe, not per container), by
	 * readOnly * 2 + ownerOnly, so a path too deep to walk is treated as
	 * inside every recursive directory rule (fail-safe).
	 */
	struct ew_lsm_verdict deep[4][4];
	__u64 generation;           /* userspace's counter, for stats */
	/* EW_LSM_POSTURE_BIT(op) for each op (process, file, network) some
	 * workload has a posture for: without it no posture is looked up */
	__u32 posture_ops;
	/* the agent's tgid: exempt from postures (not from rules), it must
	 * reach its own files and sockets; 0: none */
	__u32 agent_tgid;
	/* and its start (/proc/<pid>/stat starttime: clock ticks of
	 * boottime, USER_HZ 100): a process given the pid of a dead agent is
	 * not the agent */
	__u64 agent_start_ticks;
	/* lsm_patterns[gen * EW_LSM_MAX_PATTERNS + i] for i < pattern_count
	 * hold the generation's pattern rules, of the ops in pattern_ops
	 * (EW_LSM_POSTURE_BIT(op)): without one no path is resolved */
	__u32 pattern_count;
	__u32 pattern_ops;
	/* network entries with a source (fromSource): without one, socket
	 * hooks do not read the acting executable */
	__u32 net_sourced;
	__u32 _pad2;
};

/*
 * Pattern rules (matchPatterns: a glob over the path; execname: the
 * executable's file name), matched against the path bpf_d_path() gives for
 * an open or exec by a task of `workload`. Per generation, at most
 * EW_LSM_MAX_PATTERNS (one per rule, brace alternative and source).
 */
#define EW_LSM_MAX_PATTERNS 32
#define EW_LSM_PATTERN_BYTES 256 /* EW_GLOB_PATTERN_MAX */
#define EW_LSM_PAT_READ_ONLY 0x1
#define EW_LSM_PAT_OWNER_ONLY 0x2
#define EW_LSM_PAT_EXECNAME 0x4 /* `pattern` is a file name: the path's last component equals it */

struct ew_lsm_pattern {
	__u64 workload;
	__u64 src_dev; /* the acting executable (fromSource); 0/0: any */
	__u64 src_ino;
	__u32 op;      /* EW_OP_PROCESS or EW_OP_FILE */
	__u32 rule_id;
	__u32 action;  /* EW_ACTION_AUDIT, _BLOCK or _ALLOW */
	__u32 flags;   /* EW_LSM_PAT_* */
	__u32 len;     /* bytes of pattern used */
	__u32 _pad;
	__u8 pattern[EW_LSM_PATTERN_BYTES]; /* encoded glob (agent/src/policy/glob_kernel.ts) or the name */
};

/*
 * File decisions taken by a path hook rather than an open: the record's
 * `flags` are O_WRONLY | EW_LSM_PATH_OP(hook) (bits no open(2) flag uses),
 * so they read as a write and say which operation it was.
 */
enum ew_lsm_path_hook {
	EW_LSM_HOOK_UNLINK = 1,
	EW_LSM_HOOK_RMDIR = 2,
	EW_LSM_HOOK_MKDIR = 3,
	EW_LSM_HOOK_MKNOD = 4,
	EW_LSM_HOOK_SYMLINK = 5,
	EW_LSM_HOOK_LINK = 6,
	EW_LSM_HOOK_RENAME = 7,
	EW_LSM_HOOK_TRUNCATE = 8,
	EW_LSM_HOOK_CHMOD = 9,
	EW_LSM_HOOK_CHOWN = 10,
};
#define EW_LSM_PATH_OP_SHIFT 24
#define EW_LSM_PATH_OP(hook) ((hook) << EW_LSM_PATH_OP_SHIFT)

/*
 * Directory levels (d_parent steps plus mount crossings) walked above a
 * file. A path within PATH_MAX has at most 2048 components ("a/"), so only
 * paths reached relatively can be deeper.
 */
#define EW_LSM_WALK_MAX 2048

/* Entries per generation; a rule set needing more is refused as a whole. */
#define EW_LSM_MAX_PATH_ENTRIES 65536
#define EW_LSM_MAX_NET_ENTRIES EW_MAX_NET_RULES

/*
 * Self-protection (bpf/lsm_self_protect.bpf.c, native/src/lsm_self_protect.cc).
 */
struct ew_sp_config {
	__u32 agent_tgid;   /* the protected process (0: protection off) */
	__u32 stopper_tgid; /* may signal it: the service manager (0: nobody) */
};

/* A protected inode (ino != 0), or a filesystem that cannot be unmounted (ino 0). */
struct ew_sp_inode_key {
	__u64 dev; /* kernel sb->s_dev */
	__u64 ino;
};

/* ew_sp_inodes values */
#define EW_SP_EXACT 0x1      /* the inode itself */
#define EW_SP_TREE 0x2       /* the directory and everything below it */
#define EW_SP_NO_UMOUNT 0x4  /* (ino 0) the filesystem */

enum ew_sp_refusal {
	EW_SP_REFUSED_SIGNAL = 0,
	EW_SP_REFUSED_PTRACE = 1,
	EW_SP_REFUSED_PATH = 2,
	EW_SP_REFUSED_UMOUNT = 3,
	EW_SP_REFUSED_MAP = 4,
	EW_SP_REFUSAL_KINDS = 5,
};

#define EW_SP_MAX_INODES 256
#define EW_SP_MAX_MAPS 64
/* d_parent levels looked at above a file for a protected directory */
#define EW_SP_WALK_MAX 32

#endif /* EW_LSM_ABI_H */
