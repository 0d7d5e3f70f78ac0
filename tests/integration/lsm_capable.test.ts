// bpf-lsm capability rules on a real BPF-LSM kernel (bpf/lsm_capable.bpf.c):
// a Block rule on net_raw makes socket(AF_INET, SOCK_RAW) fail with EPERM
// for root, fromSource narrows it to one executable, Audit lets it through
// with a "Passed" decision, other capabilities and the agent itself are not
// affected, containers (workloads) are told apart from the host, rule sets
// are switched without a window, and removing the rules restores everything.
//
// Only a kernel booted with bpf among its LSMs can run this: run it in the
// qemu guest,
//   tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_capable.test.ts
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';

import { Action, EnforcerCode, EventKind } from '../../agent/src/abi';
import { decodeBatch } from '../../agent/src/events';
import { LsmCapable } from '../../agent/src/lsm_capable';
import type { NativeAddon, NativeEventRing, NativeEventSink } from '../../agent/src/native';
import type { CapabilityRule, WorkloadTarget } from '../../agent/src/policy/types';
import { probe } from '../../agent/src/probe';
import { ADDON, waitFor } from '../helpers/system';

const PYTHON = '/usr/bin/python3';
const PERL = '/usr/bin/perl';
const OP_CAPABILITIES = 4; // bpf/include/ew_capable_abi.h EW_OP_CAPABILITIES
const CAP_NET_RAW = 13;

