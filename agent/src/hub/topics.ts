// Topic names of the hub protocol (docs/PROTOCOL.md). One function builds
// every name so node, hub, ACL templates and tests cannot disagree.
import { err, hubError, ok, Result } from './result';

/** Organisation, node and group ids: one topic level, no wildcards, no '@' (used in user names). */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function checkId(kind: string, value: unknown): Result<string> {
  if (typeof value !== 'string' || !ID_PATTERN.test(value)) {
    return err(
      hubError(
        'invalid-identity',
        `${kind} ${JSON.stringify(value)} is not a valid id: 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`,
      ),
    );
  }
  return ok(value);
}

/** A prefix of one or more levels, e.g. "edgeward" or "site/edgeward": no wildcards, no empty level, not $-reserved. */
export function checkPrefix(prefix: unknown): Result<string> {
  if (
    typeof prefix !== 'string' ||
    prefix.length === 0 ||
    prefix.length > 128 ||
    prefix.startsWith('$') ||
    prefix.split('/').some((l) => !/^[A-Za-z0-9._-]+$/.test(l))
  ) {
    return err(
      hubError('invalid-topic', `topic prefix ${JSON.stringify(prefix)} is invalid: levels of A-Z a-z 0-9 . _ - separated by "/", no wildcards, not starting with "$"`),
    );
  }
  return ok(prefix);
}

export interface NodeTopics {
  desired: string;
  reported: string;
  alerts: string;
  telemetry: string;
  ack: string;
  status: string;
}

export function nodeTopics(prefix: string, org: string, node: string): NodeTopics {
  const base = `${prefix}/${org}/nodes/${node}`;
  return {
    desired: `${base}/policy/desired`,
    reported: `${base}/policy/reported`,
    alerts: `${base}/alerts`,
    telemetry: `${base}/telemetry`,
    ack: `${base}/ack`,
    status: `${base}/status`,
  };
}

export function groupDesiredTopic(prefix: string, org: string, group: string): string {
  return `${prefix}/${org}/groups/${group}/policy/desired`;
}

/** Hub instances announce themselves here (retained; will = offline); nodes resend unacknowledged records when one comes online. */
export function hubStatusTopic(prefix: string, instance: string): string {
  return `${prefix}/hub/${instance}/status`;
}

export function hubStatusFilter(prefix: string): string {
  return `${prefix}/hub/+/status`;
}

/** Filters the hub subscribes to; alerts and telemetry through a shared subscription so instances split the load. */
export function hubFilters(prefix: string, shareGroup: string) {
  return {
    alerts: `$share/${shareGroup}/${prefix}/+/nodes/+/alerts`,
    telemetry: `$share/${shareGroup}/${prefix}/+/nodes/+/telemetry`,
    reported: `${prefix}/+/nodes/+/policy/reported`,
    status: `${prefix}/+/nodes/+/status`,
  };
}

export type ParsedTopic =
  | { kind: 'node'; org: string; node: string; channel: 'desired' | 'reported' | 'alerts' | 'telemetry' | 'ack' | 'status' }
  | { kind: 'group'; org: string; group: string; channel: 'desired' }
  | { kind: 'hub'; instance: string; channel: 'status' };

/** Which node/group/hub a topic under `prefix` belongs to; undefined for anything else. */
export function parseTopic(prefix: string, topic: string): ParsedTopic | undefined {
  if (!topic.startsWith(prefix + '/')) return undefined;
  const rest = topic.slice(prefix.length + 1).split('/');
  if (rest.length === 3 && rest[0] === 'hub' && rest[2] === 'status' && ID_PATTERN.test(rest[1])) {
    return { kind: 'hub', instance: rest[1], channel: 'status' };
  }
  const [org, scope, name, ...tail] = rest;
  if (!ID_PATTERN.test(org ?? '') || !ID_PATTERN.test(name ?? '')) return undefined;
  const channel = tail.join('/');
  if (scope === 'groups') return channel === 'policy/desired' ? { kind: 'group', org, group: name, channel: 'desired' } : undefined;
  if (scope !== 'nodes') return undefined;
  switch (channel) {
    case 'policy/desired':
      return { kind: 'node', org, node: name, channel: 'desired' };
    case 'policy/reported':
      return { kind: 'node', org, node: name, channel: 'reported' };
    case 'alerts':
    case 'telemetry':
    case 'ack':
    case 'status':
      return { kind: 'node', org, node: name, channel };
    default:
      return undefined;
  }
}

/** The MQTT user name (and, with use_username_as_clientid, client id) of a node: unambiguous since ids never contain '@'. */
export function nodeUserName(org: string, node: string): string {
  return `${node}@${org}`;
}
