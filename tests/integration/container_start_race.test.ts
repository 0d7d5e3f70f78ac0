// A container's entrypoint under its policy from the first exec: with
// scripts/edgeward-runc as dockerd's default runtime, `runc create` waits for
// the agent (container.started on the control socket) to have the container's
// rules in force before containerd runs `runc start`. Real agent (compat
// backend), a private dockerd of this test. Shown: the blocked program as the
// container's first exec is refused, with an alert naming the container, and
// again after `docker restart`; an unselected container runs it; without the
// wrapper (`--runtime runc`) the first exec is NOT refused (the race this
// closes), and the agent warns of that start, naming the container; with no
// agent, or an agent that does not answer, the container still starts
// (fail-open) and the wrapper's stderr says why.
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { containerStarted } from '../../agent/src/control/client';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { containerPolicy } from '../helpers/policies';
import { importBusyboxImage, PrivateDockerd, startPrivateDockerd } from '../helpers/private_dockerd';
import { CLI, makeTempDir, REPO, requireIntegrationEnvironment, run, waitFor } from '../helpers/system';

const IMAGE = `edgeward-test/start-race-${process.pid}:latest`;
const TOOL = '/usr/bin/busybox-tool';
const PREFIX = `ew-sr-${process.pid}`;
const APP = `start-race-${process.pid}`;
const POLICY = 'sr-tool-blocked';
const HOOK_TIMEOUT_MS = 3000;
const WRAPPER = path.join(REPO, 'scripts', 'edgeward-runc');
const HOOK = path.join(REPO, 'dist', 'agent', 'src', 'runtime_hook.js');
/** the shell's report of the tool's exit status: 126 refused (busybox sh may say 127) */
const REFUSED = /^rc=12[67]$/m;

const policy = containerPolicy(POLICY, { app: APP }, `  severity: 5\n  message: tool refused from the first exec\n  process:\n    matchPaths:\n    - path: ${TOOL}\n  action: Block\n`);

/** the tool as the container's first exec after its shell (the entrypoint), its status, then sleep */
const FIRST_EXEC = `${TOOL} true; echo rc=$?; exec sleep 3600`;

