// The control socket's protocol (docs in README.md, "Control socket"):
// newline-delimited JSON over a root-only unix socket. One request per
// connection; the agent answers with one response line and closes, except
// `logs` with follow: true, after whose response it streams one line per
// alert until the client closes. Every line carries `version`.
import type { KubeArmorAlert } from '../alerts';
import type { ContainerIdentity, UnhookedStartsSummary } from '../containers';
import { isLogRecord, KubeArmorLog, KubeArmorRecord } from '../visibility';

export const PROTOCOL_VERSION = 1;
/** a request line; policy files are at most 1 MiB each (MAX_POLICY_FILE_BYTES), JSON escaping can double that */
export const MAX_REQUEST_BYTES = 8 * 1024 * 1024;
export const MAX_APPLY_FILES = 64;
/** alerts the agent keeps for `edgeward logs` without --follow */
export const RECENT_ALERTS = 1000;
/** telemetry log records kept apart (a busy node's logs must not push the alerts out) */
export const RECENT_LOGS = 1000;

export const OPERATIONS = ['Process', 'File', 'Network'] as const;
export type AlertOperation = (typeof OPERATIONS)[number];

/** `logs --type`: alerts (MatchedPolicy / MatchedHostPolicy), telemetry logs (HostLog / ContainerLog), or both */
export const RECORD_TYPES = ['alert', 'log', 'all'] as const;
export type RecordType = (typeof RECORD_TYPES)[number];

export interface LogFilter {
  /** absent: alerts only */
  type?: RecordType;
  /** container ID (or a prefix of at least 6 characters) or name; "host" for host alerts */
  container?: string;
  operation?: AlertOperation;
  policy?: string;
}

export interface PolicyFileText {
  /** where the client read it (named in errors) */
  source: string;
  text: string;
}

export type ControlRequest =
  | { version: number; op: 'status' }
  | { version: number; op: 'policy.list' }
  | { version: number; op: 'policy.apply'; files: PolicyFileText[] }
  | { version: number; op: 'policy.delete'; names: string[] }
  | { version: number; op: 'logs'; follow: boolean; filter: LogFilter; limit?: number }
  /** from the runtime hook (scripts/edgeward-runc): a container created, its init blocked before exec */
  | { version: number; op: 'container.started'; container: StartedContainer };

/**
 * A container as the runtime hook reads it at `runc create`, without the
 * Docker API (dockerd holds the container's lock then). The agent reads the
 * namespaces from /proc/<pid> itself.
 */
export interface StartedContainer {
  id: string;
  name: string;
  image: string;
  labels: Record<string, string>;
  /** host pid of the container's init (blocked in runc's exec fifo) */
  pid: number;
}

/** `container.started`'s result: sent once the container's rules are in force. */
export interface ContainerStartedResult {
  id: string;
  name: string;
  mntNs: number;
  pidNs: number;
  /** rules in force after the re-binding (absent: no binding, e.g. the audit-only backend) */
  rules?: number;
}

/** container ids: Docker's 64 hex digits, or a runtime's own (runc accepts [\w+-.]) */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$/;
const MAX_LABELS = 1024;
const MAX_TEXT = 4096;

export type ControlOp = ControlRequest['op'];

export type ControlErrorCode =
  | 'malformed' // not a request this protocol knows
  | 'version' // another protocol version
  | 'too-large'
  | 'forbidden' // the peer is not root
  | 'invalid-policy' // the loader or compiler refused a document
  | 'conflict' // the name belongs to a policy from another place
  | 'not-found'
  | 'refused' // the agent refused the new set when loading it; the previous one stays
  | 'unavailable' // the agent cannot do it now (e.g. container.started while it follows no Docker)
  | 'internal';

export interface ControlError {
  code: ControlErrorCode;
  message: string;
  /** one line each, e.g. the loader's "file: document 1: spec...: reason" */
  details?: string[];
}

export type ControlResponse<T = unknown> =
  | { version: number; ok: true; result: T }
  | { version: number; ok: false; error: ControlError };

/** A line of a `logs --follow` stream after the response. */
export type StreamLine =
  | { version: number; alert: KubeArmorAlert }
  /** a telemetry log record (filter type log or all) */
  | { version: number; log: KubeArmorLog }
  /** alerts this client missed because it read too slowly (the agent's outputs have them) */
  | { version: number; missed: number };

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: ControlError };

const fail = (code: ControlErrorCode, message: string): { ok: false; error: ControlError } => ({ ok: false, error: { code, message } });

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === 'string';

