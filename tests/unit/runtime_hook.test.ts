// The runtime hook's parts: the container.started request, the container's
// identity read from a bundle and dockerd's config.v2.json (no Docker API),
// and the registry taking it from the hook (fake /proc: ns links are plain
// symlinks).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ContainerRegistry } from '../../agent/src/containers';
import { parseRequest, PROTOCOL_VERSION } from '../../agent/src/control/protocol';
import { dockerContainerDir, identityFromDockerConfig, parseHookArgs, readStartedContainer, runHook } from '../../agent/src/runtime_hook';

const ID = 'c'.repeat(64);
const HOST_MNT = 4026531841;
const HOST_PID = 4026531836;

describe('container.started request', () => {
  const req = (container: unknown) => parseRequest(JSON.stringify({ version: PROTOCOL_VERSION, op: 'container.started', container }));
  const good = { id: ID, name: '/web', image: 'img:1', labels: { app: 'x' }, pid: 4242 };

  test('a well-formed one is taken, the leading / of the name dropped', () => {
    expect(req(good)).toEqual({ ok: true, value: { version: PROTOCOL_VERSION, op: 'container.started', container: { ...good, name: 'web' } } });
  });

  test.each([
    [{ ...good, pid: 1 }, 'pid must be a pid above 1'],
    [{ ...good, pid: '4242' }, 'pid must be a pid above 1'],
    [{ ...good, id: '../x' }, 'id must be a container id'],
    [{ ...good, name: '' }, 'name must be a non-empty string'],
    [{ ...good, labels: { app: 1 } }, 'labels["app"] must be a string'],
    [{ ...good, labels: [] }, 'labels must be an object'],
    [{ ...good, extra: true }, 'unknown key "extra"'],
    ['x', 'container must be an object'],
  ])('%j is refused: %s', (container, message) => {
    const r = req(container);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatchObject({ code: 'malformed', message: expect.stringContaining(message) });
  });
});

describe('identity from the bundle and config.v2.json', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-hook-'));
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  function dockerBundle(config: unknown): { bundle: string; pidFile: string } {
    const dir = path.join(tmp, 'docker', 'containers', ID);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.v2.json'), JSON.stringify(config));
    const bundle = path.join(tmp, 'bundle');
    fs.mkdirSync(bundle);
    const mounts = [
      { destination: '/proc', source: 'proc' },
      { destination: '/etc/hostname', source: path.join(dir, 'hostname') },
    ];
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ mounts }));
    fs.writeFileSync(path.join(bundle, 'init.pid'), '4242');
    return { bundle, pidFile: path.join(bundle, 'init.pid') };
  }

  test('dockerd\'s container directory is found through its bind-mounted files only', () => {
    expect(dockerContainerDir({ mounts: [{ source: `/var/lib/docker/containers/${ID}/resolv.conf` }] }, ID)).toBe(`/var/lib/docker/containers/${ID}`);
    expect(dockerContainerDir({ mounts: [{ source: `/var/lib/docker/containers/${ID}/other` }] }, ID)).toBeUndefined();
    expect(dockerContainerDir({ mounts: [{ source: `/var/lib/docker/containers/${'d'.repeat(64)}/hosts` }] }, ID)).toBeUndefined();
    expect(dockerContainerDir({ mounts: [{ source: `/x/notcontainers/${ID}/hosts` }] }, ID)).toBeUndefined();
    expect(dockerContainerDir({}, ID)).toBeUndefined();
  });

  test('Name, Config.Labels, Config.Image and the pid file make the identity', () => {
    const b = dockerBundle({ ID, Name: '/web', Config: { Image: 'img:1', Labels: { app: 'x' } } });
    expect(readStartedContainer({ ...b, id: ID })).toEqual({ id: ID, name: 'web', image: 'img:1', labels: { app: 'x' }, pid: 4242 });
  });

  test('a config of another container, or bad fields, are refused naming the file', () => {
    expect(() => identityFromDockerConfig({ ID: 'other', Name: '/w' }, ID, 'F')).toThrow('F: ID "other" is not container');
    expect(() => identityFromDockerConfig({ ID, Name: '/' }, ID, 'F')).toThrow('F: Name is missing');
    expect(() => identityFromDockerConfig({ ID, Name: '/w', Config: { Labels: { a: 1 } } }, ID, 'F')).toThrow('F: Config.Labels["a"] is not a string');
  });

  test('a bundle that is not a Docker container\'s: nothing to report, exit 0', async () => {
    const bundle = path.join(tmp, 'plain');
    fs.mkdirSync(bundle);
    fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ mounts: [] }));
    const said: string[] = [];
    expect(await runHook(['--bundle', bundle, '--pid-file', path.join(bundle, 'none'), '--id', ID], {}, (m) => said.push(m))).toBe(0);
    expect(said).toEqual([]);
  });

  test('no agent: exit 1 and the reason, fail-open', async () => {
    const b = dockerBundle({ ID, Name: '/web', Config: { Image: 'img', Labels: {} } });
    const said: string[] = [];
    const rc = await runHook(['--bundle', b.bundle, '--pid-file', b.pidFile, '--id', ID, '--socket', path.join(tmp, 'none.sock')], {}, (m) => said.push(m));
    expect(rc).toBe(1);
    expect(said).toEqual([expect.stringMatching(/^container web \(c{12}\) starts without waiting for its rules \(fail-open\): the agent is not running/)]);
  });

  test('arguments: required ones, timeout from the environment, bad values named', () => {
    expect(parseHookArgs(['--pid-file', 'p', '--id', 'x'], { EDGEWARD_RUNTIME_HOOK_TIMEOUT_MS: '250', EDGEWARD_CONTROL_SOCKET: '/s' })).toMatchObject({
      timeoutMs: 250,
      socket: '/s',
      bundle: process.cwd(),
    });
    expect(() => parseHookArgs(['--id', 'x'], {})).toThrow('--pid-file is required');
    expect(() => parseHookArgs(['--pid-file', 'p', '--id', 'x', '--timeout-ms', '0'], {})).toThrow('timeout must be a positive integer');
    expect(() => parseHookArgs(['--nope'], {})).toThrow('unknown argument "--nope"');
  });
});

