// matchPatterns (globs) and execname on the bpf-lsm backend, decided in the
// kernel: the path of an open or exec (bpf_d_path) matched by
// include/ew_glob.bpf.h with agent/src/policy/glob.ts's semantics, only for
// workloads that have such rules. The cases mirror allow_list.test.ts's
// "matchPatterns and execname" (compat), plus patterns in allow-list mode.
//
// Only a kernel booted with bpf among its LSMs can run this: run it in the
// qemu guest,
//   tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_patterns.test.ts
// Anywhere else it fails, naming why.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { Action, EventKind, OperationCode } from '../../agent/src/abi';
import { decodeBatch, DecisionEvent } from '../../agent/src/events';
import { LsmEnforcer } from '../../agent/src/lsm_enforcer';
import type { NativeAddon, NativeEventRing, NativeEventSink } from '../../agent/src/native';
import { compilePolicies } from '../../agent/src/policy/compiler';
import { formatPolicyError, parsePolicyText } from '../../agent/src/policy/loader';
import { allowListModes } from '../../agent/src/policy/posture';
import type { CompiledPolicySet, DefaultPosture, WorkloadTarget } from '../../agent/src/policy/types';
import { probe } from '../../agent/src/probe';
import { resolveWorkloads } from '../../agent/src/workloads';
import { ADDON, BUSYBOX, busyboxCopy, makeTempDir, run, waitFor } from '../helpers/system';

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

function compile(docs: string[], posture: DefaultPosture = AUDIT): CompiledPolicySet {
  const loaded = parsePolicyText(docs.join('\n---\n'), 'lsm-patterns-test.yaml');
  if (loaded.errors.length) throw new Error(loaded.errors.map(formatPolicyError).join('\n'));
  const r = compilePolicies(loaded.policies, { hostname: 'test-node', posture });
  if (r.errors.length) throw new Error(r.errors.map((e) => e.message).join('\n'));
  return r.set;
}

