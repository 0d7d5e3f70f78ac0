// The real agent (bin/edgeward agent) on bpf-lsm pins its rules: kill -9 of
// the agent keeps the block, a restarted agent adopts the pinned state and
// its alerts resume, a stop without --detach-on-exit leaves the rules in
// force, `edgeward unload` removes them, --detach-on-exit removes them on
// stop, and with selfProtection enabled only the stopper can stop it.
// Capability rules (lsm/capable) are pinned beside them and behave alike.
// A second agent started meanwhile is refused (the pin lock), naming the
// pid of the first. When the pins cannot be used (something squatting the
// pin directories) the agent enforces unpinned and says so, naming the path.
//
// Only a kernel booted with bpf among its LSMs can run this: run it in the
// qemu guest,
//   tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_agent_pinning.test.ts
// It pins under the agent's real root (/sys/fs/bpf/edgeward), which is why
// it refuses to start when something is pinned there already.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { capablePinDir } from '../../agent/src/lsm_capable';
import { pinLockPath } from '../../agent/src/lsm_backend';
import { lsmAddon, lsmPinDir, PIN_ROOT } from '../../agent/src/lsm_enforcer';
import type { NativeAddon } from '../../agent/src/native';
import { probe } from '../../agent/src/probe';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { ADDON, CLI, makeTempDir, run, waitFor } from '../helpers/system';

const CAT = '/bin/cat';
const PYTHON = fs.realpathSync('/usr/bin/python3');
// "ok" or the errno name of a raw socket (needs CAP_NET_RAW)
const RAW_SOCKET = `import errno, socket
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close(); print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))`;

function hostPolicy(name: string, body: string): string {
  return `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: ${name}
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
${body}`;
}

