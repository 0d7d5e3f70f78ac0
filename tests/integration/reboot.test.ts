// A policy applied at runtime survives a reboot of the machine, on a real
// systemd: a Debian machine with systemd as PID 1 (tests/helpers/
// systemd_machine.ts), edgeward installed from a release tarball and enabled.
// `edgeward policy apply` over the control socket stores the policy in the
// state directory; `systemctl reboot` stops every unit, ends PID 1 and the
// machine comes up again (docker's restart policy is the power button: same
// filesystem, empty /run, new PID 1). After the boot, with no command from
// anyone: edgeward.service is active, the policy is refused-enforced, and a
// unit ordered after edgeward.service (as docker.service is) that runs the
// blocked program as the first thing at boot is already refused: READY=1
// comes only once the applied rules are in force.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { DockerdHandle, ensureDockerd } from '../helpers/docker';
import { installRelease, MACHINE_AGENT_CONFIG as CONFIG, packRelease, startSystemdMachine, SystemdMachine } from '../helpers/systemd_machine';
import { REPO, waitFor } from '../helpers/system';

const TREE = process.env.EDGEWARD_DEPLOY_TREE ?? REPO;
const WORK = path.join(REPO, 'build', 'deploy-test');
const TARBALL = path.join(WORK, `edgeward-reboot-test-${process.pid}.tar.gz`);
const NAME = `edgeward-reboot-test-${process.pid}`;
const POLICY_NAME = 'reboot-test-block';
const DENIED = /Permission denied|Operation not permitted/;

const POLICY = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: ${POLICY_NAME}
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  severity: 7
  message: blocked tool ran
  process:
    matchPaths:
    - path: /srv/blocked/busybox
  file:
    matchPaths:
    - path: /root/secret.txt
  action: Block
`;

// The first workload at boot: ordered after edgeward.service as docker.service
// and horizon.service are (edgeward.service says Before= them). It records
// what the blocked program and the protected read got.
const BOOT_PROBE_UNIT = `[Unit]
Description=first workload after edgeward at boot
After=edgeward.service
Wants=edgeward.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c '/srv/blocked/busybox true 2>/var/lib/boot-probe/exec.err; echo "exec rc=$?" >/var/lib/boot-probe/result; /srv/allowed/busybox cat /root/secret.txt 2>/var/lib/boot-probe/read.err; echo "read rc=$?" >>/var/lib/boot-probe/result'

