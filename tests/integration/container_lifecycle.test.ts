// A container's life under a policy applied at runtime, on the real agent
// (compat backend) and a private dockerd of this test: `edgeward policy
// apply` of a KubeArmorPolicy naming container A restricts A only, in force
// when the command returns; `logs --follow --container A` shows the violation
// with A's identity; A stays restricted through `docker restart`, `docker
// stop` + `docker start` (new pid and namespaces), an agent restart with the
// containers running, and a dockerd restart (the agent keeps enforcing while
// dockerd is away, reconnects, and recognises a container started after).
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { containerPolicy } from '../helpers/policies';
import { importBusyboxImage, PrivateDockerd, startPrivateDockerd } from '../helpers/private_dockerd';
import { CLI, makeTempDir, requireIntegrationEnvironment, run, RunResult, waitFor } from '../helpers/system';

const IMAGE = `edgeward-test/lifecycle-${process.pid}:latest`;
const TOOL = '/usr/bin/busybox-tool';
const PREFIX = `ew-lc-${process.pid}`;
const A = `${PREFIX}-a`;
const B = `${PREFIX}-b`;
const LATE = `${PREFIX}-late`;
/** exit status of a shell whose exec was refused (126 EPERM/EACCES; busybox sh may say 127) */
const REFUSED_RC = /rc=12[67]/;
const DENIED = /Permission denied|Operation not permitted/;

/** blocks TOOL in the containers `matchLabels` selects */
function toolPolicy(name: string, matchLabels: Record<string, string>): string {
  return containerPolicy(name, matchLabels, `  severity: 5\n  message: tool refused\n  process:\n    matchPaths:\n    - path: ${TOOL}\n  action: Block\n`);
}

function nsInode(pid: number, kind: 'mnt' | 'pid'): number {
  return Number(/\d+/.exec(fs.readlinkSync(`/proc/${pid}/ns/${kind}`))![0]);
}

