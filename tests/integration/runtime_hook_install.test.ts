// edgeward-runc installed AS runc (install.sh's dpkg-divert step), so every
// runtime name that resolves to runc goes through the runtime hook: Docker's
// default and `docker run --runtime runc` alike. Never the machine's own
// /usr/sbin/runc (other dockerds start containers with it): install.sh
// diverts runc in a scratch root (DESTDIR, dpkg-divert --root), and a dockerd
// of this test runs with that root's /usr/sbin first in its PATH, as on a node
// where /usr/sbin/runc is the wrapper. Real agent (compat backend).
// Shown: the blocked program as the entrypoint of `--runtime runc` is refused
// from its first exec; a start that went around the hook (a runtime
// registered at the real runc's path) is reported by the agent; while the
// agent is expected but restarting (socket absent), a container create waits
// for it (agent started 1.5 s after `docker run`) instead of failing open;
// not expected: fail-open at once; install.sh's divert is idempotent and its
// removal puts the packaged runc back.
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { containerPolicy } from '../helpers/policies';
import { importBusyboxImage, PrivateDockerd } from '../helpers/private_dockerd';
import { makeTempDir, REPO, requireIntegrationEnvironment, waitFor } from '../helpers/system';

const IMAGE = `edgeward-test/hook-install-${process.pid}:latest`;
const TOOL = '/usr/bin/busybox-tool';
const PREFIX = `ew-hi-${process.pid}`;
const APP = `hook-install-${process.pid}`;
const POLICY = 'hi-tool-blocked';
/** long enough for an agent started 1.5 s after `docker run` to come up on a loaded 2-core machine */
const HOOK_TIMEOUT_MS = 45_000;
const INSTALL = path.join(REPO, 'scripts', 'install.sh');
const WRAPPER = path.join(REPO, 'scripts', 'edgeward-runc');
const HOOK = path.join(REPO, 'dist', 'agent', 'src', 'runtime_hook.js');
const REFUSED = /^rc=12[67]$/m;

const policy = containerPolicy(POLICY, { app: APP }, `  severity: 5\n  message: tool refused from the first exec\n  process:\n    matchPaths:\n    - path: ${TOOL}\n  action: Block\n`);

function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { status: r.status, stdout: (r.stdout ?? '').trim(), stderr: (r.stderr ?? '').trim() };
}

