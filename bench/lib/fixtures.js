'use strict';
// Temporary trees, agent configs and policy directories for the bench
// configurations.
const fs = require('fs');
const os = require('os');
const path = require('path');

function makeWorkDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-bench-'));
}

/** An agent config file; `monitor` selects the tracepoint groups. */
function writeConfig(workDir, name, { monitor }) {
  const file = path.join(workDir, `${name}.config.yaml`);
  const stateDir = path.join(workDir, `${name}.state`);
  fs.mkdirSync(stateDir, { recursive: true });
  fs.writeFileSync(
    file,
    [
      'backend: auto',
      `stateDirectory: ${stateDir}`,
      'monitor:',
      `  process: ${monitor.process}`,
      `  file: ${monitor.file}`,
      `  network: ${monitor.network}`,
      'logging:',
      '  level: info',
      '  format: json',
      'alerts:',
      '  stdout: false',
      '',
    ].join('\n'),
  );
  return file;
}

function emptyPolicyDir(workDir, name) {
  const dir = path.join(workDir, `${name}.policies`);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * The compat configuration's targets: `fileRules` files under protected/,
 * each blocked by a KubeArmorHostPolicy matchPaths entry (10 policies of
 * fileRules/10 paths), plus network protocol rules that never match the
 * bench's TCP/UDP traffic (raw, icmp, icmpv6 and udp, each only from an
 * executable that never runs). The unprotected file the open loop opens
 * lives in the SAME directory as the protected ones.
 */
function compatFixture(workDir, { fileRules, unrelatedBinary }) {
  const protectedDir = path.join(workDir, 'protected');
  fs.mkdirSync(protectedDir, { recursive: true });
  const protectedFiles = [];
  for (let i = 0; i < fileRules; i++) {
    const f = path.join(protectedDir, `secret-${String(i).padStart(4, '0')}.conf`);
    fs.writeFileSync(f, 'x\n');
    protectedFiles.push(f);
  }
  const unprotected = path.join(protectedDir, 'unprotected.conf');
  fs.writeFileSync(unprotected, 'x\n');

  const unrelatedDir = path.join(workDir, 'unrelated');
  fs.mkdirSync(unrelatedDir, { recursive: true });
  const unrelated = path.join(unrelatedDir, 'never-run');
  fs.copyFileSync(unrelatedBinary, unrelated);
  fs.chmodSync(unrelated, 0o755);

  const dir = emptyPolicyDir(workDir, 'compat');
  const perPolicy = Math.ceil(fileRules / 10);
  for (let p = 0; p * perPolicy < fileRules; p++) {
    const paths = protectedFiles.slice(p * perPolicy, (p + 1) * perPolicy);
    fs.writeFileSync(
      path.join(dir, `bench-files-${p}.yaml`),
      [
        'apiVersion: security.kubearmor.com/v1',
        'kind: KubeArmorHostPolicy',
        'metadata:',
        `  name: bench-files-${p}`,
        'spec:',
        '  nodeSelector:',
        '    matchLabels:',
        '      kubearmor.io/hostname: "*"',
        '  file:',
        '    matchPaths:',
        ...paths.map((f) => `      - path: ${f}`),
        '  action: Block',
        '',
      ].join('\n'),
    );
  }
  const protocols = ['raw', 'icmp', 'icmpv6', 'udp'];
  fs.writeFileSync(
    path.join(dir, 'bench-network.yaml'),
    [
      'apiVersion: security.kubearmor.com/v1',
      'kind: KubeArmorHostPolicy',
      'metadata:',
      '  name: bench-network',
      'spec:',
      '  nodeSelector:',
      '    matchLabels:',
      '      kubearmor.io/hostname: "*"',
      '  network:',
      '    matchProtocols:',
      ...protocols.flatMap((p) => [`      - protocol: ${p}`, '        fromSource:', `          - path: ${unrelated}`]),
      '  action: Block',
      '',
    ].join('\n'),
  );
  return { policyDir: dir, protectedFiles, unprotected, networkRules: protocols.length };
}

module.exports = { makeWorkDir, writeConfig, emptyPolicyDir, compatFixture };
