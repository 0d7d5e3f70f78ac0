// Container policies (KubeArmorPolicy) on the compat backend with a real
// dockerd: KubeArmor's non-Kubernetes scenarios as a user runs them
// (bin/edgeward agent, policies as files), each checked in the selected
// container, in another container and on the host. Host policies apply to
// the host only, also for a file both see and after `unshare -m`.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { docker, DockerdHandle, ensureDockerd } from '../helpers/docker';
import { containerPolicy, hostPolicy } from '../helpers/policies';
import { BUSYBOX, makeTempDir, requireIntegrationEnvironment, run, waitFor } from '../helpers/system';

const PREFIX = `ew-ct-${process.pid}`;
const IMAGE = `edgeward-test/containers-${process.pid}:latest`;
/** the same name in the image and on the host: a symlink in the image points at it */
const VICTIM = `/tmp/ew-victim-${process.pid}`;
const APPLETS = ['sh', 'cat', 'echo', 'sleep', 'true', 'ls', 'nc', 'unshare', 'mkdir'];

/**
 * The dynamic loader and libraries /usr/bin/true needs, from ldd: [path the
 * program asks for, file to copy]. The loader is the first entry.
 */
function dynamicRuntime(): Array<[string, string]> {
  const r = spawnSync('ldd', ['/usr/bin/true'], { encoding: 'utf8' });
  const out: Array<[string, string]> = [];
  for (const line of (r.stdout ?? '').split('\n')) {
    const lib = /=>\s+(\/\S+)/.exec(line);
    const loader = /^\s*(\/\S+)\s+\(/.exec(line);
    if (loader) out.unshift([loader[1], fs.realpathSync(loader[1])]);
    else if (lib) out.push([lib[1], fs.realpathSync(lib[1])]);
  }
  if (r.status !== 0 || out.length < 2 || !/ld-/.test(out[0][0])) {
    throw new Error(`cannot find the dynamic loader and libraries of /usr/bin/true with ldd (status ${r.status}): ${r.stdout}${r.stderr}`);
  }
  return out;
}

/**
 * A root filesystem made here and imported: busybox, two more copies of it
 * as separate programs, a dynamically linked program with its own loader,
 * files to guard.
 */
function buildImage(): void {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-ct-rootfs-'));
  const put = (p: string, content: string) => {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), content);
  };
  fs.mkdirSync(path.join(root, 'bin'));
  fs.copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'));
  for (const a of APPLETS) fs.symlinkSync('busybox', path.join(root, 'bin', a));
  fs.mkdirSync(path.join(root, 'usr', 'bin'), { recursive: true });
  // "busybox-*" names run their first argument as the applet
  for (const tool of ['busybox-tool', 'busybox-reader']) fs.copyFileSync(BUSYBOX, path.join(root, 'usr', 'bin', tool));
  // a dynamic program and the image's own copy of the loader (not the host's inode)
  for (const [at, from] of dynamicRuntime()) {
    fs.mkdirSync(path.dirname(path.join(root, at)), { recursive: true });
    fs.copyFileSync(from, path.join(root, at));
    fs.chmodSync(path.join(root, at), 0o755);
  }
  fs.copyFileSync('/usr/bin/true', path.join(root, 'usr', 'bin', 'dyn-tool'));
  fs.chmodSync(path.join(root, 'usr', 'bin', 'dyn-tool'), 0o755);
  put('secret/a.txt', 'a\n');
  put('secret/sub/b.txt', 'b\n');
  put('etc/cred', 'password\n');
  put('data/log.txt', 'log\n');
  put('data/audit.txt', 'audit\n');
  put(VICTIM, 'image victim\n');
  fs.symlinkSync(VICTIM, path.join(root, 'lnk')); // absolute: must resolve inside the container
  for (const f of ['bin/busybox', 'usr/bin/busybox-tool', 'usr/bin/busybox-reader']) fs.chmodSync(path.join(root, f), 0o755);
  const tar = spawnSync('tar', ['-C', root, '-c', '.'], { maxBuffer: 64 * 2 ** 20 });
  const imp = spawnSync('docker', ['import', '-', IMAGE], { input: tar.stdout, encoding: 'utf8' });
  fs.rmSync(root, { recursive: true, force: true });
  if (imp.status !== 0) throw new Error(`docker import failed: ${imp.stderr}`);
}

