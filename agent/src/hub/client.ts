// The node side of hub sync. createHubClient() works without any network:
// it restores the last good policy bundles from disk (so the agent enforces
// them from boot on) and opens the alert spool. start() then connects and
//  - verifies signed bundles from the node's and its groups' desired topics,
//    stores and materialises them, asks the agent to reload and publishes
//    the outcome (or the refusal) on `reported`;
//  - sends spooled alerts and telemetry in order, in batches, and lets a
//    record leave the spool only once the hub acknowledged it (or, with
//    delivery "puback", once the broker did);
//  - keeps a retained online/offline status (last will) with the spool's
//    drop counters.
import * as crypto from 'crypto';
import * as path from 'path';
import type { KubeArmorAlert } from '../alerts';
import { BundleTarget, checkAgainst, loadPublicKey, PinnedKey, policiesOf, verifyBundle } from './bundle';
import { Connection, loadTls, readPasswordFile } from './connection';
import { Emitter, HubLogger, silentLogger } from './emitter';
import { NodeIdentity, resolveIdentity } from './identity';
import type { MqttPacket } from './mqtt_types';
import { HubConfig, hubStateDirectory } from './options';
import { PolicyStore, scopeLabel, StoreProblem } from './policy_store';
import {
  DocumentReport,
  encodeBatch,
  encodeRecordBody,
  NodeStatusMessage,
  parseAck,
  parseHubStatus,
  parseNodeStatus,
  REPORTED_FORMAT,
  ReportedState,
  ScopeReport,
  STATUS_FORMAT,
} from './protocol';
import { err, formatHubError, hubError, HubError, ok, Result } from './result';
import { Spool, SpoolKind, SpoolStats, SPOOL_KINDS } from './spool';
import { groupDesiredTopic, hubStatusFilter, nodeTopics, NodeTopics, nodeUserName, parseTopic } from './topics';

/** What the agent's reload returns (structurally agent.ts's PolicyLoadSummary). */
export interface PolicyLoadReport {
  files: number;
  policies: number;
  rules: number;
  errors: string[];
  warnings: string[];
}

export interface HubClientOptions {
  config: HubConfig;
  /** the agent's stateDirectory; the client keeps its files in <stateDirectory>/hub */
  stateDirectory: string;
  /** Reloads the agent's policies (its own directory + policyDirectory) and says what happened. */
  requestReload: () => PolicyLoadReport | Promise<PolicyLoadReport>;
  /** the agent's last load, for the first report after start */
  currentLoad?: () => PolicyLoadReport | undefined;
  env?: NodeJS.ProcessEnv;
  log?: HubLogger;
  /** for tests: jitter source */
  random?: () => number;
}

export interface BundleOutcome {
  target: BundleTarget;
  outcome: 'applied' | 'refused';
  version?: number;
  error?: HubError;
  load?: PolicyLoadReport;
}

export interface HubClientEvents {
  connected: (session: string) => void;
  disconnected: (reason: HubError) => void;
  bundle: (outcome: BundleOutcome) => void;
  reported: (state: ReportedState) => void;
  delivered: (kind: SpoolKind, from: number, to: number) => void;
  error: (error: HubError) => void;
}

export interface HubClientStatus {
  connected: boolean;
  identity: NodeIdentity;
  scopes: ScopeReport[];
  spool: SpoolStats;
  lastError?: string;
}

export type EnqueueResult = Result<{ id: string; seq: number }>;

interface Outstanding {
  from: number;
  to: number;
  sentAt: number;
}

interface Sender {
  /** bumped on every rewind: answers to publishes of an earlier round are ignored */
  generation: number;
  sendFrom: number;
  outstanding: Outstanding[];
  ackTimeoutMs: number;
  scheduled: boolean;
}

const MAX_ACK_TIMEOUT_MS = 5 * 60_000;
const STATUS_THROTTLE_MS = 5000;

