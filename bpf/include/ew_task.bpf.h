/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * BPF helpers shared by every edgeward object:
 *  - ew_fill_header(): the "who did it" header of every record, from the
 *    current task (CO-RE reads, so the same object loads on 6.1 and 6.18);
 *  - ew_resolve_path()/ew_resolve_file(): absolute path of a struct path or
 *    struct file. bpf_d_path() is not callable from tracepoints, so the
 *    dentry chain is walked by hand, crossing mounts through struct mount.
 *
 * Paths are resolved up to the root of the task's mount namespace, not to a
 * chroot: a chrooted process cannot make its opens look like other files.
 */
#ifndef EW_TASK_BPF_H
#define EW_TASK_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "edgeward_abi.h"

/* Header ------------------------------------------------------------------ */

/* numbers[level] of a struct pid (a flexible array of struct upid {int nr; ns *}): indexed by hand. */
static __always_inline struct upid *ew_pid_upid(struct pid *pid, unsigned int level)
{
	struct upid *upids = (struct upid *)((char *)pid + bpf_core_field_offset(struct pid, numbers));
	return upids + (level & 31); /* MAX_PID_NS_LEVEL is 32 */
}

/* Inode number of the pid namespace the task lives in (task_active_pid_ns). */
static __always_inline __u32 ew_task_pid_ns(struct task_struct *task)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	if (!pid)
		return 0;
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid *up = ew_pid_upid(pid, level);
	return BPF_CORE_READ(up, ns, ns.inum);
}

/*
 * The task's tgid and its real parent's tgid as seen in the task's own pid
 * namespace (task_tgid_nr_ns(task, ns) and task_tgid_nr_ns(parent, ns),
 * i.e. getpid() and getppid() inside a container), and that namespace's
 * inode number. Read here, in the kernel, because once the task has exited
 * /proc no longer tells. The parent's number at the task's level counts only
 * when it belongs to the same namespace: a parent outside it (a container's
 * init, whose parent is on the host) reads as 0, as getppid() returns.
 */
static __always_inline void ew_task_ns_ids(struct task_struct *task, struct ew_event_header *h)
{
	h->ns_pid = 0;
	h->ns_ppid = 0;
	h->pid_ns = 0;
	/* the group leader's struct pid carries the tgid's numbers */
	struct pid *tgid_pid = BPF_CORE_READ(task, group_leader, thread_pid);
	if (!tgid_pid)
		return;
	unsigned int level = BPF_CORE_READ(tgid_pid, level);
	struct upid *up = ew_pid_upid(tgid_pid, level);
	struct pid_namespace *ns = BPF_CORE_READ(up, ns);
	h->ns_pid = BPF_CORE_READ(up, nr);
	h->pid_ns = BPF_CORE_READ(ns, ns.inum);
	struct pid *parent_pid = BPF_CORE_READ(task, real_parent, group_leader, thread_pid);
	if (!parent_pid || BPF_CORE_READ(parent_pid, level) < level)
		return; /* the parent is in an ancestor namespace: invisible from the task's */
	struct upid *pup = ew_pid_upid(parent_pid, level);
	if (BPF_CORE_READ(pup, ns) == ns)
		h->ns_ppid = BPF_CORE_READ(pup, nr);
}

/* Fills `h` for a record of `kind` and `size` bytes from the current task. */
static __always_inline void ew_fill_header(struct ew_event_header *h, __u16 kind, __u16 size)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	h->kind = kind;
	h->size = size;
	h->abi_version = EW_ABI_VERSION;
	h->timestamp_ns = bpf_ktime_get_boot_ns();
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = (__u32)bpf_get_current_uid_gid();
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	ew_task_ns_ids(task, h); /* pid_ns, ns_pid, ns_ppid */
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* Path walker --------------------------------------------------------------- */

/*
 * Dentries plus mount crossings walked before giving up (EW_STR_TRUNCATED).
 * Above what fits in EW_PATH_MAX ("a/" per level), so only stacked mounts can
 * exhaust it; the walk stops at the root, so the bound costs nothing.
 */
#define EW_PATH_DEPTH 4096
#define EW_PATH_MASK (EW_PATH_MAX - 1)
#define EW_DELETED " (deleted)"
#define EW_DELETED_LEN (sizeof(EW_DELETED) - 1)

/*
 * The path is assembled backwards, ending at scratch[EW_PATH_MAX - 1]. The
 * second half is never written: it only lets the verifier accept
 * "offset < EW_PATH_MAX, length < EW_PATH_MAX" stores.
 */
