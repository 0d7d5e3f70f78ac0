// `hub serve`'s local control socket (unix, mode 0600, next to the
// database): `edgeward hub policy push` hands its documents to the running
// service, which signs and publishes them under its own MQTT identity (a
// second connection with the same user name would take over its session).
// One JSON request and one JSON response per connection, newline-terminated.
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
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

export function serveControl(
  socketPath: string,
  handle: (req: PushRequest) => Promise<Result<PushResponse>>,
): Promise<Result<net.Server>> {
  return new Promise((resolve) => {
    // a socket file left by a killed service: nobody answers on it
    try {
      if (fs.lstatSync(socketPath).isSocket()) fs.rmSync(socketPath);
    } catch {
      // absent
    }
    const server = net.createServer((conn) => {
      let buf = '';
      conn.setEncoding('utf8');
      conn.on('error', () => undefined);
      conn.on('data', (d: string) => {
        buf += d;
        if (buf.length > MAX_REQUEST_BYTES) {
          conn.end(JSON.stringify({ ok: false, error: hubError('too-large', 'request too large') }) + '\n');
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
          conn.end(JSON.stringify({ ok: false, error: hubError('malformed', 'request is not JSON', e) }) + '\n');
          return;
        }
        if (req?.op !== 'push' || typeof req.org !== 'string' || !req.target || !Array.isArray(req.documents)) {
          conn.end(JSON.stringify({ ok: false, error: hubError('malformed', 'unknown request') }) + '\n');
          return;
        }
        handle(req).then(
          (r) => conn.end(JSON.stringify(r.ok ? { ok: true, value: r.value } : { ok: false, error: r.error }) + '\n'),
          (e) => conn.end(JSON.stringify({ ok: false, error: hubError('io', 'push failed', e) }) + '\n'),
        );
      });
    });
    server.once('error', (e) => resolve(err(hubError('io', `control socket ${socketPath}: cannot listen`, e))));
    const mask = process.umask(0o177);
    server.listen(socketPath, () => {
      process.umask(mask);
      fs.chmodSync(socketPath, 0o600);
      resolve(ok(server));
    });
  });
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
