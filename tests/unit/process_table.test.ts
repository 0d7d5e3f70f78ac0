import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ProcessTable } from '../../agent/src/process_table';

function fakeProc(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-proc-'));
  const add = (pid: number, comm: string, ppid: number, uid: number, exe?: string) => {
    const d = path.join(root, String(pid));
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'stat'), `${pid} (${comm}) S ${ppid} ${pid} ${pid} 0 -1\n`);
    fs.writeFileSync(path.join(d, 'status'), `Name:\t${comm}\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\n`);
    if (exe) fs.symlinkSync(exe, path.join(d, 'exe'));
  };
  add(1, 'init', 0, 0, '/sbin/init');
  add(42, 'weird) name (x', 1, 1000, '/usr/bin/weird');
  add(2, 'kthreadd', 0, 0);
  fs.mkdirSync(path.join(root, 'self'));
  return root;
}

describe('ProcessTable', () => {
  test('seeds from /proc, including comm with parentheses and kernel threads', () => {
    const t = new ProcessTable(fakeProc());
    expect(t.seedFromProc()).toBe(3);
    expect(t.get(42)).toEqual({ pid: 42, ppid: 1, uid: 1000, exe: '/usr/bin/weird', comm: 'weird) name (x' });
    expect(t.get(2)?.exe).toBe('');
  });

  test('fork inherits the parent, exec replaces, exit expires after the grace period', () => {
    const t = new ProcessTable(fakeProc());
    t.seedFromProc();
    t.onFork(42, 43);
    expect(t.get(43)).toMatchObject({ ppid: 42, exe: '/usr/bin/weird', uid: 1000 });
    t.onExec(43, 42, 1000, '/usr/bin/cat', 'cat');
    expect(t.get(43)?.exe).toBe('/usr/bin/cat');
    t.onExit(43, 1_000);
    expect(t.get(43)?.exe).toBe('/usr/bin/cat'); // still resolvable for late alerts
    t.onExit(1, 1_000 + 31_000);
    expect(t.get(43)).toBeUndefined();
  });

  test('a thread (child pid == parent pid) is not a new process', () => {
    const t = new ProcessTable(fakeProc());
    t.seedFromProc();
    t.onFork(42, 42);
    expect(t.size()).toBe(3);
  });
});
