// Human-readable output of the control commands (--json prints the protocol's JSON instead).
import type { KubeArmorAlert } from '../alerts';
import { isThrottleSummary } from '../alert_throttle';
import { isLogRecord, KubeArmorLog, KubeArmorRecord } from '../visibility';
import type { ApplyResult, DeleteResult, PolicyListEntry } from './policy_ops';
import type { ContainerSummary, ControlError, StatusReport } from './protocol';

/** Columns padded to their widest cell; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

const shortId = (id: string): string => id.slice(0, 12);

export function formatContainer(a: Pick<KubeArmorAlert, 'ContainerID' | 'ContainerName' | 'ContainerImage' | 'Labels'>): string {
  if (!a.ContainerID) return 'host';
  return `container=${a.ContainerName ?? '?'} id=${shortId(a.ContainerID)} image=${a.ContainerImage ?? '?'} labels=${a.Labels || '-'}`;
}

/** One line per alert: time, action, result, policy, operation, resource, process, where. */
export function formatAlert(a: KubeArmorAlert): string {
  const parts = [
    a.UpdatedTime,
    a.Action,
    a.PolicyName,
    a.Operation,
    a.Resource,
    `${a.ProcessName} (pid ${a.HostPID})`,
    a.Result,
    formatContainer(a),
  ];
  let line = parts.join('  ');
  if (isThrottleSummary(a)) line += `  [+${a.Suppressed} more since ${a.SuppressedSince}, not written one by one]`;
  return line;
}

/** One line per telemetry log: time, type, operation, resource, process, result, where. */
export function formatLog(l: KubeArmorLog): string {
  const parts = [l.UpdatedTime, l.Type, l.Operation, l.Resource, `${l.ProcessName} (pid ${l.HostPID})`, l.Result, formatContainer(l)];
  let line = parts.join('  ');
  const summary = l as Partial<{ Suppressed: number; SuppressedSince: string }>;
  if (typeof summary.Suppressed === 'number') line += `  [+${summary.Suppressed} more since ${summary.SuppressedSince}, not written one by one]`;
  return line;
}

export function formatRecord(r: KubeArmorRecord): string {
  return isLogRecord(r) ? formatLog(r) : formatAlert(r);
}

export function formatPolicyList(entries: PolicyListEntry[]): string {
  if (entries.length === 0) return 'no policies in force';
  return table(
    ['NAME', 'KIND', 'NAMESPACE', 'ACTION', 'ORIGIN', 'FILE'],
    entries.map((e) => [e.name, e.kind, e.namespace ?? '-', e.action, e.origin, e.file]),
  );
}

export function formatApply(r: ApplyResult): string {
  const lines = r.applied.map((a) => `${a.change.padEnd(9)} ${a.kind} ${a.namespace ? `${a.namespace}/` : ''}${a.name}`);
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  lines.push(`${r.rulesInForce} rules in force`);
  return lines.join('\n');
}

export function formatDelete(r: DeleteResult): string {
  return [...r.deleted.map((d) => `deleted   ${d.kind} ${d.namespace ? `${d.namespace}/` : ''}${d.name}`), `${r.rulesInForce} rules in force`].join('\n');
}

export function formatContainers(containers: ContainerSummary[]): string {
  if (containers.length === 0) return 'no containers';
  return table(
    ['NAME', 'ID', 'IMAGE', 'LABELS'],
    containers.map((c) => [
      c.name,
      shortId(c.id),
      c.image,
      Object.entries(c.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(',') || '-',
    ]),
  );
}

export function formatStatus(s: StatusReport): string {
  const lines = [
    `agent:       running, pid ${s.pid}, since ${s.startedAt}`,
    `backend:     ${s.backend}${s.kernel ? ` (kernel ${s.kernel}${s.lsms ? `, lsms ${s.lsms.join(',')}` : ''})` : ''}`,
    `socket:      ${s.socket}`,
    `policies:    ${s.lastLoad?.policies ?? 0} in force, ${s.rulesInForce} rules (from ${s.policyDirectories.join(', ')})`,
    `alerts:      ${s.alerts} since start, ${s.alertsSuppressed} summarised by the throttle`,
    `logs:        ${s.visibility?.length ? `${s.logs ?? 0} since start, ${s.logsSuppressed ?? 0} summarised by the throttle (visibility: ${s.visibility.join(', ')})` : 'off (config visibility)'}`,
    `processes:   ${s.processes}`,
    `containers:  ${s.containers.length}`,
  ];
  const unhooked = s.containersStartedWithoutHook;
  if (unhooked?.count) {
    // newest last: the three latest are enough to find them with docker inspect
    const latest = unhooked.recent.slice(-3).map((u) => `${u.name} (${shortId(u.id)}) runtime ${u.runtime || '?'} at ${u.at}`);
    lines.push(`unhooked:    ${unhooked.count} container start(s) without the runtime hook (first program ran before the rules): ${latest.join('; ')}`);
  }
  if (s.ruleKinds) lines.push(`rule kinds:  ${Object.entries(s.ruleKinds).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  for (const e of s.lastLoad?.errors ?? []) lines.push(`error:       ${e}`);
  for (const w of s.lastLoad?.warnings ?? []) lines.push(`warning:     ${w}`);
  if (s.selfProtection) {
    const refused = Object.entries(s.selfProtection.refused).map(([k, v]) => `${k} ${v}`).join(', ');
    lines.push(`self-protection: in force, refused ${refused}`);
  }
  if (s.hub !== undefined) lines.push(`hub:         ${JSON.stringify(s.hub)}`);
  return lines.join('\n');
}

export function formatControlError(e: ControlError): string {
  return [e.message, ...(e.details ?? []).map((d) => `  ${d}`)].join('\n');
}
