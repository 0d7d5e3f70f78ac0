// The kernel glob matcher's pattern encoding (bpf/include/ew_glob.bpf.h,
// ew_glob_match) and a model of that matcher. Pure.
//
// The kernel matcher has glob.ts's semantics for every token (`*`, `**`,
// `?`, classes, escapes); braces are expanded here, one encoding per
// alternative. What it cannot take (kernelGlobProblem says why):
//  - an encoding longer than KERNEL_GLOB_MAX_BYTES bytes,
//  - a class of more than KERNEL_GLOB_CLASS_MAX_RANGES characters/ranges,
//  - an unpaired UTF-16 surrogate (no UTF-8 path can hold one).
// Paths are bytes in the kernel: a valid UTF-8 sequence is one character;
// any other byte counts as one character U+FFFD (see the header).

import { expandBraces, GlobToken, parseGlob } from './glob';

/** EW_GLOB_PATTERN_MAX: most bytes of one encoded pattern. */
export const KERNEL_GLOB_MAX_BYTES = 256;
/** EW_GLOB_CLASS_MAX_RANGES. */
export const KERNEL_GLOB_CLASS_MAX_RANGES = 8;
/** EW_GLOB_MAX_STEPS: the matcher's step budget per call. */
export const KERNEL_GLOB_MAX_STEPS = 65536;
/** EW_PATH_MAX - 1: the longest path the kernel matcher takes. */
export const KERNEL_GLOB_MAX_PATH = 4095;

export const GLOB_OP = { star: 0x01, globstar: 0x02, one: 0x03, class: 0x04, byte: 0x05, last: 0x07 } as const;
const CLASS_NEGATE = 0x80;

/** ew_glob_match's results. */
export const KERNEL_GLOB_RESULT = { nomatch: 0, match: 1, tooComplex: 2, invalid: -1 } as const;
export type KernelGlobResult = (typeof KERNEL_GLOB_RESULT)[keyof typeof KERNEL_GLOB_RESULT];

