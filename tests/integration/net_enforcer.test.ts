// The compat network enforcer on the real kernel: cgroup-bpf programs really
// refuse sockets with EPERM and report each decision once through the shared
// event ring.
//
// Other test runs share this machine, and the jest process is in the same
// cgroup as everything else, so no rule here can hit a process the test does
// not own:
// - `rootEnforcer` is attached to the cgroup v2 root (as the agent does) and
//   only ever gets rules whose source is an executable copied into the test's
//   temporary directory;
// - `scopedEnforcer` is attached to a cgroup made for this run and gets the
//   any-source rules; the children under test are moved into that cgroup
//   before they exec (busybox sh writes its pid to cgroup.procs, then execs).
// Rules are cleared after each test and the programs detached in afterAll
// (and by the kernel if this process dies: the links are not pinned).
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';

import { Action, EnforcerCode, EventKind, OperationCode, ProtoClass } from '../../agent/src/abi';
import type {
  NativeAddon,
  NativeEventRing,
  NativeEventSink,
  NativeNetEnforcer,
  NativeNetRule,
} from '../../agent/src/native';
import { decodeBatch, DecisionEvent } from '../../agent/src/events';
import { NetEnforcer, resolveExecutableInode, statDevToKernelDev } from '../../agent/src/net_enforcer';
import { ADDON, BUSYBOX, busyboxCopy, cgroup2Path, makeTempDir, waitFor } from '../helpers/system';

const PYTHON = fs.existsSync('/usr/bin/python3') ? fs.realpathSync('/usr/bin/python3') : '/usr/bin/python3';

/** What the tests check of a decision record (decoded by agent/src/events.ts). */
type Decision = Pick<
  DecisionEvent,
  'pid' | 'comm' | 'ruleId' | 'action' | 'operation' | 'enforcer' | 'ret' | 'flags' | 'resource' | 'exe'
>;

/** Appends the batch's decisions to `out`; returns how many records did not decode. */
function readDecisions(batch: Buffer, out: Decision[]): number {
  const { events, errors } = decodeBatch(batch);
  for (const e of events) {
    if (e.kind !== EventKind.Decision) continue;
    const { pid, comm, ruleId, action, operation, enforcer, ret, flags, resource, exe } = e;
    out.push({ pid, comm, ruleId, action, operation, enforcer, ret, flags, resource, exe });
  }
  return errors;
}

// Child programs -------------------------------------------------------------

/** Prelude of the python children: attempt() prints "<pid> <ok|ERRNO>". */
const PY_PRELUDE = `
import errno, os, socket, sys
def attempt(fn):
    try:
        fn()
        r = "ok"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    print(os.getpid(), r, flush=True)
`;

const SOCKETS = {
  udp: 'socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
  udp6: 'socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)',
  tcp: 'socket.socket(socket.AF_INET, socket.SOCK_STREAM)',
  ping: 'socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)',
  rawIcmp: 'socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)',
  rawIcmp6: 'socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)',
  rawUdp: 'socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)',
} as const;
type SocketKind = keyof typeof SOCKETS;

/** Makes a UDP socket through io_uring (IORING_OP_SOCKET); argv[1] "async" forces an io-wq worker. */
const IO_URING_SOCKET_C = `#define _GNU_SOURCE
/* Makes a socket through io_uring (IORING_OP_SOCKET); argv[1] "async" forces an io-wq worker.
 * Prints "<pid> ok" or "<pid> <errno name>". */
#include <errno.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	int fd = syscall(__NR_io_uring_setup, 4, &p);
	if (fd < 0) { printf("%d setup-%s\\n", getpid(), strerrorname_np(errno)); return 1; }
	size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	size_t ring_len = sq_len > cq_len ? sq_len : cq_len;
	char *ring = mmap(0, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
	struct io_uring_sqe *sqes = mmap(0, p.sq_entries * sizeof(*sqes), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
	if (ring == MAP_FAILED || sqes == MAP_FAILED) { printf("%d mmap-failed\\n", getpid()); return 1; }
	unsigned *tail = (unsigned *)(ring + p.sq_off.tail);
	unsigned *mask = (unsigned *)(ring + p.sq_off.ring_mask);
	unsigned *array = (unsigned *)(ring + p.sq_off.array);
	unsigned idx = *tail & *mask;
	struct io_uring_sqe *sqe = &sqes[idx];
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_SOCKET;
	sqe->fd = AF_INET;
	sqe->off = SOCK_DGRAM;
	sqe->len = 0;
	if (argc > 1 && strcmp(argv[1], "async") == 0) sqe->flags |= IOSQE_ASYNC;
	array[idx] = idx;
	__atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) {
		printf("%d enter-%s\\n", getpid(), strerrorname_np(errno)); return 1;
	}
	unsigned *chead = (unsigned *)(ring + p.cq_off.head);
	unsigned *cmask = (unsigned *)(ring + p.cq_off.ring_mask);
	struct io_uring_cqe *cqes = (struct io_uring_cqe *)(ring + p.cq_off.cqes);
	struct io_uring_cqe *cqe = &cqes[*chead & *cmask];
	if (cqe->res < 0) printf("%d %s\\n", getpid(), strerrorname_np(-cqe->res));
	else printf("%d ok\\n", getpid());
	return 0;
}
`;

