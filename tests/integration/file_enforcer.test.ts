// The compat process/file enforcer on the real kernel: fanotify permission
// events really refuse exec and open with EPERM, and every decision is
// reported once through the EventSink.
//
// Every rule names only files under this run's temporary directory, so other
// processes on the machine are never affected, and every enforcer is closed
// in afterEach (closing the group drops its marks and allows anything
// pending), also when a test fails.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { Action, EnforcerCode, EventKind, OperationCode } from '../../agent/src/abi';
import { decodeBatch, DecisionEvent } from '../../agent/src/events';
import { CompatFileEnforcerStats, FileEnforcer } from '../../agent/src/file_enforcer';
import type { NativeAddon, NativeEventSink, NativeFileEnforcer, NativeFileRule } from '../../agent/src/native';
import type { PathRule, SourceMatch } from '../../agent/src/policy/types';
import { ADDON, BUSYBOX, busyboxCopy, makeTempDir, run, waitFor } from '../helpers/system';

const PYTHON = '/usr/bin/python3';
const LOADER = ['/lib64/ld-linux-x86-64.so.2', '/lib/ld-linux-aarch64.so.1', '/lib/ld-linux-armhf.so.3'].find((p) =>
  fs.existsSync(p),
);

function requireEnvironment(): void {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('must run as root (fanotify permission events need CAP_SYS_ADMIN)');
  if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build:native`);
  if (!fs.existsSync(BUSYBOX)) problems.push(`${BUSYBOX} missing: install busybox-static`);
  if (!fs.existsSync(PYTHON)) problems.push(`${PYTHON} missing (used to call openat2)`);
  if (!LOADER) problems.push('no glibc dynamic loader found (used to run a program through ld.so)');
  if (!fs.existsSync('/usr/bin/true')) problems.push('/usr/bin/true missing (a dynamically linked program)');
  if (problems.length) throw new Error(`file enforcer tests cannot run: ${problems.join('; ')}`);
}

let addon: NativeAddon;
let sink: NativeEventSink;
const decisions: DecisionEvent[] = [];
let decodeErrors = 0;
let live: { close(): void }[] = [];
let tmp: string;
let tools: string; // an unblocked busybox: the shell and cat of the tests
let caseNo = 0;

beforeAll(() => {
  requireEnvironment();
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  addon = require(ADDON) as NativeAddon;
  sink = new addon.EventSink((batch) => {
    const decoded = decodeBatch(batch);
    decodeErrors += decoded.errors;
    for (const ev of decoded.events) if (ev.kind === EventKind.Decision) decisions.push(ev);
  });
  tmp = makeTempDir('fanotify');
  fs.chmodSync(tmp, 0o755); // the ownerOnly test reads as another uid
  tools = busyboxCopy(tmp, 'tools');
});

afterEach(() => {
  for (const e of live) e.close();
  live = [];
});

afterAll(() => {
  for (const e of live) e.close();
  sink?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function enforcer(): NativeFileEnforcer {
  const e = new addon.FileEnforcer(sink);
  live.push(e);
  return e;
}

function rule(r: Partial<NativeFileRule> & { ruleId: number; path: string }): NativeFileRule {
  return { action: Action.Block, exec: false, isDir: false, recursive: false, readOnly: false, sources: [], ...r };
}

/** A fresh directory for one test. */
function caseDir(): string {
  const d = path.join(tmp, `case${++caseNo}`);
  fs.mkdirSync(d);
  return d;
}

function writeFile(p: string, content: string): string {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  return p;
}

/** `cat` through the unblocked busybox: 'ok:<content>' or the error text. */
function cat(file: string, exe = tools, cwd?: string): string {
  const r = run(exe, ['cat', file], { cwd });
  if (r.spawnError) return `spawn ${r.spawnError}`;
  return r.status === 0 ? `ok:${r.stdout}` : r.stderr.trim();
}

const DENIED = /Operation not permitted/;
const O_ACCMODE = 3;

function statsOf(fe: NativeFileEnforcer): CompatFileEnforcerStats {
  return fe.stats() as CompatFileEnforcerStats;
}

function errnoOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

/** Decisions of one rule, after waiting for `count` of them and a little longer for extras. */
async function decisionsOf(ruleId: number, count: number): Promise<DecisionEvent[]> {
  await waitFor(`${count} decision(s) of rule ${ruleId}`, () =>
    decisions.filter((d) => d.ruleId === ruleId).length >= count ? true : undefined,
  );
  await new Promise((r) => setTimeout(r, 300));
  return decisions.filter((d) => d.ruleId === ruleId);
}

/** openat2 from a python child: 'ok' or the errno name. */
function openat2(file: string, flags: number): string {
  const script = `
import ctypes, errno, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
how = ctypes.create_string_buffer(struct.pack('QQQ', ${flags}, 0, 0))
fd = libc.syscall(437, -100, sys.argv[1].encode(), how, 24)
print('ok' if fd >= 0 else errno.errorcode[ctypes.get_errno()])
`;
  const r = run(PYTHON, ['-c', script, file]);
  if (r.status !== 0) throw new Error(`python openat2 child failed: ${r.stderr}`);
  return r.stdout.trim();
}

describe('compat file enforcer (fanotify)', () => {
  test('exec of a blocked binary fails with EPERM directly, via hard link, symlink and relative path', () => {
    const dir = caseDir();
    const prog = busyboxCopy(dir, 'blocked');
    const hard = path.join(dir, 'hardlink');
    fs.linkSync(prog, hard);
    const sym = path.join(dir, 'symlink');
    fs.symlinkSync(prog, sym);
    const neighbour = busyboxCopy(dir, 'neighbour');
    expect(run(prog, ['true']).status).toBe(0);

    const fe = enforcer();
    expect(fe.setRules([rule({ ruleId: 101, exec: true, path: prog })])).toEqual({ marks: 1, errors: [] });

    expect(run(prog, ['true']).spawnError).toBe('EPERM');
    expect(run(hard, ['true']).spawnError).toBe('EPERM');
    expect(run(sym, ['true']).spawnError).toBe('EPERM');
    expect(run('./blocked/busybox', ['true'], { cwd: dir }).spawnError).toBe('EPERM');
    // from another program's execve, and execveat through an O_PATH fd
    const viaShell = run(tools, ['sh', '-c', `exec ${prog} true`]);
    expect(viaShell.status).not.toBe(0);
    expect(viaShell.stderr).toMatch(/Permission denied|Operation not permitted/);
    const execveat = run(PYTHON, [
      '-c',
      `import os\nfd = os.open(${JSON.stringify(prog)}, os.O_PATH)\ntry:\n  os.execve(fd, ['x', 'true'], {})\nexcept OSError as e:\n  print(e.errno)`,
    ]);
    expect(execveat.stdout.trim()).toBe('1'); // EPERM
    // reading the blocked binary is not exec: process rules leave it alone
    expect(run(tools, ['wc', '-c', prog]).stdout.trim()).toBe(`${fs.statSync(BUSYBOX).size} ${prog}`);
    expect(run(neighbour, ['true']).status).toBe(0);
    expect(fe.stats()).toMatchObject({ denied: 6, marks: 1 });
  });

  test('running a blocked dynamic program through the dynamic loader (ld.so prog) is blocked too', () => {
    const dir = caseDir();
    const prog = path.join(dir, 'true');
    fs.copyFileSync('/usr/bin/true', prog);
    fs.chmodSync(prog, 0o755);
    expect(run(LOADER as string, [prog]).status).toBe(0);
    const fe = enforcer();
    expect(fe.setRules([rule({ ruleId: 121, exec: true, path: prog })]).errors).toEqual([]);
    const viaLoader = run(LOADER as string, [prog]);
    expect(viaLoader.status).not.toBe(0);
    expect(viaLoader.stderr).toMatch(/Operation not permitted/);
    expect(run(prog, []).spawnError).toBe('EPERM');
    // other programs still run through the loader; the blocked one can still be read
    expect(run(LOADER as string, ['/usr/bin/true']).status).toBe(0);
    expect(run(tools, ['wc', '-c', prog]).status).toBe(0);
  });

  test('a symlink in the rule path is resolved, and a new file replacing the target is blocked too', async () => {
    const dir = caseDir();
    const prog = busyboxCopy(dir, 'real');
    fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 'alias'));
    const fe = enforcer();
    expect(fe.setRules([rule({ ruleId: 111, exec: true, path: path.join(dir, 'alias', 'busybox') })]).errors).toEqual(
      [],
    );
    expect(run(prog, ['true']).spawnError).toBe('EPERM');

    // a package upgrade: new inode renamed over the path
    const staged = busyboxCopy(dir, 'staged');
    expect(run(staged, ['true']).status).toBe(0);
    fs.renameSync(staged, prog);
    await waitFor('the replaced target to be blocked', () =>
      run(prog, ['true']).spawnError === 'EPERM' ? true : undefined,
    );
  });

  test('reading a blocked file fails (also via hard link, symlink, relative path, and in this process); its neighbour works', () => {
    const dir = caseDir();
    const secret = writeFile(path.join(dir, 'secret'), 'top secret');
    const neighbour = writeFile(path.join(dir, 'neighbour'), 'public');
    const fe = enforcer();
    expect(fe.setRules([rule({ ruleId: 201, path: secret })]).errors).toEqual([]);

    expect(cat(secret)).toMatch(DENIED);
    expect(cat(neighbour)).toBe('ok:public');
    const hard = path.join(tmp, `hard-${caseNo}`); // made after the rule, elsewhere
    fs.linkSync(secret, hard);
    expect(cat(hard)).toMatch(DENIED);
    const sym = path.join(dir, 'sym');
    fs.symlinkSync(secret, sym);
    expect(cat(sym)).toMatch(DENIED);
    expect(cat('./secret', tools, dir)).toMatch(DENIED);
    // the agent's own process: denied too, and no deadlock (the answer comes from a C++ thread)
    expect(errnoOf(() => fs.readFileSync(secret))).toBe('EPERM');
    expect(fs.readFileSync(neighbour, 'utf8')).toBe('public');
    // moved elsewhere: the inode is still the rule's
    const moved = path.join(tmp, `moved-${caseNo}`);
    fs.renameSync(secret, moved);
    expect(cat(moved)).toMatch(DENIED);
  });

  test('readOnly: reads work, every kind of open for writing is blocked', async () => {
    const dir = caseDir();
    const file = writeFile(path.join(dir, 'config'), 'v1');
    const fe = enforcer();
    expect(fe.setRules([rule({ ruleId: 301, path: file, readOnly: true })]).errors).toEqual([]);

    expect(cat(file)).toBe('ok:v1');
    expect(fs.readFileSync(file, 'utf8')).toBe('v1');
    for (const mode of ['r+', 'w', 'a', 'a+', 'w+']) expect([mode, errnoOf(() => fs.openSync(file, mode))]).toEqual([mode, 'EPERM']);
    // O_RDONLY|O_TRUNC truncates on Linux: a write
    expect(errnoOf(() => fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_TRUNC))).toBe('EPERM');
    const append = run(tools, ['sh', '-c', `echo x >> ${file}`]);
    expect(append.status).not.toBe(0);
    // openat2: the flags live in the caller's memory, racy to read: counted as a write (fail closed)
    expect(openat2(file, fs.constants.O_WRONLY)).toBe('EPERM');
    expect(openat2(file, fs.constants.O_RDONLY)).toBe('EPERM');
    expect(fs.readFileSync(file, 'utf8')).toBe('v1');
    // the flags are read from the acting thread (FAN_REPORT_TID), not the
    // thread group leader (here blocked in join(), which would count as unknown)
    const threaded = run(PYTHON, [
      '-c',
      `import errno, os, sys, threading
res = {}
def attempt(name, flags):
    try:
        os.close(os.open(sys.argv[1], flags)); res[name] = 'ok'
    except OSError as e:
        res[name] = errno.errorcode[e.errno]
for name, flags in (('read', os.O_RDONLY), ('write', os.O_WRONLY)):
    t = threading.Thread(target=attempt, args=(name, flags)); t.start(); t.join()
print(res['read'], res['write'])`,
      file,
    ]);
    expect(threaded.stdout.trim()).toBe('ok EPERM');

    const events = await decisionsOf(301, 10);
    const writes = events.filter((d) => d.flags !== -1 && (d.flags & O_ACCMODE) !== fs.constants.O_RDONLY);
    expect(writes.length).toBeGreaterThan(0);
    expect(events.every((d) => d.action === Action.Block && d.operation === OperationCode.File)).toBe(true);
  });

  test('directory rules: non-recursive covers direct children only; recursive covers the tree, new subdirectories and hard links to its files', async () => {
    const dir = caseDir();
    const flatTop = writeFile(path.join(dir, 'flat', 'a'), 'a');
    const flatSub = writeFile(path.join(dir, 'flat', 'sub', 'b'), 'b');
    const treeTop = writeFile(path.join(dir, 'tree', 'a'), 'a');
    const treeSub = writeFile(path.join(dir, 'tree', 'sub', 'b'), 'b');
    const treeDeep = writeFile(path.join(dir, 'tree', 'sub', 'deeper', 'c'), 'c');
    const outside = writeFile(path.join(dir, 'outside'), 'out');
    const fe = enforcer();
    const result = fe.setRules([
      rule({ ruleId: 401, path: path.join(dir, 'flat') + '/', isDir: true }),
      rule({ ruleId: 402, path: path.join(dir, 'tree'), isDir: true, recursive: true }),
    ]);
    expect(result.errors).toEqual([]);

    expect(cat(flatTop)).toMatch(DENIED);
    expect(cat(flatSub)).toBe('ok:b');
    expect(cat(treeTop)).toMatch(DENIED);
    expect(cat(treeSub)).toMatch(DENIED);
    expect(cat(treeDeep)).toMatch(DENIED);
    expect(cat(outside)).toBe('ok:out');
    // a hard link made elsewhere to a file that was in the tree when the rules were set
    const hard = path.join(dir, 'hard-to-deep');
    fs.linkSync(treeDeep, hard);
    expect(cat(hard)).toMatch(DENIED);

    // subdirectories created after the rule (one, then two levels at once)
    const before = fe.stats().marks;
    fs.mkdirSync(path.join(dir, 'tree', 'new'));
    fs.mkdirSync(path.join(dir, 'tree', 'n1', 'n2'), { recursive: true });
    await waitFor('new subdirectories to be marked', () => (fe.stats().marks >= before + 3 ? true : undefined));
    const staged1 = writeFile(path.join(dir, 'staged1'), 'new1');
    const staged2 = writeFile(path.join(dir, 'staged2'), 'new2');
    fs.renameSync(staged1, path.join(dir, 'tree', 'new', 'x'));
    fs.renameSync(staged2, path.join(dir, 'tree', 'n1', 'n2', 'y'));
    expect(cat(path.join(dir, 'tree', 'new', 'x'))).toMatch(DENIED);
    expect(cat(path.join(dir, 'tree', 'n1', 'n2', 'y'))).toMatch(DENIED);
    // a file moved into the non-recursive directory is matched by its path
    const staged3 = writeFile(path.join(dir, 'staged3'), 'new3');
    fs.renameSync(staged3, path.join(dir, 'flat', 'moved-in'));
    expect(cat(path.join(dir, 'flat', 'moved-in'))).toMatch(DENIED);
    expect(statsOf(fe).watchErrors).toBe(0);
  });

  test('process directory rule blocks every binary in the directory', () => {
    const dir = caseDir();
    const a = busyboxCopy(path.join(dir, 'bin'), 'a');
    const elsewhere = busyboxCopy(dir, 'elsewhere');
    const fe = enforcer();
    expect(fe.setRules([rule({ ruleId: 451, exec: true, path: path.join(dir, 'bin'), isDir: true, recursive: true })]).errors).toEqual([]);
    expect(run(a, ['true']).spawnError).toBe('EPERM');
    expect(run(elsewhere, ['true']).status).toBe(0);
  });

  test('fromSource: a rule applies only to processes running the named executable', () => {
    const dir = caseDir();
    const srcA = busyboxCopy(dir, 'srcA');
    const srcB = busyboxCopy(dir, 'srcB');
    const secret = writeFile(path.join(dir, 'secret'), 's');
    const prog = busyboxCopy(dir, 'prog');
    const fe = enforcer();
    expect(
      fe.setRules([
        rule({ ruleId: 501, path: secret, sources: [srcA] }),
        rule({ ruleId: 502, exec: true, path: prog, sources: [srcA] }),
      ]).errors,
    ).toEqual([]);
    expect(cat(secret, srcA)).toMatch(DENIED);
    expect(cat(secret, srcB)).toBe('ok:s');
    expect(cat(secret)).toBe('ok:s');
    // exec: the caller (still running its own program) is the source
    expect(run(srcA, ['sh', '-c', `exec ${prog} true`]).status).not.toBe(0);
    expect(run(srcB, ['sh', '-c', `exec ${prog} true`]).status).toBe(0);
    // a hard link to the source is the same executable
    fs.mkdirSync(path.join(dir, 'link'));
    const linkA = path.join(dir, 'link', 'busybox'); // busybox needs its own name as argv[0]
    fs.linkSync(srcA, linkA);
    expect(cat(secret, linkA)).toMatch(DENIED);
  });

  test('fromSource directories and ownerOnly through the TypeScript FileEnforcer', () => {
    const dir = caseDir();
    const inDir = busyboxCopy(path.join(dir, 'trusted'), 'x');
    const outside = busyboxCopy(dir, 'untrusted');
    const secret = writeFile(path.join(dir, 'secret'), 's');
    const owned = writeFile(path.join(dir, 'owned'), 'o');
    fs.chownSync(owned, 1234, 1234);
    const fe = new FileEnforcer(addon, sink);
    live.push(fe);
    const base = { readOnly: false, ownerOnly: false, fromSource: [] as SourceMatch[] };
    const rules: PathRule[] = [
      {
        ...base,
        ruleId: 551,
        action: 'Block',
        operation: 'File',
        target: { kind: 'path', path: secret },
        fromSource: [{ kind: 'dir', path: path.join(dir, 'trusted'), recursive: true }],
      },
      { ...base, ruleId: 552, action: 'Block', operation: 'File', target: { kind: 'path', path: owned }, ownerOnly: true },
    ];
    expect(fe.apply(rules).errors).toEqual([]);
    expect(cat(secret, inDir)).toMatch(DENIED);
    expect(cat(secret, outside)).toBe('ok:s');
    // root does not own `owned`: blocked; its owner reads it
    expect(cat(owned)).toMatch(DENIED);
    const asOwner = spawnSync(tools, ['cat', owned], { uid: 1234, gid: 1234, encoding: 'utf8' });
    expect(asOwner.stdout).toBe('o');
    expect(fe.apply([{ ...base, ruleId: 553, action: 'Block', operation: 'File', target: { kind: 'path', path: 'relative' } }]).errors).toEqual([
      'file rule 553 (#0): target relative is not absolute',
    ]);
  });

  test('Audit lets the access through and reports it', async () => {
    const dir = caseDir();
    const file = writeFile(path.join(dir, 'watched'), 'w');
    const fe = enforcer();
    expect(fe.setRules([rule({ ruleId: 601, path: file, action: Action.Audit })]).errors).toEqual([]);
    const r = spawnSync(tools, ['cat', file], { encoding: 'utf8' });
    expect(r.stdout).toBe('w');
    const [d, ...extra] = await decisionsOf(601, 1);
    expect(extra).toEqual([]);
    expect(d).toMatchObject({
      action: Action.Audit,
      ret: 0,
      operation: OperationCode.File,
      enforcer: EnforcerCode.Fanotify,
      pid: r.pid,
      resource: fs.realpathSync(file),
    });
    expect(fe.stats().denied).toBe(0);
  });

  test('an audited open of a file in an audited directory is asked by both fanotify groups but reported once', async () => {
    const dir = caseDir();
    const file = writeFile(path.join(dir, 'd', 'f'), 'f');
    const fe = enforcer();
    expect(fe.setRules([rule({ ruleId: 651, path: path.join(dir, 'd'), isDir: true, action: Action.Audit })]).errors).toEqual([]);
    const before = fe.stats().events;
    const first = spawnSync(tools, ['cat', file, file], { encoding: 'utf8' }); // two opens by one process
    expect(first.stdout).toBe('ff');
    expect(fe.stats().events - before).toBe(4); // inode group + directory group, per open
    const events = await decisionsOf(651, 2);
    expect(events).toHaveLength(2);
    expect(events.every((d) => d.pid === first.pid && d.action === Action.Audit)).toBe(true);
  });

  test('Block wins over Audit; each Block produces exactly one decision with pid, resource and exe', async () => {
    const dir = caseDir();
    const file = writeFile(path.join(dir, 'secret'), 's');
    const prog = busyboxCopy(dir, 'prog');
    const fe = enforcer();
    expect(
      fe.setRules([
        rule({ ruleId: 701, path: file, action: Action.Audit }),
        rule({ ruleId: 702, path: dir, isDir: true, action: Action.Block }),
        rule({ ruleId: 703, exec: true, path: prog }),
      ]).errors,
    ).toEqual([]);

    const r = spawnSync(tools, ['cat', file], { encoding: 'utf8' });
    expect(r.stderr).toMatch(DENIED);
    const fileDecisions = await decisionsOf(702, 1);
    expect(fileDecisions).toHaveLength(1);
    expect(decisions.filter((d) => d.ruleId === 701)).toEqual([]);
    const mntNs = fs.statSync('/proc/self/ns/mnt').ino;
    expect(fileDecisions[0]).toMatchObject({
      pid: r.pid,
      tid: r.pid,
      ppid: process.pid,
      uid: 0,
      mntNs,
      comm: 'busybox',
      action: Action.Block,
      operation: OperationCode.File,
      enforcer: EnforcerCode.Fanotify,
      ret: -1, // -EPERM
      resource: fs.realpathSync(file),
      exe: fs.realpathSync(tools),
    });
    expect(fileDecisions[0].flags & O_ACCMODE).toBe(fs.constants.O_RDONLY);

    const sh = spawnSync(tools, ['sh', '-c', `exec ${prog} true`], { encoding: 'utf8' });
    expect(sh.status).not.toBe(0);
    const execDecisions = await decisionsOf(703, 1);
    expect(execDecisions).toHaveLength(1);
    expect(execDecisions[0]).toMatchObject({
      pid: sh.pid,
      operation: OperationCode.Process,
      action: Action.Block,
      ret: -1,
      resource: fs.realpathSync(prog),
      exe: fs.realpathSync(tools), // the caller, before exec
    });
    expect(decodeErrors).toBe(0);
    expect(statsOf(fe).internalErrors).toBe(0);
  });

  test('after close() everything works again', () => {
    const dir = caseDir();
    const file = writeFile(path.join(dir, 'secret'), 's');
    const prog = busyboxCopy(dir, 'prog');
    const fe = enforcer();
    fe.setRules([rule({ ruleId: 801, path: file }), rule({ ruleId: 802, exec: true, path: prog })]);
    expect(cat(file)).toMatch(DENIED);
    expect(run(prog, ['true']).spawnError).toBe('EPERM');
    fe.close();
    expect(cat(file)).toBe('ok:s');
    expect(run(prog, ['true']).status).toBe(0);
    expect(() => fe.setRules([])).toThrow(/closed/);
    fe.close(); // idempotent
  });

  test('replacing the rules while a loop hammers the blocked file never lets one open through', async () => {
    const dir = caseDir();
    const file = writeFile(path.join(dir, 'sub', 'secret'), 's');
    const other = writeFile(path.join(dir, 'other'), 'o');
    const fe = enforcer();
    // Includes adding and removing the parent directory's mark while the
    // file's own mark stays (the kernel race the two groups avoid).
    const sets: NativeFileRule[][] = [
      [rule({ ruleId: 901, path: file })],
      [rule({ ruleId: 907, path: file }), rule({ ruleId: 908, path: path.join(dir, 'sub'), isDir: true })],
      [rule({ ruleId: 909, path: file })],
      [rule({ ruleId: 902, path: path.join(dir, 'sub'), isDir: true }), rule({ ruleId: 903, path: other })],
      [rule({ ruleId: 904, path: dir, isDir: true, recursive: true })],
      [rule({ ruleId: 905, path: file, action: Action.Audit }), rule({ ruleId: 906, path: file })],
    ];
    fe.setRules(sets[0]);
    const hammer = `
const fs = require('fs');
let ok = 0, denied = 0, other = 0;
const end = Date.now() + 4000;
process.stdout.write('started\\n');
while (Date.now() < end) {
  try { fs.closeSync(fs.openSync(${JSON.stringify(file)}, 'r')); ok++; }
  catch (e) { if (e.code === 'EPERM') denied++; else other++; }
}
process.stdout.write(JSON.stringify({ ok, denied, other }) + '\\n');`;
    const child = spawn(process.execPath, ['-e', hammer], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    await waitFor('the hammer to start', () => (out.includes('started') ? true : undefined));
    let swaps = 0;
    let done = false;
    void exited.then(() => (done = true));
    while (!done) {
      expect(fe.setRules(sets[++swaps % sets.length]).errors).toEqual([]);
      await new Promise((r) => setTimeout(r, 2));
    }
    const result = JSON.parse(out.split('\n')[1]) as { ok: number; denied: number; other: number };
    expect(result.ok).toBe(0);
    expect(result.other).toBe(0);
    expect(result.denied).toBeGreaterThan(100);
    expect(swaps).toBeGreaterThan(50);
    expect(statsOf(fe).internalErrors).toBe(0);
  });

  test('bad input is a TypeError naming the rule and field; missing paths are reported and marked once created', async () => {
    const dir = caseDir();
    const fe = enforcer();
    expect(() => fe.setRules([rule({ ruleId: 1, path: '/x' }), rule({ ruleId: 2, path: 'relative' })])).toThrow(
      expect.objectContaining({ name: 'TypeError', message: expect.stringContaining('rules[1].path') }),
    );
    expect(() => fe.setRules([{ ...rule({ ruleId: 1, path: '/x' }), action: 0 }])).toThrow(/rules\[0\]\.action/);
    expect(() => fe.setRules([{ ...rule({ ruleId: 1, path: '/x' }), sources: ['bin'] }])).toThrow(/rules\[0\]\.sources\[0\]/);
    expect(() => fe.setRules([rule({ ruleId: 1, path: '/' + 'a'.repeat(5000) })])).toThrow(/PATH_MAX/);
    expect(() => fe.setRules([rule({ ruleId: 1, path: '/x', recursive: true })])).toThrow(/rules\[0\]\.recursive/);

    const later = path.join(dir, 'later');
    const kept = writeFile(path.join(dir, 'kept'), 'k');
    const result = fe.setRules([
      rule({ ruleId: 1001, path: later }),
      rule({ ruleId: 1002, path: path.join(dir, 'no', 'such', 'dir'), isDir: true }),
      rule({ ruleId: 1003, path: kept }),
    ]);
    expect(result.errors).toHaveLength(2);
    expect(result.errors[0]).toContain(`rule 1001 (rules[0]): ${later} does not exist`);
    expect(result.errors[1]).toContain(`rule 1002 (rules[1]): directory ${path.join(dir, 'no', 'such', 'dir')}`);
    expect(cat(kept)).toMatch(DENIED);
    // the missing target appears (renamed in, as installers do)
    const staged = writeFile(path.join(dir, 'staged'), 'l');
    fs.renameSync(staged, later);
    await waitFor('the new target to be blocked', () => (DENIED.test(cat(later)) ? true : undefined));
  });

  test('workloads: a container rule covers its mount namespace (and, after unshare, its pid namespace) with paths inside its root; host rules only the host', async () => {
    const dir = caseDir();
    // A stand-in container: new mount and pid namespaces, chrooted into `root`.
    const root = path.join(dir, 'root');
    fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
    fs.copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'));
    fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
    writeFile(path.join(root, 'secret'), 'inside');
    fs.symlinkSync('/secret', path.join(root, 'lnk')); // absolute: "/secret" of the root, not the host's
    const hostFile = writeFile(path.join(dir, 'host-only'), 'host');
    const holder = spawn('/usr/bin/unshare', ['-m', '-p', '-f', '/usr/sbin/chroot', root, '/bin/busybox', 'sleep', '60'], {
      stdio: 'ignore',
    });
    let inner = 0;
    try {
      inner = await waitFor('the chrooted sleeper', () => {
        const kids = fs.readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim();
        const pid = kids ? Number(kids.split(' ')[0]) : 0;
        // the forked child is there before it has chrooted: wait for its root to be `root`
        try {
          return pid && fs.readlinkSync(`/proc/${pid}/root`) === root ? pid : undefined;
        } catch {
          return undefined;
        }
      });
      const ns = (pid: number, kind: string) => Number(/\d+/.exec(fs.readlinkSync(`/proc/${pid}/ns/${kind}`))![0]);
      const mnt = ns(inner, 'mnt');
      const w = BigInt(mnt);
      const fe = enforcer();
      const result = fe.setRules([
        rule({ ruleId: 2101, path: '/lnk', workloads: [w], root: { pid: inner, mntNs: mnt } }),
        rule({ ruleId: 2102, path: hostFile, workloads: [0n] }),
      ]);
      expect(result.errors).toEqual([]);
      fe.setWorkloads([{ workload: w, mntNs: mnt, pidNs: ns(inner, 'pid') }]);

      const inside = (args: string[]) => {
        const r = run('/usr/bin/nsenter', ['-t', String(inner), '-m', '-p', ...args]);
        return r.status === 0 ? `ok:${r.stdout}` : r.stderr.trim();
      };
      // in the "container": its rule on its own /secret (through the symlink or not)
      expect(inside(['-r', '/bin/busybox', 'cat', '/lnk'])).toMatch(DENIED);
      expect(inside(['-r', '/bin/busybox', 'cat', '/secret'])).toMatch(DENIED);
      // having unshared its mount namespace: found by its pid namespace
      expect(inside(['/usr/bin/unshare', '-m', '/usr/sbin/chroot', root, '/bin/busybox', 'cat', '/secret'])).toMatch(DENIED);
      // the host rule does not apply there
      expect(inside([tools, 'cat', hostFile])).toBe('ok:host');
      // the host: the same inode is not the container's to block; the host rule is
      expect(cat(path.join(root, 'secret'))).toBe('ok:inside');
      expect(cat(hostFile)).toMatch(DENIED);
      expect(run('/usr/bin/unshare', ['-m', tools, 'cat', hostFile]).stderr).toMatch(DENIED);
      // paths are reported as the namespace sees them: a chroot (unlike Docker's pivot_root) keeps the host's tree
      const ds = await decisionsOf(2101, 3);
      const secret = path.join(root, 'secret');
      expect(ds.map((d) => [d.resource, d.mntNs === mnt])).toEqual([
        [secret, true],
        [secret, true],
        [secret, false],
      ]);
      // without the workload table the container's processes are the host
      fe.setWorkloads([]);
      expect(inside(['-r', '/bin/busybox', 'cat', '/secret'])).toBe('ok:inside');
      expect(inside([tools, 'cat', hostFile])).toMatch(DENIED);
    } finally {
      if (inner) process.kill(inner, 'SIGKILL');
      holder.kill('SIGKILL');
    }
  });

  test('workloads: bad input names the field; a root whose process is gone or elsewhere is reported, not guessed', () => {
    const fe = enforcer();
    const base = rule({ ruleId: 1, path: '/x' });
    const bad: Array<[unknown, RegExp]> = [
      [{ ...base, workloads: [] }, /rules\[0\]\.workloads must be a non-empty array/],
      [{ ...base, workloads: [1] }, /rules\[0\]\.workloads\[0\] must be a bigint/],
      [{ ...base, root: { pid: 0, mntNs: 5 } }, /rules\[0\]\.root\.pid must be an integer in 1\.\./],
      [{ ...base, root: { pid: 1, mntNs: 0 } }, /rules\[0\]\.root\.mntNs must be an integer in 1\.\./],
    ];
    for (const [item, message] of bad) expect(() => fe.setRules([item as NativeFileRule])).toThrow(message);
    expect(() => fe.setWorkloads([{ workload: 0n, mntNs: 1, pidNs: 0 }])).toThrow(/workloads\[0\]\.workload must not be 0n/);
    expect(() => fe.setWorkloads([{ workload: 1n, mntNs: 0, pidNs: 0 }])).toThrow(/workloads\[0\]\.mntNs must be an integer/);
    expect(() =>
      fe.setWorkloads([
        { workload: 1n, mntNs: 7, pidNs: 0 },
        { workload: 2n, mntNs: 7, pidNs: 0 },
      ]),
    ).toThrow(/workloads\[1\]\.mntNs 7 is named twice/);
    // this process is not in mount namespace 12345 (a recycled pid looks like this): refused with the reason
    const r = fe.setRules([rule({ ruleId: 2201, path: '/x', workloads: [12345n], root: { pid: process.pid, mntNs: 12345 } })]);
    expect(r.errors).toEqual([
      `rule 2201 (rules[0], container mount namespace 12345): cannot find the container's root: process ${process.pid} is in mount namespace ` +
        `${/\d+/.exec(fs.readlinkSync('/proc/self/ns/mnt'))![0]}, not 12345 (the container's init is gone) (not enforced)`,
    ]);
  });
});