function sha(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** the machine's runc binary (Debian: /usr/sbin/runc; /usr/bin/runc links to it) */
function machineRunc(): string {
  for (const p of ['/usr/sbin/runc', '/usr/bin/runc']) if (fs.existsSync(p)) return fs.realpathSync(p);
  throw new Error('runc is not installed: run scripts/install-deps.sh (docker.io)');
}

/** A scratch root as install.sh --runtime-hook sees a Debian system: dpkg admin dir, usr/sbin/runc, usr/bin/runc -> ../sbin/runc, /opt/edgeward/bin/edgeward-runc. */
function scratchRoot(dir: string, runcSource: string): void {
  fs.mkdirSync(path.join(dir, 'var', 'lib', 'dpkg'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'usr', 'sbin'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'usr', 'bin'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'opt', 'edgeward', 'bin'), { recursive: true });
  fs.copyFileSync(runcSource, path.join(dir, 'usr', 'sbin', 'runc'));
  fs.chmodSync(path.join(dir, 'usr', 'sbin', 'runc'), 0o755);
  fs.symlinkSync('../sbin/runc', path.join(dir, 'usr', 'bin', 'runc'));
  fs.copyFileSync(WRAPPER, path.join(dir, 'opt', 'edgeward', 'bin', 'edgeward-runc'));
  fs.chmodSync(path.join(dir, 'opt', 'edgeward', 'bin', 'edgeward-runc'), 0o755);
}

const installHook = (root: string) => sh('bash', [INSTALL, '--runtime-hook-only'], { DESTDIR: root });
const removeHook = (root: string) => sh('bash', [INSTALL, '--remove-runtime-hook'], { DESTDIR: root });
const diversions = (root: string) => sh('dpkg-divert', ['--root', root, '--list']).stdout;

/**
 * A private dockerd (own roots, containerd namespace, no bridge) started with
 * `env`: its PATH decides which runc containerd's shim runs, and the
 * EDGEWARD_* variables reach the wrapper through containerd and the shim.
 * daemon.json registers `plainrunc` at the real runc's path: a start around the hook.
 */
async function startDockerd(dir: string, env: NodeJS.ProcessEnv, plainRunc: string): Promise<PrivateDockerd> {
  if (spawnSync('which', ['dockerd']).status !== 0) throw new Error('dockerd is not installed: run scripts/install-deps.sh (docker.io)');
  fs.mkdirSync(dir, { recursive: true });
  const socket = path.join(dir, 'docker.sock');
  const host = `unix://${socket}`;
  const config = path.join(dir, 'daemon.json');
  fs.writeFileSync(config, JSON.stringify({ runtimes: { plainrunc: { path: plainRunc } } }));
  const tag = `hi-${process.pid}`;
  const args = ['--data-root', path.join(dir, 'data'), '--exec-root', path.join(dir, 'exec'), '--pidfile', path.join(dir, 'dockerd.pid'), '-H', host,
    '--bridge=none', '--iptables=false', '--config-file', config, '--containerd-namespace', `ew-${tag}`, '--containerd-plugins-namespace', `ew-${tag}-plugins`];
  const docker = (...a: string[]) => sh('docker', ['-H', host, ...a]);
  const log = fs.openSync(path.join(dir, 'dockerd.log'), 'a');
  const child: ChildProcess = spawn('dockerd', args, { stdio: ['ignore', log, log], detached: true, env: { ...process.env, ...env } });
  fs.closeSync(log);
  let gone = false;
  const exited = new Promise<void>((resolve) => child.on('exit', () => ((gone = true), resolve())));
  await waitFor(
    `the private dockerd on ${socket} to answer`,
    () => {
      if (gone) throw new Error(`private dockerd exited; see ${path.join(dir, 'dockerd.log')}`);
      return docker('version', '--format', '{{.Server.Version}}').status === 0 ? true : undefined;
    },
    60_000,
  );
  const stop = async () => {
    if (gone) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(killer);
  };
  return {
    host,
    socket,
    docker,
    running: () => !gone,
    stop,
    start: () => Promise.reject(new Error('not restartable')),
    destroy: async () => {
      const ids = docker('ps', '-aq').stdout.split('\n').filter(Boolean);
      if (ids.length) docker('rm', '-f', ...ids);
      await stop();
      const mounts = fs
        .readFileSync('/proc/self/mounts', 'utf8')
        .split('\n')
        .map((l) => l.split(' ')[1] ?? '')
        .filter((m) => m === dir || m.startsWith(dir + '/'))
        .sort()
        .reverse();
      for (const m of mounts) spawnSync('umount', ['-l', m]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('install.sh --runtime-hook: dpkg-divert puts edgeward-runc at runc\'s path (scratch root)', () => {
  let root: string;
  beforeAll(() => {
    requireIntegrationEnvironment();
    if (spawnSync('which', ['dpkg-divert']).status !== 0) throw new Error('dpkg-divert is missing: this test needs a Debian-family system');
    root = makeTempDir('hook-divert');
    const fakeRunc = path.join(root, '..', `fake-runc-${process.pid}`);
    fs.writeFileSync(fakeRunc, '#!/bin/sh\necho packaged-runc "$@"\n', { mode: 0o755 });
    scratchRoot(root, fakeRunc);
    fs.rmSync(fakeRunc);
  });
  afterAll(() => root && fs.rmSync(root, { recursive: true, force: true }));

  test('divert, idempotent; both runc paths run the wrapper, which runs the diverted runc; removal restores it', () => {
    const original = sha(path.join(root, 'usr', 'sbin', 'runc'));
    const first = installHook(root);
    expect(first.status).toBe(0);
    expect(first.stdout).toContain('runtime hook installed as /usr/sbin/runc (the packaged runc is /usr/sbin/runc.edgeward-real)');
    expect(diversions(root)).toBe('local diversion of /usr/sbin/runc to /usr/sbin/runc.edgeward-real');
    expect(sha(path.join(root, 'usr', 'sbin', 'runc'))).toBe(sha(WRAPPER));
    expect(sha(path.join(root, 'usr', 'sbin', 'runc.edgeward-real'))).toBe(original);
    // again: nothing changes (the diverted runc is not overwritten by the wrapper)
    expect(installHook(root).status).toBe(0);
    expect(diversions(root)).toBe('local diversion of /usr/sbin/runc to /usr/sbin/runc.edgeward-real');
    expect(sha(path.join(root, 'usr', 'sbin', 'runc.edgeward-real'))).toBe(original);
    // the wrapper finds the real runc next to itself, also through Debian's /usr/bin/runc link; no recursion
    for (const p of ['usr/sbin/runc', 'usr/bin/runc']) {
      const r = sh(path.join(root, p), ['state', 'x'], { EDGEWARD_REAL_RUNC: '' });
      expect({ p, out: r.stdout, status: r.status }).toEqual({ p, out: 'packaged-runc state x', status: 0 });
    }
    // a runc package upgrade writes to the diverted name: the wrapper stays
    const removed = removeHook(root);
    expect(removed.status).toBe(0);
    expect(removed.stdout).toContain('/usr/sbin/runc is the packaged runc again');
    expect(diversions(root)).toBe('');
    expect(sha(path.join(root, 'usr', 'sbin', 'runc'))).toBe(original);
    expect(fs.existsSync(path.join(root, 'usr', 'sbin', 'runc.edgeward-real'))).toBe(false);
    expect(removeHook(root).status).toBe(0);
  });

  test('a runc diverted by someone else is not taken over', () => {
    expect(sh('dpkg-divert', ['--root', root, '--local', '--no-rename', '--divert', '/usr/sbin/runc.other', '--add', '/usr/sbin/runc']).status).toBe(0);
    try {
      const r = installHook(root);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('/usr/sbin/runc is already diverted (/usr/sbin/runc.other');
    } finally {
      sh('dpkg-divert', ['--root', root, '--local', '--no-rename', '--remove', '/usr/sbin/runc']);
    }
  });

  test('the wrapper pointed at itself refuses instead of recursing', () => {
    const self = path.join(root, 'opt', 'edgeward', 'bin', 'edgeward-runc');
    const r = sh(self, ['state', 'x'], { EDGEWARD_REAL_RUNC: self });
    expect(r.status).toBe(127);
    expect(r.stderr).toContain('is this wrapper, not runc');
  });
});

describe('edgeward-runc installed as runc: every runc start goes through the hook (real agent, private dockerd)', () => {
  let dockerd: PrivateDockerd;
  let agent: AgentUnderTest | undefined;
  let work: string;
  let root: string;
  let socket: string;
  let expectedMarker: string;
  let policies: string;
  let config: string;
  let n = 0;

  const docker = (...args: string[]) => dockerd.docker(...args);
  const name = (what: string) => `${PREFIX}-${what}-${++n}`;
  const alertsFor = (c: string) => agent!.alerts().filter((a) => a.PolicyName === POLICY && a.ContainerName === c);
  const unhookedWarnings = (c: string) =>
    agent!.logs().filter((l) => l.level === 'warn' && new RegExp(`^docker: container ${c} \\(\\w{12}\\) started without the runtime hook`).test(String(l.message)));

  async function launchAgent(): Promise<AgentUnderTest> {
    const a = await startAgent({
      policies,
      workDir: work,
      env: { DOCKER_HOST: dockerd.host },
      extraArgs: ['--config', config, '--backend', 'compat'],
      readyTimeoutMs: 90_000,
    });
    await waitFor('the control socket', () => a.logs().find((l) => String(l.message).startsWith(`control socket ${socket}`)), 30_000);
    return a;
  }

  beforeAll(async () => {
    requireIntegrationEnvironment();
    if (!fs.existsSync(HOOK)) throw new Error(`${HOOK} is missing: run npm run build`);
    if (spawnSync('which', ['dpkg-divert']).status !== 0) throw new Error('dpkg-divert is missing: this test needs a Debian-family system');
    work = makeTempDir('hook-install');
    fs.chmodSync(work, 0o755);
    root = path.join(work, 'root');
    scratchRoot(root, machineRunc());
    const installed = installHook(root);
    if (installed.status !== 0) throw new Error(`install.sh --runtime-hook-only in ${root}: ${installed.stderr}`);
    socket = path.join(work, 'run', 'control.sock');
    expectedMarker = path.join(work, 'agent.expected');
    dockerd = await startDockerd(
      path.join(work, 'dockerd'),
      {
        // the scratch root's runc (the wrapper) first: what containerd's shim runs as "runc"
        PATH: `${path.join(root, 'usr', 'sbin')}:${path.join(root, 'usr', 'bin')}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
        // installed as runc, the wrapper finds node and the hook in /opt/edgeward; here: this checkout
        EDGEWARD_HOME: REPO,
        EDGEWARD_NODE: process.execPath,
        EDGEWARD_CONTROL_SOCKET: socket,
        EDGEWARD_RUNTIME_HOOK_TIMEOUT_MS: String(HOOK_TIMEOUT_MS),
        EDGEWARD_AGENT_EXPECTED_FILE: expectedMarker,
        EDGEWARD_AGENT_UNIT: `edgeward-test-${process.pid}-none.service`,
      },
      path.join(root, 'usr', 'sbin', 'runc.edgeward-real'),
    );
    importBusyboxImage(dockerd, IMAGE, [TOOL]);
    policies = path.join(work, 'operator');
    fs.mkdirSync(policies);
    fs.writeFileSync(path.join(policies, 'tool.yaml'), policy);
    config = path.join(work, 'config.yaml');
    fs.writeFileSync(config, `stateDirectory: ${path.join(work, 'state')}\ncontrol:\n  socket: ${socket}\n`);
    agent = await launchAgent();
  }, 300_000);

  afterAll(async () => {
    await agent?.stop();
    await dockerd?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }, 120_000);

  test('dockerd\'s default runtime is plain "runc": no daemon.json entry for the wrapper', () => {
    expect(docker('info', '--format', '{{.DefaultRuntime}}').stdout).toBe('runc');
  });

  test.each([['--runtime runc', ['--runtime', 'runc']], ['the default runtime', []]])(
    '%s: the blocked program as the entrypoint is refused from its first exec, no unhooked-start warning',
    async (_what, extra) => {
      const c = name('entry');
      const r = docker('run', '--network', 'none', '--name', c, '--label', `app=${APP}`, ...(extra as string[]), IMAGE, TOOL, 'echo', 'tool ran');
      expect(r.stdout).not.toContain('tool ran');
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`exec ${TOOL}: operation not permitted`);
      const alert = await waitFor(`an alert naming ${c}`, () => alertsFor(c)[0], 15_000);
      expect(alert).toMatchObject({ Action: 'Block', ContainerName: c });
      // through the hook: the agent answered container.started
      await waitFor(
        `the agent's log of ${c} from the runtime hook`,
        () => agent!.logs().find((l) => new RegExp(`^control: container ${c} \\(\\w{12}\\) started, from runtime hook`).test(String(l.message))),
        10_000,
      );
      expect(unhookedWarnings(c)).toEqual([]);
      docker('rm', '-f', c);
    },
    90_000,
  );

  test('a start around the hook (a runtime at the real runc\'s path) is reported, naming the container and runtime', async () => {
    const c = name('plain');
    const r = docker('run', '--network', 'none', '--name', c, '--label', `app=${APP}`, '--runtime', 'plainrunc', IMAGE, 'sh', '-c', `${TOOL} true; echo rc=$?`);
    // the race the hook closes: its first exec ran before the rules
    expect(r.stdout).toBe('rc=0');
    const [warning] = await waitFor(`the unhooked-start warning for ${c}`, () => (unhookedWarnings(c).length ? unhookedWarnings(c) : undefined), 15_000);
    expect(String(warning!.message)).toContain('(runtime "plainrunc"): its first program ran before its rules were in force');
    docker('rm', '-f', c);
  }, 60_000);

  test('agent restarting (socket absent, agent expected): docker run waits for it; the first exec is refused', async () => {
    await agent!.stop();
    agent = undefined;
    fs.rmSync(socket, { force: true });
    fs.writeFileSync(expectedMarker, '');
    try {
      const c = name('restart');
      const t0 = Date.now();
      const run = spawn('docker', ['-H', dockerd.host, 'run', '--network', 'none', '--name', c, '--label', `app=${APP}`, IMAGE, 'sh', '-c', `${TOOL} true; echo rc=$?`], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      run.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      run.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const done = new Promise<number | null>((resolve) => run.on('exit', (code) => resolve(code)));
      await new Promise((r) => setTimeout(r, 1500));
      agent = await launchAgent();
      const status = await done;
      // the container's own stderr (its shell's refusal), nothing from the wrapper: it did not fail open
      expect({ status, out: out.trim(), err: err.trim() }).toEqual({ status: 0, out: expect.stringMatching(REFUSED), err: `sh: ${TOOL}: Operation not permitted` });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
      await waitFor(`an alert naming ${c}`, () => alertsFor(c)[0], 15_000);
      expect(unhookedWarnings(c)).toEqual([]);
      docker('rm', '-f', c);
    } finally {
      fs.rmSync(expectedMarker, { force: true });
    }
  }, 180_000);

  test('agent not expected (stopped, no marker, unit inactive): fail-open at once, stderr says why', async () => {
    await agent!.stop();
    agent = undefined;
    fs.rmSync(socket, { force: true });
    const c = name('noagent');
    const t0 = Date.now();
    const r = docker('run', '--network', 'none', '--name', c, IMAGE, 'sh', '-c', 'echo started');
    expect(r.stdout).toBe('started');
    // no wait for the socket (the restart window's wait is HOOK_TIMEOUT_MS)
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.stderr).toContain(`the agent is not running (nothing listens on ${socket})`);
    docker('rm', '-f', c);
  }, 90_000);
});
