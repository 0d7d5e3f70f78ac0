// A real dockerd for tests: started here when none answers (apt never starts
// services on these machines) and stopped again by whoever started it.
// Images are made locally with `docker import` from busybox-static: no
// registry is reachable.
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BUSYBOX, waitFor } from './system';

export const TEST_IMAGE = 'edgeward-test/busybox:latest';
const DOCKER = fs.existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

export function docker(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(DOCKER, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: (r.stdout ?? '').trim(), stderr: (r.stderr ?? '').trim() };
}

function dockerdAnswers(): boolean {
  return docker('version', '--format', '{{.Server.Version}}').status === 0;
}

export interface DockerdHandle {
  /** true when this handle started dockerd (and stop() will stop it) */
  started: boolean;
  stop(): Promise<void>;
}

export async function ensureDockerd(): Promise<DockerdHandle> {
  if (dockerdAnswers()) return { started: false, stop: async () => undefined };
  if (spawnSync('which', ['dockerd']).status !== 0) {
    throw new Error('dockerd is not installed: run scripts/install-deps.sh (docker.io)');
  }
  const log = fs.openSync(path.join(os.tmpdir(), 'edgeward-test-dockerd.log'), 'a');
  const child: ChildProcess = spawn('dockerd', [], { stdio: ['ignore', log, log], detached: true });
  await waitFor('dockerd to answer', () => (dockerdAnswers() ? true : undefined), 60_000);
  return {
    started: true,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          resolve();
        }, 20_000);
        child.on('exit', () => {
          clearTimeout(t);
          resolve();
        });
      });
    },
  };
}

/** Imports a busybox-static root filesystem as TEST_IMAGE (once). */
export function ensureTestImage(): void {
  if (docker('image', 'inspect', TEST_IMAGE).status === 0) return;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-rootfs-'));
  fs.mkdirSync(path.join(root, 'bin'));
  fs.mkdirSync(path.join(root, 'tmp'));
  fs.copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'sleep', 'cat', 'echo', 'true', 'nslookup', 'nc', 'ls', 'ps']) {
    fs.symlinkSync('busybox', path.join(root, 'bin', applet));
  }
  const tar = spawnSync('tar', ['-C', root, '-c', '.'], { maxBuffer: 64 * 2 ** 20 });
  const imp = spawnSync(DOCKER, ['import', '-', TEST_IMAGE], { input: tar.stdout, encoding: 'utf8' });
  fs.rmSync(root, { recursive: true, force: true });
  if (imp.status !== 0) throw new Error(`docker import failed: ${imp.stderr}`);
}
