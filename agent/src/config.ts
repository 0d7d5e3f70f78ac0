// The agent's configuration file (YAML, default /etc/edgeward/config.yaml).
// Validated against policies/agent-config.schema.json; every key is optional
// and defaulted here. Bad input never throws: errors name the key, e.g.
// `config.yaml: monitor.ringBufferBytes: must be a power of two`.

import Ajv, { ErrorObject, ValidateFunction } from 'ajv';
import * as yaml from 'js-yaml';
import configSchema from '../../policies/agent-config.schema.json';
import { HubConfig, parseHubConfig } from './hub/options';
import { fieldPath, readLimitedTextFile, suggestKey, typeName } from './policy/loader';
import { DefaultPosture, KUBEARMOR_DEFAULT_POSTURE } from './policy/types';
import { DEFAULT_VISIBILITY, VisibilityConfig } from './visibility';

export type BackendChoice = 'auto' | 'bpf-lsm' | 'compat' | 'audit-only';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type LogFormat = 'pretty' | 'json';

/** Alerts per (policy, container) above maxAlerts in windowMs are counted and summarised, not written one by one. */
export interface AlertThrottleConfig {
  enabled: boolean;
  maxAlerts: number;
  windowMs: number;
}

export const DEFAULT_ALERT_THROTTLE: AlertThrottleConfig = { enabled: true, maxAlerts: 20, windowMs: 1000 };
export const DEFAULT_CONTROL_SOCKET = '/run/edgeward/control.sock';

export interface RotatingFileConfig {
  path: string;
  maxSizeBytes: number;
  maxFiles: number;
}

/** The configuration with every default filled in. */
export interface AgentConfig {
  node: {
    /** absent: the system host name */
    hostname?: string;
    labels: Record<string, string>;
  };
  backend: BackendChoice;
  policyDirectory: string;
  stateDirectory: string;
  monitor: {
    process: boolean;
    file: boolean;
    network: boolean;
    /** power of two, >= 4096 */
    ringBufferBytes: number;
    /** 1..1000 */
    pollIntervalMs: number;
  };
  logging: {
    level: LogLevel;
    format: LogFormat;
    file?: RotatingFileConfig;
  };
  alerts: {
    stdout: boolean;
    file?: RotatingFileConfig;
    throttle: AlertThrottleConfig;
  };
  /** telemetry logs (HostLog / ContainerLog records; agent/src/visibility.ts); all off by default */
  visibility: VisibilityConfig;
  /** the operator's control socket (agent/src/control) */
  control: { socket: string };
  /**
   * What allow-list mode (any Allow rule in a category of a container or the
   * host) does to the accesses no rule allows: block or audit, per category
   * (KubeArmor's defaultFilePosture / defaultNetworkPosture /
   * defaultCapabilitiesPosture; process rules take the file posture).
   */
  defaultPosture: DefaultPosture;
  /** sync with the edgeward hub (agent/src/hub); absent: standalone node */
  hub?: HubConfig;
  /**
   * bpf-lsm only (agent/src/lsm_self_protect.ts): while the agent runs, only
   * stopperPid (the service manager) may signal it, and its binary, state
   * and install directories, pinned rules and their bpffs cannot be changed
   * by other processes.
   */
  selfProtection: { enabled: boolean; stopperPid: number };
}

export interface ConfigError {
  file: string;
  /** dotted key path, '' for the whole file */
  path: string;
  message: string;
}

export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;
export const DEFAULT_LOG_FILE_MAX_BYTES = 10 * 1024 * 1024;
export const DEFAULT_ALERT_FILE_MAX_BYTES = 50 * 1024 * 1024;
export const DEFAULT_MAX_FILES = 5;

export function defaultConfig(): AgentConfig {
  return {
    node: { labels: {} },
    backend: 'auto',
    policyDirectory: '/etc/edgeward/policies',
    stateDirectory: '/var/lib/edgeward',
    monitor: { process: true, file: false, network: false, ringBufferBytes: 2 * 1024 * 1024, pollIntervalMs: 50 },
    logging: { level: 'info', format: 'pretty' },
    alerts: { stdout: true, throttle: { ...DEFAULT_ALERT_THROTTLE } },
    visibility: { ...DEFAULT_VISIBILITY },
    control: { socket: DEFAULT_CONTROL_SOCKET },
    defaultPosture: { ...KUBEARMOR_DEFAULT_POSTURE },
    selfProtection: { enabled: false, stopperPid: 1 },
  };
}

/** `config.yaml: monitor.ringBufferBytes: must be a power of two` */
export function formatConfigError(e: ConfigError): string {
  return e.path ? `${e.file}: ${e.path}: ${e.message}` : `${e.file}: ${e.message}`;
}

let validator: ValidateFunction | undefined;
function validate(): ValidateFunction {
  if (!validator) validator = new Ajv({ allErrors: true, strict: true, verbose: true }).compile(configSchema);
  return validator;
}

