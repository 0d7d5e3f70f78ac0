import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  AgentConfig,
  ConfigError,
  defaultConfig,
  formatConfigError,
  loadConfigFile,
  MAX_CONFIG_FILE_BYTES,
  parseConfigText,
} from '../../agent/src/config';

const EXAMPLE = path.join(__dirname, '..', '..', 'policies', 'config.example.yaml');

const errorsOf = (text: string): string[] => parseConfigText(text, 'config.yaml').errors.map(formatConfigError);

function ok(text: string): AgentConfig {
  const r = parseConfigText(text, 'config.yaml');
  expect(r.errors.map(formatConfigError)).toEqual([]);
  if (!r.config) throw new Error('no config');
  return r.config;
}

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'edgeward-config-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('defaults', () => {
  test('defaultConfig has the documented values', () => {
    expect(defaultConfig()).toEqual({
      node: { labels: {} },
      backend: 'auto',
      policyDirectory: '/etc/edgeward/policies',
      stateDirectory: '/var/lib/edgeward',
      monitor: { process: true, file: false, network: false, ringBufferBytes: 2 * 1024 * 1024, pollIntervalMs: 50 },
      logging: { level: 'info', format: 'pretty' },
      alerts: { stdout: true, throttle: { enabled: true, maxAlerts: 20, windowMs: 1000 } },
      visibility: { process: false, file: false, network: false },
      control: { socket: '/run/edgeward/control.sock' },
      defaultPosture: { file: 'audit', network: 'audit', capabilities: 'audit' },
      selfProtection: { enabled: false, stopperPid: 1 },
    });
  });

  test('each call returns a fresh object', () => {
    const a = defaultConfig();
    a.monitor.file = true;
    a.node.labels.x = 'y';
    expect(defaultConfig().monitor.file).toBe(false);
    expect(defaultConfig().node.labels).toEqual({});
  });

  test('an empty file, a comment-only file and an empty mapping mean all defaults', () => {
    expect(ok('')).toEqual(defaultConfig());
    expect(ok('# nothing set\n')).toEqual(defaultConfig());
    expect(ok('{}\n')).toEqual(defaultConfig());
    expect(ok('---\n# leading separator\n')).toEqual(defaultConfig());
  });

  test('the shipped example is valid and spells out the defaults', () => {
    const r = loadConfigFile(EXAMPLE);
    expect(r.errors).toEqual([]);
    expect(r.config).toEqual(defaultConfig());
  });

  test('partial sections are completed with defaults', () => {
    const c = ok('monitor:\n  file: true\nlogging:\n  format: json\nnode:\n  hostname: edge-7\n');
    expect(c.monitor).toEqual({ process: true, file: true, network: false, ringBufferBytes: 2097152, pollIntervalMs: 50 });
    expect(c.logging).toEqual({ level: 'info', format: 'json' });
    expect(c.node).toEqual({ hostname: 'edge-7', labels: {} });
  });

  test('rotating files get their default size and count', () => {
    const c = ok('logging:\n  file:\n    path: /var/log/edgeward/agent.log\nalerts:\n  file:\n    path: /var/log/edgeward/alerts.jsonl\n    maxFiles: 9\n');
    expect(c.logging.file).toEqual({ path: '/var/log/edgeward/agent.log', maxSizeBytes: 10 * 1024 * 1024, maxFiles: 5 });
    expect(c.alerts.file).toEqual({ path: '/var/log/edgeward/alerts.jsonl', maxSizeBytes: 50 * 1024 * 1024, maxFiles: 9 });
  });

  test('a complete file is taken as written', () => {
    const text = `
node:
  hostname: gw-01
  labels:
    site: plant-3
    openhorizon.org/arch: arm64
backend: compat
policyDirectory: /opt/edgeward/policies
stateDirectory: /opt/edgeward/state
monitor:
  process: false
  file: true
  network: true
  ringBufferBytes: 65536
  pollIntervalMs: 1000
logging:
  level: debug
  format: json
  file: { path: /var/log/ew.log, maxSizeBytes: 4096, maxFiles: 1 }
alerts:
  stdout: false
  file: { path: /var/log/ew-alerts.log, maxSizeBytes: 1048576, maxFiles: 2 }
  throttle: { enabled: false, maxAlerts: 3, windowMs: 500 }
visibility: { process: true, file: true, network: false, logFile: { path: /var/log/ew-logs.jsonl, maxFiles: 3 } }
control: { socket: /run/ew/ctl.sock }
defaultPosture: { file: block, network: audit, capabilities: block }
selfProtection: { enabled: true, stopperPid: 0 }
`;
    expect(ok(text)).toEqual({
      node: { hostname: 'gw-01', labels: { site: 'plant-3', 'openhorizon.org/arch': 'arm64' } },
      backend: 'compat',
      policyDirectory: '/opt/edgeward/policies',
      stateDirectory: '/opt/edgeward/state',
      monitor: { process: false, file: true, network: true, ringBufferBytes: 65536, pollIntervalMs: 1000 },
      logging: { level: 'debug', format: 'json', file: { path: '/var/log/ew.log', maxSizeBytes: 4096, maxFiles: 1 } },
      alerts: {
        stdout: false,
        file: { path: '/var/log/ew-alerts.log', maxSizeBytes: 1048576, maxFiles: 2 },
        throttle: { enabled: false, maxAlerts: 3, windowMs: 500 },
      },
      visibility: { process: true, file: true, network: false, logFile: { path: '/var/log/ew-logs.jsonl', maxSizeBytes: 52428800, maxFiles: 3 } },
      control: { socket: '/run/ew/ctl.sock' },
      defaultPosture: { file: 'block', network: 'audit', capabilities: 'block' },
      selfProtection: { enabled: true, stopperPid: 0 },
    });
  });

  test('every backend choice is accepted', () => {
    for (const b of ['auto', 'bpf-lsm', 'compat', 'audit-only']) expect(ok(`backend: ${b}\n`).backend).toBe(b);
  });

  test('4096 and 1 GiB are valid ring sizes, 1 and 1000 valid poll intervals', () => {
    expect(ok('monitor: {ringBufferBytes: 4096, pollIntervalMs: 1}').monitor.ringBufferBytes).toBe(4096);
    expect(ok('monitor: {ringBufferBytes: 1073741824, pollIntervalMs: 1000}').monitor.pollIntervalMs).toBe(1000);
  });
});