function unknownKeys(o: Record<string, unknown>, allowed: string[], where: string): string | undefined {
  const extra = Object.keys(o).filter((k) => !allowed.includes(k));
  return extra.length ? `${where}: unknown key ${JSON.stringify(extra[0])}` : undefined;
}

function parseFilter(v: unknown): Parsed<LogFilter> {
  if (v === undefined) return { ok: true, value: {} };
  if (!isObject(v)) return fail('malformed', 'filter: must be an object');
  const extra = unknownKeys(v, ['type', 'container', 'operation', 'policy'], 'filter');
  if (extra) return fail('malformed', extra);
  const out: LogFilter = {};
  for (const k of ['container', 'policy'] as const) {
    if (v[k] === undefined) continue;
    if (!isString(v[k]) || (v[k] as string).length === 0) return fail('malformed', `filter.${k}: must be a non-empty string`);
    out[k] = v[k] as string;
  }
  if (v.type !== undefined) {
    if (!RECORD_TYPES.includes(v.type as RecordType)) {
      return fail('malformed', `filter.type: must be one of ${RECORD_TYPES.join(', ')} (got ${JSON.stringify(v.type)})`);
    }
    out.type = v.type as RecordType;
  }
  if (v.operation !== undefined) {
    if (!OPERATIONS.includes(v.operation as AlertOperation)) {
      return fail('malformed', `filter.operation: must be one of ${OPERATIONS.join(', ')} (got ${JSON.stringify(v.operation)})`);
    }
    out.operation = v.operation as AlertOperation;
  }
  return { ok: true, value: out };
}

/** Parses one request line; never throws. */
export function parseRequest(line: string): Parsed<ControlRequest> {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return fail('malformed', 'request is not JSON');
  }
  if (!isObject(raw)) return fail('malformed', 'request must be a JSON object');
  if (raw.version !== PROTOCOL_VERSION) {
    return fail('version', `protocol version ${JSON.stringify(raw.version)} is not supported (this agent speaks ${PROTOCOL_VERSION})`);
  }
  const version = PROTOCOL_VERSION;
  switch (raw.op) {
    case 'status':
    case 'policy.list': {
      const extra = unknownKeys(raw, ['version', 'op'], raw.op);
      return extra ? fail('malformed', extra) : { ok: true, value: { version, op: raw.op } };
    }
    case 'policy.apply': {
      const extra = unknownKeys(raw, ['version', 'op', 'files'], raw.op);
      if (extra) return fail('malformed', extra);
      const files = raw.files;
      if (!Array.isArray(files) || files.length === 0) return fail('malformed', 'policy.apply: files must be a non-empty array');
      if (files.length > MAX_APPLY_FILES) return fail('malformed', `policy.apply: at most ${MAX_APPLY_FILES} files per request`);
      for (const [i, f] of files.entries()) {
        if (!isObject(f) || !isString(f.source) || f.source.length === 0 || !isString(f.text)) {
          return fail('malformed', `policy.apply: files[${i}] must be {source: non-empty string, text: string}`);
        }
      }
      return { ok: true, value: { version, op: raw.op, files: (files as PolicyFileText[]).map((f) => ({ source: f.source, text: f.text })) } };
    }
    case 'policy.delete': {
      const extra = unknownKeys(raw, ['version', 'op', 'names'], raw.op);
      if (extra) return fail('malformed', extra);
      const names = raw.names;
      if (!Array.isArray(names) || names.length === 0 || !names.every((n) => isString(n) && n.length > 0)) {
        return fail('malformed', 'policy.delete: names must be a non-empty array of non-empty strings');
      }
      return { ok: true, value: { version, op: raw.op, names: [...new Set(names as string[])] } };
    }
    case 'logs': {
      const extra = unknownKeys(raw, ['version', 'op', 'follow', 'filter', 'limit'], raw.op);
      if (extra) return fail('malformed', extra);
      if (raw.follow !== undefined && typeof raw.follow !== 'boolean') return fail('malformed', 'logs: follow must be a boolean');
      const filter = parseFilter(raw.filter);
      if (!filter.ok) return filter;
      const limit = raw.limit;
      if (limit !== undefined && (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1)) {
        return fail('malformed', 'logs: limit must be a positive integer');
      }
      return {
        ok: true,
        value: { version, op: raw.op, follow: raw.follow === true, filter: filter.value, ...(limit !== undefined ? { limit } : {}) },
      };
    }
    case 'container.started': {
      const extra = unknownKeys(raw, ['version', 'op', 'container'], raw.op);
      if (extra) return fail('malformed', extra);
      const c = parseStartedContainer(raw.container);
      return c.ok ? { ok: true, value: { version, op: raw.op, container: c.value } } : c;
    }
    default:
      return fail('malformed', `unknown op ${JSON.stringify(raw.op)}`);
  }
}

