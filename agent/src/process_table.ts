// The agent's view of running processes: executable path, parent and uid per
// pid, so alerts can name ProcessName and ParentProcessName as full paths.
// Seeded from /proc at start (processes older than the agent), then kept
// current by the monitor's exec/fork/exit events.
import * as fs from 'fs';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  uid: number;
  /** full executable path ('' when unknown, e.g. kernel threads) */
  exe: string;
  comm: string;
}

/** How long an exited process stays resolvable, for alerts that arrive late. */
const EXITED_GRACE_MS = 30_000;

export class ProcessTable {
  private readonly byPid = new Map<number, ProcessInfo>();
  private readonly exited: Array<{ pid: number; at: number }> = [];

  constructor(private readonly procRoot = '/proc') {}

  /** Reads every /proc/<pid>; returns how many were found. */
  seedFromProc(): number {
    let n = 0;
    for (const name of fs.readdirSync(this.procRoot)) {
      if (!/^\d+$/.test(name)) continue;
      const info = this.readProc(Number(name));
      if (info) {
        this.byPid.set(info.pid, info);
        n++;
      }
    }
    return n;
  }

  /** The process, from the table or, failing that, from /proc. */
  get(pid: number): ProcessInfo | undefined {
    const known = this.byPid.get(pid);
    if (known) return known;
    const read = this.readProc(pid);
    if (read) this.byPid.set(pid, read);
    return read;
  }

  onExec(pid: number, ppid: number, uid: number, exe: string, comm: string): void {
    this.byPid.set(pid, { pid, ppid, uid, exe, comm });
  }

  onFork(parentPid: number, childPid: number): void {
    const parent = this.byPid.get(parentPid);
    if (childPid === parentPid) return; // a new thread, not a process
    this.byPid.set(childPid, {
      pid: childPid,
      ppid: parentPid,
      uid: parent?.uid ?? 0,
      exe: parent?.exe ?? '',
      comm: parent?.comm ?? '',
    });
  }

  onExit(pid: number, now = Date.now()): void {
    this.exited.push({ pid, at: now });
    this.expire(now);
  }

  size(): number {
    return this.byPid.size;
  }

  private expire(now: number): void {
    while (this.exited.length && now - this.exited[0].at > EXITED_GRACE_MS) {
      this.byPid.delete(this.exited.shift()!.pid);
    }
  }

  private readProc(pid: number): ProcessInfo | undefined {
    const dir = `${this.procRoot}/${pid}`;
    try {
      const stat = fs.readFileSync(`${dir}/stat`, 'latin1');
      // comm may contain spaces and parentheses: fields resume after the last ')'.
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const fields = stat.slice(close + 2).split(' ');
      const ppid = Number(fields[1]);
      const status = fs.readFileSync(`${dir}/status`, 'latin1');
      const uidMatch = /^Uid:\s+(\d+)/m.exec(status);
      let exe = '';
      try {
        exe = fs.readlinkSync(`${dir}/exe`);
      } catch {
        // kernel threads and zombies have no exe
      }
      return { pid, ppid, uid: uidMatch ? Number(uidMatch[1]) : 0, exe, comm };
    } catch {
      return undefined;
    }
  }
}
