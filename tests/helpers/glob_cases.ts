// Pattern/path pairs for comparing the kernel glob matcher (its model in
// agent/src/policy/glob_kernel.ts, and the real one in BPF) with
// agent/src/policy/glob.ts. Deterministic (seeded) so a failure reproduces.

import { kernelGlobProblem } from '../../agent/src/policy/glob_kernel';

/** A small seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Name characters: ASCII, 2-, 3- and 4-byte UTF-8, a glob-special one escaped in patterns.
const NAME_CHARS = ['a', 'b', 'c', '.', '-', 'é', '€', '😀', '*', '?', '[', ']', '\\', ' ', '\t'];
const SIMPLE = ['a', 'b', 'c', 'é', '😀'];

const CLASSES = ['[ab]', '[!a]', '[^b]', '[a-c]', '[é]', '[!é]', '[a-😀]', '[!a-c]', '[.-0]', '[\\]]', '[]a]', '[-a]', '[\\*?]', '[!😀]'];

/** One random pattern piece, with the path text that matches it (sometimes). */
function piece(r: () => number): { pat: string; text: string } {
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const x = r();
  if (x < 0.35) {
    const c = pick(NAME_CHARS);
    if ('*?[]\\{},'.includes(c)) return { pat: '\\' + c, text: c };
    return { pat: c, text: c };
  }
  if (x < 0.45) return { pat: '/', text: '/' };
  if (x < 0.6) {
    const n = Math.floor(r() * 4);
    return { pat: '*', text: Array.from({ length: n }, () => pick(SIMPLE)).join('') };
  }
  if (x < 0.7) {
    const n = Math.floor(r() * 3);
    const parts = Array.from({ length: n }, () => Array.from({ length: Math.floor(r() * 3) }, () => pick(SIMPLE)).join(''));
    return { pat: '**', text: parts.join('/') };
  }
  if (x < 0.82) return { pat: '?', text: pick(SIMPLE) };
  if (x < 0.95) {
    const cls = pick(CLASSES);
    return { pat: cls, text: pick(['a', 'b', 'c', 'é', '😀', '*', ']', '-', '.', 'z']) };
  }
  return { pat: '{a,b*,}', text: pick(['a', 'b', 'bxy', '']) };
}

/** A mutation of `s`: one character dropped, added, replaced, or a "/" put in. */
function mutate(s: string, r: () => number): string {
  const chars = Array.from(s);
  const i = Math.floor(r() * (chars.length + 1));
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  switch (Math.floor(r() * 4)) {
    case 0:
      chars.splice(i, 1);
      break;
    case 1:
      chars.splice(i, 0, pick(['a', '/', 'é', '😀', 'z']));
      break;
    case 2:
      chars.splice(i, 1, pick(['a', '/', 'é', 'z']));
      break;
    default:
      chars.splice(i, 0, '/');
  }
  return chars.join('');
}

/** `count` random [pattern, path] pairs: matching instances and near misses. */
export function randomCases(seed: number, count: number): Array<[string, string]> {
  const r = prng(seed);
  const out: Array<[string, string]> = [];
  while (out.length < count) {
    const pieces = Array.from({ length: 1 + Math.floor(r() * 8) }, () => piece(r));
    const pat = '/' + pieces.map((p) => p.pat).join('');
    if (kernelGlobProblem(pat)) continue; // too many brace alternatives
    const text = '/' + pieces.map((p) => p.text).join('');
    out.push([pat, text]);
    let m = text;
    for (let k = 0; k < 3; k++) {
      m = mutate(m, r);
      out.push([pat, m]);
    }
  }
  return out.slice(0, count);
}

