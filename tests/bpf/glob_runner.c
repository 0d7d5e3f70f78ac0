// SPDX-License-Identifier: Apache-2.0
/*
 * Runs the kernel glob matcher (bpf/glob_test.bpf.c, ew_glob_match) on
 * stdin lines "<encoded pattern hex>\t<path hex>" and prints one verdict per
 * line: 1 match, 0 no match, 2 too complex (step budget), -1 invalid.
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

static char verifier_log[1 << 20];
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
		if (lsm)
			fprintf(stderr, "glob_lsm_file_open: %s", lsm_verifier_log);
	}

	int prog_fd = bpf_program__fd(skel->progs.glob_test);
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
		LIBBPF_OPTS(bpf_test_run_opts, opts);
		err = bpf_prog_test_run_opts(prog_fd, &opts);
		if (err || opts.retval != 0) {
			fprintf(stderr, "glob_runner: line %lu: test run failed: %s (retval %u)\n", lineno,
				strerror(err ? errno : 0), opts.retval);
			return 1;
		}
		printf("%d\n", skel->bss->glob_result);
	}
	fflush(stdout);
	free(line);
	glob_test__destroy(skel);
	return 0;
}
