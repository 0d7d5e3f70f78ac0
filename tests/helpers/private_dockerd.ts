// A dockerd of the test's own (own socket, data and exec roots, containerd
// namespace, no bridge or iptables), so a test can stop and restart it
// without touching the dockerd other tests and helpers share. Started with
// --live-restore unless told not to: its containers keep running while it is
// down, as on a node where dockerd restarts under running workloads. Without
// it, stop() stops every container (as `systemctl stop docker` at a reboot
// does) and start() brings back those with a restart policy.
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BUSYBOX, waitFor } from './system';

const DOCKER = fs.existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

export interface DockerResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface PrivateDockerd {
  /** DOCKER_HOST value for clients (unix://...) */
  host: string;
  socket: string;
  /** the docker CLI against this daemon */
  docker(...args: string[]): DockerResult;
  /** true while this daemon's process runs */
  running(): boolean;
  /** SIGTERM and wait (containers keep running with liveRestore, the default; else dockerd stops them) */
  stop(): Promise<void>;
  /** starts the daemon again on the same roots */
  start(): Promise<void>;
  /** removes every container and image, stops the daemon, unmounts and deletes its directory */
  destroy(): Promise<void>;
}

export interface PrivateDockerdOptions {
  /** --live-restore (default true): containers outlive the daemon */
  liveRestore?: boolean;
  /**
   * An OCI runtime registered and made the default, as daemon.json's
   * "runtimes" (path, runtimeArgs) and "default-runtime" would (written to
   * DIR/daemon.json, --config-file), e.g. scripts/edgeward-runc. Absent:
   * dockerd's own (runc).
   */
  defaultRuntime?: { name: string; path: string; runtimeArgs?: string[] };
  /**
   * Mount a tmpfs of its own on the data root (default false). overlay2
   * cannot stack on an overlayfs (the qemu guest's root), so a dockerd in
   * the guest needs its layers on a real filesystem; removed by destroy().
   */
  tmpfsDataRoot?: boolean;
}

function writeRuntimeConfig(dir: string, runtime: NonNullable<PrivateDockerdOptions['defaultRuntime']>): string {
  const file = path.join(dir, 'daemon.json');
  const entry = { path: runtime.path, ...(runtime.runtimeArgs ? { runtimeArgs: runtime.runtimeArgs } : {}) };
  fs.writeFileSync(file, JSON.stringify({ runtimes: { [runtime.name]: entry }, 'default-runtime': runtime.name }, null, 2));
  return file;
}

/** Starts a private dockerd in `dir` (created). Fails with a clear message when dockerd is missing. */
export async function startPrivateDockerd(dir: string, opts: PrivateDockerdOptions = {}): Promise<PrivateDockerd> {
  if (spawnSync('which', ['dockerd']).status !== 0) throw new Error('dockerd is not installed: run scripts/install-deps.sh (docker.io)');
  fs.mkdirSync(dir, { recursive: true });
  if (opts.tmpfsDataRoot) {
    const data = path.join(dir, 'data');
    fs.mkdirSync(data, { recursive: true });
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'mode=0711', 'tmpfs', data], { encoding: 'utf8' });
    if (m.status !== 0) throw new Error(`mounting a tmpfs on the private dockerd's data root ${data} failed: ${m.stderr}`);
  }
  const socket = path.join(dir, 'docker.sock');
  const host = `unix://${socket}`;
  const tag = path.basename(dir).replace(/[^A-Za-z0-9_.-]/g, '-');
  const args = [
    '--data-root', path.join(dir, 'data'),
    '--exec-root', path.join(dir, 'exec'),
    '--pidfile', path.join(dir, 'dockerd.pid'),
    '-H', host,
    '--bridge=none',
    '--iptables=false',
    ...(opts.liveRestore === false ? [] : ['--live-restore']),
    ...(opts.defaultRuntime ? ['--config-file', writeRuntimeConfig(dir, opts.defaultRuntime)] : []),
    '--containerd-namespace', `ew-${tag}`,
    '--containerd-plugins-namespace', `ew-${tag}-plugins`,
  ];
  const docker = (...a: string[]): DockerResult => {
    const r = spawnSync(DOCKER, ['-H', host, ...a], { encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, stdout: (r.stdout ?? '').trim(), stderr: (r.stderr ?? '').trim() };
  };
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const start = async (): Promise<void> => {
    const log = fs.openSync(path.join(dir, 'dockerd.log'), 'a');
    const c = spawn('dockerd', args, { stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    child = c;
    let gone = false;
    exited = new Promise<void>((resolve) => c.on('exit', () => ((gone = true), resolve())));
    await waitFor(
      `the private dockerd on ${socket} to answer`,
      () => {
        if (gone) throw new Error(`private dockerd exited; see ${path.join(dir, 'dockerd.log')}`);
        return docker('version', '--format', '{{.Server.Version}}').status === 0 ? true : undefined;
      },
      60_000,
    );
  };

  const stop = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill('SIGTERM');
    const killer = setTimeout(() => c.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(killer);
    child = undefined;
  };

  await start();
  return {
    host,
    socket,
    docker,
    running: () => child !== undefined && child.exitCode === null && child.signalCode === null,
    stop,
    start,
    destroy: async () => {
      if (!child) await start().catch(() => undefined);
      const ids = docker('ps', '-aq').stdout.split('\n').filter(Boolean);
      if (ids.length) docker('rm', '-f', ...ids);
      await stop();
      // dockerd bind-mounts its data root and leaves mounts under its roots
      const mounts = fs
        .readFileSync('/proc/self/mounts', 'utf8')
        .split('\n')
        .map((l) => l.split(' ')[1] ?? '')
        .filter((m) => m === dir || m.startsWith(dir + '/'))
        .sort()
        .reverse();
      for (const m of mounts) spawnSync('umount', ['-l', m]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Imports a busybox-static root filesystem as `image`: /bin/busybox with
 * its applets, and copies of busybox named in `programs` (e.g.
 * /usr/bin/busybox-tool; a "busybox-*" name runs its first argument as the
 * applet).
 */
export function importBusyboxImage(
  d: PrivateDockerd,
  image: string,
  programs: string[] = [],
  extra: {
    /** more busybox applets linked in /bin */
    applets?: string[];
    /** files of the image: path -> content */
    files?: Record<string, string>;
  } = {},
): void {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-private-rootfs-'));
  try {
    fs.mkdirSync(path.join(root, 'bin'));
    fs.mkdirSync(path.join(root, 'tmp'));
    fs.copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'));
    fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
    const applets = new Set(['sh', 'sleep', 'cat', 'echo', 'true', 'ls', 'nc', ...(extra.applets ?? [])]);
    for (const applet of applets) fs.symlinkSync('busybox', path.join(root, 'bin', applet));
    for (const [p, content] of Object.entries(extra.files ?? {})) {
      fs.mkdirSync(path.join(root, path.dirname(p)), { recursive: true });
      fs.writeFileSync(path.join(root, p), content);
    }
    for (const p of programs) {
      fs.mkdirSync(path.join(root, path.dirname(p)), { recursive: true });
      fs.copyFileSync(BUSYBOX, path.join(root, p));
      fs.chmodSync(path.join(root, p), 0o755);
    }
    const tar = spawnSync('tar', ['-C', root, '-c', '.'], { maxBuffer: 64 * 2 ** 20 });
    const imp = spawnSync(DOCKER, ['-H', d.host, 'import', '-', image], { input: tar.stdout, encoding: 'utf8' });
    if (imp.status !== 0) throw new Error(`docker import ${image} failed: ${imp.stderr}`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}
