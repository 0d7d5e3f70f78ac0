// Allow-list mode with a default posture, matchPatterns, execname and
// capabilities on the compat backend, end to end on the real kernel: policy
// YAML -> loader -> compiler (with the config's posture) -> CompatBackend ->
// fanotify / cgroup-bpf really refusing with EPERM, decisions reported under
// the posture's rule id (policy "DefaultPosture").
//
// Safe on a shared machine: host allow-lists in block posture would refuse
// every other program, so the file/process coverage of these backends is
// limited to a tmpfs mounted for this run (FileEnforcerOptions
// .hostCoverageMounts; the production default, every mount, is exercised in
// audit posture and with exec patterns), and the network programs attach to
// a cgroup of this run only, whose processes are the only ones affected.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { Action, EventKind, OperationCode } from '../../agent/src/abi';
import { CompatBackend } from '../../agent/src/compat_backend';
import { decodeBatch, DecisionEvent } from '../../agent/src/events';
import type { NativeAddon, NativeEventRing, NativeEventSink } from '../../agent/src/native';
import { compilePolicies } from '../../agent/src/policy/compiler';
import { formatPolicyError, parsePolicyText } from '../../agent/src/policy/loader';
import type { CompiledPolicySet, DefaultPosture } from '../../agent/src/policy/types';
import { resolveWorkloads, WorkloadContainer } from '../../agent/src/workloads';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { docker, DockerdHandle, ensureDockerd, ensureTestImage, TEST_IMAGE } from '../helpers/docker';
import { malformedPolicies } from '../helpers/malformed_policies';
import { ADDON, BUSYBOX, busyboxCopy, cgroup2Path, CLI, makeTempDir, run, waitFor } from '../helpers/system';

const PYTHON = '/usr/bin/python3';
const BLOCK: DefaultPosture = { file: 'block', network: 'block', capabilities: 'block' };
const AUDIT: DefaultPosture = { file: 'audit', network: 'audit', capabilities: 'audit' };

let addon: NativeAddon;
let sink: NativeEventSink;
let ring: NativeEventRing;
let decisions: DecisionEvent[] = [];
let undecodable = 0; // records agent/src/events.ts rejected: must stay 0
let tmp: string; // on the root filesystem: not covered
let mnt: string; // a tmpfs: the covered mount
let tools: string; // an uncovered busybox (cat, sh)
let testCgroup: string;
let backends: CompatBackend[] = [];

function requireEnvironment(): void {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('must run as root (fanotify permission events, mounts, cgroup-bpf)');
  if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
  if (!fs.existsSync(BUSYBOX)) problems.push(`${BUSYBOX} missing: install busybox-static`);
  if (!fs.existsSync(PYTHON)) problems.push(`${PYTHON} missing (the socket client)`);
  if (problems.length) throw new Error(`allow-list tests cannot run: ${problems.join('; ')}`);
}

