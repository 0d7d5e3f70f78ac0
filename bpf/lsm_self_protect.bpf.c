// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpf-lsm self-protection: rules the agent installs for itself while it runs.
 *
 * - task_kill: signals to the agent's process (any of its threads) are
 *   refused unless they come from the agent itself or from the configured
 *   stopper (the service manager, pid 1 by default): its stop path is the
 *   escape hatch. Signal 0 (is it alive?) and SIGHUP (reload) pass.
 * - file_send_sigiotask: no signal-driven I/O signal (F_SETOWN/F_SETSIG,
 *   which can be SIGKILL and skips task_kill) reaches the agent.
 * - ptrace_access_check: nobody else may attach to the agent (ptrace,
 *   /proc/<pid>/mem writes, process_vm_writev, pidfd_getfd of its fds).
 * - file_open for writing and the path_* hooks: protected inodes (the
 *   agent's binary, its state and install directories, its pin directory
 *   on bpffs, all below the protected directories) are written, removed,
 *   renamed, linked, truncated or chmod/chown'ed by the agent only.
 * - inode_setattr/setxattr/removexattr/set_acl/remove_acl/file_setattr and
 *   the inode-flag ioctls: times, xattrs, ACLs and flags (chattr) of
 *   protected inodes change by the agent only.
 * - sb_mount/move_mount: nothing is mounted on or below a protected inode
 *   (a mount there would hide the protected tree), nor on a directory above
 *   one where the agent would see it (its mount namespace, or a shared
 *   mount propagating there); sb_pivotroot: no pivot_root in the agent's
 *   mount namespace; sb_umount: the
 *   filesystems holding protected state (bpffs with the pins), mounts whose
 *   root is protected and those of directories above (as for mounts) cannot
 *   be unmounted.
 * - file_open on cgroup v2 and v1: the files of the agent's cgroup and of
 *   its ancestors (cgroup.kill, cgroup.freeze, memory.max, cpu.max, v1
 *   freezer.state and memory.limit_in_bytes...) are
 *   written by the agent and the stopper only (moving tasks, enabling
 *   controllers and pressure triggers stay open); the agent's cgroup is
 *   read through its task, so moving it elsewhere does not escape this.
 * - file_open on procfs, task_setrlimit/setnice/setscheduler/setioprio:
 *   /proc/<agent>/... (oom_score_adj, timerslack_ns...) are written, and its
 *   rlimits (RLIMIT_CPU kills), nice, policy, affinity and io priority
 *   changed, by the agent and the stopper only.
 * - bpf_map: write access to the agent's BPF maps (registered ids, and the
 *   rule maps of each generation, by name) is the agent's only.
 *
 * Not pinned on purpose: these programs go away with the agent process
 * (a stop through the service manager, a crash), so pinned rules can then
 * be removed (edgeward unload) and the agent upgraded.
 * See agent/src/lsm_self_protect.ts for the escape hatch and known gaps.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "ew_self_protect_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EW_EPERM 1
#define EW_FMODE_WRITE 0x2
#define EW_O_TRUNC 01000
#define EW_SIGHUP 1
#define EW_PTRACE_MODE_ATTACH 0x02
#define EW_CGROUP2_SUPER_MAGIC 0x63677270
#define EW_CGROUP_SUPER_MAGIC 0x27e0eb
#define EW_PROC_SUPER_MAGIC 0x9fa0
#define EW_FS_IOC_SETFLAGS 0x40086602
#define EW_FS_IOC32_SETFLAGS 0x40046602
#define EW_FS_IOC_FSSETXATTR 0x401c5820
#define EW_MS_REMOUNT 32
#define EW_MS_PROPAGATION ((1 << 17) | (1 << 18) | (1 << 19) | (1 << 20)) /* UNBINDABLE PRIVATE SLAVE SHARED */

