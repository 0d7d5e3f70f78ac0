// The record header's ns_pid / ns_ppid (ABI 2) on the real kernel: filled by
// ew_fill_header in bpf/monitor.bpf.c for processes in their own pid
// namespaces (unshare --pid --fork, one and two levels deep) and on the host.
import { spawn } from 'child_process';
import * as fs from 'fs';
import { EventKind } from '../../agent/src/abi';
import type { EwEvent, ExecEvent, ExitEvent, ForkEvent } from '../../agent/src/events';
import { EventPipeline } from '../../agent/src/monitor';
import { loadNative } from '../../agent/src/native';
import { BUSYBOX, busyboxCopy, makeTempDir } from '../helpers/system';

function requireEnvironment(): void {
  if (process.getuid?.() !== 0) throw new Error('tests/integration/monitor_ns_pid.test.ts must run as root: it attaches kernel programs');
  if (!fs.existsSync('/usr/bin/unshare')) throw new Error('/usr/bin/unshare (util-linux) is needed to make pid namespaces');
  if (!fs.existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} missing: run scripts/install-deps.sh (busybox-static)`);
}

function run(file: string, args: string[]): Promise<{ pid: number; code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ pid: child.pid ?? -1, code, stdout }));
  });
}

const pidNsOf = (pid: number | 'self') => Number(/\[(\d+)\]/.exec(fs.readlinkSync(`/proc/${pid}/ns/pid`))![1]);

describe('ns_pid / ns_ppid in monitor records (real kernel)', () => {
  const events: EwEvent[] = [];
  let pipeline: EventPipeline;
  let work: string;

  beforeAll(() => {
    requireEnvironment();
    work = makeTempDir('monitor-nspid');
    pipeline = new EventPipeline(
      loadNative(),
      { ringBufferBytes: 4 << 20, pollIntervalMs: 20, process: true, file: false, network: false },
      (batch) => events.push(...batch),
    );
  });

  afterAll(() => {
    pipeline?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  async function waitEvent<T extends EwEvent>(what: string, pred: (e: EwEvent) => boolean): Promise<T> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const e = events.find(pred);
      if (e) return e as T;
      if (Date.now() > deadline) throw new Error(`no event for ${what} within 5000 ms (${events.length} events seen)`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * `unshare` (levels times) then a shell ("outer", pid 1 of the innermost
   * namespace) that runs a second shell ("inner") exec'ing `program`.
   */
  async function inNamespace(levels: number, program: string) {
    const script = `echo outer=$$; ${BUSYBOX} sh -c 'echo inner=$$ parent=$PPID; exec ${program} true'; exit 0`;
    const prefix = Array.from({ length: levels }, () => ['/usr/bin/unshare', '--pid', '--fork', '--kill-child']).flat();
    const r = await run(prefix[0], [...prefix.slice(1), BUSYBOX, 'sh', '-c', script]);
    const outer = /outer=(\d+)/.exec(r.stdout);
    const inner = /inner=(\d+) parent=(\d+)/.exec(r.stdout);
    if (r.code !== 0 || !outer || !inner) throw new Error(`unshare run failed (${r.code}): ${r.stdout}`);
    return { outer: Number(outer[1]), inner: Number(inner[1]), innerParent: Number(inner[2]) };
  }

  test.each([1, 2])('%i level(s) deep: exec, fork and exit records carry the pids the processes had there', async (levels) => {
    const program = busyboxCopy(work, `nspid-${levels}`);
    const run1 = await inNamespace(levels, program);
    expect(run1).toEqual({ outer: 1, inner: 2, innerParent: 1 });

    const exec = await waitEvent<ExecEvent>('the exec of the copy', (e) => e.kind === EventKind.Exec && e.path === program);
    expect(exec.nsPid).toBe(2);
    expect(exec.nsPpid).toBe(1);
    expect(exec.pid).not.toBe(2);
    expect(exec.pidNs).not.toBe(pidNsOf('self'));

    // the outer shell forked the inner one: the fork record's header is the outer shell, pid 1, whose parent (unshare) is outside
    const fork = await waitEvent<ForkEvent>('the outer shell forking', (e) => e.kind === EventKind.Fork && e.pid === exec.ppid);
    expect(fork).toMatchObject({ nsPid: 1, nsPpid: 0, pidNs: exec.pidNs });
    expect(fork.childPid).toBe(exec.pid);

    const exit = await waitEvent<ExitEvent>('the exit of the copy', (e) => e.kind === EventKind.Exit && e.pid === exec.pid);
    expect(exit).toMatchObject({ nsPid: 2, nsPpid: 1 });
  });

  test('a host process: the namespace numbers are the host numbers', async () => {
    const program = busyboxCopy(work, 'nspid-host');
    const r = await run(program, ['true']);
    expect(r.code).toBe(0);
    const exec = await waitEvent<ExecEvent>('the exec on the host', (e) => e.kind === EventKind.Exec && e.path === program);
    expect(exec).toMatchObject({ pid: r.pid, nsPid: r.pid, ppid: process.pid, nsPpid: process.pid, pidNs: pidNsOf('self') });
  });
});
