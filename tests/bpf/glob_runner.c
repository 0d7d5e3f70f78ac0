// SPDX-License-Identifier: Apache-2.0
/*
 * Runs the kernel glob matcher (bpf/glob_test.bpf.c, ew_glob_match) on
 * stdin lines "<encoded pattern hex>\t<path hex>" and prints one verdict per
 * line: 1 match, 0 no match, 2 too complex (step budget), -1 invalid.
 * Each line runs twice: glob_test (the matcher inlined) and glob_test_global
 * (through a global function, inputs in maps); they must agree.
 * Hex so that any byte (tab, newline, invalid UTF-8) can be tested.
 *
 *   glob_runner [--log] [--lsm]
 *     --log  print the verifier's statistics of each loaded program to stderr
 *     --lsm  also load (never attach) glob_lsm_file_open, the matcher inside an
 *            LSM program, to prove it passes that kernel's verifier
 *            (BPF-LSM kernels only: this host refuses LSM programs at load)
 *
 * Build: cc -O2 -I build/bpf tests/bpf/glob_runner.c -lbpf -lelf -lz
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "glob_test.skel.h"

/* Map values of bpf/glob_test.bpf.c (sizes checked against the maps at start). */
struct glob_rule {
	__u32 len;
	__u8 pattern[256]; /* EW_GLOB_PATTERN_MAX */
};
struct glob_path_buf {
	char path[4096]; /* EW_PATH_MAX */
};

static char verifier_log[1 << 20];
static char global_verifier_log[1 << 20];
static char lsm_verifier_log[1 << 20];

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes hex text [s, s+n) into out (at most cap bytes); returns the byte count or -1. */
static long unhex(const char *s, size_t n, unsigned char *out, size_t cap)
{
	if (n % 2 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n; i += 2) {
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i / 2] = (unsigned char)(hi << 4 | lo);
	}
	return (long)(n / 2);
}

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

int main(int argc, char **argv)
{
	int show_log = 0, lsm = 0;
	struct glob_test *skel;
	int err;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--log") == 0) {
			show_log = 1;
		} else if (strcmp(argv[i], "--lsm") == 0) {
			lsm = 1;
		} else {
			fprintf(stderr, "glob_runner: unknown argument %s (usage: glob_runner [--log] [--lsm])\n", argv[i]);
			return 2;
		}
	}

	libbpf_set_print(quiet_print);
	skel = glob_test__open();
	if (!skel) {
		fprintf(stderr, "glob_runner: opening the BPF object failed: %s\n", strerror(errno));
		return 1;
	}
	bpf_program__set_autoload(skel->progs.glob_lsm_file_open, lsm);
	if (show_log) {
		bpf_program__set_log_buf(skel->progs.glob_test, verifier_log, sizeof verifier_log);
		bpf_program__set_log_level(skel->progs.glob_test, 4); /* statistics */
		bpf_program__set_log_buf(skel->progs.glob_test_global, global_verifier_log, sizeof global_verifier_log);
		bpf_program__set_log_level(skel->progs.glob_test_global, 4);
		bpf_program__set_log_buf(skel->progs.glob_lsm_file_open, lsm_verifier_log, sizeof lsm_verifier_log);
		bpf_program__set_log_level(skel->progs.glob_lsm_file_open, 4);
	}
	err = glob_test__load(skel);
	if (err) {
		fprintf(stderr, "glob_runner: loading the BPF program failed: %s\n", strerror(-err));
		return 1;
	}
	if (show_log) {
		fprintf(stderr, "glob_test: %s", verifier_log);
		fprintf(stderr, "glob_test_global: %s", global_verifier_log);
		if (lsm)
			fprintf(stderr, "glob_lsm_file_open: %s", lsm_verifier_log);
	}

	int prog_fd = bpf_program__fd(skel->progs.glob_test);
	int global_fd = bpf_program__fd(skel->progs.glob_test_global);
	int rules_fd = bpf_map__fd(skel->maps.glob_rules);
	int scratch_fd = bpf_map__fd(skel->maps.glob_scratch);
	int ncpus = libbpf_num_possible_cpus();
	struct glob_rule rule;
	struct glob_path_buf *scratch = ncpus > 0 ? calloc((size_t)ncpus, sizeof *scratch) : NULL;
	if (bpf_map__value_size(skel->maps.glob_rules) != sizeof rule ||
	    bpf_map__value_size(skel->maps.glob_scratch) != sizeof *scratch ||
	    sizeof skel->bss->glob_pattern != sizeof rule.pattern || sizeof skel->bss->glob_path != sizeof scratch->path) {
		fprintf(stderr, "glob_runner: struct glob_rule/glob_path_buf differ from bpf/glob_test.bpf.c\n");
		return 1;
	}
	if (!scratch) {
		fprintf(stderr, "glob_runner: no memory for %d per-CPU path buffers\n", ncpus);
		return 1;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned long lineno = 0;
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		char *tab = memchr(line, '\t', (size_t)n);
		if (!tab) {
			fprintf(stderr, "glob_runner: line %lu: expected \"<pattern hex>\\t<path hex>\"\n", lineno);
			return 1;
		}
		long plen = unhex(line, (size_t)(tab - line), skel->bss->glob_pattern, sizeof skel->bss->glob_pattern);
		long slen = unhex(tab + 1, (size_t)(line + n - tab - 1), skel->bss->glob_path, sizeof skel->bss->glob_path);
		if (plen < 0 || slen < 0) {
			fprintf(stderr, "glob_runner: line %lu: bad hex or %s too long\n", lineno, plen < 0 ? "pattern" : "path");
			return 1;
		}
		skel->bss->glob_pattern_len = (__u32)plen;
		skel->bss->glob_path_len = (__u32)slen;
		skel->bss->glob_result = 99;
		skel->bss->glob_result_global = 99;
		LIBBPF_OPTS(bpf_test_run_opts, opts);
		err = bpf_prog_test_run_opts(prog_fd, &opts);
		if (err || opts.retval != 0) {
			fprintf(stderr, "glob_runner: line %lu: test run failed: %s (retval %u)\n", lineno,
				strerror(err ? errno : 0), opts.retval);
			return 1;
		}

		__u32 zero = 0;
		memset(&rule, 0, sizeof rule);
		rule.len = (__u32)plen;
		memcpy(rule.pattern, skel->bss->glob_pattern, (size_t)plen);
		for (int c = 0; c < ncpus; c++)
			memcpy(scratch[c].path, skel->bss->glob_path, (size_t)slen);
		if (bpf_map_update_elem(rules_fd, &zero, &rule, 0) || bpf_map_update_elem(scratch_fd, &zero, scratch, 0)) {
			fprintf(stderr, "glob_runner: line %lu: map update failed: %s\n", lineno, strerror(errno));
			return 1;
		}
		LIBBPF_OPTS(bpf_test_run_opts, gopts);
		err = bpf_prog_test_run_opts(global_fd, &gopts);
		if (err || gopts.retval != 0) {
			fprintf(stderr, "glob_runner: line %lu: global test run failed: %s (retval %u)\n", lineno,
				strerror(err ? errno : 0), gopts.retval);
			return 1;
		}
		if (skel->bss->glob_result_global != skel->bss->glob_result) {
			fprintf(stderr, "glob_runner: line %lu: inline matcher says %d, global function %d\n", lineno,
				skel->bss->glob_result, skel->bss->glob_result_global);
			return 1;
		}
		printf("%d\n", skel->bss->glob_result);
	}
	fflush(stdout);
	free(line);
	free(scratch);
	glob_test__destroy(skel);
	return 0;
}
