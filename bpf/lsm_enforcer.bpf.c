// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpf-lsm enforcer: process, file and network rules decided in the kernel,
 * before the operation, for every process on the node.
 *
 * - bprm_check_security: exec (Process rules). The caller's executable
 *   (current->mm->exe_file, still the old image) is the fromSource.
 * - mmap_file / file_mprotect with PROT_EXEC: code of a file named by an
 *   exact Process rule mapped by anything but the kernel's exec of it (the
 *   dynamic loader run as `ld.so /blocked`, dlopen, mprotect).
 * - file_open: File rules; a write is FMODE_WRITE, O_TRUNC or a file this
 *   open created (readOnly rules match writes only).
 * - socket_create (Block and Audit reported), socket_connect/bind/listen/
 *   accept/sendmsg (refusals reported): Network protocol rules, also for a
 *   socket made before the rules or handed over by another process.
 *
 * Rules are keyed by inode (lsm_path_rules) and by executable inode +
 * protocol class (lsm_net_rules), in two generations: each hook reads
 * lsm_active once and uses that generation only, so a rule set is replaced
 * by switching one index (see include/ew_lsm_abi.h, native/src/lsm_enforcer.cc).
 * Block wins over Audit; Audit is decided here too (ret 0, reported).
 *
 * Every key names a workload (include/ew_workload_abi.h): 0 the host, else a
 * container. A hook finds the acting task's workload once (ew_lsm_workload:
 * nothing to look up while no container is registered) and looks up only
 * that workload's rules: host rules do not apply inside containers, a
 * container's rules only inside it.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "ew_events.bpf.h"
#include "ew_glob.bpf.h"
#include "ew_lsm_abi.h"
#include "ew_net_classify.bpf.h"
#include "ew_task.bpf.h"
#define EW_WORKLOAD_COUNTED /* workload_count: no lookup while no container is registered */
#include "ew_workload.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EW_EPERM 1

/* Macros of the kernel headers (not in vmlinux.h); equal on 6.1 and 6.18. */
#define EW_FMODE_WRITE 0x2
#define EW_FMODE_CREATED 0x100000
#define EW_O_WRONLY 01
#define EW_O_TRUNC 01000
/* __FMODE_EXEC: open_exec() marks the opens of files to execute in f_flags */
#define EW_FMODE_EXEC_FLAG 0x20
#define EW_PROT_EXEC 0x4
#define EW_PF_KTHREAD 0x00200000

/* Maps -------------------------------------------------------------------- */

/* lsm_active[0]: the generation (0 or 1) in force. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} lsm_active SEC(".maps");

/* lsm_gen_info[gen]: what the generation holds (lets hooks skip lookups). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct ew_lsm_gen_info);
} lsm_gen_info SEC(".maps");

/*
 * lsm_path_rules[gen] / lsm_net_rules[gen]: the generation's rule maps,
 * made by userspace for each rule set like these templates. Not
 * preallocated: memory follows the entries loaded.
 */
struct ew_lsm_path_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EW_LSM_MAX_PATH_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct ew_lsm_path_key)); /* sizes, not types: clang */
	__uint(value_size, sizeof(struct ew_lsm_path_value)); /* emits inner types as FWD */
};

struct ew_lsm_net_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EW_LSM_MAX_NET_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct ew_net_rule_key));
	__uint(value_size, sizeof(struct ew_net_rule_value));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct ew_lsm_path_map);
} lsm_path_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct ew_lsm_net_map);
} lsm_net_rules SEC(".maps");

/* lsm_patterns[gen * EW_LSM_MAX_PATTERNS + i]: the generation's pattern rules (gen info pattern_count). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * EW_LSM_MAX_PATTERNS);
	__type(key, __u32);
	__type(value, struct ew_lsm_pattern);
} lsm_patterns SEC(".maps");

/* The path pattern rules are matched against (bpf_d_path), per CPU. */
struct ew_lsm_pattern_path {
	char path[EW_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_lsm_pattern_path);
} lsm_pattern_path SEC(".maps");

/* One decision record per CPU: too big for the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_decision_event);
} lsm_decision_scratch SEC(".maps");

/* The executable's path, resolved at a fixed offset then copied after the resource. */
struct ew_lsm_exe_path {
	char path[EW_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_lsm_exe_path);
} lsm_exe_scratch SEC(".maps");

/* The acting process ------------------------------------------------------ */

struct ew_lsm_actor {
	__u64 exe_dev; /* current->mm->exe_file's inode; 0/0 for kernel threads */
	__u64 exe_ino;
	__u32 fsuid;
};

/* Kernel threads act for the kernel (firmware loads, NFS, ...): never refused. */
static __always_inline int ew_is_kthread(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	return (task->flags & EW_PF_KTHREAD) != 0; /* a trusted pointer: a plain load */
}

static __always_inline void ew_actor(struct ew_lsm_actor *a)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);

	a->exe_dev = 0;
	a->exe_ino = 0;
	if (inode) {
		a->exe_ino = BPF_CORE_READ(inode, i_ino);
		a->exe_dev = BPF_CORE_READ(inode, i_sb, s_dev);
	}
	a->fsuid = BPF_CORE_READ(task, cred, fsuid.val);
}

static __always_inline __u32 ew_active_gen(void)
{
	__u32 zero = 0;
	__u32 *gen = bpf_map_lookup_elem(&lsm_active, &zero);
	return gen ? (*gen & 1) : 0;
}

/*
 * The acting task's workload, found on first use and kept for the rest of
 * the hook call (`*wl` starts as EW_WL_UNKNOWN): hooks without a rule to
 * look up never ask, and one asking twice (open: exec then file rules;
 * link, rename: two names) asks the maps once.
 */
#define EW_WL_UNKNOWN (~0ULL)

static __always_inline __u64 ew_lsm_workload(__u64 *wl)
{
	if (*wl == EW_WL_UNKNOWN)
		*wl = ew_current_workload_counted();
	return *wl;
}

/* A verdict in one scalar: what subprograms return and take (scalars only, at most five). */
#define EW_PACK(v) (((__u64)(v).rule_id << 32) | (v).action)

static __always_inline struct ew_lsm_verdict ew_unpack(__u64 packed)
{
	struct ew_lsm_verdict v = {.rule_id = packed >> 32, .action = packed & 0xff};
	return v;
}

/* Path rules ---------------------------------------------------------------- */

/* What a path decision needs besides the inode being checked. */
struct ew_lsm_path_query {
	__u64 workload; /* the acting task's (0: the host) */
	__u32 gen;
	__u32 op;
	__u32 ro_ok;  /* readOnly variants apply (the access is a write) */
	__u32 oo_ok;  /* ownerOnly variants apply (the actor does not own the file) */
	__u64 exe_dev;
	__u64 exe_ino;
	struct inode *inode; /* the file's (NULL: a name being created) */
	__u32 actor_known; /* exe_*, oo_ok and allow_ok are filled in (on the first rule found) */
	/* which Allow variants of a match kind apply (bit readOnly * 2 + ownerOnly) */
	__u32 allow_ok;
	__u32 allowed; /* an applicable Allow rule matched */
	__u32 _pad;
};

