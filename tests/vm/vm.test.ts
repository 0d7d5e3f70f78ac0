// The BPF-LSM guest (tests/vm/run-in-vm.sh), run from the host: Debian's stock
// kernel in qemu with bpf among its LSMs, the host's build unchanged inside.
// (1)-(2) the guest really has BPF-LSM and edgeward's probe loads and attaches
// an LSM program there; (3)-(4) the harness returns a command's bytes and exit
// status exactly and tells a missing command, a timeout and a guest that did
// not boot apart; (5) the enforcement conformance suite passes in the guest
// against the bpf-lsm backend (and the probe picks it: no silent fallback);
// (6) suites that only a BPF-LSM kernel can run (tests/integration/lsm_*.test.ts)
// pass there too, in the same guest run as (5). Each test boots its own guest
// (~4 s under TCG).
import { spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { makeTempDir, REPO } from '../helpers/system';

const VM_DIR = path.join(REPO, 'tests', 'vm');
const RUN_IN_VM = path.join(VM_DIR, 'run-in-vm.sh');
const RUN_CONFORMANCE = path.join(VM_DIR, 'run-conformance.sh');
const GUEST_TEST_TIMEOUT_MS = 10 * 60_000;
/**
 * the guest run of the conformance suite plus the BPF-LSM-only suites (10-20
 * minutes, the longer under load; lsm_docker.test.ts alone adds 4-6: a
 * private dockerd, its containers and one more agent start)
 */
const GUEST_SUITES_TIMEOUT_S = 40 * 60;

/** run-in-vm.sh's --result file. */
interface HarnessResult {
  outcome: 'exited' | 'not-found' | 'timeout' | 'boot-failed' | 'guest-died' | 'harness-error';
  exitCode: number;
  bootSeconds: number | null;
  runSeconds: number | null;
  accel: string;
  kernel: string;
}

interface GuestRun {
  status: number | null;
  stdout: Buffer;
  stderr: Buffer;
  /** the harness's own messages (--log) */
  log: string;
  result?: HarnessResult;
}

let work: string;
/** process groups of harness runs still going */
const running = new Set<number>();
beforeAll(() => {
  work = makeTempDir('vm');
});
afterAll(() => {
  for (const pid of running) {
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

let runCount = 0;
/** Runs a host script (run-in-vm.sh or run-conformance.sh) with --log/--result, collecting its bytes. */
function runHarness(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<GuestRun> {
  const n = ++runCount;
  const logFile = path.join(work, `run-${n}.log`);
  const resultFile = path.join(work, `run-${n}.json`);
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script, '--log', logFile, '--result', resultFile, ...args], {
      cwd: REPO,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group: a timed-out test stops qemu too
    });
    running.add(child.pid!);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (status) => {
      running.delete(child.pid!);
      const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
      const result = fs.existsSync(resultFile) ? (JSON.parse(fs.readFileSync(resultFile, 'utf8')) as HarnessResult) : undefined;
      resolve({ status, stdout: Buffer.concat(out), stderr: Buffer.concat(err), log, result });
    });
  });
}