/** Long paths (up to `maxBytes` UTF-8 bytes) against patterns with stars in every position. */
export function longCases(seed: number, count: number, maxBytes: number): Array<[string, string]> {
  const r = prng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const out: Array<[string, string]> = [];
  const patterns = ['/**', '/**/x', '/**/*.log', '/a/**/b*', '/*/*/**', '/**/?', '/**/[a-c]*', '/a*/**/*z', '/**a**', '/*'];
  while (out.length < count) {
    let path = '';
    const target = Math.floor(maxBytes * (0.5 + r() / 2));
    while (Buffer.byteLength(path) < target) {
      const comp = Array.from({ length: 1 + Math.floor(r() * 40) }, () => pick(['a', 'b', 'x', 'é', '😀', '.', 'z'])).join('');
      path += '/' + comp;
    }
    while (Buffer.byteLength(path) > maxBytes) path = Array.from(path).slice(0, -1).join('');
    out.push([pick(patterns), path]);
  }
  return out;
}

/** Hand-written cases, [pattern, path]: the verdict comes from glob.ts. */
export const EDGE_CASES: Array<[string, string]> = [
  ['/etc/*shadow*', '/etc/shadow'],
  ['/etc/*shadow*', '/etc/gshadow-'],
  ['/etc/*shadow*', '/etc/sub/shadow'],
  ['/tmp/**', '/tmp/a/b/c'],
  ['/tmp/**', '/tmp/'],
  ['/tmp/**', '/tmp'],
  ['/tmp/**/x', '/tmp/a/b/x'],
  ['/tmp/**/x', '/tmp/x'],
  ['/tmp/*', '/tmp/a/b'],
  ['/tmp/*', '/tmp/'],
  ['/bin/?s', '/bin/ls'],
  ['/bin/?s', '/bin/s'],
  ['/bin/?s', '/bin//s'],
  ['/dev/tty[0-9]', '/dev/tty7'],
  ['/dev/tty[0-9]', '/dev/ttyS'],
  ['/dev/tty[!0-9]', '/dev/ttyS'],
  ['/dev/tty[^0-9]', '/dev/tty1'],
  ['/dev/tty[!0-9]', '/dev/tty/'],
  ['/a/[.-0]', '/a//'],
  ['/a/[.-0]', '/a/0'],
  ['/a/{b,c}/d', '/a/c/d'],
  ['/a/{b,c}/d', '/a/e/d'],
  ['/a/{,b}', '/a/'],
  ['/a/\\*', '/a/*'],
  ['/a/\\*', '/a/b'],
  ['/a/é?', '/a/éx'],
  ['/a/?', '/a/é'],
  ['/a/?', '/a/😀'],
  ['/a/??', '/a/😀'],
  ['/a/[😀]', '/a/😀'],
  ['/a/[!😀]', '/a/😀'],
  ['/a/*?', '/a/é'],
  ['/a/*[!é]', '/a/é'],
  ['/a/*[é]', '/a/xé'],
  ['/x*y*z', '/x' + 'a'.repeat(3000) + 'y'],
  ['/**/a*b', '/x/aab/aXb'],
  ['/**/a*b', '/x/a/b'],
  ['/**a*b**c', '/xab/c'],
  ['/**/*/**/x', '/a/x'],
  ['/**/*/**/x', '/a/b/x'],
  ['/*/**', '/a'],
  ['/*/**', '/a/'],
  ['/***', '/a/b'],
  ['/*a*a*a*a*b', '/' + 'a'.repeat(200)],
  ['/*x', '/\u0001x'],
  ['/\u0001*', '/\u0001abc'],
  ['/\u0005', '/\u0005'],
  ['/a b/\tc', '/a b/\tc'],
  ['/**', '/' + 'a/'.repeat(2046) + 'b'],
  ['/**/b', '/' + 'a/'.repeat(2046) + 'b'],
  ['/' + 'a'.repeat(254), '/' + 'a'.repeat(254)],
  ['/' + 'a'.repeat(253) + '*', '/' + 'a'.repeat(300)],
  ['/' + '?'.repeat(255), '/' + 'é'.repeat(255)],
  ['/' + '*'.repeat(300), '/abc'],
  ['/[abcdefgh]', '/h'],
  ['/[!abcdefgh]', '/i'],
];

/** Cases the step budget must stop (too complex), with no "/" for `*` to stop at. */
export const EXPENSIVE_CASES: Array<[string, string]> = [
  ['/**a*a*a*a*a*b', '/' + 'a'.repeat(4000)],
  ['/**?*?*?*b', '/' + 'a'.repeat(4000)],
];
