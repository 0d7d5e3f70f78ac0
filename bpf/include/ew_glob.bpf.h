/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Bounded glob matcher for BPF programs (LSM hooks included), with the
 * semantics of agent/src/policy/glob.ts (KubeArmor matchPatterns).
 *
 * API
 * ---
 *   int ew_glob_match(const __u8 *pattern, __u32 pattern_len,
 *                     const __u8 *path, __u32 path_len);
 *
 *   pattern: an ENCODED pattern (agent/src/policy/glob_kernel.ts,
 *            encodeKernelGlob(): one encoding per {a,b} alternative), at most
 *            EW_GLOB_PATTERN_MAX bytes, in map memory: the verifier must know
 *            that EW_GLOB_PATTERN_MAX bytes are readable from `pattern`
 *            (e.g. a `__u8 pattern[EW_GLOB_PATTERN_MAX]` field of a map value).
 *   path:    the path bytes (no NUL needed), at most EW_PATH_MAX - 1 bytes, in
 *            map memory with EW_PATH_MAX readable bytes from `path` (e.g. a
 *            per-CPU scratch `char path[EW_PATH_MAX]` filled by bpf_d_path or
 *            ew_resolve_path; pass the length without the NUL).
 *   Both pointers must be map-value pointers with a constant offset (not
 *   stack, not ctx): the lengths are masked, never trusted for bounds.
 *
 *   Returns EW_GLOB_MATCH (1), EW_GLOB_NOMATCH (0), EW_GLOB_TOO_COMPLEX (2:
 *   the step budget ran out, the answer is unknown) or EW_GLOB_INVALID (-1:
 *   a length over its limit, a malformed encoding, the scratch map lookup
 *   failed, or another match ran on this CPU meanwhile, see below). The caller decides what an unknown answer means; fail-safe for
 *   Block/Audit rules is "treat anything but EW_GLOB_NOMATCH as a match".
 *
 *   Include it after vmlinux.h and <bpf/bpf_helpers.h>. Example:
 *
 *     struct rule { __u32 pattern_len; __u8 pattern[EW_GLOB_PATTERN_MAX]; };
 *     struct rule *r = bpf_map_lookup_elem(&rules, &key);      // map value
 *     struct ew_lsm_exe_path *buf = bpf_map_lookup_elem(&lsm_exe_scratch, &zero);
 *     __u32 len = ew_resolve_path(p, buf->path, &flags);       // or bpf_d_path() - 1
 *     int m = (flags & EW_STR_TRUNCATED) ? EW_GLOB_TOO_COMPLEX  // a cut path: unknown
 *             : ew_glob_match(r->pattern, r->pattern_len, (const __u8 *)buf->path, len);
 *     if (m != EW_GLOB_NOMATCH) ... // Block/Audit: fail-safe
 *
 *   Uses bpf_loop (kernel 5.17+) and one per-CPU array map of its own
 *   (ew_glob_state, 40 bytes), defined here: include this header once per
 *   object. That state is per CPU: should a preemptible kernel (preempt=full,
 *   PREEMPT_RT) run another match on the same CPU in the middle of one, the
 *   interrupted one notices (a call number) and returns EW_GLOB_INVALID, never
 *   a verdict from mixed state. (Per-CPU path buffers the caller fills have
 *   the same exposure; Debian's default voluntary preemption does not preempt
 *   BPF programs.)
 *
 * Bounds
 * ------
 *   At most EW_GLOB_MAX_STEPS (default 65536; define it before including to
 *   change it, <= 1 << 23) bpf_loop iterations per call, each O(1): one
 *   pattern op against one path character, or one backtrack. A class op
 *   checks up to EW_GLOB_CLASS_MAX_RANGES ranges in its one step. Measured on
 *   this host (6.18, loaded): about 14 ns per step; a used-up budget costs
 *   about 0.9 ms; pattern "/etc/" "*shadow*" on /etc/gshadow-: 0.8 us (16
 *   steps); pattern "/" "**" "/" "*.log" on a 4095-byte path: 110 us (8,143
 *   steps).
 *   Verifier (bpf/glob_test.bpf.c), instructions processed: 6.18 syscall
 *   program 3,240, through a global function 3,266; 6.1 (guest) 3,2xx each,
 *   an LSM program holding both forms 6,518. The callback is verified about
 *   twice per call site, so each call site costs about 3,200.
 *   kernelGlobMatch() in glob_kernel.ts is a step-exact model: it tells what a
 *   pattern/path pair costs and when the budget runs out.
 *
 * Encoding (bytes; mirrored in agent/src/policy/glob_kernel.ts)
 * --------
 *   0x01 STAR        `*`: any characters but `/`
 *   0x02 GLOBSTAR    `**`: any characters including `/`
 *   0x03 ONE         `?`: one character but `/`
 *   0x04 CLASS h r.. `[..]`: h = 0x80 if negated | (number of ranges - 1);
 *                    then per range lo and hi as 3-byte big-endian code points
 *   0x05 BYTE b      the literal byte b (used for bytes 0x00-0x07)
 *   0x06, 0x07       reserved (malformed)
 *   other            that literal byte
 *
 * Characters: a valid UTF-8 sequence is one character (its code point), as
 * glob.ts counts code points of the decoded path. Any other byte (stray
 * continuation, truncated/overlong sequence, surrogate, > U+10FFFF) is one
 * character U+FFFD by itself (Node's decoder can merge a truncated sequence
 * into ONE U+FFFD: on such invalid paths `?` counts may differ from glob.ts).
 *
 * Algorithm: iterative matching with one backtrack point for the last `*`
 * (which cannot cross `/`, so an earlier `*` never needs to grow again) and
 * one for the last `**` (restarting the rest of the pattern one character
 * further). Worst case O(n^2 * m) steps, hence the budget; paths up to
 * EW_PATH_MAX with ordinary patterns take a few steps per byte.
 */