export class HubClient extends Emitter<HubClientEvents> {
  private readonly topics: NodeTopics;
  private readonly connection: Connection;
  private readonly senders: Record<SpoolKind, Sender>;
  private readonly refusals = new Map<string, NonNullable<ScopeReport['refused']>>();
  private readonly log: HubLogger;
  private stopped = false;
  private started = false;
  private committing = false;
  private commitAgain = false;
  private applied: BundleOutcome[] = [];
  private lastLoad: PolicyLoadReport | undefined;
  private lastError: HubError | undefined;
  private ackTimer: NodeJS.Timeout | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private lastStatusAt = 0;
  private readonly hubSessions = new Map<string, string>();

  /** @internal use createHubClient */
  constructor(
    readonly identity: NodeIdentity,
    private readonly config: HubConfig,
    private readonly options: HubClientOptions,
    private readonly keys: PinnedKey[],
    private readonly store: PolicyStore,
    private readonly spool: Spool,
    connection: (client: HubClient) => Connection,
    /** stored bundles that could not be used at start (also reported as refused) */
    readonly restoreProblems: StoreProblem[],
  ) {
    super();
    this.log = options.log ?? silentLogger;
    this.topics = nodeTopics(config.topicPrefix, identity.org, identity.node);
    const sender = (): Sender => ({ generation: 0, sendFrom: 1, outstanding: [], ackTimeoutMs: config.ackTimeoutMs, scheduled: false });
    this.senders = { alerts: sender(), telemetry: sender() };
    this.connection = connection(this);
    for (const p of restoreProblems) {
      this.log.error(`hub: ${formatHubError(p.error)}`);
      this.refusals.set(`${p.target.scope}:${p.target.name}`, { code: p.error.code, reason: p.error.message, at: new Date().toISOString() });
    }
  }

  /** The agent's latest load: asked for each report when the agent offers it (any reload path counts). */
  private load(): PolicyLoadReport | undefined {
    return this.options.currentLoad?.() ?? this.lastLoad;
  }

  /** The directory of materialised hub policies: the agent loads it besides its own. */
  get policyDirectory(): string {
    return this.store.policyDirectory;
  }