function runInVm(cmd: string[], opts: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<GuestRun> {
  return runHarness(RUN_IN_VM, [...opts, '--', ...cmd], env);
}

/** The whole story of a run, for failure messages. */
function describeRun(r: GuestRun): string {
  const tail = (b: Buffer) => b.toString('utf8').slice(-4000);
  return `exit ${r.status}, result ${JSON.stringify(r.result)}\n--- harness log ---\n${r.log}\n--- stdout (tail) ---\n${tail(r.stdout)}\n--- stderr (tail) ---\n${tail(r.stderr)}`;
}

/** Fails (with the console tail the harness logged) unless the guest booted and the command ran. */
function expectRan(r: GuestRun, status: number): void {
  if (r.result?.outcome !== 'exited' || r.status !== status) {
    throw new Error(`expected the guest command to exit with ${status}; ${describeRun(r)}`);
  }
}

function reportTimes(what: string, r: GuestRun): void {
  console.log(`${what}: boot ${r.result?.bootSeconds ?? '?'} s, run ${r.result?.runSeconds ?? '?'} s (${r.result?.accel}, ${r.result?.kernel})`);
}

function requireHostBuild(): void {
  const missing = ['dist/agent/src/cli.js', 'build/native/Release/edgeward.node', 'build/bpf/probe.bpf.o'].filter(
    (f) => !fs.existsSync(path.join(REPO, f)),
  );
  if (missing.length) throw new Error(`edgeward is not built (${missing.join(', ')} missing): run npm run build`);
}

interface ProbeJson {
  kernel: string;
  lsms: string[];
  backend: string;
  reasons: string[];
  features: { bpfLsm: { ok: boolean; error?: string } };
}

/** bin/edgeward probe --json in a guest, once for the tests that need it. */
let guestProbe: Promise<{ run: GuestRun; report: ProbeJson }> | undefined;
function probeInGuest(): Promise<{ run: GuestRun; report: ProbeJson }> {
  guestProbe ??= (async () => {
    requireHostBuild();
    const run = await runInVm(['bin/edgeward', 'probe', '--json']);
    expectRan(run, 0);
    reportTimes('probe in the guest', run);
    return { run, report: JSON.parse(run.stdout.toString('utf8')) as ProbeJson };
  })();
  return guestProbe;
}

describe('the BPF-LSM guest kernel', () => {
  test(
    '(1) the guest kernel lists bpf among its active LSMs',
    async () => {
      const r = await runInVm(['cat', '/sys/kernel/security/lsm']);
      expectRan(r, 0);
      reportTimes('lsm list', r);
      expect(r.stdout.toString('utf8').trim().split(',')).toContain('bpf');
      expect(r.log).toMatch(/guest booted in \d+\.\d+ s/);
    },
    GUEST_TEST_TIMEOUT_MS,
  );

  test(
    '(2) the host-built probe loads and attaches an LSM program in the guest (features.bpfLsm.ok)',
    async () => {
      const { run, report } = await probeInGuest();
      // The guest's own kernel answered, not the host's.
      expect(report.kernel).toBe(run.result!.kernel);
      expect(report.lsms).toContain('bpf');
      // probe.cc's bpfLsm: the program loaded AND attached (bpf_program__attach).
      expect(report.features.bpfLsm).toEqual({ ok: true });
    },
    GUEST_TEST_TIMEOUT_MS,
  );
});

describe('run-in-vm.sh', () => {
  test(
    "(3) a command's stdout, stderr and exit status come back exactly",
    async () => {
      const r = await runInVm(['sh', '-c', "echo out; echo err >&2; printf 'no newline'; exit 7"]);
      expectRan(r, 7);
      expect(r.stdout.toString('utf8')).toBe('out\nno newline');
      expect(r.stderr.toString('utf8')).toBe('err\n');
      expect(r.log).toMatch(/command exited with status 7 after \d+\.\d+ s/);
    },
    GUEST_TEST_TIMEOUT_MS,
  );

  test(
    '(3b) megabytes of binary output on both streams at once arrive byte for byte',
    async () => {
      // Host files the guest reads through 9p: random bytes (NULs included).
      const dir = path.join(REPO, 'build', 'vm');
      fs.mkdirSync(dir, { recursive: true });
      const outFile = path.join(dir, `bytes-out-${process.pid}.bin`);
      const errFile = path.join(dir, `bytes-err-${process.pid}.bin`);
      const outBytes = crypto.randomBytes(3 * 1024 * 1024 + 17);
      const errBytes = crypto.randomBytes(1024 * 1024 + 3);
      fs.writeFileSync(outFile, outBytes);
      fs.writeFileSync(errFile, errBytes);
      try {
        const r = await runInVm(['sh', '-c', 'cat "$1" >&2 & cat "$0"; wait', outFile, errFile]);
        expectRan(r, 0);
        expect(r.stdout.length).toBe(outBytes.length);
        expect(r.stdout.equals(outBytes)).toBe(true);
        expect(r.stderr.length).toBe(errBytes.length);
        expect(r.stderr.equals(errBytes)).toBe(true);
      } finally {
        fs.rmSync(outFile, { force: true });
        fs.rmSync(errFile, { force: true });
      }
    },
    GUEST_TEST_TIMEOUT_MS,
  );

  test(
    '(4) a command the guest does not have is reported as such (127, not-found)',
    async () => {
      const r = await runInVm(['/nonexistent/edgeward-no-such-program', 'arg']);
      expect(r.result?.outcome).toBe('not-found');
      expect(r.status).toBe(127);
      expect(r.log).toContain('command not found in the guest: /nonexistent/edgeward-no-such-program');
      expect(r.log).toMatch(/guest booted in/);
    },
    GUEST_TEST_TIMEOUT_MS,
  );

  test(
    '(4b) a command that outlives --timeout is a timeout (124), not a failure of the command',
    async () => {
      const r = await runInVm(['sleep', '600'], ['--timeout', '25']);
      expect(r.result?.outcome).toBe('timeout');
      expect(r.status).toBe(124);
      expect(r.log).toMatch(/timeout: 25 s passed \(the command was still running\)/);
    },
    GUEST_TEST_TIMEOUT_MS,
  );

  test(
    '(4c) a guest that does not boot is a boot failure (125) with the serial console tail',
    async () => {
      // No init in the initramfs: the kernel cannot start userspace and panics.
      const r = await runInVm(['true'], [], { EDGEWARD_VM_APPEND: 'rdinit=/edgeward-no-such-init' });
      expect(r.result?.outcome).toBe('boot-failed');
      expect(r.status).toBe(125);
      expect(r.log).toContain('the guest failed to boot');
      expect(r.log).toContain('serial console (last 40 lines)');
      expect(r.log).toMatch(/Kernel panic/);
    },
    GUEST_TEST_TIMEOUT_MS,
  );

  test(
    '(4d) usage errors are refused before booting anything',
    async () => {
      const r = await runHarness(RUN_IN_VM, ['--mem', 'lots', '--', 'true']);
      expect(r.status).toBe(125);
      expect(r.log).toContain("--mem needs a positive integer, got 'lots'");
      expect(r.log).not.toMatch(/guest booted/);
    },
    GUEST_TEST_TIMEOUT_MS,
  );
});

// The bpf-lsm backend is written alongside this harness; its presence is
// read from the tree. Once any of its files exists, it must work.
const LSM_BACKEND_SOURCES = ['agent/src/lsm_backend.ts', 'bpf/lsm_enforcer.bpf.c', 'native/src/lsm_enforcer.cc'];
const LSM_BACKEND_BUILT = ['dist/agent/src/lsm_backend.js', 'build/bpf/lsm_enforcer.bpf.o'];
const lsmBackendPresent = LSM_BACKEND_SOURCES.some((f) => fs.existsSync(path.join(REPO, f)));
const CONFORMANCE_SUITE = 'tests/integration/agent.test.ts';
// Suites only a BPF-LSM kernel can run (this host refuses LSM programs).
const GUEST_ONLY_SUITES = fs
  .readdirSync(path.join(REPO, 'tests', 'integration'))
  .filter((f) => /^lsm_.*\.test\.ts$/.test(f))
  .map((f) => `tests/integration/${f}`);

interface JestReport {
  testResults: Array<{
    name: string;
    status: string;
    message: string;
    assertionResults: Array<{ ancestorTitles: string[]; title: string; status: string }>;
  }>;
}

/** One guest run of the conformance suite and the BPF-LSM-only suites (one boot, one jest). */
let guestSuites: Promise<{ run: GuestRun; report: JestReport }> | undefined;
function runGuestSuites(): Promise<{ run: GuestRun; report: JestReport }> {
  guestSuites ??= (async () => {
    requireHostBuild();
    const unbuilt = LSM_BACKEND_BUILT.filter((f) => !fs.existsSync(path.join(REPO, f)));
    if (unbuilt.length) throw new Error(`bpf-lsm backend not built yet: ${unbuilt.join(', ')} missing (run npm run build)`);
    const { report: probe } = await probeInGuest();
    if (probe.backend !== 'bpf-lsm') {
      throw new Error(
        `bpf-lsm backend not built yet: its sources exist but the guest's probe picks '${probe.backend}':\n  ${probe.reasons.join('\n  ')}`,
      );
    }
    const jsonFile = path.join(work, 'guest-suites.json');
    const run = await runHarness(RUN_CONFORMANCE, [
      '--backend', 'bpf-lsm', '--timeout', String(GUEST_SUITES_TIMEOUT_S), '--json', jsonFile,
      CONFORMANCE_SUITE, ...GUEST_ONLY_SUITES,
    ]);
    reportTimes(`${[CONFORMANCE_SUITE, ...GUEST_ONLY_SUITES].join(' + ')} (bpf-lsm) in the guest`, run);
    // 3: guest-jest.sh's own probe check (same guest, same build) disagreed.
    if (run.status === 3) throw new Error(`the guest's probe did not pick bpf-lsm; ${describeRun(run)}`);
    if (run.result?.outcome !== 'exited' || !fs.existsSync(jsonFile) || fs.statSync(jsonFile).size === 0) {
      throw new Error(`the guest suites did not complete; ${describeRun(run)}`);
    }
    return { run, report: JSON.parse(fs.readFileSync(jsonFile, 'utf8')) as JestReport };
  })();
  return guestSuites;
}

/** Fails unless every test of `suite` ran and passed in the guest. */
async function expectSuitePassed(suite: string): Promise<JestReport['testResults'][number]> {
  const { run, report } = await runGuestSuites();
  const js = suite.replace(/\.ts$/, '.js');
  const file = report.testResults.find((t) => t.name.endsWith(`/${js}`));
  if (!file) throw new Error(`${suite} has no result in the guest's jest report; ${describeRun(run)}`);
  const notPassed = file.assertionResults.filter((a) => a.status !== 'passed');
  if (file.status !== 'passed' || notPassed.length || file.assertionResults.length === 0) {
    throw new Error(
      `${suite} in the guest: ${file.assertionResults.length - notPassed.length}/${file.assertionResults.length} passed; ` +
        `not passed: ${notPassed.map((a) => `${a.title} (${a.status})`).join('; ')}\n${file.message.slice(0, 8000)}`,
    );
  }
  return file;
}

describe('the bpf-lsm backend in the guest', () => {
  if (!lsmBackendPresent) {
    test(
      '(5) conformance suite with bpf-lsm: backend sources absent (none of ' +
        LSM_BACKEND_SOURCES.join(', ') +
        '), so only the guest kernel part is checked: an LSM program loads and attaches',
      async () => {
        const { report } = await probeInGuest();
        expect(report.features.bpfLsm).toEqual({ ok: true });
      },
      GUEST_TEST_TIMEOUT_MS,
    );
    return;
  }

  test(
    '(5) the enforcement conformance suite passes against bpf-lsm in the guest, and the probe picks bpf-lsm',
    async () => {
      const file = await expectSuitePassed(CONFORMANCE_SUITE);
      expect(file.assertionResults[0].ancestorTitles[0]).toContain('(bpf-lsm backend)');
    },
    GUEST_SUITES_TIMEOUT_S * 1000 + 60_000,
  );

  for (const suite of GUEST_ONLY_SUITES) {
    test(
      `(6) ${suite} passes in the guest`,
      async () => {
        await expectSuitePassed(suite);
      },
      GUEST_SUITES_TIMEOUT_S * 1000 + 60_000,
    );
  }
});
