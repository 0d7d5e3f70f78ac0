// PID/PPID of container alerts and logs are the numbers the process had
// inside its container (KubeArmor's PID/PPID; HostPID/HostPPID on the host),
// also when it has exited before the alert is built: the typical case of a
// blocked exec (or open, or socket) after which its shell exits. Real agent
// (compat backend), private dockerd; one case per enforcer that reports:
// fanotify exec and open decisions (read in userspace while the task waits),
// the cgroup-bpf socket decision and the monitor's exec record (kernel).
import * as fs from 'fs';
import * as path from 'path';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { containerPolicy } from '../helpers/policies';
import { importBusyboxImage, PrivateDockerd, startPrivateDockerd } from '../helpers/private_dockerd';
import { makeTempDir, requireIntegrationEnvironment, waitFor } from '../helpers/system';

const IMAGE = `edgeward-test/nspid-${process.pid}:latest`;
const TOOL = '/usr/bin/busybox-tool';
/** a program only the visibility case runs: its exec log is easy to find */
const VIS = '/usr/bin/busybox-vis';
const GUARDED = '/tmp/guarded.txt';
const C = `ew-nspid-${process.pid}`;

/** `spec` (a rule section) with action Block, for the containers labelled app: nspid */
function ksp(name: string, spec: string): string {
  return containerPolicy(name, { app: 'nspid' }, `${spec}  action: Block\n`);
}

