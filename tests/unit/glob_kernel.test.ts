import { compileGlob, globProblem } from '../../agent/src/policy/glob';
import {
  encodeKernelGlob,
  GLOB_OP,
  KERNEL_GLOB_MAX_BYTES,
  kernelGlobMatch,
  kernelGlobProblem,
} from '../../agent/src/policy/glob_kernel';
import { EDGE_CASES, EXPENSIVE_CASES, longCases, randomCases } from '../helpers/glob_cases';

/** The kernel model's verdict on every alternative vs glob.ts; returns a description of the first disagreement. */
function disagreement(pattern: string, path: string): string | undefined {
  const enc = encodeKernelGlob(pattern);
  if (typeof enc === 'string') return `encodeKernelGlob(${JSON.stringify(pattern)}): ${enc}`;
  const want = compileGlob(pattern)(path);
  const got = enc.map((e) => kernelGlobMatch(e, Buffer.from(path, 'utf8')).result);
  if (got.includes(2)) return `too complex: ${JSON.stringify(pattern)} ~ ${JSON.stringify(path)}`;
  if (got.includes(1) !== want) return `${JSON.stringify(pattern)} ~ ${JSON.stringify(path)}: glob.ts ${want}, kernel model ${got}`;
  return undefined;
}

describe('kernel glob encoding', () => {
  test('tokens become ops, braces alternatives, control bytes escapes', () => {
    expect(encodeKernelGlob('/a*')).toEqual([Buffer.from([0x2f, 0x61, GLOB_OP.star])]);
    expect(encodeKernelGlob('/**?')).toEqual([Buffer.from([0x2f, GLOB_OP.globstar, GLOB_OP.one])]);
    expect(encodeKernelGlob('/{a,b}')).toEqual([Buffer.from('/a'), Buffer.from('/b')]);
    expect(encodeKernelGlob('/\u0001')).toEqual([Buffer.from([0x2f, GLOB_OP.byte, 1])]);
    expect(encodeKernelGlob('/[!a-é]')).toEqual([Buffer.from([0x2f, GLOB_OP.class, 0x80, 0, 0, 0x61, 0, 0, 0xe9])]);
    expect(encodeKernelGlob('/\\*')).toEqual([Buffer.from('/*')]);
  });

  test('what the kernel matcher cannot take is refused with the reason', () => {
    expect(kernelGlobProblem('/' + 'a'.repeat(KERNEL_GLOB_MAX_BYTES - 1))).toBeUndefined();
    expect(kernelGlobProblem('/' + 'a'.repeat(KERNEL_GLOB_MAX_BYTES))).toBe('encodes into 257 bytes for the kernel matcher (at most 256)');
    expect(kernelGlobProblem('/{x,' + 'a'.repeat(KERNEL_GLOB_MAX_BYTES) + '}')).toMatch(/^alternative "\/a+" encodes into 257 bytes/);
    expect(kernelGlobProblem('/[abcdefghi]')).toMatch(/character class of 9 characters or ranges/);
    expect(kernelGlobProblem('/[abcdefgh]')).toBeUndefined();
    expect(kernelGlobProblem('/a\ud800')).toMatch(/unpaired UTF-16 surrogate/);
    expect(kernelGlobProblem('/a/{b')).toBe(globProblem('/a/{b'));
    expect(kernelGlobProblem('/a/[b')).toBe(globProblem('/a/[b'));
  });

  test('malformed encodings are reported, not matched', () => {
    const bad = [[0x2f, GLOB_OP.class], [0x2f, GLOB_OP.class, 0x08], [GLOB_OP.byte], [0x06], [0x00], [GLOB_OP.class, 0, 0, 0, 0x61, 0, 0]];
    for (const b of bad) expect(kernelGlobMatch(Buffer.from(b), Buffer.from('/a')).result).toBe(-1);
  });
});

describe('kernel glob model equals glob.ts', () => {
  test('hand-written edge cases', () => {
    const bad = EDGE_CASES.map(([p, s]) => disagreement(p, s)).filter((d) => d !== undefined);
    expect(bad).toEqual([]);
  });

  test('200,000 random patterns and near misses', () => {
    const bad: string[] = [];
    for (const [p, s] of randomCases(1, 200_000)) {
      const d = disagreement(p, s);
      if (d) bad.push(d);
      if (bad.length > 10) break;
    }
    expect(bad).toEqual([]);
  }, 180_000);

  test('exhaustive: every pattern of up to 4 tokens over a/b/"/" against every path of up to 5 characters', () => {
    const toks = ['a', 'b', '/', '*', '**', '?', '[!a]'];
    const pats: string[] = [''];
    for (let n = 0; n < 4; n++) for (const p of pats.slice()) if (p.split('').length <= 12) for (const t of toks) pats.push(p + t);
    const paths: string[] = [''];
    for (let n = 0; n < 5; n++) for (const s of paths.slice()) if (s.length === n) for (const c of ['a', 'b', '/']) paths.push(s + c);
    const bad: string[] = [];
    for (const p of new Set(pats)) {
      for (const s of paths) {
        const d = disagreement('/' + p, '/' + s);
        if (d) bad.push(d);
      }
      if (bad.length > 10) break;
    }
    expect(bad).toEqual([]);
  }, 180_000);

  test('long paths up to PATH_MAX stay within the step budget', () => {
    const bad = longCases(2, 300, 4095)
      .map(([p, s]) => disagreement(p, s))
      .filter((d) => d !== undefined);
    expect(bad).toEqual([]);
  });

  test('the step budget stops the expensive cases', () => {
    for (const [p, s] of EXPENSIVE_CASES) {
      const enc = encodeKernelGlob(p) as Buffer[];
      expect(kernelGlobMatch(enc[0], Buffer.from(s)).result).toBe(2);
      expect(kernelGlobMatch(enc[0], Buffer.from(s), 1e9).result).toBe(compileGlob(p)(s) ? 1 : 0);
    }
  });
});
