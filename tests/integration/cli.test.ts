// The CLI as a user runs it: bin/edgeward probe, policy validate, and agent
// refusing a bad config with the key named.
import * as fs from 'fs';
import * as path from 'path';
import { CLI, makeTempDir, requireIntegrationEnvironment, run } from '../helpers/system';

const edgeward = (...args: string[]) => run(process.execPath, [CLI, ...args]);

describe('edgeward CLI', () => {
  let work: string;
  beforeAll(() => {
    requireIntegrationEnvironment();
    work = makeTempDir('cli');
  });

  test('probe --json names the kernel, the LSMs, the backend and what each rule kind gets', () => {
    const r = edgeward('probe', '--json');
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.kernel).toBe(fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim());
    expect(report.lsms).toEqual(fs.readFileSync('/sys/kernel/security/lsm', 'utf8').trim().split(','));
    expect(['bpf-lsm', 'compat', 'audit-only']).toContain(report.backend);
    expect(Object.keys(report.ruleKinds).sort()).toEqual(['capabilities', 'file', 'network', 'process']);
    for (const v of Object.values(report.ruleKinds)) expect(['enforce', 'audit', 'unsupported']).toContain(v);
    // this machine's kernel refuses BPF-LSM programs: the probe must say so, with the reason
    if (!report.features.bpfLsm.ok) expect(report.reasons.join('\n')).toMatch(/bpf-lsm: /);
  });

  test('probe prints a readable report', () => {
    const r = edgeward('probe');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^kernel: /m);
    expect(r.stdout).toMatch(/^backend: /m);
  });

  test('policy validate: exit 0 for the bundled defaults, exit 1 with file, document and field for a bad file', () => {
    const good = edgeward('policy', 'validate', path.join(__dirname, '..', '..', 'policies', 'default'));
    expect(good.status).toBe(0);
    expect(good.stdout).toMatch(/^ok /m);

    const bad = path.join(work, 'bad.yaml');
    fs.writeFileSync(
      bad,
      `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: bad
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  file:
    matchPaths:
      - path: etc/passwd
  action: Block
`,
    );
    const r = edgeward('policy', 'validate', bad);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain(bad);
    expect(r.stdout).toMatch(/document 1: spec\.file\.matchPaths\[0\]\.path: /);
    const json = JSON.parse(edgeward('policy', 'validate', '--json', bad).stdout);
    expect(json.valid).toBe(false);
  });

  test('agent refuses a config with an unknown or bad key, naming it, exit 2', () => {
    const cfg = path.join(work, 'config.yaml');
    fs.writeFileSync(cfg, 'monitor:\n  ringBufferBytes: 5000\n');
    const r = edgeward('agent', '--config', cfg);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/monitor\.ringBufferBytes/);
    fs.writeFileSync(cfg, 'monitr: {}\n');
    expect(edgeward('agent', '--config', cfg).stderr).toMatch(/monitr/);
  });

  test('usage errors exit 2', () => {
    expect(edgeward('frobnicate').status).toBe(2);
    expect(edgeward('agent', '--nope').status).toBe(2);
  });

  test('unload with nothing pinned says so, exit 0; it takes no arguments', () => {
    const pinned = '/sys/fs/bpf/edgeward';
    const before = fs.existsSync(pinned) ? fs.readdirSync(pinned).filter((n) => n.startsWith('lsm-')) : [];
    // this kernel cannot run bpf-lsm, so no agent here pinned anything
    expect(before).toEqual([]);
    const r = edgeward('unload');
    expect(r.stdout).toBe('nothing pinned\n');
    expect(r.status).toBe(0);
    expect(edgeward('unload', 'x').status).toBe(2);
  });
});
