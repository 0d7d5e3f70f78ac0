// The enforcement conformance suite: bin/edgeward agent with a policy
// directory of KubeArmorHostPolicy files; programs, files and sockets are
// really refused, and every decision is one alert with KubeArmor's fields.
// One source for every backend: EDGEWARD_BACKEND picks it (default compat;
// tests/vm runs this file in a BPF-LSM guest with EDGEWARD_BACKEND=bpf-lsm).
import * as fs from 'fs';
import * as path from 'path';
import { AgentUnderTest, startAgent } from '../helpers/agent_process';
import { busyboxCopy, makeTempDir, nodeChild, requireIntegrationEnvironment, run, waitFor } from '../helpers/system';
import { hostPolicy } from '../helpers/policies';

const UDP_SOCKET = `require('dgram').createSocket('udp4').bind(0, '127.0.0.1', function () { console.log('ok'); this.close(); }).on('error', (e) => { console.log(e.code); })`;
const TCP_SOCKET = `const s = require('net').createServer().listen(0, '127.0.0.1', () => { console.log('ok'); s.close(); }).on('error', (e) => console.log(e.code));`;

const BACKEND = process.env.EDGEWARD_BACKEND ?? 'compat';

describe(`edgeward agent on the real kernel (${BACKEND} backend)`, () => {
  let work: string;
  let policies: string;
  let blocked: string; // a busybox copy whose exec is blocked
  let shell: string; // an allowed busybox copy used as the acting program
  let data: string;
  let nodeCopy: string; // a second node executable, for fromSource
  let agent: AgentUnderTest | undefined;

  beforeAll(async () => {
    requireIntegrationEnvironment();
    work = makeTempDir('agent');
    policies = path.join(work, 'policies');
    fs.mkdirSync(policies);
    blocked = busyboxCopy(work, 'blocked');
    shell = busyboxCopy(work, 'allowed');
    data = path.join(work, 'data');
    fs.mkdirSync(data);
    fs.writeFileSync(path.join(data, 'secret.txt'), 'secret\n');
    fs.writeFileSync(path.join(data, 'neighbour.txt'), 'neighbour\n');
    fs.writeFileSync(path.join(data, 'config.txt'), 'config\n');
    fs.writeFileSync(path.join(data, 'audited.txt'), 'audited\n');
    nodeCopy = path.join(work, 'node-copy');
    fs.copyFileSync(process.execPath, nodeCopy);
    fs.chmodSync(nodeCopy, 0o755);

    fs.writeFileSync(
      path.join(policies, 'process.yaml'),
      hostPolicy(
        'block-tool',
        `  severity: 7
  tags: ["MITRE", "T1059"]
  message: blocked tool started
  process:
    matchPaths:
      - path: ${blocked}
  action: Block
`,
      ),
    );
    fs.writeFileSync(
      path.join(policies, 'files.yaml'),
      hostPolicy(
        'protect-data',
        `  severity: 5
  file:
    matchPaths:
      - path: ${path.join(data, 'secret.txt')}
      - path: ${path.join(data, 'config.txt')}
        readOnly: true
  action: Block
`,
      ) +
        '---\n' +
        hostPolicy(
          'audit-data',
          `  file:
    matchPaths:
      - path: ${path.join(data, 'audited.txt')}
  action: Audit
`,
        ),
    );
    fs.writeFileSync(
      path.join(policies, 'network.yaml'),
      hostPolicy(
        'no-udp',
        `  network:
    matchProtocols:
      - protocol: udp
        fromSource: []
  action: Block
`,
      ),
    );
    // (8) a broken file: reported, and the others still enforce.
    fs.writeFileSync(
      path.join(policies, 'broken.yaml'),
      hostPolicy(
        'broken',
        `  file:
    matchPaths:
      - path: relative/path.txt
  action: Block
`,
      ),
    );
    agent = await startAgent({ policies, workDir: work, extraArgs: ['--backend', BACKEND, '--detach-on-exit'] });
  });

  afterAll(async () => {
    if (agent) await agent.stop();
  });

  const alertsFor = (resource: string) => agent!.alerts().filter((a) => a.Resource === resource);

  test('the requested backend is the one enforcing (no silent fallback)', () => {
    const ready = agent!.logs().find((l) => l.event === 'ready');
    expect(ready?.backend).toBe(BACKEND);
  });

  test('(8) the broken policy is reported with file, field and reason', () => {
    const errors = agent!.logs().filter((l) => l.level === 'error').map((l) => String(l.message));
    const line = errors.find((m) => m.includes('broken.yaml'));
    expect(line).toBeDefined();
    expect(line).toMatch(/matchPaths\[0\]\.path/);
  });

  test('(1) exec of a blocked binary fails with EPERM: directly, hard link, symlink, relative path', () => {
    expect(run(blocked, ['true']).spawnError).toBe('EPERM');
    const hard = path.join(work, 'hard-link');
    fs.linkSync(blocked, hard);
    expect(run(hard, ['true']).spawnError).toBe('EPERM');
    const sym = path.join(work, 'sym-link');
    fs.symlinkSync(blocked, sym);
    expect(run(sym, ['true']).spawnError).toBe('EPERM');
    expect(run('./busybox', ['true'], { cwd: path.dirname(blocked) }).spawnError).toBe('EPERM');
    // the allowed copy of the same program still runs
    expect(run(shell, ['true']).status).toBe(0);
  });

  test('(2) reading a blocked file fails, its neighbour reads', () => {
    const denied = run(shell, ['cat', path.join(data, 'secret.txt')]);
    expect(denied.status).not.toBe(0);
    expect(denied.stderr).toMatch(/Operation not permitted/);
    const ok = run(shell, ['cat', path.join(data, 'neighbour.txt')]);
    expect(ok.status).toBe(0);
    expect(ok.stdout).toBe('neighbour\n');
  });

  test('(3) readOnly: reading works, writing is refused', () => {
    const file = path.join(data, 'config.txt');
    expect(run(shell, ['cat', file]).stdout).toBe('config\n');
    const write = run(shell, ['sh', '-c', `echo more >> ${file}`]);
    expect(write.status).not.toBe(0);
    expect(write.stderr).toMatch(/Operation not permitted/);
    expect(fs.readFileSync(file, 'utf8')).toBe('config\n');
  });

  test('(4) a blocked protocol fails while tcp works', () => {
    expect(nodeChild(UDP_SOCKET).stdout.trim()).toBe('EPERM');
    expect(nodeChild(TCP_SOCKET).stdout.trim()).toBe('ok');
  });

  test('(5) Audit lets it through and reports Result "Passed"', async () => {
    const file = path.join(data, 'audited.txt');
    const r = run(shell, ['cat', file]);
    expect(r.stdout).toBe('audited\n');
    const alert = await waitFor('an audit alert', () => alertsFor(file)[0]);
    expect(alert).toMatchObject({ Action: 'Audit', Result: 'Passed', PolicyName: 'audit-data', Operation: 'File' });
  });

  test('(6) each Block produces exactly one alert with the right fields', async () => {
    const before = alertsFor(blocked).length;
    // the shell prints its pid, then the exec of the blocked binary is refused in that same process
    const r = run(shell, ['sh', '-c', `echo $$; exec ${blocked} true`]);
    const pid = Number(r.stdout.trim());
    expect(pid).toBeGreaterThan(0);
    const alert = await waitFor('the block alert', () => alertsFor(blocked).find((a) => a.PID === pid));
    await new Promise((res) => setTimeout(res, 300)); // a duplicate would arrive by now
    expect(alertsFor(blocked).length).toBe(before + 1);
    expect(alert).toMatchObject({
      PolicyName: 'block-tool',
      Severity: '7',
      Tags: 'MITRE,T1059',
      ATags: ['MITRE', 'T1059'],
      Message: 'blocked tool started',
      Type: 'MatchedHostPolicy',
      Operation: 'Process',
      Resource: blocked,
      ProcessName: blocked,
      Source: shell,
      ParentProcessName: process.execPath,
      HostPID: pid,
      PID: pid,
      PPID: process.pid,
      HostPPID: process.pid,
      UID: 0,
      Action: 'Block',
      Result: 'Permission denied',
      Data: 'syscall=SYS_EXECVE',
    });
    expect(typeof alert.Timestamp).toBe('number');
    expect(Math.abs((alert.Timestamp as number) - Date.now() / 1000)).toBeLessThan(30);
    expect(String(alert.UpdatedTime)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(typeof alert.HostName).toBe('string');

    const file = path.join(data, 'secret.txt');
    const fileBefore = alertsFor(file).length;
    const f = run(shell, ['sh', '-c', `echo $$; exec ${shell} cat ${file}`]);
    const filePid = Number(f.stdout.trim());
    const fileAlert = await waitFor('the file alert', () => alertsFor(file).find((a) => a.PID === filePid));
    await new Promise((res) => setTimeout(res, 300));
    expect(alertsFor(file).length).toBe(fileBefore + 1);
    expect(fileAlert).toMatchObject({ Operation: 'File', ProcessName: shell, Action: 'Block', Result: 'Permission denied', PolicyName: 'protect-data' });

    const netBefore = agent!.alerts().filter((a) => a.Operation === 'Network').length;
    const n = nodeChild(`console.log(process.pid); ${UDP_SOCKET}`);
    const netPid = Number(n.stdout.split('\n')[0]);
    const netAlert = await waitFor('the network alert', () => agent!.alerts().find((a) => a.Operation === 'Network' && a.PID === netPid));
    await new Promise((res) => setTimeout(res, 300));
    expect(agent!.alerts().filter((a) => a.Operation === 'Network').length).toBe(netBefore + 1);
    expect(netAlert).toMatchObject({ PolicyName: 'no-udp', ProcessName: process.execPath, Action: 'Block', Result: 'Permission denied' });
  });

  test('(4b) fromSource: after a reload, udp is refused only to the named program', async () => {
    fs.writeFileSync(
      path.join(policies, 'network.yaml'),
      hostPolicy(
        'no-udp-from-copy',
        `  network:
    matchProtocols:
      - protocol: udp
        fromSource:
          - path: ${nodeCopy}
  action: Block
`,
      ),
    );
    const readyBefore = agent!.logs().filter((l) => l.event === 'ready').length;
    agent!.child.kill('SIGHUP');
    await waitFor('the reload', () => (agent!.logs().filter((l) => l.event === 'ready').length > readyBefore ? true : undefined));
    expect(nodeChild(UDP_SOCKET, nodeCopy).stdout.trim()).toBe('EPERM');
    expect(nodeChild(UDP_SOCKET).stdout.trim()).toBe('ok');
  });

  test('(7) stopping the agent (--detach-on-exit) removes its enforcement', async () => {
    const code = await agent!.stop();
    agent = undefined;
    expect(code).toBe(0);
    expect(run(blocked, ['true']).status).toBe(0);
    expect(run(shell, ['cat', path.join(data, 'secret.txt')]).stdout).toBe('secret\n');
    expect(nodeChild(UDP_SOCKET, nodeCopy).stdout.trim()).toBe('ok');
  });
});
