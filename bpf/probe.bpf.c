// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Feature probes: trivial programs that native/src/probe.cc loads one at a
 * time (the others' autoload off) to learn what this kernel allows.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* BPF-LSM: loads when the kernel has it; attaching needs trampolines. */
SEC("lsm/file_open")
int BPF_PROG(probe_lsm, struct file *file)
{
	return 0;
}

/* BTF-typed tracepoints (what bpf/monitor.bpf.c uses for process events). */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(probe_tp_btf, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return 0;
}

/* cgroup-bpf socket creation hook (the compat network enforcer); 1 = allow. */
SEC("cgroup/sock_create")
int probe_sock_create(struct bpf_sock *ctx)
{
	return 1;
}
