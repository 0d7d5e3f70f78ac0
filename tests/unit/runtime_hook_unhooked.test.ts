// Starts that went around the runtime hook: dockerd's `start` event for a
// container the hook did not report at `runc create` is logged (warn),
// counted and handed to onUnhookedStart; a start the hook reported first is
// not. Fake dockerd (HTTP on a unix socket) and a fake /proc (ns links are
// plain symlinks, comm files).
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import { ContainerRegistry, UnhookedStart, unhookedStartMessage } from '../../agent/src/containers';

const HOST_MNT = 4026531841;
const HOST_PID = 4026531836;
const HOOKED = 'a'.repeat(64);
const PLAIN = 'b'.repeat(64);
const QUICK = 'c'.repeat(64);

describe('ContainerRegistry: starts without the runtime hook', () => {
  let tmp: string;
  let procRoot: string;
  let server: http.Server;
  let events: http.ServerResponse | undefined;
  let registry: ContainerRegistry;
  const logged: string[] = [];
  const reported: UnhookedStart[] = [];
  /** id -> inspect answer */
  const inspect = new Map<string, object>();

  const setNs = (pid: number | 'self', kind: 'mnt' | 'pid', inode: number) => {
    const dir = path.join(procRoot, String(pid), 'ns');
    fs.mkdirSync(dir, { recursive: true });
    fs.rmSync(path.join(dir, kind), { force: true });
    fs.symlinkSync(`${kind}:[${inode}]`, path.join(dir, kind));
  };
  const initAt = (pid: number, mnt: number, pidNs: number) => {
    setNs(pid, 'mnt', mnt);
    setNs(pid, 'pid', pidNs);
    fs.writeFileSync(path.join(procRoot, String(pid), 'comm'), 'runc:[2:INIT]\n');
  };
  const running = (id: string, name: string, pid: number, runtime: string) =>
    inspect.set(id, { Id: id, Name: `/${name}`, State: { Running: true, Pid: pid }, Config: { Image: 'img:1', Labels: {} }, HostConfig: { Runtime: runtime } });
  const start = (id: string, name: string) =>
    events!.write(JSON.stringify({ Type: 'container', Action: 'start', Actor: { ID: id, Attributes: { name, image: 'img:1' } } }) + '\n');
  const waitUntil = async (what: string, fn: () => boolean) => {
    const deadline = Date.now() + 5000;
    while (!fn()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-unhooked-'));
    procRoot = path.join(tmp, 'proc');
    setNs('self', 'mnt', HOST_MNT);
    setNs('self', 'pid', HOST_PID);
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://docker');
      res.setHeader('Content-Type', 'application/json');
      if (url.pathname === '/events') {
        res.write('');
        events = res;
        return;
      }
      if (url.pathname === '/containers/json') return void res.end('[]');
      const m = /^\/containers\/([0-9a-f]+)\/json$/.exec(url.pathname);
      const answer = m ? inspect.get(m[1]!) : undefined;
      if (!answer) {
        res.statusCode = 404;
        return void res.end(JSON.stringify({ message: 'no such container' }));
      }
      res.end(JSON.stringify(answer));
    });
    const socketPath = path.join(tmp, 'docker.sock');
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    registry = new ContainerRegistry({
      socketPath,
      procRoot,
      reconnectMs: 60_000,
      log: (level, m) => logged.push(`${level} ${m}`),
      onUnhookedStart: (s) => reported.push(s),
    });
    await registry.start();
    expect(await registry.waitConnected(5000)).toBe(true);
  });

  afterAll(async () => {
    registry?.stop();
    events?.end();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('a start the hook reported first: followed, nothing reported', async () => {
    initAt(100, 5000, 6000);
    registry.addStarted({ id: HOOKED, name: 'hooked', image: 'img:1', labels: {}, pid: 100 });
    running(HOOKED, 'hooked', 100, 'runc');
    start(HOOKED, 'hooked');
    // a later event is handled after this one: the start has been judged
    initAt(200, 5001, 6001);
    running(PLAIN, 'plain', 200, 'runc');
    start(PLAIN, 'plain');
    await waitUntil('the plain start', () => registry.unhookedStarts().count === 1);
    expect(reported.map((s) => s.name)).toEqual(['plain']);
  });

  test('a start the hook did not report: warned, counted, handed on, named with its runtime', () => {
    expect(registry.unhookedStarts()).toEqual({ count: 1, recent: [expect.objectContaining({ id: PLAIN, name: 'plain', image: 'img:1', runtime: 'runc' })] });
    expect(reported[0]).toMatchObject({ id: PLAIN, name: 'plain', runtime: 'runc', at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
    expect(logged).toContain(`warn docker: container plain (bbbbbbbbbbbb) started without the runtime hook (runtime "runc"): its first program ran before its rules were in force`);
    expect(registry.list().map((c) => c.name).sort()).toEqual(['hooked', 'plain']);
  });

  test('one that exited before the inspect is reported too (its program ran), named from the event', async () => {
    start(QUICK, 'quick');
    await waitUntil('the quick start', () => registry.unhookedStarts().count === 2);
    expect(reported[1]).toMatchObject({ id: QUICK, name: 'quick', image: 'img:1', runtime: '' });
  });

  test('restart and unpause events are no new start: not reported again', async () => {
    events!.write(JSON.stringify({ Type: 'container', Action: 'restart', Actor: { ID: PLAIN } }) + '\n');
    events!.write(JSON.stringify({ Type: 'container', Action: 'unpause', Actor: { ID: PLAIN } }) + '\n');
    start(QUICK, 'quick'); // a marker event: handled after the two above
    await waitUntil('the marker', () => registry.unhookedStarts().count === 3);
    expect(reported.map((s) => s.name)).toEqual(['plain', 'quick', 'quick']);
  });

  test('the message names the container, its short id and the runtime', () => {
    expect(unhookedStartMessage({ id: 'd'.repeat(64), name: 'x', image: '', runtime: '', at: '' })).toBe(
      'docker: container x (dddddddddddd) started without the runtime hook (runtime "unknown"): its first program ran before its rules were in force',
    );
  });
});