describe('errors name the key', () => {
  const cases: Array<[string, string, string[]]> = [
    ['ring size not a power of two', 'monitor:\n  ringBufferBytes: 5000\n', ['config.yaml: monitor.ringBufferBytes: must be a power of two (got 5000)']],
    ['ring size too small', 'monitor:\n  ringBufferBytes: 2048\n', ['config.yaml: monitor.ringBufferBytes: must be >= 4096 (got 2048)']],
    ['ring size too large', 'monitor:\n  ringBufferBytes: 2147483648\n', ['config.yaml: monitor.ringBufferBytes: must be <= 1073741824 (got 2147483648)']],
    ['ring size as string', 'monitor:\n  ringBufferBytes: 4MiB\n', ['config.yaml: monitor.ringBufferBytes: must be an integer, not a string']],
    ['poll interval 0', 'monitor: {pollIntervalMs: 0}', ['config.yaml: monitor.pollIntervalMs: must be >= 1 (got 0)']],
    ['poll interval 1001', 'monitor: {pollIntervalMs: 1001}', ['config.yaml: monitor.pollIntervalMs: must be <= 1000 (got 1001)']],
    ['poll interval fractional', 'monitor: {pollIntervalMs: 2.5}', ['config.yaml: monitor.pollIntervalMs: must be an integer, not a number']],
    ['monitor flag as string', 'monitor: {file: "yes"}', ['config.yaml: monitor.file: must be a boolean, not a string']],
    ['YAML 1.1 yes is a string, not true', 'monitor: {network: yes}', ['config.yaml: monitor.network: must be a boolean, not a string']],
    ['unknown top-level key', 'backnd: compat\n', ['config.yaml: backnd: unknown key (did you mean "backend"?)']],
    ['unknown nested key', 'monitor:\n  rinBufferBytes: 4096\n', ['config.yaml: monitor.rinBufferBytes: unknown key (did you mean "ringBufferBytes"?)']],
    ['unknown key without a near match', 'telemetry: true\n', ['config.yaml: telemetry: unknown key']],
    ['bad backend', 'backend: ebpf\n', ['config.yaml: backend: must be one of "auto", "bpf-lsm", "compat", "audit-only" (got "ebpf")']],
    ['bad log level', 'logging: {level: verbose}', ['config.yaml: logging.level: must be one of "error", "warn", "info", "debug" (got "verbose")']],
    ['bad log format', 'logging: {format: xml}', ['config.yaml: logging.format: must be one of "pretty", "json" (got "xml")']],
    ['relative policy directory', 'policyDirectory: policies\n', ['config.yaml: policyDirectory: must be an absolute path (got "policies")']],
    ['relative state directory', 'stateDirectory: ./state\n', ['config.yaml: stateDirectory: must be an absolute path (got "./state")']],
    ['log file without path', 'logging:\n  file: {maxFiles: 3}\n', ['config.yaml: logging.file.path: is required']],
    ['relative alert file', 'alerts:\n  file: {path: alerts.log}\n', ['config.yaml: alerts.file.path: must be an absolute path (got "alerts.log")']],
    ['maxFiles 0', 'alerts:\n  file: {path: /a.log, maxFiles: 0}\n', ['config.yaml: alerts.file.maxFiles: must be >= 1 (got 0)']],
    ['tiny maxSizeBytes', 'logging:\n  file: {path: /l.log, maxSizeBytes: 10}\n', ['config.yaml: logging.file.maxSizeBytes: must be >= 4096 (got 10)']],
    ['unknown key in a file section', 'alerts:\n  file: {path: /a.log, maxsize: 10}\n', ['config.yaml: alerts.file.maxsize: unknown key (did you mean "maxSizeBytes"?)']],
    ['same file for logs and alerts', 'logging: {file: {path: /x.log}}\nalerts: {file: {path: /x.log}}\n', ['config.yaml: alerts.file.path: must differ from logging.file.path']],
    ['numeric label value', 'node:\n  labels:\n    rack: 7\n', ['config.yaml: node.labels.rack: must be a string, not an integer']],
    ['labels as a list', 'node:\n  labels: [a, b]\n', ['config.yaml: node.labels: must be a mapping, not a list']],
    ['bad hostname', 'node: {hostname: "edge 1"}', ['config.yaml: node.hostname: has an invalid format (got "edge 1")']],
    ['empty hostname', 'node: {hostname: ""}', ['config.yaml: node.hostname: must not be empty']],
    ['section as scalar', 'monitor: true\n', ['config.yaml: monitor: must be a mapping, not a boolean']],
    ['a list document', '- backend: auto\n', ['config.yaml: must be a mapping of settings, not a list']],
    ['a scalar document', 'auto\n', ['config.yaml: must be a mapping of settings, not a string']],
    ['two documents', 'backend: auto\n---\nbackend: compat\n', ['config.yaml: must hold one YAML document, found 2']],
    ['duplicated key', 'backend: auto\nbackend: compat\n', ['config.yaml: invalid YAML at line 2, column 1: duplicated mapping key']],
  ];

  test.each(cases)('%s', (_title, text, expected) => {
    const r = parseConfigText(text, 'config.yaml');
    expect(r.config).toBeUndefined();
    expect(r.errors.map(formatConfigError)).toEqual(expected);
  });

  test('several problems are all reported', () => {
    expect(errorsOf('backend: x\nmonitor: {ringBufferBytes: 5000, pollIntervalMs: 0}\nextra: 1\n').sort()).toEqual(
      [
        'config.yaml: backend: must be one of "auto", "bpf-lsm", "compat", "audit-only" (got "x")',
        'config.yaml: monitor.pollIntervalMs: must be >= 1 (got 0)',
        'config.yaml: monitor.ringBufferBytes: must be a power of two (got 5000)',
        'config.yaml: extra: unknown key',
      ].sort(),
    );
  });

  test('invalid YAML names line and column', () => {
    expect(errorsOf('monitor:\n  file: [true\nbackend: auto\n')[0]).toMatch(/^config\.yaml: invalid YAML at line \d+, column \d+: /);
    expect(errorsOf('monitor:\n\tfile: true\n')[0]).toMatch(/^config\.yaml: invalid YAML at line 2, column \d+: /);
  });

  test('an empty label name is refused', () => {
    expect(errorsOf('node:\n  labels:\n    "": x\n')).toEqual(['config.yaml: node.labels[""]: label name must not be empty']);
  });

  test('formatConfigError without a key', () => {
    const e: ConfigError = { file: '/etc/edgeward/config.yaml', path: '', message: 'is too large' };
    expect(formatConfigError(e)).toBe('/etc/edgeward/config.yaml: is too large');
  });
});

