// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test harness for ew_glob_match() (include/ew_glob.bpf.h), never loaded by
 * the agent: tests/bpf/glob_runner.c fills the inputs in .bss, runs the
 * program with bpf_prog_test_run_opts() and reads the verdict back, so the
 * kernel's matcher can be compared with agent/src/policy/glob.ts.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

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