/*
 * Who acts, read only once a rule names a target: most opens find none,
 * and these are several reads each.
 */
static __always_inline void ew_know_actor(struct ew_lsm_path_query *q)
{
	if (q->actor_known)
		return;
	struct ew_lsm_actor actor;
	ew_actor(&actor);
	q->exe_dev = actor.exe_dev;
	q->exe_ino = actor.exe_ino;
	struct inode *inode = q->inode; /* a local: BPF_CORE_READ(q->x) would relocate against the query */
	/* ownerOnly: processes whose fsuid owns the file are not matched */
	int owner = inode && BPF_CORE_READ(inode, i_uid.val) == actor.fsuid;
	q->oo_ok = inode && !owner;
	/* Allow permits what it names: readOnly only reads, ownerOnly only the
	 * owner (a name being created has none). Execs, as on the compat
	 * backend, take Allow rules whole. */
	if (q->op == EW_OP_PROCESS)
		q->allow_ok = 0xf;
	else
		q->allow_ok = 1 | (owner ? 2 : 0) | (q->ro_ok ? 0 : 4) | (owner && !q->ro_ok ? 8 : 0);
	q->actor_known = 1;
}

/* Keeps the stronger of *best and v (Block > Audit; ties keep the first found). */
static __always_inline void ew_keep(struct ew_lsm_verdict *best, const struct ew_lsm_verdict *v)
{
	__u32 action = v->action;
	if (action > best->action && action <= EW_ACTION_BLOCK) {
		best->action = action;
		best->rule_id = v->rule_id;
	}
}

/* The verdicts of `val` for match kind `match` that apply to the query (and its Allow rules). */
static __always_inline void ew_pick(const struct ew_lsm_path_value *val, __u32 match,
				    struct ew_lsm_path_query *q, struct ew_lsm_verdict *best)
{
	if ((val->allow_variants >> (match * 4)) & q->allow_ok & 0xf)
		q->allowed = 1;
	ew_keep(best, &val->v[EW_LSM_VARIANT(match, 0, 0)]);
	if (q->oo_ok)
		ew_keep(best, &val->v[EW_LSM_VARIANT(match, 0, 1)]);
	if (q->ro_ok) {
		ew_keep(best, &val->v[EW_LSM_VARIANT(match, 1, 0)]);
		if (q->oo_ok)
			ew_keep(best, &val->v[EW_LSM_VARIANT(match, 1, 1)]);
	}
}

/*
 * The verdicts on one target inode for the match kinds `match` and (when
 * `also_child`) EW_LSM_MATCH_CHILD: the any-source entry, then the actor's
 * executable's entry when the target has sourced rules.
 */
static __always_inline void ew_check_target(void *rules, __u64 dev, __u64 ino, __u32 match, int also_child,
					    struct ew_lsm_path_query *q, struct ew_lsm_verdict *best)
{
	struct ew_lsm_path_key key = {};
	struct ew_lsm_path_value *val;

	key.workload = q->workload;
	key.dev = dev;
	key.ino = ino;
	key.op = q->op;
	val = bpf_map_lookup_elem(rules, &key);
	if (!val)
		return; /* no rule of this op names the inode */
	ew_know_actor(q);
	ew_pick(val, match, q, best);
	if (also_child)
		ew_pick(val, EW_LSM_MATCH_CHILD, q, best);
	if (!val->has_sourced || !q->exe_ino)
		return;
	key.src_dev = q->exe_dev;
	key.src_ino = q->exe_ino;
	val = bpf_map_lookup_elem(rules, &key);
	if (!val)
		return;
	ew_pick(val, match, q, best);
	if (also_child)
		ew_pick(val, EW_LSM_MATCH_CHILD, q, best);
}

/* State of the walk up the directories above a file. */
struct ew_lsm_walk {
	struct dentry *dentry; /* last dentry checked (the file's at first) */
	struct dentry *parent; /* its d_parent */
	struct mount *mnt;     /* the mount `dentry` is seen through */
	struct dentry *mnt_root;
	__u64 dev;             /* s_dev of the filesystem `dentry` is on */
	struct ew_lsm_path_query q;
	struct ew_lsm_verdict best;
	__u32 recursive; /* look above the parent (the generation has recursive rules) */
	__u32 ended;     /* reached the top (or a directory not worth climbing past) */
};

/* A dentry's parent and inode. */
struct ew_dentry_link {
	struct dentry *parent;
	struct inode *inode;
};

/* d_parent and d_inode sit close together: one read gets both, where two
 * cost a helper call each in the walk's loop. */
#define EW_DENTRY_LINK_SPAN 64

static __always_inline void ew_read_link(struct dentry *d, struct ew_dentry_link *l)
{
	__u32 off_parent = bpf_core_field_offset(struct dentry, d_parent);
	__u32 off_inode = bpf_core_field_offset(struct dentry, d_inode);

	if (off_parent + 8 > EW_DENTRY_LINK_SPAN || off_inode + 8 > EW_DENTRY_LINK_SPAN) {
		l->parent = BPF_CORE_READ(d, d_parent);
		l->inode = BPF_CORE_READ(d, d_inode);
		return;
	}
	__u8 head[EW_DENTRY_LINK_SPAN];
	if (bpf_probe_read_kernel(head, sizeof(head), d)) {
		l->parent = 0;
		l->inode = 0;
		return;
	}
	l->parent = *(struct dentry **)(head + (off_parent & (EW_DENTRY_LINK_SPAN - 8)));
	l->inode = *(struct inode **)(head + (off_inode & (EW_DENTRY_LINK_SPAN - 8)));
}

/*
 * Directories are found by the filesystem's own tree (d_parent), not by the
 * path the file was opened through: a bind mount of a subdirectory, a
 * chroot or a mount namespace leads to the same directory inodes. At a
 * filesystem's root the walk continues from where the mount it was reached
 * through is mounted, if that mount shows the whole filesystem.
 */
static long ew_lsm_walk_step(__u64 index, void *ctx)
{
	struct ew_lsm_walk *w = ctx;
	/* locals only: BPF_CORE_READ(w->x) would relocate against struct ew_lsm_walk */
	struct dentry *d = w->dentry;
	struct dentry *next = w->parent;
	struct mount *mnt = w->mnt;

	if (!next || next == d) {
		if (!mnt || d != w->mnt_root) {
			/* root of a filesystem seen through a bind mount of a
			 * subtree: where the whole filesystem is mounted is not
			 * known here */
			w->ended = 1;
			return 1;
		}
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
		if (!up || up == mnt) {
			w->ended = 1; /* the namespace's root */
			return 1;
		}
		next = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		w->mnt_root = BPF_CORE_READ(up, mnt.mnt_root);
		w->dev = BPF_CORE_READ(next, d_sb, s_dev);
	}

	struct ew_dentry_link link;
	ew_read_link(next, &link);
	w->dentry = next;
	w->parent = link.parent;
	if (!link.inode) {
		w->ended = 1;
		return 1;
	}
	__u32 gen = w->q.gen & 1;
	void *rules = bpf_map_lookup_elem(&lsm_path_rules, &gen);
	if (!rules) {
		w->ended = 1;
		return 1;
	}
	struct inode *inode = link.inode;
	__u64 ino = BPF_CORE_READ(inode, i_ino);
	ew_check_target(rules, w->dev, ino, EW_LSM_MATCH_RECURSIVE, index == 0, &w->q, &w->best);
	if (!w->recursive) {
		w->ended = 1; /* non-recursive rules only: the parent was all */
		return 1;
	}
	return 0;
}

