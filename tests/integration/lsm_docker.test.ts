// Container policies (KubeArmorPolicy) on the bpf-lsm backend with a real
// dockerd: the real agent (bin/edgeward agent --backend bpf-lsm) follows a
// private dockerd of this test (tests/helpers/private_dockerd.ts, its data
// root on a tmpfs: overlay2 cannot stack on the guest's overlayfs root), and
// every scenario checks both the kernel's refusal as the program in the
// container sees it and the alert with the container named.
//
// One agent start serves every scenario (loading the programs takes minutes
// in a TCG guest). Containers A, B and the allow-list one run before the
// agent starts (found when it lists the running containers); C starts after.
//
// Only a kernel booted with bpf among its LSMs can run this: run it in the
// qemu guest,
//   tests/vm/run-conformance.sh --backend bpf-lsm --timeout 1800 tests/integration/lsm_docker.test.ts
// Anywhere else it fails, naming why.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { unloadPinned } from '../../agent/src/lsm_backend';
import { PIN_ROOT } from '../../agent/src/lsm_enforcer';
import type { NativeAddon } from '../../agent/src/native';
import { probe } from '../../agent/src/probe';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { containerPolicy } from '../helpers/policies';
import { importBusyboxImage, PrivateDockerd, startPrivateDockerd } from '../helpers/private_dockerd';
import { ADDON, makeTempDir, run, waitFor } from '../helpers/system';

const PREFIX = `ew-lsmdk-${process.pid}`;
const IMAGE = `edgeward-test/lsm-docker-${process.pid}:latest`;
const TOOL = '/usr/bin/busybox-tool'; // "busybox-*" names run their first argument as the applet
const DENIED = /Permission denied|Operation not permitted/;
const REFUSED_EXEC = /rc=12[67]/; // the shell's status for a program it cannot execute

function ksp(name: string, app: string, spec: string): string {
  return containerPolicy(name, { app }, spec);
}

const POLICIES: Record<string, string> = {
  'proc.yaml': ksp('ksp-block-tool', 'a', `  severity: 6\n  message: tool blocked\n  process:\n    matchPaths:\n    - path: ${TOOL}\n  action: Block\n`),
  'dir.yaml': ksp('ksp-secret-dir', 'a', '  file:\n    matchDirectories:\n    - dir: /secret/\n      recursive: true\n  action: Block\n'),
  'readonly.yaml': ksp('ksp-cred-readonly', 'a', '  file:\n    matchPaths:\n    - path: /etc/cred\n      readOnly: true\n  action: Block\n'),
  'audit.yaml': ksp('ksp-audit', 'a', '  file:\n    matchPaths:\n    - path: /data/audit.txt\n  action: Audit\n'),
  'cap.yaml': ksp('ksp-no-raw', 'a', '  capabilities:\n    matchCapabilities:\n    - capability: net_raw\n  action: Block\n'),
  'net.yaml': ksp('ksp-no-tcp', 'a', '  network:\n    matchProtocols:\n    - protocol: tcp\n  action: Block\n'),
  'allowlist.yaml': ksp('ksp-allow-busybox', 'allowlist', '  process:\n    matchPaths:\n    - path: /bin/busybox\n  action: Allow\n'),
};

