// The agent's end of the control socket: reads one request per connection,
// answers it, and for `logs --follow` streams alerts and/or telemetry logs
// (filtered here, so a client sees only what it asked for) until the client
// goes away. It keeps the last RECENT_ALERTS alerts and RECENT_LOGS logs
// (apart) for `logs` without --follow.
import type * as net from 'net';
import type { PeerCredentials } from '../native';
import { isLogRecord, KubeArmorRecord } from '../visibility';
import type { AppliedPolicyStore } from './applied_store';
import { applyPolicies, deletePolicies, listPolicies, PolicyHost } from './policy_ops';
import {
  ContainerStartedResult,
  ControlRequest,
  ControlResponse,
  encodeLine,
  errorResponse,
  LogFilter,
  matchesFilter,
  MAX_REQUEST_BYTES,
  okResponse,
  PROTOCOL_VERSION,
  RECENT_ALERTS,
  StartedContainer,
  RECENT_LOGS,
  parseRequest,
} from './protocol';
import { listenRootOnly, PeerCredentialReader } from './root_socket';

/** bytes queued for a slow `logs --follow` reader before alerts are counted as missed instead */
const MAX_FOLLOW_BACKLOG = 4 * 1024 * 1024;
/** a client must send its request within this time */
const REQUEST_TIMEOUT_MS = 30_000;

export interface ControlHost extends PolicyHost {
  /** what `edgeward status` shows (JSON) */
  status(): unknown;
  /** every alert and log record the agent emits (after throttling); returns the unsubscribe function */
  subscribe(listener: (record: KubeArmorRecord) => void): () => void;
  log: { info(m: string): void; warn(m: string): void };
  /**
   * The runtime hook's `container.started`: add the container and resolve
   * once its rules are in force (the hook holds the container's start until
   * then). Rejects with the reason when the agent cannot (the hook then lets
   * the container start: fail-open). Absent: the op is answered 'unavailable'.
   */
  containerStarted?(container: StartedContainer): Promise<ContainerStartedResult>;
}

export class ControlServer {
  private server: net.Server | undefined;
  private readonly recent: KubeArmorRecord[] = [];
  private readonly recentLogs: KubeArmorRecord[] = [];
  private readonly unsubscribe: () => void;
  private readonly connections = new Set<net.Socket>();

  constructor(
    private readonly host: ControlHost,
    private readonly store: AppliedPolicyStore,
    private readonly peerCredentials: PeerCredentialReader,
  ) {
    this.unsubscribe = host.subscribe((r) => {
      const [kept, max] = isLogRecord(r) ? [this.recentLogs, RECENT_LOGS] : [this.recent, RECENT_ALERTS];
      kept.push(r);
      // in chunks: one splice per 64 records rather than one per record
      if (kept.length > max + 64) kept.splice(0, kept.length - max);
    });
  }

  /** Listens on `socketPath`; throws saying why it cannot. */
  async listen(socketPath: string): Promise<void> {
    this.server = await listenRootOnly({
      socketPath,
      peerCredentials: this.peerCredentials,
      onConnection: (conn, peer) => this.serve(conn, peer),
      onRefused: (conn, reason) => {
        this.host.log.warn(`control socket: refused a connection: ${reason}`);
        conn.end(encodeLine(errorResponse({ code: 'forbidden', message: `the control socket is root only: ${reason}` })));
      },
    });
  }

  async close(): Promise<void> {
    this.unsubscribe();
    for (const c of this.connections) c.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private serve(conn: net.Socket, peer: PeerCredentials): void {
    this.connections.add(conn);
    conn.on('close', () => this.connections.delete(conn));
    conn.setTimeout(REQUEST_TIMEOUT_MS, () => conn.destroy());
    let buf = '';
    let handled = false;
    conn.setEncoding('utf8');
    conn.on('data', (d: string) => {
      if (handled) return; // one request per connection
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl === -1) {
        if (buf.length > MAX_REQUEST_BYTES) {
          handled = true;
          conn.end(encodeLine(errorResponse({ code: 'too-large', message: `request larger than ${MAX_REQUEST_BYTES} bytes` })));
        }
        return;
      }
      handled = true;
      conn.setTimeout(0);
      const parsed = parseRequest(buf.slice(0, nl));
      buf = '';
      if (!parsed.ok) {
        conn.end(encodeLine(errorResponse(parsed.error)));
        return;
      }
      const req = parsed.value;
      if (req.op === 'logs' && req.follow) {
        this.follow(conn, req.filter);
        return;
      }
      if (req.op === 'container.started') {
        void this.containerStarted(req.container, peer).then((r) => {
          if (!conn.destroyed) conn.end(encodeLine(r));
        });
        return;
      }
      let response: ControlResponse;
      try {
        response = this.handle(req, peer);
      } catch (e) {
        response = errorResponse({ code: 'internal', message: (e as Error)?.message ?? String(e) });
      }
      conn.end(encodeLine(response));
    });
  }

