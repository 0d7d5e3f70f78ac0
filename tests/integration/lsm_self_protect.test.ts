// bpf-lsm self-protection on a real BPF-LSM kernel: a stand-in agent
// process, in a cgroup v2 of its own, protects itself (signals, ptrace, its
// cgroups' files, /proc/<pid> files, rlimits and scheduling), its state
// directory and binary (contents, names, attributes, mounts over them), its
// pinned rule maps and the bpffs holding them; other root processes are
// refused with EPERM; the agent itself still writes its state; the stopper
// (the service manager's stand-in: this test) still freezes its cgroup and
// sets its OOM score, and stops it, after which everything is allowed again.
//
// Only a kernel booted with bpf among its LSMs can run this: run it in the
// qemu guest,
//   tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_self_protect.test.ts
import { ChildProcess, execFileSync, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { unloadPinned } from '../../agent/src/lsm_backend';
import { lsmAddon, lsmPinDir } from '../../agent/src/lsm_enforcer';
import { selfProtectAddon } from '../../agent/src/lsm_self_protect';
import type { NativeAddon } from '../../agent/src/native';
import { probe } from '../../agent/src/probe';
import { ADDON, cgroup2Path, makeTempDir, REPO, waitFor } from '../helpers/system';

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

/**
 * Results ("ok" or errno names) of the attempt() calls of a python snippet run as another root process
 * (under `prefix`, e.g. unshare, when given).
 */
function py(code: string, args: string[] = [], prefix: string[] = []): string[] {
  const argv = [...prefix, PYTHON, '-c', PY_PRELUDE + code, ...args];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 60_000 });
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
  let info: { attached: string[]; mapIds: number[]; enforcerMapIds: number[]; errors: string[] };
  let pinned: string;
  let cgParent = ''; // <cgroup2>/edgeward-sp-<pid>: the agent's parent cgroup
  let cgAgent: string; // cgParent/agent: the agent starts here
  let cgOther: string; // cgParent/other: a sibling
  let deepCgroup = ''; // cgOther/n/n/...: 40 levels
  let v1Mount = ''; // a cgroup v1 freezer hierarchy
  let view = ''; // a bind mount of state/policies made before the agent protects itself
  let sharedFs = ''; // a shared tmpfs mount holding `deep`, a protected directory
  let deep: string;

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
    const cg2 = cgroup2Path();
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
    // an attribute to remove (tmpfs keeps trusted.* xattrs)
    execFileSync(PYTHON, ['-c', 'import os,sys; os.setxattr(sys.argv[1], "trusted.ew", b"1")', path.join(state, 'policies', 'p.yaml')]);
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
    view = path.join(work, 'view');
    fs.mkdirSync(view);
    execFileSync('mount', ['--bind', path.join(state, 'policies'), view]);
    fs.mkdirSync(path.join(work, 'mnt-src'));
    sharedFs = path.join(work, 'fs');
    fs.mkdirSync(sharedFs);
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', sharedFs]);
    execFileSync('mount', ['--make-shared', sharedFs]);
    deep = path.join(sharedFs, 'deep');
    fs.mkdirSync(deep);

    // its cgroups, with the memory controller for memory.max
    cgParent = path.join(cg2, `edgeward-sp-${process.pid}`);
    cgAgent = path.join(cgParent, 'agent');
    cgOther = path.join(cgParent, 'other');
    fs.mkdirSync(cgParent);
    try {
      if (!fs.readFileSync(path.join(cg2, 'cgroup.subtree_control'), 'utf8').includes('memory')) {
        fs.writeFileSync(path.join(cg2, 'cgroup.subtree_control'), '+memory');
      }
      fs.writeFileSync(path.join(cgParent, 'cgroup.subtree_control'), '+memory');
    } catch (e) {
      throw new Error(`self-protection tests need the cgroup v2 memory controller (${cg2}): ${(e as Error).message}`);
    }
    fs.mkdirSync(cgAgent);
    fs.mkdirSync(cgOther);

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
const r = sp.protect({ directories: [${JSON.stringify(state)}, ${JSON.stringify(pinRoot)}, ${JSON.stringify(deep)}], files: [${JSON.stringify(binary)}],
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
      else if (cmd === 'touch') fs.utimesSync(${JSON.stringify(path.join(state, 'policies', 'p.yaml'))}, 1000, 1000);
      else if (cmd === 'cgwrite') fs.writeFileSync(${JSON.stringify(path.join(cgAgent, 'memory.max'))}, 'max');
      else if (cmd === 'stats') { console.log(JSON.stringify(sp.stats())); continue; }
      console.log('ok');
    } catch (e) { console.log(e.code || e.message); }
  }
});
console.log(JSON.stringify({ ready: true, attached: sp.attached(), mapIds: sp.mapIds(), enforcerMapIds: enforcer.mapIds(), errors: r.errors }));`;
    // started inside cgAgent: the shell moves itself there, then becomes node
    agent = spawn('/bin/sh', ['-c', 'echo $$ > "$1" && exec "$0" -e "$2"', process.execPath, path.join(cgAgent, 'cgroup.procs'), script], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
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
    if (view) spawnSync('umount', [view]);
    if (v1Mount) spawnSync('umount', [v1Mount]);
    if (sharedFs) spawnSync('umount', [sharedFs]);
    if (bpffs) spawnSync('umount', [bpffs]);
    for (let d = deepCgroup; d && d !== cgOther; d = path.dirname(d)) if (fs.existsSync(d)) fs.rmdirSync(d);
    for (const d of [cgAgent, cgOther, cgParent]) if (d && fs.existsSync(d)) fs.rmdirSync(d);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('every hook is attached and every target resolved', () => {
    expect(info.errors).toEqual([]);
    // hooks of every supported kernel (6.1 on), then those of newer ones
    const always = ['bpf_map', 'file_open', 'file_send_sigiotask', 'sb_pivotroot', 'path_chmod', 'path_chown', 'path_link', 'path_mkdir', 'path_mknod', 'path_rename', 'path_rmdir',
      'path_symlink', 'path_truncate', 'path_unlink', 'ptrace_access_check', 'sb_umount', 'task_kill', 'sb_mount', 'move_mount', 'inode_setattr',
      'inode_setxattr', 'inode_removexattr', 'file_ioctl', 'task_setrlimit', 'task_setnice', 'task_setscheduler', 'task_setioprio'];
    const newer = ['inode_set_acl', 'inode_remove_acl', 'inode_file_setattr', 'file_ioctl_compat'];
    expect(info.attached).toEqual(expect.arrayContaining(always));
    expect(info.attached.filter((h) => !always.includes(h) && !newer.includes(h))).toEqual([]);
    expect(new Set(info.attached).size).toBe(info.attached.length); // one inode_setattr variant only
    const [major, minor] = os.release().split('.').map(Number);
    if (major > 6 || (major === 6 && minor >= 2)) expect(info.attached).toEqual(expect.arrayContaining(['inode_set_acl', 'inode_remove_acl']));
    // its own four, and every map of the enforcer it was handed (rules, workloads, patterns, ...)
    expect(info.enforcerMapIds.length).toBeGreaterThanOrEqual(6);
    expect(info.mapIds).toEqual(expect.arrayContaining(info.enforcerMapIds));
    expect(info.mapIds.length).toBe(4 + info.enforcerMapIds.length);
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

  test('signal-driven I/O (F_SETOWN + F_SETSIG SIGKILL) does not reach it; it still reaches another process', async () => {
    const code = `
