// bpf-lsm capability rules on a real BPF-LSM kernel (bpf/lsm_capable.bpf.c):
// a Block rule on net_raw makes socket(AF_INET, SOCK_RAW) fail with EPERM
// for root, fromSource narrows it to one executable, Audit lets it through
// with a "Passed" decision, other capabilities and the agent itself are not
// affected, containers (workloads) are told apart from the host, rule sets
// are switched without a window, and removing the rules restores everything.
// Allow-list mode: an Allow rule and a default posture (Block refuses what no
// Allow rule names, Audit reports it; the agent is never refused; Block wins
// over Allow; Allow over the posture; the posture over Audit rules).
// Pinned (a temporary root on bpffs): the rules outlive the LsmCapable that
// set them, a new one adopts them, close() removes them, an interrupted
// pinning is replaced.
//
// Only a kernel booted with bpf among its LSMs can run this: run it in the
// qemu guest,
//   tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_capable.test.ts
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';

import { Action, EnforcerCode, EventKind } from '../../agent/src/abi';
import { decodeBatch } from '../../agent/src/events';
import { capablePinDir, LsmCapable, unloadPinnedCapable } from '../../agent/src/lsm_capable';
import type { NativeAddon, NativeEventRing, NativeEventSink } from '../../agent/src/native';
import type { WorkloadPosture } from '../../agent/src/policy/posture';
import type { CapabilityRule, PostureAction, WorkloadTarget } from '../../agent/src/policy/types';
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

  function apply(rules: CapabilityRule[], workloads: WorkloadTarget[] = [], modes: WorkloadPosture[] = []): void {
    const r = cap.apply(rules, workloads, modes);
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

  /** A stand-in container: a process in its own mount namespace; inside() runs python there (nsenter). */
  async function standIn(): Promise<{ w: WorkloadTarget; inside: (extra?: string) => { pid: number; out: string[] } }> {
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
    return { w, inside: (extra = '') => py(extra, ['/usr/bin/nsenter', '-t', String(holder.pid), '-m']) };
  }

  const posture = (action: PostureAction, ruleId: number, w?: WorkloadTarget): WorkloadPosture => ({
    ...(w ? { workload: w } : {}),
    postures: { capabilities: { ruleId, category: 'capabilities', action, scopeKind: w ? 'containers' : 'host' } },
  });
  const selector = { matchLabels: {}, matchExpressions: [] };

  test('allow-list, Block posture (a container): what no Allow rule names is refused under the posture; the host is untouched', async () => {
    const { w, inside } = await standIn();
    const allowBind = rule({ ruleId: 201, action: 'Allow', capability: 'net_bind_service', scope: { kind: 'containers', selector }, workload: w });
    apply([allowBind], [w], [posture('Block', 900, w)]);
    expect(cap.stats()).toMatchObject({ entries: 1, postures: 1 });
    const r = inside(PY_BIND_LOW);
    expect(r.out).toEqual(['EPERM', 'ok']); // net_raw: the posture; net_bind_service: allowed, not reported
    const ds = await decisionsFor(r.pid);
    expect(ds.map((d) => [d.ruleId, d.action, d.ret, d.resource])).toEqual([[900, Action.Block, -1, 'CAP_NET_RAW']]);
    expect(py(PY_BIND_LOW).out).toEqual(['ok', 'ok']); // the host is not in allow-list mode
    // Allow with fromSource: only that executable is allowed
    apply([{ ...allowBind, capability: 'net_raw', fromSource: [{ kind: 'path', path: fs.realpathSync(PERL) }] }], [w], [posture('Block', 900, w)]);
    expect(inside().out).toEqual(['EPERM']);
  });

  test('allow-list order: Block wins over Allow; Allow over the posture; the posture over an Audit rule', async () => {
    const { w, inside } = await standIn();
    const scoped = (over: Partial<CapabilityRule>) => rule({ scope: { kind: 'containers', selector }, workload: w, ...over });
    // Allow and Block on net_raw: Block
    apply([scoped({ ruleId: 210, action: 'Allow' }), scoped({ ruleId: 211, action: 'Block' })], [w], [posture('Audit', 901, w)]);
    let r = inside();
    expect(r.out).toEqual(['EPERM']);
    expect((await decisionsFor(r.pid)).map((d) => [d.ruleId, d.action])).toEqual([[211, Action.Block]]);
    decisions = [];
    // an Audit rule on a capability no Allow rule names: the posture decides (Audit: let through, reported under the posture)
    apply([scoped({ ruleId: 212, action: 'Allow', capability: 'net_bind_service' }), scoped({ ruleId: 213, action: 'Audit' })], [w], [posture('Audit', 901, w)]);
    r = inside();
    expect(r.out).toEqual(['ok']);
    expect((await decisionsFor(r.pid)).map((d) => [d.ruleId, d.action, d.ret, d.resource])).toEqual([[901, Action.Audit, 0, 'CAP_NET_RAW']]);
    decisions = [];
    // Allow and Audit on net_raw: allowed, and the Audit rule reports it
    apply([scoped({ ruleId: 214, action: 'Allow' }), scoped({ ruleId: 215, action: 'Audit' })], [w], [posture('Block', 900, w)]);
    r = inside();
    expect(r.out).toEqual(['ok']);
    expect((await decisionsFor(r.pid)).map((d) => [d.ruleId, d.action])).toEqual([[215, Action.Audit]]);
  });

  test('allow-list on the host, Block posture: other host processes are refused, the agent never', async () => {
    try {
      apply([rule({ ruleId: 220, action: 'Allow', capability: 'net_bind_service' })], [], [posture('Block', 902)]);
      const r = py(PY_BIND_LOW);
      // this process is the agent: not refused (setgroups needs CAP_SETGID, which no rule allows)
      expect(() => process.setgroups!(process.getgroups!())).not.toThrow();
      expect(r.out).toEqual(['EPERM', 'ok']);
      expect((await decisionsFor(r.pid)).map((d) => [d.ruleId, d.action, d.resource])).toEqual([[902, Action.Block, 'CAP_NET_RAW']]);
    } finally {
      cap.apply([], []); // at once: every host process is refused its capabilities meanwhile
    }
  });

  test('allow-list on the host, Audit posture: everything is let through, what no Allow rule names is reported', async () => {
    apply([rule({ ruleId: 221, action: 'Allow', capability: 'net_bind_service', fromSource: [{ kind: 'path', path: fs.realpathSync(PYTHON) }] })], [], [posture('Audit', 903)]);
    const r = py(PY_BIND_LOW);
    expect(r.out).toEqual(['ok', 'ok']);
    expect((await decisionsFor(r.pid)).map((d) => [d.ruleId, d.action, d.ret, d.resource])).toEqual([[903, Action.Audit, 0, 'CAP_NET_RAW']]);
    expect(decisions.filter((d) => d.pid === process.pid)).toEqual([]); // the agent is not reported either
    expect(decisions.filter((d) => d.pid === 1 && d.ruleId === 903)).toEqual([]); // nor is init given the posture
  });

  test('a container (workload) is told apart from the host', async () => {
    const { w, inside } = await standIn();
    // a host rule does not reach the container
    apply([rule()], [w]);
    expect(py().out).toEqual(['EPERM']);
    expect(inside().out).toEqual(['ok']);
    // a container rule reaches only the container
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
      expect(() => native.setRules([{ ruleId: 1, action: 4, cap: 13, workload: 0n, srcDev: 0n, srcIno: 0n }])).toThrow(
        /rules\[0\]\.action must be 1 \(Audit\), 2 \(Block\) or 3 \(Allow\), got 4/,
      );
      expect(() => native.setRules([], [{ workload: 0n, ruleId: 9, action: 3 }])).toThrow(/postures\[0\]\.action must be 1 \(Audit\) or 2 \(Block\), got 3/);
      expect(() => native.setRules([], [{ workload: 0n, ruleId: 9, action: 2 }, { workload: 0n, ruleId: 10, action: 1 }])).toThrow(
        /postures\[1\]\.workload must be named by one posture only, got 0n/,
      );
      expect(() => native.setRules([{ ruleId: 1, action: 2, cap: 64, workload: 0n, srcDev: 0n, srcIno: 0n }])).toThrow(/rules\[0\]\.cap must be/);
      expect(() => native.setRules([{ ruleId: 1, action: 2, cap: 13, workload: 0n, srcDev: 5n, srcIno: 0n }])).toThrow(/srcDev must be 0n/);
      expect(() => native.setWorkloads([{ workload: 0n, mntNs: 5, pidNs: 0 }])).toThrow(/workload must be a bigint other than 0n/);
      expect(native.stats()).toEqual({ entries: 0, postures: 0, generation: 0, workloads: 0 });
      expect(() => new addon.LsmCapable!(ring, { agentPid: process.pid, pinDir: 'relative' })).toThrow(/pinDir must be an absolute path on bpffs, got relative/);
    } finally {
      native.close();
    }
  });

  describe('pinned', () => {
    let root: string;
    const pinned = () => new LsmCapable(addon, ring, { pin: { root } });
    const dir = () => capablePinDir(addon.capableLimits!.layoutVersion, root);

    beforeAll(() => {
      root = `/sys/fs/bpf/ew-cap-test-${process.pid}`;
      if (!fs.existsSync('/sys/fs/bpf')) throw new Error('bpffs is not mounted at /sys/fs/bpf');
    });
    afterAll(() => {
      unloadPinnedCapable(root);
      fs.rmSync(root, { recursive: true, force: true });
    });

    test('the rules outlive the LsmCapable that set them; a new one adopts them; close() removes them', async () => {
      const first = pinned();
      expect(first.adopted()).toBe(false);
      expect(first.apply([rule({ ruleId: 301 })]).errors).toEqual([]);
      expect(fs.readdirSync(dir()).sort()).toEqual(['active', 'config', 'gen_info', 'link_capable', 'rules', 'workloads']);
      first.release();
      // no process holds the program now: the pins keep it enforcing (decisions go to a ring nobody reads)
      expect(py().out).toEqual(['EPERM']);
      const second = pinned();
      try {
        expect(second.adopted()).toBe(true);
        expect(second.replaced()).toBe('');
        expect(second.stats()).toMatchObject({ entries: 1, postures: 0 });
        expect(second.attached()).toEqual(['capable']);
        const r = py();
        expect(r.out).toEqual(['EPERM']);
        // decisions come through the new ring: the adopted rule's id
        expect((await decisionsFor(r.pid)).map((d) => d.ruleId)).toEqual([301]);
        // the adopted set is replaced as usual (the old entries go)
        expect(second.apply([rule({ ruleId: 302, capability: 'net_bind_service' })]).errors).toEqual([]);
        expect(py(PY_BIND_LOW).out).toEqual(['ok', 'EACCES']);
      } finally {
        second.close();
      }
      expect(fs.existsSync(dir())).toBe(false);
      expect(py(PY_BIND_LOW).out).toEqual(['ok', 'ok']);
    });

    test('an interrupted pinning is replaced, and pinned state of another layout goes at the first apply', () => {
      const first = pinned();
      first.apply([rule({ ruleId: 303 })]);
      first.release();
      fs.unlinkSync(`${dir()}/config`); // as if the process died while pinning
      const other = `${root}/cap-v999`; // another build's layout
      fs.mkdirSync(other);
      const second = pinned();
      try {
        expect(second.adopted()).toBe(false);
        expect(second.replaced()).toMatch(/interrupted pinning .* \(no config\)/);
        expect(py().out).toEqual(['ok']); // the old link was swapped out for this one, whose set is empty
        expect(second.apply([rule({ ruleId: 304 })]).errors).toEqual([]);
        expect(py().out).toEqual(['EPERM']);
        expect(fs.existsSync(other)).toBe(false);
      } finally {
        second.close();
      }
      expect(py().out).toEqual(['ok']);
    });

    test('unloadPinnedCapable removes what a released LsmCapable left', () => {
      const first = pinned();
      first.apply([rule({ ruleId: 305 })]);
      first.release();
      expect(py().out).toEqual(['EPERM']);
      expect(unloadPinnedCapable(root)).toEqual([dir()]);
      expect(py().out).toEqual(['ok']);
      expect(unloadPinnedCapable(root)).toEqual([]);
    });
  });
});
