// fromSource `dir:` on the bpf-lsm backend, decided in the kernel: a rule
// sourced by a directory matches when the acting process's executable
// (current->mm->exe_file) lies directly in it, or with `recursive: true`
// anywhere below it (KubeArmor's semantics, as on the compat backend). The
// kernel walks up the executable's directories only for targets (sockets)
// that have such rules. Attacker's view: the executable is judged by where
// the file it runs is (its dentry), not by the name used to start it.
//
// Only a kernel booted with bpf among its LSMs can run this: run it in the
// qemu guest,
//   tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_from_source_dir.test.ts
// Anywhere else it fails, naming why.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { EventKind } from '../../agent/src/abi';
import { decodeBatch, DecisionEvent } from '../../agent/src/events';
import { LsmEnforcer } from '../../agent/src/lsm_enforcer';
import type { NativeAddon, NativeEventRing, NativeEventSink } from '../../agent/src/native';
import { compilePolicies } from '../../agent/src/policy/compiler';
import { formatPolicyError, parsePolicyText } from '../../agent/src/policy/loader';
import { allowListModes } from '../../agent/src/policy/posture';
import type { CompiledPolicySet, DefaultPosture } from '../../agent/src/policy/types';
import { probe } from '../../agent/src/probe';
import { ADDON, BUSYBOX, makeTempDir, run, waitFor } from '../helpers/system';

const PYTHON = '/usr/bin/python3';
const AUDIT: DefaultPosture = { file: 'audit', network: 'audit', capabilities: 'audit' };
const BLOCK: DefaultPosture = { file: 'block', network: 'block', capabilities: 'block' };
const DENIED = /Operation not permitted/;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function hostPolicy(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'security.kubearmor.com/v1',
    kind: 'KubeArmorHostPolicy',
    metadata: { name },
    spec: { nodeSelector: { matchLabels: { 'kubearmor.io/hostname': '*' } }, ...spec },
  });
}

function compile(docs: string[], posture: DefaultPosture = AUDIT): CompiledPolicySet {
  const loaded = parsePolicyText(docs.join('\n---\n'), 'lsm-from-source-dir-test.yaml');
  if (loaded.errors.length) throw new Error(loaded.errors.map(formatPolicyError).join('\n'));
  const r = compilePolicies(loaded.policies, { hostname: 'test-node', posture });
  if (r.errors.length) throw new Error(r.errors.map((e) => e.message).join('\n'));
  return r.set;
}

function copyExe(from: string, to: string): string {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
  fs.chmodSync(to, 0o755);
  return to;
}