import fcntl
pid = int(sys.argv[1])
r, w = os.pipe()
fcntl.fcntl(r, fcntl.F_SETOWN, pid)
fcntl.fcntl(r, 10, signal.SIGKILL)  # F_SETSIG
fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)
attempt(lambda: os.write(w, b'x'))`;
    const victim = spawn('/bin/sleep', ['60']);
    const victimExit = new Promise<NodeJS.Signals | null>((r) => victim.on('exit', (_c, sig) => r(sig)));
    expect(py(code, [String(victim.pid)])).toEqual(['ok']);
    expect(await victimExit).toBe('SIGKILL'); // the mechanism works
    const before = JSON.parse(await ask('stats')).refused.signal;
    expect(py(code, [String(agent!.pid)])).toEqual(['ok']); // the write succeeds; the signal is dropped
    const after = JSON.parse(await ask('stats')).refused.signal;
    expect(after).toBeGreaterThan(before);
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
      // /proc/<pid>/mem for writing: refused at file_open (no writes below /proc/<agent>) before mm_access's ptrace check
    ).toEqual(['EPERM', 'EPERM', 'ok']);
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

  test("its cgroup's and ancestors' files are not written by others (cgroup.kill, cgroup.freeze, memory.max); it follows a move", async () => {
    expect(fs.readFileSync(`/proc/${agent!.pid}/cgroup`, 'utf8')).toContain(`/edgeward-sp-${process.pid}/agent`);
    const attempts = `