describe('container PID/PPID in alerts and logs (real agent, private dockerd)', () => {
  let dockerd: PrivateDockerd;
  let agent: AgentUnderTest | undefined;
  let work: string;

  /**
   * In the container: the shell docker exec starts ("outer") runs a second
   * shell ("inner") that prints its numbers and execs `command`, then the
   * outer shell exits too. Returns the pids both had inside the container.
   */
  function innerRuns(command: string): { outer: number; inner: number; innerParent: number; stderr: string } {
    const r = dockerd.docker('exec', C, 'sh', '-c', `echo outer=$$; sh -c 'echo inner=$$ parent=$PPID; exec ${command}'; exit 0`);
    const outer = /outer=(\d+)/.exec(r.stdout);
    const inner = /inner=(\d+) parent=(\d+)/.exec(r.stdout);
    if (r.status !== 0 || !outer || !inner) throw new Error(`docker exec in ${C} (${r.status}): ${r.stdout} ${r.stderr}`);
    return { outer: Number(outer[1]), inner: Number(inner[1]), innerParent: Number(inner[2]), stderr: r.stderr };
  }

  /** The first record of the agent's output file matching `match`. */
  const record = (what: string, match: (r: Record<string, unknown>) => boolean) =>
    waitFor(what, () => agent!.alerts().find(match), 15_000);

  function expectContainerPids(r: Record<string, unknown>, run: { outer: number; inner: number }): void {
    expect(r).toMatchObject({ ContainerName: C, PID: run.inner, PPID: run.outer });
    // the host numbers are the host's: not the container's small ones
    expect(r.HostPID).not.toBe(run.inner);
    expect(r.HostPPID).not.toBe(run.outer);
    expect(Number(r.HostPID)).toBeGreaterThan(0);
    expect(Number(r.HostPPID)).toBeGreaterThan(0);
  }

  beforeAll(async () => {
    requireIntegrationEnvironment();
    work = makeTempDir('nspid');
    fs.chmodSync(work, 0o755);
    dockerd = await startPrivateDockerd(path.join(work, 'dockerd'));
    importBusyboxImage(dockerd, IMAGE, [TOOL, VIS]);
    const ran = dockerd.docker('run', '-d', '--network', 'none', '--name', C, '--label', 'app=nspid', IMAGE, 'sleep', '3600');
    if (ran.status !== 0) throw new Error(`docker run ${C}: ${ran.stderr}`);
    const made = dockerd.docker('exec', C, 'sh', '-c', `echo guarded > ${GUARDED}`);
    if (made.status !== 0) throw new Error(`creating ${GUARDED} in ${C}: ${made.stderr}`);
    const policies = path.join(work, 'policies');
    fs.mkdirSync(policies);
    fs.writeFileSync(path.join(policies, 'proc.yaml'), ksp('nspid-tool', `  process:\n    matchPaths:\n    - path: ${TOOL}\n`));
    fs.writeFileSync(path.join(policies, 'file.yaml'), ksp('nspid-file', `  file:\n    matchPaths:\n    - path: ${GUARDED}\n`));
    fs.writeFileSync(path.join(policies, 'net.yaml'), ksp('nspid-tcp', '  network:\n    matchProtocols:\n    - protocol: tcp\n'));
    const config = path.join(work, 'config.yaml');
    fs.writeFileSync(config, `stateDirectory: ${path.join(work, 'state')}\nvisibility:\n  process: true\n`);
    agent = await startAgent({
      policies,
      workDir: work,
      env: { DOCKER_HOST: dockerd.host },
      extraArgs: ['--config', config, '--backend', 'compat'],
      readyTimeoutMs: 60_000,
    });
  }, 240_000);

  afterAll(async () => {
    await agent?.stop();
    await dockerd?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }, 120_000);

  test('a blocked exec (fanotify): PID is the shell that asked, PPID its parent, as in the container', async () => {
    const run = innerRuns(`${TOOL} true`);
    expect(run.stderr).toMatch(/Permission denied|Operation not permitted/);
    expect(run.innerParent).toBe(run.outer);
    const alert = await record('the exec alert', (a) => a.PolicyName === 'nspid-tool' && a.PID === run.inner);
    expect(alert).toMatchObject({ Operation: 'Process', Resource: TOOL, Enforcer: 'fanotify', Action: 'Block' });
    expectContainerPids(alert, run);
  });

  test('a blocked open (fanotify): the same for cat, which exec kept at the inner shell`s pid', async () => {
    const run = innerRuns(`cat ${GUARDED}`);
    expect(run.stderr).toMatch(/Permission denied|Operation not permitted/);
    const alert = await record('the file alert', (a) => a.PolicyName === 'nspid-file' && a.PID === run.inner);
    expect(alert).toMatchObject({ Operation: 'File', Resource: GUARDED, Enforcer: 'fanotify', Result: 'Permission denied' });
    expectContainerPids(alert, run);
  });

  test('a blocked socket (cgroup-bpf, kernel record): the same for nc', async () => {
    const run = innerRuns('nc 127.0.0.1 9');
    expect(run.stderr).toMatch(/Permission denied|Operation not permitted/);
    const alert = await record('the network alert', (a) => a.PolicyName === 'nspid-tcp' && a.PID === run.inner);
    expect(alert).toMatchObject({ Operation: 'Network', Enforcer: 'cgroup-bpf', Result: 'Permission denied' });
    expectContainerPids(alert, run);
  });

  test('a visibility log of an exec (monitor record): PID/PPID as in the container', async () => {
    const run = innerRuns(`${VIS} true`);
    const log = await record('the exec log', (l) => l.Type === 'ContainerLog' && l.Operation === 'Process' && l.Resource === VIS);
    expectContainerPids(log, run);
  });

  test('the container`s own process whose parent is outside it: PPID 0, as getppid() says there', async () => {
    // docker exec's shell: its parent (runc / the shim) lives on the host
    const r = dockerd.docker('exec', C, 'sh', '-c', `echo me=$$ parent=$PPID; exec ${TOOL} true`);
    const m = /me=(\d+) parent=(\d+)/.exec(r.stdout);
    expect(m).not.toBeNull();
    expect(Number(m![2])).toBe(0);
    const alert = await record('the exec alert of the exec shell', (a) => a.PolicyName === 'nspid-tool' && a.PID === Number(m![1]));
    expect(alert).toMatchObject({ ContainerName: C, PPID: 0 });
    expect(Number(alert.HostPPID)).toBeGreaterThan(0);
  });
});
