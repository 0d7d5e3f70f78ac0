// Containers across a "reboot" of the container runtime, on the real agent
// (compat backend) and a private dockerd of this test run WITHOUT
// --live-restore: stopping dockerd stops its containers (as `systemctl stop
// docker` does at a reboot) and starting it again starts those with
// `--restart always` again: new init processes, new namespaces, same ids and
// names. A KubeArmorPolicy applied with `edgeward policy apply` (kept in the
// agent's state directory) is enforced in the restarted containers, and its
// alerts name them, whichever of the agent and dockerd comes up first.
import * as fs from 'fs';
import * as path from 'path';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { importBusyboxImage, PrivateDockerd, startPrivateDockerd } from '../helpers/private_dockerd';
import { CLI, makeTempDir, requireIntegrationEnvironment, run, RunResult, waitFor } from '../helpers/system';

const IMAGE = `edgeward-test/reboot-${process.pid}:latest`;
const TOOL = '/usr/bin/busybox-tool';
const PREFIX = `ew-rb-${process.pid}`;
/** targeted by the policy (by name), restart always */
const A = `${PREFIX}-a`;
/** same image and labels, not targeted, restart always */
const B = `${PREFIX}-b`;
/** no restart policy: stays down after the runtime restart */
const C = `${PREFIX}-c`;
const POLICY = 'rb-tool-refused';
/** exit status of a shell whose exec was refused (126 EPERM/EACCES; busybox sh may say 127) */
const REFUSED_RC = /rc=12[67]/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('containers across a container runtime restart without live-restore (real agent, private dockerd)', () => {
  let dockerd: PrivateDockerd;
  let agent: AgentUnderTest | undefined;
  let work: string;
  let socket: string;
  let config: string;
  let policies: string;
  const ids: Record<string, string> = {};

  const docker = (...args: string[]) => dockerd.docker(...args);
  const edgeward = (...args: string[]): RunResult => run(process.execPath, [CLI, ...args, '--socket', socket]);
  const toolIn = (name: string) => docker('exec', name, 'sh', '-c', `${TOOL} true; echo rc=$?`);
  const blockedIn = (name: string): boolean => REFUSED_RC.test(toolIn(name).stdout);
  const runsIn = (name: string): boolean => toolIn(name).stdout === 'rc=0';
  const pidOf = (name: string): number => Number(docker('inspect', '-f', '{{.State.Pid}}', name).stdout);
  const alertsNaming = (name: string) => agent!.alerts().filter((a) => a.PolicyName === POLICY && a.ContainerName === name);

  function startContainer(name: string, restart: 'always' | 'no', labels: Record<string, string>): void {
    const labelArgs = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
    // --stop-timeout 1: sleep as PID 1 ignores SIGTERM; dockerd's stop at shutdown would wait 10 s
    const r = docker('run', '-d', '--network', 'none', '--restart', restart, '--stop-timeout', '1', '--name', name, ...labelArgs, IMAGE, 'sleep', '3600');
    if (r.status !== 0) throw new Error(`docker run ${name}: ${r.stderr}`);
    ids[name] = r.stdout;
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

  /** the names of the containers the running agent follows (edgeward status) */
  function containerNames(): string[] {
    const r = edgeward('status', '--json');
    if (r.status !== 0) throw new Error(`edgeward status: ${r.stderr}`);
    return (JSON.parse(r.stdout).containers as Array<{ name: string }>).map((c) => c.name);
  }

  /** dockerd stopped: every container is stopped with it (no live-restore); returns their old init pids */
  async function stopRuntime(): Promise<Record<string, number>> {
    const pids = { [A]: pidOf(A), [B]: pidOf(B) };
    await dockerd.stop();
    for (const [name, pid] of Object.entries(pids)) {
      await waitFor(`${name}'s init (pid ${pid}) to be gone with dockerd`, () => (alive(pid) ? undefined : true), 20_000);
    }
    return pids;
  }

  /** waits for A and B to run again with new init processes (restart policy) */
  async function containersBack(old: Record<string, number>): Promise<void> {
    for (const name of [A, B]) {
      await waitFor(`${name} to be started again by its restart policy`, () => {
        const pid = pidOf(name);
        return pid > 0 && pid !== old[name] ? true : undefined;
      }, 30_000);
    }
    // C has no restart policy: it stays down
    expect(docker('inspect', '-f', '{{.State.Running}}', C).stdout).toBe('false');
  }

  beforeAll(async () => {
    requireIntegrationEnvironment();
    work = makeTempDir('container-reboot');
    fs.chmodSync(work, 0o755);
    dockerd = await startPrivateDockerd(path.join(work, 'dockerd'), { liveRestore: false });
    importBusyboxImage(dockerd, IMAGE, [TOOL]);
    startContainer(A, 'always', { app: 'rb' });
    startContainer(B, 'always', { app: 'rb' });
    startContainer(C, 'no', { app: 'rb-c' });
    policies = path.join(work, 'operator');
    fs.mkdirSync(policies);
    socket = path.join(work, 'run', 'control.sock');
    config = path.join(work, 'config.yaml');
    fs.writeFileSync(config, `stateDirectory: ${path.join(work, 'state')}\ncontrol:\n  socket: ${socket}\n`);
    agent = await startTheAgent();
    // applied through the control socket: kept in the agent's state directory
    const file = path.join(work, `${POLICY}.yaml`);
    fs.writeFileSync(
      file,
      `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ${POLICY}
spec:
  selector:
    matchLabels:
      kubearmor.io/container.name: ${A}
  process:
    matchPaths:
    - path: ${TOOL}
  action: Block
`,
    );
    const applied = edgeward('policy', 'apply', file);
    if (applied.status !== 0) throw new Error(`policy apply: ${applied.stdout}${applied.stderr}`);
    fs.rmSync(file);
  }, 240_000);

  afterAll(async () => {
    await agent?.stop();
    await dockerd?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }, 120_000);

  test('before: the applied policy refuses the tool in A only', () => {
    expect(blockedIn(A)).toBe(true);
    expect(runsIn(B)).toBe(true);
    expect(fs.readdirSync(path.join(work, 'state', 'policies'))).toHaveLength(1);
  });

  test('agent stopped, dockerd stopped (containers die), dockerd started (containers come back), agent started: A refused from the first load, alerts name it', async () => {
    expect(await agent!.stop()).toBe(0);
    agent = undefined;
    const old = await stopRuntime();
    await dockerd.start();
    await containersBack(old);
    // nothing enforces while no agent runs: the tool runs in the new A
    expect(runsIn(A)).toBe(true);

    const t0 = Date.now();
    agent = await startTheAgent();
    // eslint-disable-next-line no-console
    console.log(`agent after the runtime restart: ready ${Date.now() - t0} ms after its start`);
    expect(agent.logs().find((l) => l.event === 'ready')).toMatchObject({ backend: 'compat', errors: 0 });
    expect(blockedIn(A)).toBe(true);
    expect(runsIn(B)).toBe(true);
    expect(containerNames().sort()).toEqual([A, B].sort());
    const alert = await waitFor('an alert naming the restarted A', () => alertsNaming(A)[0], 10_000);
    expect(alert).toMatchObject({ Type: 'MatchedPolicy', ContainerID: ids[A], ContainerName: A, ContainerImage: IMAGE, Operation: 'Process', Resource: TOOL, Action: 'Block' });
    expect(alert.HostPID).not.toBe(old[A]);
    expect(agent.alerts().filter((a) => a.PolicyName === POLICY && a.ContainerName !== A)).toEqual([]);
  }, 180_000);

  test('the other order: agent stopped, dockerd stopped, agent started first (no dockerd), then dockerd brings the containers back: A refused, alerts name it', async () => {
    expect(await agent!.stop()).toBe(0);
    agent = undefined;
    const old = await stopRuntime();
    fs.rmSync(dockerd.socket, { force: true }); // /run starts empty at boot
    agent = await startTheAgent();
    expect(containerNames()).toEqual([]);

    await dockerd.start();
    const up = Date.now();
    await containersBack(old);
    const back = Date.now();
    await waitFor('A restricted once dockerd brought it back', () => (blockedIn(A) ? true : undefined), 30_000);
    const ms = Date.now() - up;
    // eslint-disable-next-line no-console
    console.log(`agent before dockerd: dockerd answered, A running again after ${back - up} ms, A refused the tool ${ms} ms after dockerd answered`);
    // followed when dockerd's socket appears, not at the next 10 s housekeeping round
    expect(ms).toBeLessThan(5000);
    expect(runsIn(B)).toBe(true);
    expect(containerNames().sort()).toEqual([A, B].sort());
    const count = alertsNaming(A).length;
    expect(blockedIn(A)).toBe(true);
    await waitFor('an alert naming the restarted A', () => (alertsNaming(A).length > count ? true : undefined), 10_000);
    expect(alertsNaming(A).at(-1)).toMatchObject({ ContainerID: ids[A], ContainerName: A, ContainerImage: IMAGE, Type: 'MatchedPolicy' });
    expect(alertsNaming(A).at(-1)!.HostPID).not.toBe(old[A]);
  }, 180_000);

  test('dockerd restarted under the running agent (containers die and come back): A refused again, alerts name it', async () => {
    const logsBefore = agent!.logs().length;
    const old = await stopRuntime();
    await waitFor('the agent to drop the stopped containers', () => (containerNames().length === 0 ? true : undefined), 15_000);
    await dockerd.start();
    const up = Date.now();
    await containersBack(old);
    await waitFor('A restricted once dockerd brought it back', () => (blockedIn(A) ? true : undefined), 30_000);
    // eslint-disable-next-line no-console
    console.log(`agent running through the runtime restart: A refused the tool ${Date.now() - up} ms after dockerd answered`);
    expect(agent!.logs().slice(logsBefore).find((l) => /docker: following \d+ running containers/.test(String(l.message)))).toBeDefined();
    expect(runsIn(B)).toBe(true);
    const count = alertsNaming(A).length;
    expect(blockedIn(A)).toBe(true);
    await waitFor('an alert naming the restarted A', () => (alertsNaming(A).length > count ? true : undefined), 10_000);
    expect(alertsNaming(A).at(-1)).toMatchObject({ ContainerID: ids[A], ContainerName: A });
  }, 180_000);
});