beforeAll(() => {
  requireEnvironment();
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  addon = require(ADDON) as NativeAddon;
  sink = new addon.EventSink((batch) => {
    const decoded = decodeBatch(batch);
    undecodable += decoded.errors;
    for (const ev of decoded.events) if (ev.kind === EventKind.Decision) decisions.push(ev);
  });
  ring = new addon.EventRing(sink, { ringBufferBytes: 1 << 20, pollIntervalMs: 5_000 });
  tmp = makeTempDir('allow-list');
  fs.chmodSync(tmp, 0o755);
  tools = busyboxCopy(tmp, 'tools');
  mnt = path.join(tmp, 'mnt');
  fs.mkdirSync(mnt);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0755', `ew-allowlist-${process.pid}`, mnt], { encoding: 'utf8' });
  if (m.status !== 0) throw new Error(`cannot mount a tmpfs at ${mnt}: ${m.stderr}`);
  // busybox copies (mnt/bin/<name>/busybox: busybox picks its applet from argv[0]'s name)
  for (const name of ['allowed', 'other', 'blocked', 'fine']) busyboxCopy(path.join(mnt, 'bin'), name);
  // scripts where the file name matters (patterns, execname): their interpreter is outside the mount
  for (const script of ['scripts/x-evil', 'opt/evil-tool', 'opt/good-tool']) {
    fs.mkdirSync(path.dirname(path.join(mnt, script)), { recursive: true });
    fs.writeFileSync(path.join(mnt, script), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  }
  for (const [file, text] of [
    ['data/ok.txt', 'ok'],
    ['data/secret.txt', 'secret'],
    ['data/a.key', 'key'],
    ['data/b.txt', 'b'],
    ['deep/a/b/secret', 'deep'],
    ['deep/a/b/public', 'public'],
  ]) {
    fs.mkdirSync(path.dirname(path.join(mnt, file)), { recursive: true });
    fs.writeFileSync(path.join(mnt, file), text);
  }
  testCgroup = path.join(cgroup2Path(), `edgeward-allowlist-test-${process.pid}`);
  fs.mkdirSync(testCgroup);
});

afterEach(async () => {
  for (const b of backends) b.close();
  backends = [];
  // records of this test still on their way must not count for the next one
  await new Promise((r) => setTimeout(r, 500));
  decisions = [];
  const bad = undecodable;
  undecodable = 0;
  expect(bad).toBe(0);
});

afterAll(async () => {
  for (const b of backends) b.close();
  ring?.close();
  await new Promise((r) => setTimeout(r, 200));
  sink?.close();
  if (mnt) spawnSync('umount', ['-l', mnt]);
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
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

function hostPolicy(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'security.kubearmor.com/v1',
    kind: 'KubeArmorHostPolicy',
    metadata: { name },
    spec: { nodeSelector: { matchLabels: { 'kubearmor.io/hostname': '*' } }, ...spec },
  });
}

/** YAML -> compiled set, as the agent does it (the config's posture in the options). */
function compile(docs: string[], posture: DefaultPosture): CompiledPolicySet {
  const loaded = parsePolicyText(docs.join('\n---\n'), 'allow-list-test.yaml');
  if (loaded.errors.length) throw new Error(loaded.errors.map(formatPolicyError).join('\n'));
  const r = compilePolicies(loaded.policies, { hostname: 'test-node', posture });
  if (r.errors.length) throw new Error(r.errors.map((e) => e.message).join('\n'));
  return r.set;
}

/** A compat backend whose file coverage is the test tmpfs (or every mount) and whose network programs sit on the test cgroup. */
function backend(coverage: 'tmpfs' | 'every mount' = 'tmpfs'): CompatBackend {
  const b = new CompatBackend(addon, sink, ring, testCgroup, coverage === 'tmpfs' ? { hostCoverageMounts: [mnt] } : {});
  backends.push(b);
  return b;
}

function containerPolicy(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({
    apiVersion: 'security.kubearmor.com/v1',
    kind: 'KubeArmorPolicy',
    metadata: { name },
    spec: { selector: { matchLabels: { app: `ew-allowlist-${process.pid}` } }, ...spec },
  });
}

function applyOk(b: CompatBackend, set: CompiledPolicySet): void {
  const r = b.apply(set);
  expect(r.errors).toEqual([]);
}

const bin = (name: string) => path.join(mnt, 'bin', name, 'busybox');
const data = (name: string) => path.join(mnt, name);

/** Runs `file true`: 'ok' or the spawn errno. */
function exec(file: string): string {
  const r = run(file, ['true']);
  return r.spawnError ?? (r.status === 0 ? 'ok' : `status ${r.status}: ${r.stderr}`);
}

/** cat through the uncovered busybox: 'ok:<content>' or the error. */
function cat(file: string): string {
  const r = run(tools, ['cat', file]);
  return r.status === 0 ? `ok:${r.stdout}` : r.stderr.trim();
}

/** Appends through the uncovered busybox shell: 'ok' or the error. */
function append(file: string): string {
  const r = run(tools, ['sh', '-c', 'echo more >> "$0"', file]);
  return r.status === 0 ? 'ok' : r.stderr.trim();
}

const DENIED = /Operation not permitted/;

async function decisionFor(resource: string, ruleId: number): Promise<DecisionEvent> {
  return waitFor(`a decision of rule ${ruleId} on ${resource}`, () =>
    decisions.find((d) => d.resource === resource && d.ruleId === ruleId),
  );
}

function postureOf(set: CompiledPolicySet, category: string): number {
  const p = (set.postureRules ?? []).find((x) => x.category === category);
  if (!p) throw new Error(`no ${category} posture in the set`);
  expect(set.meta.get(p.ruleId)!.policyName).toBe('DefaultPosture');
  return p.ruleId;
}

describe('process allow-list', () => {
  test('default posture block: only the allowed program runs; others are refused and reported as DefaultPosture', async () => {
    const set = compile([hostPolicy('only-allowed', { process: { matchPaths: [{ path: bin('allowed') }] }, action: 'Allow' })], BLOCK);
    const posture = postureOf(set, 'process');
    applyOk(backend(), set);
    expect(exec(bin('allowed'))).toBe('ok');
    expect(exec(bin('other'))).toBe('EPERM');
    const d = await decisionFor(bin('other'), posture);
    expect(d).toMatchObject({ action: Action.Block, operation: OperationCode.Process, ret: -1 });
    // the allowed program is not reported
    await new Promise((r) => setTimeout(r, 300));
    expect(decisions.filter((x) => x.resource === bin('allowed'))).toEqual([]);
    // programs outside the covered mount are untouched
    expect(exec(tools)).toBe('ok');
    // a private copy of the mount (unshare -m) is the same filesystem: still covered
    const unshared = run('/usr/bin/unshare', ['-m', '--propagation', 'private', bin('other'), 'true']);
    expect(unshared.status).not.toBe(0);
    expect(unshared.stderr).toMatch(DENIED);
    expect(run('/usr/bin/unshare', ['-m', '--propagation', 'private', bin('allowed'), 'true']).status).toBe(0);
  });

  test('default posture audit: everything runs; the unallowed exec is reported with Action Audit', async () => {
    const set = compile([hostPolicy('only-allowed', { process: { matchPaths: [{ path: bin('allowed') }] }, action: 'Allow' })], AUDIT);
    const posture = postureOf(set, 'process');
    applyOk(backend(), set);
    expect(exec(bin('other'))).toBe('ok');
    const d = await decisionFor(bin('other'), posture);
    expect(d).toMatchObject({ action: Action.Audit, ret: 0 });
  });

  test('Block wins over Allow; Allow with fromSource allows only that source', async () => {
    const set = compile(
      [
        hostPolicy('allow', {
          process: {
            matchPaths: [{ path: bin('allowed') }, { path: bin('blocked') }, { path: bin('fine'), fromSource: [{ path: bin('allowed') }] }],
          },
          action: 'Allow',
        }),
        hostPolicy('block', { process: { matchPaths: [{ path: bin('blocked') }] }, action: 'Block' }),
      ],
      BLOCK,
    );
    const blockRule = set.pathRules.find((r) => r.action === 'Block')!.ruleId;
    applyOk(backend(), set);
    expect(exec(bin('blocked'))).toBe('EPERM');
    await decisionFor(bin('blocked'), blockRule);
    // fine: allowed when run by `allowed`, refused when run by the uncovered busybox
    const viaAllowed = run(bin('allowed'), ['sh', '-c', `exec "${bin('fine')}" true`]);
    expect(viaAllowed.status).toBe(0);
    const viaTools = run(tools, ['sh', '-c', `exec "${bin('fine')}" true`]);
    expect(viaTools.status).not.toBe(0);
    expect(viaTools.stderr).toMatch(/Permission denied|Operation not permitted/);
  });

  test('the whole host (no coverage limit) in audit posture: other programs run, unallowed ones are reported', async () => {
    const set = compile([hostPolicy('allow-true', { process: { matchPaths: [{ path: '/usr/bin/true' }] }, action: 'Allow' })], AUDIT);
    const posture = postureOf(set, 'process');
    applyOk(backend('every mount'), set);
    expect(exec('/usr/bin/true')).toBe('ok');
    expect(exec(tools)).toBe('ok');
    const d = await decisionFor(tools, posture);
    expect(d.action).toBe(Action.Audit);
  });
});

describe('file allow-list', () => {
  test('default posture block: allowed files open (readOnly: reads only), others are refused', async () => {
    const set = compile(
      [hostPolicy('files', { file: { matchPaths: [{ path: data('data/ok.txt'), readOnly: true }] }, action: 'Allow' })],
      BLOCK,
    );
    const posture = postureOf(set, 'file');
    applyOk(backend(), set);
    expect(cat(data('data/ok.txt'))).toBe('ok:ok');
    expect(cat(data('data/secret.txt'))).toMatch(DENIED);
    expect(append(data('data/ok.txt'))).toMatch(/Operation not permitted|can't create/);
    const d = await decisionFor(data('data/secret.txt'), posture);
    expect(d).toMatchObject({ action: Action.Block, operation: OperationCode.File });
    // files elsewhere are not in the covered mount
    expect(cat('/etc/hostname')).toMatch(/^ok:/);
  });

  test('directory Allow with a Block inside it: the Block wins', async () => {
    const set = compile(
      [
        hostPolicy('dir', { file: { matchDirectories: [{ dir: data('deep/'), recursive: true }] }, action: 'Allow' }),
        hostPolicy('deny-secret', { file: { matchPaths: [{ path: data('deep/a/b/secret') }] }, action: 'Block' }),
      ],
      BLOCK,
    );
    applyOk(backend(), set);
    expect(cat(data('deep/a/b/public'))).toBe('ok:public');
    expect(cat(data('deep/a/b/secret'))).toMatch(DENIED);
    expect(cat(data('data/b.txt'))).toMatch(DENIED); // outside the allowed directory: posture
  });
});

describe('matchPatterns and execname', () => {
  test('file patterns: * within a name, ** across directories', async () => {
    const set = compile(
      [hostPolicy('patterns', { file: { matchPatterns: [{ pattern: `${data('data')}/*.key` }, { pattern: `${data('deep')}/**/secret` }] }, action: 'Block' })],
      AUDIT,
    );
    applyOk(backend(), set);
    expect(cat(data('data/a.key'))).toMatch(DENIED);
    expect(cat(data('data/b.txt'))).toBe('ok:b');
    expect(cat(data('deep/a/b/secret'))).toMatch(DENIED);
    expect(cat(data('deep/a/b/public'))).toBe('ok:public');
    await decisionFor(data('data/a.key'), set.pathRules[0].ruleId);
    await decisionFor(data('deep/a/b/secret'), set.pathRules[1].ruleId);
  });

  test('process pattern and execname on every host mount (exec events only)', async () => {
    const set = compile(
      [
        hostPolicy('exec-patterns', {
          process: { matchPatterns: [{ pattern: `${mnt}/**/*-evil` }], matchPaths: [{ execname: 'evil-tool' }] },
          action: 'Block',
        }),
      ],
      AUDIT,
    );
    applyOk(backend('every mount'), set);
    const evil = path.join(mnt, 'scripts', 'x-evil');
    const tool = path.join(mnt, 'opt', 'evil-tool');
    expect(exec(evil)).toBe('EPERM');
    expect(exec(tool)).toBe('EPERM');
    // the same script under another name runs (execname matches the name, as in KubeArmor)
    expect(exec(path.join(mnt, 'opt', 'good-tool'))).toBe('ok');
    const ruleOf = (kind: string) => set.pathRules.find((r) => r.target.kind === kind)!.ruleId;
    await decisionFor(evil, ruleOf('pattern'));
    await decisionFor(tool, ruleOf('execname'));
    // a filesystem mounted after the rules is covered once the watcher sees the mount table change
    const late = path.join(mnt, 'late');
    fs.mkdirSync(late);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', `ew-allowlist-late-${process.pid}`, late], { encoding: 'utf8' });
    if (m.status !== 0) throw new Error(`cannot mount ${late}: ${m.stderr}`);
    try {
      fs.writeFileSync(path.join(late, 'y-evil'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
      await waitFor('the new filesystem to be covered', () => (exec(path.join(late, 'y-evil')) === 'EPERM' ? true : undefined), 5000);
    } finally {
      spawnSync('umount', ['-l', late]);
    }
  });
});

describe('network allow-list (programs on this run\'s cgroup only)', () => {
  const inCgroup = (exe: string, code: string) =>
    run(BUSYBOX, ['sh', '-c', 'echo $$ > "$0" && exec "$@"', path.join(testCgroup, 'cgroup.procs'), exe, '-c', code]);
  const UDP = 'import socket\ntry:\n  socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n  print("ok")\nexcept OSError as e:\n  print(e.errno)';
  const TCP = UDP.replace('SOCK_DGRAM', 'SOCK_STREAM');

  test('default posture block: only tcp is allowed; udp is refused and reported as DefaultPosture', async () => {
    const set = compile([hostPolicy('tcp-only', { network: { matchProtocols: [{ protocol: 'tcp', fromSource: [] }] }, action: 'Allow' })], BLOCK);
    const posture = postureOf(set, 'network');
    applyOk(backend(), set);
    expect(inCgroup(PYTHON, TCP).stdout.trim()).toBe('ok');
    expect(inCgroup(PYTHON, UDP).stdout.trim()).toBe('1'); // EPERM
    const d = await decisionFor('udp', posture);
    expect(d).toMatchObject({ action: Action.Block, operation: OperationCode.Network });
  });

  test('Block wins over Allow; posture audit lets everything else through, reported', async () => {
    const set = compile(
      [
        hostPolicy('allow-all', { network: { matchProtocols: [{ protocol: 'tcp,icmp', fromSource: [] }] }, action: 'Allow' }),
        hostPolicy('no-tcp', { network: { matchProtocols: [{ protocol: 'tcp', fromSource: [] }] }, action: 'Block' }),
      ],
      AUDIT,
    );
    const posture = postureOf(set, 'network');
    applyOk(backend(), set);
    expect(inCgroup(PYTHON, TCP).stdout.trim()).toBe('1');
    expect(inCgroup(PYTHON, UDP).stdout.trim()).toBe('ok');
    expect((await decisionFor('udp', posture)).action).toBe(Action.Audit);
  });
});

describe('capabilities on compat', () => {
  test('compiled, and reported as not enforced per policy (no capability hook), next to rules that are', () => {
    const set = compile(
      [
        hostPolicy('caps', {
          capabilities: { matchCapabilities: [{ capability: 'net_raw', fromSource: [{ path: '/usr/bin/ping' }] }] },
          file: { matchPaths: [{ path: data('data/b.txt') }] },
          action: 'Block',
        }),
      ],
      BLOCK,
    );
    const r = backend().apply(set);
    expect(r.errors).toEqual([
      'policy "caps": capabilities rules not enforced: net_raw (Block): the compat backend has no capability hook (neither enforced nor audited; see edgeward probe)',
    ]);
    expect(cat(data('data/b.txt'))).toMatch(DENIED); // the rest of the policy is in force
  });
});

describe('a real agent (bin/edgeward agent, compat) given 200+ malformed policies', () => {
  let agent: AgentUnderTest | undefined;
  afterAll(async () => {
    await agent?.stop();
  });

  test('each is refused with a line naming its file; the agent stays up and the previous policy still blocks', async () => {
    if (!fs.existsSync(path.join(path.dirname(CLI), '..', 'dist', 'agent', 'src', 'cli.js'))) {
      throw new Error('dist/ is not built: run npm run build');
    }
    const work = path.join(tmp, 'agent');
    const policies = path.join(work, 'policies');
    fs.mkdirSync(policies, { recursive: true });
    const target = path.join(work, 'guarded.txt');
    fs.writeFileSync(target, 'guarded');
    fs.writeFileSync(
      path.join(policies, 'aaa-guard.yaml'),
      hostPolicy('guard', { file: { matchPaths: [{ path: target }] }, action: 'Block' }),
    );
    agent = await startAgent({ policies, workDir: work, extraArgs: ['--backend', 'compat'] });
    expect(cat(target)).toMatch(DENIED);

    const cases = malformedPolicies();
    expect(cases.length).toBeGreaterThanOrEqual(200);
    for (const c of cases) fs.writeFileSync(path.join(policies, `bad-${c.name}.yaml`), c.text);
    // the guard's own file broken too: its last good version stays in force
    fs.writeFileSync(path.join(policies, 'aaa-guard.yaml'), `${fs.readFileSync(path.join(policies, 'aaa-guard.yaml'), 'utf8')}\n  bogus: [\n`);
    const readyBefore = agent.logs().filter((l) => l.event === 'ready').length;
    agent.child.kill('SIGHUP');
    await waitFor('the reload', () => (agent!.logs().filter((l) => l.event === 'ready').length > readyBefore ? true : undefined), 60_000);

    expect(agent.child.exitCode).toBeNull();
    const errors = agent.logs().filter((l) => l.level === 'error').map((l) => String(l.message));
    for (const c of cases) {
      const file = path.join(policies, `bad-${c.name}.yaml`);
      const lines = errors.filter((e) => e.startsWith(`${file}: `));
      if (!lines.some((l) => c.expect.test(l))) throw new Error(`no clear error for ${file} (want ${c.expect}):\n${lines.join('\n')}`);
    }
    expect(agent.logs().some((l) => l.level === 'warn' && /policy "guard": keeping the last good version/.test(String(l.message)))).toBe(true);
    expect(cat(target)).toMatch(DENIED);
    // and it still reloads: the guard fixed, a new rule added
    fs.writeFileSync(
      path.join(policies, 'aaa-guard.yaml'),
      hostPolicy('guard', { file: { matchPaths: [{ path: target }, { path: data('data/b.txt') }] }, action: 'Block' }),
    );
    const before = agent.logs().filter((l) => l.event === 'ready').length;
    agent.child.kill('SIGHUP');
    await waitFor('the second reload', () => (agent!.logs().filter((l) => l.event === 'ready').length > before ? true : undefined), 60_000);
    expect(cat(target)).toMatch(DENIED);
    expect(cat(data('data/b.txt'))).toMatch(DENIED);
    expect(await agent.stop()).toBe(0);
    agent = undefined;
    expect(cat(target)).toBe('ok:guarded');
  }, 180_000);
});

/** The loader (first) and libraries /usr/bin/true needs, from ldd: [path it asks for, file to copy]. */
function dynamicRuntime(): Array<[string, string]> {
  const r = spawnSync('ldd', ['/usr/bin/true'], { encoding: 'utf8' });
  const out: Array<[string, string]> = [];
  for (const line of (r.stdout ?? '').split('\n')) {
    const lib = /=>\s+(\/\S+)/.exec(line);
    const loader = /^\s*(\/\S+)\s+\(/.exec(line);
    if (loader) out.unshift([loader[1], fs.realpathSync(loader[1])]);
    else if (lib) out.push([lib[1], fs.realpathSync(lib[1])]);
  }
  if (r.status !== 0 || out.length < 2 || !/ld-/.test(out[0][0])) throw new Error(`ldd /usr/bin/true: ${r.stdout}${r.stderr}`);
  return out;
}

describe('allow-list in a container (real dockerd; the selected container only)', () => {
  const NAME = `ew-allowlist-${process.pid}`;
  const OTHER = `${NAME}-other`;
  let dockerd: DockerdHandle | undefined;
  const containers: WorkloadContainer[] = [];

  function start(name: string, labels: Record<string, string>): WorkloadContainer {
    const r = docker('run', '-d', '--name', name, ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]), TEST_IMAGE, 'sleep', '3600');
    if (r.status !== 0) throw new Error(`docker run ${name}: ${r.stderr}`);
    const pid = Number(docker('inspect', '-f', '{{.State.Pid}}', name).stdout);
    const c: WorkloadContainer = {
      id: r.stdout,
      name,
      labels,
      namespaceName: 'container_namespace',
      pid,
      mntNs: Number(fs.statSync(`/proc/${pid}/ns/mnt`).ino),
      pidNs: Number(fs.statSync(`/proc/${pid}/ns/pid`).ino),
    };
    // a second program (another busybox inode) and data files
    const cp = docker('cp', BUSYBOX, `${name}:/tmp/busybox`);
    if (cp.status !== 0) throw new Error(`docker cp: ${cp.stderr}`);
    const prep = docker('exec', name, 'sh', '-c', 'mkdir -p /data && echo ok > /data/ok.txt && echo secret > /data/secret.txt');
    if (prep.status !== 0) throw new Error(`preparing ${name}: ${prep.stderr}`);
    // a dynamically linked program with its loader and libraries, at the paths it asks for
    for (const [at, from] of dynamicRuntime()) {
      docker('exec', name, '/bin/busybox', 'mkdir', '-p', path.dirname(at));
      const c2 = docker('cp', from, `${name}:${at}`);
      if (c2.status !== 0) throw new Error(`docker cp ${from}: ${c2.stderr}`);
    }
    const c3 = docker('cp', '/usr/bin/true', `${name}:/tmp/dyn-true`);
    if (c3.status !== 0) throw new Error(`docker cp /usr/bin/true: ${c3.stderr}`);
    containers.push(c);
    return c;
  }

  beforeAll(async () => {
    dockerd = await ensureDockerd();
    ensureTestImage();
    docker('rm', '-f', NAME, OTHER);
    start(NAME, { app: NAME });
    start(OTHER, { app: 'someone-else' });
  }, 120_000);

  afterAll(async () => {
    docker('rm', '-f', NAME, OTHER);
    await dockerd?.stop();
  }, 60_000);

  /** Resolved against the running containers; network programs on the cgroup v2 root (rules are keyed by workload). */
  function applyToContainers(docs: string[], posture: DefaultPosture): CompiledPolicySet {
    const set = resolveWorkloads(compile(docs, posture), containers);
    const b = new CompatBackend(addon, sink, ring, cgroup2Path());
    backends.push(b);
    applyOk(b, set);
    return set;
  }

  const inC = (name: string, ...cmd: string[]) => docker('exec', name, ...cmd);
  const PERM = /permission denied|operation not permitted/i;

  test('process allow-list, posture block: only busybox runs in the selected container; the other container and the host are untouched', async () => {
    const set = applyToContainers([containerPolicy('only-busybox', { process: { matchPaths: [{ path: '/bin/busybox' }] }, action: 'Allow' })], BLOCK);
    const posture = postureOf(set, 'process');
    expect(inC(NAME, 'true').status).toBe(0);
    const denied = inC(NAME, '/tmp/busybox', 'true');
    expect(denied.status).not.toBe(0);
    expect(denied.stderr + denied.stdout).toMatch(PERM);
    expect(inC(OTHER, '/tmp/busybox', 'true').status).toBe(0);
    expect(exec(bin('other'))).toBe('ok');
    const d = await waitFor('the posture decision', () => decisions.find((x) => x.ruleId === posture && x.resource.endsWith('/tmp/busybox')));
    expect(d).toMatchObject({ action: Action.Block, operation: OperationCode.Process });
    expect(set.meta.get(posture)).toMatchObject({ policyName: 'DefaultPosture', policyType: 'MatchedPolicy' });
  });

  test('a dynamic program runs when allowed (its loader comes with the exec); the loader run directly is refused', async () => {
    const set = applyToContainers(
      [containerPolicy('dyn', { process: { matchPaths: [{ path: '/bin/busybox' }, { path: '/tmp/dyn-true' }] }, action: 'Allow' })],
      BLOCK,
    );
    const posture = postureOf(set, 'process');
    const loader = dynamicRuntime()[0][0];
    expect(inC(NAME, '/tmp/dyn-true')).toMatchObject({ status: 0 });
    const direct = inC(NAME, loader, '/tmp/dyn-true');
    expect(direct.status).not.toBe(0);
    expect(direct.stderr + direct.stdout).toMatch(PERM);
    await waitFor('the posture decision', () => decisions.find((x) => x.ruleId === posture && x.resource.endsWith(path.basename(loader))));
  });

  test('file allow-list, posture block: allowed files open, the rest of the container\'s files do not', async () => {
    const set = applyToContainers(
      [
        containerPolicy('files', {
          file: {
            matchDirectories: [{ dir: '/bin/', recursive: true }, { dir: '/dev/', recursive: true }],
            matchPaths: [{ path: '/data/ok.txt', readOnly: true }],
          },
          action: 'Allow',
        }),
      ],
      BLOCK,
    );
    const posture = postureOf(set, 'file');
    expect(inC(NAME, 'cat', '/data/ok.txt').stdout.trim()).toBe('ok');
    const secret = inC(NAME, 'cat', '/data/secret.txt');
    expect(secret.status).not.toBe(0);
    expect(secret.stderr).toMatch(PERM);
    expect(inC(NAME, 'sh', '-c', 'echo x >> /data/ok.txt').stderr).toMatch(PERM);
    expect(inC(OTHER, 'cat', '/data/secret.txt').stdout.trim()).toBe('secret');
    await waitFor('the posture decision', () => decisions.find((x) => x.ruleId === posture && x.resource.endsWith('/data/secret.txt')));
  });

  test('network allow-list, posture block: tcp allowed, udp refused in the selected container only', async () => {
    const set = applyToContainers([containerPolicy('tcp-only', { network: { matchProtocols: [{ protocol: 'tcp' }] }, action: 'Allow' })], BLOCK);
    const posture = postureOf(set, 'network');
    // busybox nslookup: a UDP socket to the given server
    const udp = inC(NAME, 'nslookup', '-timeout=1', 'example.invalid', '127.0.0.1');
    expect(udp.stderr + udp.stdout).toMatch(PERM);
    const tcp = inC(NAME, 'sh', '-c', 'echo x | nc -w1 127.0.0.1 9');
    expect(tcp.stderr).not.toMatch(PERM); // refused by the peer, not by us
    const otherUdp = inC(OTHER, 'nslookup', '-timeout=1', 'example.invalid', '127.0.0.1');
    expect(otherUdp.stderr + otherUdp.stdout).not.toMatch(PERM);
    await waitFor('the posture decision', () => decisions.find((x) => x.ruleId === posture && x.resource === 'udp'));
  });
});
