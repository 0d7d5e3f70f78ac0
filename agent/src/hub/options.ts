// The node side's configuration: the `hub` section of the agent config
// (policies/agent-config.schema.json gets HUB_CONFIG_SCHEMA as its `hub`
// property). Every key but url and the trust settings has a default.
import Ajv, { ErrorObject, ValidateFunction } from 'ajv';
import * as path from 'path';
import { BackoffOptions, DEFAULT_BACKOFF } from './backoff';
import { DEFAULT_MAX_BUNDLE_BYTES } from './bundle';
import { err, hubError, HubError, ok, Result } from './result';
import { POLICY_SUBDIRECTORY } from './policy_store';
import { DEFAULT_SPOOL } from './spool';
import type { FsyncPolicy } from './segment_queue';

export type DeliveryMode = 'hub-ack' | 'puback';

export interface HubConfig {
  url: string;
  topicPrefix: string;
  /** default: HZN_ORGANIZATION */
  organization?: string;
  /** default: HZN_NODE_ID */
  nodeId?: string;
  arch?: string;
  /** earlier groups win over later ones when they define the same policy */
  groups: string[];
  tls: {
    /** CA that signed the broker's certificate */
    ca: string;
    /** client certificate and key (mutual TLS); else username + passwordFile */
    cert?: string;
    key?: string;
    /** name to verify the broker's certificate against, when it differs from the URL's host */
    serverName?: string;
  };
  /** default: <node>@<org> */
  username?: string;
  passwordFile?: string;
  /** PEM Ed25519 public keys bundles are verified against (more than one while rotating) */
  policyPublicKeys: string[];
  maxBundleBytes: number;
  /** largest MQTT packet the broker may send this node */
  maxPacketBytes: number;
  spool: { maxBytes: number; segmentBytes: number; fsync: FsyncPolicy; fsyncIntervalMs: number; maxRecordBytes: number };
  batch: { maxRecords: number; maxBytes: number; maxInFlight: number };
  /** hub-ack: a record leaves the spool once the hub stored it; puback: once the broker took it */
  delivery: DeliveryMode;
  /** resend what the hub has not acknowledged after this long (doubles while the hub stays silent, up to 5 min) */
  ackTimeoutMs: number;
  reconnect: BackoffOptions;
  keepaliveSeconds: number;
  connectTimeoutMs: number;
}

const ABSOLUTE = { type: 'string', pattern: '^/', minLength: 1 };
const ID = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' };

/** JSON Schema (draft-07) of the agent config's `hub` section. */
export const HUB_CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['url', 'tls', 'policyPublicKeys'],
  description: 'sync with the edgeward hub over MQTT 5 (docs/PROTOCOL.md); absent: no hub',
  properties: {
    url: { type: 'string', pattern: '^mqtts://', description: 'broker URL, TLS only, e.g. mqtts://hub.example:8883' },
    topicPrefix: { type: 'string', pattern: '^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$', maxLength: 128, default: 'edgeward' },
    organization: { ...ID, description: 'default: HZN_ORGANIZATION' },
    nodeId: { ...ID, description: 'default: HZN_NODE_ID' },
    arch: { type: 'string', maxLength: 64, description: 'default: HZN_ARCH' },
    groups: { type: 'array', items: ID, uniqueItems: true, maxItems: 64, default: [] },
    tls: {
      type: 'object',
      additionalProperties: false,
      required: ['ca'],
      properties: { ca: ABSOLUTE, cert: ABSOLUTE, key: ABSOLUTE, serverName: { type: 'string', minLength: 1, maxLength: 253 } },
    },
    username: { type: 'string', minLength: 1, maxLength: 256, description: 'default: <node>@<org>' },
    passwordFile: ABSOLUTE,
    policyPublicKeys: { type: 'array', items: ABSOLUTE, minItems: 1, maxItems: 8 },
    maxBundleBytes: { type: 'integer', minimum: 1024, maximum: 64 * 1024 * 1024, default: DEFAULT_MAX_BUNDLE_BYTES },
    maxPacketBytes: { type: 'integer', minimum: 65536, maximum: 268435455, default: 16 * 1024 * 1024 },
    spool: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxBytes: { type: 'integer', minimum: 16384, default: DEFAULT_SPOOL.maxBytes },
        segmentBytes: { type: 'integer', minimum: 4096, default: DEFAULT_SPOOL.segmentBytes },
        fsync: { type: 'string', enum: ['always', 'interval', 'never'], default: DEFAULT_SPOOL.fsync },
        fsyncIntervalMs: { type: 'integer', minimum: 10, maximum: 60000, default: DEFAULT_SPOOL.fsyncIntervalMs },
        maxRecordBytes: { type: 'integer', minimum: 1024, default: DEFAULT_SPOOL.maxRecordBytes },
      },
    },
    batch: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxRecords: { type: 'integer', minimum: 1, maximum: 10000, default: 200 },
        maxBytes: { type: 'integer', minimum: 1024, maximum: 8 * 1024 * 1024, default: 256 * 1024 },
        maxInFlight: { type: 'integer', minimum: 1, maximum: 64, default: 8 },
      },
    },
    delivery: { type: 'string', enum: ['hub-ack', 'puback'], default: 'hub-ack' },
    ackTimeoutMs: { type: 'integer', minimum: 100, maximum: 600000, default: 15000 },
    reconnect: {
      type: 'object',
      additionalProperties: false,
      properties: {
        initialDelayMs: { type: 'integer', minimum: 1, default: DEFAULT_BACKOFF.initialDelayMs },
        maxDelayMs: { type: 'integer', minimum: 1, default: DEFAULT_BACKOFF.maxDelayMs },
        multiplier: { type: 'number', minimum: 1, maximum: 10, default: DEFAULT_BACKOFF.multiplier },
        resetAfterMs: { type: 'integer', minimum: 0, default: DEFAULT_BACKOFF.resetAfterMs },
      },
    },
    keepaliveSeconds: { type: 'integer', minimum: 5, maximum: 3600, default: 30 },
    connectTimeoutMs: { type: 'integer', minimum: 100, maximum: 120000, default: 10000 },
  },
} as const;

