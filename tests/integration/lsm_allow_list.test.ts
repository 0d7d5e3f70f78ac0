// Allow-list mode (KubeArmor's default posture) decided in the kernel by the
// bpf-lsm backend: policy YAML -> loader -> compiler (with a posture) ->
// allowListModes -> LsmEnforcer -> LSM programs really returning EPERM,
// decisions reported under the posture's rule id (policy "DefaultPosture").
// The cases mirror tests/integration/allow_list.test.ts (the compat backend):
// the same expectations hold on both backends.
//
// The rules here cover the whole (guest) host: this process applies them
// in-process, so it is the agent the kernel exempts from postures (it must
// reach its own files); its children are not. Every test ends with the
// rules removed. The last block runs the real agent (bin/edgeward agent).
//
// Only a kernel booted with bpf among its LSMs can run this: run it in the
// qemu guest,
//   tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_allow_list.test.ts
// Anywhere else it fails, naming why.
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { Action, EventKind, OperationCode } from '../../agent/src/abi';
import { decodeBatch, DecisionEvent } from '../../agent/src/events';
import { unloadPinned } from '../../agent/src/lsm_backend';
import { LsmEnforcer, PIN_ROOT } from '../../agent/src/lsm_enforcer';
import type { NativeAddon, NativeEventRing, NativeEventSink } from '../../agent/src/native';
import { compilePolicies } from '../../agent/src/policy/compiler';
import { formatPolicyError, parsePolicyText } from '../../agent/src/policy/loader';
import { allowListModes } from '../../agent/src/policy/posture';
import type { CompiledPolicySet, DefaultPosture, WorkloadTarget } from '../../agent/src/policy/types';
import { probe } from '../../agent/src/probe';
import { resolveWorkloads, WorkloadContainer } from '../../agent/src/workloads';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { ADDON, BUSYBOX, busyboxCopy, makeTempDir, run, waitFor } from '../helpers/system';

const PYTHON = '/usr/bin/python3';
const NSENTER = '/usr/bin/nsenter';
const UNSHARE = '/usr/bin/unshare';
const CHROOT = '/usr/sbin/chroot';
const BLOCK: DefaultPosture = { file: 'block', network: 'block', capabilities: 'block' };
const AUDIT: DefaultPosture = { file: 'audit', network: 'audit', capabilities: 'audit' };
const DENIED = /Operation not permitted/;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nsOf = (pid: number, kind: string) => Number(/\d+/.exec(fs.readlinkSync(`/proc/${pid}/ns/${kind}`))![0]);

function hostPolicy(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'security.kubearmor.com/v1',
    kind: 'KubeArmorHostPolicy',
    metadata: { name },
    spec: { nodeSelector: { matchLabels: { 'kubearmor.io/hostname': '*' } }, ...spec },
  });
}

function containerPolicy(name: string, app: string, spec: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'security.kubearmor.com/v1',
    kind: 'KubeArmorPolicy',
    metadata: { name },
    spec: { selector: { matchLabels: { app } }, ...spec },
  });
}

/** YAML -> compiled set, as the agent does it (the config's posture in the options). */
function compile(docs: string[], posture: DefaultPosture): CompiledPolicySet {
  const loaded = parsePolicyText(docs.join('\n---\n'), 'lsm-allow-list-test.yaml');
  if (loaded.errors.length) throw new Error(loaded.errors.map(formatPolicyError).join('\n'));
  const r = compilePolicies(loaded.policies, { hostname: 'test-node', posture });
  if (r.errors.length) throw new Error(r.errors.map((e) => e.message).join('\n'));
  return r.set;
}

function postureOf(set: CompiledPolicySet, category: string): number {
  const p = (set.postureRules ?? []).find((x) => x.category === category);
  if (!p) throw new Error(`no ${category} posture in the set`);
  expect(set.meta.get(p.ruleId)!.policyName).toBe('DefaultPosture');
  return p.ruleId;
}

/** A stand-in container: its own mount and pid namespaces, chrooted into `root` (as in lsm_workloads.test.ts). */
interface StandIn {
  name: string;
  root: string;
  holder: ChildProcess;
  init: number;
  target: WorkloadTarget;
}

