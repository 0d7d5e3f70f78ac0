// Docker identities with a real dockerd: containers started before and after
// the registry, docker exec, descendants, rename, exit, dockerd going away;
// and an alert raised inside a container names the container.
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { ContainerRegistry } from '../../agent/src/containers';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { docker, DockerdHandle, ensureDockerd, ensureTestImage, TEST_IMAGE } from '../helpers/docker';
import { makeTempDir, requireIntegrationEnvironment, waitFor } from '../helpers/system';

const PREFIX = `ew-test-${process.pid}`;

function run(name: string, labels: Record<string, string> = {}): string {
  const labelArgs = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
  const r = docker('run', '-d', '--name', name, ...labelArgs, TEST_IMAGE, 'sleep', '600');
  if (r.status !== 0) throw new Error(`docker run ${name}: ${r.stderr}`);
  return r.stdout;
}

function hostPid(name: string): number {
  return Number(docker('inspect', '-f', '{{.State.Pid}}', name).stdout);
}

describe('container identities (real dockerd)', () => {
  let dockerd: DockerdHandle;
  let registry: ContainerRegistry;

  beforeAll(async () => {
    requireIntegrationEnvironment();
    dockerd = await ensureDockerd();
    ensureTestImage();
  }, 120_000);

  afterAll(async () => {
    registry?.stop();
    const ids = docker('ps', '-aq', '--filter', `name=${PREFIX}`).stdout.split('\n').filter(Boolean);
    if (ids.length) docker('rm', '-f', ...ids);
    await dockerd?.stop();
  }, 60_000);

  test('a container started before the registry is found with name, image, labels and namespaces', async () => {
    const id = run(`${PREFIX}-before`, { app: 'demo', 'kubearmor.io/namespace': 'edge' });
    registry = new ContainerRegistry();
    await registry.start();
    expect(await registry.waitConnected(10_000)).toBe(true);
    const c = registry.list().find((x) => x.id === id);
    expect(c).toMatchObject({ name: `${PREFIX}-before`, image: TEST_IMAGE, labels: { app: 'demo' }, namespaceName: 'edge' });
    const pid = hostPid(`${PREFIX}-before`);
    expect(c!.mntNs).toBe(Number(/\d+/.exec(fs.readlinkSync(`/proc/${pid}/ns/mnt`))![0]));
    expect(registry.byPid(pid)?.id).toBe(id);
    expect(registry.byPid(process.pid)).toBeUndefined(); // the host is not a container
  });

  test('a container sharing the host pid namespace (--pid host) does not claim it: host processes stay the host', async () => {
    const name = `${PREFIX}-hostpid`;
    const r = docker('run', '-d', '--pid', 'host', '--name', name, TEST_IMAGE, 'sleep', '600');
    if (r.status !== 0) throw new Error(`docker run ${name}: ${r.stderr}`);
    const c = await waitFor('the --pid host container', () => registry.list().find((x) => x.id === r.stdout.trim()));
    expect(c.pidNs).toBe(0);
    const hostNs = Number(/\d+/.exec(fs.readlinkSync('/proc/self/ns/pid'))![0]);
    expect(registry.byPidNamespace(hostNs)).toBeUndefined();
    expect(registry.byPid(process.pid)).toBeUndefined();
    expect(registry.byPid(hostPid(name))?.id).toBe(c.id); // found by its own mount namespace
    docker('rm', '-f', name);
  });

  test('a container started later is added from the event stream; default namespace name', async () => {
    const id = run(`${PREFIX}-after`);
    const c = await waitFor('the new container', () => registry.list().find((x) => x.id === id));
    expect(c.namespaceName).toBe('container_namespace');
  });

  test('docker exec processes and their descendants map to the container', async () => {
    const name = `${PREFIX}-after`;
    const r = docker('exec', name, 'sh', '-c', 'sh -c "sleep 0.5; echo $$" & wait');
    // the grandchild printed its pid inside the container; find it on the host by namespace
    expect(r.status).toBe(0);
    const inner = docker('exec', '-d', name, 'sh', '-c', 'sh -c "sleep 30"');
    expect(inner.status).toBe(0);
    const c = registry.list().find((x) => x.name === name)!;
    const hostPids = await waitFor('the exec sleeper on the host', () => {
      const found = fs
        .readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p))
        .map(Number)
        .filter((p) => {
          try {
            return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8') === 'sleep\u000030\u0000' && registry.byPid(p)?.id === c.id;
          } catch {
            return false;
          }
        });
      return found.length ? found : undefined;
    });
    expect(registry.byPid(hostPids[0])?.name).toBe(name);
  });

  test('rename updates the name; exit removes the container', async () => {
    const id = run(`${PREFIX}-ren`);
    await waitFor('the container', () => registry.list().find((x) => x.id === id));
    expect(docker('rename', `${PREFIX}-ren`, `${PREFIX}-renamed`).status).toBe(0);
    await waitFor('the new name', () => (registry.list().find((x) => x.id === id)?.name === `${PREFIX}-renamed` ? true : undefined));
    expect(docker('rm', '-f', `${PREFIX}-renamed`).status).toBe(0);
    await waitFor('the removal', () => (registry.list().some((x) => x.id === id) ? undefined : true));
  });

  test('an alert raised inside a container names it (container policy, container process)', async () => {
    const work = makeTempDir('containers');
    const policies = path.join(work, 'policies');
    fs.mkdirSync(policies);
    fs.writeFileSync(
      path.join(policies, 'udp.yaml'),
      `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: no-udp-in-web
spec:
  selector:
    matchLabels:
      app: web
  network:
    matchProtocols:
      - protocol: udp
  action: Block
`,
    );
    const name = `${PREFIX}-alert`;
    const id = run(name, { app: 'web', tier: 'edge' });
    let agent: AgentUnderTest | undefined;
    try {
      agent = await startAgent({ policies, workDir: work });
      const r = docker('exec', name, 'nslookup', 'example.invalid', '127.0.0.1');
      expect(r.status).not.toBe(0);
      const alert = await waitFor('the container alert', () => agent!.alerts().find((a) => a.ContainerID === id), 15_000);
      expect(alert).toMatchObject({
        ContainerName: name,
        ContainerImage: TEST_IMAGE,
        Labels: 'app=web,tier=edge',
        NamespaceName: 'container_namespace',
        Operation: 'Network',
        Type: 'MatchedPolicy',
        PolicyName: 'no-udp-in-web',
        Action: 'Block',
        Result: 'Permission denied',
      });
      expect(alert.HostPID).toBeGreaterThan(0);
    } finally {
      await agent?.stop();
    }
  });

  test('dockerd going away: known containers stay resolvable and the registry reconnects', async () => {
    // The registry talks to dockerd through a socket proxy this test can cut and restore:
    // to a client that is exactly a dockerd restart, without taking dockerd from other users.
    const proxyPath = path.join(makeTempDir('dockerproxy'), 'docker.sock');
    const sockets = new Set<net.Socket>();
    const listen = () =>
      new Promise<net.Server>((resolve) => {
        const server = net.createServer((client) => {
          const upstream = net.connect('/var/run/docker.sock');
          sockets.add(client).add(upstream);
          client.pipe(upstream).pipe(client);
          const done = () => (client.destroy(), upstream.destroy());
          client.on('error', done).on('close', done);
          upstream.on('error', done).on('close', done);
        });
        server.listen(proxyPath, () => resolve(server));
      });
    let proxy = await listen();
    const viaProxy = new ContainerRegistry({ socketPath: proxyPath, reconnectMs: 100, maxReconnectMs: 400 });
    try {
      const id = run(`${PREFIX}-restart`);
      await viaProxy.start();
      expect(await viaProxy.waitConnected(10_000)).toBe(true);
      const known = await waitFor('the container', () => viaProxy.list().find((x) => x.id === id));

      // server.close() waits for open connections: cut them first
      const closed = new Promise<void>((resolve) => proxy.close(() => resolve()));
      for (const sock of sockets) sock.destroy();
      await closed;
      fs.rmSync(proxyPath, { force: true });
      await waitFor('the registry to notice', () => (viaProxy.isConnected() ? undefined : true));
      expect(viaProxy.byMountNamespace(known.mntNs)?.id).toBe(id); // still enforcing what it knows

      const later = run(`${PREFIX}-while-away`);
      proxy = await listen();
      expect(await viaProxy.waitConnected(10_000)).toBe(true);
      await waitFor('the container started while away', () => viaProxy.list().find((x) => x.id === later));
    } finally {
      viaProxy.stop();
      const closed = new Promise<void>((resolve) => proxy.close(() => resolve()));
      for (const sock of sockets) sock.destroy();
      await closed;
    }
  }, 60_000);
});
