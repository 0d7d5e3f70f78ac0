// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test harness for ew_glob_match() (include/ew_glob.bpf.h), never loaded by
 * the agent: tests/bpf/glob_runner.c fills the inputs in .bss, runs the
 * program with bpf_prog_test_run_opts() and reads the verdict back, so the
 * kernel's matcher can be compared with agent/src/policy/glob.ts.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "ew_glob.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Inputs and output: global variables are map memory, as in the enforcer. */
__u8 glob_pattern[EW_GLOB_PATTERN_MAX];
__u8 glob_path[EW_PATH_MAX];
__u32 glob_pattern_len;
__u32 glob_path_len;
int glob_result;

SEC("syscall")
int glob_test(void *ctx)
{
	glob_result = ew_glob_match(glob_pattern, glob_pattern_len, glob_path, glob_path_len);
	return 0;
}

struct glob_rule {
	__u32 len;
	__u8 pattern[EW_GLOB_PATTERN_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct glob_rule);
} glob_rules SEC(".maps");

struct glob_path_buf {
	char path[EW_PATH_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct glob_path_buf);
} glob_scratch SEC(".maps");

__u64 glob_lsm_matches;

/*
 * The matcher inside a global function with scalar arguments, the way
 * lsm_enforcer.bpf.c decides paths (ew_path_decide): verified once, with
 * unknown arguments.
 */
__noinline int glob_match_rule(__u32 key, __u32 path_len)
{
	__u32 zero = 0;
	struct glob_rule *rule = bpf_map_lookup_elem(&glob_rules, &key);
	struct glob_path_buf *buf = bpf_map_lookup_elem(&glob_scratch, &zero);
	if (!rule || !buf)
		return EW_GLOB_INVALID;
	return ew_glob_match(rule->pattern, rule->len, (const __u8 *)buf->path, path_len);
}

int glob_result_global;

/* The same through glob_match_rule(): userspace fills glob_rules[0] and glob_scratch. */
SEC("syscall")
int glob_test_global(void *ctx)
{
	glob_result_global = glob_match_rule(0, glob_path_len);
	return 0;
}

/*
 * Loaded (only with glob_runner --lsm), never attached: proves an LSM
 * program holding the matcher, inline and through a global function,
 * passes the verifier of a BPF-LSM kernel.
 */
SEC("lsm/file_open")
int BPF_PROG(glob_lsm_file_open, struct file *file)
{
	__u32 zero = 0;
	struct glob_rule *rule = bpf_map_lookup_elem(&glob_rules, &zero);
	struct glob_path_buf *buf = bpf_map_lookup_elem(&glob_scratch, &zero);
	if (!rule || !buf)
		return 0;
	long n = bpf_d_path((struct path *)&file->f_path, buf->path, EW_PATH_MAX);
	if (n <= 0)
		return 0;
	if (ew_glob_match(rule->pattern, rule->len, (const __u8 *)buf->path, (__u32)(n - 1)) != EW_GLOB_NOMATCH)
		__sync_fetch_and_add(&glob_lsm_matches, 1);
	if (glob_match_rule(0, (__u32)(n - 1)) != EW_GLOB_NOMATCH)
		__sync_fetch_and_add(&glob_lsm_matches, 1);
	return 0;
}
