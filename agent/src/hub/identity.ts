// Who this node is on the hub. Open Horizon sets HZN_ORGANIZATION,
// HZN_NODE_ID and HZN_ARCH in a service's environment; when present they
// name the node (the management hub already knows it by them), otherwise
// the configured values do.
import { checkId } from './topics';
import { err, HubError, hubError, ok, Result } from './result';

export interface NodeIdentity {
  org: string;
  node: string;
  /** e.g. amd64, arm64; informational */
  arch?: string;
  /** where each value came from, for the log */
  source: { org: 'env' | 'options'; node: 'env' | 'options' };
}

export interface IdentityOptions {
  organization?: string;
  nodeId?: string;
  arch?: string;
}

export interface ResolvedIdentity {
  identity: NodeIdentity;
  /** e.g. the configured node id differs from HZN_NODE_ID (the environment wins) */
  warnings: string[];
}

export function resolveIdentity(options: IdentityOptions, env: NodeJS.ProcessEnv = process.env): Result<ResolvedIdentity> {
  const warnings: string[] = [];
  const pick = (envName: string, configured: string | undefined, what: string): { value?: string; source: 'env' | 'options' } => {
    const fromEnv = env[envName];
    if (fromEnv !== undefined && fromEnv !== '') {
      if (configured !== undefined && configured !== fromEnv) {
        warnings.push(`hub: ${what} ${JSON.stringify(configured)} from the configuration differs from ${envName}=${JSON.stringify(fromEnv)}; using ${envName}`);
      }
      return { value: fromEnv, source: 'env' };
    }
    return { value: configured, source: 'options' };
  };
  const org = pick('HZN_ORGANIZATION', options.organization, 'organization');
  const node = pick('HZN_NODE_ID', options.nodeId, 'node id');
  const errors: HubError[] = [];
  if (org.value === undefined) errors.push(hubError('invalid-identity', 'hub: no organization: set HZN_ORGANIZATION or hub.organization'));
  else {
    const c = checkId(org.source === 'env' ? 'HZN_ORGANIZATION' : 'hub.organization', org.value);
    if (!c.ok) errors.push(c.error);
  }
  if (node.value === undefined) errors.push(hubError('invalid-identity', 'hub: no node id: set HZN_NODE_ID or hub.nodeId'));
  else {
    const c = checkId(node.source === 'env' ? 'HZN_NODE_ID' : 'hub.nodeId', node.value);
    if (!c.ok) errors.push(c.error);
  }
  if (errors.length) return err(hubError('invalid-identity', errors.map((e) => e.message).join('; ')));
  const arch = env.HZN_ARCH || options.arch;
  const identity: NodeIdentity = { org: org.value!, node: node.value!, source: { org: org.source, node: node.source } };
  if (arch) identity.arch = arch;
  return ok({ identity, warnings });
}