agent, parent, other = sys.argv[1:4]
def write(f, v):
    with open(f, 'w') as fh:
        fh.write(v)
attempt(lambda: write(agent + '/cgroup.kill', '1'))
attempt(lambda: write(agent + '/cgroup.freeze', '1'))
attempt(lambda: write(agent + '/memory.max', '4096'))
attempt(lambda: write(parent + '/cgroup.kill', '1'))
attempt(lambda: write(parent + '/cgroup.freeze', '1'))
attempt(lambda: write(parent + '/memory.max', '4096'))
attempt(lambda: open(agent + '/cgroup.procs', 'w').close())
attempt(lambda: open(agent + '/memory.pressure', 'w').close())
attempt(lambda: write(other + '/cgroup.freeze', '1'))
attempt(lambda: write(other + '/cgroup.freeze', '0'))
attempt(lambda: write(other + '/cgroup.kill', '1'))
attempt(lambda: open(agent + '/memory.max').read())`;
    expect(py(attempts, [cgAgent, cgParent, cgOther])).toEqual(['EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
    expect(fs.readFileSync(path.join(cgAgent, 'memory.max'), 'utf8').trim()).toBe('max');
    expect(JSON.parse(await ask('stats')).refused.cgroup).toBeGreaterThanOrEqual(6); // alive, not frozen
    // moving it is not refused (no hook sees whose pid is written), but its new cgroup is then the protected one
    expect(
      py(
        `
pid, other = sys.argv[1:3]
def write(f, v):
    with open(f, 'w') as fh:
        fh.write(v)
attempt(lambda: write(other + '/cgroup.procs', pid))
attempt(lambda: write(other + '/cgroup.kill', '1'))
attempt(lambda: write(other + '/cgroup.freeze', '1'))`,
        [String(agent!.pid), cgOther],
      ),
    ).toEqual(['ok', 'EPERM', 'EPERM']);
    expect(await ask('stats')).toMatch(/^\{/);
    // nested deeper than any walk would go, its top ancestors are still its ancestors
    let nested = cgOther;
    for (let i = 0; i < 40; i++) fs.mkdirSync((nested = path.join(nested, 'n')));
    deepCgroup = nested;
    expect(
      py(
        `
pid, nested, top = sys.argv[1:4]
def write(f, v):
    with open(f, 'w') as fh:
        fh.write(v)