/* Whether generation `gen` has path rules for `op`: the first thing every path hook asks. */
static __always_inline struct ew_lsm_gen_info *ew_gen_info(__u32 gen)
{
	return bpf_map_lookup_elem(&lsm_gen_info, &gen);
}

/* /proc/<pid>/stat's starttime unit: nanoseconds per USER_HZ (100) tick */
#define EW_NSEC_PER_USER_TICK 10000000ULL

/*
 * Whether the current task is the agent (exempt from postures, not from
 * rules): its tgid, started when the agent did (pinned rules outlive the
 * agent; its pid may go to another process later).
 */
static __always_inline int ew_is_agent(const struct ew_lsm_gen_info *info)
{
	__u32 agent = info->agent_tgid;
	if (!agent || (bpf_get_current_pid_tgid() >> 32) != agent)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 start = BPF_CORE_READ(task, group_leader, start_boottime);
	return start / EW_NSEC_PER_USER_TICK == info->agent_start_ticks;
}

/* How ew_path_decide() is asked (its `how` argument). */
#define EW_DECIDE_WRITE 0x100      /* the access writes: readOnly rules apply */
#define EW_DECIDE_EXACT_ONLY 0x200 /* exact rules only (no directory walk) */
#define EW_DECIDE_POSTURE 0x400    /* the workload's posture decides what no Allow rule permits */
#define EW_DECIDE_ALLOWED 0x800    /* an Allow pattern rule permits the access: no posture */

/* Bits of a packed path verdict besides the rule and action. */
#define EW_PACKED_POSTURE (1ULL << 16) /* the verdict is the workload's default posture */
/* in allow-list mode, no Allow rule matched, and the posture is decided
 * elsewhere (exec: at bprm_check): an Audit rule is not reported here */
#define EW_PACKED_UNLISTED (1ULL << 17)

/*
 * Allow-list mode: the decision once the rules are known. Block wins; an
 * access an Allow rule permits keeps the rules' verdict (an Audit is still
 * reported); else, when the workload has a posture for the op, the posture
 * decides (with EW_DECIDE_POSTURE; without it the Audit is not reported:
 * the posture is decided where the caller says). Exact-only decisions
 * (executable mappings) are not subject to postures.
 */
static __always_inline __u64 ew_posture(const struct ew_lsm_gen_info *info, const struct ew_lsm_path_query *q,
					const struct ew_lsm_verdict *best, __u32 how)
{
	__u32 opi = q->op & 3;
	if (best->action == EW_ACTION_BLOCK || q->allowed || (how & (EW_DECIDE_EXACT_ONLY | EW_DECIDE_ALLOWED)) ||
	    !(info->posture_ops & EW_LSM_POSTURE_BIT(opi)))
		return EW_PACK(*best);
	__u32 gen = q->gen & 1;
	void *rules = bpf_map_lookup_elem(&lsm_path_rules, &gen);
	if (!rules)
		return EW_PACK(*best);
	struct ew_lsm_path_key key = {};
	key.workload = q->workload;
	key.op = opi;
	struct ew_lsm_path_value *p = bpf_map_lookup_elem(rules, &key);
	if (!p)
		return EW_PACK(*best); /* this workload is not in allow-list mode for op */
	__u32 action = p->v[0].action;
	if (action != EW_ACTION_BLOCK && action != EW_ACTION_AUDIT)
		return EW_PACK(*best);
	if (!(how & EW_DECIDE_POSTURE))
		return EW_PACK(*best) | (opi == EW_OP_PROCESS ? EW_PACKED_UNLISTED : 0);
	if (ew_is_agent(info))
		return EW_PACK(*best);
	return EW_PACK(p->v[0]) | EW_PACKED_POSTURE;
}

/*
 * The verdict for op (`how` & 0xff) on `inode` (NULL: a name being
 * created) found as `dentry` through `vfsmnt` (NULL: do not cross mounts),
 * by the current task (of `workload`): exact rules on the inode, directory rules on the
 * directories above the dentry (Block > Audit).
 */
__noinline __u64 ew_path_decide(__u64 inode_ptr, __u64 dentry_ptr, __u64 vfsmnt_ptr, __u32 how, __u64 workload)
{
	/* A global function (scalar arguments): the verifier checks it once per
	 * program instead of at every call site, which keeps loading quick. */
	struct inode *inode = (struct inode *)inode_ptr;
	struct dentry *dentry = (struct dentry *)dentry_ptr;
	struct vfsmount *vfsmnt = (struct vfsmount *)vfsmnt_ptr;
	__u32 gen = ew_active_gen();
	struct ew_lsm_gen_info *info = ew_gen_info(gen);
	void *rules = bpf_map_lookup_elem(&lsm_path_rules, &gen);
	__u32 op = how & 0xff, opi = op & 3;

	if (opi != EW_OP_PROCESS && opi != EW_OP_FILE)
		return 0; /* bounds opi for the verifier: only these have path rules */
	if (!info || !rules || !info->path_entries[opi])
		return 0;

	struct ew_lsm_walk w = {};
	w.q.workload = workload;
	w.q.gen = gen;
	w.q.op = op;
	w.q.ro_ok = (how & EW_DECIDE_WRITE) ? 1 : 0;
	w.q.inode = inode;
	if (inode) {
		__u64 dev = BPF_CORE_READ(inode, i_sb, s_dev);
		__u64 ino = BPF_CORE_READ(inode, i_ino);
		ew_check_target(rules, dev, ino, EW_LSM_MATCH_EXACT, 0, &w.q, &w.best);
	}
	if ((how & EW_DECIDE_EXACT_ONLY) || !info->dir_entries[opi] || !dentry)
		return ew_posture(info, &w.q, &w.best, how);

	w.dentry = dentry;
	w.parent = BPF_CORE_READ(dentry, d_parent);
	w.dev = BPF_CORE_READ(dentry, d_sb, s_dev);
	if (vfsmnt) {
		w.mnt = ew_vfsmnt_mount(vfsmnt);
		w.mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	}
	w.recursive = info->recursive_entries[opi] != 0;

	bpf_loop(EW_LSM_WALK_MAX, ew_lsm_walk_step, &w, 0);
	if (!w.ended) {
		/* deeper than the walk goes: inside every recursive rule (fail-safe) */
		ew_know_actor(&w.q);
		ew_keep(&w.best, &info->deep[opi][0]);
		if (w.q.oo_ok)
			ew_keep(&w.best, &info->deep[opi][1]);
		if (w.q.ro_ok) {
			ew_keep(&w.best, &info->deep[opi][2]);
			if (w.q.oo_ok)
				ew_keep(&w.best, &info->deep[opi][3]);
		}
		/* and outside every recursive Allow rule: not allowed (fail-safe) */
	}
	return ew_posture(info, &w.q, &w.best, how);
}

