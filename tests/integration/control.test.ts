// The control socket and the operator CLI against the real agent (compat
// backend, real fanotify denials): policy apply/list/delete at runtime,
// atomic replacement under load, persistence across a restart, refusal of a
// bad policy, logs --follow with filters, throttle summaries, status, and a
// non-root user refused (directory mode and, with the mode opened up, the
// peer credential check).
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { busyboxCopy, CLI, makeTempDir, requireIntegrationEnvironment, run, RunResult, waitFor } from '../helpers/system';
import { hostProcessPolicy } from '../helpers/policies';

const BACKEND = 'compat';
const NOBODY = ['--reuid', '65534', '--regid', '65534', '--clear-groups'];

describe('control socket and operator CLI (real agent)', () => {
  let work: string;
  let socket: string;
  let config: string;
  let policies: string;
  let agent: AgentUnderTest | undefined;
  let bin: Record<string, string>;
  let secret: string;
  const children: ChildProcess[] = [];

  const edgeward = (...args: string[]): RunResult => run(process.execPath, [CLI, ...args, '--socket', socket]);
  const writePolicy = (name: string, text: string): string => {
    const f = path.join(work, `${name}.yaml`);
    fs.writeFileSync(f, text);
    return f;
  };
  const execs = (binary: string): boolean => run(binary, ['true']).spawnError === undefined;

  async function start(): Promise<AgentUnderTest> {
    const a = await startAgent({ policies, workDir: work, extraArgs: ['--config', config, '--backend', BACKEND] });
    await waitFor('the control socket', () => a.logs().find((l) => String(l.message).startsWith(`control socket ${socket}`)), 10_000);
    return a;
  }

  beforeAll(async () => {
    requireIntegrationEnvironment();
    work = makeTempDir('control');
    policies = path.join(work, 'operator');
    fs.mkdirSync(policies);
    fs.writeFileSync(path.join(policies, 'operator.yaml'), hostProcessPolicy('operator-owned', [path.join(work, 'never', 'busybox')]));
    socket = path.join(work, 'run', 'control.sock');
    config = path.join(work, 'config.yaml');
    fs.writeFileSync(
      config,
      `stateDirectory: ${path.join(work, 'state')}\ncontrol:\n  socket: ${socket}\nalerts:\n  throttle:\n    maxAlerts: 5\n    windowMs: 2000\n`,
    );
    bin = {};
    for (const n of ['a', 'b', 'c', 'sh', 'tool']) bin[n] = busyboxCopy(work, n);
    secret = path.join(work, 'secret.txt');
    fs.writeFileSync(secret, 'x');
    agent = await start();
  });

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    if (agent) await agent.stop();
  });

  test('the socket is root-only: 0700 directory, 0600 socket; status names backend, socket and agent pid', () => {
    expect(fs.statSync(path.dirname(socket)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(socket).mode & 0o777).toBe(0o600);
    const r = edgeward('status', '--json');
    expect(r.status).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ backend: BACKEND, socket, pid: agent!.child.pid, policyDirectories: [policies, path.join(work, 'state', 'policies')] });
    expect(edgeward('status').stdout).toMatch(/^backend: +compat/m);
    // probe adds the containers the running agent follows
    const probe = JSON.parse(edgeward('probe', '--json').stdout);
    expect(probe.backend).toBe(BACKEND);
    expect(probe.containersNote).toBeUndefined();
    expect(probe.containers).toEqual(s.containers);
    expect(edgeward('probe').stdout).toMatch(/^containers \(seen by the agent\):\n {2}(no containers|NAME)/m);
  });

  test('apply blocks, replace moves the block, delete lifts it; list shows where each policy comes from', () => {
    expect(execs(bin.a!)).toBe(true);
    const v1 = writePolicy('upd', hostProcessPolicy('upd', [bin.a!]));
    const applied = edgeward('policy', 'apply', v1);
    expect(applied.status).toBe(0);
    expect(applied.stdout).toMatch(/^created +KubeArmorHostPolicy upd$/m);
    expect(execs(bin.a!)).toBe(false); // in force when apply returns

    const list = JSON.parse(edgeward('policy', 'list', '--json').stdout);
    expect(list).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'upd', origin: 'applied', file: path.join(work, 'state', 'policies', 'hostpolicy_upd.yaml') }),
        expect.objectContaining({ name: 'operator-owned', origin: 'operator' }),
      ]),
    );

    writePolicy('upd', hostProcessPolicy('upd', [bin.b!]));
    const replaced = edgeward('policy', 'apply', v1);
    expect(replaced.stdout).toMatch(/^replaced +KubeArmorHostPolicy upd$/m);
    expect(execs(bin.a!)).toBe(true);
    expect(execs(bin.b!)).toBe(false);

    const del = edgeward('policy', 'delete', 'upd');
    expect(del.status).toBe(0);
    expect(del.stdout).toMatch(/^deleted +KubeArmorHostPolicy upd$/m);
    expect(execs(bin.b!)).toBe(true);
    expect(fs.existsSync(path.join(work, 'state', 'policies', 'hostpolicy_upd.yaml'))).toBe(false);

    // a second delete, and a policy from the operator's directory: exit 1, named
    const again = edgeward('policy', 'delete', 'upd');
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('"upd": no policy of that name is in force');
    const theirs = edgeward('policy', 'delete', 'operator-owned');
    expect(theirs.status).toBe(1);
    expect(theirs.stderr).toContain(`comes from ${path.join(policies, 'operator.yaml')} (operator)`);
  });

  test('replacement is atomic: a loop executing the always-blocked binary never succeeds while versions alternate', async () => {
    const both = [hostProcessPolicy('swap', [bin.a!, bin.b!]), hostProcessPolicy('swap', [bin.a!, bin.c!])];
    const file = path.join(work, 'swap.yaml');
    fs.writeFileSync(file, both[0]!);
    expect(edgeward('policy', 'apply', file).status).toBe(0);

    const out = path.join(work, 'loop.out');
    const loop = spawn(bin.sh!, ['sh', '-c', `while :; do if ${bin.a} true 2>/dev/null; then echo ALLOWED; else echo denied; fi; done > ${out}`], {
      stdio: 'ignore',
      argv0: 'busybox',
    });
    children.push(loop);
    try {
      await waitFor('the loop to start', () => (fs.existsSync(out) && fs.readFileSync(out, 'utf8').includes('denied') ? true : undefined));
      for (let i = 1; i <= 16; i++) {
        fs.writeFileSync(file, both[i % 2]!);
        const r = edgeward('policy', 'apply', file);
        expect(r.stdout).toMatch(/^replaced +KubeArmorHostPolicy swap$/m);
        // each version is in force when apply returns
        expect(execs(bin.b!)).toBe(i % 2 === 1);
        expect(execs(bin.c!)).toBe(i % 2 === 0);
      }
    } finally {
      loop.kill('SIGKILL');
    }
    const lines = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean);
    expect(lines.filter((l) => l === 'ALLOWED')).toEqual([]);
    expect(lines.filter((l) => l === 'denied').length).toBeGreaterThan(100);
    expect(edgeward('policy', 'delete', 'swap').status).toBe(0);
  });

  test('a bad policy is refused with the loader message (exit 1) and the previous version still blocks', () => {
    const good = writePolicy('keep', hostProcessPolicy('keep', [bin.tool!]));
    expect(edgeward('policy', 'apply', good).status).toBe(0);
    const bad = writePolicy('keep-bad', hostProcessPolicy('keep', ['relative/path']));
    const r = edgeward('policy', 'apply', bad);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('invalid policy; nothing was applied');
    expect(r.stderr).toContain(`${bad}: document 1: spec.process.matchPaths[0].path: must be an absolute path`);
    expect(execs(bin.tool!)).toBe(false);
    const json = JSON.parse(edgeward('policy', 'apply', '--json', bad).stdout);
    expect(json).toMatchObject({ ok: false, error: { code: 'invalid-policy' } });
    // a name from the operator's directory: refused, nothing changes
    const clash = writePolicy('clash', hostProcessPolicy('operator-owned', [bin.a!]));
    const c = edgeward('policy', 'apply', clash);
    expect(c.status).toBe(1);
    expect(c.stderr).toContain(`"operator-owned" is already in force from ${path.join(policies, 'operator.yaml')} (operator)`);
    expect(execs(bin.a!)).toBe(true);
  });

  test('logs --follow streams only what the filters select; logs without --follow returns the recent ones', async () => {
    const f = writePolicy('watch', hostProcessPolicy('watch', [bin.b!], { files: [secret] }));
    expect(edgeward('policy', 'apply', f).status).toBe(0);
    const follower = spawn(process.execPath, [CLI, 'logs', '--follow', '--json', '--policy', 'watch', '--operation', 'File', '--socket', socket]);
    children.push(follower);
    let out = '';
    let err = '';
    follower.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    follower.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<number | null>((resolve) => follower.on('exit', (code) => resolve(code)));
    await waitFor('logs --follow to connect', () => (err.includes('following alerts') ? true : undefined));

    expect(execs(bin.b!)).toBe(false); // watch, Process: filtered out
    expect(execs(bin.tool!)).toBe(false); // keep, Process: filtered out
    const cat = run(bin.sh!, ['cat', secret]); // watch, File: shown
    expect(cat.stderr).toMatch(/Operation not permitted/);
    const lines = await waitFor('the File alert', () => {
      const l = out.split('\n').filter(Boolean);
      return l.length ? l : undefined;
    });
    await new Promise((r) => setTimeout(r, 500)); // nothing else arrives
    const alerts = out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(lines.length).toBeGreaterThan(0);
    expect(alerts.every((a) => a.PolicyName === 'watch' && a.Operation === 'File')).toBe(true);
    expect(alerts[0]).toMatchObject({ Resource: secret, Action: 'Block', Type: 'MatchedHostPolicy' });
    follower.kill('SIGTERM');
    expect(await exited).toBe(0);

    const recent = edgeward('logs', '--json', '--policy', 'keep');
    expect(recent.status).toBe(0);
    const kept = recent.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.every((a) => a.PolicyName === 'keep' && a.Resource === bin.tool)).toBe(true);
    expect(edgeward('logs', '--policy', 'keep', '--container', 'host').stdout).toMatch(/ {2}Block {2}keep {2}Process {2}.* {2}host$/m);
    expect(edgeward('logs', '--policy', 'keep', '--container', 'some-container').stdout).toBe('');
    expect(edgeward('logs', '--operation', 'Syscall').status).toBe(2);
  });

  test('alerts above the configured rate are summarised with a count, not dropped', async () => {
    const f = writePolicy('noisy', hostProcessPolicy('noisy', [bin.c!]));
    expect(edgeward('policy', 'apply', f).status).toBe(0);
    for (let i = 0; i < 12; i++) expect(execs(bin.c!)).toBe(false);
    const summary = await waitFor(
      'the throttle summary',
      () => agent!.alerts().find((a) => a.PolicyName === 'noisy' && typeof a.Suppressed === 'number'),
      10_000,
    );
    const single = agent!.alerts().filter((a) => a.PolicyName === 'noisy' && a.Suppressed === undefined);
    expect(single).toHaveLength(5);
    expect(summary.Suppressed).toBe(7);
    expect(summary.SuppressedResources).toEqual({ [`Process ${bin.c}`]: 7 });
    expect(JSON.parse(edgeward('status', '--json').stdout).alertsSuppressed).toBeGreaterThanOrEqual(7);
  });

  test('a non-root user is refused: by the directory mode, and by the peer check when the mode is opened up', async () => {
    const asNobody = (...args: string[]) => run('setpriv', [...NOBODY, process.execPath, CLI, ...args, '--socket', socket]);
    const denied = asNobody('policy', 'list');
    expect(denied.status).toBe(1);
    expect(denied.stderr).toContain('permission denied');

    // defence in depth: even a world-writable socket answers root only
    const dirs = [work, path.dirname(socket)];
    try {
      for (const d of dirs) fs.chmodSync(d, 0o755);
      fs.chmodSync(socket, 0o666);
      const r = asNobody('policy', 'delete', 'keep');
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/the control socket is root only: uid 65534 \(pid \d+\) is not root/);
    } finally {
      fs.chmodSync(socket, 0o600);
      for (const d of dirs) fs.chmodSync(d, 0o700);
    }
    expect(execs(bin.tool!)).toBe(false); // "keep" is still in force
    await waitFor('the refusal in the agent log', () => agent!.logs().find((l) => /control socket: refused a connection: uid 65534/.test(String(l.message))));
  });

  test('applied policies survive an agent restart and are in force from the first load', async () => {
    await agent!.stop();
    agent = undefined;
    expect(edgeward('status').status).toBe(3); // not running
    agent = await start();
    const ready = agent.logs().find((l) => l.event === 'ready');
    expect(ready?.rules).toBeGreaterThanOrEqual(3); // operator-owned, keep, watch, noisy
    expect(execs(bin.tool!)).toBe(false);
    const names = JSON.parse(edgeward('policy', 'list', '--json').stdout).map((p: { name: string }) => p.name);
    expect(names.sort()).toEqual(['keep', 'noisy', 'operator-owned', 'watch']);
    for (const n of ['keep', 'noisy', 'watch']) expect(edgeward('policy', 'delete', n).status).toBe(0);
    expect(execs(bin.tool!)).toBe(true);
  });

  test('usage errors exit 2 and --help documents the exit codes', () => {
    expect(edgeward('policy', 'apply').status).toBe(2);
    expect(edgeward('logs', '--limit', '0').status).toBe(2);
    const help = run(process.execPath, [CLI, '--help']);
    expect(help.stdout).toMatch(/3 the agent is not running/);
  });
});