/* ew_sp_config[0]: who the agent is and who may stop it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_sp_config);
} ew_sp_config SEC(".maps");

/*
 * Protected inodes (EW_SP_EXACT / EW_SP_TREE) and filesystems (ino 0:
 * EW_SP_NO_UMOUNT, EW_SP_FS_HAS_PROTECTED).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EW_SP_MAX_INODES);
	__type(key, struct ew_sp_inode_key);
	__type(value, __u32);
} ew_sp_inodes SEC(".maps");

/* The agent's thread group leader (struct ew_sp_agent). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_sp_agent);
} ew_sp_agent SEC(".maps");

/* Ids of the BPF maps only the agent may open for writing. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EW_SP_MAX_MAPS);
	__type(key, __u32);
	__type(value, __u32);
} ew_sp_map_ids SEC(".maps");

/* Refusals by kind (enum ew_sp_refusal), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EW_SP_REFUSALS);
	__type(key, __u32);
	__type(value, __u64);
} ew_sp_refused SEC(".maps");

static __always_inline struct ew_sp_config *ew_sp_cfg(void)
{
	__u32 zero = 0;
	struct ew_sp_config *c = bpf_map_lookup_elem(&ew_sp_config, &zero);
	return c && c->agent_tgid ? c : 0;
}

static __always_inline int ew_sp_refuse(__u32 kind)
{
	__u64 *n = bpf_map_lookup_elem(&ew_sp_refused, &kind);
	if (n)
		__sync_fetch_and_add(n, 1);
	return -EW_EPERM;
}

static __always_inline __u32 ew_sp_current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

/* Processes ------------------------------------------------------------------ */

SEC("lsm/task_kill")
int BPF_PROG(ew_sp_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred, int ret)
{
	if (ret)
		return ret;
	struct ew_sp_config *c = ew_sp_cfg();
	if (!c || sig == 0 || sig == EW_SIGHUP)
		return 0;
	if (BPF_CORE_READ(p, tgid) != c->agent_tgid)
		return 0;
	__u32 me = ew_sp_current_tgid();
	if (me == c->agent_tgid || (c->stopper_tgid && me == c->stopper_tgid))
		return 0;
	return ew_sp_refuse(EW_SP_REFUSED_SIGNAL);
}

/*
 * SIGIO/SIGURG (or any signal chosen with F_SETSIG, SIGKILL included) sent
 * by the kernel to the owner set with F_SETOWN, when I/O happens on a file:
 * no task_kill check on that path. The agent never asks for signal-driven
 * I/O, so none reaches it. Runs in any context (softirq for sockets):
 * `current` says nothing here.
 */
SEC("lsm/file_send_sigiotask")
int BPF_PROG(ew_sp_file_send_sigiotask, struct task_struct *tsk, struct fown_struct *fown, int sig, int ret)
{
	if (ret)
		return ret;
	struct ew_sp_config *c = ew_sp_cfg();
	if (!c || BPF_CORE_READ(tsk, tgid) != c->agent_tgid)
		return 0;
	return ew_sp_refuse(EW_SP_REFUSED_SIGNAL);
}

SEC("lsm/ptrace_access_check")
int BPF_PROG(ew_sp_ptrace, struct task_struct *child, unsigned int mode, int ret)
{
	if (ret)
		return ret;
	struct ew_sp_config *c = ew_sp_cfg();
	if (!c || !(mode & EW_PTRACE_MODE_ATTACH))
		return 0; /* reading /proc/<pid>/status and the like stays open */
	if (BPF_CORE_READ(child, tgid) != c->agent_tgid || ew_sp_current_tgid() == c->agent_tgid)
		return 0;
	return ew_sp_refuse(EW_SP_REFUSED_PTRACE);
}

/* Files ---------------------------------------------------------------------- */

/*
 * Whether `d` (a dentry; negative for a name being created) is a protected
 * inode or lies below a protected directory: d_parent is walked up to
 * EW_SP_WALK_MAX levels within its filesystem. A filesystem without
 * protected inodes costs one lookup.
 */
