// The differential test of the kernel glob matcher (bpf/include/ew_glob.bpf.h)
// against agent/src/policy/glob.ts, shared by tests/integration/glob_kernel.test.ts
// (this host: the syscall test programs) and tests/integration/lsm_glob_kernel.test.ts
// (the BPF-LSM guest, 6.1: the LSM program must pass that verifier too).
// The matcher runs on the real kernel (bpf/glob_test.bpf.c through
// tests/bpf/glob_runner.c, bpf_prog_test_run). Every pair is checked twice:
// the kernel must return exactly what the model kernelGlobMatch() predicts
// (including "too complex" when the step budget runs out), and every verdict
// must be glob.ts's verdict.
import { execFileSync, spawnSync } from 'child_process';
import * as path from 'path';

import { compileGlob } from '../../agent/src/policy/glob';
import { encodeKernelGlob, KERNEL_GLOB_MAX_PATH, kernelGlobMatch } from '../../agent/src/policy/glob_kernel';
import { EDGE_CASES, EXPENSIVE_CASES, longCases, prng, randomCases } from './glob_cases';

export interface GlobKernelSuiteOptions {
  /** Also load the matcher inside an LSM program (BPF-LSM kernels only). */
  lsm: boolean;
  /** How many random pattern/path pairs. */
  randomCount: number;
  /** How many long-path pairs. */
  longCount: number;
}

const ROOT = path.resolve(__dirname, '../..');
// generous: the machine may be busy, and the guest runs node under TCG
const TEST_TIMEOUT_MS = 300_000;

