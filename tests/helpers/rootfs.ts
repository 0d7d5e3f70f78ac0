// Debian images for the deployment tests, made locally (no registry is
// reachable): a bookworm root filesystem from debootstrap, cached as a tar
// under build/rootfs/ (debootstrap takes minutes; the cache makes reruns fast),
// and `docker import`ed. The same image is the systemd test's machine (systemd
// as PID 1) and the agent image's base (libbpf1, libelf1 included).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { docker } from './docker';

const DOCKER = fs.existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

/** docker import with time for a few hundred MiB on a busy machine. */
function dockerImport(args: string[]): void {
  const r = spawnSync(DOCKER, ['import', ...args], { encoding: 'utf8', timeout: 10 * 60_000 });
  if (r.status !== 0) throw new Error(`docker import ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
}
import { REPO } from './system';

const SUITE = 'bookworm';
const MIRROR = 'http://deb.debian.org/debian';
/** What the tests need besides minbase; bump ROOTFS_VERSION when this changes. */
const INCLUDE = ['systemd', 'systemd-sysv', 'dbus', 'libbpf1', 'libelf1', 'zlib1g', 'procps', 'busybox-static', 'ca-certificates'];
const ROOTFS_VERSION = 'v1';

export const ROOTFS_DIR = path.join(REPO, 'build', 'rootfs');
export const ROOTFS_TAR = path.join(ROOTFS_DIR, `${SUITE}-systemd-${ROOTFS_VERSION}.tar`);
/** Debian bookworm with systemd, libbpf1, libelf1, busybox-static: run with /lib/systemd/systemd as PID 1. */
export const DEBIAN_IMAGE = `edgeward-test/debian-systemd:${SUITE}-${ROOTFS_VERSION}`;
/** Only this machine's node binary at /usr/local/bin/node (the Dockerfile's NODE_IMAGE stand-in). */
export const NODE_IMAGE = `edgeward-test/node-host:${process.versions.node}`;

/** Builds ROOTFS_TAR with debootstrap unless cached; minutes the first time. */
export function ensureRootfsTarball(): string {
  if (fs.existsSync(ROOTFS_TAR)) return ROOTFS_TAR;
  const debootstrap = ['/usr/sbin/debootstrap', '/usr/bin/debootstrap'].find((p) => fs.existsSync(p));
  if (!debootstrap) throw new Error(`debootstrap is not installed and ${ROOTFS_TAR} is not cached: apt-get install debootstrap`);
  fs.mkdirSync(ROOTFS_DIR, { recursive: true });
  const work = `${ROOTFS_TAR}.tmp`;
  fs.rmSync(work, { recursive: true, force: true });
  const r = spawnSync(debootstrap, ['--variant=minbase', `--include=${INCLUDE.join(',')}`, SUITE, work, MIRROR], {
    encoding: 'utf8',
    timeout: 30 * 60_000,
    maxBuffer: 64 * 2 ** 20,
  });
  if (r.status !== 0) {
    throw new Error(`debootstrap ${SUITE} from ${MIRROR} failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout).slice(-2000)}`);
  }
  // Package lists are not needed in the image; apt-get update restores them.
  for (const d of ['var/lib/apt/lists', 'var/cache/apt']) {
    for (const f of fs.readdirSync(path.join(work, d))) {
      if (f !== 'partial' && f !== 'archives') fs.rmSync(path.join(work, d, f), { recursive: true, force: true });
    }
  }
  const partial = `${ROOTFS_TAR}.partial`;
  const tar = spawnSync('tar', ['-C', work, '--numeric-owner', '-cf', partial, '.'], { encoding: 'utf8' });
  if (tar.status !== 0) throw new Error(`tar of ${work} failed: ${tar.stderr}`);
  fs.renameSync(partial, ROOTFS_TAR);
  fs.rmSync(work, { recursive: true, force: true });
  return ROOTFS_TAR;
}

/** Imports DEBIAN_IMAGE from the cached root filesystem (once per dockerd). */
export function ensureDebianImage(): string {
  if (docker('image', 'inspect', DEBIAN_IMAGE).status === 0) return DEBIAN_IMAGE;
  const tar = ensureRootfsTarball();
  dockerImport(['--change', 'CMD ["/lib/systemd/systemd"]', tar, DEBIAN_IMAGE]);
  return DEBIAN_IMAGE;
}

/** Imports NODE_IMAGE: this machine's node (glibc, as bookworm's) at /usr/local/bin/node. */
export function ensureNodeImage(): string {
  if (docker('image', 'inspect', NODE_IMAGE).status === 0) return NODE_IMAGE;
  const stage = path.join(ROOTFS_DIR, `node-${process.versions.node}`);
  fs.rmSync(stage, { recursive: true, force: true });
  fs.mkdirSync(path.join(stage, 'usr', 'local', 'bin'), { recursive: true });
  fs.copyFileSync(fs.realpathSync(process.execPath), path.join(stage, 'usr', 'local', 'bin', 'node'));
  fs.chmodSync(path.join(stage, 'usr', 'local', 'bin', 'node'), 0o755);
  const tarFile = `${stage}.tar`;
  const tar = spawnSync('tar', ['-C', stage, '--numeric-owner', '-cf', tarFile, '.'], { encoding: 'utf8' });
  if (tar.status !== 0) throw new Error(`tar of ${stage} failed: ${tar.stderr}`);
  try {
    dockerImport([tarFile, NODE_IMAGE]);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
    fs.rmSync(tarFile, { force: true });
  }
  return NODE_IMAGE;
}
