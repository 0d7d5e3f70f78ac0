// The bpf-lsm enforcer on a real BPF-LSM kernel: LSM programs really refuse
// exec, executable mappings, opens and sockets with EPERM, rules follow
// inodes (hard links, renames, bind mounts), rule sets switch atomically,
// capacity limits refuse a set as a whole.
//
// Only a kernel booted with bpf among its LSMs can run this (this machine's
// kernel refuses LSM programs): run it in the qemu guest,
//   tests/vm/run-in-vm.sh -- npx jest --runInBand tests/integration/lsm_enforcer.test.ts
// Anywhere else it fails, naming why. LSM programs apply to every process
// of the machine, which is why the guest (nothing else runs there) is the
// place for it. Work files live on /tmp (a tmpfs in the guest: on the
// guest's overlay root, stat() and the LSM hooks see different inodes).
import { ChildProcess, execFileSync, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { Action, EnforcerCode, EventKind, OperationCode, ProtoClass } from '../../agent/src/abi';
import { decodeBatch, DecisionEvent } from '../../agent/src/events';
import { LsmBackend } from '../../agent/src/lsm_backend';
import { LsmEnforcer, LsmResolvers, lsmAddon, NativeLsmPathEntry, targetResolver } from '../../agent/src/lsm_enforcer';
import { executableResolver } from '../../agent/src/net_enforcer';
import type { NativeAddon, NativeEventRing, NativeEventSink } from '../../agent/src/native';
import type { CompiledPolicySet, NetworkRule, PathRule } from '../../agent/src/policy/types';
import { probe } from '../../agent/src/probe';
import { ADDON, BUSYBOX, busyboxCopy, makeTempDir, run, waitFor } from '../helpers/system';

const PYTHON = '/usr/bin/python3';
const LDSO = '/lib64/ld-linux-x86-64.so.2';

type Decision = Pick<DecisionEvent, 'pid' | 'ruleId' | 'action' | 'operation' | 'enforcer' | 'ret' | 'flags' | 'resource' | 'exe'>;

/** Prelude of the python children: attempt() prints "<pid> <ok|ERRNO>". */
const PY_PRELUDE = `
import errno, mmap, os, socket, sys
def attempt(fn):
    try:
        fn()
        r = "ok"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    print(os.getpid(), r, flush=True)
`;

interface PyResult {
  pid: number;
  results: string[];
  stdout: string;
  stderr: string;
}

/** Runs python code (with the prelude) and returns every attempt()'s result. */
function py(code: string, args: string[] = [], exe = PYTHON): PyResult {
  const r = spawnSync(exe, ['-c', PY_PRELUDE + code, ...args], { encoding: 'utf8', timeout: 60_000 });
  const attempts = (r.stdout ?? '')
    .split('\n')
    .map((l) => l.trim().split(' '))
    .filter((f) => f.length === 2 && /^\d+$/.test(f[0]));
  return { pid: Number(attempts[0]?.[0] ?? 0), results: attempts.map((f) => f[1]), stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const readFile = (p: string) => py(`attempt(lambda: open(sys.argv[1], 'rb').read())`, [p]).results[0];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let nextId = 1;
function fileRule(target: string, over: Partial<PathRule> = {}): PathRule {
  return { ruleId: nextId++, action: 'Block', operation: 'File', target: { kind: 'path', path: target }, readOnly: false, ownerOnly: false, fromSource: [], ...over };
}
function dirRule(dir: string, recursive: boolean, over: Partial<PathRule> = {}): PathRule {
  return fileRule(dir, { target: { kind: 'dir', path: dir, recursive }, ...over });
}
function procRule(target: string, over: Partial<PathRule> = {}): PathRule {
  return fileRule(target, { operation: 'Process', ...over });
}
function netRule(protocol: NetworkRule['protocol'], over: Partial<NetworkRule> = {}): NetworkRule {
  return { ruleId: nextId++, action: 'Block', operation: 'Network', protocol, fromSource: [], ...over };
}

describe('bpf-lsm enforcer on a BPF-LSM kernel', () => {
  let addon: NativeAddon;
  let sink: NativeEventSink;
  let ring: NativeEventRing;
  let enforcer: LsmEnforcer;
  let decisions: Decision[] = [];
  let undecodable = 0;
  let work: string;
  let data: string;
  let mounted: string[] = [];

  /** Applies a rule set; fails the test on any error line. */
  const apply = (pathRules: PathRule[], netRules: NetworkRule[] = [], resolvers?: LsmResolvers) => {
    const r = enforcer.apply(pathRules, netRules, resolvers);
    expect(r.errors).toEqual([]);
    expect(r.applied).toBe(true);
  };

  async function decisionsFor(pid: number, atLeast = 1): Promise<Decision[]> {
    await waitFor(`${atLeast} decision(s) for pid ${pid}`, () => (decisions.filter((d) => d.pid === pid).length >= atLeast ? true : undefined), 5000);
    await sleep(300); // a duplicate would arrive by now
    return decisions.filter((d) => d.pid === pid);
  }

  beforeAll(() => {
    const problems: string[] = [];
    if (process.getuid?.() !== 0) problems.push('must run as root (LSM programs are attached)');
    if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
    for (const f of [PYTHON, BUSYBOX, LDSO]) if (!fs.existsSync(f)) problems.push(`${f} missing`);
    if (problems.length) throw new Error(`bpf-lsm integration tests cannot run: ${problems.join('; ')}`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    addon = require(ADDON) as NativeAddon;
    const report = probe(addon, 'auto');
    if (report.backend !== 'bpf-lsm') {
      throw new Error(
        `bpf-lsm integration tests need a kernel that runs BPF-LSM programs, and this one does not (${report.kernel}; ` +
          `probe: ${report.reasons.join('; ')}). Run them in the BPF-LSM guest: ` +
          'tests/vm/run-in-vm.sh -- npx jest --runInBand tests/integration/lsm_enforcer.test.ts',
      );
    }
    work = makeTempDir('lsm');
    data = path.join(work, 'data');
    fs.mkdirSync(data);
    fs.writeFileSync(path.join(data, 'neighbour'), 'neighbour'); // never named by a rule
    sink = new addon.EventSink((batch) => {
      const { events, errors } = decodeBatch(batch);
      undecodable += errors;
      for (const e of events) {
        if (e.kind !== EventKind.Decision) continue;
        const { pid, ruleId, action, operation, enforcer: by, ret, flags, resource, exe } = e;
        decisions.push({ pid, ruleId, action, operation, enforcer: by, ret, flags, resource, exe });
      }
    });
    ring = new addon.EventRing(sink, { ringBufferBytes: 4 << 20, pollIntervalMs: 5_000 });
    enforcer = new LsmEnforcer(addon, ring);
  });

  afterEach(() => {
    enforcer?.apply([], []);
    decisions = [];
    for (const m of mounted.reverse()) spawnSync('umount', [m]);
    mounted = [];
    const bad = undecodable;
    undecodable = 0;
    expect(bad).toBe(0);
  });

  afterAll(async () => {
    enforcer?.close();
    ring?.close();
    await sleep(200);
    sink?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('every hook is attached', () => {
    const paths = ['path_unlink', 'path_rmdir', 'path_mkdir', 'path_mknod', 'path_symlink', 'path_link', 'path_rename', 'path_truncate', 'path_chmod', 'path_chown'];
    expect(enforcer.attached().sort()).toEqual(
      ['bprm_check_security', 'file_mprotect', 'file_open', 'mmap_file', 'socket_accept', 'socket_bind', 'socket_connect', 'socket_create', 'socket_listen', 'socket_sendmsg', ...paths].sort(),
    );
  });

  // Process rules ---------------------------------------------------------------

  describe('exec', () => {
    let blocked: string;
    let shell: string;
    beforeAll(() => {
      blocked = busyboxCopy(work, 'blocked');
      shell = busyboxCopy(work, 'shell');
    });

    test('a blocked program is refused however it is named, with one decision naming program and caller', async () => {
      const rule = procRule(blocked);
      apply([rule]);
      const r = spawnSync(shell, ['sh', '-c', `echo $$; exec ${blocked} true`], { encoding: 'utf8' });
      const pid = Number(r.stdout.trim());
      expect(r.status).not.toBe(0);
      const ds = await decisionsFor(pid);
      expect(ds).toEqual([
        { pid, ruleId: rule.ruleId, action: Action.Block, operation: OperationCode.Process, enforcer: EnforcerCode.BpfLsm, ret: -1, flags: 0, resource: blocked, exe: shell },
      ]);
      // execveat of an O_PATH descriptor and fexecve of an O_RDONLY one reach the same inode
      const viaFd = py(
        `
fd = os.open(sys.argv[1], os.O_PATH)
attempt(lambda: os.execve(fd, ['x', 'true'], {}))
fd = os.open(sys.argv[1], os.O_RDONLY)
attempt(lambda: os.execve(fd, ['x', 'true'], {}))`,
        [blocked],
      );
      expect(viaFd.results).toEqual(['EPERM', 'EPERM']);
      // a hard link made after the rules were set is the same inode
      const late = path.join(work, 'late-link');
      fs.linkSync(blocked, late);
      expect(run(late, ['true']).spawnError).toBe('EPERM');
      // after a rename too
      const moved = path.join(work, 'moved-busybox');
      fs.renameSync(blocked, moved);
      expect(run(moved, ['true']).spawnError).toBe('EPERM');
      fs.renameSync(moved, blocked);
      expect(run(shell, ['true']).status).toBe(0);
    });

    test('the dynamic loader cannot run a blocked program, and its code cannot be mapped executable', async () => {
      const dynamicCopy = path.join(work, 'python-copy');
      fs.copyFileSync(PYTHON, dynamicCopy);
      fs.chmodSync(dynamicCopy, 0o755);
      const rule = procRule(blocked);
      const rule2 = procRule(dynamicCopy);
      apply([rule, rule2]);
      const viaLoader = spawnSync(LDSO, [dynamicCopy, '-c', 'print(1)'], { encoding: 'utf8' });
      expect(viaLoader.status).not.toBe(0);
      expect(viaLoader.stdout).toBe('');
      const maps = py(
        `
f = open(sys.argv[1], 'rb')
attempt(lambda: mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ))
attempt(lambda: mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC))`,
        [blocked],
      );
      expect(maps.results).toEqual(['ok', 'EPERM']);
      const ds = await decisionsFor(maps.pid);
      expect(ds.map((d) => [d.operation, d.ret, d.resource])).toEqual([[OperationCode.Process, -1, blocked]]);
      // mprotect to PROT_EXEC of a readable mapping (python's mmap has no mprotect: ctypes)
      const mprot = py(
        `
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
f = open(sys.argv[1], 'rb')
addr = libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_PRIVATE, f.fileno(), 0)
def protect():
    if libc.mprotect(ctypes.c_void_p(addr), 4096, mmap.PROT_READ | mmap.PROT_EXEC) != 0:
        raise OSError(ctypes.get_errno(), 'mprotect')
attempt(protect)`,
        [blocked],
      );
      expect(mprot.results).toEqual(['EPERM']);
    });

    test('directory rules: non-recursive covers the directory only, recursive everything below; scripts and their interpreter', () => {
      const tools = path.join(work, 'tools');
      const sub = path.join(tools, 'sub');
      fs.mkdirSync(sub, { recursive: true });
      const copy = (to: string) => {
        fs.copyFileSync(BUSYBOX, to);
        fs.chmodSync(to, 0o755);
        return to;
      };
      const top = copy(path.join(tools, 'bb')); // refused before busybox reads its name
      const deep = copy(path.join(sub, 'busybox')); // runs: busybox needs its own name
      apply([procRule(tools, { target: { kind: 'dir', path: tools, recursive: false } })]);
      expect(run(top, ['true']).spawnError).toBe('EPERM');
      expect(run(deep, ['true']).status).toBe(0);
      // a program installed into the directory after the rules: the directory's inode matches it
      const later = copy(path.join(tools, 'later'));
      expect(run(later, ['true']).spawnError).toBe('EPERM');
      apply([procRule(tools, { target: { kind: 'dir', path: tools, recursive: true } })]);
      expect(run(deep, ['true']).spawnError).toBe('EPERM');
      // a script in the directory is refused, and so is one elsewhere whose interpreter is blocked
      const script = path.join(tools, 'script.sh');
      fs.writeFileSync(script, `#!${shell} sh\necho hi\n`, { mode: 0o755 });
      expect(run(script, []).spawnError).toBe('EPERM');
      const outside = path.join(work, 'outside.sh');
      fs.writeFileSync(outside, `#!${deep} sh\necho hi\n`, { mode: 0o755 });
      expect(run(outside, []).spawnError).toBe('EPERM');
      apply([]);
      expect(run(outside, []).stdout).toBe('hi\n');
    });
  });

  // File rules ------------------------------------------------------------------

  describe('open', () => {
    test('a blocked file is refused by inode: hard links, bind mounts; linking or renaming it is refused; its neighbour reads', async () => {
      const secret = path.join(data, 'secret');
      const neighbour = path.join(data, 'neighbour');
      fs.writeFileSync(secret, 'secret');
      const link = path.join(work, 'secret-link');
      fs.linkSync(secret, link); // made before the rules
      const rule = fileRule(secret);
      apply([rule]);
      const r = py(`attempt(lambda: open(sys.argv[1], 'rb').read())`, [secret]);
      expect(r.results).toEqual(['EPERM']);
      expect(readFile(neighbour)).toBe('ok');
      const ds = await decisionsFor(r.pid);
      expect(ds).toEqual([
        { pid: r.pid, ruleId: rule.ruleId, action: Action.Block, operation: OperationCode.File, enforcer: EnforcerCode.BpfLsm, ret: -1, flags: expect.any(Number), resource: secret, exe: fs.realpathSync(PYTHON) },
      ]);
      expect(readFile(link)).toBe('EPERM');
      // path operations on it are writes: refused (CONFIG_SECURITY_PATH)
      const ops = py(
        `
p, w = sys.argv[1], sys.argv[2]
attempt(lambda: os.link(p, os.path.join(w, 'secret-late-link')))
attempt(lambda: os.rename(p, os.path.join(w, 'moved')))
attempt(lambda: os.unlink(p))
attempt(lambda: os.truncate(p, 0))
attempt(lambda: os.chmod(p, 0o600))`,
        [secret, work],
      );
      expect(ops.results).toEqual(['EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM']);
      expect(fs.statSync(secret).size).toBe(6); // not truncated
      const bind = path.join(work, 'bind');
      fs.mkdirSync(bind, { recursive: true });
      execFileSync('mount', ['--bind', data, bind]);
      mounted.push(bind);
      expect(readFile(path.join(bind, 'secret'))).toBe('EPERM');
      expect(readFile(path.join(bind, 'neighbour'))).toBe('ok');
      // the file bind-mounted over another name
      const over = path.join(work, 'over');
      fs.writeFileSync(over, 'x');
      execFileSync('mount', ['--bind', secret, over]);
      mounted.push(over);
      expect(readFile(over)).toBe('EPERM');
    });

    test('readOnly: reads pass; write, append, O_TRUNC (even read-only) and creating in a readOnly directory are refused', () => {
      const conf = path.join(data, 'conf');
      fs.writeFileSync(conf, 'config');
      const confDir = path.join(data, 'confdir');
      fs.mkdirSync(confDir);
      apply([fileRule(conf, { readOnly: true }), dirRule(confDir, false, { readOnly: true })]);
      const r = py(
        `
p = sys.argv[1]
attempt(lambda: open(p, 'rb').read())
attempt(lambda: os.close(os.open(p, os.O_WRONLY)))
attempt(lambda: os.close(os.open(p, os.O_WRONLY | os.O_APPEND)))
attempt(lambda: os.close(os.open(p, os.O_RDONLY | os.O_TRUNC)))
attempt(lambda: os.close(os.open(os.path.join(sys.argv[2], 'new'), os.O_RDONLY | os.O_CREAT, 0o644)))`,
        [conf, confDir],
      );
      expect(r.results).toEqual(['ok', 'EPERM', 'EPERM', 'EPERM', 'EPERM']);
      expect(fs.readFileSync(conf, 'utf8')).toBe('config');
    });

    test('directory rules: a non-recursive rule covers direct children (also files created later), a recursive one all depths, through a bind mount of a subdirectory too', () => {
      const dir = path.join(data, 'dir');
      const sub = path.join(dir, 'a', 'b');
      fs.mkdirSync(sub, { recursive: true });
      fs.writeFileSync(path.join(dir, 'top'), 'x');
      fs.writeFileSync(path.join(sub, 'deep'), 'x');
      apply([dirRule(dir, false)]);
      expect(readFile(path.join(dir, 'top'))).toBe('EPERM');
      expect(readFile(path.join(sub, 'deep'))).toBe('ok');
      // a file that arrives later is covered by the directory's inode (a rule
      // for one source, so that this process may move it in)
      const pyCopy = path.join(work, 'py-dir');
      fs.copyFileSync(PYTHON, pyCopy);
      fs.chmodSync(pyCopy, 0o755);
      apply([dirRule(dir, false, { fromSource: [{ kind: 'path', path: pyCopy }] })]);
      fs.writeFileSync(path.join(work, 'outside'), 'x');
      fs.renameSync(path.join(work, 'outside'), path.join(dir, 'moved-in'));
      expect(py(`attempt(lambda: open(sys.argv[1]).read())`, [path.join(dir, 'moved-in')], pyCopy).results).toEqual(['EPERM']);
      expect(readFile(path.join(dir, 'moved-in'))).toBe('ok');
      apply([dirRule(dir, true)]);
      expect(readFile(path.join(sub, 'deep'))).toBe('EPERM');
      const bind = path.join(work, 'bind-sub');
      fs.mkdirSync(bind, { recursive: true });
      execFileSync('mount', ['--bind', path.join(dir, 'a'), bind]);
      mounted.push(bind);
      expect(readFile(path.join(bind, 'b', 'deep'))).toBe('EPERM');
      expect(readFile(path.join(data, 'neighbour'))).toBe('ok');
    });

    test('paths deeper than the walk goes are inside every recursive rule (fail-safe); shallower ones are decided normally', () => {
      const other = path.join(work, 'elsewhere');
      fs.mkdirSync(other, { recursive: true });
      const code = `
depth = int(sys.argv[2])
os.chdir(sys.argv[1])
for i in range(depth):
    try:
        os.mkdir('d')
    except FileExistsError:
        pass
    os.chdir('d')
with open('f', 'w') as f:
    f.write('x')
attempt(lambda: open('f', 'rb').read())`;
      const deepRoot = path.join(work, 'deep');
      fs.mkdirSync(deepRoot);
      apply([dirRule(other, true)]);
      expect(py(code, [deepRoot, '100']).results).toEqual(['ok']);
      const limit = lsmAddon(addon).lsmLimits.walkMax;
      // the file's creation is an open too: it is refused already
      const tooDeep = py(code, [deepRoot, String(limit + 20)]);
      expect(tooDeep.stderr + tooDeep.results.join()).toMatch(/PermissionError|EPERM/);
      apply([]);
      expect(py(code, [deepRoot, String(limit + 20)]).results).toEqual(['ok']);
      // remove the chain from the bottom (its paths are longer than PATH_MAX)
      const rm = py(
        `
os.chdir(sys.argv[1])
depth = 0
while os.path.isdir('d'):
    os.chdir('d')
    depth += 1
for i in range(depth):
    if os.path.exists('f'):
        os.unlink('f')
    os.chdir('..')
    os.rmdir('d')
if os.path.exists('f'):
    os.unlink('f')
attempt(lambda: None)`,
        [deepRoot],
      );
      expect({ results: rm.results, stderr: rm.stderr }).toEqual({ results: ['ok'], stderr: '' });
    }, 240_000);

    test('fromSource and ownerOnly', () => {
      fs.chmodSync(work, 0o755); // nobody must reach the file for ownerOnly to be what refuses it
      fs.chmodSync(data, 0o755);
      const f = path.join(data, 'owned');
      fs.writeFileSync(f, 'x', { mode: 0o644 });
      const pyCopy = path.join(work, 'py-source');
      fs.copyFileSync(PYTHON, pyCopy);
      fs.chmodSync(pyCopy, 0o755);
      apply([fileRule(f, { fromSource: [{ kind: 'path', path: pyCopy }] })]);
      expect(py(`attempt(lambda: open(sys.argv[1]).read())`, [f], pyCopy).results).toEqual(['EPERM']);
      expect(readFile(f)).toBe('ok');
      apply([fileRule(f, { ownerOnly: true })]);
      expect(readFile(f)).toBe('ok'); // root owns it
      const asNobody = py(`os.setgid(65534); os.setuid(65534)\nattempt(lambda: open(sys.argv[1]).read())`, [f]);
      expect(asNobody.results).toEqual(['EPERM']);
    });

    test('Audit lets the open through and reports it once, with ret 0; Block wins over Audit on the same file', async () => {
      const f = path.join(data, 'audited');
      fs.writeFileSync(f, 'x');
      const audit = fileRule(f, { action: 'Audit' });
      apply([audit]);
      const r = py(`attempt(lambda: open(sys.argv[1], 'rb').read())`, [f]);
      expect(r.results).toEqual(['ok']);
      const ds = await decisionsFor(r.pid);
      expect(ds).toHaveLength(1);
      expect(ds[0]).toMatchObject({ ruleId: audit.ruleId, action: Action.Audit, ret: 0, resource: f });
      const block = dirRule(data, true);
      apply([fileRule(f, { action: 'Audit' }), block]);
      expect(readFile(f)).toBe('EPERM');
    });

    test('a file replaced by a new inode at the rule path is covered again once the backend resolves the set again', async () => {
      // a rule for one source only: other processes may replace the file
      const f = path.join(data, 'replaced');
      fs.writeFileSync(f, 'v1');
      const pyCopy = path.join(work, 'py-replaced');
      fs.copyFileSync(PYTHON, pyCopy);
      fs.chmodSync(pyCopy, 0o755);
      const readAsCopy = () => py(`attempt(lambda: open(sys.argv[1], 'rb').read())`, [f], pyCopy).results[0];
      const backend = new LsmBackend(addon, ring);
      try {
        enforcer.close(); // one enforcer at a time: the backend has its own
        const set: CompiledPolicySet = { pathRules: [fileRule(f, { fromSource: [{ kind: 'path', path: pyCopy }] })], networkRules: [], meta: new Map() };
        expect(backend.apply(set).errors).toEqual([]);
        expect(readAsCopy()).toBe('EPERM');
        const tmp = path.join(data, 'replaced.tmp');
        fs.writeFileSync(tmp, 'v2');
        fs.renameSync(tmp, f); // what editors and package managers do
        await waitFor('the new inode to be blocked', () => (readAsCopy() === 'EPERM' ? true : undefined), 10_000);
        expect(fs.readFileSync(f, 'utf8')).toBe('v2');
      } finally {
        backend.close();
        enforcer = new LsmEnforcer(addon, ring);
      }
      expect(readAsCopy()).toBe('ok');
    });

    test('path operations are writes: a readOnly directory keeps its entries, names and modes; reads pass', () => {
      const ro = path.join(data, 'ro');
      fs.mkdirSync(path.join(ro, 'sub'), { recursive: true });
      fs.writeFileSync(path.join(ro, 'f'), 'x');
      fs.writeFileSync(path.join(work, 'incoming'), 'x');
      apply([dirRule(ro, true, { readOnly: true })]);
      const r = py(
        `
d, w = sys.argv[1], sys.argv[2]
f = os.path.join(d, 'f')
attempt(lambda: open(f, 'rb').read())
attempt(lambda: os.unlink(f))
attempt(lambda: os.rename(f, os.path.join(w, 'out')))
attempt(lambda: os.rename(os.path.join(w, 'incoming'), os.path.join(d, 'in')))
attempt(lambda: os.link(f, os.path.join(w, 'hard')))
attempt(lambda: os.mkdir(os.path.join(d, 'new')))
attempt(lambda: os.rmdir(os.path.join(d, 'sub')))
attempt(lambda: os.symlink('/etc/passwd', os.path.join(d, 'sym')))
attempt(lambda: os.mkfifo(os.path.join(d, 'fifo')))
attempt(lambda: os.truncate(f, 0))
attempt(lambda: os.chmod(f, 0o600))
attempt(lambda: os.chown(f, 1, 1))
attempt(lambda: os.mkdir(os.path.join(w, 'elsewhere-ok')))`,
        [ro, work],
      );
      expect(r.results).toEqual(['ok', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'ok']);
      expect(fs.readdirSync(ro).sort()).toEqual(['f', 'sub']);
    });

    test('an overlay mounted over a protected directory hides neither its files nor its programs', () => {
      const lower = path.join(work, 'ovl-lower');
      fs.mkdirSync(lower);
      fs.writeFileSync(path.join(lower, 'f'), 'x');
      const prog = path.join(lower, 'busybox');
      fs.copyFileSync(BUSYBOX, prog);
      fs.chmodSync(prog, 0o755);
      const exact = path.join(work, 'ovl-exact');
      fs.writeFileSync(exact, 'x');
      apply([dirRule(lower, false), procRule(prog)]);
      const m = path.join(work, 'ovl');
      for (const d of ['up', 'work', 'm']) fs.mkdirSync(path.join(m, d), { recursive: true });
      execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${m}/up,workdir=${m}/work`, `${m}/m`]);
      mounted.push(`${m}/m`);
      expect(readFile(path.join(m, 'm', 'f'))).toBe('EPERM');
      expect(run(path.join(m, 'm', 'busybox'), ['true']).spawnError).toBe('EPERM');
    });
  });

  // Network rules ------------------------------------------------------------------

  describe('sockets', () => {
    test('udp refused at creation, and at bind/connect/send for a socket made before the rules; tcp works', async () => {
      const rule = netRule('udp');
      const child = spawn(
        PYTHON,
        [
          '-c',
          PY_PRELUDE +
            `
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
print('ready', flush=True)
sys.stdin.readline()
attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
attempt(lambda: s.bind(('127.0.0.1', 0)))
attempt(lambda: s.sendto(b'x', ('127.0.0.1', 9)))
attempt(lambda: s.connect(('127.0.0.1', 9)))
attempt(lambda: t.bind(('127.0.0.1', 0)))
attempt(lambda: t.listen())`,
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      const out = await childOutput(child, () => {
        apply([], [rule]);
      });
      const results = out.split('\n').filter((l) => /^\d+ /.test(l)).map((l) => l.split(' ')[1]);
      expect(results).toEqual(['EPERM', 'EPERM', 'EPERM', 'EPERM', 'EPERM', 'ok', 'ok']);
      const pid = child.pid!;
      const ds = await decisionsFor(pid, 5);
      expect(ds).toHaveLength(5);
      for (const d of ds) expect(d).toMatchObject({ ruleId: rule.ruleId, operation: OperationCode.Network, ret: -1, resource: 'udp', flags: ProtoClass.Udp, enforcer: EnforcerCode.BpfLsm });
    });

    test('a tcp rule refuses listen on a socket made before it; Audit is reported at creation only; fromSource', async () => {
      const child = spawn(
        PYTHON,
        [
          '-c',
          PY_PRELUDE +
            `
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.bind(('127.0.0.1', 0))
print('ready', flush=True)
sys.stdin.readline()
attempt(lambda: t.listen())`,
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      const out = await childOutput(child, () => apply([], [netRule('tcp')]));
      expect(out.split('\n').filter((l) => /^\d+ /.test(l)).map((l) => l.split(' ')[1])).toEqual(['EPERM']);

      apply([], [netRule('tcp', { action: 'Audit' })]);
      const a = py(`attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))`);
      expect(a.results).toEqual(['ok']);
      const ds = await decisionsFor(a.pid);
      expect(ds.map((d) => [d.action, d.ret, d.resource])).toEqual([[Action.Audit, 0, 'tcp']]);

      const pyCopy = path.join(work, 'py-net');
      fs.copyFileSync(PYTHON, pyCopy);
      fs.chmodSync(pyCopy, 0o755);
      apply([], [netRule('udp', { fromSource: [{ kind: 'path', path: pyCopy }] })]);
      expect(py(`attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))`, [], pyCopy).results).toEqual(['EPERM']);
      expect(py(`attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))`).results).toEqual(['ok']);
    });
  });

  // Rule set replacement and capacity ----------------------------------------------

  test('replacing rule sets never lets a blocked file through (hundreds of switches under a tight open loop)', async () => {
    const f = path.join(data, 'always-blocked');
    fs.writeFileSync(f, 'x');
    const fillers = Array.from({ length: 50 }, (_, i) => {
      const p = path.join(data, `filler-${i}`);
      fs.writeFileSync(p, 'x');
      return p;
    });
    // the two sets block the file through different keys: the exact inode, or its directory
    const setA = () => [fileRule(f), ...fillers.map((p) => fileRule(p, { action: 'Audit' }))];
    const setB = () => [dirRule(data, false), ...fillers.slice(0, 25).map((p) => fileRule(p, { readOnly: true }))];
    apply(setA());
    const child = spawn(
      PYTHON,
      [
        '-c',
        `
import os, sys
ok = denied = other = 0
sys.stdout.write('ready\\n'); sys.stdout.flush()
while True:
    try:
        fd = os.open(sys.argv[1], os.O_RDONLY)
        os.close(fd)
        ok += 1
    except PermissionError:
        denied += 1
    except OSError:
        other += 1
    if os.path.exists(sys.argv[2]):
        break
print(ok, denied, other, flush=True)`,
        f,
        path.join(work, 'stop-loop'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let switches = 0;
    const out = await childOutput(child, async () => {
      const deadline = Date.now() + 8000;
      while (Date.now() < deadline || switches < 200) {
        apply(switches % 2 === 0 ? setB() : setA());
        switches++;
        if (switches % 20 === 0) await sleep(1); // let the loop's decisions drain
      }
      fs.writeFileSync(path.join(work, 'stop-loop'), '');
    });
    const [ok, denied, other] = out.trim().split('\n').pop()!.split(' ').map(Number);
    console.log(`atomic replacement: ${switches} switches, ${denied} opens refused, ${ok} let through, ${other} other errors`);
    expect(switches).toBeGreaterThanOrEqual(200);
    expect(denied).toBeGreaterThan(1000);
    expect(ok).toBe(0);
    expect(other).toBe(0);
  }, 240_000);

  test('capacity: the full path map (65,536 entries, of them 10,000+ rules) is enforced; one more refuses the whole set and keeps the previous one', () => {
    const limits = lsmAddon(addon).lsmLimits;
    const f = path.join(data, 'capacity');
    fs.writeFileSync(f, 'x');
    const real = targetResolver();
    // fake inodes for the bulk: the kernel map does not care whether they exist
    const fakeDev = 0xfff00000n;
    const resolvers: LsmResolvers = {
      target: (p) => (p.startsWith('/fake/') ? { dev: fakeDev, ino: BigInt(p.slice(6)), isDir: false } : real(p)),
      source: executableResolver(),
    };
    const bulk = (n: number) => Array.from({ length: n }, (_, i) => fileRule(`/fake/${i + 1}`));
    const t0 = Date.now();
    apply([fileRule(f), ...bulk(limits.maxPathEntries - 1)], [], resolvers);
    const took = Date.now() - t0;
    expect(enforcer.stats().pathEntries).toBe(limits.maxPathEntries);
    expect(readFile(f)).toBe('EPERM');
    expect(readFile(path.join(data, 'neighbour'))).toBe('ok');
    console.log(`capacity: ${limits.maxPathEntries} path entries applied in ${took} ms`);

    const over = enforcer.apply([fileRule(path.join(data, 'neighbour')), ...bulk(limits.maxPathEntries)], [], resolvers);
    expect(over.applied).toBe(false);
    expect(over.errors).toEqual([expect.stringMatching(/bpf-lsm rule set refused: 65537 path entries .* the previous rules stay in force/)]);
    expect(readFile(f)).toBe('EPERM'); // previous set
    expect(readFile(path.join(data, 'neighbour'))).toBe('ok');

    // the addon refuses an oversized set itself too
    const native = new (lsmAddon(addon).LsmEnforcer)(ring);
    try {
      const entry = (i: number): NativeLsmPathEntry => ({
        workload: 0n,
        op: 2,
        dev: fakeDev,
        ino: BigInt(i + 1),
        srcDev: 0n,
        srcIno: 0n,
        verdicts: Array.from({ length: limits.variants }, () => ({ ruleId: 1, action: 1 })),
        hasSourced: false,
      });
      expect(() => native.setRules({ paths: Array.from({ length: limits.maxPathEntries + 1 }, (_, i) => entry(i)), net: [] })).toThrow(
        /65537 paths entries, at most 65536 are supported; the rule set was refused/,
      );
      expect(() => native.setRules({ paths: [{ ...entry(0), workload: -1n }], net: [] })).toThrow(/paths\[0\]\.workload must be a bigint in 0n\.\.2n\*\*64n-1n/);
    } finally {
      native.close();
    }
  }, 240_000);

  test('costs: the kernel run time of file_open with the full rule map (bpf_stats)', () => {
    enforcer.enableStats();
    const f = path.join(data, 'bench');
    fs.writeFileSync(f, 'x');
    const real = targetResolver();
    const resolvers: LsmResolvers = {
      target: (p) => (p.startsWith('/fake/') ? { dev: 0xfff00000n, ino: BigInt(p.slice(6)), isDir: false } : real(p)),
      source: executableResolver(),
    };
    const measure = (label: string) => {
      const before = enforcer.stats().programs.find((p) => p.name === 'file_open')!;
      const r = py(`
for i in range(5000):
    os.close(os.open(sys.argv[1], os.O_RDONLY))
attempt(lambda: None)`, [f]);
      expect(r.results).toEqual(['ok']);
      const after = enforcer.stats().programs.find((p) => p.name === 'file_open')!;
      const runs = after.runCount - before.runCount;
      const ns = (after.runTimeNs - before.runTimeNs) / Math.max(1, runs);
      console.log(`bpf_stats file_open, ${label}: ${runs} runs, ${ns.toFixed(0)} ns per run (guest time, relative only)`);
      expect(runs).toBeGreaterThanOrEqual(5000);
    };
    const exact = (n: number) => Array.from({ length: n }, (_, i) => fileRule(`/fake/${i + 1}`));
    apply([]);
    measure('no rules');
    apply(exact(100), [], resolvers);
    measure('100 exact file rules');
    apply(exact(10_000), [], resolvers);
    measure('10,000 exact file rules');
    apply([dirRule(path.join(work, 'elsewhere'), true), ...exact(10_000)], [], resolvers);
    measure('10,000 exact rules + 1 recursive directory rule (walk to /)');
  }, 240_000);

  // Pinned state (kill -9, release(), adoption, unload): tests/integration/lsm_pinning.test.ts.

  test('close() detaches everything: what was refused is allowed again', () => {
    const f = path.join(data, 'last');
    fs.writeFileSync(f, 'x');
    apply([fileRule(f)], [netRule('udp')]);
    expect(readFile(f)).toBe('EPERM');
    enforcer.close();
    expect(readFile(f)).toBe('ok');
    expect(py(`attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))`).results).toEqual(['ok']);
    enforcer = new LsmEnforcer(addon, ring);
  });
});

/**
 * Waits for a child to print "ready", runs `during` (sync or async), feeds
 * it a line on stdin when it has one, and returns everything it printed
 * once it exits.
 */
async function childOutput(child: ChildProcess, during: () => void | Promise<void>): Promise<string> {
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => (out += d));
  child.stderr!.on('data', (d: string) => (err += d));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  await waitFor('the child to be ready', () => (out.includes('ready') ? true : undefined), 30_000);
  await during();
  child.stdin?.write('go\n');
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const status = await closed;
  clearTimeout(timer);
  if (status !== 0) throw new Error(`child exited with ${status}: ${err}`);
  return out;
}
