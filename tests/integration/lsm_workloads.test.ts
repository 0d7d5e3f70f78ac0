// Container policies on the bpf-lsm backend, on a real BPF-LSM kernel: a
// rule resolved to a container (a WorkloadTarget) is enforced for that
// container's processes only, with its paths resolved inside the
// container's root; host rules do not apply inside containers; a process
// that unshared its mount namespace is still its container's (pid
// namespace). The containers are stand-ins: `unshare -m -p -f` + chroot
// into a directory holding busybox (what Docker gives a container, minus
// the image), so the test needs no container runtime.
//
// Only a kernel booted with bpf among its LSMs can run this: run it in the
// qemu guest,
//   tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_workloads.test.ts
// Anywhere else it fails, naming why.
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { Action, EventKind, OperationCode } from '../../agent/src/abi';
import { decodeBatch, DecisionEvent } from '../../agent/src/events';
import { LsmBackend, unloadPinned } from '../../agent/src/lsm_backend';
import { LsmEnforcer } from '../../agent/src/lsm_enforcer';
import type { NativeAddon, NativeEventRing, NativeEventSink } from '../../agent/src/native';
import type { CompiledPolicySet, NetworkRule, PathRule, WorkloadTarget } from '../../agent/src/policy/types';
import { probe } from '../../agent/src/probe';
import { resolveWorkloads, WorkloadContainer } from '../../agent/src/workloads';
import { ADDON, BUSYBOX, busyboxCopy, makeTempDir, run, waitFor } from '../helpers/system';

const PYTHON = '/usr/bin/python3';
const NSENTER = '/usr/bin/nsenter';
const UNSHARE = '/usr/bin/unshare';
const CHROOT = '/usr/sbin/chroot';
const DENIED = /Operation not permitted/;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let nextId = 7001;
function fileRule(target: string, over: Partial<PathRule> = {}): PathRule {
  return { ruleId: nextId++, action: 'Block', operation: 'File', target: { kind: 'path', path: target }, readOnly: false, ownerOnly: false, fromSource: [], ...over };
}
function procRule(target: string, over: Partial<PathRule> = {}): PathRule {
  return fileRule(target, { operation: 'Process', ...over });
}
function netRule(protocol: NetworkRule['protocol'], over: Partial<NetworkRule> = {}): NetworkRule {
  return { ruleId: nextId++, action: 'Block', operation: 'Network', protocol, fromSource: [], ...over };
}

const nsOf = (pid: number, kind: string) => Number(/\d+/.exec(fs.readlinkSync(`/proc/${pid}/ns/${kind}`))![0]);

/** A stand-in container: its own mount and pid namespaces, chrooted into `root`. */
interface StandIn {
  name: string;
  root: string;
  holder: ChildProcess;
  /** host pid of the chrooted process (the container's init) */
  init: number;
  target: WorkloadTarget;
}