static __always_inline int ew_sp_protected(struct dentry *d)
{
	if (!d)
		return 0;
	struct ew_sp_inode_key key = {.dev = BPF_CORE_READ(d, d_sb, s_dev), .ino = 0};
	__u32 *fs = bpf_map_lookup_elem(&ew_sp_inodes, &key);
	if (!fs || !(*fs & EW_SP_FS_HAS_PROTECTED))
		return 0;
	for (int i = 0; i < EW_SP_WALK_MAX; i++) {
		if (!d)
			return 0;
		struct inode *inode = BPF_CORE_READ(d, d_inode);
		if (inode) {
			key.ino = BPF_CORE_READ(inode, i_ino);
			__u32 *flags = bpf_map_lookup_elem(&ew_sp_inodes, &key);
			if (flags && (*flags & (i == 0 ? (EW_SP_EXACT | EW_SP_TREE) : EW_SP_TREE)))
				return 1;
		}
		struct dentry *parent = BPF_CORE_READ(d, d_parent);
		if (parent == d)
			return 0;
		d = parent;
	}
	return 0;
}

/* `kind` refused when `d` is protected and the caller is not the agent. */
static __always_inline int ew_sp_change(struct dentry *d, __u32 kind)
{
	struct ew_sp_config *c = ew_sp_cfg();
	if (!c || ew_sp_current_tgid() == c->agent_tgid)
		return 0;
	return ew_sp_protected(d) ? ew_sp_refuse(kind) : 0;
}

static __always_inline int ew_sp_path_write(struct dentry *d)
{
	return ew_sp_change(d, EW_SP_REFUSED_PATH);
}

static __always_inline struct task_struct *ew_sp_agent_task(void)
{
	__u32 zero = 0;
	struct ew_sp_agent *a = bpf_map_lookup_elem(&ew_sp_agent, &zero);
	return a ? (struct task_struct *)a->task : 0;
}

/*
 * The agent's current cgroup in the v1 hierarchy of `target`: through the
 * first controller bound to it (a hierarchy without one, name=systemd, has
 * no control file that stops or starves the agent).
 */
static __always_inline struct cgroup *ew_sp_agent_v1_cgroup(struct task_struct *agent, struct cgroup *target)
{
	__u32 mask = BPF_CORE_READ(target, root, subsys_mask);
	struct css_set *cset = BPF_CORE_READ(agent, cgroups);
	__u32 n = bpf_core_field_size(struct css_set, subsys) / sizeof(void *);
	for (__u32 i = 0; i < 32; i++) {
		if (i >= n)
			break;
		if (!(mask & (1u << i)))
			continue;
		struct cgroup_subsys_state *css = 0;
		bpf_probe_read_kernel(&css, sizeof(css),
				      (void *)cset + bpf_core_field_offset(struct css_set, subsys) + i * sizeof(void *));
		return BPF_CORE_READ(css, cgroup);
	}
	return 0;
}

/*
 * Whether `dir` (a cgroup directory; v2, or v1 when `v1`) is the agent's
 * current cgroup or one of its ancestors (freezing, killing or limiting
 * one reaches every descendant).
 */
static __always_inline int ew_sp_agent_cgroup_or_ancestor(struct dentry *dir, int v1)
{
	struct task_struct *agent = ew_sp_agent_task();
	if (!agent || !dir)
		return 0;
	struct kernfs_node *kn = BPF_CORE_READ(dir, d_inode, i_private);
	if (!kn)
		return 0;
	struct cgroup *target = BPF_CORE_READ(kn, priv);
	if (!target)
		return 0;
	struct cgroup *cg = v1 ? ew_sp_agent_v1_cgroup(agent, target) : BPF_CORE_READ(agent, cgroups, dfl_cgrp);
	if (!cg)
		return 0;
	/* cg->ancestors[l] is cg's ancestor at level l (itself at its own level): no walk, no depth limit */
	int level = BPF_CORE_READ(target, level);
	if (level < 0 || level > BPF_CORE_READ(cg, level))
		return 0;
	struct cgroup *at_level = 0;
	bpf_probe_read_kernel(&at_level, sizeof(at_level),
			      (void *)cg + bpf_core_field_offset(struct cgroup, ancestors) + (__u64)level * sizeof(at_level));
	return at_level == target;
}