  private handle(req: ControlRequest, peer: PeerCredentials): ControlResponse {
    const who = `pid ${peer.pid} (uid ${peer.uid})`;
    switch (req.op) {
      case 'status':
        return okResponse(this.host.status());
      case 'policy.list':
        return okResponse(listPolicies(this.host));
      case 'policy.apply': {
        const r = applyPolicies(this.host, this.store, req.files, who);
        if (!r.ok) {
          this.host.log.warn(`control: policy apply from ${who} refused: ${r.error.message}`);
          return errorResponse(r.error);
        }
        const changes = r.value.applied.map((a) => `${a.name} ${a.change}`).join(', ');
        this.host.log.info(`control: policy apply from ${who}: ${changes}`);
        return okResponse(r.value);
      }
      case 'policy.delete': {
        const r = deletePolicies(this.host, this.store, req.names);
        if (!r.ok) return errorResponse(r.error);
        this.host.log.info(`control: policy delete from ${who}: ${r.value.deleted.map((d) => d.name).join(', ')}`);
        return okResponse(r.value);
      }
      case 'container.started':
        // answered asynchronously (serve)
        return errorResponse({ code: 'internal', message: 'container.started is answered asynchronously' });
      case 'logs': {
        // `alerts`: the matching records (alerts and/or logs, as filter.type asks), oldest first
        const type = req.filter.type ?? 'alert';
        const alerts = type === 'log' ? [] : this.recent.slice(-RECENT_ALERTS);
        const logs = type === 'alert' ? [] : this.recentLogs.slice(-RECENT_LOGS);
        const pools = [alerts, logs].filter((p) => p.length > 0);
        const matching = pools.flatMap((pool) => pool.filter((a) => matchesFilter(a, req.filter)));
        if (pools.length > 1) matching.sort((a, b) => (a.UpdatedTime < b.UpdatedTime ? -1 : a.UpdatedTime > b.UpdatedTime ? 1 : 0));
        return okResponse({ alerts: matching.slice(-(req.limit ?? RECENT_ALERTS)), kept: RECENT_ALERTS, keptLogs: RECENT_LOGS });
      }
    }
  }

  private async containerStarted(c: StartedContainer, peer: PeerCredentials): Promise<ControlResponse> {
    const who = `pid ${peer.pid} (uid ${peer.uid})`;
    const started = this.host.containerStarted?.bind(this.host);
    if (!started) return errorResponse({ code: 'unavailable', message: 'this agent does not take container.started (no container support wired)' });
    try {
      const r = await started(c);
      this.host.log.info(`control: container ${r.name} (${r.id.slice(0, 12)}) started, from runtime hook ${who}: rules in force${r.rules !== undefined ? ` (${r.rules})` : ''}`);
      return okResponse(r);
    } catch (e) {
      const message = (e as Error)?.message ?? String(e);
      this.host.log.warn(`control: container.started for ${c.name} (${c.id.slice(0, 12)}) from ${who} not taken: ${message}`);
      return errorResponse({ code: 'unavailable', message });
    }
  }

  private follow(conn: net.Socket, filter: LogFilter): void {
    let missed = 0;
    const unsubscribe = this.host.subscribe((record) => {
      if (!matchesFilter(record, filter)) return;
      if (conn.writableLength > MAX_FOLLOW_BACKLOG) {
        missed++;
        return;
      }
      conn.write(encodeLine(isLogRecord(record) ? { version: PROTOCOL_VERSION, log: record } : { version: PROTOCOL_VERSION, alert: record }));
    });
    conn.on('drain', () => {
      if (missed === 0) return;
      conn.write(encodeLine({ version: PROTOCOL_VERSION, missed }));
      missed = 0;
    });
    conn.on('close', unsubscribe);
    conn.write(encodeLine(okResponse({ following: true, filter })));
  }
}