/* The active generation's summary when it has rules of `op` (0: no path hook work). */
static __always_inline int ew_has_path_rules(__u32 op)
{
	struct ew_lsm_gen_info *info = ew_gen_info(ew_active_gen());
	return info && info->path_entries[op & 3];
}

static __always_inline int ew_has_net_rules(void)
{
	struct ew_lsm_gen_info *info = ew_gen_info(ew_active_gen());
	return info && info->net_entries;
}

/* Pattern rules ---------------------------------------------------------------- */

#define EW_PACKED_ALLOWED (1ULL << 18) /* an Allow pattern rule matched */

/* Whether generation `gen` has a pattern rule of `op` for `workload`: checked before resolving any path. */
__noinline int ew_pattern_candidates(__u32 gen, __u32 count, __u32 op, __u64 workload)
{
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < EW_LSM_MAX_PATTERNS; i++) {
		if (i >= count)
			break;
		__u32 key = (gen & 1) * EW_LSM_MAX_PATTERNS + i;
		struct ew_lsm_pattern *p = bpf_map_lookup_elem(&lsm_patterns, &key);
		if (p && p->workload == workload && p->op == op)
			return 1;
	}
	return 0;
}

/* Whether the path (`len` bytes) ends with "/" and the name p names (execname). */
static __always_inline int ew_execname_match(const struct ew_lsm_pattern *p, const char *path, __u32 len)
{
	__u32 n = p->len;
	if (n == 0 || n >= EW_LSM_PATTERN_BYTES || n + 1 > len || len >= EW_PATH_MAX)
		return 0;
	__u32 start = len - n;
	if (path[(start - 1) & (EW_PATH_MAX - 1)] != '/')
		return 0;
#pragma clang loop unroll(disable)
	for (__u32 k = 0; k < EW_LSM_PATTERN_BYTES; k++) {
		if (k >= n)
			break;
		if (path[(start + k) & (EW_PATH_MAX - 1)] != p->pattern[k & (EW_LSM_PATTERN_BYTES - 1)])
			return 0;
	}
	return 1;
}

/*
 * Whether pattern slot `key` matches the path in lsm_pattern_path
 * (`path_len` bytes). A glob the matcher cannot decide (step budget)
 * matches for Block and Audit (fail-safe), not for Allow. A global
 * function: the verifier checks the matchers once, not per pattern.
 */
__noinline int ew_pattern_hit(__u32 key, __u32 path_len)
{
	__u32 zero = 0;
	struct ew_lsm_pattern *p = bpf_map_lookup_elem(&lsm_patterns, &key);
	struct ew_lsm_pattern_path *buf = bpf_map_lookup_elem(&lsm_pattern_path, &zero);
	if (!p || !buf)
		return 0;
	if (p->flags & EW_LSM_PAT_EXECNAME)
		return ew_execname_match(p, buf->path, path_len);
	int r = ew_glob_match(p->pattern, p->len, (const __u8 *)buf->path, path_len);
	return p->action == EW_ACTION_ALLOW ? r == EW_GLOB_MATCH : r != EW_GLOB_NOMATCH;
}

/*
 * The pattern rules' verdict on the path in lsm_pattern_path (`path_len`
 * bytes) for op (`how`: with EW_DECIDE_WRITE) by a task of `workload`
 * (`owner`: its fsuid owns the file): Block > Audit, packed, with
 * EW_PACKED_ALLOWED when an Allow pattern permits it. A match the matcher
 * cannot decide (step budget) counts for Block and Audit (fail-safe), not
 * for Allow.
 */
__noinline __u64 ew_pattern_decide(__u32 path_len, __u64 workload, __u32 how, __u32 owner)
{
	__u32 gen = ew_active_gen();
	struct ew_lsm_gen_info *info = ew_gen_info(gen);
	if (!info)
		return 0;
	__u32 count = info->pattern_count, op = how & 3, write = (how & EW_DECIDE_WRITE) != 0;
	struct ew_lsm_verdict best = {};
	__u32 allowed = 0, actor_known = 0;
	struct ew_lsm_actor actor = {};
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < EW_LSM_MAX_PATTERNS; i++) {
		if (i >= count)
			break;
		__u32 key = (gen & 1) * EW_LSM_MAX_PATTERNS + i;
		struct ew_lsm_pattern *p = bpf_map_lookup_elem(&lsm_patterns, &key);
		if (!p || p->workload != workload || p->op != op)
			continue;
		__u32 action = p->action, ro = p->flags & EW_LSM_PAT_READ_ONLY, oo = p->flags & EW_LSM_PAT_OWNER_ONLY;
		if (action == EW_ACTION_ALLOW) {
			/* Allow permits what it names: readOnly only reads, ownerOnly only the owner (execs: whole) */
			if (allowed || (op == EW_OP_FILE && ((ro && write) || (oo && !owner))))
				continue;
		} else {
			/* readOnly matches writes only; ownerOnly spares the owner */
			if (action <= best.action || action > EW_ACTION_BLOCK || (ro && !write) || (oo && owner))
				continue;
		}
		if (p->src_ino) {
			if (!actor_known) {
				ew_actor(&actor);
				actor_known = 1;
			}
			if (actor.exe_ino != p->src_ino || actor.exe_dev != p->src_dev)
				continue;
		}
		if (!ew_pattern_hit(key, path_len))
			continue;
		if (action == EW_ACTION_ALLOW) {
			allowed = 1;
		} else {
			best.action = action;
			best.rule_id = p->rule_id;
		}
	}
	return EW_PACK(best) | (allowed ? EW_PACKED_ALLOWED : 0);
}

/*
 * The pattern verdict for an open or exec of `file` (0: no pattern rule of
 * the op for the acting task's workload: no path is resolved). A path
 * bpf_d_path cannot give (too long) matches no pattern and is allowed by none.
 */
static __always_inline __u64 ew_file_patterns(struct file *file, __u32 how, __u64 *wl)
{
	__u32 gen = ew_active_gen();
	struct ew_lsm_gen_info *info = ew_gen_info(gen);
	__u32 op = how & 3;
	if (!info || !info->pattern_count || !(info->pattern_ops & EW_LSM_POSTURE_BIT(op)))
		return 0;
	__u64 workload = ew_lsm_workload(wl);
	if (!ew_pattern_candidates(gen, info->pattern_count, op, workload))
		return 0;
	__u32 zero = 0;
	struct ew_lsm_pattern_path *buf = bpf_map_lookup_elem(&lsm_pattern_path, &zero);
	if (!buf)
		return 0;
	long n = bpf_d_path((struct path *)&file->f_path, buf->path, EW_PATH_MAX);
	if (n <= 1)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	__u32 owner = inode && BPF_CORE_READ(inode, i_uid.val) == BPF_CORE_READ(task, cred, fsuid.val);
	return ew_pattern_decide((__u32)(n - 1), workload, how, owner);
}

/*
 * A rule verdict (ew_path_decide, told about Allow patterns) and a pattern
 * verdict together: a Block rule, then a Block pattern, then the posture,
 * then an Audit (rules' first).
 */