let validator: ValidateFunction | undefined;

function where(e: ErrorObject, base: string): string {
  const segs = e.instancePath.split('/').filter(Boolean);
  if (e.keyword === 'additionalProperties') segs.push(String(e.params.additionalProperty));
  if (e.keyword === 'required') segs.push(String(e.params.missingProperty));
  return [base, ...segs].map((s, i) => (/^\d+$/.test(s) ? `[${s}]` : i ? `.${s}` : s)).join('');
}

function describe(e: ErrorObject): string {
  switch (e.keyword) {
    case 'additionalProperties':
      return 'unknown key';
    case 'required':
      return 'is required';
    case 'pattern':
      return e.params.pattern === '^/' ? `must be an absolute path (got ${JSON.stringify(e.data)})` : `has an invalid format (got ${JSON.stringify(e.data)})`;
    default:
      return `${e.message ?? 'is invalid'}${e.data !== undefined && typeof e.data !== 'object' ? ` (got ${JSON.stringify(e.data)})` : ''}`;
  }
}

/** Validates the `hub` section and fills in defaults; errors name the key (`hub.spool.maxBytes: ...`). */
export function parseHubConfig(raw: unknown, base = 'hub'): Result<HubConfig, HubError[]> {
  if (!validator) validator = new Ajv({ allErrors: true, strict: true, verbose: true }).compile(HUB_CONFIG_SCHEMA);
  if (!validator(raw)) {
    const seen = new Set<string>();
    const errors: HubError[] = [];
    for (const e of validator.errors ?? []) {
      const w = where(e, base);
      if (seen.has(w)) continue;
      seen.add(w);
      errors.push(hubError('invalid-options', `${w}: ${describe(e)}`));
    }
    return err(errors);
  }
  const r = raw as Partial<HubConfig> & Pick<HubConfig, 'url' | 'tls' | 'policyPublicKeys'>;
  const config: HubConfig = {
    url: r.url,
    topicPrefix: r.topicPrefix ?? 'edgeward',
    groups: [...(r.groups ?? [])],
    tls: { ...r.tls },
    policyPublicKeys: [...r.policyPublicKeys],
    maxBundleBytes: r.maxBundleBytes ?? DEFAULT_MAX_BUNDLE_BYTES,
    maxPacketBytes: r.maxPacketBytes ?? 16 * 1024 * 1024,
    spool: { ...DEFAULT_SPOOL, ...(r.spool ?? {}) },
    batch: { maxRecords: 200, maxBytes: 256 * 1024, maxInFlight: 8, ...(r.batch ?? {}) },
    delivery: r.delivery ?? 'hub-ack',
    ackTimeoutMs: r.ackTimeoutMs ?? 15000,
    reconnect: { ...DEFAULT_BACKOFF, ...(r.reconnect ?? {}) },
    keepaliveSeconds: r.keepaliveSeconds ?? 30,
    connectTimeoutMs: r.connectTimeoutMs ?? 10000,
  };
  for (const k of ['organization', 'nodeId', 'arch', 'username', 'passwordFile'] as const) if (r[k] !== undefined) config[k] = r[k];
  const errors: HubError[] = [];
  if ((config.tls.cert === undefined) !== (config.tls.key === undefined)) errors.push(hubError('invalid-options', `${base}.tls: cert and key go together`));
  if (config.tls.cert === undefined && config.passwordFile === undefined) {
    errors.push(hubError('invalid-options', `${base}: no credentials: set tls.cert + tls.key (client certificate) or passwordFile`));
  }
  if (config.reconnect.maxDelayMs < config.reconnect.initialDelayMs) errors.push(hubError('invalid-options', `${base}.reconnect.maxDelayMs: must be >= initialDelayMs`));
  if (config.spool.maxBytes < 4 * config.spool.segmentBytes) errors.push(hubError('invalid-options', `${base}.spool.maxBytes: must be at least 4 * segmentBytes`));
  if (config.spool.maxRecordBytes + 20 > config.spool.segmentBytes) errors.push(hubError('invalid-options', `${base}.spool.maxRecordBytes: must fit in a segment (segmentBytes - 20)`));
  if (config.maxPacketBytes < config.maxBundleBytes + 4096) errors.push(hubError('invalid-options', `${base}.maxPacketBytes: must exceed maxBundleBytes`));
  return errors.length ? err(errors) : ok(config);
}

/** <stateDirectory>/hub: bundles, materialised policies, spool */
export function hubStateDirectory(stateDirectory: string): string {
  return path.join(stateDirectory, 'hub');
}

/** <stateDirectory>/hub/policies: the verified hub policies the agent loads besides its own (PolicyStore writes them) */
export function hubPolicyDirectory(stateDirectory: string): string {
  return path.join(hubStateDirectory(stateDirectory), POLICY_SUBDIRECTORY);
}