describe('ContainerRegistry.addStarted', () => {
  let tmp: string;
  let procRoot: string;
  const setNs = (pid: number | 'self', kind: 'mnt' | 'pid', inode: number) => {
    const dir = path.join(procRoot, String(pid), 'ns');
    fs.mkdirSync(dir, { recursive: true });
    fs.rmSync(path.join(dir, kind), { force: true });
    fs.symlinkSync(`${kind}:[${inode}]`, path.join(dir, kind));
  };
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-hookreg-'));
    procRoot = path.join(tmp, 'proc');
    setNs('self', 'mnt', HOST_MNT);
    setNs('self', 'pid', HOST_PID);
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const container = { id: ID, name: 'web', image: 'img', labels: { app: 'x' }, pid: 300 };
  const setComm = (pid: number, comm: string) => {
    fs.mkdirSync(path.join(procRoot, String(pid)), { recursive: true });
    fs.writeFileSync(path.join(procRoot, String(pid), 'comm'), `${comm}\n`);
  };
  const initAt = (pid: number, mnt: number, pidNs: number) => {
    setNs(pid, 'mnt', mnt);
    setNs(pid, 'pid', pidNs);
    setComm(pid, 'runc:[2:INIT]');
  };

  test('adds the container with the namespaces read from /proc, once for the same identity', () => {
    initAt(300, 5000, 6000);
    const registry = new ContainerRegistry({ socketPath: path.join(tmp, 'none.sock'), procRoot });
    const events: string[] = [];
    registry.on((e, c) => events.push(`${e} ${c.name} ${c.mntNs}`));
    const added = registry.addStarted(container);
    expect(added).toMatchObject({ id: ID, mntNs: 5000, pidNs: 6000, namespaceName: 'container_namespace' });
    expect(registry.byMountNamespace(5000)?.id).toBe(ID);
    registry.addStarted({ ...container, labels: { app: 'x' } });
    expect(events).toEqual(['added web 5000']);
    // a new run (docker restart): replaced, the old namespace no longer names it
    initAt(301, 5001, 6001);
    registry.addStarted({ ...container, pid: 301 });
    expect(events).toEqual(['added web 5000', 'added web 5001']);
    expect(registry.byMountNamespace(5000)).toBeUndefined();
  });

  test('refuses a pid in the host\'s mount namespace, one that is not runc\'s waiting init, and a pid that is not running', () => {
    initAt(300, HOST_MNT, 6000);
    const registry = new ContainerRegistry({ socketPath: path.join(tmp, 'none.sock'), procRoot });
    expect(() => registry.addStarted(container)).toThrow("pid 300 is in the host's mount namespace");
    initAt(302, 5002, 6002);
    setComm(302, 'bash');
    expect(() => registry.addStarted({ ...container, pid: 302 })).toThrow('pid 302 is "bash", not runc\'s init waiting for start (runc:[2:INIT])');
    expect(() => registry.addStarted({ ...container, pid: 999 })).toThrow('pid 999 of container cccccccccccc is not running');
    expect(registry.list()).toEqual([]);
  });

  test('--pid host: the host pid namespace is not the container\'s', () => {
    initAt(300, 5000, HOST_PID);
    const registry = new ContainerRegistry({ socketPath: path.join(tmp, 'none.sock'), procRoot });
    expect(registry.addStarted(container).pidNs).toBe(0);
  });

  test('dropped when dockerd does not confirm it within the grace (a failed start, or a false claim)', async () => {
    initAt(300, 5000, 6000);
    const logged: string[] = [];
    const registry = new ContainerRegistry({ socketPath: path.join(tmp, 'none.sock'), procRoot, startGraceMs: 50, log: (_l, m) => logged.push(m) });
    const events: string[] = [];
    registry.on((e, c) => events.push(`${e} ${c.name}`));
    registry.addStarted(container);
    expect(registry.byMountNamespace(5000)?.id).toBe(ID);
    await new Promise((r) => setTimeout(r, 150));
    expect(registry.list()).toEqual([]);
    expect(events).toEqual(['added web', 'removed web']);
    expect(logged).toEqual([expect.stringContaining('was not confirmed by dockerd within 50 ms')]);
  });
});
