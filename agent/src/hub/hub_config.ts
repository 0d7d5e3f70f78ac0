// The hub's configuration file (YAML, default /etc/edgeward/hub.yaml;
// policies/hub/hub.example.yaml). Errors name the key.
import Ajv, { ErrorObject } from 'ajv';
import * as yaml from 'js-yaml';
import { BackoffOptions } from './backoff';
import { err, hubError, HubError, ok, Result } from './result';
import { readLimitedTextFile } from '../policy/loader';

export interface HubServiceConfig {
  broker: {
    url: string;
    /** MQTT user name; with a client certificate, its CN */
    username: string;
    passwordFile?: string;
    tls: { ca: string; cert?: string; key?: string; serverName?: string };
  };
  topicPrefix: string;
  /** shared subscription group: hub instances in it split alerts and telemetry */
  shareGroup: string;
  /** this instance's name (its status topic); default the user name */
  instance: string;
  database: string;
  /** Ed25519 private key (PEM) bundles are signed with; needed by `policy push` */
  signingKey?: string;
  /** default organisation for `policy push` */
  organization?: string;
  /** user names of all hub instances, for `hub acl` */
  hubUsers: string[];
  /** the fleet, for `hub acl` and for `hub status` (nodes never seen) */
  nodes: Array<{ org: string; node: string; groups: string[] }>;
  reconnect: BackoffOptions;
}

const ABSOLUTE = { type: 'string', pattern: '^/' };
const ID = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' };

export const HUB_SERVICE_CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['broker', 'database'],
  properties: {
    broker: {
      type: 'object',
      additionalProperties: false,
      required: ['url', 'username', 'tls'],
      properties: {
        url: { type: 'string', pattern: '^mqtts://' },
        username: { type: 'string', minLength: 1, maxLength: 256 },
        passwordFile: ABSOLUTE,
        tls: {
          type: 'object',
          additionalProperties: false,
          required: ['ca'],
          properties: { ca: ABSOLUTE, cert: ABSOLUTE, key: ABSOLUTE, serverName: { type: 'string', minLength: 1 } },
        },
      },
    },
    topicPrefix: { type: 'string', pattern: '^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$', maxLength: 128 },
    shareGroup: ID,
    instance: ID,
    database: ABSOLUTE,
    signingKey: ABSOLUTE,
    organization: ID,
    hubUsers: { type: 'array', items: { type: 'string', minLength: 1 }, uniqueItems: true },
    nodes: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['org', 'node'],
        properties: { org: ID, node: ID, groups: { type: 'array', items: ID, uniqueItems: true } },
      },
    },
    reconnect: {
      type: 'object',
      additionalProperties: false,
      properties: {
        initialDelayMs: { type: 'integer', minimum: 1 },
        maxDelayMs: { type: 'integer', minimum: 1 },
        multiplier: { type: 'number', minimum: 1, maximum: 10 },
        resetAfterMs: { type: 'integer', minimum: 0 },
      },
    },
  },
} as const;

const validate = new Ajv({ allErrors: true, strict: true, verbose: true }).compile(HUB_SERVICE_CONFIG_SCHEMA);

function describe(e: ErrorObject, file: string): string {
  const segs = e.instancePath.split('/').filter(Boolean);
  if (e.keyword === 'additionalProperties') segs.push(String(e.params.additionalProperty));
  if (e.keyword === 'required') segs.push(String(e.params.missingProperty));
  const where = segs.map((s, i) => (/^\d+$/.test(s) ? `[${s}]` : i ? `.${s}` : s)).join('');
  const what =
    e.keyword === 'additionalProperties'
      ? 'unknown key'
      : e.keyword === 'required'
        ? 'is required'
        : e.keyword === 'pattern' && e.params.pattern === '^/'
          ? `must be an absolute path (got ${JSON.stringify(e.data)})`
          : `${e.message ?? 'is invalid'}${e.data !== undefined && typeof e.data !== 'object' ? ` (got ${JSON.stringify(e.data)})` : ''}`;
  return `${file}: ${where || '(top level)'}: ${what}`;
}

export function parseHubServiceConfig(raw: unknown, file: string): Result<HubServiceConfig, HubError[]> {
  if (!validate(raw)) {
    return err((validate.errors ?? []).map((e) => hubError('invalid-options', describe(e, file))));
  }
  const r = raw as Partial<HubServiceConfig> & { broker: HubServiceConfig['broker']; database: string; nodes?: Array<{ org: string; node: string; groups?: string[] }> };
  const errors: HubError[] = [];
  if ((r.broker.tls.cert === undefined) !== (r.broker.tls.key === undefined)) errors.push(hubError('invalid-options', `${file}: broker.tls: cert and key go together`));
  if (!r.broker.tls.cert && !r.broker.passwordFile) errors.push(hubError('invalid-options', `${file}: broker: no credentials: tls.cert + tls.key or passwordFile`));
  if (errors.length) return err(errors);
  const config: HubServiceConfig = {
    broker: r.broker,
    topicPrefix: r.topicPrefix ?? 'edgeward',
    shareGroup: r.shareGroup ?? 'edgeward-hub',
    instance: r.instance ?? r.broker.username.replace(/[^A-Za-z0-9._-]/g, '_'),
    database: r.database,
    hubUsers: r.hubUsers ?? [r.broker.username],
    nodes: (r.nodes ?? []).map((n) => ({ org: n.org, node: n.node, groups: n.groups ?? [] })),
    reconnect: { initialDelayMs: 1000, maxDelayMs: 30_000, multiplier: 2, resetAfterMs: 30_000, ...(r.reconnect ?? {}) },
  };
  if (r.signingKey) config.signingKey = r.signingKey;
  if (r.organization) config.organization = r.organization;
  return ok(config);
}

export function loadHubServiceConfig(file: string): Result<HubServiceConfig, HubError[]> {
  const text = readLimitedTextFile(file, 4 * 1024 * 1024);
  if ('error' in text) return err([hubError('invalid-options', `${file}: ${text.error}`)]);
  let doc: unknown;
  try {
    doc = yaml.load(text.text, { schema: yaml.CORE_SCHEMA, filename: file });
  } catch (e) {
    return err([hubError('invalid-options', `${file}: invalid YAML`, e)]);
  }
  return parseHubServiceConfig(doc ?? {}, file);
}
