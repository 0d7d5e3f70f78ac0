// The real agent (bin/edgeward agent) on bpf-lsm pins its rules: kill -9 of
// the agent keeps the block, a restarted agent adopts the pinned state and
// its alerts resume, a stop without --detach-on-exit leaves the rules in
// force, `edgeward unload` removes them, --detach-on-exit removes them on
// stop, and with selfProtection enabled only the stopper can stop it.
//
// Only a kernel booted with bpf among its LSMs can run this: run it in the
// qemu guest,
//   tests/vm/run-conformance.sh --backend bpf-lsm tests/integration/lsm_agent_pinning.test.ts
// It pins under the agent's real root (/sys/fs/bpf/edgeward), which is why
// it refuses to start when something is pinned there already.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { lsmAddon, lsmPinDir, PIN_ROOT } from '../../agent/src/lsm_enforcer';
import type { NativeAddon } from '../../agent/src/native';
import { probe } from '../../agent/src/probe';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { ADDON, CLI, makeTempDir, run, waitFor } from '../helpers/system';

const CAT = '/bin/cat';

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

  const unload = () => run(process.execPath, [CLI, 'unload']);

  const alertOn = (a: AgentUnderTest) =>
    waitFor(`an alert on ${secret}`, () => a.alerts().find((x) => x.Resource === secret && x.Action === 'Block'), 30_000);

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
    if (fs.existsSync(pinDir)) throw new Error(`${pinDir} exists already: another agent's pinned state (edgeward unload removes it)`);
    work = makeTempDir('lsm-agent-pin');
    policies = path.join(work, 'policies');
    fs.mkdirSync(policies);
    secret = path.join(work, 'secret.txt');
    fs.writeFileSync(secret, 'secret\n');
    fs.writeFileSync(
      path.join(policies, 'secret.yaml'),
      hostPolicy('protect-secret', `  file:\n    matchPaths:\n      - path: ${secret}\n  action: Block\n`),
    );
  });

  afterAll(async () => {
    for (const a of agents) await a.stop();
    unload();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('kill -9: the block holds; a restarted agent adopts it and alerts again; a plain stop keeps it; edgeward unload removes it', async () => {
    const first = await agent();
    expect(readSecret()).toBe('EPERM');
    await alertOn(first);
    expect(fs.readdirSync(pinDir)).toEqual(expect.arrayContaining(['active', 'path_rules', 'link_file_open']));

    await kill9(first);
    expect(readSecret()).toBe('EPERM'); // nothing runs in userspace now: the pinned programs decide

    const second = await agent();
    expect(second.logs().some((l) => l.event === 'adopted')).toBe(true);
    expect(readSecret()).toBe('EPERM');
    await alertOn(second); // alerts resume, in the new agent's output

    // SIGTERM without --detach-on-exit: the rules stay in force
    expect(await second.stop()).toBe(0);
    expect(readSecret()).toBe('EPERM');
    expect(fs.existsSync(pinDir)).toBe(true);

    const r = unload();
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(pinDir);
    expect(readSecret()).toBe('ok');
    expect(fs.existsSync(pinDir)).toBe(false);
    expect(fs.readdirSync(PIN_ROOT).filter((n) => n.startsWith('lsm-'))).toEqual([]);
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
    expect(await a.stop()).toBe(0);
    expect(readSecret()).toBe('ok');
    expect(fs.existsSync(pinDir)).toBe(false);
  }, 600_000);
});
