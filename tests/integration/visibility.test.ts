// Telemetry logs (config visibility) on the real agent (compat backend) and a
// private dockerd: a host exec gives a HostLog, a container exec a
// ContainerLog with the container's identity; visibility turns its monitor
// group on by itself; records reach the alert outputs (or visibility.logFile),
// `edgeward logs --type log`, and the hub spool as telemetry; the throttle
// bounds a flood of them with a summary.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { generateSigningKeyPair } from '../../agent/src/hub/bundle';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { importBusyboxImage, PrivateDockerd, startPrivateDockerd } from '../helpers/private_dockerd';
import { busyboxCopy, CLI, makeTempDir, requireIntegrationEnvironment, run, RunResult, waitFor } from '../helpers/system';

const IMAGE = `edgeward-test/visibility-${process.pid}:latest`;
const TOOL = '/usr/bin/busybox-vis';
const C = `ew-vis-${process.pid}-c`;

type Rec = Record<string, unknown>;

describe('telemetry logs (visibility) on the real agent', () => {
  let dockerd: PrivateDockerd;
  let agent: AgentUnderTest | undefined;
  let work: string;
  let socket: string;
  let containerId: string;
  let hostTool: string;

  const edgeward = (...args: string[]): RunResult => run(process.execPath, [CLI, ...args, '--socket', socket]);
  const jsonLines = (text: string): Rec[] => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rec);

  async function startWith(name: string, configText: string): Promise<AgentUnderTest> {
    const dir = path.join(work, name);
    fs.mkdirSync(dir, { recursive: true });
    const config = path.join(dir, 'config.yaml');
    fs.writeFileSync(config, `stateDirectory: ${path.join(dir, 'state')}\ncontrol:\n  socket: ${socket}\n${configText}`);
    const policies = path.join(dir, 'policies');
    fs.mkdirSync(policies);
    const a = await startAgent({
      policies,
      workDir: dir,
      env: { DOCKER_HOST: dockerd.host },
      extraArgs: ['--config', config, '--backend', 'compat'],
      readyTimeoutMs: 60_000,
    });
    await waitFor('the control socket', () => a.logs().find((l) => String(l.message).startsWith(`control socket ${socket}`)), 10_000);
    return a;
  }

  beforeAll(async () => {
    requireIntegrationEnvironment();
    work = makeTempDir('visibility');
    fs.chmodSync(work, 0o755);
    socket = path.join(work, 'run', 'control.sock');
    dockerd = await startPrivateDockerd(path.join(work, 'dockerd'));
    importBusyboxImage(dockerd, IMAGE, [TOOL]);
    const r = dockerd.docker('run', '-d', '--network', 'none', '--name', C, '--label', 'app=vis', '--label', 'kubearmor.io/namespace=vis-ns', IMAGE, 'sleep', '3600');
    if (r.status !== 0) throw new Error(`docker run ${C}: ${r.stderr}`);
    containerId = r.stdout;
    hostTool = busyboxCopy(work, 'host-vis');
  }, 180_000);

  afterAll(async () => {
    await agent?.stop();
    await dockerd?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }, 120_000);

  describe('process visibility, to the alert outputs and the hub spool', () => {
    beforeAll(async () => {
      // a hub that is never reachable: everything stays in the spool, where the test reads it
      const hubDir = path.join(work, 'hub');
      fs.mkdirSync(hubDir);
      fs.writeFileSync(path.join(hubDir, 'ca.crt'), 'not used: nothing listens on the hub address\n');
      fs.writeFileSync(path.join(hubDir, 'pw'), 'secret\n', { mode: 0o600 });
      fs.writeFileSync(path.join(hubDir, 'signing.pub'), generateSigningKeyPair().publicKeyPem);
      agent = await startWith(
        'process',
        // monitor.process off: visibility must turn the group on by itself.
        // A high throttle: every exec of this busy machine is written, none summarised.
        `monitor:\n  process: false\nvisibility:\n  process: true\nalerts:\n  throttle: {maxAlerts: 5000, windowMs: 1000}\n` +
          `hub:\n  url: mqtts://127.0.0.1:1\n  organization: vis-org\n  nodeId: vis-node\n  tls: {ca: ${hubDir}/ca.crt}\n` +
          `  passwordFile: ${hubDir}/pw\n  policyPublicKeys: [${hubDir}/signing.pub]\n  reconnect: {initialDelayMs: 60000, maxDelayMs: 120000}\n`,
      );
    }, 90_000);

    afterAll(async () => {
      await agent?.stop();
      agent = undefined;
    }, 30_000);

    test('a host exec gives a HostLog: the program, its caller as Source, its parent, Result Passed, no container fields', async () => {
      const child = spawn(hostTool, ['true']);
      const exited = new Promise((resolve) => child.on('exit', resolve));
      await exited;
      const log = await waitFor('the HostLog of the host exec', () => agent!.alerts().find((a) => a.Type === 'HostLog' && a.HostPID === child.pid), 10_000);
      const node = fs.realpathSync(process.execPath);
      expect(log).toMatchObject({
        Type: 'HostLog',
        Operation: 'Process',
        Resource: hostTool,
        ProcessName: hostTool,
        Source: node,
        ParentProcessName: node,
        HostPPID: process.pid,
        PID: child.pid,
        PPID: process.pid,
        UID: 0,
        Data: 'syscall=SYS_EXECVE',
        Result: 'Passed',
      });
      expect(typeof log.Timestamp).toBe('number');
      expect(log.UpdatedTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      for (const k of ['ContainerID', 'ContainerName', 'PolicyName', 'Action']) expect(log).not.toHaveProperty(k);
    });

    test('a container exec gives a ContainerLog with ContainerID, ContainerName, ContainerImage, Labels, NamespaceName and the pid inside', async () => {
      // runs long enough for the agent to read its pid inside the container from /proc (the
      // kernel record does not carry it: a process gone by then is reported with its host pid)
      expect(dockerd.docker('exec', C, TOOL, 'sleep', '2').status).toBe(0);
      const log = await waitFor('the ContainerLog of the docker exec', () => agent!.alerts().find((a) => a.Type === 'ContainerLog' && a.Resource === TOOL), 10_000);
      expect(log).toMatchObject({
        Type: 'ContainerLog',
        ContainerID: containerId,
        ContainerName: C,
        ContainerImage: IMAGE,
        Labels: 'app=vis,kubearmor.io/namespace=vis-ns',
        NamespaceName: 'vis-ns',
        Operation: 'Process',
        ProcessName: TOOL,
        Data: 'syscall=SYS_EXECVE',
        Result: 'Passed',
      });
      // PID as seen inside the container: small, and not the host's
      expect(log.PID).not.toBe(log.HostPID);
      expect(log.PID as number).toBeLessThan(100);
    });

    test('edgeward logs: --type log shows logs (--container filters them), the default shows alerts only; logs --follow --type log streams them', async () => {
      const logs = jsonLines(edgeward('logs', '--json', '--type', 'log', '--container', C).stdout);
      expect(logs.length).toBeGreaterThan(0);
      expect(logs.every((l) => l.Type === 'ContainerLog' && l.ContainerName === C)).toBe(true);
      expect(jsonLines(edgeward('logs', '--json').stdout).filter((l) => l.Type === 'HostLog' || l.Type === 'ContainerLog')).toEqual([]);
      expect(edgeward('logs', '--type', 'logs').status).toBe(2);
      const all = jsonLines(edgeward('logs', '--json', '--type', 'all', '--container', C).stdout);
      expect(all.map((l) => l.UpdatedTime)).toEqual(logs.map((l) => l.UpdatedTime)); // no alerts here: the same records, oldest first
      expect(edgeward('logs', '--type', 'log', '--container', C).stdout).toMatch(new RegExp(`ContainerLog {2}Process {2}${TOOL} {2}${TOOL} \\(pid \\d+\\) {2}Passed {2}container=${C} `));

      const follower = spawn(process.execPath, [CLI, 'logs', '--follow', '--json', '--type', 'log', '--container', C, '--socket', socket]);
      let out = '';
      let err = '';
      follower.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      follower.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      const exited = new Promise<number | null>((resolve) => follower.on('exit', (code) => resolve(code)));
      try {
        await waitFor('logs --follow to connect', () => (err.includes('following telemetry logs') ? true : undefined), 10_000);
        expect(dockerd.docker('exec', C, 'sh', '-c', `${TOOL} echo streamed`).stdout).toBe('streamed');
        const streamed = await waitFor('the streamed ContainerLog', () => jsonLines(out).find((l) => l.Resource === TOOL), 10_000);
        expect(streamed).toMatchObject({ Type: 'ContainerLog', ContainerID: containerId });
        expect(jsonLines(out).every((l) => l.ContainerName === C)).toBe(true);
      } finally {
        follower.kill('SIGTERM');
      }
      expect(await exited).toBe(0);

      const status = JSON.parse(edgeward('status', '--json').stdout);
      expect(status.visibility).toEqual(['process']);
      expect(status.logs).toBeGreaterThanOrEqual(3);
      expect(edgeward('status').stdout).toMatch(/^logs: +\d+ since start, \d+ summarised by the throttle \(visibility: process\)$/m);
    });

    test('the logs are spooled for the hub as telemetry, the alerts queue untouched', () => {
      const status = JSON.parse(edgeward('status', '--json').stdout);
      expect(status.hub.spool.telemetry.pending).toBeGreaterThanOrEqual(3);
      expect(status.hub.spool.alerts.pending).toBe(0);
      const spooled = spawnSync('grep', ['-rl', `"ContainerID":"${containerId}"`, path.join(work, 'process', 'state')], { encoding: 'utf8' });
      expect(spooled.stdout).toMatch(/telemetry/);
      expect(spooled.stdout).not.toMatch(/alerts/);
    });
  });

  describe('file and network visibility to visibility.logFile, throttled', () => {
    let logFile: string;
    const fileLogs = (): Rec[] => (fs.existsSync(logFile) ? jsonLines(fs.readFileSync(logFile, 'utf8')) : []);

    beforeAll(async () => {
      logFile = path.join(work, 'file', 'logs.jsonl');
      // default throttle: 20 per second per container / the host
      agent = await startWith('file', `visibility:\n  file: true\n  network: true\n  logFile: {path: ${logFile}}\n`);
    }, 90_000);

    test('container opens give ContainerLog File records, a failed one with its error, in the log file and not among the alerts', async () => {
      expect(dockerd.docker('exec', C, 'sh', '-c', 'echo x > /tmp/vis-file; cat /tmp/vis-file; cat /tmp/vis-missing; true').status).toBe(0);
      const written = await waitFor('the ContainerLog of the write open', () => fileLogs().find((l) => l.Type === 'ContainerLog' && l.Resource === '/tmp/vis-file'), 10_000);
      expect(written).toMatchObject({ Operation: 'File', ContainerName: C, NamespaceName: 'vis-ns', Result: 'Passed' });
      expect(written.Data).toMatch(/^syscall=SYS_OPEN flags=O_(WRONLY|RDONLY)/);
      const missing = await waitFor('the failed open', () => fileLogs().find((l) => l.Type === 'ContainerLog' && l.Resource === '/tmp/vis-missing'), 10_000);
      expect(missing).toMatchObject({ Result: 'No such file or directory', ProcessName: '/bin/busybox' });
      expect(agent!.alerts().filter((a) => a.Type === 'HostLog' || a.Type === 'ContainerLog')).toEqual([]);
    });

    test('network calls in a container: the socket, and the refused connect with its address and error', async () => {
      // a fresh throttle window for the container (the exec itself opens a dozen files)
      await new Promise((r) => setTimeout(r, 1100));
      dockerd.docker('exec', C, 'sh', '-c', 'nc 127.0.0.1 9 </dev/null; true');
      const connect = await waitFor('the connect record', () => fileLogs().find((l) => l.ContainerID === containerId && l.Data === 'syscall=SYS_CONNECT'), 10_000);
      expect(connect).toMatchObject({
        Type: 'ContainerLog',
        Operation: 'Network',
        Resource: 'sa_family=AF_INET sin_port=9 sin_addr=127.0.0.1',
        Result: 'Connection refused',
        ProcessName: '/bin/busybox',
      });
      const socketCall = fileLogs().find((l) => l.ContainerID === containerId && l.Data === 'syscall=SYS_SOCKET' && l.HostPID === connect.HostPID);
      expect(socketCall?.Resource).toMatch(/^domain=AF_INET type=SOCK_STREAM(\|SOCK_\w+)* protocol=(0|6)$/);
      expect(socketCall?.Result).toBe('Passed');
    });

    test('a burst of opens beyond the throttle: 20 records pass per window, the rest are counted in a summary', async () => {
      // in the container: its own window, which nothing else on this busy machine shares
      const burst = dockerd.docker('exec', C, 'sh', '-c', 'echo b > /tmp/burst; for i in $(seq 60); do cat /tmp/burst >/dev/null; done');
      expect(burst.status).toBe(0);
      const of = (l: Rec) => (l.SuppressedResources as Record<string, number> | undefined)?.['File /tmp/burst'] ?? 0;
      const summary = await waitFor('a summary counting the burst', () => fileLogs().find((l) => l.Type === 'ContainerLog' && of(l) > 0), 10_000);
      expect(summary).toMatchObject({ ContainerName: C, ContainerID: containerId });
      expect(summary.Message).toMatch(new RegExp(`more log record\\(s\\) of container ${C} since .* were not written one by one \\(alerts.throttle: at most 20 per 1000 ms\\)`));
      const records = fileLogs().filter((l) => l.ContainerID === containerId);
      const single = records.filter((l) => l.Resource === '/tmp/burst' && l.Suppressed === undefined).length;
      const counted = records.reduce((n, l) => n + of(l), 0);
      expect(single).toBeLessThanOrEqual(20);
      // every open of the file is written or counted: the echo's and each cat's
      expect(single + counted).toBeGreaterThanOrEqual(61);
      const status = JSON.parse(edgeward('status', '--json').stdout);
      expect(status.logsSuppressed).toBeGreaterThan(0);
      expect(status.alertsSuppressed).toBe(0); // logs do not use the alerts' allowance
    });
  });

  describe('per-container visibility: the kubearmor-visibility label overrides the node-wide config for its container', () => {
    const P = `ew-vis-${process.pid}-p`;
    const N = `ew-vis-${process.pid}-n`;
    const U = `ew-vis-${process.pid}-u`;
    const T = `ew-vis-${process.pid}-t`;
    const ids: Record<string, string> = {};
    const execLogs = (name: string): Rec[] => agent!.alerts().filter((a) => a.Type === 'ContainerLog' && a.ContainerName === name && a.Resource === TOOL);

    /** runs the tool in each container in turn, then waits for the last one's record: the ring keeps order */
    async function execEverywhere(last: string, others: string[]): Promise<void> {
      for (const name of [...others, last]) expect(dockerd.docker('exec', name, TOOL, 'true').status).toBe(0);
      await waitFor(`the ContainerLog of ${last}`, () => (execLogs(last).length > 0 ? true : undefined), 10_000);
      await new Promise((r) => setTimeout(r, 500));
    }

    beforeAll(async () => {
      // the agent of the block before (its control socket is this block's too)
      await agent?.stop();
      agent = undefined;
      const start = (name: string, label?: string) => {
        const r = dockerd.docker('run', '-d', '--network', 'none', '--name', name, ...(label === undefined ? [] : ['--label', `kubearmor-visibility=${label}`]), IMAGE, 'sleep', '3600');
        if (r.status !== 0) throw new Error(`docker run ${name}: ${r.stderr}`);
        ids[name] = r.stdout;
      };
      start(P, 'process');
      start(N, 'none');
      start(U);
      start(T, 'proccess'); // a typo: reported, follows the node
    }, 120_000);

    afterAll(async () => {
      await agent?.stop();
      agent = undefined;
      dockerd.docker('rm', '-f', P, N, U, T);
    }, 60_000);

    test('node-wide off: only the container labelled process gives ContainerLog records; "none", unlabelled and a bad label give none; the bad label is reported', async () => {
      agent = await startWith('labels-off', 'alerts:\n  throttle: {maxAlerts: 5000, windowMs: 1000}\n');
      await execEverywhere(P, [N, U, T]);
      expect(execLogs(P)[0]).toMatchObject({ Type: 'ContainerLog', ContainerID: ids[P], ContainerName: P, Operation: 'Process', ProcessName: TOOL, Result: 'Passed' });
      for (const name of [N, U, T]) expect(execLogs(name)).toEqual([]);
      // no HostLog either: the node-wide setting is off
      expect(agent.alerts().filter((a) => a.Type === 'HostLog')).toEqual([]);
      expect(agent.alerts().filter((a) => a.Type === 'ContainerLog' && a.ContainerName !== P)).toEqual([]);
      const warning = agent.logs().find((l) => String(l.message).includes(`container ${T} (`));
      expect(String(warning?.message)).toMatch(/visibility: container .* label kubearmor-visibility="proccess": unknown group "proccess" .*follows the node-wide visibility config/);
      expect(warning?.level).toBe('warn');
      expect(JSON.parse(edgeward('status', '--json').stdout).visibility).toEqual([]);
      await agent.stop();
      agent = undefined;
    }, 120_000);

    test('node-wide process on: the unlabelled container and the bad label follow it, "none" silences its container', async () => {
      agent = await startWith('labels-on', 'visibility:\n  process: true\nalerts:\n  throttle: {maxAlerts: 5000, windowMs: 1000}\n');
      await execEverywhere(P, [N, U, T]);
      expect(execLogs(U)[0]).toMatchObject({ ContainerID: ids[U], ContainerName: U, Operation: 'Process' });
      expect(execLogs(T)[0]).toMatchObject({ ContainerID: ids[T], ContainerName: T });
      expect(execLogs(P)[0]).toMatchObject({ ContainerID: ids[P] });
      expect(agent.alerts().filter((a) => a.ContainerName === N)).toEqual([]);
      // the host follows the node-wide setting
      const child = spawn(hostTool, ['true']);
      await new Promise((resolve) => child.on('exit', resolve));
      await waitFor('the HostLog of the host exec', () => agent!.alerts().find((a) => a.Type === 'HostLog' && a.HostPID === child.pid), 10_000);
    }, 120_000);
  });
});