function segmentsOf(pointer: string): Array<string | number> {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function describe(e: ErrorObject): string {
  const v = e.data;
  switch (e.keyword) {
    case 'type': {
      const want = String(e.params.type);
      const wanted = want === 'object' ? 'a mapping' : want === 'integer' ? 'an integer' : `a ${want}`;
      return `must be ${wanted}, not ${typeName(v)}`;
    }
    case 'enum':
      return `must be one of ${(e.params.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(', ')} (got ${JSON.stringify(v)})`;
    case 'minimum':
    case 'maximum':
      return `must be ${e.params.comparison} ${e.params.limit} (got ${v})`;
    case 'minLength':
      return 'must not be empty';
    case 'maxLength':
      return `must be at most ${e.params.limit} characters`;
    case 'pattern':
      return e.schemaPath.includes('absolutePath') || String(e.params.pattern) === '^/'
        ? `must be an absolute path (got ${JSON.stringify(v)})`
        : `has an invalid format (got ${JSON.stringify(v)})`;
    default:
      return e.message ?? 'is invalid';
  }
}

function schemaErrors(doc: unknown, file: string): ConfigError[] {
  const v = validate();
  if (v(doc)) return [];
  const out: ConfigError[] = [];
  const seen = new Set<string>();
  for (const e of v.errors ?? []) {
    const segs = segmentsOf(e.instancePath);
    let message: string;
    if (e.keyword === 'additionalProperties') {
      const key = String(e.params.additionalProperty);
      segs.push(key);
      const props = (e.parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
      const hint = suggestKey(key, Object.keys(props));
      message = hint ? `unknown key (did you mean "${hint}"?)` : 'unknown key';
    } else if (e.keyword === 'required') {
      segs.push(String(e.params.missingProperty));
      message = 'is required';
    } else if (e.keyword === 'propertyNames') {
      continue; // reported by the nested minLength error on the key itself
    } else {
      message = describe(e);
    }
    if (e.propertyName !== undefined) {
      segs.push(e.propertyName);
      message = `label name ${message}`;
    }
    const p = fieldPath(segs);
    // One message per key: the first one ajv found is the most basic.
    if (!seen.has(p)) {
      seen.add(p);
      out.push({ file, path: p, message });
    }
  }
  return out;
}

type RawConfig = {
  node?: { hostname?: string; labels?: Record<string, string> };
  backend?: BackendChoice;
  policyDirectory?: string;
  stateDirectory?: string;
  monitor?: Partial<AgentConfig['monitor']>;
  logging?: { level?: LogLevel; format?: LogFormat; file?: Partial<RotatingFileConfig> & { path: string } };
  alerts?: { stdout?: boolean; file?: Partial<RotatingFileConfig> & { path: string }; throttle?: Partial<AlertThrottleConfig> };
  control?: { socket?: string };
  visibility?: { process?: boolean; file?: boolean; network?: boolean; logFile?: Partial<RotatingFileConfig> & { path: string } };
  hub?: unknown;
  defaultPosture?: Partial<DefaultPosture>;
  selfProtection?: Partial<AgentConfig['selfProtection']>;
};

const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

function rotating(raw: (Partial<RotatingFileConfig> & { path: string }) | undefined, maxSize: number): RotatingFileConfig | undefined {
  if (!raw) return undefined;
  return { path: raw.path, maxSizeBytes: raw.maxSizeBytes ?? maxSize, maxFiles: raw.maxFiles ?? DEFAULT_MAX_FILES };
}

/** Defaults + the file's values (the file already passed the schema). */
function withDefaults(raw: RawConfig): AgentConfig {
  const d = defaultConfig();
  const config: AgentConfig = {
    node: { labels: { ...(raw.node?.labels ?? {}) } },
    backend: raw.backend ?? d.backend,
    policyDirectory: raw.policyDirectory ?? d.policyDirectory,
    stateDirectory: raw.stateDirectory ?? d.stateDirectory,
    monitor: { ...d.monitor, ...(raw.monitor ?? {}) },
    logging: { level: raw.logging?.level ?? d.logging.level, format: raw.logging?.format ?? d.logging.format },
    alerts: { stdout: raw.alerts?.stdout ?? d.alerts.stdout, throttle: { ...d.alerts.throttle, ...(raw.alerts?.throttle ?? {}) } },
    visibility: {
      process: raw.visibility?.process ?? d.visibility.process,
      file: raw.visibility?.file ?? d.visibility.file,
      network: raw.visibility?.network ?? d.visibility.network,
    },
    control: { socket: raw.control?.socket ?? d.control.socket },
    defaultPosture: { ...d.defaultPosture, ...(raw.defaultPosture ?? {}) },
    selfProtection: { ...d.selfProtection, ...(raw.selfProtection ?? {}) },
  };
  if (raw.node?.hostname !== undefined) config.node.hostname = raw.node.hostname;
  const logFile = rotating(raw.logging?.file, DEFAULT_LOG_FILE_MAX_BYTES);
  if (logFile) config.logging.file = logFile;
  const alertFile = rotating(raw.alerts?.file, DEFAULT_ALERT_FILE_MAX_BYTES);
  if (alertFile) config.alerts.file = alertFile;
  const visibilityFile = rotating(raw.visibility?.logFile, DEFAULT_ALERT_FILE_MAX_BYTES);
  if (visibilityFile) config.visibility.logFile = visibilityFile;
  if (raw.hub !== undefined) {
    const hub = parseHubConfig(raw.hub);
    // semanticErrors() has refused the file when this fails
    if (hub.ok) config.hub = hub.value;
  }
  return config;
}

/** Rules JSON Schema cannot say; checked on the raw values so they show up next to schema errors. */
function semanticErrors(raw: RawConfig, file: string, checkHub: boolean): ConfigError[] {
  const out: ConfigError[] = [];
  const ring = raw.monitor?.ringBufferBytes;
  if (typeof ring === 'number' && Number.isInteger(ring) && ring >= 4096 && !isPowerOfTwo(ring)) {
    out.push({ file, path: 'monitor.ringBufferBytes', message: `must be a power of two (got ${ring})` });
  }
  const logPath = raw.logging?.file?.path;
  if (typeof logPath === 'string' && logPath === raw.alerts?.file?.path) {
    out.push({ file, path: 'alerts.file.path', message: 'must differ from logging.file.path' });
  }
  // two rotating writers on one file would rotate it under each other
  const visibilityPath = raw.visibility?.logFile?.path;
  if (typeof visibilityPath === 'string') {
    if (visibilityPath === raw.alerts?.file?.path) out.push({ file, path: 'visibility.logFile.path', message: 'must differ from alerts.file.path (without logFile, logs go to the alert outputs)' });
    else if (visibilityPath === logPath) out.push({ file, path: 'visibility.logFile.path', message: 'must differ from logging.file.path' });
  }
  // The schema checked the hub section's shape; these are the rules across its keys.
  if (checkHub && raw.hub !== undefined) {
    const hub = parseHubConfig(raw.hub);
    if (!hub.ok) {
      for (const e of hub.error) {
        const m = /^(hub[^:]*): (.*)$/s.exec(e.message);
        out.push(m ? { file, path: m[1]!, message: m[2]! } : { file, path: 'hub', message: e.message });
      }
    }
  }
  return out;
}

/** Parses and validates config YAML; `config` is set only when there are no errors. */
export function parseConfigText(text: string, sourceName: string): { config?: AgentConfig; errors: ConfigError[] } {
  let docs: unknown[];
  try {
    docs = yaml.loadAll(text.replace(/^\uFEFF/, ''), undefined, {
      schema: yaml.CORE_SCHEMA,
      filename: sourceName,
      maxDepth: 32,
    } as yaml.LoadOptions);
  } catch (err) {
    const e = err as yaml.YAMLException & { mark?: { line: number; column: number } };
    const where = e?.mark ? ` at line ${e.mark.line + 1}, column ${e.mark.column + 1}` : '';
    const why = e?.name === 'YAMLException' ? e.reason : (err as Error)?.message ?? String(err);
    return { errors: [{ file: sourceName, path: '', message: `invalid YAML${where}: ${why}` }] };
  }
  const nonEmpty = docs.filter((d) => d !== null && d !== undefined);
  if (nonEmpty.length > 1) {
    return { errors: [{ file: sourceName, path: '', message: `must hold one YAML document, found ${nonEmpty.length}` }] };
  }
  // An empty file (or comments only) means "all defaults".
  const doc = nonEmpty.length ? nonEmpty[0] : {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    return { errors: [{ file: sourceName, path: '', message: `must be a mapping of settings, not ${typeName(doc)}` }] };
  }
  const shape = schemaErrors(doc, sourceName);
  // hub rules across keys (cert with key, ...) only once its shape is right: one message per mistake
  const hubShapeOk = !shape.some((e) => e.path === 'hub' || e.path.startsWith('hub.'));
  const errors = [...shape, ...semanticErrors(doc as RawConfig, sourceName, hubShapeOk)];
  if (errors.length) return { errors };
  return { config: withDefaults(doc as RawConfig), errors: [] };
}

/** Reads and validates a config file. */
export function loadConfigFile(file: string): { config?: AgentConfig; errors: ConfigError[] } {
  const r = readLimitedTextFile(file, MAX_CONFIG_FILE_BYTES);
  if ('error' in r) return { errors: [{ file, path: '', message: r.error }] };
  return parseConfigText(r.text, file);
}