static __always_inline __u64 ew_combine(__u64 pattern, __u64 decided)
{
	__u32 d = ew_unpack(decided).action, p = ew_unpack(pattern).action;
	if (d == EW_ACTION_BLOCK && !(decided & EW_PACKED_POSTURE))
		return decided;
	if (p == EW_ACTION_BLOCK)
		return pattern & ~EW_PACKED_ALLOWED;
	if ((decided & EW_PACKED_POSTURE) || d == EW_ACTION_AUDIT || p != EW_ACTION_AUDIT)
		return decided;
	return (pattern & ~EW_PACKED_ALLOWED) | (decided & EW_PACKED_UNLISTED);
}

/* Reporting ------------------------------------------------------------------ */

/*
 * Resolves the path of (dentry, mnt) and copies it into the decision
 * record's strings at `offset`; returns its length. One global function, so
 * each program holds (and the verifier checks) one copy of the path walker.
 */
__noinline __u32 ew_put_path(__u64 dentry_ptr, __u64 mnt_ptr, __u32 offset)
{
	__u32 zero = 0, len = 0, flags = 0;
	struct ew_decision_event *e = bpf_map_lookup_elem(&lsm_decision_scratch, &zero);
	struct ew_lsm_exe_path *tmp = bpf_map_lookup_elem(&lsm_exe_scratch, &zero);
	struct path p = {};

	__u64 off = offset;

	if (!e || !tmp)
		return 0;
	/* hide the range from the compiler so the mask stays for the verifier */
	asm volatile("" : "+r"(off));
	off &= EW_PATH_MAX - 1;
	tmp->path[0] = 0;
	if (dentry_ptr && mnt_ptr) {
		p.dentry = (struct dentry *)dentry_ptr;
		p.mnt = (struct vfsmount *)mnt_ptr;
		len = ew_resolve_path(&p, tmp->path, &flags);
	}
	if (len >= EW_PATH_MAX)
		len = EW_PATH_MAX - 1;
	bpf_probe_read_kernel(&e->strings[off], len + 1, tmp->path);
	return len;
}

/* The current executable's path into the record's exe string, after `res_len` bytes of resource. */
static __always_inline __u32 ew_fill_exe(__u32 res_len)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	const struct path *fpath = (const struct path *)__builtin_preserve_access_index(&exe->f_path);
	__u64 dentry = 0, mnt = 0;

	if (exe) {
		dentry = (__u64)BPF_CORE_READ(fpath, dentry);
		mnt = (__u64)BPF_CORE_READ(fpath, mnt);
	}
	return ew_put_path(dentry, mnt, (res_len & (EW_PATH_MAX - 1)) + 1);
}

static __always_inline void ew_send(struct ew_decision_event *e, __u64 verdict, __u8 operation,
				    __s32 ret, __s32 flags, __u32 res_len, __u32 exe_len)
{
	/* lengths come back from global functions unbounded for the verifier */
	res_len &= EW_PATH_MAX - 1;
	exe_len &= EW_PATH_MAX - 1;
	__u64 size = offsetof(struct ew_decision_event, strings) + res_len + 1 + exe_len + 1;
	e->resource_len = res_len;
	e->exe_len = exe_len;
	e->rule_id = verdict >> 32;
	e->action = verdict & 0xff;
	e->operation = operation;
	e->enforcer = EW_ENFORCER_BPF_LSM;
	e->_pad = 0;
	e->ret = ret;
	e->flags = flags;
	ew_fill_header(&e->h, EW_EVENT_DECISION, size);
	ew_output(e, size, 1);
}

/*
 * Reports a path decision: resource = the path of `dentry` seen through
 * `vfsmnt`. `meta`: operation | 0x100 when refused. Decisions are rare
 * (Block/Audit only), so resolving the paths is affordable.
 */
__noinline int ew_report_path(__u64 dentry_ptr, __u64 vfsmnt_ptr, __u64 verdict, __u32 meta, __s32 flags)
{
	__u32 zero = 0;
	__u32 res_len = ew_put_path(dentry_ptr, vfsmnt_ptr, 0);
	__u32 exe_len = ew_fill_exe(res_len);
	struct ew_decision_event *e = bpf_map_lookup_elem(&lsm_decision_scratch, &zero);

	if (!e)
		return 0;
	ew_send(e, verdict, meta & 0xff, (meta & 0x100) ? -EW_EPERM : 0, flags, res_len, exe_len);
	return 0;
}

/* Applies a path verdict: Block refuses with EPERM, Audit allows; both reported. */
static __always_inline int ew_path_enforce(struct dentry *dentry, struct vfsmount *vfsmnt, __u64 packed,
					   __u32 operation, __s32 flags)
{
	struct ew_lsm_verdict v = ew_unpack(packed);
	if (v.action == EW_ACTION_BLOCK) {
		ew_report_path((__u64)dentry, (__u64)vfsmnt, packed, operation | 0x100, flags);
		return -EW_EPERM;
	}
	if (v.action == EW_ACTION_AUDIT && !(packed & EW_PACKED_UNLISTED))
		ew_report_path((__u64)dentry, (__u64)vfsmnt, packed, operation, flags);
	return 0;
}

/* The pieces of an open file a decision needs. */
struct ew_file_view {
	struct inode *inode;
	struct dentry *dentry;   /* f_path.dentry: what the report names */
	struct vfsmount *vfsmnt;
	struct dentry *walk_from; /* where directory rules are looked for */
	struct vfsmount *walk_mnt;
};

/*
 * On 6.1 overlayfs opens its layer's file with the overlay's path
 * (open_with_fake_path): f_inode is the layer's inode, f_path the
 * overlay's. Directory rules are then looked for above the layer's own
 * dentry (an alias of the inode), so an overlay mounted over a protected
 * directory (possible in a user namespace) does not hide it. The layer's
 * mount is unknown there: the walk stops at its filesystem's root.
 */
/* f_inode and f_path lie within this many bytes of each other (6.1, 6.18): one read gets all three. */
#define EW_FILE_SPAN 64

struct ew_lsm_file_span {
	__u8 b[EW_FILE_SPAN];
};

/* Per CPU, not on the stack: the hooks' call chains are near the 512-byte limit. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_lsm_file_span);
} lsm_file_span SEC(".maps");

static __always_inline void ew_view_file(struct file *file, struct ew_file_view *v)
{
	/* locals only: BPF_CORE_READ(v->x) would relocate against struct ew_file_view */
	struct inode *inode;
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	__u32 zero = 0;
	__u32 o_inode = bpf_core_field_offset(struct file, f_inode);
	__u32 o_path = bpf_core_field_offset(struct file, f_path);
	__u32 o_dentry = o_path + bpf_core_field_offset(struct path, dentry);
	__u32 o_mnt = o_path + bpf_core_field_offset(struct path, mnt);
	__u32 base = o_inode < o_path ? o_inode : o_path;
	struct ew_lsm_file_span *span = bpf_map_lookup_elem(&lsm_file_span, &zero);
	if (span && o_inode + 8 - base <= EW_FILE_SPAN && o_dentry + 8 - base <= EW_FILE_SPAN &&
	    o_mnt + 8 - base <= EW_FILE_SPAN && !bpf_probe_read_kernel(span->b, EW_FILE_SPAN, (char *)file + base)) {
		/* every open comes here: one helper call instead of three */
		inode = *(struct inode **)(span->b + ((o_inode - base) & (EW_FILE_SPAN - 8)));
		dentry = *(struct dentry **)(span->b + ((o_dentry - base) & (EW_FILE_SPAN - 8)));
		vfsmnt = *(struct vfsmount **)(span->b + ((o_mnt - base) & (EW_FILE_SPAN - 8)));
	} else {
		const struct path *fpath = (const struct path *)__builtin_preserve_access_index(&file->f_path);
		inode = BPF_CORE_READ(file, f_inode);
		dentry = BPF_CORE_READ(fpath, dentry);
		vfsmnt = BPF_CORE_READ(fpath, mnt);
	}
	v->inode = inode;
	v->dentry = dentry;
	v->vfsmnt = vfsmnt;
	v->walk_from = dentry;
	v->walk_mnt = vfsmnt;
	if (inode && dentry && BPF_CORE_READ(dentry, d_inode) != inode) {
		struct hlist_node *first = BPF_CORE_READ(inode, i_dentry.first);
		v->walk_from = first ? (struct dentry *)((char *)first - bpf_core_field_offset(struct dentry, d_u.d_alias)) : 0;
		v->walk_mnt = 0;
	}
}

