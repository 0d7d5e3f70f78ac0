// The kernel event monitor on the real kernel: bpf/monitor.bpf.c through the
// native EventRing/Monitor and agent/src/monitor.ts EventPipeline. Needs root.
import { ChildProcess, spawn } from 'child_process';
import * as dgram from 'dgram';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { EventKind, EW_STR_AS_GIVEN, EW_STR_TRUNCATED, NetOp } from '../../agent/src/abi';
import type { EwEvent, ExecEvent, ExitEvent, FileOpenEvent, ForkEvent, NetEvent } from '../../agent/src/events';
import { EventPipeline, PipelineOptions } from '../../agent/src/monitor';
import { loadNative } from '../../agent/src/native';

const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_CREAT = 0o100;
const ENOENT = 2;
const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const EINPROGRESS = 115;

function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('tests/integration/monitor.test.ts must run as root: it loads and attaches kernel programs');
  }
}

/** A pipeline that keeps every event it is given. */
class Collector {
  readonly events: EwEvent[] = [];
  calls = 0;
  readonly pipeline: EventPipeline;

  constructor(options: Partial<PipelineOptions>) {
    this.pipeline = new EventPipeline(
      loadNative(),
      { ringBufferBytes: 4 << 20, pollIntervalMs: 20, process: true, file: true, network: true, ...options },
      (events) => {
        this.calls++;
        for (const e of events) this.events.push(e);
      },
    );
  }

  find<T extends EwEvent>(pred: (e: EwEvent) => boolean): T | undefined {
    return this.events.find(pred) as T | undefined;
  }

  async waitFor<T extends EwEvent>(what: string, pred: (e: EwEvent) => boolean, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.find<T>(pred);
      if (found) return found;
      if (Date.now() > deadline) {
        throw new Error(`no event for ${what} within ${timeoutMs} ms (${this.events.length} events seen)`);
      }
      await sleep(20);
    }
  }

  close(): void {
    this.pipeline.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Finished {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
}

/** Spawns and waits for the exit, keeping the event loop free for batches. */
function runChild(file: string, args: string[], opts: { cwd?: string } = {}): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ pid: child.pid ?? -1, code, signal, stdout }));
  });
}

function nodeScript(script: string, cwd?: string): Promise<Finished> {
  return runChild(process.execPath, ['-e', script], { cwd });
}

function waitExit(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.on('exit', () => resolve());
  });
}

function nsInode(pid: number, ns: string): number {
  const link = fs.readlinkSync(`/proc/${pid}/ns/${ns}`); // "mnt:[4026531841]"
  return Number(/\[(\d+)\]/.exec(link)?.[1]);
}

function procStatus(pid: number, field: string): string {
  const m = new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
  return m[1];
}