describe('container lifecycle under a runtime-applied policy (real agent, private dockerd)', () => {
  let dockerd: PrivateDockerd;
  let agent: AgentUnderTest | undefined;
  let work: string;
  let socket: string;
  let config: string;
  let policies: string;
  const ids: Record<string, string> = {};
  const children: ChildProcess[] = [];

  const docker = (...args: string[]) => dockerd.docker(...args);
  const edgeward = (...args: string[]): RunResult => run(process.execPath, [CLI, ...args, '--socket', socket]);
  /** runs the tool in the container through docker exec; "rc=N" on stdout */
  const toolIn = (name: string) => docker('exec', name, 'sh', '-c', `${TOOL} true; echo rc=$?`);
  const blockedIn = (name: string): boolean => REFUSED_RC.test(toolIn(name).stdout);
  const runsIn = (name: string): boolean => toolIn(name).stdout === 'rc=0';
  const pidOf = (name: string): number => Number(docker('inspect', '-f', '{{.State.Pid}}', name).stdout);
  /** the container's own file, executed by a host process (same inode, host namespaces) */
  const runsOnHost = (name: string): boolean => run(`/proc/${pidOf(name)}/root${TOOL}`, ['echo', 'host']).stdout === 'host\n';

  function startContainer(name: string, labels: Record<string, string>): string {
    const labelArgs = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
    const r = docker('run', '-d', '--network', 'none', '--name', name, ...labelArgs, IMAGE, 'sleep', '3600');
    if (r.status !== 0) throw new Error(`docker run ${name}: ${r.stderr}`);
    ids[name] = r.stdout;
    return r.stdout;
  }

  async function startTheAgent(): Promise<AgentUnderTest> {
    const a = await startAgent({
      policies,
      workDir: work,
      env: { DOCKER_HOST: dockerd.host },
      extraArgs: ['--config', config, '--backend', 'compat'],
      readyTimeoutMs: 60_000,
    });
    await waitFor('the control socket', () => a.logs().find((l) => String(l.message).startsWith(`control socket ${socket}`)), 10_000);
    return a;
  }

  /** `edgeward logs --follow --json` with filters; the lines it printed so far */
  async function follow(...filters: string[]): Promise<{ lines: () => Array<Record<string, unknown>>; stop: () => Promise<number | null> }> {
    const child = spawn(process.execPath, [CLI, 'logs', '--follow', '--json', ...filters, '--socket', socket]);
    children.push(child);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor('logs --follow to connect', () => (err.includes('following alerts') ? true : undefined), 10_000);
    return {
      lines: () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>),
      stop: async () => {
        child.kill('SIGTERM');
        return exited;
      },
    };
  }

  /** Polls until `what` holds in the container; returns how long it took (printed by the caller). */
  async function msUntil(what: string, check: () => boolean, timeoutMs = 10_000): Promise<number> {
    const t0 = Date.now();
    await waitFor(what, () => (check() ? true : undefined), timeoutMs);
    return Date.now() - t0;
  }

  const alertsNaming = (name: string) => agent!.alerts().filter((a) => a.PolicyName === 'lc-tool-in-a' && a.ContainerName === name);

  beforeAll(async () => {
    requireIntegrationEnvironment();
    work = makeTempDir('lifecycle');
    fs.chmodSync(work, 0o755);
    dockerd = await startPrivateDockerd(path.join(work, 'dockerd'));
    importBusyboxImage(dockerd, IMAGE, [TOOL]);
    // Started before the agent: found when it lists the running containers.
    // Same labels: only the container name tells A from B.
    startContainer(A, { app: 'lc', 'kubearmor.io/namespace': 'edge-ns' });
    startContainer(B, { app: 'lc', 'kubearmor.io/namespace': 'edge-ns' });
    policies = path.join(work, 'operator');
    fs.mkdirSync(policies);
    socket = path.join(work, 'run', 'control.sock');
    config = path.join(work, 'config.yaml');
    fs.writeFileSync(config, `stateDirectory: ${path.join(work, 'state')}\ncontrol:\n  socket: ${socket}\n`);
    agent = await startTheAgent();
  }, 240_000);

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await agent?.stop();
    await dockerd?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }, 120_000);

  test('policy apply naming A: A refuses the tool once the command returns; B and the host run it; logs --follow --container A shows it', async () => {
    expect(runsIn(A)).toBe(true);
    const followA = await follow('--container', A);
    const file = path.join(work, 'lc-tool-in-a.yaml');
    fs.writeFileSync(file, toolPolicy('lc-tool-in-a', { 'kubearmor.io/container.name': A }));

    const t0 = Date.now();
    const applied = edgeward('policy', 'apply', file);
    const returned = Date.now();
    expect(applied.status).toBe(0);
    expect(applied.stdout).toMatch(/^created +KubeArmorPolicy lc-tool-in-a$/m);
    const first = toolIn(A);
    const checked = Date.now();
    console.log(`policy apply returned after ${returned - t0} ms; the first exec in A after it was refused ${checked - t0} ms after the apply started`);
    expect(first.stdout).toMatch(REFUSED_RC);
    expect(first.stderr).toMatch(DENIED);
    expect(runsIn(B)).toBe(true);
    expect(runsOnHost(A)).toBe(true);

    const shown = await waitFor('the violation on logs --follow --container A', () => followA.lines().find((a) => a.PolicyName === 'lc-tool-in-a'), 10_000);
    expect(shown).toMatchObject({
      Type: 'MatchedPolicy',
      ContainerID: ids[A],
      ContainerName: A,
      ContainerImage: IMAGE,
      Labels: 'app=lc,kubearmor.io/namespace=edge-ns',
      NamespaceName: 'edge-ns',
      Operation: 'Process',
      Resource: TOOL,
      Action: 'Block',
      Result: 'Permission denied',
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(followA.lines().every((a) => a.ContainerName === A)).toBe(true);
    expect(await followA.stop()).toBe(0);
    expect(agent!.alerts().filter((a) => a.PolicyName === 'lc-tool-in-a' && a.ContainerName !== A)).toEqual([]);
  });

  test('docker restart A: a new init process, still refused in A only', async () => {
    const before = pidOf(A);
    expect(docker('restart', '-t', '1', A).status).toBe(0);
    const after = pidOf(A);
    expect(after).not.toBe(before);
    // New namespaces, though the kernel often hands the freed inode numbers
    // straight back to them: identities must follow docker's events, not
    // trust a number seen before.
    expect(nsInode(after, 'pid')).not.toBe(nsInode(process.pid, 'pid'));
    expect(nsInode(after, 'mnt')).not.toBe(nsInode(process.pid, 'mnt'));
    const count = alertsNaming(A).length;
    const ms = await msUntil('A restricted again after docker restart', () => blockedIn(A));
    console.log(`after docker restart returned, A refused the tool after ${ms} ms`);
    expect(runsIn(B)).toBe(true);
    await waitFor('an alert from the restarted A', () => (alertsNaming(A).length > count ? true : undefined), 10_000);
    expect(alertsNaming(A).at(-1)).toMatchObject({ ContainerID: ids[A], ContainerName: A, NamespaceName: 'edge-ns' });
  });

  test('docker stop + docker start A: refused again; the alert still names A', async () => {
    expect(docker('stop', '-t', '1', A).status).toBe(0);
    await waitFor('A to leave the agent\'s container list', () => (containerNames().includes(A) ? undefined : true), 10_000);
    expect(docker('start', A).status).toBe(0);
    const ms = await msUntil('A restricted again after docker start', () => blockedIn(A));
    console.log(`after docker start returned, A refused the tool after ${ms} ms`);
    expect(containerNames()).toEqual(expect.arrayContaining([A, B]));
    const count = alertsNaming(A).length;
    expect(blockedIn(A)).toBe(true);
    await waitFor('the alert of the started-again A', () => (alertsNaming(A).length > count ? true : undefined), 10_000);
    expect(alertsNaming(A).at(-1)).toMatchObject({ ContainerID: ids[A], ContainerImage: IMAGE, Labels: 'app=lc,kubearmor.io/namespace=edge-ns' });
    expect(runsIn(B)).toBe(true);
  });

  test('agent restarted (SIGTERM, start) with the containers running: enforced from the first load, alerts name A', async () => {
    expect(await agent!.stop()).toBe(0);
    agent = undefined;
    agent = await startTheAgent();
    // the first load already resolved the applied policy against the running A
    const ready = agent.logs().find((l) => l.event === 'ready');
    expect(ready).toMatchObject({ backend: 'compat', errors: 0 });
    expect(ready!.rules).toBeGreaterThanOrEqual(1);
    expect(blockedIn(A)).toBe(true);
    expect(runsIn(B)).toBe(true);
    const alert = await waitFor('an alert after the restart', () => alertsNaming(A)[0], 10_000);
    expect(alert).toMatchObject({ ContainerID: ids[A], ContainerName: A, ContainerImage: IMAGE, NamespaceName: 'edge-ns', Type: 'MatchedPolicy' });
  }, 90_000);

  test('dockerd restarted under the agent: enforcement goes on while it is away, a container exiting meanwhile is dropped; the agent reconnects and recognises containers started after', async () => {
    // a second policy, for a container that does not exist yet
    const late = path.join(work, 'lc-tool-in-late.yaml');
    fs.writeFileSync(late, toolPolicy('lc-tool-in-late', { app: 'late' }));
    expect(edgeward('policy', 'apply', late).status).toBe(0);
    const pidA = pidOf(A);
    const pidB = pidOf(B);
    const logsBefore = agent!.logs().length;

    await dockerd.stop();
    await waitFor('the agent to notice dockerd went away', () => agent!.logs().slice(logsBefore).find((l) => /docker: event stream lost/.test(String(l.message))), 15_000);
    // --live-restore: A runs on without dockerd; enter it without docker
    const inA = spawnSync('nsenter', ['-t', String(pidA), '-m', '-p', '--', TOOL, 'true'], { encoding: 'utf8', timeout: 20_000 });
    expect(inA.status).not.toBe(0);
    expect(inA.stderr).toMatch(DENIED);
    const ok = spawnSync('nsenter', ['-t', String(pidA), '-m', '-p', '--', '/bin/busybox', 'true'], { encoding: 'utf8', timeout: 20_000 });
    expect(ok.status).toBe(0); // only the tool is refused, the container still works
    expect(edgeward('status').status).toBe(0); // the agent answers
    // B exits while dockerd is away (no "die" event): the agent drops it, since
    // the kernel may hand its namespace numbers to the next process that asks
    process.kill(pidB, 'SIGKILL');
    await waitFor('the agent to drop B', () => agent!.logs().slice(logsBefore).find((l) => String(l.message).startsWith(`docker: container ${B} (`) && /exited while dockerd is away/.test(String(l.message))), 10_000);
    expect(containerNames()).not.toContain(B);
    expect(containerNames()).toContain(A);

    await dockerd.start();
    await waitFor('the agent to reconnect to dockerd', () => agent!.logs().slice(logsBefore).find((l) => /docker: following \d+ running containers/.test(String(l.message))), 30_000);
    expect(blockedIn(A)).toBe(true);
    expect(docker('start', B).status).toBe(0);
    startContainer(LATE, { app: 'late' });
    const ms = await msUntil('the container started after dockerd came back to be restricted', () => blockedIn(LATE));
    console.log(`container started after the dockerd restart: restricted ${ms} ms after docker run returned`);
    expect(runsIn(B)).toBe(true);
    expect(containerNames()).toEqual(expect.arrayContaining([A, B, LATE]));
    const alert = await waitFor('the late container\'s alert', () => agent!.alerts().find((a) => a.PolicyName === 'lc-tool-in-late'), 10_000);
    expect(alert).toMatchObject({ ContainerID: ids[LATE], ContainerName: LATE, NamespaceName: 'container_namespace', Labels: 'app=late' });
  }, 120_000);

  test('boot order: the agent starts before dockerd; the containers dockerd brings up are followed once its socket appears', async () => {
    expect(await agent!.stop()).toBe(0);
    agent = undefined;
    await dockerd.stop(); // --live-restore: A runs on, as containers with a restart policy come back at boot
    fs.rmSync(dockerd.socket, { force: true }); // /run starts empty at boot
    agent = await startTheAgent();
    expect(containerNames()).toEqual([]);

    await dockerd.start();
    const up = Date.now();
    const ms = await msUntil('A restricted once dockerd is up', () => blockedIn(A), 30_000);
    console.log(`agent started before dockerd: A restricted ${Date.now() - up} ms after dockerd answered (${ms} ms of polling)`);
    // followed when the socket appears, not at the next 10 s housekeeping round
    expect(ms).toBeLessThan(5000);
    expect(containerNames()).toEqual(expect.arrayContaining([A, B, LATE]));
    expect(runsIn(B)).toBe(true);
  }, 120_000);

  /** the names of the containers the running agent follows (edgeward status) */
  function containerNames(): string[] {
    const r = edgeward('status', '--json');
    if (r.status !== 0) throw new Error(`edgeward status: ${r.stderr}`);
    return (JSON.parse(r.stdout).containers as Array<{ name: string }>).map((c) => c.name);
  }
});