describe('container start waits for its rules (edgeward-runc runtime, real agent, private dockerd)', () => {
  let dockerd: PrivateDockerd;
  let agent: AgentUnderTest | undefined;
  let work: string;
  let socket: string;
  let n = 0;

  const docker = (...args: string[]) => dockerd.docker(...args);
  const name = (what: string) => `${PREFIX}-${what}-${++n}`;
  const hookLogs = (container: string) =>
    agent!.logs().filter((l) => new RegExp(`^control: container ${container} \\(\\w{12}\\) started, from runtime hook .*: rules in force`).test(String(l.message)));
  const alertsFor = (container: string) => agent!.alerts().filter((a) => a.PolicyName === POLICY && a.ContainerName === container);

  /** runs `cmd` detached; waits for its `n`th "rc=" line in docker logs and returns the rc lines */
  async function rcLines(container: string, count: number): Promise<string[]> {
    return waitFor(
      `${count} rc line(s) in the logs of ${container}`,
      () => {
        const lines = docker('logs', container).stdout.split('\n').filter((l) => l.startsWith('rc='));
        return lines.length >= count ? lines : undefined;
      },
      20_000,
    );
  }

  function runDetached(container: string, labels: string[], extra: string[] = []): string {
    const r = docker('run', '-d', '--network', 'none', '--name', container, ...labels.flatMap((l) => ['--label', l]), ...extra, IMAGE, 'sh', '-c', FIRST_EXEC);
    if (r.status !== 0) throw new Error(`docker run ${container}: ${r.stderr}`);
    return r.stdout;
  }

  beforeAll(async () => {
    requireIntegrationEnvironment();
    if (!fs.existsSync(HOOK)) throw new Error(`${HOOK} is missing: run npm run build`);
    work = makeTempDir('start-race');
    fs.chmodSync(work, 0o755);
    socket = path.join(work, 'run', 'control.sock');
    // dockerd's runtime: the wrapper as deployed (daemon.json "runtimes" with
    // runtimeArgs: dockerd -> containerd -> shim do not pass an environment on)
    dockerd = await startPrivateDockerd(path.join(work, 'dockerd'), {
      defaultRuntime: { name: 'edgeward', path: WRAPPER, runtimeArgs: [`--edgeward-socket=${socket}`, `--edgeward-timeout-ms=${HOOK_TIMEOUT_MS}`] },
    });
    importBusyboxImage(dockerd, IMAGE, [TOOL]);
    const policies = path.join(work, 'operator');
    fs.mkdirSync(policies);
    fs.writeFileSync(path.join(policies, 'tool.yaml'), policy);
    const config = path.join(work, 'config.yaml');
    fs.writeFileSync(config, `stateDirectory: ${path.join(work, 'state')}\ncontrol:\n  socket: ${socket}\n`);
    agent = await startAgent({
      policies,
      workDir: work,
      env: { DOCKER_HOST: dockerd.host },
      extraArgs: ['--config', config, '--backend', 'compat'],
      readyTimeoutMs: 60_000,
    });
    await waitFor('the control socket', () => agent!.logs().find((l) => String(l.message).startsWith(`control socket ${socket}`)), 10_000);
  }, 240_000);

  afterAll(async () => {
    await agent?.stop();
    await dockerd?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }, 120_000);

  test('dockerd runs containers through the wrapper by default, recorded per container at create', () => {
    expect(docker('info', '--format', '{{.DefaultRuntime}}').stdout).toBe('edgeward');
    // Docker records the runtime at create: containers created before the switch keep runc (docs)
    const c = name('runtime');
    expect(docker('create', '--name', c, IMAGE, 'true').status).toBe(0);
    expect(docker('inspect', '-f', '{{.HostConfig.Runtime}}', c).stdout).toBe('edgeward');
    docker('rm', '-f', c);
  });

  test('the agent takes container.started, and refuses a host process as a container\'s init', async () => {
    // an agent without the op wired answers "no container support wired": that is this failure
    await expect(containerStarted(socket, { id: 'f'.repeat(64), name: 'fake', image: 'x', labels: {}, pid: process.pid }, 5000)).rejects.toThrow(
      `pid ${process.pid} is in the host's mount namespace: not a container's init`,
    );
  });

  test('the blocked program as the entrypoint itself is refused, with an alert naming the container', async () => {
    const c = name('entry');
    const r = docker('run', '--network', 'none', '--name', c, '--label', `app=${APP}`, IMAGE, TOOL, 'echo', 'tool ran');
    expect(r.stdout).not.toContain('tool ran');
    // runc's init reports the refused execve of the entrypoint; docker run exits 1 (126 is a shell's)
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`exec ${TOOL}: operation not permitted`);
    const alert = await waitFor(`an alert naming ${c}`, () => alertsFor(c)[0], 10_000);
    expect(alert).toMatchObject({ Action: 'Block', Result: 'Permission denied', ContainerName: c });
  });

  test('the first exec of a labelled container is refused; again after docker restart', async () => {
    const c = name('first');
    const id = runDetached(c, [`app=${APP}`]);
    expect(await rcLines(c, 1)).toEqual([expect.stringMatching(REFUSED)]);
    const alert = await waitFor(`an alert naming ${c}`, () => alertsFor(c)[0], 10_000);
    expect(alert).toMatchObject({ ContainerID: id, ContainerName: c, Action: 'Block' });
    // through the hook: the agent answered container.started (its log says so)
    await waitFor(`the agent's log of ${c} from the runtime hook`, () => hookLogs(c).length >= 1 || undefined, 10_000);
    // through the hook: no warning of a start around it
    expect(agent!.logs().filter((l) => String(l.message).startsWith(`docker: container ${c} (`) && String(l.message).includes('without the runtime hook'))).toEqual([]);

    const before = alertsFor(c).length;
    expect(docker('restart', '-t', '1', c).status).toBe(0);
    const lines = await rcLines(c, 2);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(REFUSED);
    await waitFor(`a second alert naming ${c}`, () => (alertsFor(c).length > before ? true : undefined), 10_000);
    await waitFor(`a second log of ${c} from the runtime hook`, () => hookLogs(c).length >= 2 || undefined, 10_000);
    expect(agent!.logs().filter((l) => String(l.message).startsWith(`docker: container ${c} (`) && String(l.message).includes('without the runtime hook'))).toEqual([]);
    docker('rm', '-f', c);
  }, 60_000);

  test('a container restarted by dockerd (restart policy) is refused at every start', async () => {
    const c = name('policy');
    const r = docker('run', '-d', '--network', 'none', '--name', c, '--label', `app=${APP}`, '--restart', 'on-failure:2', IMAGE, 'sh', '-c', `${TOOL} true; echo rc=$?; exit 1`);
    expect(r.status).toBe(0);
    const lines = await rcLines(c, 3);
    expect(lines).toHaveLength(3);
    for (const l of lines) expect(l).toMatch(REFUSED);
    docker('rm', '-f', c);
  }, 60_000);

  test('a container the policy does not select runs the program', async () => {
    const c = name('free');
    runDetached(c, [`app=${APP}-other`]);
    expect(await rcLines(c, 1)).toEqual(['rc=0']);
    docker('rm', '-f', c);
  }, 60_000);

  test('without the wrapper (--runtime runc) the first exec is NOT refused: the race this closes', async () => {
    const c = name('race');
    runDetached(c, [`app=${APP}`], ['--runtime', 'runc']);
    expect(await rcLines(c, 1)).toEqual(['rc=0']);
    // the agent says so: a start its runtime hook did not report, naming the container and runtime
    await waitFor(
      `the agent's warning that ${c} started without the runtime hook`,
      () =>
        agent!
          .logs()
          .find((l) => l.level === 'warn' && String(l.message).startsWith(`docker: container ${c} (`) && String(l.message).includes('started without the runtime hook (runtime "runc")')),
      10_000,
    );
    // and `edgeward status` counts it, naming the container and its runtime
    const status = run(process.execPath, [CLI, 'status', '--json', '--socket', socket]);
    expect(status.status).toBe(0);
    const unhooked = (JSON.parse(status.stdout) as { containersStartedWithoutHook?: { count: number; recent: Array<{ name: string; runtime: string }> } }).containersStartedWithoutHook;
    expect(unhooked?.count).toBeGreaterThanOrEqual(1);
    expect(unhooked?.recent.find((u) => u.name === c)).toMatchObject({ name: c, runtime: 'runc' });
    const text = run(process.execPath, [CLI, 'status', '--socket', socket]);
    expect(text.stdout).toMatch(new RegExp(`^unhooked: .*${c} \\([0-9a-f]{12}\\) runtime runc at `, 'm'));
    // the policy does select it: once dockerd's start event is handled, its exec is refused
    await waitFor(
      `docker exec of the tool in ${c} to be refused`,
      () => (REFUSED.test(docker('exec', c, 'sh', '-c', `${TOOL} true; echo rc=$?`).stdout) ? true : undefined),
      10_000,
    );
    docker('rm', '-f', c);
  }, 60_000);

  test('an agent that does not answer: the container starts after the hook timeout, and stderr says why (fail-open)', async () => {
    await agent!.stop();
    agent = undefined;
    // something listens on the control socket and never answers
    fs.rmSync(socket, { force: true });
    const silent = net.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(socket, resolve));
    try {
      const c = name('silent');
      const t0 = Date.now();
      const r = docker('run', '--network', 'none', '--name', c, '--label', `app=${APP}`, IMAGE, 'sh', '-c', `${TOOL} true; echo rc=$?`);
      const took = Date.now() - t0;
      expect(r.stdout).toBe('rc=0');
      expect(took).toBeGreaterThanOrEqual(HOOK_TIMEOUT_MS);
      expect(r.stderr).toMatch(new RegExp(`edgeward-runc: container ${c} \\(\\w{12}\\) starts without waiting for its rules \\(fail-open\\): no answer from the agent on ${socket} within ${HOOK_TIMEOUT_MS} ms`));
      docker('rm', '-f', c);
    } finally {
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  }, 60_000);

  test('no agent: the container starts at once, and stderr says why (fail-open)', () => {
    fs.rmSync(socket, { force: true });
    const c = name('noagent');
    const r = docker('run', '--network', 'none', '--name', c, '--label', `app=${APP}`, IMAGE, 'sh', '-c', 'echo started');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('started');
    expect(r.stderr).toContain(`edgeward-runc: container ${c} (`);
    expect(r.stderr).toContain(`the agent is not running (nothing listens on ${socket})`);
    docker('rm', '-f', c);
  }, 60_000);
});