/* Decides and enforces `op` (with EW_DECIDE_* bits in `how`) on an open file; `pattern`: ew_file_patterns()'s verdict. */
static __always_inline int ew_file_enforce(struct file *file, __u32 how, __s32 flags, __u64 *wl, __u64 pattern)
{
	struct ew_file_view v;
	ew_view_file(file, &v);
	if (!v.inode)
		return 0;
	if (pattern & EW_PACKED_ALLOWED)
		how |= EW_DECIDE_ALLOWED;
	__u64 verdict = ew_path_decide((__u64)v.inode, (__u64)v.walk_from, (__u64)v.walk_mnt, how, ew_lsm_workload(wl));
	return ew_path_enforce(v.dentry, v.vfsmnt, ew_combine(pattern, verdict), how & 0xff, flags);
}

/* Process rules ---------------------------------------------------------------- */

/*
 * Process rules are decided where the kernel opens a file to execute it
 * (open_exec(): the program, a script's interpreter, the ELF interpreter;
 * f_flags has __FMODE_EXEC), in file_open below: also when overlayfs opens
 * the layer's file for an executed overlay file, so a blocked program
 * cannot be run through an overlay mounted over its directory. The caller's
 * executable is still the old image there (fromSource).
 *
 * bprm_check_security is the backstop for the program actually started
 * (bprm->file): it refuses Blocks the open did not see (rules switched in
 * between) and reports only those, so each exec is reported once.
 *
 * The process posture (allow-list mode) is decided in bprm_check only: it
 * sees every program started (a script and then its interpreter each), but
 * not the ELF interpreter (PT_INTERP) the kernel opens for a program it let
 * through: that is part of the exec, as for KubeArmor and the compat
 * backend. Run directly (`ld.so prog`) the loader is bprm->file and gets
 * the posture like any program. An open for exec that no Allow rule
 * permits leaves its Audit rule unreported: the posture decides it there.
 */
SEC("lsm/bprm_check_security")
int BPF_PROG(ew_lsm_bprm_check, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	if (!ew_has_path_rules(EW_OP_PROCESS) || ew_is_kthread())
		return 0;
	struct file *file = bprm->file; /* a trusted pointer's field: bpf_d_path takes it */
	struct ew_file_view v;
	if (!file)
		return 0;
	ew_view_file(file, &v);
	if (!v.inode)
		return 0;
	__u64 wl = EW_WL_UNKNOWN;
	__u64 pattern = ew_file_patterns(file, EW_OP_PROCESS, &wl);
	__u32 how = EW_OP_PROCESS | EW_DECIDE_POSTURE | ((pattern & EW_PACKED_ALLOWED) ? EW_DECIDE_ALLOWED : 0);
	__u64 verdict = ew_combine(pattern, ew_path_decide((__u64)v.inode, (__u64)v.walk_from, (__u64)v.walk_mnt, how,
							    ew_lsm_workload(&wl)));
	if (ew_unpack(verdict).action != EW_ACTION_BLOCK && !(verdict & EW_PACKED_POSTURE))
		return 0;
	return ew_path_enforce(v.dentry, v.vfsmnt, verdict, EW_OP_PROCESS, 0);
}

/*
 * Executable mappings of a file an exact Process rule names, other than the
 * kernel mapping the program it is starting (already decided at exec: by
 * then exe_file is the new program): the dynamic loader run as
 * `ld.so /blocked`, dlopen(), mprotect(PROT_EXEC). Directory rules are not
 * applied here: shared libraries live in directories too.
 */
static __always_inline int ew_check_exec_mapping(struct file *file)
{
	if (!file || !ew_has_path_rules(EW_OP_PROCESS) || ew_is_kthread())
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct inode *exe = BPF_CORE_READ(task, mm, exe_file, f_inode);
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	if (!inode || inode == exe)
		return 0;
	__u64 wl = EW_WL_UNKNOWN;
	return ew_file_enforce(file, EW_OP_PROCESS | EW_DECIDE_EXACT_ONLY, 0, &wl, 0);
}

SEC("lsm/mmap_file")
int BPF_PROG(ew_lsm_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	if (ret)
		return ret;
	if (!(prot & EW_PROT_EXEC))
		return 0;
	return ew_check_exec_mapping(file);
}

SEC("lsm/file_mprotect")
int BPF_PROG(ew_lsm_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot,
	     int ret)
{
	if (ret)
		return ret;
	if (!(prot & EW_PROT_EXEC))
		return 0;
	return ew_check_exec_mapping(BPF_CORE_READ(vma, vm_file));
}

/* File rules --------------------------------------------------------------------- */

/*
 * Whether an open may meet a rule of `op` (every open asks: the hot path).
 * Without directory rules, postures or patterns of op in generation `gen`,
 * only an exact rule on the file's inode can apply; its absence is one
 * lookup on values read with plain loads from the hook's trusted `file`
 * (no helper call; ew_path_decide would read them again through helpers).
 */
/* Whether generation `gen` has an any-source entry of op for the inode (dev, ino) of `workload`; its own frame keeps the key off the hook's stack. */
__noinline int ew_exact_entry(__u32 gen, __u32 op, __u64 dev, __u64 ino, __u64 workload)
{
	void *rules = bpf_map_lookup_elem(&lsm_path_rules, &gen);
	if (!rules)
		return 1;
	struct ew_lsm_path_key key = {};
	key.workload = workload;
	key.dev = dev;
	key.ino = ino;
	key.op = op;
	return bpf_map_lookup_elem(rules, &key) != 0;
}

static __always_inline int ew_open_may_match(struct file *file, __u32 gen, const struct ew_lsm_gen_info *info, __u32 op,
					     __u64 *wl)
{
	__u32 bit = EW_LSM_POSTURE_BIT(op);
	if (info->dir_entries[op & 3] || (info->posture_ops & bit) || (info->pattern_ops & bit))
		return 1;
	struct inode *inode = file->f_inode;
	if (!inode)
		return 0;
	return ew_exact_entry(gen, op, inode->i_sb->s_dev, inode->i_ino, ew_lsm_workload(wl));
}

