// The hub service (`edgeward hub serve`): collects alerts and telemetry
// into SQLite and acknowledges them to their node once stored, tracks each
// node's status and reported policy state, signs and publishes policy
// bundles (retained), and puts them back on the broker when the broker lost
// them. Several instances may run against one broker: alerts and telemetry
// come through a shared subscription ($share/<group>/...), so each batch
// reaches exactly one instance.
import * as crypto from 'crypto';
import type * as net from 'net';
import { BundleDocument, BundleTarget, DEFAULT_MAX_BUNDLE_BYTES, loadSigningKey, parsePublicKey, PinnedKey, policiesOf, signBundle, SigningKey, verifyBundle } from './bundle';
import { Connection, loadTls, readPasswordFile } from './connection';
import { loadNative } from '../native';
import { defaultControlSocket, PushRequest, PushResponse, serveControl } from './control';
import { Emitter, HubLogger, silentLogger } from './emitter';
import type { HubServiceConfig } from './hub_config';
import { ACK_FORMAT, AckMessage, HUB_STATUS_FORMAT, HubStatusMessage, parseBatch, parseNodeStatus, parseReported, RecordBatch, ReportedState } from './protocol';
import { err, formatHubError, hubError, HubError, ok, Result } from './result';
import { HubStore, NodeUpdate } from './store';
import { checkId, groupDesiredTopic, hubFilters, hubStatusTopic, nodeTopics, parseTopic } from './topics';

export interface HubServiceEvents {
  connected: () => void;
  stored: (org: string, node: string, kind: 'alerts' | 'telemetry', inserted: number, duplicates: number) => void;
  reported: (org: string, node: string, state: ReportedState) => void;
  error: (e: HubError) => void;
}

export interface HubServiceOptions {
  log?: HubLogger;
  random?: () => number;
  /** default: next to the database; false: none */
  controlSocket?: string | false;
  /** largest batch accepted from a node */
  maxBatchBytes?: number;
  /** how long after connecting retained bundles are awaited before republishing lost ones */
  reconcileDelayMs?: number;
}

const MAX_BATCH_BYTES = 16 * 1024 * 1024;

export class HubService extends Emitter<HubServiceEvents> {
  private readonly connection: Connection;
  private readonly log: HubLogger;
  private readonly onBroker = new Map<string, { version: number; contentHash: string }>();
  private control: net.Server | undefined;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private readonly publicKey: PinnedKey | undefined;
  /** what arrived during this event-loop turn, written together at its end (writePending) */
  private batches: Array<{ org: string; node: string; batch: RecordBatch }> = [];
  private nodeUpdates: NodeUpdate[] = [];
  private writeScheduled = false;

  private constructor(
    readonly config: HubServiceConfig,
    readonly store: HubStore,
    private readonly signingKey: SigningKey | undefined,
    private readonly options: HubServiceOptions,
    tls: ReturnType<typeof loadTls> & { ok: true },
    password: string | undefined,
  ) {
    super();
    this.log = options.log ?? silentLogger;
    if (signingKey) {
      const pub = parsePublicKey(crypto.createPublicKey(signingKey.key).export({ type: 'spki', format: 'pem' }).toString(), 'signing key');
      if (pub.ok) this.publicKey = pub.value;
    }
    const c = config;
    const filters = hubFilters(c.topicPrefix, c.shareGroup);
    this.connection = new Connection({
      url: c.broker.url,
      clientId: c.broker.username,
      username: c.broker.username,
      ...(password !== undefined ? { password } : {}),
      tls: tls.value,
      keepaliveSeconds: 30,
      connectTimeoutMs: 10_000,
      backoff: c.reconnect,
      ...(options.random ? { random: options.random } : {}),
      will: (s) => ({ topic: hubStatusTopic(c.topicPrefix, c.instance), payload: this.hubStatus('offline', s), retain: true }),
      subscriptions: () => [
        filters.alerts,
        filters.telemetry,
        filters.reported,
        filters.status,
        `${c.topicPrefix}/+/nodes/+/policy/desired`,
        `${c.topicPrefix}/+/groups/+/policy/desired`,
      ],
      log: this.log,
    });
    // what the broker holds is learnt anew on every connection (it may have lost retained messages)
    this.connection.on('session', () => this.onBroker.clear());
    this.connection.on('up', () => this.onUp());
    this.connection.on('error', (e) => {
      this.log.warn(`hub: ${formatHubError(e)}`);
      this.emit('error', e);
    });
    this.connection.on('message', (topic, payload) => this.onMessage(topic, payload));
  }

  static create(config: HubServiceConfig, options: HubServiceOptions = {}): Result<HubService, HubError[]> {
    const errors: HubError[] = [];
    const tls = loadTls(config.broker.tls);
    if (!tls.ok) errors.push(tls.error);
    let password: string | undefined;
    if (config.broker.passwordFile) {
      const p = readPasswordFile(config.broker.passwordFile);
      if (p.ok) password = p.value;
      else errors.push(p.error);
    }
    let signingKey: SigningKey | undefined;
    if (config.signingKey) {
      const k = loadSigningKey(config.signingKey);
      if (k.ok) signingKey = k.value;
      else errors.push(k.error);
    }
    if (errors.length || !tls.ok) return err(errors);
    const store = HubStore.open(config.database);
    if (!store.ok) return err([store.error]);
    return ok(new HubService(config, store.value, signingKey, options, tls, password));
  }