function parseStartedContainer(v: unknown): Parsed<StartedContainer> {
  const where = 'container.started: container';
  if (!isObject(v)) return fail('malformed', `${where} must be an object`);
  const extra = unknownKeys(v, ['id', 'name', 'image', 'labels', 'pid'], where);
  if (extra) return fail('malformed', extra);
  if (!isString(v.id) || !CONTAINER_ID.test(v.id)) return fail('malformed', `${where}.id must be a container id ([A-Za-z0-9_.+-], at most 128), got ${JSON.stringify(v.id)}`);
  if (!isString(v.name) || v.name.length === 0 || v.name.length > MAX_TEXT) return fail('malformed', `${where}.name must be a non-empty string`);
  if (!isString(v.image) || v.image.length > MAX_TEXT) return fail('malformed', `${where}.image must be a string`);
  if (typeof v.pid !== 'number' || !Number.isInteger(v.pid) || v.pid <= 1) return fail('malformed', `${where}.pid must be a pid above 1, got ${JSON.stringify(v.pid)}`);
  const labels = v.labels;
  if (!isObject(labels)) return fail('malformed', `${where}.labels must be an object of strings`);
  const entries = Object.entries(labels);
  if (entries.length > MAX_LABELS) return fail('malformed', `${where}.labels: at most ${MAX_LABELS} labels`);
  for (const [k, val] of entries) {
    if (!isString(val) || k.length > MAX_TEXT || val.length > MAX_TEXT) return fail('malformed', `${where}.labels[${JSON.stringify(k)}] must be a string`);
  }
  return { ok: true, value: { id: v.id, name: v.name.replace(/^\//, ''), image: v.image, labels: { ...(labels as Record<string, string>) }, pid: v.pid } };
}

/** Does the alert or log record pass the `edgeward logs` filter? */
export function matchesFilter(alert: KubeArmorRecord, filter: LogFilter): boolean {
  const type = filter.type ?? 'alert';
  if (isLogRecord(alert)) {
    // a log names no policy: a policy filter asks for alerts
    if (type === 'alert' || filter.policy !== undefined) return false;
  } else {
    if (type === 'log') return false;
    if (filter.policy !== undefined && alert.PolicyName !== filter.policy) return false;
  }
  if (filter.operation !== undefined && alert.Operation !== filter.operation) return false;
  if (filter.container !== undefined) {
    const c = filter.container;
    if (c === 'host') return alert.ContainerID === undefined;
    const id = alert.ContainerID ?? '';
    const byId = id !== '' && (id === c || (c.length >= 6 && id.startsWith(c)));
    if (!byId && alert.ContainerName !== c) return false;
  }
  return true;
}

export function encodeLine(message: ControlRequest | ControlResponse | StreamLine): string {
  return JSON.stringify(message) + '\n';
}

export const okResponse = <T>(result: T): ControlResponse<T> => ({ version: PROTOCOL_VERSION, ok: true, result });
export const errorResponse = (error: ControlError): ControlResponse<never> => ({ version: PROTOCOL_VERSION, ok: false, error });

/** A container the agent follows, as `status` reports it. */
export type ContainerSummary = Pick<ContainerIdentity, 'id' | 'name' | 'image' | 'labels' | 'namespaceName' | 'pid'>;

/** `status`'s result. */
export interface StatusReport {
  pid: number;
  startedAt: string;
  socket: string;
  backend: string;
  policyDirectories: string[];
  rulesInForce: number;
  /** violations seen since start (including those summarised by the throttle) */
  alerts: number;
  alertsSuppressed: number;
  /** telemetry log records since start (including those summarised by the throttle); absent: an agent without visibility */
  logs?: number;
  logsSuppressed?: number;
  /** the visibility groups on (config visibility), e.g. ["process", "file"] */
  visibility?: string[];
  processes: number;
  kernel?: string;
  lsms?: string[];
  ruleKinds?: Record<string, string>;
  containers: ContainerSummary[];
  /** container starts dockerd reported that the runtime hook (edgeward-runc) had not: their first program ran before their rules */
  containersStartedWithoutHook?: UnhookedStartsSummary;
  lastLoad?: { files: number; policies: number; rules: number; errors: string[]; warnings: string[] };
  hub?: unknown;
  /** present while self-protection is in force (bpf-lsm): refusals since it started, by kind */
  selfProtection?: { refused: Record<string, number> };
}