/** docker exec NAME sh -c SCRIPT */
function sh(name: string, script: string): { status: number | null; stdout: string; stderr: string } {
  return docker('exec', name, 'sh', '-c', script);
}

const DENIED = /Permission denied|Operation not permitted/;

describe('container policies on the compat backend (real dockerd)', () => {
  let dockerd: DockerdHandle;
  let agent: AgentUnderTest | undefined;
  let work: string;
  let shared: string;
  const A = `${PREFIX}-a`;
  const APRIV = `${PREFIX}-a-priv`; // may unshare(CLONE_NEWNS)
  const B = `${PREFIX}-b`;
  const ALLOW = `${PREFIX}-allow`; // in allow-list mode (process), default posture block from the config
  const ids: Record<string, string> = {};

  function runContainer(name: string, labels: Record<string, string>, extra: string[] = []): string {
    const labelArgs = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
    const r = docker('run', '-d', '--name', name, ...labelArgs, '-v', `${shared}:/shared`, ...extra, IMAGE, 'sleep', '3600');
    if (r.status !== 0) throw new Error(`docker run ${name}: ${r.stderr}`);
    ids[name] = r.stdout;
    return r.stdout;
  }

  const alerts = () => agent!.alerts();

  beforeAll(async () => {
    requireIntegrationEnvironment();
    dockerd = await ensureDockerd();
    buildImage();
    work = makeTempDir('containers-policies');
    fs.chmodSync(work, 0o755);
    shared = path.join(work, 'shared');
    fs.mkdirSync(shared);
    fs.writeFileSync(path.join(shared, 'f'), 'shared\n');
    fs.writeFileSync(VICTIM, 'host victim\n');
    const policies = path.join(work, 'policies');
    fs.mkdirSync(policies);
    const appA = { app: 'a' };
    const files: Record<string, string> = {
      'proc.yaml': containerPolicy(
        'ksp-block-tool',
        appA,
        '  severity: 6\n  message: tool blocked\n  process:\n    matchPaths:\n    - path: /usr/bin/busybox-tool\n    - path: /usr/bin/dyn-tool\n  action: Block\n',
      ),
      'dir.yaml': containerPolicy(
        'ksp-secret-dir',
        { 'kubearmor.io/container.name': A },
        '  file:\n    matchDirectories:\n    - dir: /secret/\n      recursive: true\n  action: Block\n',
      ),
      'readonly.yaml': containerPolicy('ksp-cred-readonly', appA, '  file:\n    matchPaths:\n    - path: /etc/cred\n      readOnly: true\n  action: Block\n'),
      'fromsource.yaml': containerPolicy(
        'ksp-log-from-reader',
        appA,
        '  file:\n    matchPaths:\n    - path: /data/log.txt\n      fromSource:\n      - path: /usr/bin/busybox-reader\n  action: Block\n',
      ),
      'audit.yaml': containerPolicy('ksp-audit', appA, '  file:\n    matchPaths:\n    - path: /data/audit.txt\n  action: Audit\n'),
      'net.yaml': containerPolicy('ksp-no-tcp', appA, '  network:\n    matchProtocols:\n    - protocol: tcp\n  action: Block\n'),
      'link.yaml': containerPolicy('ksp-link', appA, '  file:\n    matchPaths:\n    - path: /lnk\n  action: Block\n'),
      'allowlist.yaml': containerPolicy(
        'ksp-allow-busybox',
        { app: 'allowlist' },
        '  process:\n    matchPaths:\n    - path: /bin/busybox\n  action: Allow\n',
      ),
      'host.yaml': hostPolicy('hsp-shared-file', `  file:\n    matchPaths:\n    - path: ${path.join(shared, 'f')}\n  action: Block\n`),
    };
    for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(policies, f), text);
    // Started before the agent: found when it lists the running containers.
    runContainer(A, { app: 'a', tier: 'edge' });
    runContainer(APRIV, { app: 'a' }, ['--cap-add', 'SYS_ADMIN', '--security-opt', 'seccomp=unconfined']);
    runContainer(B, { app: 'b' });
    runContainer(ALLOW, { app: 'allowlist' });
    const config = path.join(work, 'config.yaml');
    fs.writeFileSync(config, 'defaultPosture:\n  file: block\n');
    agent = await startAgent({ policies, workDir: work, readyTimeoutMs: 60_000, extraArgs: ['--config', config] });
    const ready = agent.logs().find((l) => l.event === 'ready');
    expect(ready).toMatchObject({ backend: 'compat', errors: 0 });
  }, 180_000);

  afterAll(async () => {
    await agent?.stop();
    const left = docker('ps', '-aq', '--filter', `name=${PREFIX}`).stdout.split('\n').filter(Boolean);
    if (left.length) docker('rm', '-f', ...left);
    docker('rmi', '-f', IMAGE);
    if (fs.existsSync(VICTIM)) fs.rmSync(VICTIM);
    if (work) fs.rmSync(work, { recursive: true, force: true });
    await dockerd?.stop();
  }, 90_000);

  test('a process blocked in one container only: the same binary runs in another container and on the host', async () => {
    const a = sh(A, 'busybox-tool true; echo rc=$?');
    expect(a.stderr).toMatch(/busybox-tool: (Permission denied|Operation not permitted)/);
    expect(a.stdout).toMatch(/rc=12[67]/);
    expect(docker('exec', A, 'busybox-tool', 'true').status).not.toBe(0);
    expect(sh(B, 'busybox-tool true; echo rc=$?').stdout).toBe('rc=0');
    // the host runs container A's own file (the very inode marked for A) unhindered
    const pidA = Number(docker('inspect', '-f', '{{.State.Pid}}', A).stdout);
    const hostRun = run(`/proc/${pidA}/root/usr/bin/busybox-tool`, ['echo', 'host']);
    expect(hostRun).toMatchObject({ status: 0, stdout: 'host\n' });
    // and the other programs of A still run
    expect(sh(A, 'echo fine').stdout).toBe('fine');

    const alert = await waitFor('the process alert', () =>
      alerts().find((x) => x.PolicyName === 'ksp-block-tool' && x.ContainerName === A),
    );
    expect(alert).toMatchObject({
      Type: 'MatchedPolicy',
      ContainerID: ids[A],
      ContainerImage: IMAGE,
      Labels: 'app=a,tier=edge',
      NamespaceName: 'container_namespace',
      Operation: 'Process',
      Resource: '/usr/bin/busybox-tool',
      Severity: '6',
      Message: 'tool blocked',
      Action: 'Block',
      Result: 'Permission denied',
    });
    expect(alerts().filter((x) => x.PolicyName === 'ksp-block-tool' && x.ContainerName !== A && x.ContainerName !== APRIV)).toEqual([]);
  });

  test("running a blocked dynamic program through the image's own dynamic loader is blocked too", () => {
    const loader = dynamicRuntime()[0][0];
    expect(sh(B, `dyn-tool; echo rc=$?; ${loader} /usr/bin/dyn-tool; echo rc=$?`).stdout).toBe('rc=0\nrc=0');
    expect(sh(A, 'dyn-tool; echo rc=$?').stdout).toMatch(/rc=12[67]/);
    const viaLoader = sh(A, `${loader} /usr/bin/dyn-tool; echo rc=$?`);
    expect(viaLoader.stdout).not.toBe('rc=0');
    expect(viaLoader.stderr).toMatch(DENIED);
  });

  test('docker exec processes, their children and grandchildren are covered', () => {
    const r = sh(A, 'sh -c "sh -c \\"busybox-tool true; echo rc=\\\\\\$?\\""');
    expect(r.stdout).toMatch(/rc=12[67]/);
    // a background process started by an earlier exec, running on when the exec returned
    expect(docker('exec', '-d', A, 'sh', '-c', 'sleep 1; busybox-tool true; echo rc=$? > /tmp/late').status).toBe(0);
    return waitFor('the late attempt', () => {
      const out = sh(A, 'cat /tmp/late 2>/dev/null').stdout;
      return out ? out : undefined;
    }, 10_000).then((late) => expect(late).toMatch(/rc=12[67]/));
  });

  test('a directory blocked recursively in the container named by kubearmor.io/container.name', () => {
    expect(sh(A, 'cat /secret/a.txt').stderr).toMatch(DENIED);
    expect(sh(A, 'cat /secret/sub/b.txt').stderr).toMatch(DENIED);
    expect(sh(A, 'ls /secret').status).toBe(0); // listing is not opening the files
    expect(sh(B, 'cat /secret/a.txt /secret/sub/b.txt').stdout).toBe('a\nb');
  });

  test('readOnly: reads work, writes are blocked, in the selected container only', () => {
    expect(sh(A, 'cat /etc/cred').stdout).toBe('password');
    const w = sh(A, 'echo x >> /etc/cred; echo rc=$?');
    expect(w.stderr).toMatch(DENIED);
    expect(w.stdout).toBe('rc=1');
    // a hard link made in the container is the same (copied-up) file
    const link = sh(A, 'ln /etc/cred /tmp/cred-link && cat /tmp/cred-link && echo y >> /tmp/cred-link; echo rc=$?');
    expect(link.stdout).toBe('password\nrc=1');
    expect(link.stderr).toMatch(DENIED);
    expect(sh(A, 'cat /etc/cred').stdout).toBe('password');
    expect(sh(B, 'echo x >> /etc/cred && cat /etc/cred').stdout).toBe('password\nx');
  });

  test('fromSource: only the named program (a path inside the container) is blocked', () => {
    expect(sh(A, 'busybox-reader cat /data/log.txt').stderr).toMatch(DENIED);
    expect(sh(A, 'cat /data/log.txt').stdout).toBe('log');
    expect(sh(B, 'busybox-reader cat /data/log.txt').stdout).toBe('log');
  });

  test('Audit: the read works and is reported with Result "Passed" and the container', async () => {
    expect(sh(A, 'cat /data/audit.txt').stdout).toBe('audit');
    const alert = await waitFor('the audit alert', () => alerts().find((x) => x.PolicyName === 'ksp-audit'));
    expect(alert).toMatchObject({
      Type: 'MatchedPolicy',
      ContainerID: ids[A],
      ContainerName: A,
      Operation: 'File',
      Resource: '/data/audit.txt',
      Action: 'Audit',
      Result: 'Passed',
    });
    expect(sh(B, 'cat /data/audit.txt').stdout).toBe('audit');
    await new Promise((r) => setTimeout(r, 300));
    expect(alerts().filter((x) => x.PolicyName === 'ksp-audit' && x.ContainerName === B)).toEqual([]);
  });

  test('a network protocol blocked in one container only', async () => {
    const a = sh(A, 'nc -w1 127.0.0.1 9; echo rc=$?');
    expect(a.stderr).toMatch(/Operation not permitted|Permission denied/);
    const b = sh(B, 'nc -w1 127.0.0.1 9; echo rc=$?');
    expect(b.stderr).toMatch(/Connection refused/); // the socket was made; nothing listens
    const alert = await waitFor('the network alert', () => alerts().find((x) => x.PolicyName === 'ksp-no-tcp'));
    expect(alert).toMatchObject({ ContainerName: A, Operation: 'Network', Resource: 'tcp', Result: 'Permission denied', Type: 'MatchedPolicy' });
  });

  test('allow-list (Allow + defaultPosture file: block in the config): only the allowed program runs there; the alert names DefaultPosture', async () => {
    expect(sh(ALLOW, 'echo hi').stdout).toBe('hi'); // sh and echo are /bin/busybox
    expect(sh(ALLOW, 'busybox-tool true').stderr).toMatch(DENIED);
    expect(sh(B, 'busybox-tool true').status).toBe(0);
    const alert = await waitFor('the default-posture alert', () =>
      alerts().find((x) => x.PolicyName === 'DefaultPosture' && x.ContainerName === ALLOW),
    );
    expect(alert).toMatchObject({
      Type: 'MatchedPolicy',
      ContainerID: ids[ALLOW],
      Operation: 'Process',
      Resource: '/usr/bin/busybox-tool',
      Severity: '',
      Action: 'Block',
      Result: 'Permission denied',
    });
    expect(alerts().filter((x) => x.PolicyName === 'DefaultPosture' && x.ContainerName !== ALLOW)).toEqual([]);
  });

  test('an absolute symlink in the image is resolved inside the container, not on the host', () => {
    // /lnk -> VICTIM: the container's VICTIM is what the rule guards
    expect(sh(A, 'cat /lnk').stderr).toMatch(DENIED);
    expect(sh(A, `cat ${VICTIM}`).stderr).toMatch(DENIED);
    expect(sh(B, 'cat /lnk').stdout).toBe('image victim');
    expect(fs.readFileSync(VICTIM, 'utf8')).toBe('host victim\n');
  });

  test('a host policy does not apply inside containers, even to the same file; unshare -m on the host does not escape it', () => {
    expect(run('/bin/cat', [path.join(shared, 'f')]).stderr).toMatch(DENIED);
    expect(run('/usr/bin/unshare', ['-m', '/bin/cat', path.join(shared, 'f')]).stderr).toMatch(DENIED);
    expect(run('/usr/bin/unshare', ['-m', '-p', '-f', '/bin/cat', path.join(shared, 'f')]).stderr).toMatch(DENIED);
    expect(sh(A, 'cat /shared/f').stdout).toBe('shared');
    expect(sh(B, 'cat /shared/f').stdout).toBe('shared');
  });

  test('a container process that unshares its mount namespace stays under its container policies (and outside host ones)', () => {
    const r = sh(APRIV, 'unshare -m sh -c "busybox-tool true; echo rc=\\$?; cat /shared/f"');
    expect(r.stdout).toMatch(/rc=12[67]\nshared/);
    expect(sh(APRIV, 'unshare -m -p -f sh -c "busybox-tool true; echo rc=\\$?"').stdout).toMatch(/rc=12[67]/);
    // the name selector ("…-a" from the start) picks this container too
    expect(sh(APRIV, 'unshare -m cat /secret/a.txt').stderr).toMatch(DENIED);
  });

  test('a container started after the policy is enforced within a second; a rename out of a name selector lifts it', async () => {
    const C = `${PREFIX}-c`;
    runContainer(C, { app: 'a' });
    const started = Date.now();
    let blockedAt: number | undefined;
    while (Date.now() - started < 5_000) {
      const t = Date.now();
      if (/rc=12[67]/.test(sh(C, 'busybox-tool true; echo rc=$?').stdout)) {
        blockedAt = t;
        break;
      }
    }
    expect(blockedAt).toBeDefined();
    console.log(`new container enforced ${blockedAt! - started} ms after docker run returned`);
    expect(blockedAt! - started).toBeLessThan(1000);

    const D = `${PREFIX}-a-renamed-later`;
    runContainer(D, { app: 'x' });
    await waitFor('the name selector to pick the new container', () => (DENIED.test(sh(D, 'cat /secret/a.txt').stderr) ? true : undefined), 5_000);
    expect(docker('rename', D, `${PREFIX}-d`).status).toBe(0);
    await waitFor('the rename to lift the rule', () => (sh(`${PREFIX}-d`, 'cat /secret/a.txt').stdout === 'a' ? true : undefined), 5_000);
  });
});