describe('loadConfigFile', () => {
  test('reads and validates a file; errors carry the file path', () => {
    const p = path.join(tmp, 'config.yaml');
    fs.writeFileSync(p, 'monitor:\n  ringBufferBytes: 12288\n');
    expect(loadConfigFile(p).errors.map(formatConfigError)).toEqual([`${p}: monitor.ringBufferBytes: must be a power of two (got 12288)`]);
    fs.writeFileSync(p, 'backend: audit-only\n');
    expect(loadConfigFile(p).config?.backend).toBe('audit-only');
  });

  test('a missing file is an error, not a throw', () => {
    const p = path.join(tmp, 'none.yaml');
    const r = loadConfigFile(p);
    expect(r.config).toBeUndefined();
    expect(r.errors.map(formatConfigError)).toEqual([`${p}: cannot read file (ENOENT: no such file or directory, open '${p}')`]);
  });

  test('a directory and an oversized file are refused', () => {
    expect(loadConfigFile(tmp).errors.map(formatConfigError)).toEqual([`${tmp}: is a directory, not a file`]);
    const big = path.join(tmp, 'big.yaml');
    fs.writeFileSync(big, Buffer.alloc(MAX_CONFIG_FILE_BYTES + 1, 0x20));
    expect(loadConfigFile(big).errors.map(formatConfigError)).toEqual([
      `${big}: is too large (${MAX_CONFIG_FILE_BYTES + 1} bytes; the limit is ${MAX_CONFIG_FILE_BYTES} bytes)`,
    ]);
  });
});