  /** Connects (in the background; never throws). */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.connection.on('up', (_client, session) => this.onUp(session));
    this.connection.on('down', (reason) => {
      for (const kind of SPOOL_KINDS) this.senders[kind].generation++;
      this.lastError = reason;
      this.emit('disconnected', reason);
    });
    this.connection.on('error', (e) => {
      this.lastError = e;
      this.log.warn(`hub: ${formatHubError(e)}`);
      this.emit('error', e);
    });
    this.connection.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));
    this.ackTimer = setInterval(() => this.checkAckTimeouts(), Math.min(1000, Math.max(50, Math.floor(this.config.ackTimeoutMs / 4))));
    this.ackTimer.unref();
    this.connection.start();
  }

  /** Publishes "offline", disconnects and closes the spool. Alerts not yet delivered stay on disk. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.ackTimer) clearInterval(this.ackTimer);
    if (this.statusTimer) clearTimeout(this.statusTimer);
    await this.connection.stop(async () => {
      await this.connection.publish(this.topics.status, this.statusMessage('offline', 'stopped'), { qos: 1, retain: true });
    });
    this.spool.close();
  }

  /** Writes the alert to the spool (before any sending); an error value when refused (counted, never silent). */
  enqueueAlert(alert: KubeArmorAlert): EnqueueResult {
    return this.enqueue('alerts', alert);
  }

  /** Telemetry (e.g. the agent's warnings): sent like alerts, but dropped first when the spool is full. */
  enqueueTelemetry(data: Record<string, unknown>): EnqueueResult {
    return this.enqueue('telemetry', data);
  }

  /** The agent reloaded on its own (e.g. SIGHUP): report the new outcome. */
  policyReloaded(load: PolicyLoadReport): void {
    this.lastLoad = load;
    void this.publishReported();
  }

  status(): HubClientStatus {
    const s: HubClientStatus = { connected: this.connection.isUp(), identity: this.identity, scopes: this.scopeReports(), spool: this.spool.stats() };
    if (this.lastError) s.lastError = formatHubError(this.lastError);
    return s;
  }

  /** What would be published on `reported` now. */
  reportedState(): ReportedState {
    const r: ReportedState = {
      format: REPORTED_FORMAT,
      org: this.identity.org,
      node: this.identity.node,
      groups: [...this.config.groups],
      at: new Date().toISOString(),
      scopes: this.scopeReports(),
      documents: this.documentReports(),
    };
    const load = this.load();
    if (load) r.agent = { ...load, errors: [...load.errors], warnings: [...load.warnings] };
    return r;
  }

  // ---------------------------------------------------------------- spool

  private enqueue(kind: SpoolKind, data: unknown): EnqueueResult {
    if (this.stopped) return err(hubError('closed', 'hub client is stopped'));
    const id = crypto.randomUUID();
    const r = this.spool.append(kind, encodeRecordBody(id, Date.now(), data));
    if (!r.ok) {
      this.lastError = r.error;
      this.scheduleStatus();
      return r;
    }
    this.schedulePump(kind);
    return ok({ id, seq: r.value });
  }

  private schedulePump(kind: SpoolKind): void {
    const s = this.senders[kind];
    if (s.scheduled) return;
    s.scheduled = true;
    // one tick later: an alert burst becomes one batch
    setImmediate(() => {
      s.scheduled = false;
      this.pump(kind);
    });
  }

  private pump(kind: SpoolKind): void {
    if (this.stopped || !this.connection.isUp()) return;
    const s = this.senders[kind];
    const b = this.config.batch;
    const generation = s.generation;
    const topic = kind === 'alerts' ? this.topics.alerts : this.topics.telemetry;
    while (s.outstanding.length < b.maxInFlight) {
      const r = this.spool.read(kind, s.sendFrom, b.maxRecords, b.maxBytes);
      if (!r.ok) {
        this.lastError = r.error;
        this.emit('error', r.error);
        return;
      }
      if (r.value.length === 0) return;
      const records = r.value;
      const entry: Outstanding = { from: records[0].seq, to: records[records.length - 1].seq, sentAt: Date.now() };
      s.outstanding.push(entry);
      s.sendFrom = entry.to + 1;
      const batch = encodeBatch(kind, this.spool.epoch, this.spool.dropped(), records);
      void this.connection.publish(topic, batch, { qos: 1 }).then((res) => {
        if (generation !== s.generation || this.stopped) return;
        if (!res.ok) {
          // stays outstanding: sent again after the ack timeout or on reconnect
          this.lastError = res.error;
          this.log.warn(`hub: ${formatHubError(res.error)}`);
          this.emit('error', res.error);
          return;
        }
        if (this.config.delivery === 'puback') this.delivered(kind, entry.from, entry.to);
      });
    }
  }

  private delivered(kind: SpoolKind, from: number, to: number): void {
    const s = this.senders[kind];
    const r = this.spool.acknowledge(kind, from, to);
    if (!r.ok) {
      this.lastError = r.error;
      this.emit('error', r.error);
      return;
    }
    const watermark = this.spool.watermark(kind);
    s.outstanding = s.outstanding.filter((o) => !(o.to <= watermark || (o.from >= from && o.to <= to)));
    if (r.value > 0) {
      s.ackTimeoutMs = this.config.ackTimeoutMs;
      this.emit('delivered', kind, from, to);
    }
    this.pump(kind);
  }

  /** Start over from the oldest record not delivered (after reconnects, ack timeouts, a hub coming online). */
  private rewind(kind: SpoolKind): void {
    const s = this.senders[kind];
    s.generation++;
    s.outstanding = [];
    s.sendFrom = this.spool.watermark(kind) + 1;
    this.pump(kind);
  }

  private checkAckTimeouts(): void {
    if (!this.connection.isUp()) return;
    const now = Date.now();
    for (const kind of SPOOL_KINDS) {
      const s = this.senders[kind];
      const oldest = s.outstanding[0];
      if (oldest && now - oldest.sentAt > s.ackTimeoutMs) {
        this.log.info(`hub: no acknowledgement for ${kind} ${oldest.from}..${oldest.to} in ${s.ackTimeoutMs} ms; sending again`);
        // a silent hub is asked less and less often
        s.ackTimeoutMs = Math.min(MAX_ACK_TIMEOUT_MS, s.ackTimeoutMs * 2);
        this.rewind(kind);
      }
    }
  }

  // ---------------------------------------------------------------- connection

  private onUp(session: string): void {
    this.lastStatusAt = Date.now();
    void this.connection.publish(this.topics.status, this.statusMessage('online'), { qos: 1, retain: true });
    void this.publishReported();
    for (const kind of SPOOL_KINDS) {
      this.senders[kind].ackTimeoutMs = this.config.ackTimeoutMs;
      this.rewind(kind);
    }
    this.emit('connected', session);
  }

  subscriptions(): string[] {
    const p = this.config.topicPrefix;
    return [
      this.topics.desired,
      ...this.config.groups.map((g) => groupDesiredTopic(p, this.identity.org, g)),
      this.topics.ack,
      this.topics.status,
      hubStatusFilter(p),
    ];
  }

  statusMessage(state: 'online' | 'offline', reason?: string, session = this.connection.sessionId()): Buffer {
    const m: NodeStatusMessage = {
      format: STATUS_FORMAT,
      state,
      org: this.identity.org,
      node: this.identity.node,
      groups: [...this.config.groups],
      session,
      at: new Date().toISOString(),
    };
    if (this.identity.arch) m.arch = this.identity.arch;
    if (reason) m.reason = reason;
    if (state === 'online' || reason === 'stopped') {
      const st = this.spool.stats();
      m.spool = {
        epoch: st.epoch,
        pending: { alerts: st.alerts.pending, telemetry: st.telemetry.pending },
        bytes: st.bytes,
        maxBytes: st.maxBytes,
        dropped: { alerts: st.alerts.dropped, telemetry: st.telemetry.dropped },
      };
    }
    return Buffer.from(JSON.stringify(m));
  }

  /** Drop counters changed: tell the hub, at most every few seconds. */
  private scheduleStatus(): void {
    if (this.statusTimer || this.stopped) return;
    const wait = Math.max(0, this.lastStatusAt + STATUS_THROTTLE_MS - Date.now());
    this.statusTimer = setTimeout(() => {
      this.statusTimer = undefined;
      if (!this.connection.isUp()) return;
      this.lastStatusAt = Date.now();
      void this.connection.publish(this.topics.status, this.statusMessage('online'), { qos: 1, retain: true });
    }, wait);
    this.statusTimer.unref();
  }

  private onMessage(topic: string, payload: Buffer, packet: MqttPacket): void {
    const t = parseTopic(this.config.topicPrefix, topic);
    if (!t) return;
    if (t.kind === 'hub') {
      const s = parseHubStatus(payload);
      if (!s.ok) return;
      const before = this.hubSessions.get(t.instance);
      this.hubSessions.set(t.instance, s.value.session);
      // A hub instance came online while we are connected (a live message, not the retained one
      // delivered on subscribe): it may have missed batches, so send what is unacknowledged now
      // rather than after the ack timeout, which may have grown to minutes while it was away.
      if (s.value.state === 'online' && packet.retain !== true && before !== s.value.session) {
        for (const kind of SPOOL_KINDS) {
          this.senders[kind].ackTimeoutMs = this.config.ackTimeoutMs;
          this.rewind(kind);
        }
      }
      return;
    }
    if (t.org !== this.identity.org) return;
    if (t.kind === 'group') {
      if (this.config.groups.includes(t.group)) this.onDesired({ scope: 'group', name: t.group }, payload);
      return;
    }
    if (t.node !== this.identity.node) return;
    switch (t.channel) {
      case 'desired':
        this.onDesired({ scope: 'node', name: t.node }, payload);
        break;
      case 'ack': {
        const a = parseAck(payload);
        if (!a.ok) {
          this.log.warn(`hub: ${formatHubError(a.error)}`);
          return;
        }
        if (a.value.epoch === this.spool.epoch) this.delivered(a.value.kind, a.value.from, a.value.to);
        break;
      }
      case 'status': {
        // the will of an earlier connection arriving after this one's birth: say online again
        const s = parseNodeStatus(payload);
        if (s.ok && s.value.state === 'offline' && s.value.session !== this.connection.sessionId() && this.connection.isUp()) {
          void this.connection.publish(this.topics.status, this.statusMessage('online'), { qos: 1, retain: true });
        }
        break;
      }
      default:
        break;
    }
  }

  // ---------------------------------------------------------------- policy

  private onDesired(target: BundleTarget, payload: Buffer): void {
    const label = scopeLabel(target);
    if (payload.length === 0) {
      // a cleared retained message is not signed: it never removes policies (a signed empty bundle does)
      this.log.info(`hub: desired policy of ${label} cleared on the broker; keeping what is in force`);
      return;
    }
    const v = verifyBundle(payload, this.keys, this.config.maxBundleBytes);
    if (!v.ok) return this.refuse(target, v.error);
    const p = v.value.payload;
    const check = checkAgainst(v.value, { org: this.identity.org, target }, this.store.inForce(target), (ver, hash) =>
      this.store.seenBefore(target, ver, hash),
    );
    if (!check.ok) return this.refuse(target, check.error, p.version, p.contentHash);
    if (check.value === 'same') {
      // delivered again (retained, on reconnect): in force already
      return;
    }
    const policies = policiesOf(p);
    if (!policies.ok) return this.refuse(target, policies.error, p.version, p.contentHash);
    const stored = this.store.accept({ payload: p, keyId: v.value.keyId, documents: policies.value }, payload);
    if (!stored.ok) return this.refuse(target, stored.error, p.version, p.contentHash);
    this.refusals.delete(`${target.scope}:${target.name}`);
    this.log.info(`hub: ${label} bundle version ${p.version} accepted (${p.documents.length} documents)`);
    this.applied.push({ target, outcome: 'applied', version: p.version });
    void this.commit();
  }

  private refuse(target: BundleTarget, error: HubError, version?: number, contentHash?: string): void {
    const refusal: NonNullable<ScopeReport['refused']> = { code: error.code, reason: error.message, at: new Date().toISOString() };
    if (version !== undefined) refusal.version = version;
    if (contentHash !== undefined) refusal.contentHash = contentHash;
    this.refusals.set(`${target.scope}:${target.name}`, refusal);
    this.log.warn(`hub: ${scopeLabel(target)} bundle refused, keeping what is in force: ${formatHubError(error)}`);
    const outcome: BundleOutcome = { target, outcome: 'refused', error };
    if (version !== undefined) outcome.version = version;
    this.emit('bundle', outcome);
    void this.publishReported();
  }

  /** Materialises the accepted bundles, reloads the agent once for all of them, reports. */
  private async commit(): Promise<void> {
    if (this.committing) {
      this.commitAgain = true;
      return;
    }
    this.committing = true;
    try {
      do {
        this.commitAgain = false;
        // bundles arriving together (node + groups on connect) make one reload
        await new Promise((r) => setImmediate(r));
        const applied = this.applied.splice(0);
        const m = this.store.materialise();
        if (!m.ok) {
          this.lastError = m.error;
          this.log.error(`hub: ${formatHubError(m.error)}`);
          this.emit('error', m.error);
        }
        let load: PolicyLoadReport;
        try {
          load = await this.options.requestReload();
        } catch (e) {
          load = { files: 0, policies: 0, rules: 0, errors: [`agent reload failed: ${(e as Error)?.message ?? String(e)}`], warnings: [] };
        }
        this.lastLoad = load;
        for (const a of applied) this.emit('bundle', { ...a, load });
        await this.publishReported();
      } while (this.commitAgain);
    } finally {
      this.committing = false;
    }
  }

  private scopeReports(): ScopeReport[] {
    return this.store.scopes().map((target) => {
      const b = this.store.accepted(target);
      const r: ScopeReport = {
        scope: target.scope,
        name: target.name,
        inForce: b ? { version: b.payload.version, contentHash: b.payload.contentHash, issuedAt: b.payload.issuedAt } : null,
      };
      const refused = this.refusals.get(`${target.scope}:${target.name}`);
      if (refused) r.refused = refused;
      return r;
    });
  }

  private documentReports(): DocumentReport[] {
    const load = this.load();
    return this.store.documents().map((m) => {
      const base = { scope: m.scope.scope, scopeName: m.scope.name, version: m.version, document: m.document, policy: m.policy };
      if (m.overriddenBy) return { ...base, status: 'overridden' as const, errors: [], overriddenBy: m.overriddenBy };
      const file = path.join(this.store.policyDirectory, m.file);
      const name = m.policy.split('/').pop()!;
      const errors = load ? load.errors.filter((e) => e.startsWith(`${file}:`)) : [];
      const warnings = load ? load.warnings.filter((w) => w.startsWith(`${file}:`) || w.includes(`policy "${name}"`)) : [];
      const status = !load ? ('unknown' as const) : errors.length ? ('error' as const) : warnings.length ? ('warning' as const) : ('enforced' as const);
      return { ...base, file: m.file, status, errors: [...errors, ...warnings] };
    });
  }

  private async publishReported(): Promise<void> {
    const state = this.reportedState();
    this.emit('reported', state);
    if (!this.connection.isUp()) return; // published on the next connect
    const r = await this.connection.publish(this.topics.reported, Buffer.from(JSON.stringify(state)), { qos: 1, retain: true });
    if (!r.ok) {
      this.lastError = r.error;
      this.log.warn(`hub: ${formatHubError(r.error)}`);
    }
  }
}