describe('bpf-lsm matchPatterns and execname on a BPF-LSM kernel', () => {
  let addon: NativeAddon;
  let sink: NativeEventSink;
  let ring: NativeEventRing;
  let enforcer: LsmEnforcer;
  let decisions: DecisionEvent[] = [];
  let work: string;
  let tools: string;
  const data = (name: string) => path.join(work, 'data', name);

  function exec(file: string, args: string[] = []): string {
    const r = run(file, args);
    if (r.spawnError) return r.spawnError;
    return r.status === 0 ? `ok:${r.stdout}` : r.stderr.trim() || `status ${r.status}`;
  }
  const cat = (file: string) => exec(tools, ['cat', file]);

  function apply(set: CompiledPolicySet, workloads: WorkloadTarget[] = []): void {
    const r = enforcer.apply(set.pathRules, set.networkRules, undefined, workloads, allowListModes(set));
    expect(r.errors).toEqual([]);
    expect(r.applied).toBe(true);
  }

  async function decisionFor(resource: string, ruleId: number): Promise<DecisionEvent> {
    return waitFor(`a decision of rule ${ruleId} on ${resource}`, () => decisions.find((d) => d.resource === resource && d.ruleId === ruleId));
  }

  beforeAll(() => {
    const problems: string[] = [];
    if (process.getuid?.() !== 0) problems.push('must run as root (LSM programs are attached)');
    if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
    for (const f of [BUSYBOX, NSENTER, UNSHARE, CHROOT]) if (!fs.existsSync(f)) problems.push(`${f} missing`);
    if (problems.length) throw new Error(`bpf-lsm pattern tests cannot run: ${problems.join('; ')}`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    addon = require(ADDON) as NativeAddon;
    const report = probe(addon, 'auto');
    if (report.backend !== 'bpf-lsm') {
      throw new Error(
        `bpf-lsm pattern tests need a kernel that runs BPF-LSM programs, and this one does not (${report.kernel}; ` +
          `probe: ${report.reasons.join('; ')}). Run them in the BPF-LSM guest: ` +
          'tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_patterns.test.ts',
      );
    }
    work = makeTempDir('lsm-patterns');
    fs.chmodSync(work, 0o755);
    tools = busyboxCopy(work, 'tools');
    for (const [file, text] of [
      ['a.key', 'key'],
      ['b.txt', 'b'],
      ['deep/a/b/secret', 'deep'],
      ['deep/a/b/public', 'public'],
    ]) {
      fs.mkdirSync(path.dirname(data(file)), { recursive: true });
      fs.writeFileSync(data(file), text);
    }
    for (const script of ['scripts/x-evil', 'opt/evil-tool', 'opt/good-tool']) {
      fs.mkdirSync(path.dirname(path.join(work, script)), { recursive: true });
      fs.writeFileSync(path.join(work, script), `#!${tools} sh\nexit 0\n`, { mode: 0o755 });
    }
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

  test('file patterns: * within a name, ** across directories; {a,b} alternatives', async () => {
    const set = compile([
      hostPolicy('patterns', {
        file: { matchPatterns: [{ pattern: `${data('')}/*.key` }, { pattern: `${data('deep')}/**/secret` }, { pattern: `${data('')}/{x,b}.txt`, readOnly: true }] },
        action: 'Block',
      }),
    ]);
    apply(set);
    expect(cat(data('a.key'))).toMatch(DENIED);
    expect(cat(data('deep/a/b/secret'))).toMatch(DENIED);
    expect(cat(data('deep/a/b/public'))).toBe('ok:public');
    // readOnly: b.txt reads, but is not written
    expect(cat(data('b.txt'))).toBe('ok:b');
    expect(exec(tools, ['sh', '-c', 'echo x >> "$0"', data('b.txt')])).toMatch(DENIED);
    const d = await decisionFor(data('a.key'), set.pathRules[0].ruleId);
    expect(d).toMatchObject({ action: Action.Block, operation: OperationCode.File, ret: -1 });
    await decisionFor(data('deep/a/b/secret'), set.pathRules[1].ruleId);
    // another name for the file (a hard link outside the pattern) is another path: not matched, as on compat
    fs.linkSync(data('a.key'), data('a.link'));
    expect(cat(data('a.link'))).toBe('ok:key');
  });

  test('process pattern and execname (exec only; execname is the file name)', async () => {
    const set = compile([
      hostPolicy('exec-patterns', {
        process: { matchPatterns: [{ pattern: `${work}/**/*-evil` }], matchPaths: [{ execname: 'evil-tool' }] },
        action: 'Block',
      }),
    ]);
    apply(set);
    const evil = path.join(work, 'scripts', 'x-evil');
    const tool = path.join(work, 'opt', 'evil-tool');
    expect(exec(evil)).toBe('EPERM');
    expect(exec(tool)).toBe('EPERM');
    expect(exec(path.join(work, 'opt', 'good-tool'))).toBe('ok:');
    // reading is not running
    expect(cat(tool)).toMatch(/^ok:/);
    const ruleOf = (kind: string) => set.pathRules.find((r) => r.target.kind === kind)!.ruleId;
    expect(await decisionFor(evil, ruleOf('pattern'))).toMatchObject({ action: Action.Block, operation: OperationCode.Process });
    await decisionFor(tool, ruleOf('execname'));
  });

  test('Audit patterns are reported and let through', async () => {
    const set = compile([hostPolicy('audit', { file: { matchPatterns: [{ pattern: `${data('')}/*.txt` }] }, action: 'Audit' })]);
    apply(set);
    expect(cat(data('b.txt'))).toBe('ok:b');
    expect(await decisionFor(data('b.txt'), set.pathRules[0].ruleId)).toMatchObject({ action: Action.Audit, ret: 0 });
  });

  test('allow-list mode: an Allow pattern permits, the posture refuses the rest; a Block pattern inside wins', async () => {
    const set = compile(
      [
        hostPolicy('allow', { file: { matchPatterns: [{ pattern: `${data('deep')}/**` }] }, action: 'Allow' }),
        hostPolicy('deny', { file: { matchPatterns: [{ pattern: `${data('deep')}/**/secret` }] }, action: 'Block' }),
      ],
      BLOCK,
    );
    const posture = set.postureRules!.find((p) => p.category === 'file')!.ruleId;
    apply(set);
    expect(cat(data('deep/a/b/public'))).toBe('ok:public');
    expect(cat(data('deep/a/b/secret'))).toMatch(DENIED);
    expect(cat(data('b.txt'))).toMatch(DENIED);
    await decisionFor(data('b.txt'), posture);
    await decisionFor(data('deep/a/b/secret'), set.pathRules.find((r) => r.action === 'Block')!.ruleId);
  });

  test('execname in allow-list mode: only programs of that name run (a copy under another name does not)', async () => {
    const named = busyboxCopy(path.join(work, 'named'), 'x');
    const set = compile([hostPolicy('allow-name', { process: { matchPaths: [{ execname: 'busybox' }] }, action: 'Allow' })], BLOCK);
    apply(set);
    expect(exec(named, ['echo', 'ok'])).toBe('ok:ok\n');
    const renamed = path.join(path.dirname(named), 'renamed');
    fs.copyFileSync(named, renamed);
    fs.chmodSync(renamed, 0o755);
    expect(exec(renamed, ['true'])).toBe('EPERM');
  });

  describe('containers: patterns of one workload only', () => {
    let holder: ChildProcess;
    let init: number;
    let target: WorkloadTarget;
    let root: string;

    beforeAll(async () => {
      root = path.join(work, 'gamma');
      fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
      fs.copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'));
      fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
      fs.writeFileSync(path.join(root, 'a.key'), 'gamma key');
      holder = spawn(UNSHARE, ['-m', '-p', '-f', CHROOT, root, '/bin/busybox', 'sleep', '600'], { stdio: 'ignore' });
      init = await waitFor('the chrooted sleeper', () => {
        try {
          const kids = fs.readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim();
          const pid = kids ? Number(kids.split(' ')[0]) : 0;
          return pid && fs.readlinkSync(`/proc/${pid}/root`) === root ? pid : undefined;
        } catch {
          return undefined;
        }
      });
      target = { mntNs: nsOf(init, 'mnt'), pidNs: nsOf(init, 'pid'), pid: init, containerId: 'id-gamma', containerName: 'gamma' };
    });

    afterAll(() => {
      try {
        process.kill(init, 'SIGKILL');
      } catch {
        // gone
      }
      holder?.kill('SIGKILL');
    });

    test('a container pattern (paths as the container sees them) applies there, not on the host', () => {
      const set = resolveWorkloads(
        compile([
          JSON.stringify({
            apiVersion: 'security.kubearmor.com/v1',
            kind: 'KubeArmorPolicy',
            metadata: { name: 'keys' },
            spec: { selector: { matchLabels: { app: 'gamma' } }, file: { matchPatterns: [{ pattern: '/*.key' }] }, action: 'Block' },
          }),
        ]),
        [{ id: 'id-gamma', name: 'gamma', labels: { app: 'gamma' }, namespaceName: 'container_namespace', pid: init, mntNs: target.mntNs, pidNs: target.pidNs }],
      );
      apply(set, [target]);
      const r = run(NSENTER, ['-t', String(init), '-m', '-p', '-r', '/bin/busybox', 'cat', '/a.key']);
      expect(r.stderr).toMatch(DENIED);
      expect(cat(path.join(root, 'a.key'))).toBe('ok:gamma key');
      expect(cat(data('a.key'))).toBe('ok:key');
    });
  });
});