static __always_inline int ew_sp_name_is(const char *name, long len, const char *lit, int size)
{
	if (len != size) /* both count the NUL */
		return 0;
#pragma unroll
	for (int i = 0; i < size; i++)
		if (name[i] != lit[i])
			return 0;
	return 1;
}
#define EW_SP_NAME_IS(name, len, lit) ew_sp_name_is(name, len, lit, sizeof(lit))

/*
 * cgroup files others may still write in the agent's cgroups: moving tasks
 * (the agent's own move has no LSM hook at all; v1: tasks too), enabling
 * controllers for children, PSI triggers and v1 memory events (monitoring
 * daemons open *.pressure and cgroup.event_control for writing).
 */
static __always_inline int ew_sp_cgroup_file_open_to_all(struct dentry *d)
{
	char name[32] = {};
	long len = bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(d, d_name.name));
	if (EW_SP_NAME_IS(name, len, "cgroup.procs") || EW_SP_NAME_IS(name, len, "cgroup.threads") ||
	    EW_SP_NAME_IS(name, len, "cgroup.subtree_control") || EW_SP_NAME_IS(name, len, "tasks") ||
	    EW_SP_NAME_IS(name, len, "cgroup.event_control"))
		return 1;
	const char suffix[] = ".pressure";
	if (len < (long)sizeof(suffix) || len > (long)sizeof(name))
		return 0;
#pragma unroll
	for (int i = 0; i < (int)sizeof(suffix) - 1; i++)
		if (name[(len - (long)sizeof(suffix) + i) & (sizeof(name) - 1)] != suffix[i])
			return 0;
	return 1;
}

/* Whether `d` (a procfs dentry) is below /proc/<pid> of one of the agent's threads. */
static __always_inline int ew_sp_proc_of_agent(struct dentry *d, __u32 agent_tgid)
{
	struct inode *inode = BPF_CORE_READ(d, d_inode);
	if (!inode)
		return 0;
	/* every procfs inode is the vfs_inode of a struct proc_inode; pid is set below /proc/<pid> */
	struct proc_inode *pi = (void *)inode - bpf_core_field_offset(struct proc_inode, vfs_inode);
	struct pid *pid = BPF_CORE_READ(pi, pid);
	if (!pid)
		return 0;
	struct hlist_node *first = BPF_CORE_READ(pid, tasks[PIDTYPE_PID].first);
	if (!first)
		return 0; /* exited */
	struct task_struct *t = (void *)first - bpf_core_field_offset(struct task_struct, pid_links);
	return BPF_CORE_READ(t, tgid) == agent_tgid;
}

SEC("lsm/file_open")
int BPF_PROG(ew_sp_file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	__u32 mode = BPF_CORE_READ(file, f_mode);
	__u32 flags = BPF_CORE_READ(file, f_flags);
	if (!(mode & EW_FMODE_WRITE) && !(flags & EW_O_TRUNC))
		return 0;
	struct ew_sp_config *c = ew_sp_cfg();
	__u32 me = ew_sp_current_tgid();
	if (!c || me == c->agent_tgid)
		return 0;
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	unsigned long magic = BPF_CORE_READ(d, d_sb, s_magic);
	if (magic == EW_CGROUP2_SUPER_MAGIC || magic == EW_CGROUP_SUPER_MAGIC) {
		/*
		 * cgroup.kill kills without a signal syscall, cgroup.freeze (v1:
		 * freezer.state) stops it, limits starve it
		 */
		if (me == c->stopper_tgid ||
		    !ew_sp_agent_cgroup_or_ancestor(BPF_CORE_READ(d, d_parent), magic == EW_CGROUP_SUPER_MAGIC) ||
		    ew_sp_cgroup_file_open_to_all(d))
			return 0;
		return ew_sp_refuse(EW_SP_REFUSED_CGROUP);
	}
	if (magic == EW_PROC_SUPER_MAGIC) {
		/* oom_score_adj (first OOM victim), timerslack_ns, comm, attr/... */
		if (me == c->stopper_tgid || !ew_sp_proc_of_agent(d, c->agent_tgid))
			return 0;
		return ew_sp_refuse(EW_SP_REFUSED_PROCESS);
	}
	return ew_sp_protected(d) ? ew_sp_refuse(EW_SP_REFUSED_PATH) : 0;
}