/** Defines the suite's tests (call at a test file's top level). */
export function globKernelSuite(opts: GlobKernelSuiteOptions): void {
  // one runner binary per suite: the two suites may build at the same time
  const RUNNER = path.join(ROOT, 'build', opts.lsm ? 'glob_runner_lsm' : 'glob_runner');
  const runnerArgs = opts.lsm ? ['--lsm'] : [];
  let verifierLog = '';

  beforeAll(() => {
    if (process.getuid?.() !== 0) {
      throw new Error('the kernel glob matcher suite must run as root: it loads and runs BPF programs (bpf_prog_test_run)');
    }
    execFileSync('make', ['-s', '-C', path.join(ROOT, 'bpf'), '../build/bpf/glob_test.skel.h'], { stdio: 'pipe' });
    execFileSync(
      'cc',
      ['-O2', '-Wall', '-Werror', '-I', path.join(ROOT, 'build/bpf'), path.join(ROOT, 'tests/bpf/glob_runner.c'), '-o', RUNNER, '-lbpf', '-lelf', '-lz'],
      { stdio: 'pipe' },
    );
  }, 120_000);

  /** The kernel's verdicts for [encoded pattern, path bytes] pairs, in order. */
  function runKernel(pairs: Array<[Buffer, Buffer]>, log = false): number[] {
    const input = pairs.map(([p, s]) => `${p.toString('hex')}\t${s.toString('hex')}\n`).join('');
    const r = spawnSync(RUNNER, log ? [...runnerArgs, '--log'] : runnerArgs, { input, maxBuffer: 64 << 20, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`glob_runner failed (status ${r.status}): ${r.stderr}`);
    if (log) verifierLog = r.stderr;
    const out = r.stdout.trim().split('\n').map(Number);
    if (out.length !== pairs.length) throw new Error(`glob_runner answered ${out.length} of ${pairs.length} lines`);
    return out;
  }

  type Outcome = { match: number; nomatch: number; tooComplex: number; bad: string[] };

  /** Runs [pattern, path] cases through the kernel; lists every disagreement. */
  function compare(cases: Array<[string, string]>): Outcome {
    const pairs: Array<[Buffer, Buffer]> = [];
    const owner: number[] = [];
    cases.forEach(([pattern, p], i) => {
      const enc = encodeKernelGlob(pattern);
      if (typeof enc === 'string') throw new Error(`test case ${JSON.stringify(pattern)}: ${enc}`);
      const bytes = Buffer.from(p, 'utf8');
      if (bytes.length > KERNEL_GLOB_MAX_PATH) throw new Error(`test case path of ${bytes.length} bytes is over PATH_MAX`);
      for (const e of enc) {
        pairs.push([e, bytes]);
        owner.push(i);
      }
    });
    const kernel = runKernel(pairs);
    const out: Outcome = { match: 0, nomatch: 0, tooComplex: 0, bad: [] };
    const verdicts = cases.map(() => ({ any: false, unknown: false }));
    pairs.forEach(([e, s], k) => {
      const [pattern, p] = cases[owner[k]];
      const model = kernelGlobMatch(e, s).result;
      if (kernel[k] !== model) {
        out.bad.push(`${JSON.stringify(pattern)} ~ ${JSON.stringify(p)} (alternative ${e.toString('hex')}): kernel ${kernel[k]}, model ${model}`);
      }
      if (kernel[k] === 1) verdicts[owner[k]].any = true;
      else if (kernel[k] !== 0) verdicts[owner[k]].unknown = true;
    });
    cases.forEach(([pattern, p], i) => {
      const v = verdicts[i];
      if (!v.any && v.unknown) {
        out.tooComplex++;
        return;
      }
      const want = compileGlob(pattern)(p);
      if (v.any !== want) out.bad.push(`${JSON.stringify(pattern)} ~ ${JSON.stringify(p)}: glob.ts ${want}, kernel ${v.any}`);
      if (v.any) out.match++;
      else out.nomatch++;
    });
    return out;
  }

  describe('kernel glob matcher equals glob.ts', () => {
    test(`the programs (inline, global function${opts.lsm ? ', LSM' : ''}) pass the verifier (statistics logged)`, () => {
      expect(runKernel([[Buffer.from('/a'), Buffer.from('/a')]], true)).toEqual([1]);
      const processed = verifierLog.match(/processed \d+ insns/g) ?? [];
      expect(processed.length).toBe(opts.lsm ? 3 : 2);
      console.log(`glob matcher verifier statistics:\n${verifierLog.trim()}`);
    }, TEST_TIMEOUT_MS);

    test('hand-written edge cases', () => {
      const r = compare(EDGE_CASES);
      expect(r.bad).toEqual([]);
      expect(r.tooComplex).toBe(0);
      expect(r.match).toBeGreaterThan(20);
      expect(r.nomatch).toBeGreaterThan(15);
    }, TEST_TIMEOUT_MS);

    test(`${opts.randomCount} random patterns (stars everywhere, classes, escapes, braces, UTF-8) and near misses`, () => {
      const r = compare(randomCases(7, opts.randomCount));
      expect(r.bad.slice(0, 20)).toEqual([]);
      expect(r.tooComplex).toBe(0);
      expect(r.match).toBeGreaterThan(opts.randomCount / 5);
      expect(r.nomatch).toBeGreaterThan(opts.randomCount / 5);
    }, TEST_TIMEOUT_MS);

    test('patterns at the maximum encoded length', () => {
      const r = prng(5);
      const cases: Array<[string, string]> = [];
      for (const tail of ['a', '*', '?', '**']) {
        const base = '/' + 'ab/'.repeat(85); // 256 bytes with the tail
        const pattern = base.slice(0, 256 - tail.length) + tail;
        const hit = pattern.replace(/\*+|\?/g, 'x');
        cases.push([pattern, hit], [pattern, hit + 'y'], [pattern, hit.slice(0, -1)], [pattern, hit.slice(0, 100) + 'z' + hit.slice(101)]);
      }
      for (let i = 0; i < 200; i++) {
        // random 256-byte patterns of stars and characters against paths of up to PATH_MAX
        let p = '/';
        while (p.length < 256) p += ['a', '*', '/', '?', '**', 'b'][Math.floor(r() * 6)];
        p = p.slice(0, 256);
        if (Buffer.byteLength(p) !== 256 || typeof encodeKernelGlob(p) === 'string') continue;
        const s = '/' + Array.from({ length: 1 + Math.floor(r() * 4000) }, () => ['a', 'b', '/'][Math.floor(r() * 3)]).join('');
        cases.push([p, s.slice(0, KERNEL_GLOB_MAX_PATH)]);
      }
      const out = compare(cases);
      expect(out.bad).toEqual([]);
      expect(out.match).toBeGreaterThanOrEqual(4);
    }, TEST_TIMEOUT_MS);

    test('long paths up to PATH_MAX (4095 bytes)', () => {
      const cases = longCases(11, opts.longCount, KERNEL_GLOB_MAX_PATH);
      expect(Math.max(...cases.map(([, s]) => Buffer.byteLength(s)))).toBe(KERNEL_GLOB_MAX_PATH);
      const r = compare(cases);
      expect(r.bad).toEqual([]);
      expect(r.tooComplex).toBe(0);
      expect(r.match).toBeGreaterThan(opts.longCount / 10);
      expect(r.nomatch).toBeGreaterThan(opts.longCount / 10);
    }, TEST_TIMEOUT_MS);

    test('invalid UTF-8 paths: each byte outside a valid sequence is one character', () => {
      const enc = (p: string) => (encodeKernelGlob(p) as Buffer[])[0];
      const pairs: Array<[Buffer, Buffer, number]> = [
        [enc('/a/?'), Buffer.from([0x2f, 0x61, 0x2f, 0x80]), 1],
        [enc('/a/?'), Buffer.from([0x2f, 0x61, 0x2f, 0xc3]), 1],
        [enc('/a/??'), Buffer.from([0x2f, 0x61, 0x2f, 0xc3, 0x41]), 1],
        [enc('/a/?'), Buffer.from([0x2f, 0x61, 0x2f, 0xc0, 0xaf]), 0], // overlong "/": two characters
        [enc('/a/??'), Buffer.from([0x2f, 0x61, 0x2f, 0xc0, 0xaf]), 1],
        [enc('/a/[.-0]'), Buffer.from([0x2f, 0x61, 0x2f, 0xc0, 0xaf]), 0],
        [enc('/a/?'), Buffer.from([0x2f, 0x61, 0x2f, 0xed, 0xa0, 0x80]), 0], // a surrogate: three characters
        [enc('/a/*'), Buffer.from([0x2f, 0x61, 0x2f, 0xff, 0xfe]), 1],
        [enc('/a/[!a]'), Buffer.from([0x2f, 0x61, 0x2f, 0xff]), 1],
        [enc('/a/[\ufffd]'), Buffer.from([0x2f, 0x61, 0x2f, 0xff]), 1],
      ];
      const kernel = runKernel(pairs.map(([p, s]) => [p, s]));
      pairs.forEach(([p, s, want], i) => {
        expect([p.toString('hex'), s.toString('hex'), kernel[i]]).toEqual([p.toString('hex'), s.toString('hex'), want]);
        expect(kernelGlobMatch(p, s).result).toBe(want);
      });
    }, TEST_TIMEOUT_MS);

    test('the step budget: expensive pairs come back "too complex", never a wrong verdict', () => {
      const r = compare(EXPENSIVE_CASES);
      expect(r.bad).toEqual([]);
      expect(r.tooComplex).toBe(EXPENSIVE_CASES.length);
    }, TEST_TIMEOUT_MS);

    test('bad input: lengths over the limits and malformed encodings are "invalid" (-1)', () => {
      const pairs: Array<[Buffer, Buffer]> = [
        [Buffer.from([0x2f, 0x04]), Buffer.from('/a')],
        [Buffer.from([0x2f, 0x04, 0x08]), Buffer.from('/a')],
        [Buffer.from([0x05]), Buffer.from('/a')],
        [Buffer.from([0x06]), Buffer.from('/a')],
        [Buffer.from([0x2f, 0x00]), Buffer.from('/')],
        [Buffer.from([0x2f, 0x02]), Buffer.alloc(KERNEL_GLOB_MAX_PATH + 1, 0x61)], // path_len 4096: no room for a NUL
      ];
      expect(runKernel(pairs)).toEqual([-1, -1, -1, -1, -1, -1]);
      // the runner refuses oversize input itself: the kernel side is checked through the model
      expect(kernelGlobMatch(Buffer.alloc(257, 0x61), Buffer.from('/a')).result).toBe(-1);
    }, TEST_TIMEOUT_MS);
  });
}