  async start(): Promise<Result<void>> {
    if (this.options.controlSocket !== false) {
      const socket = this.options.controlSocket ?? defaultControlSocket(this.config.database);
      // SO_PEERCRED needs the addon: loaded only when the control socket is served
      const native = loadNative();
      const s = await serveControl(socket, (req) => this.handleControl(req), (fd) => native.peerCredentials(fd));
      if (!s.ok) return s;
      this.control = s.value;
    }
    this.connection.start();
    return ok(undefined);
  }

  async stop(): Promise<void> {
    if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
    await new Promise<void>((resolve) => (this.control ? this.control.close(() => resolve()) : resolve()));
    this.control = undefined;
    this.writePending(); // while connected: the acknowledgements still go out
    await this.connection.stop(async () => {
      await this.connection.publish(hubStatusTopic(this.config.topicPrefix, this.config.instance), this.hubStatus('offline', this.connection.sessionId()), { qos: 1, retain: true });
    });
    this.writePending();
    this.store.close();
  }

  isConnected(): boolean {
    return this.connection.isUp();
  }

  /** Signs the documents as the next version for the target and publishes them (retained). */
  async push(org: string, target: BundleTarget, documents: BundleDocument[]): Promise<Result<PushResponse>> {
    if (!this.signingKey) return err(hubError('key-unreadable', 'no signingKey in the hub configuration: cannot sign bundles'));
    const ids = [checkId('organization', org), checkId(target.scope, target.name)];
    for (const i of ids) if (!i.ok) return i;
    const probe = policiesOf({ org, target, version: 1, issuedAt: '', documents, contentHash: '' });
    if (!probe.ok) return err(probe.error);
    const key = `${org}/${target.scope}/${target.name}`;
    const known = Math.max(this.store.desired(org, target)?.version ?? 0, this.onBroker.get(key)?.version ?? 0, this.store.highestReportedVersion(org, target));
    // seconds since the epoch as a floor: a hub that lost its database still issues a newer version
    const version = Math.max(known + 1, Math.floor(Date.now() / 1000));
    const bytes = signBundle({ org, target, version, documents }, this.signingKey);
    if (bytes.length > DEFAULT_MAX_BUNDLE_BYTES) {
      return err(hubError('too-large', `bundle of ${bytes.length} bytes: nodes refuse more than ${DEFAULT_MAX_BUNDLE_BYTES} bytes by default`));
    }
    const topic = target.scope === 'node' ? nodeTopics(this.config.topicPrefix, org, target.name).desired : groupDesiredTopic(this.config.topicPrefix, org, target.name);
    const published = await this.connection.publish(topic, bytes, { qos: 1, retain: true });
    if (!published.ok) return published;
    const v = verifyBundle(bytes, this.publicKey ? [this.publicKey] : []);
    const contentHash = v.ok ? v.value.payload.contentHash : '';
    this.store.recordDesired({ org, target, version, contentHash, bundle: bytes, documents: documents.map((d) => d.name), pushedAt: new Date().toISOString() });
    this.onBroker.set(key, { version, contentHash });
    this.log.info(`hub: pushed ${target.scope} ${target.name} of ${org}: version ${version} (${documents.length} documents)`);
    return ok({ version, contentHash });
  }

  private handleControl(req: PushRequest): Promise<Result<PushResponse>> {
    if (req.target.scope !== 'node' && req.target.scope !== 'group') return Promise.resolve(err(hubError('malformed', 'target.scope must be node or group')));
    return this.push(req.org, { scope: req.target.scope, name: String(req.target.name) }, req.documents.map((d) => ({ name: String(d.name), yaml: String(d.yaml) })));
  }

  private hubStatus(state: 'online' | 'offline', session: string): Buffer {
    const m: HubStatusMessage = { format: HUB_STATUS_FORMAT, state, instance: this.config.instance, session, at: new Date().toISOString() };
    return Buffer.from(JSON.stringify(m));
  }

  private onUp(): void {
    void this.connection.publish(hubStatusTopic(this.config.topicPrefix, this.config.instance), this.hubStatus('online', this.connection.sessionId()), { qos: 1, retain: true });
    // retained bundles arrive right after the subscription; then put back what the broker lost
    if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
    this.reconcileTimer = setTimeout(() => void this.reconcile(), this.options.reconcileDelayMs ?? 1000);
    this.reconcileTimer.unref();
    this.emit('connected');
  }

  private async reconcile(): Promise<void> {
    for (const d of this.store.allDesired()) {
      const key = `${d.org}/${d.target.scope}/${d.target.name}`;
      const seen = this.onBroker.get(key);
      if (seen && seen.version >= d.version) continue;
      const topic = d.target.scope === 'node' ? nodeTopics(this.config.topicPrefix, d.org, d.target.name).desired : groupDesiredTopic(this.config.topicPrefix, d.org, d.target.name);
      const r = await this.connection.publish(topic, d.bundle, { qos: 1, retain: true });
      if (r.ok) {
        this.onBroker.set(key, { version: d.version, contentHash: d.contentHash });
        this.log.info(`hub: republished ${key} version ${d.version} (the broker had ${seen ? `version ${seen.version}` : 'none'})`);
      }
    }
  }