SEC("lsm/path_unlink")
int BPF_PROG(ew_sp_path_unlink, const struct path *dir, struct dentry *dentry, int ret)
{
	return ret ? ret : ew_sp_path_write(dentry);
}

SEC("lsm/path_rmdir")
int BPF_PROG(ew_sp_path_rmdir, const struct path *dir, struct dentry *dentry, int ret)
{
	return ret ? ret : ew_sp_path_write(dentry);
}

SEC("lsm/path_mkdir")
int BPF_PROG(ew_sp_path_mkdir, const struct path *dir, struct dentry *dentry, umode_t mode, int ret)
{
	return ret ? ret : ew_sp_path_write(dentry);
}

SEC("lsm/path_mknod")
int BPF_PROG(ew_sp_path_mknod, const struct path *dir, struct dentry *dentry, umode_t mode, unsigned int dev,
	     int ret)
{
	return ret ? ret : ew_sp_path_write(dentry);
}

SEC("lsm/path_symlink")
int BPF_PROG(ew_sp_path_symlink, const struct path *dir, struct dentry *dentry, const char *old_name, int ret)
{
	return ret ? ret : ew_sp_path_write(dentry);
}

SEC("lsm/path_link")
int BPF_PROG(ew_sp_path_link, struct dentry *old_dentry, const struct path *new_dir, struct dentry *new_dentry,
	     int ret)
{
	if (ret)
		return ret;
	/* a hard link of a protected file elsewhere would be a writable name for it */
	ret = ew_sp_path_write(old_dentry);
	return ret ? ret : ew_sp_path_write(new_dentry);
}

SEC("lsm/path_rename")
int BPF_PROG(ew_sp_path_rename, const struct path *old_dir, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry, unsigned int flags, int ret)
{
	if (ret)
		return ret;
	ret = ew_sp_path_write(old_dentry);
	return ret ? ret : ew_sp_path_write(new_dentry);
}

SEC("lsm/path_truncate")
int BPF_PROG(ew_sp_path_truncate, const struct path *path, int ret)
{
	return ret ? ret : ew_sp_path_write(BPF_CORE_READ(path, dentry));
}

SEC("lsm/path_chmod")
int BPF_PROG(ew_sp_path_chmod, const struct path *path, umode_t mode, int ret)
{
	return ret ? ret : ew_sp_path_write(BPF_CORE_READ(path, dentry));
}

SEC("lsm/path_chown")
int BPF_PROG(ew_sp_path_chown, const struct path *path, unsigned long uid, unsigned long gid, int ret)
{
	return ret ? ret : ew_sp_path_write(BPF_CORE_READ(path, dentry));
}

/* Attributes ----------------------------------------------------------------- */

/*
 * inode_setattr (utimes, and chmod/chown/truncate again) changed shape in
 * 6.8: mnt_idmap first. Userspace loads the variant the kernel has.
 */
SEC("lsm/inode_setattr")
int BPF_PROG(ew_sp_inode_setattr, void *idmap, struct dentry *dentry, struct iattr *attr, int ret)
{
	return ret ? ret : ew_sp_change(dentry, EW_SP_REFUSED_ATTR);
}

