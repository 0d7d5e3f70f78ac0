// The agent image (Dockerfile) built here, without a registry: BASE_IMAGE is the
// debootstrap'ed Debian image and NODE_IMAGE this machine's node, both made by
// `docker import` (tests/helpers/rootfs.ts). It runs as the Horizon deployment
// runs it — privileged-equivalent (--privileged fails on this host: no
// CAP_SYS_RESOURCE), host pid and network, the host root at /host — and must
// enforce a host policy on the host's own files and a container policy in a
// container the host's dockerd runs.
//
// The host root is bound ro without "rslave" here: this host's / is a private
// mount, and Docker refuses rslave on it (a systemd host's / is shared, so the
// Horizon deployment keeps rslave and sees mounts made after it started).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { docker, DockerdHandle, ensureDockerd, ensureTestImage, TEST_IMAGE } from '../helpers/docker';
import { ensureDebianImage, ensureNodeImage } from '../helpers/rootfs';
import { busyboxCopy, makeTempDir, REPO, requireIntegrationEnvironment, run, waitFor } from '../helpers/system';
import { hostProcessPolicy } from '../helpers/policies';

/** The built tree packaged: this checkout (EDGEWARD_DEPLOY_TREE: another built tree). */
const TREE = process.env.EDGEWARD_DEPLOY_TREE ?? REPO;
const IMAGE = 'edgeward-test/agent:image-test';
const AGENT = `edgeward-image-test-agent-${process.pid}`;
const WORKLOAD = `edgeward-image-test-workload-${process.pid}`;
const LABEL = `ew-image-test-${process.pid}`;

const CONTAINER_POLICY = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: image-test-container-block
spec:
  selector:
    matchLabels:
      app: ${LABEL}
  file:
    matchPaths:
    - path: /tmp/blocked.txt
  action: Block