#ifndef EW_GLOB_BPF_H
#define EW_GLOB_BPF_H

#include "edgeward_abi.h"

#define EW_GLOB_PATTERN_MAX 256 /* encoded bytes; a power of two (masks) */
#define EW_GLOB_CLASS_MAX_RANGES 8

#ifndef EW_GLOB_MAX_STEPS
#define EW_GLOB_MAX_STEPS 65536
#endif

#define EW_GLOB_OP_STAR 0x01
#define EW_GLOB_OP_GLOBSTAR 0x02
#define EW_GLOB_OP_ONE 0x03
#define EW_GLOB_OP_CLASS 0x04
#define EW_GLOB_OP_BYTE 0x05
#define EW_GLOB_OP_LAST 0x07 /* bytes 0x00..0x07 are never literals */
#define EW_GLOB_CLASS_NEGATE 0x80

#define EW_GLOB_NOMATCH 0
#define EW_GLOB_MATCH 1
#define EW_GLOB_TOO_COMPLEX 2
#define EW_GLOB_INVALID (-1)

#define EW_GLOB_RUNNING 3 /* internal: no verdict yet */
#define EW_GLOB_NONE 0xffffffffu /* internal: no backtrack point */

#define EW_GLOB_PMASK (EW_GLOB_PATTERN_MAX - 1)
#define EW_GLOB_SMASK (EW_PATH_MAX - 1)

/*
 * The matcher's registers live in map memory, not on the stack: the verifier
 * does not track map contents, so every bpf_loop iteration starts from the
 * same (unknown) state and the callback is verified once or twice, on 6.1
 * and on kernels that re-verify callbacks until their state converges.
 */
struct ew_glob_regs {
	__u32 pi, si;	/* pattern and path positions */
	__u32 sp, ss;	/* last `*`: pattern position after it, path position it resumes at */
	__u32 gp, gs;	/* last `**`: same */
	__u32 plen, slen;
	__s32 result;
	__u32 call;	/* number of the match using these registers */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ew_glob_regs);
} ew_glob_state SEC(".maps");

