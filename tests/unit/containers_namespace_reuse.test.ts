// The kernel hands freed namespace inode numbers out again at once (a
// restarted container often gets its old mount namespace number). The
// registry must not name a new process after an exited container that held
// its number: checked against a fake dockerd (HTTP on a unix socket) and a
// fake /proc whose ns links are plain symlinks.
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { ContainerRegistry } from '../../agent/src/containers';

const HOST_PID_NS = 4026531836;

interface FakeContainer {
  id: string;
  name: string;
  pid: number;
}

describe('ContainerRegistry and recycled namespace numbers', () => {
  let tmp: string;
  let procRoot: string;
  let server: http.Server;
  let events: http.ServerResponse | undefined;
  let registry: ContainerRegistry;
  const running = new Map<string, FakeContainer>();

  const setNs = (pid: number, kind: 'mnt' | 'pid', inode: number) => {
    const dir = path.join(procRoot, String(pid), 'ns');
    fs.mkdirSync(dir, { recursive: true });
    fs.rmSync(path.join(dir, kind), { force: true });
    fs.symlinkSync(`${kind}:[${inode}]`, path.join(dir, kind));
  };

  const waitUntil = async (what: string, fn: () => boolean) => {
    const deadline = Date.now() + 5000;
    while (!fn()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-nsreuse-'));
    procRoot = path.join(tmp, 'proc');
    fs.mkdirSync(path.join(procRoot, 'self', 'ns'), { recursive: true });
    fs.symlinkSync(`pid:[${HOST_PID_NS}]`, path.join(procRoot, 'self', 'ns', 'pid'));
    for (const [c, mnt, pidNs] of [
      [{ id: 'a'.repeat(64), name: 'one', pid: 100 }, 5000, 6000],
      [{ id: 'b'.repeat(64), name: 'two', pid: 200 }, 5001, 6001],
    ] as Array<[FakeContainer, number, number]>) {
      running.set(c.id, c);
      setNs(c.pid, 'mnt', mnt);
      setNs(c.pid, 'pid', pidNs);
    }
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://docker');
      if (url.pathname === '/events') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.write('');
        events = res;
        return;
      }
      if (url.pathname === '/containers/json') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify([...running.values()].map((c) => ({ Id: c.id }))));
        return;
      }
      const m = /^\/containers\/([0-9a-f]+)\/json$/.exec(url.pathname);
      const c = m ? running.get(m[1]!) : undefined;
      if (!c) {
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ message: 'no such container' }));
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ Id: c.id, Name: `/${c.name}`, State: { Running: true, Pid: c.pid }, Config: { Image: 'img', Labels: {} } }));
    });
    const socketPath = path.join(tmp, 'docker.sock');
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    registry = new ContainerRegistry({ socketPath, procRoot, reconnectMs: 60_000, pruneIntervalMs: 20, exitedGraceMs: 60_000 });
    await registry.start();
    expect(await registry.waitConnected(5000)).toBe(true);
  });

  afterAll(async () => {
    registry?.stop();
    events?.end();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('running containers are found by mount namespace (any pid namespace) and by pid', () => {
    expect(registry.list().map((c) => c.name).sort()).toEqual(['one', 'two']);
    expect(registry.byMountNamespace(5000, 6000)?.name).toBe('one');
    expect(registry.byMountNamespace(5000, HOST_PID_NS)?.name).toBe('one'); // e.g. a process that entered only its mount namespace
    expect(registry.byPid(100)?.name).toBe('one');
  });

  test('an exited container names late alerts of its own processes only, not a process that got its mount namespace number', async () => {
    running.delete('a'.repeat(64));
    events!.write(JSON.stringify({ Type: 'container', Action: 'die', Actor: { ID: 'a'.repeat(64) } }) + '\n');
    await waitUntil('the removal', () => !registry.list().some((c) => c.name === 'one'));
    expect(registry.byMountNamespace(5000, 6000)?.name).toBe('one'); // a decision taken just before the exit
    expect(registry.byMountNamespace(5000)?.name).toBe('one'); // a record without namespaces: as before
    expect(registry.byMountNamespace(5000, HOST_PID_NS)).toBeUndefined(); // a host process in the recycled number
    expect(registry.byPid(100)).toBeUndefined(); // a live process there is not the dead container
  });

  test('dockerd away: a container whose init exits is dropped at once, its number freed', async () => {
    events!.end(); // dockerd went away
    events = undefined;
    await waitUntil('the disconnect', () => !registry.isConnected());
    expect(registry.list().map((c) => c.name)).toEqual(['two']);
    setNs(200, 'mnt', 4026531840); // its init is gone; pid 200 now belongs to a host process
    await waitUntil('the prune', () => registry.list().length === 0);
    expect(registry.byMountNamespace(5001, 6001)).toBeUndefined();
  });
});
