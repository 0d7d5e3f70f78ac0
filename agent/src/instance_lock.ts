// One process at a time: an exclusive flock on a lock file, held for the
// process's life (the kernel drops it when the process ends, crash
// included, so no stale lock is ever left behind). A second process is
// refused with the pid holding it: the pid it wrote into the file, checked
// against /proc/locks (the kernel's own record of the holder).
//
// The file is never removed: a process waiting to lock a file another one
// has just unlinked would hold a lock on a name no one else can see.
import * as fs from 'fs';
import * as path from 'path';

/** Takes flock(LOCK_EX | LOCK_NB) on fd: true when taken, false when held elsewhere (the addon's tryLockFile). */
export type TryLock = (fd: number) => boolean;

export class InstanceLockedError extends Error {
  constructor(
    readonly lockPath: string,
    /** undefined: the holder could not be found (it may have just exited) */
    readonly holderPid: number | undefined,
    what: string,
  ) {
    super(
      `${lockPath} is locked by ${holderPid !== undefined ? `pid ${holderPid}` : 'another process (pid unknown)'}: ` +
        `another ${what} is running; stop it first`,
    );
    this.name = 'InstanceLockedError';
  }
}

export interface InstanceLock {
  readonly path: string;
  /** Lets go of the lock (closing the file). Idempotent. */
  release(): void;
}

/**
 * The pid holding a flock on the file with inode `ino` on device `dev`, as
 * /proc/locks names it ("1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF":
 * major:minor in hex, the inode in decimal); undefined when none does.
 */
export function flockHolder(dev: number, ino: number, procLocks = '/proc/locks'): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(procLocks, 'utf8');
  } catch {
    return undefined;
  }
  // the kernel's dev_t as stat() gives it: major bits 8..19, minor bits 0..7 and 20..31
  const major = (dev >>> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >>> 12) & 0xfff00);
  for (const line of text.split('\n')) {
    const m = /^\d+:\s+FLOCK\s+\S+\s+WRITE\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
    if (m && parseInt(m[2], 16) === major && parseInt(m[3], 16) === minor && Number(m[4]) === ino) {
      const pid = Number(m[1]);
      return pid > 0 ? pid : undefined;
    }
  }
  return undefined;
}

/**
 * Locks `lockPath` (created with its directory, mode 0600, when missing)
 * for this process and writes its pid into it. Throws InstanceLockedError
 * when another process holds it; any other Error names the path and the
 * reason (directory not creatable, not a regular file, flock refused).
 * `what` names the kind of process in the error ("edgeward agent").
 */
export function acquireInstanceLock(lockPath: string, tryLock: TryLock, what = 'edgeward agent'): InstanceLock {
  let fd: number;
  try {
    fs.mkdirSync(path.dirname(lockPath), { recursive: true, mode: 0o700 });
    // O_NOFOLLOW: a symlink planted there must not make the agent truncate another file
    fd = fs.openSync(lockPath, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw new Error(`cannot open the lock file ${lockPath}: ${(err as Error).message}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error(`the lock file ${lockPath} is not a regular file`);
    let taken: boolean;
    try {
      taken = tryLock(fd);
    } catch (err) {
      throw new Error(`cannot lock ${lockPath}: ${(err as Error).message}`);
    }
    if (!taken) {
      const written = Number(fs.readFileSync(fd, 'utf8').trim());
      const holder = flockHolder(st.dev, st.ino) ?? (Number.isInteger(written) && written > 0 ? written : undefined);
      throw new InstanceLockedError(lockPath, holder, what);
    }
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, `${process.pid}\n`, 0);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  let open = true;
  return {
    path: lockPath,
    release: () => {
      if (!open) return;
      open = false;
      fs.closeSync(fd);
    },
  };
}