struct ew_path_scratch {
	char buf[2 * EW_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_path_scratch);
} ew_path_scratch SEC(".maps");

struct ew_path_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	struct dentry *mnt_root; /* of vfsmnt, read once per mount */
	char *buf;
	__u32 pos;       /* first byte of the path assembled so far */
	__u32 flags;     /* EW_STR_* */
	__u32 relative;  /* ended at a disconnected dentry (memfd, anon inode): no leading '/' */
};

static __always_inline struct vfsmount *ew_mount_vfsmnt(struct mount *m)
{
	return (struct vfsmount *)((char *)m + bpf_core_field_offset(struct mount, mnt));
}

static __always_inline struct mount *ew_vfsmnt_mount(struct vfsmount *v)
{
	return (struct mount *)((char *)v - bpf_core_field_offset(struct mount, mnt));
}

/* What the walk needs of a dentry. */
struct ew_dentry_view {
	struct dentry *parent;
	const unsigned char *name;
	__u32 len;
};

/*
 * d_parent and d_name sit together near the start of struct dentry (on every
 * kernel edgeward targets): one read of this many bytes gets them all, where
 * separate reads cost a helper call each on the hottest loop.
 */
#define EW_DENTRY_HEAD 64

static __always_inline void ew_read_dentry(struct dentry *d, struct ew_dentry_view *v)
{
	__u32 off_parent = bpf_core_field_offset(struct dentry, d_parent);
	__u32 off_len = bpf_core_field_offset(struct dentry, d_name) + bpf_core_field_offset(struct qstr, len);
	__u32 off_name = bpf_core_field_offset(struct dentry, d_name) + bpf_core_field_offset(struct qstr, name);

	if (off_parent + 8 > EW_DENTRY_HEAD || off_len + 4 > EW_DENTRY_HEAD || off_name + 8 > EW_DENTRY_HEAD) {
		/* a layout where they are further apart: one read per field */
		v->parent = BPF_CORE_READ(d, d_parent);
		v->len = BPF_CORE_READ(d, d_name.len);
		v->name = BPF_CORE_READ(d, d_name.name);
		return;
	}
	__u8 head[EW_DENTRY_HEAD];
	bpf_probe_read_kernel(head, sizeof(head), d);
	v->parent = *(struct dentry **)(head + off_parent);
	v->len = *(__u32 *)(head + off_len);
	v->name = *(const unsigned char **)(head + off_name);
}

/* Prepends one name (and, unless `bare`, a '/'); 0 when it did not fit. */
static __always_inline int ew_path_prepend(struct ew_path_walk *w, const struct ew_dentry_view *v, int bare)
{
	__u32 len = v->len;
	__u32 need = len + (bare ? 0 : 1);

	if (len >= EW_PATH_MAX || need > w->pos)
		return 0;
	__u32 pos = w->pos - len;
	bpf_probe_read_kernel(&w->buf[pos & EW_PATH_MASK], len & EW_PATH_MASK, v->name);
	if (!bare) {
		pos--;
		w->buf[pos & EW_PATH_MASK] = '/';
	}
	w->pos = pos;
	return 1;
}

/* One step up: a dentry name, a mount crossing, or the end (returns 1). */
static long ew_path_step(__u64 index, void *ctx)
{
	/* locals only: BPF_CORE_READ on w->x would relocate against struct ew_path_walk */
	struct ew_path_walk *w = ctx;
	struct dentry *d = w->dentry;
	struct mount *mnt = w->mnt;

	if (d == w->mnt_root) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
		if (up == mnt || !up)
			return 1; /* root of the namespace: done */
		/* continue from the dentry this mount is mounted on */
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		w->vfsmnt = ew_mount_vfsmnt(up);
		w->mnt_root = BPF_CORE_READ(up, mnt.mnt_root);
		return 0;
	}
	struct ew_dentry_view v;
	ew_read_dentry(d, &v);
	if (d == v.parent || !v.parent) {
		/* disconnected (pseudo files: memfd, pipes, anon inodes): the
		 * caller adds the bare name (doing it here keeps the verifier's
		 * states from converging) */
		w->relative = 1;
		return 1;
	}
	if (!ew_path_prepend(w, &v, 0)) {
		w->flags |= EW_STR_TRUNCATED;
		return 1;
	}
	w->dentry = v.parent;
	return 0;
}

#define EW_PIPEFS_MAGIC 0x50495045
#define EW_SOCKFS_MAGIC 0x534F434B

