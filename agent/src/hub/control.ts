// `hub serve`'s local control socket (unix, mode 0600, next to the
// database): `edgeward hub policy push` hands its documents to the running
// service, which signs and publishes them under its own MQTT identity (a
// second connection with the same user name would take over its session).
// One JSON request and one JSON response per connection, newline-terminated.
import * as net from 'net';
import * as path from 'path';
import { listenRootOnly, PeerCredentialReader } from '../control/root_socket';
import type { BundleDocument, BundleTarget } from './bundle';
import { err, hubError, HubError, ok, Result } from './result';

export interface PushRequest {
  op: 'push';
  org: string;
  target: BundleTarget;
  documents: BundleDocument[];
}

export interface PushResponse {
  version: number;
  contentHash: string;
}

const MAX_REQUEST_BYTES = 64 * 1024 * 1024;

export function defaultControlSocket(database: string): string {
  return path.join(path.dirname(database), 'hub.sock');
}

/**
 * Serves push requests on a unix socket only root and the service's own
 * user can use (agent/src/control/root_socket.ts: 0700 directory, 0600
 * socket, peer credentials checked on every connection; a live socket is
 * never taken over).
 */
export async function serveControl(
  socketPath: string,
  handle: (req: PushRequest) => Promise<Result<PushResponse>>,
  peerCredentials: PeerCredentialReader,
): Promise<Result<net.Server>> {
  const refuse = (conn: net.Socket, error: HubError) => conn.end(JSON.stringify({ ok: false, error }) + '\n');
  try {
    const server = await listenRootOnly({
      socketPath,
      peerCredentials,
      serviceUid: process.getuid?.() ?? 0,
      onRefused: (conn, reason) => refuse(conn, hubError('not-authorized', `hub control socket: ${reason}`)),
      onConnection: (conn) => {
        let buf = '';
        conn.setEncoding('utf8');
        conn.on('data', (d: string) => {
          buf += d;
          if (buf.length > MAX_REQUEST_BYTES) {
            refuse(conn, hubError('too-large', 'request too large'));
            return;
          }
          const nl = buf.indexOf('\n');
          if (nl === -1) return;
          const line = buf.slice(0, nl);
          buf = '';
          let req: PushRequest;
          try {
            req = JSON.parse(line);
          } catch (e) {
            refuse(conn, hubError('malformed', 'request is not JSON', e));
            return;
          }
          if (req?.op !== 'push' || typeof req.org !== 'string' || !req.target || !Array.isArray(req.documents)) {
            refuse(conn, hubError('malformed', 'unknown request'));
            return;
          }
          handle(req).then(
            (r) => conn.end(JSON.stringify(r.ok ? { ok: true, value: r.value } : { ok: false, error: r.error }) + '\n'),
            (e) => refuse(conn, hubError('io', 'push failed', e)),
          );
        });
      },
    });
    return ok(server);
  } catch (e) {
    return err(hubError('io', (e as Error).message, e));
  }
}

export function requestPush(socketPath: string, req: PushRequest, timeoutMs = 30_000): Promise<Result<PushResponse>> {
  return new Promise((resolve) => {
    const conn = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      conn.destroy();
      resolve(err(hubError('timeout', `no answer from hub serve on ${socketPath} within ${timeoutMs} ms`)));
    }, timeoutMs);
    conn.setEncoding('utf8');
    conn.on('error', (e) => {
      clearTimeout(timer);
      resolve(err(hubError('connect-failed', `cannot reach hub serve on ${socketPath} (is it running?)`, e)));
    });
    conn.on('data', (d: string) => (buf += d));
    conn.on('end', () => {
      clearTimeout(timer);
      try {
        const r = JSON.parse(buf) as { ok: true; value: PushResponse } | { ok: false; error: HubError };
        resolve(r.ok ? ok(r.value) : err(r.error));
      } catch (e) {
        resolve(err(hubError('malformed', 'unreadable answer from hub serve', e)));
      }
    });
    conn.write(JSON.stringify(req) + '\n');
  });
}