struct ew_glob_ctx {
	struct ew_glob_regs *r;
	__u64 call;
	const __u8 *pattern;
	const __u8 *path;
};

/*
 * The character at path[si] (si < slen): returns its length in bytes and
 * stores its code point (U+FFFD for a byte that starts no valid sequence).
 */
static __always_inline __u32 ew_glob_char(const __u8 *path, __u32 si, __u32 slen, __u32 *cp)
{
	__u32 b0 = path[si & EW_GLOB_SMASK], need, v, min, k;

	*cp = 0xfffd;
	if (b0 < 0x80) {
		*cp = b0;
		return 1;
	}
	if (b0 >= 0xc2 && b0 < 0xe0) {
		need = 1;
		v = b0 & 0x1f;
		min = 0x80;
	} else if (b0 >= 0xe0 && b0 < 0xf0) {
		need = 2;
		v = b0 & 0x0f;
		min = 0x800;
	} else if (b0 >= 0xf0 && b0 < 0xf5) {
		need = 3;
		v = b0 & 0x07;
		min = 0x10000;
	} else {
		return 1;
	}
	if (si + need >= slen)
		return 1;
	for (k = 1; k <= 3; k++) {
		if (k > need)
			break;
		__u32 b = path[(si + k) & EW_GLOB_SMASK];
		if ((b & 0xc0) != 0x80)
			return 1;
		v = (v << 6) | (b & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 1;
	*cp = v;
	return need + 1;
}

/* Length of the CLASS op at pattern[pi], 0 if it is malformed (too many ranges, runs past the end). */
static __always_inline __u32 ew_glob_class_len(const __u8 *pat, __u32 pi, __u32 plen)
{
	__u32 n;

	if (pi + 1 >= plen)
		return 0;
	n = (pat[(pi + 1) & EW_GLOB_PMASK] & 0x7f) + 1;
	if (n > EW_GLOB_CLASS_MAX_RANGES || pi + 2 + 6 * n > plen)
		return 0;
	return 2 + 6 * n;
}

/* Whether code point cp is in the (well-formed) class at pattern[pi]. */
static __always_inline int ew_glob_class(const __u8 *pat, __u32 pi, __u32 cp)
{
	__u32 h = pat[(pi + 1) & EW_GLOB_PMASK], n = (h & 0x7f) + 1, k, in = 0;

	for (k = 0; k < EW_GLOB_CLASS_MAX_RANGES; k++) {
		if (k >= n)
			break;
		__u32 o = pi + 2 + 6 * k;
		__u32 lo = ((__u32)pat[o & EW_GLOB_PMASK] << 16) | ((__u32)pat[(o + 1) & EW_GLOB_PMASK] << 8) |
			   pat[(o + 2) & EW_GLOB_PMASK];
		__u32 hi = ((__u32)pat[(o + 3) & EW_GLOB_PMASK] << 16) | ((__u32)pat[(o + 4) & EW_GLOB_PMASK] << 8) |
			   pat[(o + 5) & EW_GLOB_PMASK];
		if (cp >= lo && cp <= hi)
			in = 1;
	}
	return (h & EW_GLOB_CLASS_NEGATE) ? !in : in;
}

/* One matcher step (bpf_loop callback): 0 continues, 1 stops with r->result set. */
static long ew_glob_step(__u64 index, void *ctx)
{
	struct ew_glob_ctx *c = ctx;
	struct ew_glob_regs *r = c->r;
	const __u8 *pat = c->pattern, *path = c->path;
	__u32 plen, slen, pi, si, cp, len;

	if (r->call != c->call)
		return 1; /* another match took the registers over: see ew_glob_match */
	plen = r->plen;
	slen = r->slen;
	pi = r->pi;
	si = r->si;

	if (pi < plen) {
		__u32 op = pat[pi & EW_GLOB_PMASK];

		if (op == EW_GLOB_OP_STAR) {
			r->sp = pi + 1;
			r->ss = si;
			r->pi = pi + 1;
			return 0;
		}
		if (op == EW_GLOB_OP_GLOBSTAR) {
			r->gp = pi + 1;
			r->gs = si;
			r->sp = EW_GLOB_NONE; /* the `**` covers whatever that `*` could */
			r->pi = pi + 1;
			return 0;
		}
		__u32 oplen = 1;
		if (op <= EW_GLOB_OP_LAST && op != EW_GLOB_OP_ONE) {
			/* ops with operands: checked even when the path has ended */
			if (op == EW_GLOB_OP_CLASS)
				oplen = ew_glob_class_len(pat, pi, plen);
			else if (op == EW_GLOB_OP_BYTE && pi + 1 < plen)
				oplen = 2;
			else
				goto malformed;
			if (!oplen)
				goto malformed;
		}
		if (si < slen) {
			__u32 b = path[si & EW_GLOB_SMASK];

			if (op == EW_GLOB_OP_ONE) {
				if (b != '/') {
					r->si = si + ew_glob_char(path, si, slen, &cp);
					r->pi = pi + 1;
					return 0;
				}
			} else if (op == EW_GLOB_OP_CLASS) {
				if (b != '/') {
					len = ew_glob_char(path, si, slen, &cp);
					if (ew_glob_class(pat, pi, cp)) {
						r->si = si + len;
						r->pi = pi + oplen;
						return 0;
					}
				}
			} else if (op == EW_GLOB_OP_BYTE) {
				if (b == pat[(pi + 1) & EW_GLOB_PMASK]) {
					r->si = si + 1;
					r->pi = pi + 2;
					return 0;
				}
			} else if (b == op) {
				r->si = si + 1;
				r->pi = pi + 1;
				return 0;
			}
		}
	} else if (si == slen) {
		r->result = EW_GLOB_MATCH;
		return 1;
	}

	/* mismatch: let the last `*` take one more character, else the last `**` */
	__u32 ss = r->ss, gs = r->gs;
	if (r->sp != EW_GLOB_NONE && ss < slen && path[ss & EW_GLOB_SMASK] != '/') {
		ss += ew_glob_char(path, ss, slen, &cp);
		r->ss = ss;
		r->si = ss;
		r->pi = r->sp;
		return 0;
	}
	if (r->gp != EW_GLOB_NONE && gs < slen) {
		gs += ew_glob_char(path, gs, slen, &cp);
		r->gs = gs;
		r->si = gs;
		r->pi = r->gp;
		r->sp = EW_GLOB_NONE;
		return 0;
	}
	r->result = EW_GLOB_NOMATCH;
	return 1;

malformed:
	r->result = EW_GLOB_INVALID;
	return 1;
}

static __always_inline int ew_glob_match(const __u8 *pattern, __u32 pattern_len, const __u8 *path, __u32 path_len)
{
	__u32 zero = 0;
	struct ew_glob_regs *r;
	struct ew_glob_ctx c;

	if (pattern_len > EW_GLOB_PATTERN_MAX || path_len > EW_PATH_MAX - 1)
		return EW_GLOB_INVALID;
	r = bpf_map_lookup_elem(&ew_glob_state, &zero);
	if (!r)
		return EW_GLOB_INVALID;
	__u32 call = r->call + 1;
	r->call = call;
	r->pi = 0;
	r->si = 0;
	r->sp = EW_GLOB_NONE;
	r->ss = 0;
	r->gp = EW_GLOB_NONE;
	r->gs = 0;
	r->plen = pattern_len;
	r->slen = path_len;
	r->result = EW_GLOB_RUNNING;
	c.r = r;
	c.call = call;
	c.pattern = pattern;
	c.path = path;
	bpf_loop(EW_GLOB_MAX_STEPS, ew_glob_step, &c, 0);
	int res = r->result;
	if (r->call != call)
		return EW_GLOB_INVALID; /* preempted by another match on this CPU */
	if (res == EW_GLOB_RUNNING)
		return EW_GLOB_TOO_COMPLEX;
	return res;
}

#endif /* EW_GLOB_BPF_H */