SEC("lsm/file_open")
int BPF_PROG(ew_lsm_file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	__u32 gen = ew_active_gen();
	struct ew_lsm_gen_info *info = ew_gen_info(gen);
	if (!info || !(info->path_entries[EW_OP_PROCESS] | info->path_entries[EW_OP_FILE] | info->pattern_count))
		return 0; /* the common case when no path rule exists: two array lookups */
	__u32 flags = file->f_flags; /* a trusted pointer: plain loads */
	int exec = (flags & EW_FMODE_EXEC_FLAG) != 0;
	__u32 pattern_ops = info->pattern_ops;
	int process = exec && (info->path_entries[EW_OP_PROCESS] || (pattern_ops & EW_LSM_POSTURE_BIT(EW_OP_PROCESS)));
	int files = info->path_entries[EW_OP_FILE] != 0 || (pattern_ops & EW_LSM_POSTURE_BIT(EW_OP_FILE));
	if ((!process && !files) || ew_is_kthread())
		return 0;
	__u64 wl = EW_WL_UNKNOWN;
	if (process && ew_open_may_match(file, gen, info, EW_OP_PROCESS, &wl)) {
		ret = ew_file_enforce(file, EW_OP_PROCESS, 0, &wl, ew_file_patterns(file, EW_OP_PROCESS, &wl));
		if (ret)
			return ret;
	}
	if (!files || !ew_open_may_match(file, gen, info, EW_OP_FILE, &wl))
		return 0;
	__u32 mode = file->f_mode;
	/* O_TRUNC truncates even with O_RDONLY; a created file is a write to its directory */
	int write = (mode & EW_FMODE_WRITE) || (flags & EW_O_TRUNC) || (mode & EW_FMODE_CREATED);
	/* the exec opens' own posture is the process one (bprm_check), as on the compat backend */
	__u32 how = EW_OP_FILE | (write ? EW_DECIDE_WRITE : 0) | (exec ? 0 : EW_DECIDE_POSTURE);
	return ew_file_enforce(file, how, (__s32)flags, &wl, ew_file_patterns(file, how, &wl));
}

/*
 * Path operations (CONFIG_SECURITY_PATH) are writes for File rules: a
 * readOnly file or directory cannot be removed, renamed, linked elsewhere,
 * truncated, chmod/chown'ed, nor get new entries; a fully blocked one
 * neither (renaming or linking a file out of a blocked directory would
 * otherwise take it out of the rule's reach). Reported with open-style
 * flags O_WRONLY | EW_LSM_PATH_OP(hook).
 */
/*
 * A kernel pointer as a plain number: global functions take scalars only,
 * and the verifier keeps a hook argument typed (no arithmetic turns it into
 * one); reading it back through a helper does.
 */
static __always_inline __u64 ew_scalar(const void *ptr)
{
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), &ptr);
	return v;
}

static __always_inline int ew_path_write(struct dentry *dentry, struct vfsmount *vfsmnt, __u32 hook, __u64 *wl)
{
	if (!dentry || !ew_has_path_rules(EW_OP_FILE) || ew_is_kthread())
		return 0;
	struct inode *inode = BPF_CORE_READ(dentry, d_inode); /* NULL: a name being created */
	__u64 d = ew_scalar(dentry);
	__u64 verdict = ew_path_decide((__u64)inode, d, (__u64)vfsmnt, EW_OP_FILE | EW_DECIDE_WRITE | EW_DECIDE_POSTURE,
					ew_lsm_workload(wl));
	return ew_path_enforce((struct dentry *)d, vfsmnt, verdict, EW_OP_FILE, EW_O_WRONLY | EW_LSM_PATH_OP(hook));
}

static __always_inline struct vfsmount *ew_mnt_of(const struct path *p)
{
	return BPF_CORE_READ(p, mnt);
}

SEC("lsm/path_unlink")
int BPF_PROG(ew_lsm_path_unlink, const struct path *dir, struct dentry *dentry, int ret)
{
	__u64 wl = EW_WL_UNKNOWN;
	return ret ? ret : ew_path_write(dentry, ew_mnt_of(dir), EW_LSM_HOOK_UNLINK, &wl);
}

SEC("lsm/path_rmdir")
int BPF_PROG(ew_lsm_path_rmdir, const struct path *dir, struct dentry *dentry, int ret)
{
	__u64 wl = EW_WL_UNKNOWN;
	return ret ? ret : ew_path_write(dentry, ew_mnt_of(dir), EW_LSM_HOOK_RMDIR, &wl);
}

SEC("lsm/path_mkdir")
int BPF_PROG(ew_lsm_path_mkdir, const struct path *dir, struct dentry *dentry, umode_t mode, int ret)
{
	__u64 wl = EW_WL_UNKNOWN;
	return ret ? ret : ew_path_write(dentry, ew_mnt_of(dir), EW_LSM_HOOK_MKDIR, &wl);
}

SEC("lsm/path_mknod")
int BPF_PROG(ew_lsm_path_mknod, const struct path *dir, struct dentry *dentry, umode_t mode, unsigned int dev,
	     int ret)
{
	__u64 wl = EW_WL_UNKNOWN;
	return ret ? ret : ew_path_write(dentry, ew_mnt_of(dir), EW_LSM_HOOK_MKNOD, &wl);
}

SEC("lsm/path_symlink")
int BPF_PROG(ew_lsm_path_symlink, const struct path *dir, struct dentry *dentry, const char *old_name, int ret)
{
	__u64 wl = EW_WL_UNKNOWN;
	return ret ? ret : ew_path_write(dentry, ew_mnt_of(dir), EW_LSM_HOOK_SYMLINK, &wl);
}

SEC("lsm/path_link")
int BPF_PROG(ew_lsm_path_link, struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry,
	     int ret)
{
	if (ret)
		return ret;
	/* links stay on one mount: new_dir's is the old name's too */
	struct vfsmount *mnt = ew_mnt_of(new_dir);
	__u64 wl = EW_WL_UNKNOWN;
	ret = ew_path_write(old_dentry, mnt, EW_LSM_HOOK_LINK, &wl);
	return ret ? ret : ew_path_write(new_dentry, mnt, EW_LSM_HOOK_LINK, &wl);
}

SEC("lsm/path_rename")
int BPF_PROG(ew_lsm_path_rename, const struct path *old_dir, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry, unsigned int flags, int ret)
{
	if (ret)
		return ret;
	__u64 wl = EW_WL_UNKNOWN;
	ret = ew_path_write(old_dentry, ew_mnt_of(old_dir), EW_LSM_HOOK_RENAME, &wl);
	/* the new name: a file replaced there, or a new entry in its directory */
	return ret ? ret : ew_path_write(new_dentry, ew_mnt_of(new_dir), EW_LSM_HOOK_RENAME, &wl);
}

static __always_inline int ew_path_write_path(const struct path *p, __u32 hook)
{
	__u64 wl = EW_WL_UNKNOWN;
	return ew_path_write(BPF_CORE_READ(p, dentry), BPF_CORE_READ(p, mnt), hook, &wl);
}