describe('bpf-lsm container policies (workloads) on a BPF-LSM kernel', () => {
  let addon: NativeAddon;
  let sink: NativeEventSink;
  let ring: NativeEventRing;
  let enforcer: LsmEnforcer;
  let decisions: DecisionEvent[] = [];
  let work: string;
  let tools: string; // an unblocked busybox on the host
  let tool: string; // the program the rules name: one inode, linked into both roots and the host
  let hostFile: string;
  let a: StandIn;
  let b: StandIn;
  const pinRoot = `/sys/fs/bpf/edgeward-wl-test-${process.pid}`;

  async function startStandIn(name: string): Promise<StandIn> {
    const root = path.join(work, name);
    fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
    fs.copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'));
    fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
    fs.mkdirSync(path.join(root, 'opt'));
    fs.linkSync(tool, path.join(root, 'opt', 'busybox')); // the same inode in every root (named busybox: it picks applets by name)
    fs.writeFileSync(path.join(root, 'secret'), `${name} secret`);
    fs.symlinkSync('/secret', path.join(root, 'lnk')); // absolute: the root's /secret, never the host's
    fs.symlinkSync('/opt/busybox', path.join(root, 'tool-lnk'));
    const holder = spawn(UNSHARE, ['-m', '-p', '-f', CHROOT, root, '/bin/busybox', 'sleep', '600'], { stdio: 'ignore' });
    const init = await waitFor(`the chrooted sleeper of ${name}`, () => {
      try {
        const kids = fs.readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim();
        const pid = kids ? Number(kids.split(' ')[0]) : 0;
        // the forked child exists before it has chrooted: wait for its root to be `root`
        return pid && fs.readlinkSync(`/proc/${pid}/root`) === root ? pid : undefined;
      } catch {
        return undefined;
      }
    });
    const target: WorkloadTarget = { mntNs: nsOf(init, 'mnt'), pidNs: nsOf(init, 'pid'), pid: init, containerId: `id-${name}`, containerName: name };
    return { name, root, holder, init, target };
  }

  /** Runs `args` in the stand-in's mount and pid namespaces; with `chroot`, inside its root. "ok:<stdout>" or stderr. */
  function inside(c: StandIn, args: string[], chroot = true): string {
    const r = run(NSENTER, ['-t', String(c.init), '-m', '-p', ...(chroot ? ['-r'] : []), ...args]);
    return r.status === 0 ? `ok:${r.stdout}` : r.stderr.trim() || `status ${r.status}`;
  }

  function onHost(file: string, args: string[]): string {
    const r = run(file, args);
    if (r.spawnError) return r.spawnError === 'EPERM' ? 'Operation not permitted' : r.spawnError;
    return r.status === 0 ? `ok:${r.stdout}` : r.stderr.trim() || `status ${r.status}`;
  }

  /** A UDP (or TCP) socket made by python run as given: "ok" or the errno name. */
  const SOCKET_PY = `
import errno, socket, sys
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1] == 'udp' else socket.SOCK_STREAM).close()
    print('ok')
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
`;
  const socketOnHost = (proto: string) => run(PYTHON, ['-c', SOCKET_PY, proto]).stdout.trim();
  // python is the host's: the mount namespace is the container's, the root the host's
  const socketInside = (c: StandIn, proto: string) => inside(c, [PYTHON, '-c', SOCKET_PY, proto], false).replace(/^ok:/, '').trim();

  const apply = (pathRules: PathRule[], netRules: NetworkRule[] = [], workloads: WorkloadTarget[] = [a.target, b.target]) => {
    const r = enforcer.apply(pathRules, netRules, undefined, workloads);
    expect(r.errors).toEqual([]);
    expect(r.applied).toBe(true);
  };

  async function decisionsOf(ruleId: number, atLeast: number): Promise<DecisionEvent[]> {
    await waitFor(`${atLeast} decision(s) of rule ${ruleId}`, () => (decisions.filter((d) => d.ruleId === ruleId).length >= atLeast ? true : undefined), 5000);
    await sleep(300); // a duplicate would arrive by now
    return decisions.filter((d) => d.ruleId === ruleId);
  }

  beforeAll(async () => {
    const problems: string[] = [];
    if (process.getuid?.() !== 0) problems.push('must run as root (LSM programs are attached)');
    if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
    for (const f of [PYTHON, BUSYBOX, NSENTER, UNSHARE, CHROOT]) if (!fs.existsSync(f)) problems.push(`${f} missing`);
    if (!fs.existsSync('/sys/fs/bpf')) problems.push('no bpffs at /sys/fs/bpf');
    if (problems.length) throw new Error(`bpf-lsm workload tests cannot run: ${problems.join('; ')}`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    addon = require(ADDON) as NativeAddon;
    const report = probe(addon, 'auto');
    if (report.backend !== 'bpf-lsm') {
      throw new Error(
        `bpf-lsm workload tests need a kernel that runs BPF-LSM programs, and this one does not (${report.kernel}; ` +
          `probe: ${report.reasons.join('; ')}). Run them in the BPF-LSM guest: ` +
          'tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_workloads.test.ts',
      );
    }
    work = makeTempDir('lsm-wl');
    tools = busyboxCopy(work, 'tools');
    tool = busyboxCopy(work, 'tool');
    hostFile = path.join(work, 'host-only');
    fs.writeFileSync(hostFile, 'host');
    fs.writeFileSync(path.join(work, 'host-secret'), 'host secret');
    sink = new addon.EventSink((batch) => {
      for (const e of decodeBatch(batch).events) if (e.kind === EventKind.Decision) decisions.push(e);
    });
    ring = new addon.EventRing(sink, { ringBufferBytes: 1 << 20, pollIntervalMs: 5_000 });
    enforcer = new LsmEnforcer(addon, ring);
    a = await startStandIn('alpha');
    b = await startStandIn('beta');
  });

  afterEach(() => {
    enforcer?.apply([], [], undefined, []);
    decisions = [];
  });

  afterAll(async () => {
    for (const c of [a, b]) {
      if (!c) continue;
      try {
        process.kill(c.init, 'SIGKILL');
      } catch {
        // gone already
      }
      c.holder.kill('SIGKILL');
    }
    enforcer?.close();
    ring?.close();
    await sleep(200);
    sink?.close();
    try {
      unloadPinned(pinRoot);
    } catch {
      // nothing pinned
    }
    fs.rmSync(pinRoot, { recursive: true, force: true });
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('the stand-ins are containers: their own mount and pid namespaces, chrooted', () => {
    for (const c of [a, b]) {
      expect(c.target.mntNs).not.toBe(nsOf(process.pid, 'mnt'));
      expect(c.target.pidNs).not.toBe(nsOf(process.pid, 'pid'));
      expect(inside(c, ['/bin/busybox', 'cat', '/secret'])).toBe(`ok:${c.name} secret`);
    }
    expect(a.target.mntNs).not.toBe(b.target.mntNs);
  });

  test('process rule: the same program (one inode) is blocked in container A, allowed in B and on the host', async () => {
    const rule = procRule('/opt/busybox', { workload: a.target });
    apply([rule]);
    expect(inside(a, ['/opt/busybox', 'true'])).toMatch(DENIED);
    // through an absolute symlink inside A's root, and from A's shell
    expect(inside(a, ['/tool-lnk', 'true'])).toMatch(DENIED);
    expect(inside(a, ['/bin/busybox', 'sh', '-c', '/opt/busybox true'])).toMatch(DENIED);
    expect(inside(b, ['/opt/busybox', 'echo', 'b'])).toBe('ok:b\n');
    expect(onHost(tool, ['echo', 'host'])).toBe('ok:host\n');
    const ds = await decisionsOf(rule.ruleId, 3);
    expect(ds.every((d) => d.action === Action.Block && d.operation === OperationCode.Process && d.ret === -1)).toBe(true);
    expect(ds.map((d) => d.mntNs)).toEqual([a.target.mntNs, a.target.mntNs, a.target.mntNs]);
  });

  test('file rule: a path named through an absolute symlink resolves inside the root; blocked in A only', async () => {
    // "/lnk" -> "/secret": A's /secret (outside the root, "/secret" does not even exist on the host)
    const rule = fileRule('/lnk', { workload: a.target });
    apply([rule]);
    expect(inside(a, ['/bin/busybox', 'cat', '/secret'])).toMatch(DENIED);
    expect(inside(a, ['/bin/busybox', 'cat', '/lnk'])).toMatch(DENIED);
    // B's /secret is another file; A's /secret seen from the host is the host's to read
    expect(inside(b, ['/bin/busybox', 'cat', '/lnk'])).toBe('ok:beta secret');
    expect(onHost(tools, ['cat', path.join(a.root, 'secret')])).toBe('ok:alpha secret');
    // having unshared its mount namespace (and left the chroot's namespace): still A, by its pid namespace
    expect(inside(a, [UNSHARE, '-m', CHROOT, a.root, '/bin/busybox', 'cat', '/secret'], false)).toMatch(DENIED);
    const ds = await decisionsOf(rule.ruleId, 3);
    expect(ds.every((d) => d.resource.endsWith('/secret') && d.action === Action.Block && d.operation === OperationCode.File)).toBe(true);
  });

  test('host rules do not apply inside containers (nor after unshare -m there); container rules not on the host', () => {
    const host = fileRule(hostFile);
    const hostExec = procRule(tool);
    apply([host, hostExec, fileRule('/secret', { workload: b.target })]);
    expect(onHost(tools, ['cat', hostFile])).toMatch(DENIED);
    expect(onHost(tool, ['true'])).toMatch(DENIED);
    // A's processes with the host's root (nsenter without -r): the host's file and program, not blocked there
    expect(inside(a, [tools, 'cat', hostFile], false)).toBe('ok:host');
    expect(inside(a, [tool, 'echo', 'a'], false)).toBe('ok:a\n');
    expect(inside(a, [UNSHARE, '-m', tools, 'cat', hostFile], false)).toBe('ok:host');
    // the host rule on the program's inode does not reach into B either
    expect(inside(b, ['/opt/busybox', 'echo', 'b'])).toBe('ok:b\n');
    // B's own rule: its /secret, not A's, and not on the host
    expect(inside(b, ['/bin/busybox', 'cat', '/secret'])).toMatch(DENIED);
    expect(inside(a, ['/bin/busybox', 'cat', '/secret'])).toBe('ok:alpha secret');
    expect(onHost(tools, ['cat', path.join(b.root, 'secret')])).toBe('ok:beta secret');
  });

  test('network rules per workload: UDP blocked in A only; a host TCP rule not in the containers', () => {
    apply([], [netRule('udp', { workload: a.target }), netRule('tcp')]);
    expect(socketInside(a, 'udp')).toBe('EPERM');
    expect(socketInside(b, 'udp')).toBe('ok');
    expect(socketOnHost('udp')).toBe('ok');
    expect(socketOnHost('tcp')).toBe('EPERM');
    expect(socketInside(a, 'tcp')).toBe('ok');
    expect(socketInside(b, 'tcp')).toBe('ok');
  });

  test('without the workload table the containers\' processes are the host: host rules reach them, container rules do not', () => {
    apply([fileRule('/secret', { workload: a.target }), fileRule(hostFile)]);
    expect(inside(a, ['/bin/busybox', 'cat', '/secret'])).toMatch(DENIED);
    expect(inside(a, [tools, 'cat', hostFile], false)).toBe('ok:host');
    apply([fileRule('/secret', { workload: a.target }), fileRule(hostFile)], [], []);
    expect(inside(a, ['/bin/busybox', 'cat', '/secret'])).toBe('ok:alpha secret');
    expect(inside(a, [tools, 'cat', hostFile], false)).toMatch(DENIED);
  });

  test('a container whose init is gone (or a pid in another namespace) is reported, its rules not guessed onto anything', () => {
    const stale: WorkloadTarget = { ...a.target, pid: process.pid }; // this process is not in A's mount namespace
    const r = enforcer.apply([fileRule('/secret', { workload: stale })], [], undefined, [a.target]);
    expect(r.applied).toBe(true);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/file rule \d+ \(#0, container alpha\): \/secret is not enforced: .*mount namespace/);
    expect(inside(a, ['/bin/busybox', 'cat', '/secret'])).toBe('ok:alpha secret');
    // bad workload tables are refused with the field named; the rules still went in
    const bad = enforcer.apply([], [], undefined, [{ ...a.target, mntNs: 0 }]);
    expect(bad.errors).toEqual([expect.stringMatching(/containers not updated: LsmEnforcer\.setWorkloads: workloads\[0\]\.workload must be a bigint other than 0n/)]);
    const twice = enforcer.apply([], [], undefined, [a.target, { ...b.target, mntNs: a.target.mntNs }]);
    expect(twice.errors).toEqual([expect.stringMatching(/workloads\[1\]\.mntNs must be named once only/)]);
  });

  test('LsmBackend with resolveWorkloads (what the agent wires): a container policy by selector, host policy apart', () => {
    const backend = new LsmBackend(addon, ring, { watchTargets: false });
    try {
      const containers: WorkloadContainer[] = [a, b].map((c) => ({
        id: c.target.containerId,
        name: c.name,
        labels: { app: c.name },
        namespaceName: 'container_namespace',
        pid: c.init,
        mntNs: c.target.mntNs,
        pidNs: c.target.pidNs,
      }));
      const set: CompiledPolicySet = {
        pathRules: [
          procRule('/opt/busybox', { scope: { kind: 'containers', selector: { matchLabels: { app: 'alpha' }, matchExpressions: [] } } }),
          fileRule(hostFile),
        ],
        networkRules: [],
        meta: new Map(),
      };
      const result = backend.apply(resolveWorkloads(set, containers));
      expect(result.errors).toEqual([]);
      expect(inside(a, ['/opt/busybox', 'true'])).toMatch(DENIED);
      expect(inside(b, ['/opt/busybox', 'echo', 'b'])).toBe('ok:b\n');
      expect(onHost(tool, ['echo', 'h'])).toBe('ok:h\n');
      expect(inside(a, [tools, 'cat', hostFile], false)).toBe('ok:host');
      expect(onHost(tools, ['cat', hostFile])).toMatch(DENIED);
    } finally {
      backend.close();
    }
  });

  test('pinned: an adopting enforcer keeps the containers told apart before its first apply', () => {
    const first = new LsmEnforcer(addon, ring, { pin: { root: pinRoot } });
    let second: LsmEnforcer | undefined;
    try {
      const r = first.apply([fileRule('/secret', { workload: a.target }), fileRule(hostFile)], [], undefined, [a.target, b.target]);
      expect(r.errors).toEqual([]);
      first.release(); // the agent exits: pinned rules and containers stay in force
      second = new LsmEnforcer(addon, ring, { pin: { root: pinRoot } });
      expect(second.adopted()).toBe(true);
      expect(inside(a, ['/bin/busybox', 'cat', '/secret'])).toMatch(DENIED);
      expect(inside(a, [tools, 'cat', hostFile], false)).toBe('ok:host');
      expect(onHost(tools, ['cat', hostFile])).toMatch(DENIED);
    } finally {
      second?.close();
      first.close();
    }
    expect(spawnSync(tools, ['cat', hostFile], { encoding: 'utf8' }).stdout).toBe('host');
  });
});