function hasLoneSurrogate(s: string): boolean {
  return /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

function encodeTokens(tokens: GlobToken[]): Buffer | string {
  const out: number[] = [];
  for (const tok of tokens) {
    switch (tok.t) {
      case 'lit':
        for (const b of Buffer.from(tok.s, 'utf8')) {
          if (b <= GLOB_OP.last) out.push(GLOB_OP.byte);
          out.push(b);
        }
        break;
      case 'star':
        out.push(GLOB_OP.star);
        break;
      case 'globstar':
        out.push(GLOB_OP.globstar);
        break;
      case 'one':
        out.push(GLOB_OP.one);
        break;
      case 'class': {
        const n = tok.ranges.length;
        if (n > KERNEL_GLOB_CLASS_MAX_RANGES) {
          return `has a character class of ${n} characters or ranges (the kernel matcher takes at most ${KERNEL_GLOB_CLASS_MAX_RANGES})`;
        }
        out.push(GLOB_OP.class, (tok.negate ? CLASS_NEGATE : 0) | (n - 1));
        for (const [lo, hi] of tok.ranges) {
          for (const cp of [lo.codePointAt(0)!, hi.codePointAt(0)!]) out.push((cp >> 16) & 0xff, (cp >> 8) & 0xff, cp & 0xff);
        }
        break;
      }
    }
  }
  if (out.length > KERNEL_GLOB_MAX_BYTES) {
    return `encodes into ${out.length} bytes for the kernel matcher (at most ${KERNEL_GLOB_MAX_BYTES})`;
  }
  return Buffer.from(out);
}

/**
 * The kernel encodings of a pattern, one per brace alternative (in
 * expandBraces order), or why the kernel matcher cannot take it.
 */
export function encodeKernelGlob(pattern: string): Buffer[] | string {
  if (hasLoneSurrogate(pattern)) return 'has an unpaired UTF-16 surrogate (no path can hold one)';
  const expanded = expandBraces(pattern);
  if (typeof expanded === 'string') return expanded;
  const out: Buffer[] = [];
  for (const alt of expanded) {
    const tokens = parseGlob(alt);
    if (typeof tokens === 'string') return tokens;
    const enc = encodeTokens(tokens);
    if (typeof enc === 'string') return expanded.length > 1 ? `alternative ${JSON.stringify(alt)} ${enc}` : enc;
    out.push(enc);
  }
  return out;
}

/** Why the kernel matcher cannot take `pattern` (also: why it is no valid glob), or undefined. */
export function kernelGlobProblem(pattern: string): string | undefined {
  const r = encodeKernelGlob(pattern);
  return typeof r === 'string' ? r : undefined;
}

/** ew_glob_char: length and code point of the character at path[i]. */
function charAt(path: Uint8Array, i: number): [number, number] {
  const b0 = path[i];
  if (b0 < 0x80) return [1, b0];
  let need: number;
  let v: number;
  let min: number;
  if (b0 >= 0xc2 && b0 < 0xe0) [need, v, min] = [1, b0 & 0x1f, 0x80];
  else if (b0 >= 0xe0 && b0 < 0xf0) [need, v, min] = [2, b0 & 0x0f, 0x800];
  else if (b0 >= 0xf0 && b0 < 0xf5) [need, v, min] = [3, b0 & 0x07, 0x10000];
  else return [1, 0xfffd];
  if (i + need >= path.length) return [1, 0xfffd];
  for (let k = 1; k <= need; k++) {
    const b = path[i + k];
    if ((b & 0xc0) !== 0x80) return [1, 0xfffd];
    v = (v << 6) | (b & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return [1, 0xfffd];
  return [need + 1, v];
}

/**
 * What ew_glob_match returns for an encoded pattern and a path, step for
 * step (same algorithm, same budget): tests predict the kernel with it, and
 * it tells how many steps a pattern/path pair costs.
 */
export function kernelGlobMatch(
  pat: Uint8Array,
  path: Uint8Array,
  maxSteps = KERNEL_GLOB_MAX_STEPS,
): { result: KernelGlobResult; steps: number } {
  if (pat.length > KERNEL_GLOB_MAX_BYTES || path.length > KERNEL_GLOB_MAX_PATH) return { result: -1, steps: 0 };
  const NONE = -1;
  let pi = 0;
  let si = 0;
  let sp = NONE;
  let ss = 0;
  let gp = NONE;
  let gs = 0;
  const plen = pat.length;
  const slen = path.length;
  for (let step = 1; step <= maxSteps; step++) {
    if (pi < plen) {
      const op = pat[pi];
      if (op === GLOB_OP.star) {
        [sp, ss, pi] = [pi + 1, si, pi + 1];
        continue;
      }
      if (op === GLOB_OP.globstar) {
        [gp, gs, sp, pi] = [pi + 1, si, NONE, pi + 1];
        continue;
      }
      let oplen = 1;
      if (op <= GLOB_OP.last && op !== GLOB_OP.one) {
        if (op === GLOB_OP.class) {
          const n = pi + 1 < plen ? (pat[pi + 1] & 0x7f) + 1 : 0;
          oplen = n && n <= KERNEL_GLOB_CLASS_MAX_RANGES && pi + 2 + 6 * n <= plen ? 2 + 6 * n : 0;
        } else if (op === GLOB_OP.byte && pi + 1 < plen) oplen = 2;
        else oplen = 0;
        if (!oplen) return { result: -1, steps: step };
      }
      if (si < slen) {
        const b = path[si];
        if (op === GLOB_OP.one) {
          if (b !== 0x2f) {
            si += charAt(path, si)[0];
            pi++;
            continue;
          }
        } else if (op === GLOB_OP.class) {
          if (b !== 0x2f) {
            const [len, cp] = charAt(path, si);
            const h = pat[pi + 1];
            let inSet = false;
            for (let k = 0; k < (h & 0x7f) + 1; k++) {
              const o = pi + 2 + 6 * k;
              const lo = (pat[o] << 16) | (pat[o + 1] << 8) | pat[o + 2];
              const hi = (pat[o + 3] << 16) | (pat[o + 4] << 8) | pat[o + 5];
              if (cp >= lo && cp <= hi) inSet = true;
            }
            if (h & CLASS_NEGATE ? !inSet : inSet) {
              si += len;
              pi += oplen;
              continue;
            }
          }
        } else if (op === GLOB_OP.byte) {
          if (b === pat[pi + 1]) {
            si++;
            pi += 2;
            continue;
          }
        } else if (b === op) {
          si++;
          pi++;
          continue;
        }
      }
    } else if (si === slen) {
      return { result: 1, steps: step };
    }
    if (sp !== NONE && ss < slen && path[ss] !== 0x2f) {
      ss += charAt(path, ss)[0];
      [si, pi] = [ss, sp];
      continue;
    }
    if (gp !== NONE && gs < slen) {
      gs += charAt(path, gs)[0];
      [si, pi, sp] = [gs, gp, NONE];
      continue;
    }
    return { result: 0, steps: step };
  }
  return { result: 2, steps: maxSteps };
}