[Install]
WantedBy=multi-user.target
`;

describe('a reboot of a systemd machine (systemd as PID 1, edgeward from a release tarball)', () => {
  let dockerd: DockerdHandle | undefined;
  let m: SystemdMachine;
  let listBeforeReboot: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('the reboot test must run as root (docker, kernel programs)');
    for (const f of ['dist/agent/src/cli.js', 'build/native/Release/edgeward.node']) {
      if (!fs.existsSync(path.join(TREE, f))) throw new Error(`${TREE}/${f} is missing: run npm run build`);
    }
    dockerd = await ensureDockerd();
    fs.mkdirSync(WORK, { recursive: true });
    packRelease(TREE, TARBALL);
    m = await startSystemdMachine({ name: NAME, hostname: 'board-reboot', tarball: TARBALL, powerCycle: true });
    installRelease(m);
    // the operator's directory keeps the defaults install.sh ships; the test's policy is only applied
    m.mustSh(`cat > /etc/edgeward/config.yaml <<'EOF'\n${CONFIG}EOF`);
    // busybox runs the applet its file is named after: copies keep the name
    m.mustSh('mkdir -p /srv/blocked /srv/allowed && cp /bin/busybox /srv/blocked/busybox && cp /bin/busybox /srv/allowed/busybox && echo s3cret > /root/secret.txt');
    m.mustSh('systemctl enable --now edgeward');
  }, 45 * 60_000);

  afterAll(async () => {
    m?.remove();
    fs.rmSync(TARBALL, { force: true });
    await dockerd?.stop();
  }, 120_000);

  test('edgeward policy apply: in force when it returns, kept in the state directory', () => {
    expect(m.prop('ActiveState')).toBe('active');
    expect(m.sh('/srv/blocked/busybox echo free').stdout).toBe('free');
    m.mustSh(`cat > /var/tmp/${POLICY_NAME}.yaml <<'EOF'\n${POLICY}EOF`);
    const applied = m.sh(`edgeward policy apply /var/tmp/${POLICY_NAME}.yaml`);
    expect(applied.status).toBe(0);
    expect(applied.stdout).toMatch(new RegExp(`^created +KubeArmorHostPolicy ${POLICY_NAME}$`, 'm'));
    const blocked = m.sh('/srv/blocked/busybox true');
    expect(blocked.status).not.toBe(0);
    expect(blocked.stderr).toMatch(DENIED);
    // stored by the agent under the state directory, not in the operator's directory
    expect(m.sh(`grep -l "name: ${POLICY_NAME}" -r /etc/edgeward`).stdout).toBe('');
    expect(m.mustSh(`grep -l "name: ${POLICY_NAME}" -r /var/lib/edgeward/policies`)).not.toBe('');
    m.mustSh(`rm /var/tmp/${POLICY_NAME}.yaml`);
    listBeforeReboot = JSON.parse(m.mustSh('edgeward policy list --json')) as Array<Record<string, unknown>>;
    expect(listBeforeReboot.filter((e) => e.origin === 'applied')).toEqual([
      expect.objectContaining({ name: POLICY_NAME, kind: 'KubeArmorHostPolicy', action: 'Block', file: expect.stringMatching(/^\/var\/lib\/edgeward\/policies\//) }),
    ]);
  });

  test('systemctl reboot: after the boot the applied policy is enforced with no command, from before the first workload runs', async () => {
    m.mustSh(`mkdir -p /var/lib/boot-probe && cat > /etc/systemd/system/boot-probe.service <<'EOF'\n${BOOT_PROBE_UNIT}EOF`);
    m.mustSh('systemctl daemon-reload && systemctl enable boot-probe.service && rm -f /var/lib/boot-probe/*');
    m.mustSh('touch /run/before-reboot');
    const initBefore = m.initPid();
    const restartsBefore = Number(spawnSync('docker', ['inspect', '-f', '{{.RestartCount}}', NAME], { encoding: 'utf8' }).stdout.trim());

    const t0 = Date.now();
    // returns at once; systemd stops the units, then ends PID 1
    m.sh('systemctl reboot');
    const initAfter = await waitFor(
      'the machine to come back with a new PID 1',
      () => {
        const pid = m.initPid();
        return pid !== 0 && pid !== initBefore ? pid : undefined;
      },
      120_000,
    );
    const booted = await m.waitBooted(180_000);
    const tBooted = Date.now();
    // eslint-disable-next-line no-console
    console.log(`systemctl reboot -> new PID 1 (host pid ${initAfter}) -> system ${booted}: ${tBooted - t0} ms`);
    // a real reboot: /run is empty again, docker counted the power cycle
    expect(m.sh('test -e /run/before-reboot').status).not.toBe(0);
    expect(Number(spawnSync('docker', ['inspect', '-f', '{{.RestartCount}}', NAME], { encoding: 'utf8' }).stdout.trim())).toBe(restartsBefore + 1);

    // the agent came up by itself, on its first attempt
    expect(m.prop('ActiveState')).toBe('active');
    expect(m.prop('SubState')).toBe('running');
    expect(m.prop('NRestarts')).toBe('0');
    expect(m.prop('StatusText')).not.toBe('');
    const startMs = (Number(m.prop('ActiveEnterTimestampMonotonic')) - Number(m.prop('InactiveExitTimestampMonotonic'))) / 1000;
    // eslint-disable-next-line no-console
    console.log(`edgeward.service: start to READY=1 at boot ${startMs.toFixed(0)} ms; status "${m.prop('StatusText')}"`);

    // the first workload after edgeward.service was refused already
    await waitFor('boot-probe.service to have run', () => (m.prop('ActiveState', 'boot-probe') !== 'activating' && m.sh('cat /var/lib/boot-probe/result').stdout.includes('read rc=') ? true : undefined), 60_000);
    const probe = m.mustSh('cat /var/lib/boot-probe/result');
    expect(probe).toMatch(/^exec rc=12[67]$/m);
    expect(probe).not.toMatch(/^read rc=0$/m);
    expect(m.mustSh('cat /var/lib/boot-probe/exec.err')).toMatch(DENIED);
    expect(m.mustSh('cat /var/lib/boot-probe/read.err')).toMatch(DENIED);
    // and the probe ran after READY=1, not merely after the fork
    expect(Number(m.prop('ExecMainStartTimestampMonotonic', 'boot-probe'))).toBeGreaterThanOrEqual(Number(m.prop('ActiveEnterTimestampMonotonic')));

    // enforced now, with no command from anyone since the boot
    const blocked = m.sh('/srv/blocked/busybox true');
    expect(blocked.status).not.toBe(0);
    expect(blocked.stderr).toMatch(DENIED);
    expect(m.sh('/srv/allowed/busybox cat /root/secret.txt').stderr).toMatch(DENIED);
    expect(m.sh('/srv/allowed/busybox echo fine').stdout).toBe('fine');
  }, 10 * 60_000);

  test('after the reboot: policy list shows the applied policy; logs show the boot-time alerts', () => {
    const list = m.mustSh('edgeward policy list --json');
    const entries = JSON.parse(list) as Array<Record<string, unknown>>;
    expect(entries.filter((e) => e.origin === 'applied')).toEqual([expect.objectContaining({ name: POLICY_NAME, kind: 'KubeArmorHostPolicy', action: 'Block' })]);
    // the same set as before the reboot (the shipped defaults and the applied one)
    expect(listBeforeReboot.length).toBeGreaterThan(1);
    expect(entries).toEqual(listBeforeReboot);
    expect(m.mustSh('edgeward policy list')).toMatch(new RegExp(`^${POLICY_NAME} +KubeArmorHostPolicy +- +Block +applied`, 'm'));

    // in the new agent's memory: the alerts of the boot probe
    const logs = m
      .mustSh(`edgeward logs --json --policy ${POLICY_NAME}`)
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logs).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ PolicyName: POLICY_NAME, Type: 'MatchedHostPolicy', Operation: 'Process', Resource: '/srv/blocked/busybox', Action: 'Block', HostName: 'board-reboot' }),
        expect.objectContaining({ PolicyName: POLICY_NAME, Type: 'MatchedHostPolicy', Operation: 'File', Resource: '/root/secret.txt', Action: 'Block' }),
      ]),
    );
    // the alerts file holds both boots' alerts (it is on the machine's disk)
    const file = m.mustSh('cat /var/log/edgeward/alerts.jsonl').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(file.filter((a) => a.PolicyName === POLICY_NAME && a.Operation === 'Process').length).toBeGreaterThanOrEqual(logs.filter((a) => a.Operation === 'Process').length + 1);
    // the journal of this boot says it loaded the applied policy before READY
    expect(m.journal('edgeward', 200)).toMatch(/"event":"ready"/);
  });

  test('a second reboot by power cycle (docker restart: no clean shutdown of the agent) enforces again too', async () => {
    m.mustSh('rm -f /var/lib/boot-probe/*');
    const initBefore = m.initPid();
    const t0 = Date.now();
    const r = spawnSync('docker', ['restart', '-t', '1', NAME], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(0);
    expect(m.initPid()).not.toBe(initBefore);
    await m.waitBooted(180_000);
    // eslint-disable-next-line no-console
    console.log(`docker restart -> system up: ${Date.now() - t0} ms`);
    expect(m.prop('ActiveState')).toBe('active');
    await waitFor('boot-probe.service to have run', () => (m.sh('cat /var/lib/boot-probe/result').stdout.includes('read rc=') ? true : undefined), 60_000);
    expect(m.mustSh('cat /var/lib/boot-probe/result')).toMatch(/^exec rc=12[67]$/m);
    expect(m.sh('/srv/blocked/busybox true').stderr).toMatch(DENIED);
  }, 10 * 60_000);
});
