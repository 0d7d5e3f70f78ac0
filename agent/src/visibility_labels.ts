// Per-container visibility: KubeArmor's `kubearmor-visibility` annotation
// ("process,file,network,capabilities" or "none"), read here from the
// container's Docker label of the same name. A labelled container gets the
// groups its label names, whatever the node-wide config `visibility` says;
// an unlabelled container and the host follow the config.
//
// Only the groups the monitor runs can be logged: the monitor's groups are
// fixed when the agent starts (config monitor.* or visibility.*). A label
// asking for a group the monitor does not run is reported once per
// container, naming the config key that turns it on. "capabilities" is
// accepted as KubeArmor's value and logs nothing: edgeward has no capability
// telemetry.
//
// A label that does not parse (an unknown group, "none" with others, an
// empty value) is reported with the container's name and the bad part, and
// the container follows the node-wide setting: a typo must not silently turn
// a container's telemetry off.
import type { VisibilityConfig } from './visibility';

export const VISIBILITY_LABEL = 'kubearmor-visibility';

export const VISIBILITY_GROUPS = ['process', 'file', 'network'] as const;
export type VisibilityGroup = (typeof VISIBILITY_GROUPS)[number];

/** What a label (or the node-wide config) turns on. */
export type VisibilityGroups = Record<VisibilityGroup, boolean>;

const KNOWN_TOKENS = new Set(['process', 'file', 'network', 'capabilities', 'none']);

export type ParsedVisibility = { ok: true; groups: VisibilityGroups } | { ok: false; error: string };

/**
 * Parses a kubearmor-visibility value: comma-separated groups (spaces
 * around them ignored, case-sensitive as KubeArmor's), or "none".
 */
export function parseVisibilityLabel(value: string): ParsedVisibility {
  const tokens = value.split(',').map((t) => t.trim());
  if (tokens.some((t) => t === '')) {
    return { ok: false, error: `${JSON.stringify(value)} has an empty group (expected e.g. "process,file,network,capabilities" or "none")` };
  }
  const unknown = tokens.filter((t) => !KNOWN_TOKENS.has(t));
  if (unknown.length) {
    return { ok: false, error: `${JSON.stringify(value)}: unknown group ${unknown.map((u) => JSON.stringify(u)).join(', ')} (known: process, file, network, capabilities, none)` };
  }
  if (tokens.includes('none') && tokens.length > 1) {
    return { ok: false, error: `${JSON.stringify(value)}: "none" cannot be combined with other groups` };
  }
  const set = new Set(tokens);
  return { ok: true, groups: { process: set.has('process'), file: set.has('file'), network: set.has('network') } };
}

/** What the per-container visibility needs of a container (ContainerIdentity has it). */
export interface LabelledContainer {
  id: string;
  name: string;
  labels: Record<string, string>;
}

/**
 * Which telemetry log records are wanted: the host's and unlabelled
 * containers' per the node-wide config, a labelled container's per its
 * label. Fed with the containers as they come and go.
 */
export class ContainerVisibility {
  private readonly overrides = new Map<string, { name: string; groups: VisibilityGroups }>();
  /** per group: how many known containers' labels turn it on */
  private readonly onCount: Record<VisibilityGroup, number> = { process: 0, file: 0, network: 0 };
  /** containers whose label was reported (once each, not at every restart or reconnect) */
  private readonly reported = new Set<string>();

  constructor(
    private readonly node: Pick<VisibilityConfig, VisibilityGroup>,
    /** the groups the monitor runs (fixed at start) */
    private readonly monitored: VisibilityGroups,
    private readonly warn: (message: string) => void,
  ) {}

  /** A container appeared (or was seen again): reads its label. */
  containerAdded(c: LabelledContainer): void {
    this.containerRemoved(c.id);
    const value = c.labels[VISIBILITY_LABEL];
    if (value === undefined) return;
    const parsed = parseVisibilityLabel(value);
    if (!parsed.ok) {
      this.warnOnce(c.id, `container ${c.name} (${c.id.slice(0, 12)}): label ${VISIBILITY_LABEL}=${parsed.error}; it follows the node-wide visibility config`);
      return;
    }
    const unmonitored = VISIBILITY_GROUPS.filter((g) => parsed.groups[g] && !this.monitored[g]);
    if (unmonitored.length) {
      this.warnOnce(
        c.id,
        `container ${c.name} (${c.id.slice(0, 12)}): label ${VISIBILITY_LABEL} asks for ${unmonitored.join(', ')} telemetry, ` +
          `which the monitor does not run on this node (${unmonitored.map((g) => `monitor.${g}: true`).join(', ')} in the config turns it on)`,
      );
    }
    this.overrides.set(c.id, { name: c.name, groups: parsed.groups });
    for (const g of VISIBILITY_GROUPS) if (parsed.groups[g]) this.onCount[g]++;
  }

  private warnOnce(id: string, message: string): void {
    if (this.reported.has(id)) return;
    // bounded: ids of containers long gone are not kept for ever
    if (this.reported.size >= 4096) this.reported.clear();
    this.reported.add(id);
    this.warn(message);
  }

  containerRemoved(id: string): void {
    const known = this.overrides.get(id);
    if (!known) return;
    this.overrides.delete(id);
    for (const g of VISIBILITY_GROUPS) if (known.groups[g]) this.onCount[g]--;
  }

  /**
   * false: no record of this group is wanted anywhere (node-wide off, no
   * label turns it on), so the caller need not build one. One check per event.
   */
  anyWants(group: VisibilityGroup): boolean {
    return this.monitored[group] && (this.node[group] || this.onCount[group] > 0);
  }

  /** Whether a record of `group` from this container (ContainerID; absent or '': the host) is wanted. */
  wants(group: VisibilityGroup, containerId: string | undefined): boolean {
    if (!this.monitored[group]) return false;
    const o = containerId ? this.overrides.get(containerId) : undefined;
    return o ? o.groups[group] : this.node[group];
  }

  /** The labelled containers and the groups their labels turn on (for status). */
  labelled(): Array<{ id: string; name: string; visibility: VisibilityGroup[] }> {
    return [...this.overrides].map(([id, o]) => ({ id, name: o.name, visibility: VISIBILITY_GROUPS.filter((g) => o.groups[g]) }));
  }
}
