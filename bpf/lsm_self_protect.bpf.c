// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpf-lsm self-protection: rules the agent installs for itself while it runs.
 *
 * - task_kill: signals to the agent's process (any of its threads) are
 *   refused unless they come from the agent itself or from the configured
 *   stopper (the service manager, pid 1 by default): its stop path is the
 *   escape hatch. Signal 0 (is it alive?) and SIGHUP (reload) pass.
 * - ptrace_access_check: nobody else may attach to the agent (ptrace,
 *   /proc/<pid>/mem writes, process_vm_writev, pidfd_getfd of its fds).
 * - file_open for writing and the path_* hooks: protected inodes (the
 *   agent's binary, its state and install directories, its pin directory
 *   on bpffs, all below the protected directories) are written, removed,
 *   renamed, linked, truncated or chmod/chown'ed by the agent only.
 * - sb_umount: the filesystems holding protected state (bpffs with the
 *   pins) cannot be unmounted, which would drop the pinned programs.
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

#include "ew_lsm_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EW_EPERM 1
#define EW_FMODE_WRITE 0x2
#define EW_O_TRUNC 01000
#define EW_SIGHUP 1
#define EW_PTRACE_MODE_ATTACH 0x02

/* ew_sp_config[0]: who the agent is and who may stop it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_sp_config);
} ew_sp_config SEC(".maps");

/* Protected inodes (EW_SP_EXACT / EW_SP_TREE) and filesystems (ino 0, EW_SP_NO_UMOUNT). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EW_SP_MAX_INODES);
	__type(key, struct ew_sp_inode_key);
	__type(value, __u32);
} ew_sp_inodes SEC(".maps");

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
	__uint(max_entries, EW_SP_REFUSAL_KINDS);
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
 * EW_SP_WALK_MAX levels within its filesystem.
 */
static __always_inline int ew_sp_protected(struct dentry *d)
{
	struct ew_sp_inode_key key = {};
	for (int i = 0; i < EW_SP_WALK_MAX; i++) {
		if (!d)
			return 0;
		struct inode *inode = BPF_CORE_READ(d, d_inode);
		if (inode) {
			key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
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

static __always_inline int ew_sp_path_write(struct dentry *d)
{
	struct ew_sp_config *c = ew_sp_cfg();
	if (!c || ew_sp_current_tgid() == c->agent_tgid)
		return 0;
	return ew_sp_protected(d) ? ew_sp_refuse(EW_SP_REFUSED_PATH) : 0;
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
	return ew_sp_path_write(BPF_CORE_READ(file, f_path.dentry));
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
	return f && (*f & EW_SP_NO_UMOUNT) ? ew_sp_refuse(EW_SP_REFUSED_UMOUNT) : 0;
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
	if (!(fmode & EW_FMODE_WRITE))
		return 0;
	struct ew_sp_config *c = ew_sp_cfg();
	if (!c || ew_sp_current_tgid() == c->agent_tgid)
		return 0;
	__u32 id = BPF_CORE_READ(map, id);
	char name[16] = {};
	BPF_CORE_READ_STR_INTO(&name, map, name);
	if (!bpf_map_lookup_elem(&ew_sp_map_ids, &id) && !ew_sp_rule_map_name(name))
		return 0;
	return ew_sp_refuse(EW_SP_REFUSED_MAP);
}
