// One logical MQTT 5 connection that stays up: a fresh mqtt.js client per
// attempt (mqtt.js's own reconnect is off, so nothing it queued on an old
// connection is replayed behind our back), attempts spaced by Backoff, and
// the subscriptions made again on every connect.
import * as crypto from 'crypto';
import * as fs from 'fs';
import { Backoff, BackoffOptions } from './backoff';
import { Emitter, HubLogger, silentLogger } from './emitter';
import { MqttClientLike, MqttConnectOptions, MqttGrant, MqttPacket, MqttPublishOptions, mqtt } from './mqtt_types';
import { err, formatHubError, hubError, HubError, ok, Result } from './result';

export interface TlsFiles {
  ca: string;
  cert?: string;
  key?: string;
  serverName?: string;
}

export interface TlsMaterial {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
  serverName?: string;
}

export function loadTls(files: TlsFiles): Result<TlsMaterial> {
  const read = (what: string, file: string): Result<Buffer> => {
    try {
      return ok(fs.readFileSync(file));
    } catch (e) {
      return err(hubError('tls-unreadable', `TLS ${what} ${file}: cannot read`, e));
    }
  };
  const ca = read('CA', files.ca);
  if (!ca.ok) return ca;
  const out: TlsMaterial = { ca: ca.value };
  if (files.cert) {
    const c = read('certificate', files.cert);
    if (!c.ok) return c;
    out.cert = c.value;
  }
  if (files.key) {
    const k = read('key', files.key);
    if (!k.ok) return k;
    out.key = k.value;
  }
  if (files.serverName) out.serverName = files.serverName;
  return ok(out);
}

export function readPasswordFile(file: string): Result<string> {
  try {
    const text = fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    if (!text) return err(hubError('invalid-options', `password file ${file} is empty`));
    return ok(text);
  } catch (e) {
    return err(hubError('invalid-options', `password file ${file}: cannot read`, e));
  }
}

export interface Will {
  topic: string;
  payload: Buffer;
  retain: boolean;
}

export interface ConnectionOptions {
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  tls: TlsMaterial;
  keepaliveSeconds: number;
  connectTimeoutMs: number;
  backoff: BackoffOptions;
  random?: () => number;
  /** called per attempt with that connection's session id */
  will?: (session: string) => Will;
  maximumPacketSize?: number;
  /** topic filters subscribed (QoS 1) after every connect */
  subscriptions: () => string[];
  log?: HubLogger;
}

export interface ConnectionEvents {
  /** CONNACK received, subscriptions not yet made (retained messages follow them) */
  session: (session: string) => void;
  /** connected and subscribed */
  up: (client: MqttClientLike, session: string) => void;
  down: (reason: HubError) => void;
  message: (topic: string, payload: Buffer, packet: MqttPacket) => void;
  error: (error: HubError) => void;
}

export class Connection extends Emitter<ConnectionEvents> {
  private client: MqttClientLike | undefined;
  private session = '';
  private upSince: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private readonly backoff: Backoff;
  private readonly log: HubLogger;
  private attempts = 0;

  constructor(private readonly options: ConnectionOptions) {
    super();
    this.backoff = new Backoff(options.backoff, options.random);
    this.log = options.log ?? silentLogger;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt();
  }

  /** the connected client, if up */
  current(): MqttClientLike | undefined {
    return this.upSince !== undefined ? this.client : undefined;
  }

  sessionId(): string {
    return this.session;
  }

  isUp(): boolean {
    return this.upSince !== undefined;
  }

  connectAttempts(): number {
    return this.attempts;
  }

  /** Publishes on the current connection; an error value when down, refused (e.g. not authorized) or cut. */
  publish(topic: string, payload: Buffer | string, opts: MqttPublishOptions): Promise<Result<void>> {
    const client = this.current();
    if (!client) return Promise.resolve(err(hubError('publish-failed', `not connected: ${topic} not published`)));
    return new Promise((resolve) => {
      client.publish(topic, payload, opts, (e) => {
        if (!e) return resolve(ok(undefined));
        const code = (e as { code?: number }).code;
        resolve(err(hubError(code === 135 ? 'not-authorized' : 'publish-failed', `publish to ${topic} failed`, e)));
      });
    });
  }

