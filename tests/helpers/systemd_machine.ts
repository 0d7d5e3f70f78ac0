// A Debian machine with systemd as PID 1, as a Docker container of the
// shared dockerd (image from tests/helpers/rootfs.ts), for the deployment
// tests: edgeward installed from a release tarball and run as a unit.
//
// Container: `--cap-add ALL --cap-drop SYS_RESOURCE` (--privileged fails on
// this host), `--cgroupns private` (systemd runs in its own cgroup tree, and
// the agent's cgroup-bpf programs stay inside the container), tmpfs on /run
// (empty at every boot, as on a real machine), no network (nothing here needs
// one, and docker0 is shared with tests that create and remove interfaces). With `powerCycle`, the
// container has `--restart always`: `systemctl reboot` inside makes systemd
// stop every unit and call reboot(2), which in a pid namespace ends its init;
// docker then starts the same container again (same filesystem, /run empty,
// a new PID 1): the machine reboots.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { docker } from './docker';
import { ensureDebianImage } from './rootfs';
import { waitFor } from './system';

/** /etc/edgeward/config.yaml of the machine's agent: compat, alerts as JSON lines in a file. */
export const MACHINE_AGENT_CONFIG = `backend: compat
policyDirectory: /etc/edgeward/policies
stateDirectory: /var/lib/edgeward
logging:
  format: json
alerts:
  stdout: false
  file:
    path: /var/log/edgeward/alerts.jsonl
`;

export interface MachineResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface SystemdMachine {
  name: string;
  /** a command in the machine (docker exec) */
  exec(...cmd: string[]): MachineResult;
  /** sh -c SCRIPT in the machine */
  sh(script: string): MachineResult;
  /** sh -c SCRIPT; throws with its output and edgeward's journal unless it exits 0 */
  mustSh(script: string): string;
  /** the last lines of a unit's journal */
  journal(unit?: string, lines?: number): string;
  /** systemctl show UNIT -p NAME --value */
  prop(name: string, unit?: string): string;
  /** host pid of the machine's PID 1 (0 while it is down) */
  initPid(): number;
  /** waits until systemctl is-system-running says running or degraded; returns which */
  waitBooted(timeoutMs?: number): Promise<string>;
  remove(): void;
}

/** `scripts/install.sh --pack TARBALL --with-node` of `tree`: the release tarball the machine installs. */
export function packRelease(tree: string, tarball: string): void {
  const pack = spawnSync('bash', [path.join(tree, 'scripts', 'install.sh'), '--pack', tarball, '--with-node'], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (pack.status !== 0) throw new Error(`install.sh --pack failed (${pack.status ?? pack.signal}): ${pack.stderr}`);
}

/** Runs the machine (tarball mounted read-only at /tmp/edgeward.tar.gz) and waits for it to boot. */
export async function startSystemdMachine(opts: {
  name: string;
  hostname: string;
  tarball: string;
  /** `--restart always`: `systemctl reboot` inside brings the machine back */
  powerCycle?: boolean;
}): Promise<SystemdMachine> {
  const { name } = opts;
  const exec = (...cmd: string[]): MachineResult => {
    const r = spawnSync('docker', ['exec', name, ...cmd], { encoding: 'utf8', timeout: 180_000 });
    return { status: r.status, stdout: (r.stdout ?? '').trim(), stderr: (r.stderr ?? '').trim() };
  };
  const sh = (script: string): MachineResult => exec('sh', '-c', script);
  const journal = (unit = 'edgeward', lines = 40): string => sh(`journalctl -u ${unit} --no-pager -n ${lines} 2>&1`).stdout;
  const machine: SystemdMachine = {
    name,
    exec,
    sh,
    mustSh: (script) => {
      const r = sh(script);
      if (r.status !== 0) throw new Error(`in ${name}, "${script}" failed (${r.status}):\n${r.stdout}\n${r.stderr}\n${journal()}`);
      return r.stdout;
    },
    journal,
    prop: (prop, unit = 'edgeward') => sh(`systemctl show ${unit} -p ${prop} --value`).stdout,
    initPid: () => Number(docker('inspect', '-f', '{{.State.Pid}}', name).stdout) || 0,
    waitBooted: (timeoutMs = 120_000) =>
      waitFor(
        `systemd in ${name} to finish booting`,
        () => {
          const s = sh('systemctl is-system-running').stdout;
          return s === 'running' || s === 'degraded' ? s : undefined;
        },
        timeoutMs,
      ),
    remove: () => void docker('rm', '-f', name),
  };
  docker('rm', '-f', name);
  const run = docker(
    'run', '-d', '--name', name, '--hostname', opts.hostname,
    '--network', 'none',
    ...(opts.powerCycle ? ['--restart', 'always'] : []),
    '--cap-add', 'ALL', '--cap-drop', 'SYS_RESOURCE',
    '--security-opt', 'seccomp=unconfined', '--security-opt', 'apparmor=unconfined',
    '--cgroupns', 'private', '--tmpfs', '/run', '--tmpfs', '/run/lock',
    '-v', `${opts.tarball}:/tmp/edgeward.tar.gz:ro`,
    ensureDebianImage(), '/lib/systemd/systemd',
  );
  if (run.status !== 0) {
    machine.remove(); // docker leaves a created container behind when the start fails
    throw new Error(`docker run of the systemd machine ${name} failed: ${run.stderr}`);
  }
  try {
    await machine.waitBooted();
  } catch (e) {
    machine.remove();
    throw e;
  }
  return machine;
}

/** Installs edgeward in the machine from /tmp/edgeward.tar.gz with the tarball's own install.sh. */
export function installRelease(m: SystemdMachine): void {
  m.mustSh('mkdir -p /tmp/rel && tar -C /tmp/rel -xzf /tmp/edgeward.tar.gz && bash /tmp/rel/edgeward-*/scripts/install.sh --from /tmp/edgeward.tar.gz');
}