describe('bpf-lsm allow-list mode (default posture) on a BPF-LSM kernel', () => {
  let addon: NativeAddon;
  let sink: NativeEventSink;
  let ring: NativeEventRing;
  let enforcer: LsmEnforcer;
  let decisions: DecisionEvent[] = [];
  let work: string;
  const bins: Record<string, string> = {};
  let loader: string; // /usr/bin/true's dynamic loader (PT_INTERP)

  const bin = (name: string) => bins[name];
  const data = (name: string) => path.join(work, 'data', name);

  /** Runs a program: 'ok:<stdout>', 'EPERM' when the exec was refused, else stderr. */
  function exec(file: string, args: string[] = ['true']): string {
    const r = run(file, args);
    if (r.spawnError) return r.spawnError;
    return r.status === 0 ? `ok:${r.stdout}` : r.stderr.trim() || `status ${r.status}`;
  }
  /** cat through the `tools` busybox: 'ok:<content>' or the error. */
  const cat = (file: string) => exec(bin('tools'), ['cat', file]);
  /** Appends through the `tools` busybox shell: 'ok:' or the error. */
  const append = (file: string) => exec(bin('tools'), ['sh', '-c', 'echo more >> "$0"', file]);

  /** Applies a compiled set as the bpf-lsm backend does: rules, containers, postures. */
  function apply(set: CompiledPolicySet, workloads: WorkloadTarget[] = []): void {
    const r = enforcer.apply(set.pathRules, set.networkRules, undefined, workloads, allowListModes(set));
    expect(r.errors).toEqual([]);
    expect(r.applied).toBe(true);
  }

  async function decisionFor(resource: string, ruleId: number): Promise<DecisionEvent> {
    return waitFor(`a decision of rule ${ruleId} on ${resource}`, () => decisions.find((d) => d.resource === resource && d.ruleId === ruleId));
  }

  /** The decisions on `resource` once no more arrive (a duplicate would be there by now). */
  async function settled(resource: string): Promise<DecisionEvent[]> {
    await sleep(400);
    return decisions.filter((d) => d.resource === resource);
  }

  beforeAll(() => {
    const problems: string[] = [];
    if (process.getuid?.() !== 0) problems.push('must run as root (LSM programs are attached)');
    if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
    for (const f of [PYTHON, BUSYBOX, NSENTER, UNSHARE, CHROOT, '/usr/bin/true']) if (!fs.existsSync(f)) problems.push(`${f} missing`);
    if (problems.length) throw new Error(`bpf-lsm allow-list tests cannot run: ${problems.join('; ')}`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    addon = require(ADDON) as NativeAddon;
    const report = probe(addon, 'auto');
    if (report.backend !== 'bpf-lsm') {
      throw new Error(
        `bpf-lsm allow-list tests need a kernel that runs BPF-LSM programs, and this one does not (${report.kernel}; ` +
          `probe: ${report.reasons.join('; ')}). Run them in the BPF-LSM guest: ` +
          'tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_allow_list.test.ts',
      );
    }
    work = makeTempDir('lsm-allow');
    fs.chmodSync(work, 0o755);
    // busybox copies: one executable inode each (busybox picks its applet from argv[0]'s name)
    for (const name of ['tools', 'allowed', 'other', 'blocked', 'fine']) bins[name] = busyboxCopy(path.join(work, 'bin'), name);
    for (const [file, text] of [
      ['ok.txt', 'ok'],
      ['secret.txt', 'secret'],
      ['b.txt', 'b'],
      ['deep/a/b/secret', 'deep'],
      ['deep/a/b/public', 'public'],
    ]) {
      fs.mkdirSync(path.dirname(data(file)), { recursive: true });
      fs.writeFileSync(data(file), text);
    }
    const interp = /\s(\/\S*ld-linux\S*)\s/.exec(` ${spawnSync('ldd', ['/usr/bin/true'], { encoding: 'utf8' }).stdout} `);
    if (!interp) throw new Error('cannot find /usr/bin/true\'s dynamic loader with ldd');
    loader = interp[1];
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

  describe('process allow-list', () => {
    test('default posture block: only the allowed program runs; others are refused and reported as DefaultPosture', async () => {
      const set = compile(
        [hostPolicy('only-allowed', { process: { matchPaths: [{ path: bin('allowed') }, { path: bin('tools') }] }, action: 'Allow' })],
        BLOCK,
      );
      const posture = postureOf(set, 'process');
      apply(set);
      expect(exec(bin('allowed'), ['echo', 'hi'])).toBe('ok:hi\n');
      expect(exec(bin('other'))).toBe('EPERM');
      const d = await decisionFor(bin('other'), posture);
      expect(d).toMatchObject({ action: Action.Block, operation: OperationCode.Process, ret: -1 });
      // the allowed program is not reported; the refused one once
      expect(await settled(bin('allowed'))).toEqual([]);
      expect(await settled(bin('other'))).toHaveLength(1);
      // from an allowed shell too
      expect(exec(bin('allowed'), ['sh', '-c', `exec "${bin('other')}" true`])).toMatch(/Operation not permitted|Permission denied/);
    });

    test('another name for a program: hard links, symlinks, bind mounts and renames keep its inode; copies and memfds are new programs', async () => {
      const set = compile(
        [hostPolicy('allow', { process: { matchPaths: [{ path: bin('allowed') }, { path: bin('tools') }, { path: PYTHON }] }, action: 'Allow' })],
        BLOCK,
      );
      const posture = postureOf(set, 'process');
      const alias = path.join(work, 'alias');
      fs.mkdirSync(alias);
      fs.linkSync(bin('other'), path.join(alias, 'true')); // a hard link named like something harmless
      fs.linkSync(bin('allowed'), path.join(alias, 'echo')); // busybox: the applet is the name
      fs.symlinkSync(bin('other'), path.join(alias, 'other-sym'));
      fs.copyFileSync(bin('allowed'), path.join(alias, 'allowed-copy'));
      fs.chmodSync(path.join(alias, 'allowed-copy'), 0o755);
      const bind = path.join(work, 'bind');
      fs.mkdirSync(bind);
      if (spawnSync('mount', ['--bind', path.dirname(bin('other')), bind]).status !== 0) throw new Error(`cannot bind-mount onto ${bind}`);
      try {
        apply(set);
        expect(exec(path.join(alias, 'true'))).toBe('EPERM');
        expect(exec(path.join(alias, 'other-sym'))).toBe('EPERM');
        expect(exec(path.join(bind, 'busybox'))).toBe('EPERM');
        expect(exec(path.join(alias, 'allowed-copy'))).toBe('EPERM');
        expect(exec(path.join(alias, 'echo'), ['same inode'])).toBe('ok:same inode\n');
        // the allowed program's bytes in a memfd, run from there: not the allowed inode
        const memfd = exec(PYTHON, [
          '-c',
          `import os\nfd = os.memfd_create("x", 0)\nos.write(fd, open(${JSON.stringify(bin('allowed'))}, "rb").read())\ntry:\n  os.execv(f"/proc/self/fd/{fd}", ["true"])\nexcept OSError as e:\n  print(e.errno)`,
        ]);
        expect(memfd).toBe('ok:1\n');
        await decisionFor(path.join(alias, 'true'), posture);
      } finally {
        enforcer.apply([], [], undefined, [], []); // umount is a program too
        spawnSync('umount', [bind]);
      }
    });

    test('a dynamic program runs when allowed (its loader comes with the exec); the loader run directly is refused', async () => {
      const set = compile([hostPolicy('dyn', { process: { matchPaths: [{ path: '/usr/bin/true' }] }, action: 'Allow' })], BLOCK);
      const posture = postureOf(set, 'process');
      apply(set);
      expect(exec('/usr/bin/true', [])).toBe('ok:');
      expect(exec(loader, ['/usr/bin/true'])).toBe('EPERM');
      const d = await decisionFor(fs.realpathSync(loader), posture);
      expect(d.action).toBe(Action.Block);
    });

    test('a script runs only when its interpreter is allowed too (each is a program started)', async () => {
      const script = path.join(work, 'bin', 'script.sh');
      fs.writeFileSync(script, `#!${bin('other')} sh\nexit 0\n`, { mode: 0o755 });
      const set = compile([hostPolicy('script', { process: { matchPaths: [{ path: script }, { path: bin('tools') }] }, action: 'Allow' })], BLOCK);
      const posture = postureOf(set, 'process');
      apply(set);
      expect(exec(script)).toBe('EPERM');
      await decisionFor(bin('other'), posture);
      const both = compile([hostPolicy('script', { process: { matchPaths: [{ path: script }, { path: bin('other') }] }, action: 'Allow' })], BLOCK);
      apply(both);
      expect(exec(script)).toBe('ok:');
    });

    test('default posture audit: everything runs; the unallowed exec is reported with Action Audit', async () => {
      const set = compile([hostPolicy('only-allowed', { process: { matchPaths: [{ path: bin('allowed') }] }, action: 'Allow' })], AUDIT);
      const posture = postureOf(set, 'process');
      apply(set);
      expect(exec(bin('other'))).toBe('ok:');
      expect(exec(bin('allowed'))).toBe('ok:');
      const d = await decisionFor(bin('other'), posture);
      expect(d).toMatchObject({ action: Action.Audit, ret: 0, operation: OperationCode.Process });
      expect(await settled(bin('other'))).toHaveLength(1);
      expect(await settled(bin('allowed'))).toEqual([]);
    });

    test('Block wins over Allow; Allow with fromSource allows only that source; Audit of an allowed program is reported, of an unallowed one the posture is', async () => {
      const set = compile(
        [
          hostPolicy('allow', {
            process: {
              matchPaths: [
                { path: bin('allowed') },
                { path: bin('tools') },
                { path: bin('blocked') },
                { path: bin('fine'), fromSource: [{ path: bin('allowed') }] },
              ],
            },
            action: 'Allow',
          }),
          hostPolicy('block', { process: { matchPaths: [{ path: bin('blocked') }] }, action: 'Block' }),
          hostPolicy('audit', { process: { matchPaths: [{ path: bin('allowed') }, { path: bin('other') }] }, action: 'Audit' }),
        ],
        BLOCK,
      );
      const posture = postureOf(set, 'process');
      const blockRule = set.pathRules.find((r) => r.action === 'Block')!.ruleId;
      const auditRule = (p: string) => set.pathRules.find((r) => r.action === 'Audit' && r.target.kind === 'path' && r.target.path === p)!.ruleId;
      apply(set);
      expect(exec(bin('blocked'))).toBe('EPERM');
      await decisionFor(bin('blocked'), blockRule);
      expect(exec(bin('allowed'), ['sh', '-c', `exec "${bin('fine')}" true`])).toBe('ok:');
      expect(exec(bin('tools'), ['sh', '-c', `exec "${bin('fine')}" true`])).toMatch(/Operation not permitted|Permission denied/);
      // Allow + Audit: runs, the Audit is reported (as on compat)
      const audited = await decisionFor(bin('allowed'), auditRule(bin('allowed')));
      expect(audited).toMatchObject({ action: Action.Audit, ret: 0 });
      // no Allow + Audit: the posture decides, its decision alone is reported
      expect(exec(bin('other'))).toBe('EPERM');
      await decisionFor(bin('other'), posture);
      expect((await settled(bin('other'))).map((d) => d.ruleId)).toEqual([posture]);
    });
  });

  describe('file allow-list', () => {
    test('default posture block: allowed files open (readOnly: reads only), others are refused', async () => {
      const set = compile([hostPolicy('files', { file: { matchPaths: [{ path: data('ok.txt'), readOnly: true }] }, action: 'Allow' })], BLOCK);
      const posture = postureOf(set, 'file');
      apply(set);
      expect(cat(data('ok.txt'))).toBe('ok:ok');
      expect(cat(data('secret.txt'))).toMatch(DENIED);
      expect(append(data('ok.txt'))).toMatch(/Operation not permitted|can't create/);
      const d = await decisionFor(data('secret.txt'), posture);
      expect(d).toMatchObject({ action: Action.Block, operation: OperationCode.File, ret: -1 });
      // path operations are writes: removing, renaming or creating next to it is refused too
      expect(exec(bin('tools'), ['rm', data('ok.txt')])).toMatch(DENIED);
      expect(exec(bin('tools'), ['mv', data('b.txt'), data('moved.txt')])).toMatch(DENIED);
      expect(exec(bin('tools'), ['touch', data('new.txt')])).toMatch(DENIED);
      expect(fs.existsSync(data('ok.txt')) && fs.existsSync(data('b.txt')) && !fs.existsSync(data('new.txt'))).toBe(true);
      // a hard link to a refused file is the same inode: still refused
      fs.linkSync(data('secret.txt'), data('secret-link'));
      expect(cat(data('secret-link'))).toMatch(DENIED);
    });

    test('directory Allow with a Block inside it: the Block wins; outside the directory the posture', async () => {
      const set = compile(
        [
          hostPolicy('dir', { file: { matchDirectories: [{ dir: `${data('deep')}/`, recursive: true }] }, action: 'Allow' }),
          hostPolicy('deny-secret', { file: { matchPaths: [{ path: data('deep/a/b/secret') }] }, action: 'Block' }),
        ],
        BLOCK,
      );
      const blockRule = set.pathRules.find((r) => r.action === 'Block')!.ruleId;
      const posture = postureOf(set, 'file');
      apply(set);
      expect(cat(data('deep/a/b/public'))).toBe('ok:public');
      expect(cat(data('deep/a/b/secret'))).toMatch(DENIED);
      expect(cat(data('b.txt'))).toMatch(DENIED);
      await decisionFor(data('deep/a/b/secret'), blockRule);
      await decisionFor(data('b.txt'), posture);
      // new files inside the allowed directory are fine
      expect(exec(bin('tools'), ['sh', '-c', `echo n > "${data('deep/a/new')}"`])).toBe('ok:');
    });

    test('a file deeper than the kernel walks is outside every recursive Allow (fail-safe: the posture)', async () => {
      // EW_LSM_WALK_MAX directory levels and more, made relative (a path that long exceeds PATH_MAX)
      const top = data('deep');
      const made = spawnSync(PYTHON, ['-c', `import os\nos.chdir(${JSON.stringify(top)})\nfor i in range(2100):\n  os.mkdir("d"); os.chdir("d")\n  if i == 99: open("g", "w").write("shallow")\nopen("f", "w").write("x")`]);
      if (made.status !== 0) throw new Error(`cannot make the deep tree: ${made.stderr}`);
      const set = compile([hostPolicy('dir', { file: { matchDirectories: [{ dir: `${top}/`, recursive: true }] }, action: 'Allow' })], BLOCK);
      const posture = postureOf(set, 'file');
      apply(set);
      // the static busybox climbs down relatively (chdir is no open) and reads there
      // 50 levels per cd: the shell looks its working directory up after each
      const hop = Array.from({ length: 50 }, () => 'd').join('/');
      const loop = (levels: number, file: string) => `i=0; while [ $i -lt ${levels / 50} ]; do cd -P ${hop} || exit 9; i=$((i+1)); done; cat ${file}`;
      try {
        expect(cat(data('deep/a/b/public'))).toBe('ok:public');
        // 100 levels down: walked, inside the allowed directory
        expect(run(bin('tools'), ['sh', '-c', loop(100, 'g')], { cwd: top })).toMatchObject({ status: 0, stdout: 'shallow' });
        const deep = run(bin('tools'), ['sh', '-c', loop(2100, 'f')], { cwd: top });
        expect(deep.status).toBe(1);
        expect(deep.stderr).toMatch(DENIED);
        const d = await waitFor('the posture decision on the deep file', () => decisions.find((x) => x.ruleId === posture));
        expect(d).toMatchObject({ action: Action.Block, operation: OperationCode.File, ret: -1 });
      } finally {
        enforcer.apply([], [], undefined, [], []);
        // removed from the bottom up, relatively: the tree's paths are longer than PATH_MAX
        const rm = spawnSync(PYTHON, [
          '-c',
          `import os\nos.chdir(${JSON.stringify(top)})\nn = 0\nwhile os.path.isdir("d"):\n  os.chdir("d"); n += 1\nfor _ in range(n):\n  for f in os.listdir("."): os.unlink(f)\n  os.chdir(".."); os.rmdir("d")`,
        ]);
        if (rm.status !== 0) throw new Error(`cannot remove the deep tree: ${rm.stderr}`);
      }
    });

    test('default posture audit: everything opens; the unallowed open is reported', async () => {
      const set = compile([hostPolicy('files', { file: { matchPaths: [{ path: data('ok.txt') }] }, action: 'Allow' })], AUDIT);
      const posture = postureOf(set, 'file');
      apply(set);
      expect(cat(data('secret.txt'))).toBe('ok:secret');
      expect(await decisionFor(data('secret.txt'), posture)).toMatchObject({ action: Action.Audit, ret: 0 });
      expect(cat(data('ok.txt'))).toBe('ok:ok');
      expect(await settled(data('ok.txt'))).toEqual([]);
    });
  });

  describe('network allow-list', () => {
    const SOCKET_PY = `
import errno, socket, sys
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1] == 'udp' else socket.SOCK_STREAM).close()
    print('ok')
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
`;
    const socket = (proto: string) => run(PYTHON, ['-c', SOCKET_PY, proto]).stdout.trim();

    test('default posture block: only tcp is allowed; udp is refused and reported as DefaultPosture; unix sockets are not classified', async () => {
      const set = compile([hostPolicy('tcp-only', { network: { matchProtocols: [{ protocol: 'tcp', fromSource: [] }] }, action: 'Allow' })], BLOCK);
      const posture = postureOf(set, 'network');
      apply(set);
      expect(socket('tcp')).toBe('ok');
      expect(socket('udp')).toBe('EPERM');
      expect(await decisionFor('udp', posture)).toMatchObject({ action: Action.Block, operation: OperationCode.Network, ret: -1 });
      expect(run(PYTHON, ['-c', 'import socket; socket.socket(socket.AF_UNIX); print("ok")']).stdout.trim()).toBe('ok');
    });

    test('Block wins over Allow; posture audit lets everything else through, reported', async () => {
      const set = compile(
        [
          hostPolicy('allow-all', { network: { matchProtocols: [{ protocol: 'tcp', fromSource: [] }, { protocol: 'icmp', fromSource: [] }] }, action: 'Allow' }),
          hostPolicy('no-tcp', { network: { matchProtocols: [{ protocol: 'tcp', fromSource: [] }] }, action: 'Block' }),
        ],
        AUDIT,
      );
      const posture = postureOf(set, 'network');
      apply(set);
      expect(socket('tcp')).toBe('EPERM');
      expect(socket('udp')).toBe('ok');
      expect((await decisionFor('udp', posture)).action).toBe(Action.Audit);
    });
  });

  describe('containers (stand-ins: unshare -m -p + chroot)', () => {
    let a: StandIn;
    let b: StandIn;

    async function startStandIn(name: string): Promise<StandIn> {
      const root = path.join(work, name);
      fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
      fs.copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'));
      fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
      fs.mkdirSync(path.join(root, 'opt'));
      fs.copyFileSync(BUSYBOX, path.join(root, 'opt', 'busybox'));
      fs.chmodSync(path.join(root, 'opt', 'busybox'), 0o755);
      fs.writeFileSync(path.join(root, 'ok.txt'), 'ok');
      fs.writeFileSync(path.join(root, 'secret'), `${name} secret`);
      // a mount point, as a container's root is (unshare -m inside it changes its propagation)
      if (spawnSync('mount', ['--bind', root, root]).status !== 0) throw new Error(`cannot bind-mount ${root} onto itself`);
      const holder = spawn(UNSHARE, ['-m', '-p', '-f', CHROOT, root, '/bin/busybox', 'sleep', '600'], { stdio: 'ignore' });
      const init = await waitFor(`the chrooted sleeper of ${name}`, () => {
        try {
          const kids = fs.readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim();
          const pid = kids ? Number(kids.split(' ')[0]) : 0;
          return pid && fs.readlinkSync(`/proc/${pid}/root`) === root ? pid : undefined;
        } catch {
          return undefined;
        }
      });
      const target: WorkloadTarget = { mntNs: nsOf(init, 'mnt'), pidNs: nsOf(init, 'pid'), pid: init, containerId: `id-${name}`, containerName: name };
      return { name, root, holder, init, target };
    }

    const containers = (): WorkloadContainer[] =>
      [a, b].map((c) => ({
        id: c.target.containerId,
        name: c.name,
        labels: { app: c.name },
        namespaceName: 'container_namespace',
        pid: c.init,
        mntNs: c.target.mntNs,
        pidNs: c.target.pidNs,
      }));

    function inside(c: StandIn, args: string[], chroot = true): string {
      // -w: the working directory is opened before entering (a file allow-list there would refuse it)
      const r = run(NSENTER, ['-t', String(c.init), '-m', '-p', '-w', ...(chroot ? ['-r'] : []), ...args]);
      return r.status === 0 ? `ok:${r.stdout}` : r.stderr.trim() || `status ${r.status}`;
    }

    beforeAll(async () => {
      a = await startStandIn('alpha');
      b = await startStandIn('beta');
    });

    afterAll(() => {
      for (const c of [a, b]) {
        if (!c) continue;
        try {
          process.kill(c.init, 'SIGKILL');
        } catch {
          // gone already
        }
        c.holder.kill('SIGKILL');
        spawnSync('umount', ['-l', c.root]);
      }
    });

    test('process allow-list in container A (posture block) while the host and B are not in allow-list mode', async () => {
      const set = resolveWorkloads(
        compile([containerPolicy('only-busybox', 'alpha', { process: { matchPaths: [{ path: '/bin/busybox' }] }, action: 'Allow' })], BLOCK),
        containers(),
      );
      const posture = postureOf(set, 'process');
      apply(set, [a.target, b.target]);
      expect(inside(a, ['/bin/busybox', 'echo', 'a'])).toBe('ok:a\n');
      expect(inside(a, ['/opt/busybox', 'true'])).toMatch(DENIED);
      expect(inside(b, ['/opt/busybox', 'echo', 'b'])).toBe('ok:b\n');
      expect(exec(bin('other'))).toBe('ok:');
      // unshared again inside A (a new mount namespace, by the allowed busybox): still A, by its pid namespace
      const unshare = ['/bin/busybox', 'unshare', '-m'];
      expect(inside(a, [...unshare, '/bin/busybox', 'echo', 'u'])).toBe('ok:u\n');
      expect(inside(a, [...unshare, '/opt/busybox', 'true'])).toMatch(DENIED);
      const d = await waitFor('the posture decision', () => decisions.find((x) => x.ruleId === posture));
      expect(d).toMatchObject({ action: Action.Block, operation: OperationCode.Process, mntNs: a.target.mntNs });
    });

    test('file allow-list in container A: its allowed file opens, its other files do not; B and the host are untouched', async () => {
      const set = resolveWorkloads(
        compile(
          [containerPolicy('files', 'alpha', { file: { matchPaths: [{ path: '/ok.txt', readOnly: true }] }, action: 'Allow' })],
          BLOCK,
        ),
        containers(),
      );
      const posture = postureOf(set, 'file');
      apply(set, [a.target, b.target]);
      expect(inside(a, ['/bin/busybox', 'cat', '/ok.txt'])).toBe('ok:ok');
      expect(inside(a, ['/bin/busybox', 'cat', '/secret'])).toMatch(DENIED);
      expect(inside(b, ['/bin/busybox', 'cat', '/secret'])).toBe('ok:beta secret');
      expect(cat(path.join(a.root, 'secret'))).toBe('ok:alpha secret');
      await waitFor('the posture decision', () => decisions.find((x) => x.ruleId === posture && x.resource.endsWith('/secret')));
    });
  });

  describe('pinned allow-list state', () => {
    test('a pinned set keeps its postures after the agent lets go; the adopting agent is exempt from them, its children are not', () => {
      const pinRoot = `/sys/fs/bpf/edgeward-allow-test-${process.pid}`;
      const first = new LsmEnforcer(addon, ring, { pin: { root: pinRoot } });
      let second: LsmEnforcer | undefined;
      try {
        const set = compile([hostPolicy('files', { file: { matchPaths: [{ path: data('ok.txt') }] }, action: 'Allow' })], BLOCK);
        const r = first.apply(set.pathRules, set.networkRules, undefined, [], allowListModes(set));
        expect(r.errors).toEqual([]);
        first.release();
        second = new LsmEnforcer(addon, ring, { pin: { root: pinRoot } });
        expect(second.adopted()).toBe(true);
        expect(cat(data('secret.txt'))).toMatch(DENIED);
        expect(fs.readFileSync(data('secret.txt'), 'utf8')).toBe('secret'); // this process: the agent now
      } finally {
        second?.close();
        first.close();
        fs.rmSync(pinRoot, { recursive: true, force: true });
      }
      expect(cat(data('secret.txt'))).toBe('ok:secret');
    });
  });
});

describe('the real agent (bin/edgeward agent --backend bpf-lsm) in allow-list mode', () => {
  let work: string;
  let policies: string;
  let agent: AgentUnderTest | undefined;
  let allowed: string;
  let other: string;

  beforeAll(() => {
    work = makeTempDir('lsm-allow-agent');
    fs.chmodSync(work, 0o755);
    allowed = busyboxCopy(work, 'allowed');
    other = busyboxCopy(work, 'other');
    policies = path.join(work, 'policies');
    fs.mkdirSync(policies);
    fs.writeFileSync(
      path.join(policies, 'allow.yaml'),
      hostPolicy('agent-allow', { process: { matchPaths: [{ path: allowed }] }, action: 'Allow' }),
    );
  });

  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    // never leave a host allow-list pinned for the next test file
    try {
      unloadPinned(PIN_ROOT);
    } catch {
      // nothing pinned
    }
  });

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  async function startWith(posture: 'block' | 'audit'): Promise<AgentUnderTest> {
    const dir = path.join(work, `run-${posture}`);
    fs.mkdirSync(dir);
    const config = path.join(dir, 'config.yaml');
    fs.writeFileSync(config, `defaultPosture:\n  file: ${posture}\n`);
    return startAgent({ policies, workDir: dir, readyTimeoutMs: 120_000, extraArgs: ['--backend', 'bpf-lsm', '--config', config, '--detach-on-exit'] });
  }

  const alerts = (a: AgentUnderTest) =>
    fs.existsSync(a.alertsFile)
      ? fs
          .readFileSync(a.alertsFile, 'utf8')
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)
      : [];

  test('posture block: the allowed program runs, another is refused; the alert names DefaultPosture', async () => {
    agent = await startWith('block');
    expect(agent.logs().filter((l) => l.level === 'error')).toEqual([]);
    expect(run(allowed, ['true']).status).toBe(0);
    expect(run(other, ['true']).spawnError).toBe('EPERM');
    const a = agent;
    const alert = await waitFor('the default-posture alert', () => alerts(a).find((x) => x.PolicyName === 'DefaultPosture'), 20_000);
    expect(alert).toMatchObject({ Type: 'MatchedHostPolicy', Operation: 'Process', Resource: other, Action: 'Block', Result: 'Permission denied' });
    expect(alerts(a).filter((x) => x.Resource === allowed)).toEqual([]);
  }, 240_000);

  test('posture audit: both run; the other one is reported with Result Passed', async () => {
    agent = await startWith('audit');
    expect(run(other, ['true']).status).toBe(0);
    const a = agent;
    const alert = await waitFor('the default-posture alert', () => alerts(a).find((x) => x.PolicyName === 'DefaultPosture'), 20_000);
    expect(alert).toMatchObject({ Operation: 'Process', Resource: other, Action: 'Audit', Result: 'Passed' });
  }, 240_000);
});
