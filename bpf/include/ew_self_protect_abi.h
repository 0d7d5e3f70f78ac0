/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Self-protection additions (bpf/lsm_self_protect.bpf.c,
 * native/src/lsm_self_protect.cc) beside the first ew_sp_* definitions at
 * the end of ew_lsm_abi.h: cgroup and /proc writes, mounts, attributes,
 * scheduling and limits of the agent.
 */
#ifndef EW_SELF_PROTECT_ABI_H
#define EW_SELF_PROTECT_ABI_H

#include "ew_lsm_abi.h"

/*
 * ew_sp_agent[0]: the agent's thread group leader (a kernel address, read
 * with probe reads only), taken by the bpf_map hook the first time the
 * agent opens a map fd after its configuration is written: the cgroup check
 * follows the agent's current cgroup through it, so moving the agent into
 * another cgroup does not leave that one unprotected.
 */
struct ew_sp_agent {
	__u64 task;
};

/*
 * ew_sp_inodes value on a filesystem's entry (ino 0): some inode of it is
 * protected. Hooks on inodes of other filesystems stop after this one
 * lookup instead of walking up the directory tree.
 */
#define EW_SP_FS_HAS_PROTECTED 0x8
/*
 * ew_sp_inodes value: a directory above a protected inode ("/", "/var",
 * "/var/lib"). Nothing new is mounted on it where the agent would see it:
 * from the agent's mount namespace, or onto a shared mount (a peer in
 * another namespace propagates to the agent's). Namespaces of their own
 * whose mounts do not propagate back (systemd's sandboxes, containers:
 * slave or private) mount there freely.
 */
#define EW_SP_ANCESTOR 0x10

/* More ew_sp_refused kinds, after enum ew_sp_refusal's (ew_lsm_abi.h). */
#define EW_SP_REFUSED_CGROUP 5  /* a write open of the agent's cgroup's (or an ancestor's) files */
#define EW_SP_REFUSED_MOUNT 6   /* a mount on or below a protected inode, an umount of one */
#define EW_SP_REFUSED_ATTR 7    /* utimes, xattrs, ACLs, inode flags of protected inodes */
#define EW_SP_REFUSED_PROCESS 8 /* writes below /proc/<agent>, rlimits, nice, scheduling, io priority */
#define EW_SP_REFUSALS 9        /* entries of ew_sp_refused */

#endif /* EW_SELF_PROTECT_ABI_H */
