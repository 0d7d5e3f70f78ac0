// Shared by integration tests: preconditions that fail loudly (never skip),
// temporary trees, and running child processes to observe errno.
import { spawnSync, SpawnSyncReturns } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export const REPO = path.resolve(__dirname, '..', '..');
export const ADDON = path.join(REPO, 'build', 'native', 'Release', 'edgeward.node');
export const CLI = path.join(REPO, 'bin', 'edgeward');
export const BUSYBOX = '/bin/busybox';

/** Throws (fails the suite) with a clear message when integration tests cannot run here. */
export function requireIntegrationEnvironment(): void {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push('must run as root (integration tests attach kernel programs)');
  if (!fs.existsSync(ADDON)) problems.push(`native addon not built (${ADDON}): run npm run build`);
  if (!fs.existsSync(path.join(REPO, 'dist', 'agent', 'src', 'cli.js'))) problems.push('TypeScript not built: run npm run build');
  if (!fs.existsSync(BUSYBOX)) problems.push(`${BUSYBOX} missing: run scripts/install-deps.sh (busybox-static)`);
  if (problems.length) throw new Error(`integration tests cannot run: ${problems.join('; ')}`);
}

export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `edgeward-${prefix}-`));
}

/** A copy of busybox under `dir/name/busybox`: a distinct executable inode per call. */
export function busyboxCopy(dir: string, name: string): string {
  const d = path.join(dir, name);
  fs.mkdirSync(d, { recursive: true });
  const target = path.join(d, 'busybox');
  fs.copyFileSync(BUSYBOX, target);
  fs.chmodSync(target, 0o755);
  return target;
}

export interface RunResult {
  /** errno name when the exec itself failed (e.g. 'EPERM'), else undefined */
  spawnError?: string;
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(file: string, args: string[], opts: { cwd?: string; input?: string } = {}): RunResult {
  const r: SpawnSyncReturns<string> = spawnSync(file, args, {
    cwd: opts.cwd,
    input: opts.input,
    encoding: 'utf8',
    timeout: 20_000,
  });
  const code = (r.error as NodeJS.ErrnoException | undefined)?.code;
  return { spawnError: code, status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Runs a node script in a child and returns what it prints (the errno code of a failed call, or 'ok'). */
export function nodeChild(script: string, nodeBinary = process.execPath): RunResult {
  return run(nodeBinary, ['-e', script]);
}

export async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function cgroup2Path(): string {
  const line = fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[2] === 'cgroup2');
  if (!line) throw new Error('no cgroup2 mount in /proc/self/mounts');
  return line.split(' ')[1];
}
