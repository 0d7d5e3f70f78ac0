// Desired vs reported per node and scope, from the hub's store: who runs
// what, who is behind, who refused and why (`edgeward hub status`).
import type { BundleTarget } from './bundle';
import type { HubServiceConfig } from './hub_config';
import type { HubStore, NodeRow } from './store';
import type { DropCounters } from './segment_queue';
import type { SpoolKind } from './spool';

export type ScopeState = 'in-sync' | 'behind' | 'refused' | 'no-report' | 'not-pushed';

export interface ScopeView {
  target: BundleTarget;
  desired?: number;
  inForce?: number;
  state: ScopeState;
  refused?: { version?: number; code: string; reason: string };
}

export interface NodeView {
  org: string;
  node: string;
  state: 'online' | 'offline' | 'never-seen';
  since?: string;
  groups: string[];
  scopes: ScopeView[];
  /** documents whose policy the agent could not enforce */
  policyErrors: string[];
  alerts: number;
  duplicates: number;
  rejectedBatches: number;
  dropped: Record<SpoolKind, DropCounters>;
}

const ZERO: Record<SpoolKind, DropCounters> = { alerts: { full: 0, corrupt: 0, tooLarge: 0 }, telemetry: { full: 0, corrupt: 0, tooLarge: 0 } };

export function fleetView(store: HubStore, inventory: HubServiceConfig['nodes'] = []): NodeView[] {
  const rows = new Map<string, NodeRow | undefined>();
  for (const n of inventory) rows.set(`${n.org}/${n.node}`, undefined);
  for (const r of store.nodes()) rows.set(`${r.org}/${r.node}`, r);
  const out: NodeView[] = [];
  for (const [key, row] of [...rows.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const [org, node] = key.split('/');
    const inv = inventory.find((n) => n.org === org && n.node === node);
    const groups = row?.reported?.groups ?? row?.status?.groups ?? inv?.groups ?? [];
    const targets: BundleTarget[] = [{ scope: 'node', name: node }, ...groups.map((g) => ({ scope: 'group' as const, name: g }))];
    const scopes = targets.map((target): ScopeView => {
      const desired = store.desired(org, target)?.version;
      const rep = row?.reported?.scopes?.find((s) => s.scope === target.scope && s.name === target.name);
      const inForce = rep?.inForce?.version;
      const v: ScopeView = { target, state: 'in-sync' };
      if (desired !== undefined) v.desired = desired;
      if (inForce !== undefined) v.inForce = inForce;
      if (rep?.refused && (rep.refused.version === undefined || rep.refused.version !== inForce)) {
        v.refused = { code: rep.refused.code, reason: rep.refused.reason };
        if (rep.refused.version !== undefined) v.refused.version = rep.refused.version;
      }
      if (desired === undefined) v.state = inForce === undefined ? 'not-pushed' : 'in-sync';
      else if (!row?.reported) v.state = 'no-report';
      else if (inForce === desired) v.state = 'in-sync';
      else if (v.refused && (v.refused.version === undefined || v.refused.version === desired)) v.state = 'refused';
      else v.state = 'behind';
      return v;
    });
    const policyErrors = (row?.reported?.documents ?? []).filter((d) => d.status === 'error').map((d) => `${d.policy}: ${d.errors.join('; ')}`);
    const view: NodeView = {
      org,
      node,
      state: row?.state ?? 'never-seen',
      groups,
      scopes,
      policyErrors,
      alerts: row?.alerts ?? 0,
      duplicates: row?.duplicates ?? 0,
      rejectedBatches: row?.rejected ?? 0,
      dropped: row?.dropped ?? ZERO,
    };
    if (row?.statusAt) view.since = row.statusAt;
    out.push(view);
  }
  return out;
}

export function formatFleet(views: NodeView[]): string {
  if (views.length === 0) return 'no nodes known yet\n';
  const lines: string[] = [];
  for (const v of views) {
    const dropped = v.dropped.alerts.full + v.dropped.alerts.corrupt + v.dropped.alerts.tooLarge;
    const droppedT = v.dropped.telemetry.full + v.dropped.telemetry.corrupt + v.dropped.telemetry.tooLarge;
    lines.push(
      `${v.node}@${v.org}  ${v.state}${v.since ? ` since ${v.since}` : ''}  alerts ${v.alerts}` +
        (dropped || droppedT ? `  DROPPED alerts ${dropped}, telemetry ${droppedT}` : '') +
        (v.rejectedBatches ? `  rejected batches ${v.rejectedBatches}` : ''),
    );
    for (const s of v.scopes) {
      const name = s.target.scope === 'node' ? 'node policy' : `group ${s.target.name}`;
      const versions = `desired ${s.desired ?? '-'}, in force ${s.inForce ?? '-'}`;
      const refusal = s.refused ? `; refused${s.refused.version !== undefined ? ` version ${s.refused.version}` : ''}: ${s.refused.code}: ${s.refused.reason}` : '';
      lines.push(`  ${name}: ${s.state} (${versions})${refusal}`);
    }
    for (const e of v.policyErrors) lines.push(`  policy error: ${e}`);
  }
  return lines.join('\n') + '\n';
}