SEC("lsm/inode_setattr")
int BPF_PROG(ew_sp_inode_setattr_nomnt, struct dentry *dentry, struct iattr *attr, int ret)
{
	return ret ? ret : ew_sp_change(dentry, EW_SP_REFUSED_ATTR);
}

/* first argument: user_namespace (6.1) or mnt_idmap (6.3+); dentry second in both */
SEC("lsm/inode_setxattr")
int BPF_PROG(ew_sp_inode_setxattr, void *idmap, struct dentry *dentry, const char *name, const void *value,
	     size_t size, int flags, int ret)
{
	return ret ? ret : ew_sp_change(dentry, EW_SP_REFUSED_ATTR);
}

SEC("lsm/inode_removexattr")
int BPF_PROG(ew_sp_inode_removexattr, void *idmap, struct dentry *dentry, const char *name, int ret)
{
	return ret ? ret : ew_sp_change(dentry, EW_SP_REFUSED_ATTR);
}

/* 6.2+: POSIX ACLs no longer pass through the xattr hooks */
SEC("lsm/inode_set_acl")
int BPF_PROG(ew_sp_inode_set_acl, void *idmap, struct dentry *dentry, const char *acl_name, void *kacl, int ret)
{
	return ret ? ret : ew_sp_change(dentry, EW_SP_REFUSED_ATTR);
}

SEC("lsm/inode_remove_acl")
int BPF_PROG(ew_sp_inode_remove_acl, void *idmap, struct dentry *dentry, const char *acl_name, int ret)
{
	return ret ? ret : ew_sp_change(dentry, EW_SP_REFUSED_ATTR);
}

/* 6.17+: inode flags (chattr) through file_setattr(2) and the ioctls */
SEC("lsm/inode_file_setattr")
int BPF_PROG(ew_sp_inode_file_setattr, struct dentry *dentry, void *fa, int ret)
{
	return ret ? ret : ew_sp_change(dentry, EW_SP_REFUSED_ATTR);
}

/* chattr (+i makes its state unwritable for the agent too, -a...) on a descriptor opened read-only */
static __always_inline int ew_sp_ioctl(struct file *file, unsigned int cmd)
{
	if (cmd != EW_FS_IOC_SETFLAGS && cmd != EW_FS_IOC32_SETFLAGS && cmd != EW_FS_IOC_FSSETXATTR)
		return 0;
	return ew_sp_change(BPF_CORE_READ(file, f_path.dentry), EW_SP_REFUSED_ATTR);
}

SEC("lsm/file_ioctl")
int BPF_PROG(ew_sp_file_ioctl, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	return ret ? ret : ew_sp_ioctl(file, cmd);
}

SEC("lsm/file_ioctl_compat")
int BPF_PROG(ew_sp_file_ioctl_compat, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	return ret ? ret : ew_sp_ioctl(file, cmd);
}

/* Mounts --------------------------------------------------------------------- */

/*
 * Whether something mounted on `target`, a directory above protected
 * inodes (EW_SP_ANCESTOR), would hide them from the agent: the caller is in
 * the agent's mount namespace, or the target mount is shared (its peers,
 * perhaps in the agent's namespace, get a copy without any hook call).
 */
static __always_inline int ew_sp_hides_from_agent(struct dentry *d, struct vfsmount *vfsmnt)
{
	struct inode *inode = BPF_CORE_READ(d, d_inode);
	if (!inode)
		return 0;
	struct ew_sp_inode_key key = {.dev = BPF_CORE_READ(d, d_sb, s_dev), .ino = BPF_CORE_READ(inode, i_ino)};
	__u32 *f = bpf_map_lookup_elem(&ew_sp_inodes, &key);
	if (!f || !(*f & EW_SP_ANCESTOR))
		return 0;
	struct mount *m = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt);
	if (BPF_CORE_READ(m, mnt_group_id)) /* non-zero: shared */
		return 1;
	struct task_struct *agent = ew_sp_agent_task();
	struct task_struct *me = bpf_get_current_task_btf();
	return agent && BPF_CORE_READ(me, nsproxy, mnt_ns) == BPF_CORE_READ(agent, nsproxy, mnt_ns);
}