  /**
   * Ends the connection. `beforeDisconnect` runs first while still connected
   * (e.g. to publish "offline" so the will is not needed).
   */
  async stop(beforeDisconnect?: () => Promise<void>): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const client = this.client;
    if (client && this.upSince !== undefined && beforeDisconnect) {
      await Promise.race([beforeDisconnect(), new Promise((r) => setTimeout(r, 2000).unref())]);
    }
    this.client = undefined;
    this.upSince = undefined;
    if (client) {
      // a normal DISCONNECT: the broker discards the will
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          client.end(true);
          resolve();
        }, 2000);
        t.unref();
        client.end(false, {}, () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Drops the current connection (as if the network failed); for tests and for a stuck broker. */
  dropConnection(): void {
    this.client?.stream?.destroy();
  }

  private schedule(): void {
    if (this.stopped) return;
    const delay = this.backoff.next();
    this.log.debug(`hub: reconnecting to ${this.options.url} in ${delay} ms`);
    this.timer = setTimeout(() => this.attempt(), delay);
  }

  private attempt(): void {
    this.timer = undefined;
    if (this.stopped) return;
    this.attempts++;
    this.session = crypto.randomBytes(8).toString('hex');
    const o = this.options;
    const opts: MqttConnectOptions = {
      protocolVersion: 5,
      clientId: o.clientId,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: o.connectTimeoutMs,
      keepalive: o.keepaliveSeconds,
      ca: o.tls.ca,
      rejectUnauthorized: true,
      properties: o.maximumPacketSize ? { maximumPacketSize: o.maximumPacketSize } : {},
    };
    if (o.tls.cert) opts.cert = o.tls.cert;
    if (o.tls.key) opts.key = o.tls.key;
    if (o.tls.serverName) opts.servername = o.tls.serverName;
    if (o.username !== undefined) opts.username = o.username;
    if (o.password !== undefined) opts.password = o.password;
    if (o.will) {
      const w = o.will(this.session);
      opts.will = { topic: w.topic, payload: w.payload, qos: 1, retain: w.retain };
    }
    let client: MqttClientLike;
    try {
      client = mqtt.connect(o.url, opts);
    } catch (e) {
      this.emit('error', hubError('connect-failed', `cannot connect to ${o.url}`, e));
      this.schedule();
      return;
    }
    this.client = client;
    // No Nagle: a report or a PUBACK is one small write; held back until the broker ACKs
    // the previous small segment (delayed ACK), each waited up to 40 ms.
    client.stream?.setNoDelay?.(true);
    let lastError: HubError | undefined;
    let closed = false;
    client.on('error', (e) => {
      const code = (e as { code?: number }).code;
      lastError = hubError(code === 135 || code === 134 || code === 5 || code === 4 ? 'not-authorized' : 'connect-failed', `MQTT connection to ${o.url}`, e);
      this.emit('error', lastError);
    });
    client.on('message', (topic, payload, packet) => {
      // retained messages may be parsed in the same chunk as the SUBACK, before 'up' is emitted
      if (this.client === client && !closed) this.emit('message', topic, payload, packet);
    });
    client.on('connect', () => {
      if (this.client !== client) return;
      this.upSince = Date.now();
      this.emit('session', this.session);
      const filters = o.subscriptions();
      const subscribed = filters.length
        ? new Promise<Result<MqttGrant[]>>((resolve) =>
            client.subscribe(filters.map((t) => ({ [t]: { qos: 1 as const } })).reduce((a, b) => ({ ...a, ...b }), {}), (e, granted) =>
              resolve(e ? err(hubError('subscribe-failed', `subscribe to ${filters.join(', ')}`, e)) : ok(granted ?? [])),
            ),
          )
        : Promise.resolve(ok([] as MqttGrant[]));
      subscribed.then((r) => {
        if (this.client !== client || closed) return;
        if (!r.ok) this.emit('error', r.error);
        else {
          for (const g of r.value) {
            if (g.qos & 0x80) this.emit('error', hubError('subscribe-failed', `subscription to ${g.topic} refused by the broker (reason ${g.qos})`));
          }
        }
        this.log.info(`hub: connected to ${o.url} as ${o.clientId}`);
        this.emit('up', client, this.session);
      });
    });
    client.on('close', () => {
      if (closed) return;
      closed = true;
      client.removeAllListeners('message');
      client.end(true);
      if (this.client !== client) return;
      const wasUp = this.upSince !== undefined;
      const upFor = wasUp ? Date.now() - this.upSince! : 0;
      this.upSince = undefined;
      this.client = undefined;
      this.backoff.connectionEnded(upFor);
      if (wasUp) {
        const reason = lastError ?? hubError('connect-failed', `connection to ${o.url} closed`);
        this.log.warn(`hub: disconnected: ${formatHubError(reason)}`);
        this.emit('down', reason);
      }
      this.schedule();
    });
  }
}