attempt(lambda: write(nested + '/cgroup.procs', pid))
attempt(lambda: write(top + '/cgroup.kill', '1'))
attempt(lambda: write(top + '/cgroup.freeze', '1'))`,
        [String(agent!.pid), nested, cgOther],
      ),
    ).toEqual(['ok', 'EPERM', 'EPERM']);
    expect(await ask('stats')).toMatch(/^\{/);
    fs.writeFileSync(path.join(cgAgent, 'cgroup.procs'), String(agent!.pid)); // back
    expect(fs.readFileSync(`/proc/${agent!.pid}/cgroup`, 'utf8')).toContain(`/edgeward-sp-${process.pid}/agent`);
  });

  test('the agent writes its own cgroup files; the stopper freezes and thaws it (the service manager\'s path)', async () => {
    expect(await ask('cgwrite')).toBe('ok');
    const events = () => fs.readFileSync(path.join(cgAgent, 'cgroup.events'), 'utf8');
    fs.writeFileSync(path.join(cgAgent, 'cgroup.freeze'), '1');
    await waitFor('the agent to be frozen', () => (/frozen 1/.test(events()) ? true : undefined), 60_000);
    fs.writeFileSync(path.join(cgAgent, 'cgroup.freeze'), '0');
    await waitFor('the agent to be thawed', () => (/frozen 0/.test(events()) ? true : undefined), 60_000);
    expect(await ask('stats')).toMatch(/^\{/);
  });

  test('cgroup v1: freezer.state of its freezer cgroup is not written by others; the stopper freezes and thaws it', async () => {
    const v1 = path.join(work, 'freezer-v1');
    fs.mkdirSync(v1);
    const m = spawnSync('mount', ['-t', 'cgroup', '-o', 'freezer', 'freezer', v1], { encoding: 'utf8' });
    if (m.status !== 0) throw new Error(`cgroup v1 tests need a freezer hierarchy: mount -t cgroup -o freezer failed: ${m.stderr}`);
    v1Mount = v1;
    const frozenIn = path.join(v1, 'agent');
    const sibling = path.join(v1, 'sibling');
    fs.mkdirSync(frozenIn);
    fs.mkdirSync(sibling);
    try {
      // moving it is open (the v2 gap again); freezing where it is is not
      const write = `
def write(f, v):
    with open(f, 'w') as fh:
        fh.write(v)
`;
      expect(
        py(
          write +
            `
pid, frozen_in, sibling = sys.argv[1:4]
attempt(lambda: write(frozen_in + '/cgroup.procs', pid))
attempt(lambda: write(frozen_in + '/freezer.state', 'FROZEN'))
attempt(lambda: write(sibling + '/freezer.state', 'FROZEN'))
attempt(lambda: write(sibling + '/freezer.state', 'THAWED'))`,
          [String(agent!.pid), frozenIn, sibling],
        ),
      ).toEqual(['ok', 'EPERM', 'ok', 'ok']);
      expect(fs.readFileSync(path.join(frozenIn, 'freezer.state'), 'utf8').trim()).toBe('THAWED');
      expect(await ask('stats')).toMatch(/^\{/);
      fs.writeFileSync(path.join(frozenIn, 'freezer.state'), 'FROZEN'); // the stopper may
      await waitFor('the agent to be frozen (v1)', () => (fs.readFileSync(path.join(frozenIn, 'freezer.state'), 'utf8').trim() === 'FROZEN' ? true : undefined), 60_000);
      fs.writeFileSync(path.join(frozenIn, 'freezer.state'), 'THAWED');
      expect(await ask('stats')).toMatch(/^\{/);
    } finally {
      fs.writeFileSync(path.join(v1, 'cgroup.procs'), String(agent!.pid));
      fs.rmdirSync(frozenIn);
      fs.rmdirSync(sibling);
      expect(spawnSync('umount', [v1]).status).toBe(0);
      v1Mount = '';
    }
  });

  test('its /proc files, rlimits, nice value, scheduling and io priority are not changed by others', () => {
    const pid = String(agent!.pid);
    expect(
      py(
        `
import resource
pid = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
def write(f, v):
    with open(f, 'w') as fh:
        fh.write(v)
def ioprio_set():
    if libc.syscall(251, 1, pid, (3 << 13)) != 0:  # ioprio_set(IOPRIO_WHO_PROCESS, pid, IOPRIO_CLASS_IDLE)
        raise OSError(ctypes.get_errno(), 'ioprio_set')