/*
 * A mount on or below a protected inode hides the protected tree behind
 * another one (a bind of attacker files, a tmpfs): refused for every kind
 * (new, bind, move, remount, propagation change; sb_mount's path is the
 * target of each). On a directory above one, new mounts and moves are
 * refused where the agent would see them.
 */
SEC("lsm/sb_mount")
int BPF_PROG(ew_sp_sb_mount, const char *dev_name, const struct path *path, const char *type, unsigned long flags,
	     void *data, int ret)
{
	if (ret)
		return ret;
	struct ew_sp_config *c = ew_sp_cfg();
	if (!c || ew_sp_current_tgid() == c->agent_tgid)
		return 0;
	if (ew_sp_protected(BPF_CORE_READ(path, dentry)))
		return ew_sp_refuse(EW_SP_REFUSED_MOUNT);
	if (flags & (EW_MS_REMOUNT | EW_MS_PROPAGATION))
		return 0; /* nothing new on top */
	return ew_sp_hides_from_agent(BPF_CORE_READ(path, dentry), BPF_CORE_READ(path, mnt)) ? ew_sp_refuse(EW_SP_REFUSED_MOUNT)
												     : 0;
}

/* pivot_root(2) in the agent's mount namespace would swap the agent's root for another tree */
SEC("lsm/sb_pivotroot")
int BPF_PROG(ew_sp_sb_pivotroot, const struct path *old_path, const struct path *new_path, int ret)
{
	if (ret)
		return ret;
	struct ew_sp_config *c = ew_sp_cfg();
	if (!c || ew_sp_current_tgid() == c->agent_tgid)
		return 0;
	struct task_struct *agent = ew_sp_agent_task();
	struct task_struct *me = bpf_get_current_task_btf();
	if (agent && BPF_CORE_READ(me, nsproxy, mnt_ns) == BPF_CORE_READ(agent, nsproxy, mnt_ns))
		return ew_sp_refuse(EW_SP_REFUSED_MOUNT);
	return 0;
}

/* move_mount(2): open_tree/fsmount results attached somewhere */
SEC("lsm/move_mount")
int BPF_PROG(ew_sp_move_mount, const struct path *from_path, const struct path *to_path, int ret)
{
	if (ret)
		return ret;
	struct ew_sp_config *c = ew_sp_cfg();
	if (!c || ew_sp_current_tgid() == c->agent_tgid)
		return 0;
	struct dentry *to = BPF_CORE_READ(to_path, dentry);
	if (ew_sp_protected(to) || ew_sp_hides_from_agent(to, BPF_CORE_READ(to_path, mnt)))
		return ew_sp_refuse(EW_SP_REFUSED_MOUNT);
	return 0;
}

SEC("lsm/sb_umount")
int BPF_PROG(ew_sp_sb_umount, struct vfsmount *mnt, int flags, int ret)
{
	if (ret)
		return ret;
	struct ew_sp_config *c = ew_sp_cfg();
	if (!c || ew_sp_current_tgid() == c->agent_tgid)
		return 0;
	struct ew_sp_inode_key key = {.dev = BPF_CORE_READ(mnt, mnt_sb, s_dev), .ino = 0};
	__u32 *f = bpf_map_lookup_elem(&ew_sp_inodes, &key);
	if (f && (*f & EW_SP_NO_UMOUNT))
		return ew_sp_refuse(EW_SP_REFUSED_UMOUNT);
	/*
	 * a mount of the protected tree (a state directory on its own
	 * filesystem), or one above it (/var), would uncover what is below it
	 */
	struct dentry *root = BPF_CORE_READ(mnt, mnt_root);
	if (ew_sp_protected(root) || ew_sp_hides_from_agent(root, mnt))
		return ew_sp_refuse(EW_SP_REFUSED_UMOUNT);
	return 0;
}

