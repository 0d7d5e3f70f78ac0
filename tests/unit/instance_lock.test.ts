// agent/src/instance_lock.ts with the real flock (the addon's tryLockFile):
// a second process is refused naming the holder's pid, the lock goes when
// the holder dies (kill -9 included), and bad lock paths are named.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { acquireInstanceLock, flockHolder, InstanceLockedError } from '../../agent/src/instance_lock';
import type { NativeAddon } from '../../agent/src/native';
import { ADDON, makeTempDir } from '../helpers/system';

describe('instance lock', () => {
  let dir: string;
  let tryLock: (fd: number) => boolean;
  let holder: ChildProcess | undefined;

  /** A separate process holding the lock on `file` until killed. */
  async function holdInOtherProcess(file: string): Promise<ChildProcess> {
    const code = `const a = require(${JSON.stringify(ADDON)}); const fs = require('fs');
const fd = fs.openSync(${JSON.stringify(file)}, 'a+'); if (!a.tryLockFile(fd)) process.exit(3);
fs.ftruncateSync(fd, 0); fs.writeSync(fd, process.pid + '\\n', 0); console.log('locked'); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (b: Buffer) => (b.toString().includes('locked') ? resolve() : undefined));
      child.on('exit', (c) => reject(new Error(`the holder exited with ${String(c)}`)));
    });
    return child;
  }

  beforeAll(() => {
    if (!fs.existsSync(ADDON)) throw new Error(`native addon not built (${ADDON}): run npm run build`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const addon = require(ADDON) as NativeAddon;
    if (typeof addon.tryLockFile !== 'function') throw new Error('the addon has no tryLockFile: rebuild it (npm run build:native)');
    tryLock = (fd) => addon.tryLockFile!(fd);
    dir = makeTempDir('instance-lock');
  });

  afterEach(() => {
    holder?.kill('SIGKILL');
    holder = undefined;
  });

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('takes a free lock (creating its directory), writes its pid, and can be taken again after release', () => {
    const file = path.join(dir, 'sub', 'a.lock');
    const lock = acquireInstanceLock(file, tryLock);
    expect(fs.readFileSync(file, 'utf8')).toBe(`${process.pid}\n`);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const st = fs.statSync(file);
    expect(flockHolder(st.dev, st.ino)).toBe(process.pid);
    lock.release();
    lock.release(); // idempotent
    expect(flockHolder(st.dev, st.ino)).toBeUndefined();
    acquireInstanceLock(file, tryLock).release();
  });

  it('refuses a second holder, naming the pid that holds it; free again once that process is killed', async () => {
    const file = path.join(dir, 'b.lock');
    holder = await holdInOtherProcess(file);
    let caught: unknown;
    try {
      acquireInstanceLock(file, tryLock, 'edgeward agent');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InstanceLockedError);
    expect((caught as InstanceLockedError).holderPid).toBe(holder.pid);
    expect((caught as Error).message).toBe(`${file} is locked by pid ${holder.pid}: another edgeward agent is running; stop it first`);
    const exited = new Promise((r) => holder!.on('exit', r));
    holder.kill('SIGKILL');
    await exited;
    holder = undefined;
    const lock = acquireInstanceLock(file, tryLock);
    expect(fs.readFileSync(file, 'utf8')).toBe(`${process.pid}\n`);
    lock.release();
  });

  it('the holder is found through /proc/locks even when the file names another pid', async () => {
    const file = path.join(dir, 'c.lock');
    holder = await holdInOtherProcess(file);
    fs.writeFileSync(file, '999999\n'); // a stale or forged pid in the file
    expect(() => acquireInstanceLock(file, tryLock)).toThrow(`locked by pid ${holder.pid}:`);
  });

  it('names bad lock paths: a symlink, a directory, an unwritable place', () => {
    const target = path.join(dir, 'victim');
    fs.writeFileSync(target, 'keep me');
    const link = path.join(dir, 'link.lock');
    fs.symlinkSync(target, link);
    expect(() => acquireInstanceLock(link, tryLock)).toThrow(`cannot open the lock file ${link}: ELOOP`);
    expect(fs.readFileSync(target, 'utf8')).toBe('keep me');
    const d = path.join(dir, 'dir.lock');
    fs.mkdirSync(d);
    expect(() => acquireInstanceLock(d, tryLock)).toThrow(`cannot open the lock file ${d}: EISDIR`);
    expect(() => acquireInstanceLock(path.join(target, 'x.lock'), tryLock)).toThrow(/cannot open the lock file .*victim\/x\.lock: (ENOTDIR|EEXIST)/);
  });

  it('flockHolder reads /proc/locks lines (hex major:minor, decimal inode)', () => {
    const fake = path.join(dir, 'locks');
    fs.writeFileSync(fake, '1: POSIX  ADVISORY  WRITE 77 08:01:1234 0 EOF\n2: FLOCK  ADVISORY  WRITE 4321 fd:1a:1234 0 EOF\n');
    const dev = (0xfd << 8) | 0x1a;
    expect(flockHolder(dev, 1234, fake)).toBe(4321);
    expect(flockHolder(dev, 1235, fake)).toBeUndefined();
    expect(flockHolder((8 << 8) | 1, 1234, fake)).toBeUndefined(); // a POSIX lock is not ours
  });
});