/**
 * Validates everything, restores the last good bundles (materialising their
 * policies) and opens the spool; no network. Errors are values.
 */
export function createHubClient(options: HubClientOptions): Result<HubClient, HubError[]> {
  const c = options.config;
  const errors: HubError[] = [];
  const id = resolveIdentity({ organization: c.organization, nodeId: c.nodeId, arch: c.arch }, options.env ?? process.env);
  if (!id.ok) return err([id.error]);
  const identity = id.value.identity;
  for (const w of id.value.warnings) options.log?.warn(w);
  const keys: PinnedKey[] = [];
  for (const file of c.policyPublicKeys) {
    const k = loadPublicKey(file);
    if (k.ok) keys.push(k.value);
    else errors.push(k.error);
  }
  const tls = loadTls(c.tls);
  if (!tls.ok) errors.push(tls.error);
  let password: string | undefined;
  if (c.passwordFile) {
    const p = readPasswordFile(c.passwordFile);
    if (p.ok) password = p.value;
    else errors.push(p.error);
  }
  if (errors.length || !tls.ok) return err(errors);
  const dir = hubStateDirectory(options.stateDirectory);
  const opened = PolicyStore.open({ directory: dir, org: identity.org, node: identity.node, groups: c.groups, keys, maxBundleBytes: c.maxBundleBytes });
  if (!opened.ok) return err([opened.error]);
  const spool = Spool.open({ directory: path.join(dir, 'spool'), ...c.spool });
  if (!spool.ok) return err([spool.error]);
  const username = c.username ?? nodeUserName(identity.org, identity.node);
  const client = new HubClient(
    identity,
    c,
    options,
    keys,
    opened.value.store,
    spool.value,
    (self) =>
      new Connection({
        url: c.url,
        clientId: username,
        username,
        ...(password !== undefined ? { password } : {}),
        tls: tls.value,
        keepaliveSeconds: c.keepaliveSeconds,
        connectTimeoutMs: c.connectTimeoutMs,
        backoff: c.reconnect,
        ...(options.random ? { random: options.random } : {}),
        will: (session) => ({ topic: nodeTopics(c.topicPrefix, identity.org, identity.node).status, payload: self.statusMessage('offline', 'connection lost', session), retain: true }),
        maximumPacketSize: c.maxPacketBytes,
        subscriptions: () => self.subscriptions(),
        ...(options.log ? { log: options.log } : {}),
      }),
    opened.value.problems,
  );
  return ok(client);
}