describe('the bpf-lsm agent keeps enforcing across restarts (pinned state)', () => {
  let work: string;
  let policies: string;
  let secret: string;
  let pinDir: string;
  let capDir: string;
  const agents: AgentUnderTest[] = [];
  let runs = 0;

  /** Starts an agent with its own alerts file (so alerts are told apart per run). */
  async function agent(extraArgs: string[] = []): Promise<AgentUnderTest> {
    const dir = path.join(work, `run-${++runs}`);
    fs.mkdirSync(dir);
    const a = await startAgent({ policies, workDir: dir, extraArgs: ['--backend', 'bpf-lsm', ...extraArgs] });
    agents.push(a);
    return a;
  }

  const readSecret = () => {
    const r = run(CAT, [secret]);
    return r.status === 0 ? 'ok' : /Operation not permitted/.test(r.stderr) ? 'EPERM' : `status ${r.status}: ${r.stderr}`;
  };

  const rawSocket = () => {
    const r = spawnSync(PYTHON, ['-c', RAW_SOCKET], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : `status ${String(r.status)}: ${r.stderr}`;
  };

  const unload = () => run(process.execPath, [CLI, 'unload']);

  const capAlertOn = (a: AgentUnderTest) =>
    waitFor('a capability alert', () => a.alerts().find((x) => x.Operation === 'Capabilities' && x.Resource === 'CAP_NET_RAW' && x.Action === 'Block'), 30_000);

  const alertOn = (a: AgentUnderTest) =>
    waitFor(`an alert on ${secret}`, () => a.alerts().find((x) => x.Resource === secret && x.Action === 'Block'), 30_000);

  /**
   * Waits until it answers `edgeward status`: "ready" is logged before the
   * agent's start has finished, and cli.ts sets its SIGTERM handler only
   * after start(), so a SIGTERM in between ends it by the default action.
   * A control request is served only once that synchronous tail has run.
   */
  async function startedFully(a: AgentUnderTest): Promise<void> {
    let last = '';
    await waitFor(
      'the agent to answer edgeward status',
      () => {
        const r = run(process.execPath, [CLI, 'status', '--json']);
        last = `status ${String(r.status)}: ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 300)}`;
        try {
          return r.status === 0 && (JSON.parse(r.stdout) as { pid?: number }).pid === a.child.pid ? true : undefined;
        } catch {
          return undefined;
        }
      },
      120_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message} (last: ${last}); its stderr ends with:\n${a.stderr().slice(-3000)}`);
    });
  }

  /** Stops it (SIGTERM) and expects a clean exit; otherwise fails with how it ended and its last words. */
  async function stopped(a: AgentUnderTest): Promise<void> {
    const t0 = Date.now();
    const code = await a.stop();
    if (code !== 0) {
      throw new Error(
        `the agent (pid ${a.child.pid}) ended with code ${String(code)}, signal ${String(a.child.signalCode)} after ${Date.now() - t0} ms; ` +
          `its stderr ends with:\n${a.stderr().slice(-4000)}`,
      );
    }
  }

  async function kill9(a: AgentUnderTest): Promise<void> {
    const exited = new Promise((r) => a.child.on('exit', r));
    a.child.kill('SIGKILL');
    await exited;
  }

  beforeAll(() => {
    if (process.getuid?.() !== 0) throw new Error('must run as root (the agent attaches LSM programs)');
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const addon = require(ADDON) as NativeAddon;
    const report = probe(addon, 'auto');
    if (report.backend !== 'bpf-lsm') {
      throw new Error(
        `these tests need a kernel that runs BPF-LSM programs (${report.kernel}: ${report.reasons.join('; ')}); ` +
          'run them in the guest: tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_agent_pinning.test.ts',
      );
    }
    pinDir = lsmPinDir(lsmAddon(addon).lsmLimits.layoutVersion);
    capDir = capablePinDir(addon.capableLimits!.layoutVersion);
    for (const d of [pinDir, capDir]) {
      if (fs.existsSync(d)) throw new Error(`${d} exists already: another agent's pinned state (edgeward unload removes it)`);
    }
    work = makeTempDir('lsm-agent-pin');
    policies = path.join(work, 'policies');
    fs.mkdirSync(policies);
    secret = path.join(work, 'secret.txt');
    fs.writeFileSync(secret, 'secret\n');
    fs.writeFileSync(
      path.join(policies, 'secret.yaml'),
      hostPolicy('protect-secret', `  file:\n    matchPaths:\n      - path: ${secret}\n  action: Block\n`),
    );
    fs.writeFileSync(
      path.join(policies, 'no-raw.yaml'),
      hostPolicy('no-raw-python', `  capabilities:\n    matchCapabilities:\n      - capability: net_raw\n        fromSource:\n          - path: ${PYTHON}\n  action: Block\n`),
    );
  });

  afterAll(async () => {
    for (const a of agents) await a.stop();
    unload();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('kill -9: the block holds; a restarted agent adopts it and alerts again; a plain stop keeps it; edgeward unload removes it', async () => {
    expect(rawSocket()).toBe('ok');
    const first = await agent();
    expect(readSecret()).toBe('EPERM');
    expect(rawSocket()).toBe('EPERM');
    await alertOn(first);
    await capAlertOn(first);
    expect(fs.readdirSync(pinDir)).toEqual(expect.arrayContaining(['active', 'path_rules', 'link_file_open']));
    expect(fs.readdirSync(capDir).sort()).toEqual(['active', 'config', 'gen_info', 'link_capable', 'rules', 'workloads']);

    await kill9(first);
    expect(readSecret()).toBe('EPERM'); // nothing runs in userspace now: the pinned programs decide
    expect(rawSocket()).toBe('EPERM');

    const second = await agent();
    expect(second.logs().some((l) => l.event === 'adopted')).toBe(true);
    expect(readSecret()).toBe('EPERM');
    expect(rawSocket()).toBe('EPERM');
    await alertOn(second); // alerts resume, in the new agent's output
    await capAlertOn(second);

    // SIGTERM without --detach-on-exit: the rules stay in force
    expect(await second.stop()).toBe(0);
    expect(readSecret()).toBe('EPERM');
    expect(rawSocket()).toBe('EPERM');
    expect(fs.existsSync(pinDir)).toBe(true);
    expect(fs.existsSync(capDir)).toBe(true);

    const r = unload();
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(pinDir);
    expect(r.stdout).toContain(capDir);
    expect(readSecret()).toBe('ok');
    expect(rawSocket()).toBe('ok');
    expect(fs.existsSync(pinDir)).toBe(false);
    expect(fs.existsSync(capDir)).toBe(false);
    expect(fs.readdirSync(PIN_ROOT).filter((n) => n.startsWith('lsm-') || n.startsWith('cap-'))).toEqual([]);
    // nothing left: unloading again is not an error
    expect(unload().status).toBe(0);
  }, 900_000);

  test('self-protection: other processes can neither kill it nor touch its state and pins; the stopper can stop it', async () => {
    const state = path.join(work, 'state');
    const config = path.join(work, 'self-protected.yaml');
    // the state directory on /tmp: on the guest's overlay root stat() and the LSM hooks see different inodes
    fs.writeFileSync(config, `stateDirectory: ${state}\nselfProtection:\n  enabled: true\n  stopperPid: ${process.pid}\n`);
    const a = await agent(['--config', config]);
    expect(a.logs().some((l) => l.event === 'self-protected')).toBe(true);
    const pid = String(a.child.pid);
    const py = spawnSync(
      '/usr/bin/python3',
      [
        '-c',
        `import errno, os, signal, sys
def attempt(fn):
    try:
        fn(); print('ok')
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
attempt(lambda: os.kill(int(sys.argv[1]), signal.SIGKILL))
attempt(lambda: open(os.path.join(sys.argv[2], 'planted'), 'w'))
attempt(lambda: os.unlink(os.path.join(sys.argv[3], 'link_file_open')))`,
        pid,
        state,
        pinDir,
      ],
      { encoding: 'utf8' },
    );
    expect(py.stdout.trim().split('\n')).toEqual(['EPERM', 'EPERM', 'EPERM']);
    const refused = unload();
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/stop it with the service manager first/);
    expect(readSecret()).toBe('EPERM');
    expect(await a.stop()).toBe(0); // SIGTERM from the stopper
    expect(unload().status).toBe(0);
    expect(readSecret()).toBe('ok');
  }, 600_000);

  test('--detach-on-exit: stopping the agent removes its enforcement and its pins', async () => {
    const a = await agent(['--detach-on-exit']);
    expect(readSecret()).toBe('EPERM');
    expect(rawSocket()).toBe('EPERM');
    expect(await a.stop()).toBe(0);
    expect(readSecret()).toBe('ok');
    expect(rawSocket()).toBe('ok');
    expect(fs.existsSync(pinDir)).toBe(false);
    expect(fs.existsSync(capDir)).toBe(false);
  }, 600_000);

  test('a second agent is refused while the first holds the pins, naming its pid; the first keeps enforcing', async () => {
    const first = await agent();
    try {
      // fully started before the second one comes
      await startedFully(first);
      let refused: Error | undefined;
      // its own state directory and socket: the pin lock, not the state directory's, must refuse it
      const own = path.join(work, 'second-agent.yaml');
      fs.writeFileSync(own, `stateDirectory: ${path.join(work, 'second-state')}\ncontrol:\n  socket: ${path.join(work, 'second-run', 'control.sock')}\n`);
      try {
        await agent(['--config', own]);
      } catch (err) {
        refused = err as Error;
      }
      expect(refused?.message).toContain(`${pinLockPath()} is locked by pid ${first.child.pid}: another edgeward agent`);
      expect(readSecret()).toBe('EPERM');
      expect(rawSocket()).toBe('EPERM');
      await alertOn(first);
      await stopped(first);
      // once it has stopped, an agent starts and adopts its pins
      const next = await agent();
      expect(next.logs().some((l) => l.event === 'adopted')).toBe(true);
      await startedFully(next);
      await stopped(next);
    } finally {
      await first.stop();
      expect(unload().status).toBe(0);
    }
  }, 900_000);

  test('pins that cannot be used: enforced unpinned, with a warning naming the path and the reason', async () => {
    // nothing pinned: pins hidden under the mount below would go on enforcing
    expect(unload().status).toBe(0);
    expect(readSecret()).toBe('ok');
    // tmpfs over the pin root (no bpffs there) with files squatting both pin directories
    fs.mkdirSync(PIN_ROOT, { recursive: true });
    const mounted = run('/bin/mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', PIN_ROOT]);
    expect(mounted.status).toBe(0);
    try {
      fs.writeFileSync(pinDir, 'squatter');
      fs.writeFileSync(capDir, 'squatter');
      const a = await agent();
      const warnings = a.logs().map((l) => String(l.msg ?? l.message ?? ''));
      expect(warnings).toEqual(
        expect.arrayContaining([
          expect.stringMatching(new RegExp(`path and network rules not pinned at ${pinDir}: .*ENOTDIR.*enforced unpinned instead`)),
          expect.stringMatching(new RegExp(`capability rules not pinned at ${capDir}: .*ENOTDIR.*enforced unpinned instead`)),
        ]),
      );
      expect(readSecret()).toBe('EPERM');
      expect(rawSocket()).toBe('EPERM');
      await startedFully(a);
      await stopped(a);
      // unpinned: the rules ended with the agent, and the squatters are untouched
      expect(readSecret()).toBe('ok');
      expect(rawSocket()).toBe('ok');
      expect(fs.readFileSync(pinDir, 'utf8')).toBe('squatter');
      expect(fs.readFileSync(capDir, 'utf8')).toBe('squatter');
    } finally {
      run('/bin/umount', [PIN_ROOT]);
    }
  }, 600_000);
});