describe('container policies on the bpf-lsm backend (real agent, real dockerd in the BPF-LSM guest)', () => {
  let dockerd: PrivateDockerd | undefined;
  let agent: AgentUnderTest | undefined;
  let work: string;
  const A = `${PREFIX}-a`;
  const B = `${PREFIX}-b`;
  const C = `${PREFIX}-c`; // started after the agent
  const ALLOW = `${PREFIX}-allow`;
  const ids: Record<string, string> = {};
  const docker = (...args: string[]) => dockerd!.docker(...args);
  const sh = (name: string, script: string) => docker('exec', name, 'sh', '-c', script);
  const alerts = () => agent!.alerts();

  function runContainer(name: string, labels: Record<string, string>): void {
    const labelArgs = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
    const r = docker('run', '-d', '--network', 'none', '--name', name, ...labelArgs, IMAGE, 'sleep', '3600');
    if (r.status !== 0) throw new Error(`docker run ${name}: ${r.stderr}`);
    ids[name] = r.stdout;
  }

  /** the container-identifying fields every alert of `name` must carry */
  const containerFields = (name: string, labels: string) => ({
    Type: 'MatchedPolicy',
    ContainerID: ids[name],
    ContainerName: name,
    ContainerImage: IMAGE,
    Labels: labels,
  });

  beforeAll(async () => {
    const problems: string[] = [];
    if (process.getuid?.() !== 0) problems.push('must run as root (LSM programs are attached)');
    if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
    if (spawnSync('which', ['dockerd']).status !== 0) problems.push('dockerd is not installed (scripts/install-deps.sh: docker.io)');
    if (problems.length) throw new Error(`bpf-lsm docker tests cannot run: ${problems.join('; ')}`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const addon = require(ADDON) as NativeAddon;
    const report = probe(addon, 'auto');
    if (report.backend !== 'bpf-lsm') {
      throw new Error(
        `bpf-lsm docker tests need a kernel that runs BPF-LSM programs, and this one does not (${report.kernel}; ` +
          `probe: ${report.reasons.join('; ')}). Run them in the BPF-LSM guest: ` +
          'tests/vm/run-conformance.sh --backend bpf-lsm --timeout 1800 tests/integration/lsm_docker.test.ts',
      );
    }
    work = makeTempDir('lsm-docker');
    fs.chmodSync(work, 0o755);
    const t0 = Date.now();
    dockerd = await startPrivateDockerd(path.join(work, 'dockerd'), { tmpfsDataRoot: true });
    importBusyboxImage(dockerd, IMAGE, [TOOL], {
      applets: ['traceroute', 'ln', 'mkdir'],
      files: {
        '/secret/a.txt': 'a\n',
        '/secret/sub/b.txt': 'b\n',
        '/etc/cred': 'password\n',
        '/data/audit.txt': 'audit\n',
      },
    });
    runContainer(A, { app: 'a', tier: 'edge' });
    runContainer(B, { app: 'b' });
    runContainer(ALLOW, { app: 'allowlist' });
    // a file of A's upper layer in a copied-up directory (the others are the image's, lower layer)
    const up = sh(A, 'echo up > /secret/sub/up.txt && cat /secret/sub/up.txt');
    if (up.stdout !== 'up') throw new Error(`writing /secret/sub/up.txt in ${A} failed: ${up.stderr}`);
    console.log(`private dockerd, image and 3 containers ready in ${Date.now() - t0} ms`);
    const policies = path.join(work, 'policies');
    fs.mkdirSync(policies);
    for (const [f, text] of Object.entries(POLICIES)) fs.writeFileSync(path.join(policies, f), text);
    const config = path.join(work, 'config.yaml');
    fs.writeFileSync(config, 'defaultPosture:\n  file: block\n');
    const t1 = Date.now();
    agent = await startAgent({
      policies,
      workDir: work,
      readyTimeoutMs: 240_000,
      extraArgs: ['--backend', 'bpf-lsm', '--config', config],
      env: { DOCKER_HOST: dockerd.host },
    });
    console.log(`agent ready in ${Date.now() - t1} ms`);
    expect(agent.logs().find((l) => l.event === 'ready')).toMatchObject({ backend: 'bpf-lsm', errors: 0 });
  }, 420_000);

  afterAll(async () => {
    await agent?.stop();
    try {
      unloadPinned(PIN_ROOT); // never leave rules pinned for the next test file
    } catch {
      // nothing pinned
    }
    await dockerd?.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }, 120_000);

  test('a process blocked in container A only: the same binary runs in container B and on the host', async () => {
    const a = sh(A, `${TOOL} true; echo rc=$?`);
    expect(a.stderr).toMatch(DENIED);
    expect(a.stdout).toMatch(REFUSED_EXEC);
    expect(docker('exec', A, TOOL, 'true').status).not.toBe(0);
    expect(sh(B, `${TOOL} echo b; echo rc=$?`).stdout).toBe('b\nrc=0');
    expect(sh(A, 'echo fine').stdout).toBe('fine'); // A's other programs run
    // the host runs container A's own file (the inode the rule names for A)
    const pidA = Number(docker('inspect', '-f', '{{.State.Pid}}', A).stdout);
    expect(run(`/proc/${pidA}/root${TOOL}`, ['echo', 'host'])).toMatchObject({ status: 0, stdout: 'host\n' });
    const alert = await waitFor('the process alert of A', () => alerts().find((x) => x.PolicyName === 'ksp-block-tool' && x.ContainerName === A), 20_000);
    expect(alert).toMatchObject({
      ...containerFields(A, 'app=a,tier=edge'),
      PolicyName: 'ksp-block-tool',
      Operation: 'Process',
      Resource: TOOL,
      Severity: '6',
      Message: 'tool blocked',
      Action: 'Block',
      Result: 'Permission denied',
    });
    expect(alerts().filter((x) => x.PolicyName === 'ksp-block-tool' && x.ContainerName !== A && x.ContainerName !== C)).toEqual([]);
  });

  test('docker exec processes, their children and grandchildren, and a detached exec are covered', async () => {
    expect(sh(A, `sh -c "sh -c '${TOOL} true; echo rc=\\$?'"`).stdout).toMatch(REFUSED_EXEC);
    expect(docker('exec', '-d', A, 'sh', '-c', `sleep 1; ${TOOL} true; echo rc=$? > /tmp/late`).status).toBe(0);
    const late = await waitFor('the detached attempt', () => sh(A, 'cat /tmp/late 2>/dev/null').stdout || undefined, 20_000);
    expect(late).toMatch(REFUSED_EXEC);
  });

  test('matchDirectories recursive Block on a directory of the container\'s own (overlay) root', async () => {
    expect(sh(A, 'cat /secret/a.txt').stderr).toMatch(DENIED);
    expect(sh(A, 'cat /secret/sub/b.txt').stderr).toMatch(DENIED);
    expect(sh(A, 'cat /secret/sub/up.txt').stderr).toMatch(DENIED); // upper layer, written before the agent started
    expect(sh(A, 'ls /secret').stdout.split('\n').sort()).toEqual(['a.txt', 'sub']); // listing is not opening the files
    expect(sh(B, 'cat /secret/a.txt /secret/sub/b.txt').stdout).toBe('a\nb');
    const alert = await waitFor('the directory alert', () => alerts().find((x) => x.PolicyName === 'ksp-secret-dir' && x.Resource === '/secret/sub/b.txt'), 20_000);
    expect(alert).toMatchObject({ ...containerFields(A, 'app=a,tier=edge'), Operation: 'File', Action: 'Block', Result: 'Permission denied' });
  });

  test('readOnly: reads work, writes (to the image file, copied up) are blocked, in A only', async () => {
    expect(sh(A, 'cat /etc/cred').stdout).toBe('password');
    const w = sh(A, 'echo x >> /etc/cred; echo rc=$?');
    expect(w.stderr).toMatch(DENIED);
    expect(w.stdout).toBe('rc=1');
    expect(sh(A, 'cat /etc/cred').stdout).toBe('password');
    expect(sh(B, 'echo x >> /etc/cred && cat /etc/cred').stdout).toBe('password\nx');
    const alert = await waitFor('the readOnly alert', () => alerts().find((x) => x.PolicyName === 'ksp-cred-readonly'), 20_000);
    expect(alert).toMatchObject({ ...containerFields(A, 'app=a,tier=edge'), Operation: 'File', Resource: '/etc/cred', Action: 'Block', Result: 'Permission denied' });
  });

  test('Audit: the read works and is reported with Result "Passed" and the container', async () => {
    expect(sh(A, 'cat /data/audit.txt').stdout).toBe('audit');
    const alert = await waitFor('the audit alert', () => alerts().find((x) => x.PolicyName === 'ksp-audit'), 20_000);
    expect(alert).toMatchObject({ ...containerFields(A, 'app=a,tier=edge'), Operation: 'File', Resource: '/data/audit.txt', Action: 'Audit', Result: 'Passed' });
    expect(sh(B, 'cat /data/audit.txt').stdout).toBe('audit');
  });

  test('capabilities: net_raw blocked in A (a raw ICMP socket), granted to B', async () => {
    const a = sh(A, 'traceroute -n -m 1 -w 1 -q 1 127.0.0.1; echo rc=$?');
    expect(a.stderr).toMatch(/socket: Operation not permitted/);
    expect(a.stdout).toMatch(/rc=1$/);
    const b = sh(B, 'traceroute -n -m 1 -w 1 -q 1 127.0.0.1; echo rc=$?');
    expect(b.stderr).not.toMatch(DENIED);
    expect(b.stdout).toMatch(/rc=0$/);
    const alert = await waitFor('the capability alert', () => alerts().find((x) => x.PolicyName === 'ksp-no-raw'), 20_000);
    expect(alert).toMatchObject({ ...containerFields(A, 'app=a,tier=edge'), Operation: 'Capabilities', Action: 'Block', Result: 'Permission denied' });
  });

  test('a network protocol (tcp) blocked in A only, on the loopback of --network none', async () => {
    expect(sh(A, 'nc -w1 127.0.0.1 9; echo rc=$?').stderr).toMatch(DENIED);
    expect(sh(B, 'nc -w1 127.0.0.1 9; echo rc=$?').stderr).toMatch(/Connection refused/); // the socket was made; nothing listens
    const alert = await waitFor('the network alert', () => alerts().find((x) => x.PolicyName === 'ksp-no-tcp'), 20_000);
    expect(alert).toMatchObject({ ...containerFields(A, 'app=a,tier=edge'), Operation: 'Network', Resource: 'tcp', Action: 'Block', Result: 'Permission denied' });
  });

  test('allow-list (Allow + defaultPosture file: block, which process follows as in KubeArmor): only the allowed program runs there; the alert names DefaultPosture', async () => {
    expect(sh(ALLOW, 'echo hi').stdout).toBe('hi'); // sh and echo are /bin/busybox
    const r = sh(ALLOW, `${TOOL} true; echo rc=$?`);
    expect(r.stderr).toMatch(DENIED);
    expect(r.stdout).toMatch(REFUSED_EXEC);
    expect(sh(B, `${TOOL} true; echo rc=$?`).stdout).toBe('rc=0');
    const alert = await waitFor('the default-posture alert', () => alerts().find((x) => x.PolicyName === 'DefaultPosture' && x.ContainerName === ALLOW), 20_000);
    expect(alert).toMatchObject({ ...containerFields(ALLOW, 'app=allowlist'), Operation: 'Process', Resource: TOOL, Action: 'Block', Result: 'Permission denied' });
    expect(alerts().filter((x) => x.PolicyName === 'DefaultPosture' && x.ContainerName !== ALLOW)).toEqual([]);
  });

  test('a container started after the agent is under its policies', async () => {
    runContainer(C, { app: 'a' });
    const started = Date.now();
    await waitFor('the new container to be enforced', () => (REFUSED_EXEC.test(sh(C, `${TOOL} true; echo rc=$?`).stdout) ? true : undefined), 30_000);
    console.log(`container started after the agent enforced ${Date.now() - started} ms after docker run returned`);
    expect(sh(C, 'cat /secret/a.txt').stderr).toMatch(DENIED);
    const alert = await waitFor('the process alert of C', () => alerts().find((x) => x.PolicyName === 'ksp-block-tool' && x.ContainerName === C), 20_000);
    expect(alert).toMatchObject({ ...containerFields(C, 'app=a'), Operation: 'Process', Resource: TOOL, Action: 'Block' });
  });
});