SEC("lsm/path_truncate")
int BPF_PROG(ew_lsm_path_truncate, const struct path *path, int ret)
{
	return ret ? ret : ew_path_write_path(path, EW_LSM_HOOK_TRUNCATE);
}

SEC("lsm/path_chmod")
int BPF_PROG(ew_lsm_path_chmod, const struct path *path, umode_t mode, int ret)
{
	return ret ? ret : ew_path_write_path(path, EW_LSM_HOOK_CHMOD);
}

SEC("lsm/path_chown")
int BPF_PROG(ew_lsm_path_chown, const struct path *path, unsigned long uid, unsigned long gid, int ret)
{
	return ret ? ret : ew_path_write_path(path, EW_LSM_HOOK_CHOWN);
}

/* Network rules ------------------------------------------------------------------ */

static __always_inline void ew_net_lookup(void *rules, struct ew_net_rule_key *key, __u32 cls,
					  struct ew_lsm_verdict *best, __u32 *best_cls, __u32 *allowed)
{
	struct ew_net_rule_value *rule;

	key->proto_class = cls;
	rule = bpf_map_lookup_elem(rules, key);
	if (!rule)
		return;
	if (rule->action == EW_ACTION_ALLOW)
		*allowed = 1;
	if (rule->action > best->action && rule->action <= EW_ACTION_BLOCK) {
		best->action = rule->action;
		best->rule_id = rule->rule_id;
		*best_cls = cls;
	}
}

/*
 * The verdict for a socket of (family, type, protocol) made or used by a
 * task of `workload`: the executable's rules, then any-source ones (Block
 * wins); in allow-list mode, what no Allow rule matches gets the workload's
 * posture (its class: the socket's first). Packed, with the matching class
 * in bits 8..15. Unclassified sockets (AF_UNIX, netlink) are never decided.
 */
__noinline __u64 ew_net_decide(__u32 family, __u32 type, __u32 protocol, __u64 workload)
{
	struct ew_lsm_verdict best = {};
	__u32 cls = 0, allowed = 0;
	__u32 gen = ew_active_gen();
	struct ew_lsm_gen_info *info = bpf_map_lookup_elem(&lsm_gen_info, &gen);
	void *rules = bpf_map_lookup_elem(&lsm_net_rules, &gen);

	if (!info || !rules || !info->net_entries)
		return 0;
	__u32 classes = ew_net_classify(family, type, protocol);
	__u32 first = classes & 0xff, second = classes >> 8;
	if (!first)
		return 0;

	struct ew_net_rule_key key = {};
	key.workload = workload;
	struct inode *exe = info->net_sourced ? BPF_CORE_READ((struct task_struct *)bpf_get_current_task_btf(), mm, exe_file, f_inode) : 0;
	if (exe) {
		/* sourced entries exist: the executable's own rules first */
		key.src_dev = BPF_CORE_READ(exe, i_sb, s_dev);
		key.src_ino = BPF_CORE_READ(exe, i_ino);
		ew_net_lookup(rules, &key, first, &best, &cls, &allowed);
		if (second)
			ew_net_lookup(rules, &key, second, &best, &cls, &allowed);
	}
	key.src_dev = 0;
	key.src_ino = 0;
	ew_net_lookup(rules, &key, first, &best, &cls, &allowed);
	if (second)
		ew_net_lookup(rules, &key, second, &best, &cls, &allowed);
	/* allow-list mode: a classified socket no Allow (nor Block) rule matches gets the posture */
	if (best.action != EW_ACTION_BLOCK && !allowed && (info->posture_ops & EW_LSM_POSTURE_BIT(EW_OP_NETWORK)) &&
	    !ew_is_agent(info)) {
		key.proto_class = EW_NET_POSTURE_CLASS;
		struct ew_net_rule_value *p = bpf_map_lookup_elem(rules, &key);
		if (p && (p->action == EW_ACTION_BLOCK || p->action == EW_ACTION_AUDIT)) {
			best.action = p->action;
			best.rule_id = p->rule_id;
			cls = first;
		}
	}
	return EW_PACK(best) | (cls << 8);
}

/* Reports a network decision: resource = the protocol class's name. */
__noinline int ew_report_net(__u64 verdict, __u32 cls, __s32 ret)
{
	__u32 zero = 0, len;
	struct ew_decision_event *e = bpf_map_lookup_elem(&lsm_decision_scratch, &zero);

	if (!e)
		return 0;
	cls &= 7;
	len = ew_net_class_name_lens[cls] & 7;
	__builtin_memcpy(e->strings, ew_net_class_names[cls], 8);
	__u32 exe_len = ew_fill_exe(len);
	ew_send(e, verdict, EW_OP_NETWORK, ret, (__s32)cls, len, exe_len);
	return 0;
}

/* `report_audit`: at creation Audit is reported; at use only refusals (the
 * audit was reported when the socket was made). */
static __always_inline int ew_net_enforce(__u32 family, __u32 type, __u32 protocol, int report_audit)
{
	__u64 packed = ew_net_decide(family, type, protocol, ew_current_workload_counted());
	struct ew_lsm_verdict v = ew_unpack(packed);
	__u32 cls = (packed >> 8) & 0xff;

	if (v.action == EW_ACTION_BLOCK) {
		ew_report_net(EW_PACK(v), cls, -EW_EPERM);
		return -EW_EPERM;
	}
	if (v.action == EW_ACTION_AUDIT && report_audit)
		ew_report_net(EW_PACK(v), cls, 0);
	return 0;
}

static __always_inline int ew_net_on_use(struct socket *sock)
{
	if (!sock || !ew_has_net_rules() || ew_is_kthread())
		return 0;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	__u32 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u32 type = BPF_CORE_READ(sock, type);
	__u32 protocol = BPF_CORE_READ(sk, sk_protocol);
	return ew_net_enforce(family, type, protocol, 0);
}

SEC("lsm/socket_create")
int BPF_PROG(ew_lsm_socket_create, int family, int type, int protocol, int kern, int ret)
{
	if (ret)
		return ret;
	if (kern || !ew_has_net_rules() || ew_is_kthread())
		return 0; /* kern: the kernel's own sockets */
	return ew_net_enforce(family, type, protocol, 1);
}

SEC("lsm/socket_connect")
int BPF_PROG(ew_lsm_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	return ew_net_on_use(sock);
}

SEC("lsm/socket_bind")
int BPF_PROG(ew_lsm_socket_bind, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	return ew_net_on_use(sock);
}

SEC("lsm/socket_listen")
int BPF_PROG(ew_lsm_socket_listen, struct socket *sock, int backlog, int ret)
{
	if (ret)
		return ret;
	return ew_net_on_use(sock);
}

SEC("lsm/socket_accept")
int BPF_PROG(ew_lsm_socket_accept, struct socket *sock, struct socket *newsock, int ret)
{
	if (ret)
		return ret;
	return ew_net_on_use(sock);
}

/* Each send: unconnected UDP names its peer here, and a socket handed over keeps no other check. */
SEC("lsm/socket_sendmsg")
int BPF_PROG(ew_lsm_socket_sendmsg, struct socket *sock, struct msghdr *msg, int size, int ret)
{
	if (ret)
		return ret;
	return ew_net_on_use(sock);
}