  private onMessage(topic: string, payload: Buffer): void {
    const t = parseTopic(this.config.topicPrefix, topic);
    if (!t || t.kind === 'hub') return;
    if (t.channel === 'desired') return this.onDesired(t.kind === 'node' ? { scope: 'node', name: t.node } : { scope: 'group', name: t.group }, t.org, payload);
    if (t.kind !== 'node') return;
    const { org, node } = t;
    switch (t.channel) {
      case 'alerts':
      case 'telemetry': {
        const b = parseBatch(payload, this.options.maxBatchBytes ?? MAX_BATCH_BYTES);
        if (!b.ok || b.value.kind !== t.channel) {
          this.store.countRejected(org, node);
          this.log.warn(`hub: batch from ${node}@${org} refused: ${b.ok ? `kind ${b.value.kind} on the ${t.channel} topic` : formatHubError(b.error)}`);
          return;
        }
        this.batches.push({ org, node, batch: b.value });
        this.scheduleWrite();
        return;
      }
      case 'reported': {
        if (payload.length === 0) return;
        const r = parseReported(payload);
        if (!r.ok) {
          this.log.warn(`hub: reported state of ${node}@${org} unreadable: ${formatHubError(r.error)}`);
          return;
        }
        this.nodeUpdates.push({ kind: 'reported', org, node, reported: r.value });
        this.scheduleWrite();
        return;
      }
      case 'status': {
        if (payload.length === 0) return;
        const s = parseNodeStatus(payload);
        if (s.ok) {
          this.nodeUpdates.push({ kind: 'status', org, node, status: s.value });
          this.scheduleWrite();
        }
        return;
      }
      default:
        return;
    }
  }

  /**
   * A thousand nodes answering a push (or connecting, or sending alerts) send
   * within moments: each message written on its own would cost the hub one
   * commit (fsync) and stall everything behind it. What arrived during one
   * event-loop turn is written at its end: the alert and telemetry batches in
   * one transaction, acknowledged only once it committed; then the status and
   * reported messages in another, in arrival order.
   */
  private scheduleWrite(): void {
    if (this.writeScheduled) return;
    this.writeScheduled = true;
    setImmediate(() => this.writePending());
  }

  private writePending(): void {
    this.writeScheduled = false;
    const batches = this.batches.splice(0);
    const together = batches.length ? this.store.storeBatches(batches) : ok([]);
    batches.forEach(({ org, node, batch }, i) => {
      // the shared transaction failed: each on its own, so one batch the database refuses
      // cannot keep the other nodes' batches unacknowledged
      const stored = together.ok ? ok(together.value[i]) : this.store.storeBatch(org, node, batch);
      if (!stored.ok) {
        // not acknowledged: the node sends it again
        this.log.error(`hub: ${formatHubError(stored.error)}`);
        this.emit('error', stored.error);
        return;
      }
      const ack: AckMessage = { format: ACK_FORMAT, kind: batch.kind, epoch: batch.epoch, from: batch.from, to: batch.to };
      void this.connection.publish(nodeTopics(this.config.topicPrefix, org, node).ack, Buffer.from(JSON.stringify(ack)), { qos: 1 });
      this.emit('stored', org, node, batch.kind, stored.value.inserted, stored.value.duplicates);
    });
    const updates = this.nodeUpdates.splice(0);
    if (!updates.length) return;
    try {
      this.store.recordNodeUpdates(updates);
    } catch (e) {
      // the broker keeps both retained: they come back on the next connection
      const error = hubError('io', `hub database: cannot record ${updates.length} node status/reported messages`, e);
      this.log.error(`hub: ${formatHubError(error)}`);
      this.emit('error', error);
      return;
    }
    for (const u of updates) if (u.kind === 'reported') this.emit('reported', u.org, u.node, u.reported);
  }

  /** A desired bundle on the broker (retained, or pushed by another instance): learn its version. */
  private onDesired(target: BundleTarget, org: string, payload: Buffer): void {
    if (payload.length === 0 || !this.publicKey) return;
    const v = verifyBundle(payload, [this.publicKey], 64 * 1024 * 1024);
    if (!v.ok) {
      this.log.warn(`hub: the broker holds a bundle for ${target.scope} ${target.name} of ${org} that does not verify: ${formatHubError(v.error)}`);
      return;
    }
    const key = `${org}/${target.scope}/${target.name}`;
    const p = v.value.payload;
    const seen = this.onBroker.get(key);
    if (!seen || p.version > seen.version) this.onBroker.set(key, { version: p.version, contentHash: p.contentHash });
    this.store.recordDesired({ org, target, version: p.version, contentHash: p.contentHash, bundle: payload, documents: p.documents.map((d) => d.name), pushedAt: p.issuedAt });
  }
}
