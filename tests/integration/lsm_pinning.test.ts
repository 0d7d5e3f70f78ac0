// bpf-lsm pinned state on a real BPF-LSM kernel: enforcement outlives the
// process that set it (kill -9, release()), a later enforcer adopts it
// (rules kept, its own programs put in place without a gap, decisions to its
// own ring), a pinned state of another layout is refused by name, and
// unloading removes it.
//
// Only a kernel booted with bpf among its LSMs can run this: run it in the
// qemu guest,
//   tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_pinning.test.ts
// Anywhere else it fails, naming why. Work files live on /tmp (a tmpfs in the
// guest, where stat() and the LSM hooks see the same inodes); pins live in a
// directory of this test's own under /sys/fs/bpf.
import { ChildProcess, execFileSync, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { EventKind } from '../../agent/src/abi';
import { decodeBatch, DecisionEvent } from '../../agent/src/events';
import { LsmBackend, unloadPinned } from '../../agent/src/lsm_backend';
import { LsmEnforcer, lsmAddon, lsmPinDir, targetResolver, unloadPinnedLsm } from '../../agent/src/lsm_enforcer';
import type { NativeAddon, NativeEventRing, NativeEventSink } from '../../agent/src/native';
import type { CompiledPolicySet, PathRule } from '../../agent/src/policy/types';
import { probe } from '../../agent/src/probe';
import { ADDON, makeTempDir, waitFor } from '../helpers/system';

const PYTHON = '/usr/bin/python3';
const BPFTOOL = '/usr/sbin/bpftool';

/** "ok" or the errno name of reading `p` in a new process. */
function readFile(p: string): string {
  const r = spawnSync(
    PYTHON,
    ['-c', `import errno, os, sys\ntry:\n  open(sys.argv[1], 'rb').read(); print(os.getpid(), 'ok')\nexcept OSError as e:\n  print(os.getpid(), errno.errorcode.get(e.errno, str(e.errno)))`, p],
    { encoding: 'utf8', timeout: 60_000 },
  );
  const [pid, result] = (r.stdout ?? '').trim().split(' ');
  lastPid = Number(pid);
  if (!result) throw new Error(`python printed nothing: ${r.stderr}`);
  return result;
}
let lastPid = 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function blockRule(target: string, ruleId: number): PathRule {
  return { ruleId, action: 'Block', operation: 'File', target: { kind: 'path', path: target }, readOnly: false, ownerOnly: false, fromSource: [] };
}

function policySet(pathRules: PathRule[]): CompiledPolicySet {
  return { pathRules, networkRules: [], meta: new Map() };
}

describe('bpf-lsm pinned state on a BPF-LSM kernel', () => {
  let addon: NativeAddon;
  let sink: NativeEventSink;
  let ring: NativeEventRing;
  let decisions: DecisionEvent[] = [];
  let work: string;
  const root = `/sys/fs/bpf/edgeward-pin-test-${process.pid}`;
  let dir: string;

  beforeAll(() => {
    const problems: string[] = [];
    if (process.getuid?.() !== 0) problems.push('must run as root (LSM programs are attached)');
    if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
    for (const f of [PYTHON, BPFTOOL]) if (!fs.existsSync(f)) problems.push(`${f} missing`);
    if (!fs.existsSync('/sys/fs/bpf')) problems.push('no bpffs at /sys/fs/bpf');
    if (problems.length) throw new Error(`bpf-lsm pinning tests cannot run: ${problems.join('; ')}`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    addon = require(ADDON) as NativeAddon;
    const report = probe(addon, 'auto');
    if (report.backend !== 'bpf-lsm') {
      throw new Error(
        `bpf-lsm pinning tests need a kernel that runs BPF-LSM programs, and this one does not (${report.kernel}; ` +
          `probe: ${report.reasons.join('; ')}). Run them in the BPF-LSM guest: ` +
          'tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_pinning.test.ts',
      );
    }
    dir = lsmPinDir(lsmAddon(addon).lsmLimits.layoutVersion, root);
    work = makeTempDir('lsm-pin');
    sink = new addon.EventSink((batch) => {
      for (const e of decodeBatch(batch).events) if (e.kind === EventKind.Decision) decisions.push(e);
    });
    ring = new addon.EventRing(sink, { ringBufferBytes: 1 << 20, pollIntervalMs: 5_000 });
  });

  afterEach(() => {
    decisions = [];
    unloadPinned(root);
    fs.rmSync(root, { recursive: true, force: true });
  });

  afterAll(async () => {
    ring?.close();
    await sleep(200);
    sink?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  async function decisionsFor(pid: number): Promise<DecisionEvent[]> {
    await waitFor(`a decision for pid ${pid}`, () => (decisions.some((d) => d.pid === pid) ? true : undefined), 10_000);
    await sleep(300); // a duplicate would arrive by now
    return decisions.filter((d) => d.pid === pid);
  }

  function file(name: string): string {
    const f = path.join(work, name);
    fs.writeFileSync(f, 'x');
    return f;
  }

  /** A separate process that pins a rule blocking `target` (rule 4242), prints ready and waits to be killed. */
  async function pinningChild(target: string): Promise<ChildProcess> {
    const inode = targetResolver()(target);
    const limits = lsmAddon(addon).lsmLimits;
    const entry = {
      workload: '0n', op: 2, dev: `${inode.dev}n`, ino: `${inode.ino}n`, srcDev: '0n', srcIno: '0n', hasSourced: false,
      verdicts: Array.from({ length: limits.variants }, (_, i) => ({ ruleId: i === 0 ? 4242 : 0, action: i === 0 ? 2 : 0 })),
    };
    const script = `
const a = require(${JSON.stringify(ADDON)});
const fs = require('fs');
fs.mkdirSync(${JSON.stringify(root)}, { recursive: true });
const sink = new a.EventSink(() => {});
const ring = new a.EventRing(sink, { ringBufferBytes: 1 << 20, pollIntervalMs: 1000 });
const e = new a.LsmEnforcer(ring, { pinDir: ${JSON.stringify(dir)} });
const entry = JSON.parse(${JSON.stringify(JSON.stringify(entry))}, (k, v) => (typeof v === 'string' && /^\\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v));
e.setRules({ paths: [entry], net: [] });
console.log('ready');
setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    await waitFor('the pinning child to be ready', () => {
      if (child.exitCode !== null) throw new Error(`pinning child exited: ${err}`);
      return out.includes('ready') ? true : undefined;
    }, 120_000);
    return child;
  }

  const kill9 = async (child: ChildProcess) => {
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await exited;
  };

  test('kill -9 of the pinning process keeps the block; a new enforcer adopts it, reports to its own ring, and close() removes it', async () => {
    const f = file('pinned');
    const child = await pinningChild(f);
    expect(readFile(f)).toBe('EPERM');
    await kill9(child);
    expect(readFile(f)).toBe('EPERM'); // the block outlives the process
    expect(fs.readdirSync(dir)).toEqual(expect.arrayContaining(['active', 'gen_info', 'path_rules', 'net_rules', 'link_file_open']));

    fs.mkdirSync(path.join(root, 'lsm-v0')); // another layout's leftovers go after the first apply
    const adopter = new LsmEnforcer(addon, ring, { pin: { root } });
    try {
      expect(adopter.adopted()).toBe(true);
      expect(adopter.stats().pathEntries).toBe(1);
      expect(readFile(f)).toBe('EPERM');
      const ds = await decisionsFor(lastPid); // alerts resume: the adopter's programs write to this ring
      expect(ds.map((d) => [d.ruleId, d.ret])).toEqual([[4242, -1]]);
      expect(fs.readdirSync(dir).filter((n) => n.endsWith('__new'))).toEqual([]);
      expect(adopter.apply([], []).errors).toEqual([]);
      expect(readFile(f)).toBe('ok');
      expect(fs.existsSync(path.join(root, 'lsm-v0'))).toBe(false);
    } finally {
      adopter.close();
    }
    expect(fs.existsSync(dir)).toBe(false);
  }, 600_000);

  test('unloading the pinned state (edgeward unload) removes the enforcement of a dead agent', async () => {
    const f = file('pinned-unload');
    const child = await pinningChild(f);
    await kill9(child);
    expect(readFile(f)).toBe('EPERM');
    expect(unloadPinned(root)).toEqual([dir]);
    expect(readFile(f)).toBe('ok');
    expect(fs.readdirSync(root)).toEqual([]);
    expect(unloadPinned(root)).toEqual([]); // idempotent
  }, 600_000);

  test('release() leaves the rules in force; the next enforcer adopts them; without pinning, release() detaches', () => {
    const f = file('released');
    const first = new LsmEnforcer(addon, ring, { pin: { root } });
    expect(first.adopted()).toBe(false);
    expect(first.apply([blockRule(f, 7)], []).errors).toEqual([]);
    first.release();
    expect(readFile(f)).toBe('EPERM');
    expect(() => first.stats()).toThrow('LsmEnforcer is closed');

    const second = new LsmEnforcer(addon, ring, { pin: { root } });
    expect(second.adopted()).toBe(true);
    expect(second.stats()).toMatchObject({ pathEntries: 1, generation: 1 });
    // the adopted generation is replaced like any other
    const g = file('released-2');
    expect(second.apply([blockRule(g, 8)], []).errors).toEqual([]);
    expect([readFile(f), readFile(g)]).toEqual(['ok', 'EPERM']);
    expect(second.stats()).toMatchObject({ pathEntries: 1, generation: 2 });
    second.close();
    expect(readFile(g)).toBe('ok');

    const unpinned = new LsmEnforcer(addon, ring);
    expect(unpinned.apply([blockRule(g, 9)], []).errors).toEqual([]);
    expect(readFile(g)).toBe('EPERM');
    unpinned.release();
    expect(readFile(g)).toBe('ok');
  }, 600_000);

  test('adoption replaces every program without a gap: an open loop never gets through while a new enforcer takes over', async () => {
    const f = file('no-gap');
    const first = new LsmEnforcer(addon, ring, { pin: { root } });
    expect(first.apply([blockRule(f, 11)], []).errors).toEqual([]);
    first.release();
    // opens until the stop file appears: the loop spans every adoption however slow the guest is
    const stop = path.join(work, 'no-gap-stop');
    const loop = spawn(
      PYTHON,
      [
        '-c',
        `import os, sys
ok = refused = 0
print('started', flush=True)
while not os.path.exists(sys.argv[2]):
    try:
        open(sys.argv[1], 'rb').close(); ok += 1
    except PermissionError:
        refused += 1
print(ok, refused, flush=True)`,
        f,
        stop,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    loop.stdout!.on('data', (d) => (out += d));
    const done = new Promise((r) => loop.on('exit', r));
    await waitFor('the open loop to start', () => (out.includes('started') ? true : undefined), 60_000);
    await sleep(500);
    for (let i = 0; i < 2; i++) {
      const next = new LsmEnforcer(addon, ring, { pin: { root } });
      expect(next.adopted()).toBe(true);
      next.release();
    }
    await sleep(500);
    fs.writeFileSync(stop, '');
    await done;
    out = out.replace('started\n', '');
    const [ok, refused] = out.trim().split(' ').map(Number);
    console.log(`adoption under an open loop: ${refused} opens refused, ${ok} let through`);
    expect(ok).toBe(0);
    expect(refused).toBeGreaterThan(0);
  }, 600_000);

  test('pinned maps of another layout are refused by name, and left in force', () => {
    fs.mkdirSync(dir, { recursive: true });
    // an "active" map with an 8-byte value: not this build's
    execFileSync(BPFTOOL, ['map', 'create', `${dir}/active`, 'type', 'array', 'key', '4', 'value', '8', 'entries', '1', 'name', 'active']);
    expect(() => new LsmEnforcer(addon, ring, { pin: { root } })).toThrow(
      new RegExp(`the pinned map ${dir}/active does not have this build's layout; remove the pinned state \\(edgeward unload\\)`),
    );
    expect(fs.readdirSync(dir)).toEqual(['active']);
  }, 120_000);

  test('a backend pinning its rules: adopted by the next one, release() keeps them, close() removes them', () => {
    const f = file('backend');
    const first = new LsmBackend(addon, ring, { pin: { root }, watchTargets: false });
    expect(first.adopted()).toBe(false);
    expect(first.apply(policySet([blockRule(f, 21)])).errors).toEqual([]);
    first.release();
    expect(readFile(f)).toBe('EPERM');
    const second = new LsmBackend(addon, ring, { pin: { root }, watchTargets: false });
    try {
      expect(second.adopted()).toBe(true);
      expect(readFile(f)).toBe('EPERM');
    } finally {
      second.close();
    }
    expect(readFile(f)).toBe('ok');
    expect(fs.existsSync(dir)).toBe(false);
  }, 600_000);
});
