// Crash-safe file replacement: write a temporary file in the same
// directory, fsync it, rename it over the target, fsync the directory.
// After a crash the target holds either the old or the new content.
import * as fs from 'fs';
import * as path from 'path';
import { err, hubError, ok, Result } from './result';

export function fsyncDirectory(dir: string): void {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600): Result<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    fsyncDirectory(dir);
    return ok(undefined);
  } catch (e) {
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // best effort: the temporary name is hidden and unique
    }
    return err(hubError('io', `cannot write ${file}`, e));
  }
}

/** mkdir -p with a mode for the directories it creates. */
export function ensureDirectory(dir: string, mode = 0o700): Result<void> {
  try {
    fs.mkdirSync(dir, { recursive: true, mode });
    return ok(undefined);
  } catch (e) {
    return err(hubError('io', `cannot create directory ${dir}`, e));
  }
}