describe('the hub section', () => {
  const HUB = 'hub:\n  url: mqtts://hub:8883\n  tls: {ca: /etc/edgeward/hub/ca.crt}\n  policyPublicKeys: [/etc/edgeward/hub/signing.pub]\n';

  test('absent: no hub', () => {
    expect(ok('backend: auto\n').hub).toBeUndefined();
  });

  test('present: validated and completed with the hub defaults', () => {
    const c = ok(`${HUB}  passwordFile: /etc/edgeward/hub/password\n`);
    expect(c.hub).toMatchObject({ url: 'mqtts://hub:8883', topicPrefix: 'edgeward', groups: [], delivery: 'hub-ack', passwordFile: '/etc/edgeward/hub/password' });
    expect(c.hub?.spool.maxBytes).toBeGreaterThan(0);
  });

  test('shape errors name the key under hub', () => {
    expect(errorsOf('hub:\n  url: mqtt://plain:1883\n  tls: {ca: relative/ca.crt}\n  policyPublicKeys: []\n  colour: red\n').sort()).toEqual(
      [
        'config.yaml: hub.url: has an invalid format (got "mqtt://plain:1883")',
        'config.yaml: hub.tls.ca: must be an absolute path (got "relative/ca.crt")',
        'config.yaml: hub.policyPublicKeys: must NOT have fewer than 1 items',
        'config.yaml: hub.colour: unknown key',
      ].sort(),
    );
  });

  test('rules across keys are reported once the shape is right', () => {
    expect(errorsOf(HUB)).toEqual(['config.yaml: hub: no credentials: set tls.cert + tls.key (client certificate) or passwordFile']);
    expect(errorsOf(HUB.replace('{ca: /etc/edgeward/hub/ca.crt}', '{ca: /c, cert: /n.crt}'))).toEqual(['config.yaml: hub.tls: cert and key go together']);
  });
});