describe('bpf-lsm fromSource dir on a BPF-LSM kernel', () => {
  let addon: NativeAddon;
  let sink: NativeEventSink;
  let ring: NativeEventRing;
  let enforcer: LsmEnforcer;
  let decisions: DecisionEvent[] = [];
  let work: string;
  let src: string; // the source directory
  let inSrc: string; // busybox directly in it
  let below: string; // busybox two levels below it
  let outside: string; // busybox elsewhere
  let secret: string;

  function exec(file: string, args: string[]): string {
    const r = run(file, args);
    if (r.spawnError) return r.spawnError;
    return r.status === 0 ? `ok:${r.stdout}` : r.stderr.trim() || `status ${r.status}`;
  }
  const catWith = (exe: string, file = secret) => exec(exe, ['cat', file]);

  function apply(set: CompiledPolicySet): void {
    const r = enforcer.apply(set.pathRules, set.networkRules, undefined, [], allowListModes(set));
    expect(r.errors).toEqual([]);
    expect(r.applied).toBe(true);
  }

  const fileBlock = (recursive: boolean, action = 'Block') =>
    compile([
      hostPolicy('src-dir', {
        file: { matchPaths: [{ path: secret, fromSource: [{ dir: `${src}/`, ...(recursive ? { recursive: true } : {}) }] }] },
        action,
      }),
    ]);

  beforeAll(() => {
    const problems: string[] = [];
    if (process.getuid?.() !== 0) problems.push('must run as root (LSM programs are attached)');
    if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
    for (const f of [BUSYBOX, PYTHON]) if (!fs.existsSync(f)) problems.push(`${f} missing`);
    if (problems.length) throw new Error(`bpf-lsm fromSource dir tests cannot run: ${problems.join('; ')}`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    addon = require(ADDON) as NativeAddon;
    const report = probe(addon, 'auto');
    if (report.backend !== 'bpf-lsm') {
      throw new Error(
        `bpf-lsm fromSource dir tests need a kernel that runs BPF-LSM programs, and this one does not (${report.kernel}; ` +
          `probe: ${report.reasons.join('; ')}). Run them in the BPF-LSM guest: ` +
          'tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_from_source_dir.test.ts',
      );
    }
    work = makeTempDir('lsm-src-dir');
    fs.chmodSync(work, 0o755);
    src = path.join(work, 'src');
    inSrc = copyExe(BUSYBOX, path.join(src, 'busybox'));
    below = copyExe(BUSYBOX, path.join(src, 'sub', 'deeper', 'busybox'));
    outside = copyExe(BUSYBOX, path.join(work, 'other', 'busybox'));
    secret = path.join(work, 'data', 'secret');
    fs.mkdirSync(path.dirname(secret), { recursive: true });
    fs.writeFileSync(secret, 'secret');
    sink = new addon.EventSink((batch) => {
      for (const e of decodeBatch(batch).events) if (e.kind === EventKind.Decision) decisions.push(e);
    });
    ring = new addon.EventRing(sink, { ringBufferBytes: 1 << 20, pollIntervalMs: 5_000 });
    enforcer = new LsmEnforcer(addon, ring);
  });

  afterEach(async () => {
    enforcer?.apply([], [], undefined, [], []);
    await sleep(200);
    decisions = [];
  });

  afterAll(async () => {
    enforcer?.close();
    ring?.close();
    await sleep(200);
    sink?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('dir without recursive: executables directly in it are matched, those below or elsewhere are not; alert names the program', async () => {
    const set = fileBlock(false);
    apply(set);
    expect(catWith(inSrc)).toMatch(DENIED);
    expect(catWith(below)).toBe('ok:secret');
    expect(catWith(outside)).toBe('ok:secret');
    const d = await waitFor('the refusal', () => decisions.find((e) => e.resource === secret && e.ruleId === set.pathRules[0].ruleId));
    expect(d.ret).toBe(-1);
    expect(d.exe).toBe(inSrc);
  });

  test('recursive: executables anywhere below it are matched (also deep below), others are not', () => {
    // 300 levels, made relative (each mkdir from the previous): a path no rule could spell out
    let deep = path.join(src, 'deep');
    fs.mkdirSync(deep);
    for (let i = 0; i < 300; i++) {
      fs.mkdirSync(path.join(deep, 'd'));
      deep = path.join(deep, 'd');
    }
    const deepExe = copyExe(BUSYBOX, path.join(deep, 'busybox'));
    apply(fileBlock(true));
    expect(catWith(inSrc)).toMatch(DENIED);
    expect(catWith(below)).toMatch(DENIED);
    expect(catWith(deepExe)).toMatch(DENIED);
    expect(catWith(outside)).toBe('ok:secret');
    fs.rmSync(path.join(src, 'deep'), { recursive: true, force: true });
  });

  test('attacker: a copy taken out of the directory, or a hard link of it placed elsewhere, is another program (not matched)', () => {
    apply(fileBlock(true));
    const copied = copyExe(inSrc, path.join(work, 'loot', 'busybox'));
    const hard = path.join(work, 'loot', 'hard');
    fs.linkSync(inSrc, hard);
    expect(catWith(copied)).toBe('ok:secret');
    // a hard link is the same inode, but its name is outside the directory:
    // a rule by directory names where programs are, as on the compat backend
    expect(catWith(hard)).toBe('ok:secret');
    fs.rmSync(path.join(work, 'loot'), { recursive: true, force: true });
  });

  test('attacker: a hard link or copy placed into the directory, and a symlink pointing into it, are matched', () => {
    apply(fileBlock(false));
    const linkedIn = path.join(src, 'linked-in');
    fs.linkSync(outside, linkedIn);
    const outsideLink = path.join(work, 'other', 'points-in');
    fs.symlinkSync(inSrc, outsideLink);
    try {
      expect(catWith(linkedIn)).toMatch(DENIED);
      // exec follows the symlink: the program run is the one in the directory
      expect(catWith(outsideLink)).toMatch(DENIED);
    } finally {
      fs.rmSync(linkedIn);
      fs.rmSync(outsideLink);
    }
  });

  test('attacker: a symlink placed in the directory pointing out of it runs the program outside (not matched)', () => {
    apply(fileBlock(false));
    const inLink = path.join(src, 'points-out');
    fs.symlinkSync(outside, inLink);
    try {
      expect(catWith(inLink)).toBe('ok:secret');
    } finally {
      fs.rmSync(inLink);
    }
  });

  test('attacker: exec through /proc/self/fd of the program in the directory is still matched', () => {
    apply(fileBlock(false));
    const fd = fs.openSync(inSrc, 'r');
    try {
      const r = spawnSync('/proc/self/fd/3', ['cat', secret], { argv0: 'busybox', stdio: ['ignore', 'pipe', 'pipe', fd], encoding: 'utf8' });
      expect(r.error).toBeUndefined();
      expect(r.stderr).toMatch(DENIED);
      // the same through an outside program's fd is not
      const fd2 = fs.openSync(outside, 'r');
      try {
        const ok = spawnSync('/proc/self/fd/3', ['cat', secret], { argv0: 'busybox', stdio: ['ignore', 'pipe', 'pipe', fd2], encoding: 'utf8' });
        expect(ok.stdout).toBe('secret');
      } finally {
        fs.closeSync(fd2);
      }
    } finally {
      fs.closeSync(fd);
    }
  });

  test('Audit: allowed and reported for programs in the directory only', async () => {
    const set = fileBlock(false, 'Audit');
    apply(set);
    expect(catWith(outside)).toBe('ok:secret');
    expect(catWith(inSrc)).toBe('ok:secret');
    const d = await waitFor('the audit', () => decisions.find((e) => e.resource === secret && e.ruleId === set.pathRules[0].ruleId));
    expect(d.ret).toBe(0);
    expect(d.exe).toBe(inSrc);
    await sleep(300);
    expect(decisions.filter((e) => e.ruleId === set.pathRules[0].ruleId).every((e) => e.exe === inSrc)).toBe(true);
  });

  test('process rules: an exec by a program in the directory is refused, the same exec by another program is not', () => {
    // named echo: busybox runs the applet its name says
    const target = copyExe(BUSYBOX, path.join(work, 'bin', 'echo'));
    apply(
      compile([
        hostPolicy('src-dir-exec', {
          process: { matchPaths: [{ path: target, fromSource: [{ dir: `${src}/`, recursive: true }] }] },
          action: 'Block',
        }),
      ]),
    );
    expect(exec(below, ['sh', '-c', `${target} hi`])).toMatch(/Operation not permitted|status 126/);
    expect(exec(inSrc, ['sh', '-c', `${target} hi`])).toMatch(/Operation not permitted|status 126/);
    expect(exec(outside, ['sh', '-c', `${target} hi`])).toBe('ok:hi\n');
  });

  test('allow-list mode: an Allow sourced by the directory lets its programs read, nothing else', async () => {
    const set = compile(
      [
        hostPolicy('src-dir-allow', {
          file: {
            // busybox is static: it needs nothing else to read
            matchDirectories: [{ dir: `${path.dirname(secret)}/`, fromSource: [{ dir: `${src}/` }] }],
          },
          action: 'Allow',
        }),
      ],
      BLOCK,
    );
    apply(set);
    expect(catWith(inSrc)).toBe('ok:secret');
    expect(catWith(outside)).toMatch(DENIED);
    expect(catWith(below)).toMatch(DENIED);
    await waitFor('the posture refusal', () => decisions.find((e) => e.resource === secret && e.ret === -1));
  });

  test('network rules: a program in the directory cannot make a UDP socket, the same program elsewhere can', () => {
    const py = copyExe(PYTHON, path.join(src, 'py', 'python3'));
    const pyOut = copyExe(PYTHON, path.join(work, 'other', 'python3'));
    apply(
      compile([
        hostPolicy('src-dir-net', {
          network: { matchProtocols: [{ protocol: 'udp', fromSource: [{ dir: `${src}/`, recursive: true }] }],
          action: 'Block',
        }),
      ]),
    );
    const code = 'import socket\ntry:\n  socket.socket(socket.AF_INET, socket.SOCK_DGRAM); print("ok")\nexcept OSError as e:\n  print(e.errno)';
    expect(spawnSync(py, ['-c', code], { encoding: 'utf8' }).stdout.trim()).toBe('1');
    expect(spawnSync(pyOut, ['-c', code], { encoding: 'utf8' }).stdout.trim()).toBe('ok');
  });
});