interface Decision {
  pid: number;
  ruleId: number;
  action: number;
  operation: number;
  enforcer: number;
  ret: number;
  flags: number;
  resource: string;
  exe: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Each prints its pid, then "ok" or the errno name of every attempt.
const PY_RAW = `
import errno, os, socket
print(os.getpid(), flush=True)
def attempt(fn):
    try:
        fn()
        print("ok", flush=True)
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)), flush=True)
attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close())
`;
const PY_BIND_LOW = `
def bind_low():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 81))
    s.close()
attempt(bind_low)
`;
const PERL_RAW = `use Socket; print "$$\\n"; if (socket(my $s, PF_INET, SOCK_RAW, 1)) { print "ok\\n" } else { print(($!{EPERM} ? "EPERM" : "$!") . "\\n") }`;

function results(r: ReturnType<typeof spawnSync>, what: string): { pid: number; out: string[] } {
  if (r.status !== 0) throw new Error(`${what} failed (${String(r.status)}): ${String(r.stderr)}`);
  const lines = String(r.stdout).trim().split('\n');
  return { pid: Number(lines[0]), out: lines.slice(1) };
}
const py = (extra = '', prefix: string[] = []) =>
  results(spawnSync(prefix[0] ?? PYTHON, [...prefix.slice(1), ...(prefix.length ? [PYTHON] : []), '-c', PY_RAW + extra], { encoding: 'utf8', timeout: 60_000 }), 'python');
const perl = () => results(spawnSync(PERL, ['-e', PERL_RAW], { encoding: 'utf8', timeout: 60_000 }), 'perl');

const rule = (over: Partial<CapabilityRule> = {}): CapabilityRule => ({
  ruleId: 101,
  action: 'Block',
  operation: 'Capabilities',
  capability: 'net_raw',
  fromSource: [],
  ...over,
});

describe('bpf-lsm capability rules on a BPF-LSM kernel', () => {
  let addon: NativeAddon;
  let sink: NativeEventSink;
  let ring: NativeEventRing;
  let cap: LsmCapable;
  let decisions: Decision[] = [];
  let undecodable = 0;
  let children: ChildProcess[] = [];

  async function decisionsFor(pid: number, atLeast = 1): Promise<Decision[]> {
    await waitFor(`${atLeast} decision(s) for pid ${pid}`, () => (decisions.filter((d) => d.pid === pid).length >= atLeast ? true : undefined), 5000);
    await sleep(100); // and nothing more
    return decisions.filter((d) => d.pid === pid);
  }

  function apply(rules: CapabilityRule[], workloads: WorkloadTarget[] = []): void {
    const r = cap.apply(rules, workloads);
    expect(r.errors).toEqual([]);
    expect(r.applied).toBe(true);
  }

  beforeAll(() => {
    const problems: string[] = [];
    if (process.getuid?.() !== 0) problems.push('must run as root (LSM programs are attached)');
    if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
    for (const f of [PYTHON, PERL, '/usr/bin/unshare']) if (!fs.existsSync(f)) problems.push(`${f} missing`);
    if (problems.length) throw new Error(`capability rule tests cannot run: ${problems.join('; ')}`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    addon = require(ADDON) as NativeAddon;
    const report = probe(addon, 'auto');
    if (report.backend !== 'bpf-lsm') {
      throw new Error(
        `capability rule tests need a kernel that runs BPF-LSM programs (${report.kernel}: ${report.reasons.join('; ')}); ` +
          'run them in the guest: tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_capable.test.ts',
      );
    }
    sink = new addon.EventSink((batch) => {
      const { events, errors } = decodeBatch(batch);
      undecodable += errors;
      for (const e of events) {
        if (e.kind !== EventKind.Decision) continue;
        const { pid, ruleId, action, operation, enforcer, ret, flags, resource, exe } = e;
        decisions.push({ pid, ruleId, action, operation, enforcer, ret, flags, resource, exe });
      }
    });
    ring = new addon.EventRing(sink, { ringBufferBytes: 1 << 20, pollIntervalMs: 5_000 });
    cap = new LsmCapable(addon, ring);
  });

  afterEach(() => {
    cap?.apply([], []);
    for (const c of children) c.kill('SIGKILL');
    children = [];
    decisions = [];
    const bad = undecodable;
    undecodable = 0;
    expect(bad).toBe(0);
  });

  afterAll(async () => {
    cap?.close();
    ring?.close();
    await sleep(200);
    sink?.close();
  });

  test('lsm/capable is attached and root has CAP_NET_RAW without rules', () => {
    expect(cap.attached()).toEqual(['capable']);
    expect(py().out).toEqual(['ok']);
    expect(perl().out).toEqual(['ok']);
  });

  test('Block net_raw: raw sockets fail with EPERM for root, reported once with the capability and the program', async () => {
    apply([rule()]);
    expect(cap.stats()).toMatchObject({ entries: 1 });
    const r = py();
    expect(r.out).toEqual(['EPERM']);
    expect(perl().out).toEqual(['EPERM']);
    const ds = await decisionsFor(r.pid);
    expect(ds).toEqual([
      {
        pid: r.pid,
        ruleId: 101,
        action: Action.Block,
        operation: OP_CAPABILITIES,
        enforcer: EnforcerCode.BpfLsm,
        ret: -1,
        flags: CAP_NET_RAW,
        resource: 'CAP_NET_RAW',
        exe: fs.realpathSync(PYTHON),
      },
    ]);
  });

  test('an unrelated capability is unaffected (binding port 81 needs CAP_NET_BIND_SERVICE)', () => {
    apply([rule()]);
    expect(py(PY_BIND_LOW).out).toEqual(['EPERM', 'ok']);
    apply([rule({ capability: 'net_bind_service' })]);
    // inet_bind() turns the refused capability into EACCES
    expect(py(PY_BIND_LOW).out).toEqual(['ok', 'EACCES']);
  });

  test('fromSource: only the named executable is refused', async () => {
    apply([rule({ ruleId: 102, fromSource: [{ kind: 'path', path: fs.realpathSync(PYTHON) }] })]);
    const r = py();
    expect(r.out).toEqual(['EPERM']);
    expect(perl().out).toEqual(['ok']);
    expect((await decisionsFor(r.pid)).map((d) => [d.ruleId, d.action, d.ret])).toEqual([[102, Action.Block, -1]]);
  });

  test('Audit: the raw socket is made, and a Passed decision is reported', async () => {
    apply([rule({ ruleId: 103, action: 'Audit' })]);
    const r = py();
    expect(r.out).toEqual(['ok']);
    const ds = await decisionsFor(r.pid);
    expect(ds.map((d) => [d.ruleId, d.action, d.ret, d.resource, d.operation])).toEqual([[103, Action.Audit, 0, 'CAP_NET_RAW', OP_CAPABILITIES]]);
  });

  test('Block wins over Audit, sourced or not', async () => {
    apply([rule({ ruleId: 104, action: 'Audit' }), rule({ ruleId: 105, fromSource: [{ kind: 'path', path: fs.realpathSync(PYTHON) }] })]);
    const r = py();
    expect(r.out).toEqual(['EPERM']);
    expect((await decisionsFor(r.pid)).map((d) => d.ruleId)).toEqual([105]);
    expect(perl().out).toEqual(['ok']); // perl gets the Audit
  });

  test('removing the rules restores the capability', () => {
    apply([rule()]);
    expect(py().out).toEqual(['EPERM']);
    apply([]);
    expect(cap.stats()).toMatchObject({ entries: 0 });
    expect(py().out).toEqual(['ok']);
    expect(perl().out).toEqual(['ok']);
  });

  test('the agent itself is never refused', () => {
    apply([rule({ capability: 'setgid' })]);
    // this process is the agent (agentPid defaults to process.pid): setgroups(2) needs CAP_SETGID
    expect(() => process.setgroups!(process.getgroups!())).not.toThrow();
    expect(py('attempt(lambda: os.setgroups(os.getgroups()))\n').out).toEqual(['ok', 'EPERM']);
  });

  test('a container (workload) is told apart from the host', async () => {
    // a stand-in container: a process in its own mount namespace; nsenter puts python in it
    const holder = spawn('/usr/bin/unshare', ['-m', '--propagation', 'private', 'sleep', '600'], { stdio: 'ignore' });
    children.push(holder);
    const mntOf = (pid: number) => Number(/\[(\d+)\]/.exec(fs.readlinkSync(`/proc/${pid}/ns/mnt`))![1]);
    const mntNs = await waitFor('the stand-in container', () => {
      try {
        const ns = mntOf(holder.pid!);
        return ns !== mntOf(process.pid) ? ns : undefined;
      } catch {
        return undefined;
      }
    });
    const w: WorkloadTarget = { mntNs, pidNs: 0, pid: holder.pid!, containerId: 'c0ffee', containerName: 'stand-in' };
    const inside = () => py('', ['/usr/bin/nsenter', '-t', String(holder.pid), '-m']);
    // a host rule does not reach the container
    apply([rule()], [w]);
    expect(py().out).toEqual(['EPERM']);
    expect(inside().out).toEqual(['ok']);
    // a container rule reaches only the container
    const selector = { matchLabels: {}, matchExpressions: [] };
    apply([rule({ ruleId: 106, scope: { kind: 'containers', selector }, workload: w })], [w]);
    expect(py().out).toEqual(['ok']);
    const r = inside();
    expect(r.out).toEqual(['EPERM']);
    expect((await decisionsFor(r.pid)).map((d) => d.ruleId)).toEqual([106]);
  });

  test('switching between rule sets never leaves a window without rules', async () => {
    apply([rule({ ruleId: 1 })]);
    const loop = spawn(
      PYTHON,
      ['-c', 'import socket,sys\nok=0\nfor i in range(20000):\n    try:\n        socket.socket(socket.AF_INET, socket.SOCK_RAW, 1).close(); ok+=1\n    except PermissionError:\n        pass\nprint(ok)'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(loop);
    let out = '';
    loop.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<void>((resolve) => loop.on('exit', () => resolve()));
    let switches = 0;
    let done = false;
    void exited.then(() => (done = true));
    while (!done) {
      // each set blocks net_raw under another rule id, one with a second capability too
      apply(switches % 2 ? [rule({ ruleId: 1 })] : [rule({ ruleId: 2 }), rule({ ruleId: 3, capability: 'sys_time' })]);
      switches++;
      if (switches % 10 === 0) await sleep(1);
    }
    expect(loop.exitCode).toBe(0);
    expect(switches).toBeGreaterThan(20);
    expect(Number(out.trim())).toBe(0);
  }, 300_000);

  test('bad native input is refused with a message naming the field', () => {
    const native = new addon.LsmCapable!(ring, { agentPid: process.pid });
    try {
      expect(() => native.setRules([{ ruleId: 1, action: 3, cap: 13, workload: 0n, srcDev: 0n, srcIno: 0n }])).toThrow(
        /rules\[0\]\.action must be 1 \(Audit\) or 2 \(Block\)/,
      );
      expect(() => native.setRules([{ ruleId: 1, action: 2, cap: 64, workload: 0n, srcDev: 0n, srcIno: 0n }])).toThrow(/rules\[0\]\.cap must be/);
      expect(() => native.setRules([{ ruleId: 1, action: 2, cap: 13, workload: 0n, srcDev: 5n, srcIno: 0n }])).toThrow(/srcDev must be 0n/);
      expect(() => native.setWorkloads([{ workload: 0n, mntNs: 5, pidNs: 0 }])).toThrow(/workload must be a bigint other than 0n/);
      expect(native.stats()).toEqual({ entries: 0, generation: 0, workloads: 0 });
    } finally {
      native.close();
    }
  });
});