interface ChildResult {
  /** pid and result of the last attempt() */
  pid: number;
  result: string;
  /** every attempt()'s result, in order */
  results: string[];
  stdout: string;
  stderr: string;
  status: number | null;
}

interface Running {
  child: ChildProcess;
  /** stdout so far */
  output(): string;
  done: Promise<ChildResult>;
}

/** Starts a program without blocking the event loop (servers in this process keep answering). */
function start(file: string, args: string[], stdin: 'pipe' | 'ignore' = 'ignore'): Running {
  const child = spawn(file, args, { stdio: [stdin, 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<ChildResult>((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      const attempts = stdout
        .split('\n')
        .map((l) => l.trim().split(' '))
        .filter((f) => f.length === 2 && /^\d+$/.test(f[0]));
      const last = attempts[attempts.length - 1] ?? ['0', ''];
      resolve({ pid: Number(last[0]), result: last[1], results: attempts.map((f) => f[1]), stdout, stderr, status });
    });
  });
  return { child, output: () => stdout, done };
}

function thrown(fn: () => unknown): Error | undefined {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Fixture --------------------------------------------------------------------

describe('compat network enforcer (cgroup-bpf) on the real kernel', () => {
  let addon: NativeAddon;
  let sink: NativeEventSink;
  let ring: NativeEventRing;
  let rootEnforcer: NativeNetEnforcer;
  let scopedEnforcer: NativeNetEnforcer;
  let decisions: Decision[] = [];
  let undecodable = 0; // records agent/src/events.ts rejected
  let work: string;
  let rootCgroup: string;
  let testCgroup: string;
  /** a copy of python only this test runs: the source of every rule on the root */
  let ownPython: string;
  let ownPythonKey: { srcDev: bigint; srcIno: bigint };

  const rule = (over: Partial<NativeNetRule>): NativeNetRule => ({
    ruleId: 1,
    action: Action.Block,
    protoClass: ProtoClass.Udp,
    workload: 0n,
    srcDev: 0n,
    srcIno: 0n,
    ...over,
  });

  /** Runs `file args` inside the test cgroup (moved there before it execs). */
  const inTestCgroup = (file: string, args: string[], stdin: 'pipe' | 'ignore' = 'ignore'): Running =>
    start(BUSYBOX, ['sh', '-c', 'echo $$ > "$0" && exec "$@"', path.join(testCgroup, 'cgroup.procs'), file, ...args], stdin);

  const py = (code: string, where: 'scoped' | 'root', exe = PYTHON, stdin: 'pipe' | 'ignore' = 'ignore'): Running =>
    where === 'scoped' ? inTestCgroup(exe, ['-c', PY_PRELUDE + code], stdin) : start(exe, ['-c', PY_PRELUDE + code], stdin);

  const trySocket = (kind: SocketKind, where: 'scoped' | 'root', exe = PYTHON): Promise<ChildResult> =>
    py(`attempt(lambda: ${SOCKETS[kind]})`, where, exe).done;

  /** Decisions about `pid`, after giving late records time to arrive (wake-ups are immediate). */
  async function decisionsFor(pid: number, atLeast = 1): Promise<Decision[]> {
    await waitFor(
      `${atLeast} decision event(s) for pid ${pid}`,
      () => (decisions.filter((d) => d.pid === pid).length >= atLeast ? true : undefined),
      2000,
    );
    await sleep(300);
    return decisions.filter((d) => d.pid === pid);
  }

  async function noDecisionsFor(pid: number): Promise<void> {
    await sleep(400);
    expect(decisions.filter((d) => d.pid === pid)).toEqual([]);
  }

  beforeAll(() => {
    const problems: string[] = [];
    if (process.getuid?.() !== 0) problems.push('must run as root (cgroup-bpf programs are attached)');
    if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
    if (!fs.existsSync(PYTHON)) problems.push(`${PYTHON} missing (python3 is the test's socket client)`);
    if (!fs.existsSync(BUSYBOX)) problems.push(`${BUSYBOX} missing: run scripts/install-deps.sh (busybox-static)`);
    if (problems.length) throw new Error(`net enforcer integration tests cannot run: ${problems.join('; ')}`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    addon = require(ADDON) as NativeAddon;
    if (typeof addon.NetEnforcer !== 'function') throw new Error(`${ADDON} has no NetEnforcer export`);

    work = makeTempDir('net-enforcer');
    ownPython = path.join(work, 'bin', 'python3');
    fs.mkdirSync(path.dirname(ownPython));
    fs.copyFileSync(PYTHON, ownPython);
    fs.chmodSync(ownPython, 0o755);
    const st = fs.statSync(ownPython, { bigint: true });
    ownPythonKey = { srcDev: statDevToKernelDev(st.dev), srcIno: st.ino };

    rootCgroup = cgroup2Path();
    testCgroup = path.join(rootCgroup, `edgeward-net-test-${process.pid}`);
    fs.mkdirSync(testCgroup);

    sink = new addon.EventSink((batch) => {
      undecodable += readDecisions(batch, decisions);
    });
    // A poll interval longer than decisionsFor() waits: decisions must arrive
    // through their urgent wake-up. (close() waits up to one interval.)
    ring = new addon.EventRing(sink, { ringBufferBytes: 1 << 20, pollIntervalMs: 5_000 });
    rootEnforcer = new addon.NetEnforcer(ring, { cgroupPath: rootCgroup });
    scopedEnforcer = new addon.NetEnforcer(ring, { cgroupPath: testCgroup });
  });

  afterEach(() => {
    rootEnforcer?.setRules([]);
    scopedEnforcer?.setRules([]);
    decisions = [];
    const bad = undecodable;
    undecodable = 0;
    expect(bad).toBe(0);
  });

  afterAll(async () => {
    rootEnforcer?.close();
    scopedEnforcer?.close();
    ring?.close();
    // let batches already queued for JS be delivered before the sink goes
    await sleep(200);
    sink?.close();
    if (testCgroup && fs.existsSync(testCgroup)) {
      await waitFor(`${testCgroup} to empty`, () => {
        try {
          fs.rmdirSync(testCgroup);
          return true;
        } catch {
          return undefined;
        }
      });
    }
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  // Tests ----------------------------------------------------------------------

  test('block udp (any source): UDP sockets fail with EPERM, TCP works, one decision is reported', async () => {
    scopedEnforcer.setRules([rule({ ruleId: 11, protoClass: ProtoClass.Udp })]);
    expect(scopedEnforcer.ruleCount()).toBe(1);

    const udp = await trySocket('udp', 'scoped');
    expect(udp.result).toBe('EPERM');
    expect((await trySocket('udp6', 'scoped')).result).toBe('EPERM');
    const tcp = await trySocket('tcp', 'scoped');
    expect(tcp.result).toBe('ok');
    // outside the cgroup the programs of the scoped enforcer do not run
    expect((await trySocket('udp', 'root')).result).toBe('ok');

    expect(await decisionsFor(udp.pid)).toEqual([
      {
        pid: udp.pid,
        comm: path.basename(PYTHON).slice(0, 15),
        ruleId: 11,
        action: Action.Block,
        operation: OperationCode.Network,
        enforcer: EnforcerCode.CgroupBpf,
        ret: -1,
        flags: ProtoClass.Udp,
        resource: 'udp',
        exe: PYTHON,
      },
    ]);
    await noDecisionsFor(tcp.pid);
  });

  test('audit udp: the socket works; one Audit decision (ret 0), not repeated by sendto/bind/connect/send', async () => {
    const server = await listenUdp();
    try {
      scopedEnforcer.setRules([rule({ ruleId: 12, action: Action.Audit })]);
      const child = await py(
        `
def use():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"a", ("127.0.0.1", ${server.port}))
    s.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.connect(("127.0.0.1", ${server.port}))
    s.send(b"b")
attempt(use)`,
        'scoped',
      ).done;
      expect(child.result).toBe('ok');
      const got = await decisionsFor(child.pid, 2);
      expect(got.map((d) => [d.action, d.ret, d.ruleId, d.resource, d.flags, d.exe])).toEqual([
        [Action.Audit, 0, 12, 'udp', ProtoClass.Udp, PYTHON],
        [Action.Audit, 0, 12, 'udp', ProtoClass.Udp, PYTHON],
      ]);
    } finally {
      server.close();
    }
  });

  test('Block wins over Audit: on one key, and between an any-source and a source key', async () => {
    scopedEnforcer.setRules([rule({ ruleId: 21, action: Action.Audit }), rule({ ruleId: 22, action: Action.Block })]);
    expect(scopedEnforcer.ruleCount()).toBe(1); // one key: the Block was kept
    const a = await trySocket('udp', 'scoped');
    expect(a.result).toBe('EPERM');
    expect((await decisionsFor(a.pid)).map((d) => [d.ruleId, d.action])).toEqual([[22, Action.Block]]);

    scopedEnforcer.setRules([
      rule({ ruleId: 23, action: Action.Audit }),
      rule({ ruleId: 24, action: Action.Block, ...ownPythonKey }),
    ]);
    expect(scopedEnforcer.ruleCount()).toBe(2);
    const b = await trySocket('udp', 'scoped', ownPython);
    expect(b.result).toBe('EPERM');
    expect((await decisionsFor(b.pid)).map((d) => [d.ruleId, d.action, d.exe])).toEqual([[24, Action.Block, ownPython]]);
    const c = await trySocket('udp', 'scoped', PYTHON);
    expect(c.result).toBe('ok');
    expect((await decisionsFor(c.pid)).map((d) => [d.ruleId, d.action])).toEqual([[23, Action.Audit]]);
  });

  test('fromSource through the TypeScript NetEnforcer (symlink to the executable, by inode) on the cgroup root', async () => {
    const ts = new NetEnforcer(addon, ring, rootCgroup);
    const link = path.join(work, 'python-link');
    fs.symlinkSync(ownPython, link);
    const anotherCopy = path.join(work, 'python-other');
    fs.copyFileSync(PYTHON, anotherCopy);
    fs.chmodSync(anotherCopy, 0o755);
    try {
      const applied = ts.apply([
        { ruleId: 31, action: 'Block', operation: 'Network', protocol: 'udp', fromSource: [{ kind: 'path', path: link }] },
        {
          ruleId: 32,
          action: 'Block',
          operation: 'Network',
          protocol: 'tcp',
          fromSource: [
            { kind: 'dir', path: `${work}/`, recursive: false },
            { kind: 'path', path: path.join(work, 'missing') },
          ],
        },
      ]);
      expect(applied.errors).toEqual([
        expect.stringMatching(/network rule 32 .*fromSource dir .* cannot be enforced/),
        expect.stringMatching(/network rule 32 .*fromSource .*missing is not enforced: cannot stat .*ENOENT/),
      ]);
      expect(ts.ruleCount()).toBe(1);

      const blocked = await trySocket('udp', 'root', ownPython);
      expect(blocked.result).toBe('EPERM');
      expect((await decisionsFor(blocked.pid)).map((d) => [d.ruleId, d.resource, d.exe])).toEqual([[31, 'udp', ownPython]]);
      expect((await trySocket('tcp', 'root', ownPython)).result).toBe('ok');

      const nodeChild = await start(process.execPath, [
        '-e',
        "const s = require('dgram').createSocket('udp4'); s.bind(0, '127.0.0.1', () => { console.log(process.pid, 'ok'); s.close(); }); s.on('error', (e) => console.log(process.pid, e.code));",
      ]).done;
      expect(nodeChild.result).toBe('ok');
      expect((await trySocket('udp', 'root', PYTHON)).result).toBe('ok');
      // a copy is another inode: not matched (the documented limit of inode matching)
      expect((await trySocket('udp', 'root', anotherCopy)).result).toBe('ok');
      await noDecisionsFor(nodeChild.pid);
    } finally {
      ts.close();
    }
    expect((await trySocket('udp', 'root', ownPython)).result).toBe('ok');
  });

  test('fromSource on a busybox copy: it and a hard link to it cannot connect over TCP; another copy can', async () => {
    const blockedBusybox = busyboxCopy(work, 'tcp-blocked');
    const otherBusybox = busyboxCopy(work, 'tcp-allowed');
    const hardLink = path.join(work, 'tcp-blocked', 'busybox.renamed'); // busybox runs as itself under a busybox* name
    fs.linkSync(blockedBusybox, hardLink);
    const st = fs.statSync(blockedBusybox, { bigint: true });
    const server = net.createServer((s) => s.end('hello\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = String((server.address() as net.AddressInfo).port);
    try {
      rootEnforcer.setRules([rule({ ruleId: 41, protoClass: ProtoClass.Tcp, srcDev: statDevToKernelDev(st.dev), srcIno: st.ino })]);
      const nc = (exe: string) => {
        const r = start(exe, ['nc', '127.0.0.1', port], 'pipe');
        r.child.stdin!.end();
        return r.done;
      };
      const refused = await nc(blockedBusybox);
      expect(refused.stderr).toMatch(/Operation not permitted/);
      expect(refused.status).not.toBe(0);
      const viaLink = await nc(hardLink);
      expect(viaLink.stderr).toMatch(/Operation not permitted/);
      const allowed = await nc(otherBusybox);
      expect(allowed.stdout).toBe('hello\n');
      expect(allowed.status).toBe(0);
      await waitFor('two decisions of rule 41', () => (decisions.filter((d) => d.ruleId === 41).length >= 2 ? true : undefined));
      await sleep(300);
      const exes = decisions.filter((d) => d.ruleId === 41).map((d) => [d.resource, d.exe]);
      expect(exes.sort()).toEqual([['tcp', blockedBusybox], ['tcp', hardLink]].sort());
    } finally {
      server.close();
    }
  });

  test('fromSource on overlayfs (lower layer on another filesystem): matched by the superblock dev, not st_dev', async () => {
    const base = path.join(work, 'ovl');
    const dirs = ['lower', 'upper', 'work', 'merged'].map((d) => path.join(base, d));
    const [lower, upper, ovlWork, merged] = dirs;
    dirs.forEach((d) => fs.mkdirSync(d, { recursive: true }));
    const mounted: string[] = [];
    const ts = new NetEnforcer(addon, ring, rootCgroup);
    try {
      execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', lower]);
      mounted.push(lower);
      fs.copyFileSync(BUSYBOX, path.join(lower, 'busybox'));
      fs.chmodSync(path.join(lower, 'busybox'), 0o755);
      execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${ovlWork}`, merged]);
      mounted.unshift(merged);
      const exe = path.join(merged, 'busybox');
      const st = fs.statSync(exe, { bigint: true });
      const resolved = resolveExecutableInode(exe);
      // the case this test is about: stat() reports another device than the overlay's superblock
      expect(resolved.dev).not.toBe(statDevToKernelDev(st.dev));

      expect(
        ts.apply([{ ruleId: 45, action: 'Block', operation: 'Network', protocol: 'tcp', fromSource: [{ kind: 'path', path: exe }] }]).errors,
      ).toEqual([]);
      const r = start(exe, ['nc', '127.0.0.1', '9'], 'pipe');
      r.child.stdin!.end();
      const refused = await r.done;
      expect(refused.stderr).toMatch(/Operation not permitted/);
      await waitFor('the decision of rule 45', () => (decisions.some((d) => d.ruleId === 45) ? true : undefined), 2000);
      expect(decisions.filter((d) => d.ruleId === 45).map((d) => [d.resource, d.exe])).toEqual([['tcp', exe]]);
    } finally {
      ts.close();
      for (const m of mounted) execFileSync('umount', [m]);
    }
  });

  test('io_uring: a socket made by IORING_OP_SOCKET, inline or in an io-wq worker, is refused', async () => {
    const src = path.join(work, 'iou.c');
    const exe = path.join(work, 'iou');
    fs.writeFileSync(src, IO_URING_SOCKET_C);
    try {
      execFileSync('gcc', ['-O1', '-Wall', '-Werror', '-o', exe, src], { stdio: 'pipe' });
    } catch (err) {
      throw new Error(`cannot compile the io_uring client (gcc is needed, as for the native addon): ${(err as Error).message}`);
    }
    expect((await start(exe, []).done).result).toBe('ok');
    const ts = new NetEnforcer(addon, ring, rootCgroup);
    try {
      ts.apply([{ ruleId: 46, action: 'Block', operation: 'Network', protocol: 'udp', fromSource: [{ kind: 'path', path: exe }] }]);
      const inline = await start(exe, []).done;
      expect(inline.result).toBe('EPERM');
      const worker = await start(exe, ['async']).done;
      expect(worker.result).toBe('EPERM');
      expect((await decisionsFor(inline.pid)).map((d) => [d.ruleId, d.exe])).toEqual([[46, exe]]);
      // the io-wq worker is a thread of the submitting process: same tgid and executable
      expect((await decisionsFor(worker.pid)).map((d) => [d.ruleId, d.exe])).toEqual([[46, exe]]);
    } finally {
      ts.close();
    }
  });

  test('icmp: ping sockets and raw ICMP sockets are refused; raw rules catch raw ICMP and raw UDP, not ping sockets', async () => {
    const pingRange = '/proc/sys/net/ipv4/ping_group_range';
    const saved = fs.readFileSync(pingRange, 'utf8').trim().split(/\s+/).join(' ');
    fs.writeFileSync(pingRange, '0 0'); // let gid 0 make ping sockets
    try {
      expect((await trySocket('ping', 'scoped')).result).toBe('ok');
      scopedEnforcer.setRules([rule({ ruleId: 51, protoClass: ProtoClass.Icmp })]);
      const ping = await trySocket('ping', 'scoped');
      expect(ping.result).toBe('EPERM');
      expect((await decisionsFor(ping.pid)).map((d) => [d.ruleId, d.resource, d.flags])).toEqual([[51, 'icmp', ProtoClass.Icmp]]);
      expect((await trySocket('rawIcmp', 'scoped')).result).toBe('EPERM');
      expect((await trySocket('udp', 'scoped')).result).toBe('ok');

      scopedEnforcer.setRules([rule({ ruleId: 52, protoClass: ProtoClass.Raw })]);
      const raw = await trySocket('rawIcmp', 'scoped');
      expect(raw.result).toBe('EPERM');
      expect((await decisionsFor(raw.pid)).map((d) => [d.ruleId, d.resource, d.flags])).toEqual([[52, 'raw', ProtoClass.Raw]]);
      expect((await trySocket('rawUdp', 'scoped')).result).toBe('EPERM');
      expect((await trySocket('ping', 'scoped')).result).toBe('ok');
    } finally {
      fs.writeFileSync(pingRange, saved);
    }
  });

  test('icmpv6: raw ICMPv6 sockets are refused, IPv4 ICMP ones are not', async () => {
    scopedEnforcer.setRules([rule({ ruleId: 61, protoClass: ProtoClass.Icmpv6 })]);
    const raw6 = await trySocket('rawIcmp6', 'scoped');
    expect(raw6.result).toBe('EPERM');
    expect((await decisionsFor(raw6.pid)).map((d) => [d.ruleId, d.resource, d.flags])).toEqual([[61, 'icmpv6', ProtoClass.Icmpv6]]);
    expect((await trySocket('rawIcmp', 'scoped')).result).toBe('ok');
  });

  test('sockets made before the rule are refused at connect, sendto, bind and Fast Open sendto, one decision each', async () => {
    const server = await listenUdp();
    try {
      const running = py(
        `
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
print("ready", flush=True)
sys.stdin.readline()
attempt(lambda: s.connect(("127.0.0.1", ${server.port})))
attempt(lambda: s.sendto(b"x", ("127.0.0.1", ${server.port})))
attempt(lambda: t.connect(("127.0.0.1", ${server.port})))
attempt(lambda: b.bind(("::1", 0)))
attempt(lambda: f.sendto(b"x", socket.MSG_FASTOPEN, ("127.0.0.1", ${server.port})))`,
        'scoped',
        PYTHON,
        'pipe',
      );
      await waitFor('the child to make its sockets', () => (running.output().includes('ready') ? true : undefined));
      scopedEnforcer.setRules([rule({ ruleId: 71, protoClass: ProtoClass.Udp }), rule({ ruleId: 72, protoClass: ProtoClass.Tcp })]);
      running.child.stdin!.end('go\n');
      const r = await running.done;
      // connect, sendto (unconnected UDP), connect, bind, TCP Fast Open sendto (a connect in disguise)
      expect(r.results).toEqual(['EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM']);
      expect((await decisionsFor(r.pid, 5)).map((d) => [d.ruleId, d.resource, d.ret])).toEqual([
        [71, 'udp', -1],
        [71, 'udp', -1],
        [72, 'tcp', -1],
        [71, 'udp', -1],
        [72, 'tcp', -1],
      ]);
    } finally {
      server.close();
    }
  });

  test('a UDP socket handed over with SCM_RIGHTS by an allowed program cannot be used by the blocked one', async () => {
    const server = await listenUdp();
    const unixPath = path.join(work, 'fd.sock');
    try {
      rootEnforcer.setRules([rule({ ruleId: 81, ...ownPythonKey })]);
      const receiver = py(
        `
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
l.bind(${JSON.stringify(unixPath)}); l.listen(1)
print("ready", flush=True)
c, _ = l.accept()
msg, fds, flags, addr = socket.recv_fds(c, 16, 1)
s = socket.socket(fileno=fds[0])
attempt(lambda: s.sendto(b"x", ("127.0.0.1", ${server.port})))
attempt(lambda: s.connect(("127.0.0.1", ${server.port})))`,
        'root',
        ownPython,
      );
      await waitFor('the receiver to listen', () => (receiver.output().includes('ready') ? true : undefined));
      const sent = await py(
        `
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(${JSON.stringify(unixPath)})
attempt(lambda: socket.send_fds(c, [b"fd"], [u.fileno()]))`,
        'root',
        PYTHON,
      ).done;
      expect(sent.result).toBe('ok');
      const r = await receiver.done;
      expect(r.results).toEqual(['EPERM', 'EPERM']);
      expect((await decisionsFor(r.pid, 2)).map((d) => [d.ruleId, d.exe])).toEqual([
        [81, ownPython],
        [81, ownPython],
      ]);
      await noDecisionsFor(sent.pid);
    } finally {
      server.close();
    }
  });

  test('after close() every socket is allowed again', async () => {
    const second = new addon.NetEnforcer(ring, { cgroupPath: rootCgroup });
    try {
      second.setRules([
        rule({ ruleId: 91, protoClass: ProtoClass.Udp, ...ownPythonKey }),
        rule({ ruleId: 92, protoClass: ProtoClass.Tcp, ...ownPythonKey }),
      ]);
      expect((await trySocket('udp', 'root', ownPython)).result).toBe('EPERM');
      expect((await trySocket('tcp', 'root', ownPython)).result).toBe('EPERM');
    } finally {
      second.close();
    }
    expect((await trySocket('udp', 'root', ownPython)).result).toBe('ok');
    expect((await trySocket('tcp', 'root', ownPython)).result).toBe('ok');
    expect(() => second.setRules([])).toThrow('NetEnforcer is closed');
    expect(() => second.ruleCount()).toThrow('NetEnforcer is closed');
    second.close(); // idempotent
  });

  test('setRules replaces the set (new keys in, stale keys out); capacity is checked before the map is touched', async () => {
    scopedEnforcer.setRules([rule({ ruleId: 1, protoClass: ProtoClass.Udp }), rule({ ruleId: 2, protoClass: ProtoClass.Tcp })]);
    expect(scopedEnforcer.ruleCount()).toBe(2);
    scopedEnforcer.setRules([rule({ ruleId: 2, protoClass: ProtoClass.Tcp }), rule({ ruleId: 3, protoClass: ProtoClass.Raw, srcDev: 5n, srcIno: 7n })]);
    expect(scopedEnforcer.ruleCount()).toBe(2);
    expect((await trySocket('udp', 'scoped')).result).toBe('ok'); // the stale udp rule is gone
    expect((await trySocket('tcp', 'scoped')).result).toBe('EPERM');

    const tooMany = Array.from({ length: 16385 }, (_, i) => rule({ ruleId: i, srcDev: 1n, srcIno: BigInt(i + 1) }));
    expect(() => scopedEnforcer.setRules(tooMany)).toThrow(/16385 rules, at most 16384 are supported; the rule set was not changed/);
    expect(scopedEnforcer.ruleCount()).toBe(2);
    // a full set replacing another full set fits: both coexist during the swap
    const full = (base: number) => Array.from({ length: 16384 }, (_, i) => rule({ ruleId: i, srcDev: 1n, srcIno: BigInt(base + i) }));
    scopedEnforcer.setRules(full(1));
    scopedEnforcer.setRules(full(100_000));
    expect(scopedEnforcer.ruleCount()).toBe(16384);
  });

  test('setRules refuses a bad rule with a TypeError naming its index and field, and leaves the map alone', () => {
    scopedEnforcer.setRules([rule({ ruleId: 1 })]);
    const bad: Array<[unknown, RegExp]> = [
      [{ ...rule({}), action: 4 }, /rules\[1\]\.action must be 1 \(Audit\), 2 \(Block\) or 3 \(Allow\), got 4/],
      [{ ...rule({}), action: 0 }, /rules\[1\]\.action must be 1 \(Audit\), 2 \(Block\) or 3 \(Allow\), got 0/],
      [{ ...rule({}), protoClass: 6 }, /rules\[1\]\.protoClass must be an integer in 0\.\.5/],
      // a posture entry (protoClass 0) is per workload, any source, Block or Audit
      [{ ...rule({}), protoClass: 0, srcDev: 1n, srcIno: 2n }, /rules\[1\]\.srcDev must be 0n for a posture entry/],
      [{ ...rule({}), protoClass: 0, action: 3 }, /rules\[1\]\.action must be 1 \(Audit\) or 2 \(Block\) for a posture entry/],
      [{ ...rule({}), ruleId: 1.5 }, /rules\[1\]\.ruleId must be an integer/],
      [{ ...rule({}), ruleId: -1 }, /rules\[1\]\.ruleId must be an integer/],
      [{ ...rule({}), srcDev: 5 }, /rules\[1\]\.srcDev must be a bigint/],
      [{ ...rule({}), srcDev: -1n }, /rules\[1\]\.srcDev must be a bigint/],
      [{ ...rule({}), srcDev: 1n << 32n, srcIno: 1n }, /rules\[1\]\.srcDev must be a kernel dev_t/],
      [{ ...rule({}), srcDev: 0n, srcIno: 9n }, /rules\[1\]\.srcDev must be non-zero/],
      [{ ...rule({}), srcDev: 9n, srcIno: 0n }, /rules\[1\]\.srcIno must be non-zero/],
      [{ ...rule({}), workload: -3n }, /rules\[1\]\.workload must be a bigint in 0n\.\.2n\*\*64n-1n/],
      [{ ...rule({}), workload: undefined }, /rules\[1\]\.workload must be a bigint.*got undefined/],
      ['udp', /rules\[1\] must be an object/],
    ];
    for (const [item, message] of bad) {
      const call = () => scopedEnforcer.setRules([rule({ ruleId: 2, protoClass: ProtoClass.Tcp }), item as NativeNetRule]);
      expect(call).toThrow(message);
      // the addon's TypeError comes from node's realm, not jest's sandbox: compare names
      expect(thrown(call)?.name).toBe('TypeError');
    }
    expect(thrown(() => scopedEnforcer.setRules('x' as never))?.name).toBe('TypeError');
    expect(scopedEnforcer.ruleCount()).toBe(1);
  });

  test('workloads: a rule for a workload applies in its mount namespace and, after unsharing it, under its pid namespace; host rules do not', async () => {
    // A stand-in container: a process in new mount and pid namespaces.
    const holder = start('/usr/bin/unshare', ['-m', '-p', '-f', BUSYBOX, 'sleep', '60']);
    let inner = 0;
    try {
      inner = await waitFor('the namespaced sleeper', () => {
        const kids = fs.readFileSync(`/proc/${holder.child.pid}/task/${holder.child.pid}/children`, 'utf8').trim();
        return kids ? Number(kids.split(' ')[0]) : undefined;
      });
      const ns = (pid: number, kind: string) => Number(/\d+/.exec(fs.readlinkSync(`/proc/${pid}/ns/${kind}`))![0]);
      const mnt = ns(inner, 'mnt');
      const pidNs = ns(inner, 'pid');
      expect(mnt).not.toBe(ns(process.pid, 'mnt'));
      scopedEnforcer.setWorkloads([{ workload: BigInt(mnt), mntNs: mnt, pidNs }]);
      scopedEnforcer.setRules([
        rule({ ruleId: 71, protoClass: ProtoClass.Udp, workload: BigInt(mnt) }), // the "container" only
        rule({ ruleId: 72, protoClass: ProtoClass.Tcp, workload: 0n }), // the host only
      ]);
      const attempt = async (prefix: string[], kind: SocketKind) =>
        (await inTestCgroup(prefix[0], [...prefix.slice(1), PYTHON, '-c', `${PY_PRELUDE}attempt(lambda: ${SOCKETS[kind]})`]).done).result;
      const enter = ['/usr/bin/nsenter', '-t', String(inner), '-m', '-p'];
      // in the workload's mount namespace: its rule, not the host's
      expect(await attempt(enter, 'udp')).toBe('EPERM');
      expect(await attempt(enter, 'tcp')).toBe('ok');
      // unshared mount namespace (unknown): found by its pid namespace
      expect(await attempt([...enter, '/usr/bin/unshare', '-m'], 'udp')).toBe('EPERM');
      expect(await attempt([...enter, '/usr/bin/unshare', '-m'], 'tcp')).toBe('ok');
      // and in a pid namespace nested below it
      expect(await attempt([...enter, '/usr/bin/unshare', '-m', '-p', '-f'], 'udp')).toBe('EPERM');
      // the host, also after unsharing a mount namespace: host rules only
      expect(await attempt(['/usr/bin/env'], 'udp')).toBe('ok');
      expect(await attempt(['/usr/bin/env'], 'tcp')).toBe('EPERM');
      expect(await attempt(['/usr/bin/unshare', '-m'], 'tcp')).toBe('EPERM');
      expect(await attempt(['/usr/bin/unshare', '-m'], 'udp')).toBe('ok');
      // the workload gone from the map: its processes are the host again
      scopedEnforcer.setWorkloads([]);
      expect(await attempt(enter, 'udp')).toBe('ok');
      expect(await attempt(enter, 'tcp')).toBe('EPERM');
    } finally {
      // the sleeper is pid 1 of its namespace and holds the output pipe: end it first
      if (inner) process.kill(inner, 'SIGKILL');
      holder.child.kill('SIGKILL');
      await holder.done;
      scopedEnforcer.setWorkloads([]);
    }
  });

  test('setWorkloads refuses bad entries with a TypeError naming index and field, and changes nothing then', async () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ workload: 0n, mntNs: 5, pidNs: 6 }, /workloads\[1\]\.workload must be a bigint other than 0n/],
      [{ workload: 5, mntNs: 5, pidNs: 6 }, /workloads\[1\]\.workload must be a bigint/],
      [{ workload: 5n, mntNs: 0, pidNs: 6 }, /workloads\[1\]\.mntNs must be a mount namespace inode/],
      [{ workload: 5n, mntNs: 2 ** 32, pidNs: 6 }, /workloads\[1\]\.mntNs must be a mount namespace inode/],
      [{ workload: 5n, mntNs: 5, pidNs: -1 }, /workloads\[1\]\.pidNs must be a pid namespace inode/],
      [{ workload: 9n, mntNs: 1, pidNs: 0 }, /workloads\[1\]\.mntNs must be named once only/],
      ['x', /workloads\[1\] must be an object/],
    ];
    for (const [item, message] of bad) {
      const call = () => scopedEnforcer.setWorkloads([{ workload: 1n, mntNs: 1, pidNs: 0 }, item as never]);
      expect(call).toThrow(message);
      expect(thrown(call)?.name).toBe('TypeError');
    }
    expect(() => scopedEnforcer.setWorkloads(Array.from({ length: 4097 }, (_, i) => ({ workload: 1n, mntNs: i + 1, pidNs: 0 })))).toThrow(
      /4097 workloads, at most 4096/,
    );
    // nothing was added: a rule for workload 1 matches no process here
    scopedEnforcer.setRules([rule({ ruleId: 81, protoClass: ProtoClass.Udp, workload: 1n })]);
    expect((await trySocket('udp', 'scoped')).result).toBe('ok');
  });

  test('the constructor refuses a directory that is not a cgroup v2 one, a missing one, and a non-ring', () => {
    expect(() => new addon.NetEnforcer(ring, { cgroupPath: work })).toThrow(`${work} is not a cgroup v2 directory`);
    expect(() => new addon.NetEnforcer(ring, { cgroupPath: path.join(work, 'missing') })).toThrow(
      /cannot open the cgroup directory .*ENOENT/,
    );
    expect(() => new addon.NetEnforcer({} as NativeEventRing, { cgroupPath: rootCgroup })).toThrow(/expected an EventRing/);
  });
});

/** A UDP server in this process (outside the test cgroup and not an executable any rule names). */
async function listenUdp(): Promise<{ port: number; close(): void }> {
  const dgram = await import('dgram');
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return { port: s.address().port, close: () => s.close() };
}