describe('the defaultPosture section', () => {
  test('absent: audit for every category (KubeArmor\'s global default)', () => {
    expect(ok('backend: auto\n').defaultPosture).toEqual({ file: 'audit', network: 'audit', capabilities: 'audit' });
  });

  test('each category set on its own; the others keep audit', () => {
    expect(ok('defaultPosture:\n  file: block\n').defaultPosture).toEqual({ file: 'block', network: 'audit', capabilities: 'audit' });
    expect(ok('defaultPosture: {network: block, capabilities: block}\n').defaultPosture).toEqual({
      file: 'audit',
      network: 'block',
      capabilities: 'block',
    });
  });

  test('bad values and unknown keys name the key', () => {
    expect(errorsOf('defaultPosture:\n  file: deny\n')).toEqual(['config.yaml: defaultPosture.file: must be one of "block", "audit" (got "deny")']);
    expect(errorsOf('defaultPosture:\n  process: block\n')).toEqual(['config.yaml: defaultPosture.process: unknown key']);
    expect(errorsOf('defaultPosture: block\n')).toEqual(['config.yaml: defaultPosture: must be a mapping, not a string']);
  });
});

describe('the visibility section', () => {
  test('absent: every group off, no log file', () => {
    expect(ok('backend: auto\n').visibility).toEqual({ process: false, file: false, network: false });
  });

  test('groups set on their own; the others stay off', () => {
    expect(ok('visibility:\n  process: true\n').visibility).toEqual({ process: true, file: false, network: false });
    expect(ok('visibility: {file: true, network: true}\n').visibility).toEqual({ process: false, file: true, network: true });
  });

  test('bad values, unknown keys and a relative log file name the key', () => {
    expect(errorsOf('visibility:\n  process: yes\n')).toEqual(['config.yaml: visibility.process: must be a boolean, not a string']);
    expect(errorsOf('visibility:\n  capabilities: true\n')).toEqual(['config.yaml: visibility.capabilities: unknown key']);
    expect(errorsOf('visibility:\n  proces: true\n')).toEqual(['config.yaml: visibility.proces: unknown key (did you mean "process"?)']);
    expect(errorsOf('visibility:\n  logFile: {path: logs.jsonl}\n')).toEqual(['config.yaml: visibility.logFile.path: must be an absolute path (got "logs.jsonl")']);
    expect(errorsOf('visibility: process\n')).toEqual(['config.yaml: visibility: must be a mapping, not a string']);
  });

  test('the log file must not be the alert or agent log file (two rotating writers on one file)', () => {
    expect(errorsOf('alerts:\n  file: {path: /var/log/a.jsonl}\nvisibility:\n  logFile: {path: /var/log/a.jsonl}\n')).toEqual([
      'config.yaml: visibility.logFile.path: must differ from alerts.file.path (without logFile, logs go to the alert outputs)',
    ]);
    expect(errorsOf('logging:\n  file: {path: /var/log/a.log}\nvisibility:\n  logFile: {path: /var/log/a.log}\n')).toEqual([
      'config.yaml: visibility.logFile.path: must differ from logging.file.path',
    ]);
  });
});