`;

function logs(): { stdout: string; stderr: string } {
  const r = spawnSync('docker', ['logs', AGENT], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  return { stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function jsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('the agent image, run as the Horizon service runs it', () => {
  let dockerd: DockerdHandle | undefined;
  let work: string;
  let blocked: string;
  let stateDir: string;

  beforeAll(async () => {
    requireIntegrationEnvironment();
    dockerd = await ensureDockerd();
    ensureTestImage();
    const base = ensureDebianImage();
    const node = ensureNodeImage();
    const build = spawnSync(
      'docker',
      ['build', '-t', IMAGE, '--build-arg', `BASE_IMAGE=${base}`, '--build-arg', `NODE_IMAGE=${node}`, '-f', path.join(REPO, 'Dockerfile'), TREE],
      { encoding: 'utf8', timeout: 20 * 60_000, maxBuffer: 64 * 2 ** 20, env: { ...process.env, DOCKER_BUILDKIT: '0' } },
    );
    if (build.status !== 0) throw new Error(`docker build failed (${build.status ?? build.signal}):\n${(build.stdout + build.stderr).slice(-4000)}`);

    work = makeTempDir('image');
    blocked = busyboxCopy(work, 'blocked');
    const policies = path.join(work, 'policies');
    fs.mkdirSync(policies);
    fs.writeFileSync(path.join(policies, 'host.yaml'), hostProcessPolicy('image-test-host-block', [blocked]));
    fs.writeFileSync(path.join(policies, 'container.yaml'), CONTAINER_POLICY);
    stateDir = path.join(work, 'state');
    fs.mkdirSync(stateDir);

    docker('rm', '-f', WORKLOAD, AGENT);
    const w = docker('run', '-d', '--name', WORKLOAD, '--label', `app=${LABEL}`, TEST_IMAGE, 'sh', '-c', 'echo secret > /tmp/blocked.txt; exec sleep 600');
    if (w.status !== 0) throw new Error(`workload container: ${w.stderr}`);

    const a = docker(
      'run', '-d', '--name', AGENT,
      '--cap-add', 'ALL', '--cap-drop', 'SYS_RESOURCE',
      '--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor=unconfined',
      '--pid', 'host', '--network', 'host',
      '-v', '/:/host:ro',
      '-v', '/sys/fs/bpf:/host/sys/fs/bpf:rw',
      // the state directory: a host path bound rw over the read-only host root
      '-v', `${stateDir}:/host${stateDir}:rw`,
      '-e', `EDGEWARD_STATE_DIR=${stateDir}`,
      '-e', `EDGEWARD_POLICIES=${policies}`,
      '-e', 'EDGEWARD_BACKEND=compat',
      IMAGE,
    );
    if (a.status !== 0) throw new Error(`agent container: ${a.stderr}`);
    await waitFor(
      'the containerized agent to report ready',
      () => {
        const state = docker('inspect', '-f', '{{.State.Running}}', AGENT).stdout;
        if (state !== 'true') throw new Error(`the agent container stopped:\n${logs().stderr.slice(-4000)}`);
        return jsonLines(logs().stderr).find((l) => l.event === 'ready');
      },
      90_000,
    );
  }, 30 * 60_000);

  afterAll(async () => {
    docker('rm', '-f', AGENT, WORKLOAD);
    if (work) fs.rmSync(work, { recursive: true, force: true });
    await dockerd?.stop();
  }, 120_000);

  test('the image holds the runtime tree only, with libbpf and node from the build arguments', () => {
    const r = docker('run', '--rm', '--entrypoint', '/bin/sh', IMAGE, '-c',
      'test ! -e /opt/edgeward/node_modules/typescript && test ! -e /opt/edgeward/node_modules/jest && test -e /opt/edgeward/node_modules/dockerode && ls /usr/lib/*/libbpf.so.1 && /opt/edgeward/node/bin/node --version');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`v${process.versions.node}`);
  });

  test('a host policy blocks a host program (the agent marks the host inode, not the image)', () => {
    const denied = run(blocked, ['true']);
    if (denied.spawnError !== 'EPERM') {
      // e.g. the agent took host processes for a container's: its own container shares the host pid namespace
      throw new Error(`${blocked} ran (status ${denied.status}) although a host policy blocks it; agent log:\n${logs().stderr.slice(-3000)}`);
    }
    expect(run('/bin/busybox', ['true']).status).toBe(0);
  });

  test('a container policy blocks a file in a container of the host dockerd', async () => {
    await waitFor(
      'the container rule to apply',
      () => (docker('exec', WORKLOAD, 'cat', '/tmp/blocked.txt').status !== 0 ? true : undefined),
      30_000,
    );
    const r = docker('exec', WORKLOAD, 'cat', '/tmp/blocked.txt');
    expect(r.stderr).toMatch(/Permission denied|Operation not permitted/);
    expect(docker('exec', WORKLOAD, 'echo', 'ok').stdout).toBe('ok');
  });

  test('alerts name the host policy and the container (seen through the host docker.sock)', async () => {
    const alerts = await waitFor(
      'both alerts on the agent container stdout',
      () => {
        const all = jsonLines(logs().stdout);
        const host = all.find((a) => a.PolicyName === 'image-test-host-block');
        const ctr = all.find((a) => a.PolicyName === 'image-test-container-block');
        return host && ctr ? { host, ctr } : undefined;
      },
      20_000,
    );
    expect(alerts.host).toMatchObject({ Type: 'MatchedHostPolicy', Action: 'Block', Resource: blocked });
    expect(alerts.ctr).toMatchObject({ Type: 'MatchedPolicy', ContainerName: WORKLOAD, Action: 'Block' });
  });

  test('the state directory is the host one; the configuration came from the environment', () => {
    const config = fs.readFileSync(path.join(stateDir, 'horizon', 'config.yaml'), 'utf8');
    expect(config).toContain('backend: compat');
    expect(config).toContain(`policyDirectory: ${work}/policies`);
    expect(config).not.toContain('hub:');
  });

  test('docker stop detaches: the host program runs again', async () => {
    const stop = docker('stop', '-t', '20', AGENT);
    expect(stop.status).toBe(0);
    expect(docker('inspect', '-f', '{{.State.ExitCode}}', AGENT).stdout).toBe('0');
    expect(run(blocked, ['true']).status).toBe(0);
    expect(docker('exec', WORKLOAD, 'cat', '/tmp/blocked.txt').stdout).toBe('secret');
  }, 60_000);

  test('the hub service entry point writes the hub configuration from userInput and secrets and serves', async () => {
    const hub = `edgeward-image-test-hub-${process.pid}`;
    const secrets = path.join(work, 'hub-secrets');
    fs.mkdirSync(secrets);
    const keys = path.join(work, 'hub-keys');
    const keygen = run(process.execPath, [path.join(REPO, 'bin', 'edgeward'), 'hub', 'keygen', '--out', keys]);
    expect(keygen.status).toBe(0);
    // Horizon's secret files: JSON {key, value}
    const secret = (name: string, value: string) => fs.writeFileSync(path.join(secrets, name), JSON.stringify({ key: name, value }));
    secret('hub_broker_ca', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    secret('hub_broker_password', 's3cret');
    secret('hub_signing_key', fs.readFileSync(path.join(keys, 'signing.key'), 'utf8'));
    docker('rm', '-f', hub);
    try {
      const r = docker(
        'run', '-d', '--name', hub,
        '--entrypoint', '/opt/edgeward/horizon/hub-entrypoint.sh',
        '-e', 'EDGEWARD_BROKER_URL=mqtts://127.0.0.1:1', '-e', 'EDGEWARD_BROKER_USERNAME=hub-1', '-e', 'HZN_ORGANIZATION=testorg',
        '-v', `${secrets}:/open-horizon-secrets:ro`,
        IMAGE,
      );
      expect(r.stderr).toBe('');
      // no broker listens: the hub keeps retrying, it does not exit
      await new Promise((res) => setTimeout(res, 5000));
      const hubLogs = spawnSync('docker', ['logs', hub], { encoding: 'utf8' });
      expect(docker('inspect', '-f', '{{.State.Running}}', hub).stdout).toBe('true');
      const config = docker('exec', hub, 'cat', '/run/edgeward-hub/hub.yaml').stdout;
      expect(config).toContain('url: "mqtts://127.0.0.1:1"');
      expect(config).toContain('username: "hub-1"');
      expect(config).toContain('organization: "testorg"');
      expect(docker('exec', hub, 'cat', '/run/edgeward-hub/password').stdout).toBe('s3cret');
      expect(docker('exec', hub, 'stat', '-c', '%a', '/run/edgeward-hub/signing.key').stdout).toBe('600');
      expect(hubLogs.stdout + hubLogs.stderr).not.toMatch(/entrypoint:|configuration error|invalid/i);
    } finally {
      docker('rm', '-f', hub);
    }
  }, 60_000);
});
