// bpf-lsm self-protection on a real BPF-LSM kernel: a stand-in agent
// process protects itself (signals, ptrace), its state directory and binary,
// its pinned rule maps and the bpffs holding them; other root processes are
// refused with EPERM; the agent itself still writes its state; the stopper
// (the service manager's stand-in: this test) stops it, after which
// everything is allowed again.
//
// Only a kernel booted with bpf among its LSMs can run this: run it in the
// qemu guest,
//   tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_self_protect.test.ts
import { ChildProcess, execFileSync, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { unloadPinned } from '../../agent/src/lsm_backend';
import { lsmAddon, lsmPinDir } from '../../agent/src/lsm_enforcer';
import { selfProtectAddon } from '../../agent/src/lsm_self_protect';
import type { NativeAddon } from '../../agent/src/native';
import { probe } from '../../agent/src/probe';
import { ADDON, makeTempDir, REPO, waitFor } from '../helpers/system';

const PYTHON = '/usr/bin/python3';
const BPFTOOL = '/usr/sbin/bpftool';

const PY_PRELUDE = `
import ctypes, errno, os, signal, sys
def attempt(fn):
    try:
        fn()
        r = "ok"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    print(r, flush=True)
`;

/** Results ("ok" or errno names) of the attempt() calls of a python snippet run as another root process. */
function py(code: string, args: string[] = []): string[] {
  const r = spawnSync(PYTHON, ['-c', PY_PRELUDE + code, ...args], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim().split('\n');
}

describe('bpf-lsm self-protection on a BPF-LSM kernel', () => {
  let work: string;
  let state: string;
  let binary: string;
  let elsewhere: string;
  let bpffs: string;
  let pinRoot: string;
  let agent: ChildProcess | undefined;
  let agentOut = '';
  let agentExited: Promise<number | null>;
  let info: { attached: string[]; mapIds: number[]; errors: string[] };
  let pinned: string;

  /** Asks the stand-in agent to do something and returns its answer line. */
  async function ask(command: string): Promise<string> {
    const done = agentOut.split('\n').length - 1; // complete lines so far
    agent!.stdin!.write(command + '\n');
    return waitFor(`the agent's answer to ${command}`, () => {
      const lines = agentOut.split('\n');
      return lines.length - 1 > done ? lines[done] : undefined;
    }, 60_000);
  }

  beforeAll(async () => {
    const problems: string[] = [];
    if (process.getuid?.() !== 0) problems.push('must run as root (LSM programs are attached)');
    if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
    for (const f of [PYTHON, BPFTOOL]) if (!fs.existsSync(f)) problems.push(`${f} missing`);
    if (problems.length) throw new Error(`self-protection tests cannot run: ${problems.join('; ')}`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const addon = require(ADDON) as NativeAddon;
    const report = probe(addon, 'auto');
    if (report.backend !== 'bpf-lsm') {
      throw new Error(
        `self-protection tests need a kernel that runs BPF-LSM programs (${report.kernel}: ${report.reasons.join('; ')}); ` +
          'run them in the guest: tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_self_protect.test.ts',
      );
    }
    selfProtectAddon(addon); // throws naming a stale addon
    work = makeTempDir('lsm-self');
    state = path.join(work, 'state');
    fs.mkdirSync(path.join(state, 'policies'), { recursive: true });
    fs.writeFileSync(path.join(state, 'policies', 'p.yaml'), 'x');
    binary = path.join(work, 'bin', 'edgeward-agent');
    fs.mkdirSync(path.dirname(binary));
    fs.writeFileSync(binary, '#!/bin/sh\n', { mode: 0o755 });
    fs.writeFileSync(path.join(work, 'bin', 'neighbour'), 'x');
    elsewhere = path.join(work, 'elsewhere');
    fs.writeFileSync(elsewhere, 'x');
    // a bpffs of its own: the test unmounts it, never the guest's /sys/fs/bpf
    bpffs = path.join(work, 'bpffs');
    fs.mkdirSync(bpffs);
    execFileSync('mount', ['-t', 'bpf', 'bpf', bpffs]);
    pinRoot = path.join(bpffs, 'edgeward');
    pinned = lsmPinDir(lsmAddon(addon).lsmLimits.layoutVersion, pinRoot);

    // The stand-in agent: pins an enforcer under pinRoot, protects itself
    // with this test as its stopper, then writes its state on request.
    const script = `
const a = require(${JSON.stringify(ADDON)});
const { SelfProtection } = require(${JSON.stringify(path.join(REPO, 'agent', 'src', 'lsm_self_protect'))});
const { LsmEnforcer } = require(${JSON.stringify(path.join(REPO, 'agent', 'src', 'lsm_enforcer'))});
const fs = require('fs');
const sink = new a.EventSink(() => {});
const ring = new a.EventRing(sink, { ringBufferBytes: 1 << 20, pollIntervalMs: 1000 });
const enforcer = new LsmEnforcer(a, ring, { pin: { root: ${JSON.stringify(pinRoot)} } });
const sp = new SelfProtection(a, { stopperPid: ${process.pid} });
const r = sp.protect({ directories: [${JSON.stringify(state)}, ${JSON.stringify(pinRoot)}], files: [${JSON.stringify(binary)}],
  keepMounted: [${JSON.stringify(pinRoot)}], mapIds: enforcer.mapIds() });
process.on('SIGHUP', () => console.log('hup'));
process.on('SIGTERM', () => { sp.close(); enforcer.close(); process.exit(0); });
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let nl;
  while ((nl = buf.indexOf('\\n')) >= 0) {
    const cmd = buf.slice(0, nl); buf = buf.slice(nl + 1);
    try {
      if (cmd === 'write') fs.writeFileSync(${JSON.stringify(path.join(state, 'policies', 'p.yaml'))}, 'agent');
      else if (cmd === 'stats') { console.log(JSON.stringify(sp.stats())); continue; }
      console.log('ok');
    } catch (e) { console.log(e.code || e.message); }
  }
});
console.log(JSON.stringify({ ready: true, attached: sp.attached(), mapIds: sp.mapIds(), errors: r.errors }));`;
    agent = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    agent.stdout!.setEncoding('utf8');
    agent.stdout!.on('data', (d: string) => (agentOut += d));
    agent.stderr!.on('data', (d) => (err += d));
    agentExited = new Promise((r) => agent!.on('exit', (code) => r(code)));
    const line = await waitFor('the stand-in agent to be protected', () => {
      if (agent!.exitCode !== null) throw new Error(`the stand-in agent exited: ${err}`);
      return agentOut.split('\n').find((l) => l.startsWith('{"ready"'));
    }, 180_000);
    info = JSON.parse(line);
    agentOut = '';
  }, 300_000);

  afterAll(async () => {
    if (agent && agent.exitCode === null) {
      agent.kill('SIGTERM'); // this test is the stopper
      await agentExited;
    }
    if (bpffs) spawnSync('umount', [bpffs]);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('every hook is attached and every target resolved', () => {
    expect(info.errors).toEqual([]);
    expect([...info.attached].sort()).toEqual(
      ['bpf_map', 'file_open', 'path_chmod', 'path_chown', 'path_link', 'path_mkdir', 'path_mknod', 'path_rename', 'path_rmdir', 'path_symlink',
        'path_truncate', 'path_unlink', 'ptrace_access_check', 'sb_umount', 'task_kill'].sort(),
    );
    expect(info.mapIds.length).toBe(3 + 6); // its own three, the enforcer's six (rules, workloads, workload_count)
  });

  test('other processes cannot signal it (SIGKILL, SIGTERM, SIGSTOP, SIGUSR1); signal 0 and SIGHUP pass', async () => {
    const pid = String(agent!.pid);
    expect(
      py(
        `
pid = int(sys.argv[1])
for s in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP, signal.SIGUSR1, signal.SIGINT, 0):
    attempt(lambda: os.kill(pid, s))
attempt(lambda: os.kill(pid, signal.SIGHUP))`,
        [pid],
      ),
    ).toEqual(['EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'ok', 'ok']);
    await waitFor('the agent to note SIGHUP', () => (agentOut.includes('hup') ? true : undefined), 30_000);
    expect(agent!.exitCode).toBeNull();
  });

  test('nobody else attaches to it or writes its memory; reading its status works', () => {
    const pid = String(agent!.pid);
    expect(
      py(
        `
pid = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
def ptrace_attach():
    if libc.ptrace(16, pid, None, None) != 0:
        raise OSError(ctypes.get_errno(), 'ptrace')
attempt(ptrace_attach)
attempt(lambda: open('/proc/%d/mem' % pid, 'wb'))
attempt(lambda: open('/proc/%d/status' % pid).read())`,
        [pid],
      ),
      // /proc/<pid>/mem turns any ptrace refusal into EACCES (mm_access); root is otherwise let in
    ).toEqual(['EPERM', 'EACCES', 'ok']);
  });

  test('its BPF map descriptors cannot be reopened for writing through /proc/<pid>/fd', () => {
    const r = py(
      `
pid = int(sys.argv[1])
fds = [f for f in os.listdir('/proc/%d/fd' % pid) if os.readlink('/proc/%d/fd/%s' % (pid, f)) == 'anon_inode:bpf-map']
print(len(fds), flush=True)
for f in fds:
    attempt(lambda: open('/proc/%d/fd/%s' % (pid, f), 'r+b'))`,
      [String(agent!.pid)],
    );
    expect(Number(r[0])).toBeGreaterThan(0);
    expect(r.slice(1).filter((x) => x === 'ok')).toEqual([]);
  });

  test('its state directory and binary are read-only to everyone else; the agent still writes its state', async () => {
    const p = path.join(state, 'policies', 'p.yaml');
    expect(
      py(
        `
state, p, binary, elsewhere = sys.argv[1:5]
attempt(lambda: open(p, 'rb').read())
attempt(lambda: open(p, 'ab'))
attempt(lambda: open(os.path.join(state, 'new'), 'wb'))
attempt(lambda: os.unlink(p))
attempt(lambda: os.rename(p, os.path.join(state, 'moved')))
attempt(lambda: os.rename(elsewhere, os.path.join(state, 'planted')))
attempt(lambda: os.mkdir(os.path.join(state, 'policies', 'sub')))
attempt(lambda: os.symlink('/etc/passwd', os.path.join(state, 'link')))
attempt(lambda: os.link(p, os.path.join(os.path.dirname(elsewhere), 'hardlink')))
attempt(lambda: os.chmod(p, 0o777))
attempt(lambda: os.truncate(p, 0))
attempt(lambda: os.rename(state, state + '-moved'))
attempt(lambda: open(binary, 'r+b'))
attempt(lambda: os.unlink(binary))
attempt(lambda: open(os.path.join(os.path.dirname(binary), 'neighbour'), 'ab'))
attempt(lambda: open(elsewhere, 'ab'))`,
        [state, p, binary, elsewhere],
      ),
    ).toEqual(['ok', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'ok', 'ok']);
    expect(await ask('write')).toBe('ok');
    expect(fs.readFileSync(p, 'utf8')).toBe('agent');
  });

  test('its pinned rules: maps not writable, pins not removable, their bpffs not unmountable', () => {
    expect(fs.readdirSync(pinned)).toContain('active');
    const update = spawnSync(BPFTOOL, ['map', 'update', 'pinned', path.join(pinned, 'active'), 'key', '0', '0', '0', '0', 'value', '1', '0', '0', '0'], {
      encoding: 'utf8',
    });
    expect(update.status).not.toBe(0);
    expect(update.stderr).toMatch(/Operation not permitted/);
    expect(py(`attempt(lambda: os.unlink(sys.argv[1]))\nattempt(lambda: os.rmdir(sys.argv[2]))`, [path.join(pinned, 'link_file_open'), pinned])).toEqual([
      'EPERM',
      'EPERM',
    ]);
    expect(() => unloadPinned(pinRoot)).toThrow(/EPERM.*a running agent protects its pinned state; stop it with the service manager first/);
    const umount = spawnSync('umount', [bpffs], { encoding: 'utf8' });
    expect(umount.status).not.toBe(0);
    expect(umount.stderr).toMatch(/not permitted|must be superuser/i);
    expect(fs.readdirSync(pinned)).toContain('active');
  });

  test('refusals are counted by kind', async () => {
    const stats = JSON.parse(await ask('stats'));
    expect(stats.refused.signal).toBeGreaterThanOrEqual(5);
    expect(stats.refused.ptrace).toBeGreaterThanOrEqual(2);
    expect(stats.refused.path).toBeGreaterThanOrEqual(15);
    expect(stats.refused.map).toBeGreaterThanOrEqual(1);
    expect(stats.refused.umount).toBeGreaterThanOrEqual(1);
  });

  test('the escape hatch: the stopper stops it, and then everything is allowed again', async () => {
    agent!.kill('SIGTERM');
    expect(await agentExited).toBe(0);
    const p = path.join(state, 'policies', 'p.yaml');
    expect(py(`attempt(lambda: open(sys.argv[1], 'ab'))\nattempt(lambda: os.unlink(sys.argv[2]))`, [p, binary])).toEqual(['ok', 'ok']);
    expect(fs.existsSync(pinRoot) ? fs.readdirSync(pinRoot) : []).toEqual([]); // its close() removed the pins
    expect(spawnSync('umount', [bpffs]).status).toBe(0);
    bpffs = '';
  });
});