describe('kernel event monitor (real kernel)', () => {
  let work: string;

  beforeAll(() => {
    requireRoot();
    work = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-monitor-')));
  });

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  describe('process, file and network events', () => {
    let c: Collector;

    beforeAll(() => {
      c = new Collector({});
    });
    afterAll(() => c?.close());

    test('every group attached', () => {
      const attached = c.pipeline.attached();
      for (const name of ['ew_exec', 'ew_fork', 'ew_exit', 'enter_openat', 'exit_openat', 'enter_connect', 'exit_accept4']) {
        expect(attached).toContain(name);
      }
    });

    test('exec through a symlink and a relative path reports the resolved executable', async () => {
      const target = fs.realpathSync('/bin/true');
      fs.symlinkSync('/bin/true', path.join(work, 'mytrue'));
      const viaLink = await runChild('./mytrue', [], { cwd: work });
      const viaRelative = await runChild('bin/true', [], { cwd: '/usr' });
      expect(viaLink.code).toBe(0);
      expect(viaRelative.code).toBe(0);
      for (const child of [viaLink, viaRelative]) {
        const exec = await c.waitFor<ExecEvent>(`exec of pid ${child.pid}`, (e) => e.kind === EventKind.Exec && e.pid === child.pid);
        expect(exec.path).toBe(target);
        expect(exec.pathFlags).toBe(0);
        expect(exec.ppid).toBe(process.pid);
        expect(exec.comm).toBe(viaLink === child ? 'mytrue' : 'true');
      }
    });

    test('fork and exit: the child is reported, and each exit once with its status', async () => {
      const sh = await runChild('/bin/sh', ['-c', '/bin/true; exit 3']);
      expect(sh.code).toBe(3);
      const fork = await c.waitFor<ForkEvent>('fork by the shell', (e) => e.kind === EventKind.Fork && e.pid === sh.pid);
      expect(fork.childPid).toBe(fork.childTid);
      const childExec = await c.waitFor<ExecEvent>('exec in the forked child', (e) => e.kind === EventKind.Exec && e.pid === fork.childPid);
      expect(childExec.path).toBe(fs.realpathSync('/bin/true'));
      expect(childExec.ppid).toBe(sh.pid);
      const childExit = await c.waitFor<ExitEvent>('exit of the child', (e) => e.kind === EventKind.Exit && e.pid === fork.childPid);
      expect(childExit).toMatchObject({ exitStatus: 0, signal: 0 });
      const shExit = await c.waitFor<ExitEvent>('exit of the shell', (e) => e.kind === EventKind.Exit && e.pid === sh.pid);
      expect(shExit).toMatchObject({ exitCode: 3 << 8, exitStatus: 3, signal: 0, ppid: process.pid });
    });

    test('a multi-threaded process exits once; a killed one reports its signal', async () => {
      const threaded = await nodeScript(
        "const { Worker } = require('worker_threads'); for (let i = 0; i < 3; i++) new Worker('setInterval(() => {}, 1000)', { eval: true }); setTimeout(() => process.exit(9), 300);",
      );
      expect(threaded.code).toBe(9);
      await c.waitFor('exit of the threaded process', (e) => e.kind === EventKind.Exit && e.pid === threaded.pid);
      await sleep(200);
      const exits = c.events.filter((e) => e.kind === EventKind.Exit && e.pid === threaded.pid) as ExitEvent[];
      expect(exits).toHaveLength(1);
      expect(exits[0].exitStatus).toBe(9);
      // its threads were not reported as forks
      expect(c.events.filter((e) => e.kind === EventKind.Fork && e.pid === threaded.pid)).toHaveLength(0);

      const sleeper = spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
      await c.waitFor('exec of sleep', (e) => e.kind === EventKind.Exec && e.pid === sleeper.pid);
      sleeper.kill('SIGKILL');
      const killed = await c.waitFor<ExitEvent>('exit of the killed sleep', (e) => e.kind === EventKind.Exit && e.pid === sleeper.pid);
      expect(killed).toMatchObject({ signal: 9, exitCode: 9 });
    });

    test('exec header matches /proc: pid, ppid, uid, cgroup id, mount and pid namespaces', async () => {
      const cgroup2 = loadNative().probe().cgroup2Path;
      if (!cgroup2) throw new Error('no cgroup2 mount found in /proc/self/mounts');
      const cg = path.join(cgroup2, `edgeward-monitor-${process.pid}`);
      fs.mkdirSync(cg);
      // A new mount and pid namespace and its own cgroup, so none of the
      // values is simply the test process's own.
      const unshare = spawn(
        'unshare',
        ['--mount', '--pid', '--fork', '--kill-child', '/bin/sh', '-c', `echo 0 > ${cg}/cgroup.procs && exec /bin/sleep 30`],
        { stdio: 'ignore' },
      );
      let sleeperPid = 0;
      try {
        const sleepPath = fs.realpathSync('/bin/sleep');
        const exec = await c.waitFor<ExecEvent>(
          'exec of sleep under unshare',
          (e) => e.kind === EventKind.Exec && e.ppid === unshare.pid && e.path === sleepPath,
        );
        sleeperPid = exec.pid;
        expect(Number(procStatus(exec.pid, 'PPid'))).toBe(unshare.pid);
        expect(Number(procStatus(exec.pid, 'Tgid'))).toBe(exec.pid);
        expect(Number(procStatus(exec.pid, 'Uid').split(/\s+/)[0])).toBe(exec.uid);
        const cgLine = fs.readFileSync(`/proc/${exec.pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
        expect(cgLine).toBe(`0::/${path.basename(cg)}`);
        expect(exec.cgroupId).toBe(BigInt(fs.statSync(cg).ino));
        expect(exec.mntNs).toBe(nsInode(exec.pid, 'mnt'));
        expect(exec.pidNs).toBe(nsInode(exec.pid, 'pid'));
        expect(exec.mntNs).not.toBe(nsInode(process.pid, 'mnt'));
        expect(exec.pidNs).not.toBe(nsInode(process.pid, 'pid'));
      } finally {
        if (sleeperPid) {
          try {
            process.kill(sleeperPid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        unshare.kill('SIGKILL');
        await waitExit(unshare);
        const cleanup = Date.now() + 5000;
        while (fs.readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').trim() !== '' && Date.now() < cleanup) await sleep(20);
        fs.rmdirSync(cg);
      }
    });

    test('exec under another uid reports that uid', async () => {
      const child = spawn('/bin/sleep', ['30'], { stdio: 'ignore', uid: 65534, gid: 65534 });
      try {
        const exec = await c.waitFor<ExecEvent>('exec of sleep as nobody', (e) => e.kind === EventKind.Exec && e.pid === child.pid);
        expect(exec.uid).toBe(65534);
        expect(Number(procStatus(exec.pid, 'Uid').split(/\s+/)[0])).toBe(65534);
      } finally {
        child.kill('SIGKILL');
        await waitExit(child);
      }
    });

    test('open with O_WRONLY|O_CREAT: flags, fd and the absolute path through a symlinked directory', async () => {
      const real = path.join(work, 'real-dir');
      fs.mkdirSync(real);
      fs.symlinkSync(real, path.join(work, 'link-dir'));
      const child = await nodeScript(
        "const fs = require('fs'); const c = fs.constants; console.log(fs.openSync('new.txt', c.O_WRONLY | c.O_CREAT, 0o600));",
        path.join(work, 'link-dir'),
      );
      const fd = Number(child.stdout.trim());
      expect(fd).toBeGreaterThan(2);
      const open = await c.waitFor<FileOpenEvent>(
        'open of new.txt',
        (e) => e.kind === EventKind.FileOpen && e.pid === child.pid && e.path.endsWith('/new.txt'),
      );
      expect(open.path).toBe(path.join(real, 'new.txt'));
      expect(open.ret).toBe(fd);
      expect(open.flags & (O_ACCMODE | O_CREAT)).toBe(O_WRONLY | O_CREAT);
      expect(open.pathFlags).toBe(0);
    });

    test('a failed open gives -ENOENT and the path as given', async () => {
      const child = await nodeScript(
        "try { require('fs').openSync('missing-dir/nope.txt', 'r'); } catch (e) { console.log(e.code); }",
        work,
      );
      expect(child.stdout.trim()).toBe('ENOENT');
      const open = await c.waitFor<FileOpenEvent>(
        'failed open of nope.txt',
        (e) => e.kind === EventKind.FileOpen && e.pid === child.pid && e.path.endsWith('nope.txt'),
      );
      expect(open.ret).toBe(-ENOENT);
      expect(open.path).toBe('missing-dir/nope.txt');
      expect(open.pathFlags & EW_STR_AS_GIVEN).toBe(EW_STR_AS_GIVEN);
    });

    test('creat(2) is reported as an open with O_CREAT|O_WRONLY|O_TRUNC', async () => {
      if (process.arch !== 'x64') {
        // creat(2) exists on x86 only; elsewhere its program must not be attached
        expect(c.pipeline.attached()).not.toContain('enter_creat');
        return;
      }
      expect(c.pipeline.attached()).toContain('enter_creat');
      const file = path.join(work, 'created-by-creat');
      const child = await runChild('perl', ['-e', `my $p = ${JSON.stringify(file)}; print syscall(85, $p, 0644)`]);
      const fd = Number(child.stdout);
      expect(fd).toBeGreaterThan(2);
      const open = await c.waitFor<FileOpenEvent>('creat', (e) => e.kind === EventKind.FileOpen && e.pid === child.pid && e.path === file);
      expect(open.flags).toBe(0o1101);
      expect(open.ret).toBe(fd);
    });

    test('paths cross mounts, resolve /proc/self, keep 300 levels, and mark unlinked files', async () => {
      const deep = path.join(work, 'deep', ...new Array(300).fill('d'));
      fs.mkdirSync(deep, { recursive: true });
      const leaf = path.join(deep, 'leaf');
      fs.writeFileSync(leaf, '');
      const doomed = path.join(work, 'doomed');
      fs.writeFileSync(doomed, '');
      const child = await nodeScript(`
        const fs = require('fs');
        fs.closeSync(fs.openSync('/proc/self/status', 'r'));
        fs.closeSync(fs.openSync(${JSON.stringify(leaf)}, 'r'));
        const fd = fs.openSync(${JSON.stringify(doomed)}, 'r');
        fs.unlinkSync(${JSON.stringify(doomed)});
        fs.closeSync(fs.openSync('/proc/self/fd/' + fd, 'r'));`);
      expect(child.code).toBe(0);
      const opened = (p: string) => (e: EwEvent) => e.kind === EventKind.FileOpen && e.pid === child.pid && e.path === p;
      await c.waitFor(`open of /proc/${child.pid}/status`, opened(`/proc/${child.pid}/status`));
      const deepOpen = await c.waitFor<FileOpenEvent>('open 300 levels down', opened(leaf));
      expect(deepOpen.pathFlags).toBe(0);
      await c.waitFor('open of the unlinked file', opened(`${doomed} (deleted)`));
    });

    test('a pipe opened through /dev/fd is named like /proc/PID/fd shows it', async () => {
      const child = await runChild('/bin/bash', ['-c', 'exec cat <(echo hi)']);
      expect(child.stdout).toBe('hi\n');
      const open = await c.waitFor<FileOpenEvent>(
        'open of the pipe',
        (e) => e.kind === EventKind.FileOpen && e.pid === child.pid && e.ret >= 0 && e.path.startsWith('pipe:'),
      );
      expect(open.path).toMatch(/^pipe:\[\d+\]$/);
    });

    test('a path longer than PATH_MAX keeps its leaf end and is flagged truncated', async () => {
      const name = 'n'.repeat(250);
      const base = path.join(work, 'long');
      fs.mkdirSync(base);
      // 20 levels of 250 bytes: more than 4096, reachable only step by step
      const child = await nodeScript(
        `for (let i = 0; i < 20; i++) { require('fs').mkdirSync(${JSON.stringify(name)}); process.chdir(${JSON.stringify(name)}); }
         require('fs').closeSync(require('fs').openSync('leaf', 'w'));`,
        base,
      );
      try {
        expect(child.code).toBe(0);
        const open = await c.waitFor<FileOpenEvent>(
          'open of the long path',
          (e) => e.kind === EventKind.FileOpen && e.pid === child.pid && e.path.endsWith(`${name}/leaf`) && e.ret >= 0,
        );
        expect(open.pathFlags & EW_STR_TRUNCATED).toBe(EW_STR_TRUNCATED);
        expect(Buffer.byteLength(open.path)).toBeLessThan(4096);
        expect(Buffer.byteLength(open.path)).toBeGreaterThan(4096 - 260);
        expect(open.path.startsWith(work)).toBe(false);
      } finally {
        await runChild('rm', ['-rf', base]);
      }
    });

    test('TCP listen, connect and accept, and UDP connect, to 127.0.0.1', async () => {
      const server = net.createServer((s) => s.destroy());
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      const port = (server.address() as net.AddressInfo).port;
      const client = net.connect(port, '127.0.0.1');
      const clientPort = await new Promise<number>((r, j) => {
        client.on('connect', () => r(client.localPort ?? -1));
        client.on('error', j);
      });
      client.destroy();
      const udp = dgram.createSocket('udp4');
      const udpPort = port === 65535 ? 65534 : port + 1;
      await new Promise<void>((r) => udp.connect(udpPort, '127.0.0.1', () => r()));
      udp.close();
      server.close();

      const mine = (op: NetOp, p: number) => (e: EwEvent) =>
        e.kind === EventKind.Net && e.pid === process.pid && e.op === op && e.port === p;
      const listen = await c.waitFor<NetEvent>('listen', mine(NetOp.Listen, port));
      expect(listen).toMatchObject({ family: AF_INET, sockType: SOCK_STREAM, protocol: IPPROTO_TCP, ret: 0, addr: '127.0.0.1' });
      const connect = await c.waitFor<NetEvent>('TCP connect', (e) => mine(NetOp.Connect, port)(e) && (e as NetEvent).sockType === SOCK_STREAM);
      expect(connect).toMatchObject({ family: AF_INET, protocol: IPPROTO_TCP, addr: '127.0.0.1' });
      expect([0, -EINPROGRESS]).toContain(connect.ret);
      const accept = await c.waitFor<NetEvent>('accept', mine(NetOp.Accept, clientPort));
      expect(accept).toMatchObject({ family: AF_INET, sockType: SOCK_STREAM, addr: '127.0.0.1' });
      expect(accept.ret).toBeGreaterThan(2);
      const udpConnect = await c.waitFor<NetEvent>('UDP connect', mine(NetOp.Connect, udpPort));
      expect(udpConnect).toMatchObject({ family: AF_INET, sockType: SOCK_DGRAM, protocol: IPPROTO_UDP, ret: 0, addr: '127.0.0.1' });
      // bind to port 0: the port the kernel chose, read from the socket
      const bound = dgram.createSocket('udp4');
      await new Promise<void>((r) => bound.bind(0, '127.0.0.1', () => r()));
      const boundPort = bound.address().port;
      bound.close();
      const bind = await c.waitFor<NetEvent>('bind to port 0', mine(NetOp.Bind, boundPort));
      expect(bind).toMatchObject({ family: AF_INET, sockType: SOCK_DGRAM, ret: 0, addr: '127.0.0.1' });
      const socket = c.find<NetEvent>(
        (e) => e.kind === EventKind.Net && e.pid === process.pid && e.op === NetOp.Socket && e.sockType === SOCK_DGRAM,
      );
      expect(socket).toMatchObject({ family: AF_INET, protocol: IPPROTO_UDP });
      expect(socket?.ret).toBeGreaterThan(2);
    });

    test('events arrive in batches under load', async () => {
      const n = 5000;
      const target = path.join(work, 'load-target');
      fs.writeFileSync(target, '');
      const callsBefore = c.calls;
      const child = await nodeScript(
        `const fs = require('fs'); for (let i = 0; i < ${n}; i++) fs.closeSync(fs.openSync(${JSON.stringify(target)}, 'r'));`,
      );
      expect(child.code).toBe(0);
      const fromChild = () =>
        c.events.filter((e) => e.kind === EventKind.FileOpen && e.pid === child.pid && e.path === target).length;
      const deadline = Date.now() + 5000;
      while (fromChild() < n && Date.now() < deadline) await sleep(20);
      expect(fromChild()).toBe(n);
      const calls = c.calls - callsBefore;
      expect(calls).toBeGreaterThan(0);
      // batched: several events per JS call. How many depends on how the open loop and the
      // consumer's wake-ups interleave (about 5 per call on a quiet machine, 50+ under load),
      // so the bound is loose: a timing-tight one failed in CI.
      expect(calls).toBeLessThan(n / 2);
      const stats = c.pipeline.stats();
      expect(stats.batches).toBeLessThan(stats.delivered);
      expect(stats.decodeErrors).toBe(0);
      expect(stats.kernelDropped).toBe(0);
    });
  });

  test('with file monitoring off no open program is attached and no open reported', async () => {
    const c = new Collector({ process: true, file: false, network: false });
    try {
      const attached = c.pipeline.attached();
      expect(attached).toEqual(expect.arrayContaining(['ew_exec', 'ew_fork', 'ew_exit']));
      expect(attached.filter((n) => /open|socket|connect|bind|listen|accept/.test(n))).toEqual([]);
      const child = await nodeScript("require('fs').closeSync(require('fs').openSync('/dev/null', 'r'))");
      await c.waitFor('exit of the child', (e) => e.kind === EventKind.Exit && e.pid === child.pid);
      expect(c.events.filter((e) => e.kind === EventKind.FileOpen || e.kind === EventKind.Net)).toEqual([]);
    } finally {
      c.close();
    }
  });

  test('a tiny ring under heavy load counts what the kernel dropped', async () => {
    const c = new Collector({ ringBufferBytes: 4096, pollIntervalMs: 500, process: false, file: true, network: false });
    try {
      const n = 30000;
      const child = await nodeScript(`const fs = require('fs'); for (let i = 0; i < ${n}; i++) fs.closeSync(fs.openSync('/dev/null', 'r'));`);
      expect(child.code).toBe(0);
      await sleep(700);
      const stats = c.pipeline.stats();
      const seen = c.events.filter((e) => e.kind === EventKind.FileOpen && e.pid === child.pid).length;
      expect(stats.kernelDropped).toBeGreaterThan(0);
      expect(seen).toBeLessThan(n);
      // nothing vanishes silently: every record was delivered or counted
      expect(stats.delivered + stats.kernelDropped).toBeGreaterThanOrEqual(n);
    } finally {
      c.close();
    }
  });

  test('bad options and a closed ring give clear errors', () => {
    const native = loadNative();
    expect(() => new EventPipeline(native, { ringBufferBytes: 5000, pollIntervalMs: 10, process: false, file: false, network: false }, () => {})).toThrow(
      /ringBufferBytes must be a power of two and a multiple of the page size/,
    );
    const sink = new native.EventSink(() => {});
    const ring = new native.EventRing(sink, { ringBufferBytes: 65536, pollIntervalMs: 10 });
    expect(() => new native.Monitor(ring, { process: 1 as unknown as boolean, file: false, network: false })).toThrow(
      /options.process must be a boolean/,
    );
    ring.close();
    expect(() => new native.Monitor(ring, { process: true, file: false, network: false })).toThrow(/EventRing is closed/);
    sink.close();
  });
});