attempt(lambda: write('/proc/%d/oom_score_adj' % pid, '1000'))
attempt(lambda: write('/proc/%d/task/%d/oom_score_adj' % (pid, pid), '1000'))
attempt(lambda: write('/proc/%d/timerslack_ns' % pid, '1000000000'))
attempt(lambda: resource.prlimit(pid, resource.RLIMIT_CPU, (1, 1)))
attempt(lambda: os.setpriority(os.PRIO_PROCESS, pid, 19))
attempt(lambda: os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0)))
attempt(lambda: os.sched_setaffinity(pid, {0}))
attempt(ioprio_set)
attempt(lambda: open('/proc/%d/oom_score_adj' % pid).read())
attempt(lambda: resource.prlimit(pid, resource.RLIMIT_CPU))
attempt(lambda: write('/proc/self/oom_score_adj', '100'))
attempt(lambda: resource.prlimit(os.getpid(), resource.RLIMIT_CPU, (100, 100)))`,
        [pid],
      ),
    ).toEqual(['EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'ok', 'ok', 'ok', 'ok']);
    expect(fs.readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8').trim()).toBe('0');
    fs.writeFileSync(`/proc/${pid}/oom_score_adj`, '500'); // the stopper may
    expect(fs.readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8').trim()).toBe('500');
  });

  test('attributes of protected files do not change: utimes, xattrs, inode flags; the agent still touches its state', async () => {
    const p = path.join(state, 'policies', 'p.yaml');
    const before = fs.statSync(p).mtimeMs;
    expect(
      py(
        `
import fcntl, struct
p, binary = sys.argv[1:3]
def ioctl(cmd, arg):
    fd = os.open(p, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, cmd, arg)
    finally:
        os.close(fd)
attempt(lambda: os.utime(p, (1, 1)))
attempt(lambda: os.utime(p))
attempt(lambda: os.utime(binary, (1, 1)))
attempt(lambda: os.setxattr(p, 'trusted.ew', b'2'))
attempt(lambda: os.setxattr(p, 'trusted.other', b'1'))
attempt(lambda: os.removexattr(p, 'trusted.ew'))
attempt(lambda: os.setxattr(os.path.dirname(p), 'trusted.ew', b'1'))
attempt(lambda: ioctl(0x40086602, struct.pack('l', 0x10)))  # FS_IOC_SETFLAGS FS_IMMUTABLE_FL (chattr +i)
attempt(lambda: ioctl(0x401c5820, bytes(28)))  # FS_IOC_FSSETXATTR
attempt(lambda: os.getxattr(p, 'trusted.ew'))`,
        [p, binary],
      ),
    ).toEqual(['EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'ok']);
    expect(fs.statSync(p).mtimeMs).toBe(before);
    expect(await ask('touch')).toBe('ok');
    expect(fs.statSync(p).mtimeMs).toBe(1_000_000);
  });

  test('nothing is mounted on or below protected inodes (mount(2) and move_mount(2)); mounts of them stay', () => {
    const src = path.join(work, 'mnt-src');
    expect(
      py(
        `
state, binary, src, elsewhere, view = sys.argv[1:6]
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
def mount(source, target, fstype, flags):
    if libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, None) != 0:
        raise OSError(ctypes.get_errno(), 'mount')
def move_mount_clone(source, target):
    fd = libc.syscall(428, -100, source.encode(), 1 | 0x80000)  # open_tree(AT_FDCWD, source, OPEN_TREE_CLONE|CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), 'open_tree')
    try:
        if libc.syscall(429, fd, b'', -100, target.encode(), 0x4) != 0:  # move_mount(..., MOVE_MOUNT_F_EMPTY_PATH)
            raise OSError(ctypes.get_errno(), 'move_mount')
    finally:
        os.close(fd)
def umount(target):
    if libc.umount2(target.encode(), 0) != 0:
        raise OSError(ctypes.get_errno(), 'umount')
attempt(lambda: mount(src, state, None, 4096))  # MS_BIND
attempt(lambda: mount('none', os.path.join(state, 'policies'), 'tmpfs', 0))
attempt(lambda: mount(elsewhere, binary, None, 4096))
attempt(lambda: mount('none', state, None, 1 << 18))  # MS_PRIVATE
attempt(lambda: move_mount_clone(src, state))
attempt(lambda: move_mount_clone(src, os.path.join(state, 'policies')))
attempt(lambda: umount(view))
attempt(lambda: mount('none', src, 'tmpfs', 0))
attempt(lambda: umount(src))`,
        [state, binary, src, elsewhere, view],
      ),
    ).toEqual(['EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'ok', 'ok']);
    expect(fs.readdirSync(path.join(state, 'policies'))).toContain('p.yaml');
    expect(fs.readdirSync(view)).toContain('p.yaml');
  });

  test('nothing new is mounted on directories above them where the agent would see it; own namespaces mount there freely', () => {
    const code = `
