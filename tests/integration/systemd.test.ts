// The systemd deployment on a real systemd: a Debian container with systemd
// as PID 1 (image from debootstrap + docker import), edgeward installed in it
// from a release tarball by scripts/install.sh, started with systemctl.
// Proves: the unit verifies, the hardening leaves enforcement intact (a host
// policy blocks exec and a read under /root), Type=notify reaches active only
// when the agent says READY=1, the watchdog is fed, SIGKILL is followed by a
// restart that enforces again, stop leaves nothing enforcing, uninstall cleans up.
//
// The machine and how it is run: tests/helpers/systemd_machine.ts.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { DockerdHandle, ensureDockerd } from '../helpers/docker';
import { installRelease, MACHINE_AGENT_CONFIG as CONFIG, packRelease, startSystemdMachine, SystemdMachine } from '../helpers/systemd_machine';
import { REPO, waitFor } from '../helpers/system';

/** The tree packed and installed: this checkout (EDGEWARD_DEPLOY_TREE: another built tree). */
const TREE = process.env.EDGEWARD_DEPLOY_TREE ?? REPO;
const WORK = path.join(REPO, 'build', 'deploy-test');
const TARBALL = path.join(WORK, 'edgeward-systemd-test.tar.gz');
const NAME = `edgeward-systemd-test-${process.pid}`;
/** exposure score `systemd-analyze security` must stay under (10 is worst; the unit scores 3.9) */
const MAX_EXPOSURE = 5.0;

const BLOCK_POLICY = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: systemd-test-block
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  process:
    matchPaths:
    - path: /srv/blocked/busybox
  file:
    matchPaths:
    - path: /root/secret.txt
  action: Block