/*
 * Names a disconnected dentry without a name (pipes, sockets) as d_path()
 * does through d_dname: "pipe:[ino]", "socket:[ino]".
 */
static __always_inline void ew_path_pseudo(struct ew_path_walk *w, struct dentry *d)
{
	char name[40];
	__u64 args[1];
	unsigned long magic = BPF_CORE_READ(d, d_sb, s_magic);
	long n;

	args[0] = BPF_CORE_READ(d, d_inode, i_ino);
	if (magic == EW_PIPEFS_MAGIC)
		n = bpf_snprintf(name, sizeof(name), "pipe:[%lu]", args, sizeof(args));
	else if (magic == EW_SOCKFS_MAGIC)
		n = bpf_snprintf(name, sizeof(name), "socket:[%lu]", args, sizeof(args));
	else
		n = bpf_snprintf(name, sizeof(name), "anon_inode:[%lu]", args, sizeof(args));
	if (n <= 1 || n > (long)sizeof(name))
		return;
	struct ew_dentry_view v = {.name = (const unsigned char *)name, .len = n - 1};
	if (!ew_path_prepend(w, &v, 1))
		w->flags |= EW_STR_TRUNCATED;
}

/*
 * Writes the absolute path of `path` (NUL-terminated) into `out`, which holds
 * EW_PATH_MAX bytes. Returns its length without the NUL; ORs EW_STR_TRUNCATED
 * into *flags when the path was cut (the kept part is the leaf end).
 */
static __always_inline __u32 ew_resolve_path(const struct path *path, char *out, __u32 *flags)
{
	__u32 zero = 0;
	struct ew_path_scratch *s = bpf_map_lookup_elem(&ew_path_scratch, &zero);
	if (!s) {
		out[0] = 0;
		*flags |= EW_STR_TRUNCATED;
		return 0;
	}

	struct ew_path_walk w = {};
	struct vfsmount *vfsmnt = BPF_CORE_READ(path, mnt);
	w.dentry = BPF_CORE_READ(path, dentry);
	w.vfsmnt = vfsmnt;
	w.mnt = ew_vfsmnt_mount(vfsmnt);
	w.mnt_root = BPF_CORE_READ(vfsmnt, mnt_root); /* not w.vfsmnt: see ew_path_step */
	w.buf = s->buf;
	w.pos = EW_PATH_MAX - 1;
	s->buf[EW_PATH_MAX - 1] = 0;

	if (!w.dentry || !w.vfsmnt) {
		out[0] = 0;
		*flags |= EW_STR_TRUNCATED;
		return 0;
	}
	/* an unlinked file reads as d_path() and /proc/PID/exe show it */
	struct dentry *leaf = w.dentry;
	struct dentry *parent = BPF_CORE_READ(leaf, d_parent);
	if (!BPF_CORE_READ(leaf, d_hash.pprev) && parent != leaf) {
		__builtin_memcpy(&s->buf[EW_PATH_MAX - 1 - EW_DELETED_LEN], EW_DELETED, EW_DELETED_LEN);
		w.pos -= EW_DELETED_LEN;
	}
	long steps = bpf_loop(EW_PATH_DEPTH, ew_path_step, &w, 0);
	if (steps >= EW_PATH_DEPTH)
		w.flags |= EW_STR_TRUNCATED;
	if (w.relative) {
		struct ew_dentry_view v;
		ew_read_dentry(w.dentry, &v);
		if (v.len == 0)
			ew_path_pseudo(&w, w.dentry);
		else if (!ew_path_prepend(&w, &v, 1))
			w.flags |= EW_STR_TRUNCATED;
	}
	if (w.pos == EW_PATH_MAX - 1 && !w.relative) {
		/* the root itself */
		w.pos--;
		s->buf[w.pos & EW_PATH_MASK] = '/';
	}
	*flags |= w.flags;
	long n = bpf_probe_read_kernel_str(out, EW_PATH_MAX, &s->buf[w.pos & EW_PATH_MASK]);
	if (n <= 0) {
		out[0] = 0;
		return 0;
	}
	return (__u32)(n - 1);
}

/* Absolute path of an open file (its f_path). */
static __always_inline __u32 ew_resolve_file(struct file *file, char *out, __u32 *flags)
{
	const struct path *p = (const struct path *)__builtin_preserve_access_index(&file->f_path);
	return ew_resolve_path(p, out, flags);
}

#endif /* EW_TASK_BPF_H */