target_dirs = sys.argv[1:]
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
def mount(source, target, fstype, flags):
    if libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, None) != 0:
        raise OSError(ctypes.get_errno(), 'mount')
for t in target_dirs:
    attempt(lambda: mount('none', t, 'tmpfs', 0))`;
    const umount = `
libc = ctypes.CDLL(None, use_errno=True)
def umount(target):
    if libc.umount2(target.encode(), 0) != 0:
        raise OSError(ctypes.get_errno(), 'umount')
attempt(lambda: umount(sys.argv[1]))`;
    // the agent's mount namespace: work is above state, sharedFs above deep
    expect(py(code, [work, sharedFs])).toEqual(['EPERM', 'EPERM']);
    expect(py(umount, [sharedFs])).toEqual(['EPERM']);
    // propagation changes hide nothing
    expect(spawnSync('mount', ['--make-shared', sharedFs]).status).toBe(0);
    // a namespace of its own: onto the shared mount (its peer is the agent's) refused, private copies free
    expect(py(code, [sharedFs], ['unshare', '-m', '--propagation', 'unchanged'])).toEqual(['EPERM']);
    expect(py(code, [sharedFs, work], ['unshare', '-m', '--propagation', 'private'])).toEqual(['ok', 'ok']);
    // pivot_root: refused in its namespace only (elsewhere the kernel's own checks answer)
    const pivot = `
libc = ctypes.CDLL(None, use_errno=True)
def pivot_root(new, old):
    if libc.syscall(155, new.encode(), old.encode()) != 0:
        raise OSError(ctypes.get_errno(), 'pivot_root')
attempt(lambda: pivot_root(sys.argv[1], sys.argv[2]))`;
    expect(py(pivot, [sharedFs, deep])).toEqual(['EPERM']);
    expect(py(pivot, [sharedFs, deep], ['unshare', '-m', '--propagation', 'private'])).not.toEqual(['EPERM']);
    expect(fs.readdirSync(sharedFs)).toEqual(['deep']);
    expect(fs.readdirSync(work)).toContain('state');
  });

  test('refusals are counted by kind', async () => {
    const stats = JSON.parse(await ask('stats'));
    expect(stats.refused.signal).toBeGreaterThanOrEqual(6);
    expect(stats.refused.ptrace).toBeGreaterThanOrEqual(1);
    expect(stats.refused.path).toBeGreaterThanOrEqual(15);
    expect(stats.refused.map).toBeGreaterThanOrEqual(1);
    expect(stats.refused.umount).toBeGreaterThanOrEqual(3);
    expect(stats.refused.cgroup).toBeGreaterThanOrEqual(11);
    expect(stats.refused.process).toBeGreaterThanOrEqual(9); // /proc/<pid>/mem too
    expect(stats.refused.attr).toBeGreaterThanOrEqual(9);
    expect(stats.refused.mount).toBeGreaterThanOrEqual(10);
  });

  test('the escape hatch: the stopper stops it, and then everything is allowed again', async () => {
    agent!.kill('SIGTERM');
    expect(await agentExited).toBe(0);
    const p = path.join(state, 'policies', 'p.yaml');
    expect(
      py(`attempt(lambda: open(sys.argv[1], 'ab'))\nattempt(lambda: os.utime(sys.argv[1], (1, 1)))\nattempt(lambda: os.unlink(sys.argv[2]))`, [p, binary]),
    ).toEqual(['ok', 'ok', 'ok']);
    expect(spawnSync('umount', [view]).status).toBe(0);
    view = '';
    expect(spawnSync('mount', ['-t', 'tmpfs', 'tmpfs', work]).status).toBe(0); // above state: free again
    expect(spawnSync('umount', [work]).status).toBe(0);
    expect(spawnSync('umount', [sharedFs]).status).toBe(0);
    sharedFs = '';
    expect(fs.existsSync(pinRoot) ? fs.readdirSync(pinRoot) : []).toEqual([]); // its close() removed the pins
    expect(spawnSync('umount', [bpffs]).status).toBe(0);
    bpffs = '';
  });
});