`;

let machine: SystemdMachine;
const sh = (script: string) => machine.sh(script);
const mustSh = (script: string) => machine.mustSh(script);
/** systemctl show edgeward -p NAME --value */
const prop = (name: string) => machine.prop(name);

describe('edgeward.service under systemd (PID 1 in a container)', () => {
  let dockerd: DockerdHandle | undefined;

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('the systemd test must run as root (docker, kernel programs)');
    for (const f of ['dist/agent/src/cli.js', 'build/native/Release/edgeward.node']) {
      if (!fs.existsSync(path.join(TREE, f))) throw new Error(`${TREE}/${f} is missing: run npm run build`);
    }
    if (spawnSync('which', ['systemd-analyze']).status !== 0) throw new Error('systemd-analyze is missing: apt-get install systemd');
    dockerd = await ensureDockerd();
    fs.mkdirSync(WORK, { recursive: true });
    packRelease(TREE, TARBALL);
    machine = await startSystemdMachine({ name: NAME, hostname: 'board-systemd', tarball: TARBALL });
  }, 45 * 60_000);

  afterAll(async () => {
    machine?.remove();
    await dockerd?.stop();
  }, 120_000);

  test('the unit scores a low exposure with systemd-analyze security --offline=true', () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=true', path.join(REPO, 'systemd', 'edgeward.service')], {
      encoding: 'utf8',
    });
    const line = (r.stdout + r.stderr).split('\n').find((l) => l.includes('Overall exposure level'));
    if (!line) throw new Error(`systemd-analyze security printed no exposure level:\n${r.stdout}\n${r.stderr}`);
    // eslint-disable-next-line no-console
    console.log(`systemd-analyze security: ${line.trim()}`);
    const score = Number(/level for edgeward\.service: ([0-9.]+)/.exec(line)?.[1]);
    expect(score).toBeLessThan(MAX_EXPOSURE);
  });

  test('install.sh installs the release tarball; systemd-analyze verify accepts the unit', () => {
    installRelease(machine);
    for (const p of ['/opt/edgeward/bin/edgeward', '/opt/edgeward/node/bin/node', '/etc/edgeward/config.yaml', '/etc/systemd/system/edgeward.service', '/usr/local/bin/edgeward']) {
      expect(sh(`test -e ${p}`).status).toBe(0);
    }
    expect(mustSh('stat -c %a /var/lib/edgeward')).toBe('700');
    // dev dependencies are not installed
    expect(sh('test -e /opt/edgeward/node_modules/typescript').status).not.toBe(0);
    expect(sh('test -e /opt/edgeward/node_modules/dockerode').status).toBe(0);
    const verify = sh('systemd-analyze verify /etc/systemd/system/edgeward.service 2>&1');
    expect(verify.stdout).toBe('');
    expect(verify.status).toBe(0);
    expect(mustSh('/usr/local/bin/edgeward version')).toMatch(/^edgeward \d+\.\d+\.\d+/);
    // installed, not started: `systemctl enable --now` is the operator's step
    expect(sh('systemctl is-enabled edgeward').stdout).toBe('disabled');
  });

  test('systemctl enable --now reaches active only after READY=1, and the policy is enforced', () => {
    mustSh(`cat > /etc/edgeward/config.yaml <<'EOF'\n${CONFIG}EOF`);
    mustSh(`cat > /etc/edgeward/policies/90-systemd-test.yaml <<'EOF'\n${BLOCK_POLICY}EOF`);
    // busybox runs the applet its file is named after: copies keep the name
    mustSh('mkdir -p /srv/blocked /srv/allowed && cp /bin/busybox /srv/blocked/busybox && cp /bin/busybox /srv/allowed/busybox && echo s3cret > /root/secret.txt');
    mustSh('systemctl enable --now edgeward');
    expect(prop('ActiveState')).toBe('active');
    expect(prop('Type')).toBe('notify');
    // the status line comes from the agent's READY=1 message
    expect(prop('StatusText')).not.toBe('');
    const blocked = sh('/srv/blocked/busybox true');
    expect(blocked.status).not.toBe(0);
    expect(blocked.stderr).toMatch(/Permission denied|Operation not permitted/);
    // ProtectHome=read-only keeps /root the host's: the rule on /root/secret.txt holds
    const read = sh('/srv/allowed/busybox cat /root/secret.txt');
    expect(read.status).not.toBe(0);
    expect(read.stderr).toMatch(/Permission denied|Operation not permitted/);
    expect(sh('/srv/allowed/busybox echo fine').stdout).toBe('fine');
    const alerts = mustSh('cat /var/log/edgeward/alerts.jsonl');
    expect(alerts).toContain('"PolicyName":"systemd-test-block"');
  }, 240_000);

  test('the watchdog is fed: no restart across several watchdog periods', async () => {
    // a short period for the test (drop-in); the agent pings at half of it
    mustSh('mkdir -p /etc/systemd/system/edgeward.service.d && printf "[Service]\\nWatchdogSec=3s\\n" > /etc/systemd/system/edgeward.service.d/watchdog.conf');
    mustSh('systemctl daemon-reload && systemctl restart edgeward');
    expect(prop('WatchdogUSec')).toBe('3s');
    const restartsBefore = Number(prop('NRestarts'));
    const pidBefore = prop('MainPID');
    const first = prop('WatchdogTimestampMonotonic');
    await new Promise((r) => setTimeout(r, 10_000));
    expect(prop('ActiveState')).toBe('active');
    expect(prop('MainPID')).toBe(pidBefore);
    expect(Number(prop('NRestarts'))).toBe(restartsBefore);
    expect(Number(prop('WatchdogTimestampMonotonic'))).toBeGreaterThan(Number(first));
    mustSh('rm -r /etc/systemd/system/edgeward.service.d && systemctl daemon-reload');
  }, 120_000);

  test('systemctl reload keeps it active and picks up a policy change', async () => {
    mustSh('rm /etc/edgeward/policies/90-systemd-test.yaml && systemctl reload edgeward');
    await waitFor('the reload to lift the block', () => (sh('/srv/blocked/busybox true').status === 0 ? true : undefined), 20_000);
    expect(prop('ActiveState')).toBe('active');
    mustSh(`cat > /etc/edgeward/policies/90-systemd-test.yaml <<'EOF'\n${BLOCK_POLICY}EOF`);
    mustSh('systemctl reload edgeward');
    await waitFor('the reload to block again', () => (sh('/srv/blocked/busybox true').status !== 0 ? true : undefined), 20_000);
  }, 120_000);

  test('systemctl kill -s KILL is followed by a restart that enforces again', async () => {
    const pid = prop('MainPID');
    const restarts = Number(prop('NRestarts'));
    mustSh('systemctl kill -s KILL edgeward');
    await waitFor(
      'systemd to restart edgeward',
      () => (prop('ActiveState') === 'active' && prop('MainPID') !== pid && prop('MainPID') !== '0' ? true : undefined),
      60_000,
    );
    expect(Number(prop('NRestarts'))).toBe(restarts + 1);
    const blocked = sh('/srv/blocked/busybox true');
    expect(blocked.status).not.toBe(0);
    expect(blocked.stderr).toMatch(/Permission denied|Operation not permitted/);
  }, 120_000);

  test('systemctl stop leaves nothing enforcing; uninstall --purge removes everything', () => {
    mustSh('systemctl stop edgeward');
    expect(prop('ActiveState')).toBe('inactive');
    expect(sh('/srv/blocked/busybox echo free').stdout).toBe('free');
    mustSh('bash /opt/edgeward/scripts/uninstall.sh --purge');
    for (const p of ['/opt/edgeward', '/etc/edgeward', '/var/lib/edgeward', '/etc/systemd/system/edgeward.service', '/usr/local/bin/edgeward']) {
      expect(sh(`test -e ${p}`).status).not.toBe(0);
    }
    expect(sh('systemctl cat edgeward').status).not.toBe(0);
  });
});