/* Process attributes --------------------------------------------------------- */

/* `p` (any thread of a process) is the agent and the caller neither the agent nor the stopper */
static __always_inline int ew_sp_task_change(struct task_struct *p)
{
	struct ew_sp_config *c = ew_sp_cfg();
	if (!c || BPF_CORE_READ(p, tgid) != c->agent_tgid)
		return 0;
	__u32 me = ew_sp_current_tgid();
	if (me == c->agent_tgid || (c->stopper_tgid && me == c->stopper_tgid))
		return 0;
	return ew_sp_refuse(EW_SP_REFUSED_PROCESS);
}

/* prlimit(2) on it: RLIMIT_CPU has the kernel kill it, RLIMIT_NOFILE/AS starve it */
SEC("lsm/task_setrlimit")
int BPF_PROG(ew_sp_task_setrlimit, struct task_struct *p, unsigned int resource, struct rlimit *new_rlim, int ret)
{
	return ret ? ret : ew_sp_task_change(p);
}

SEC("lsm/task_setnice")
int BPF_PROG(ew_sp_task_setnice, struct task_struct *p, int nice, int ret)
{
	return ret ? ret : ew_sp_task_change(p);
}

/* sched_setscheduler/sched_setattr (SCHED_IDLE) and sched_setaffinity (onto a CPU a SCHED_FIFO hog holds) */
SEC("lsm/task_setscheduler")
int BPF_PROG(ew_sp_task_setscheduler, struct task_struct *p, int ret)
{
	return ret ? ret : ew_sp_task_change(p);
}

SEC("lsm/task_setioprio")
int BPF_PROG(ew_sp_task_setioprio, struct task_struct *p, int ioprio, int ret)
{
	return ret ? ret : ew_sp_task_change(p);
}

/* BPF objects ---------------------------------------------------------------- */

/* The rule maps of each generation (made per rule set, so not registered by id). */
static __always_inline int ew_sp_rule_map_name(const char *name)
{
	/* "ew_lsm_path" or "ew_lsm_net" (native/src/lsm_enforcer.cc CreateInner) */
	if (name[0] != 'e' || name[1] != 'w' || name[2] != '_' || name[3] != 'l' || name[4] != 's' ||
	    name[5] != 'm' || name[6] != '_')
		return 0;
	if (name[7] == 'p' && name[8] == 'a' && name[9] == 't' && name[10] == 'h' && name[11] == 0)
		return 1;
	return name[7] == 'n' && name[8] == 'e' && name[9] == 't' && name[10] == 0;
}

SEC("lsm/bpf_map")
int BPF_PROG(ew_sp_bpf_map, struct bpf_map *map, fmode_t fmode, int ret)
{
	if (ret)
		return ret;
	struct ew_sp_config *c = ew_sp_cfg();
	if (!c)
		return 0;
	if (ew_sp_current_tgid() == c->agent_tgid) {
		/* the agent opens a map of its own once its configuration is written: note who it is */
		__u32 zero = 0;
		struct ew_sp_agent *a = bpf_map_lookup_elem(&ew_sp_agent, &zero);
		if (a && !a->task)
			a->task = (__u64)BPF_CORE_READ((struct task_struct *)bpf_get_current_task_btf(), group_leader);
		return 0;
	}
	if (!(fmode & EW_FMODE_WRITE))
		return 0;
	__u32 id = BPF_CORE_READ(map, id);
	char name[16] = {};
	BPF_CORE_READ_STR_INTO(&name, map, name);
	if (!bpf_map_lookup_elem(&ew_sp_map_ids, &id) && !ew_sp_rule_map_name(name))
		return 0;
	return ew_sp_refuse(EW_SP_REFUSED_MAP);
}
