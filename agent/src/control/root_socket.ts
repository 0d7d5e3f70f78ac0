// A unix socket only root can use, in three layers: its directory is root's
// and closed to others (0700; an existing one that others can write to is
// refused), the socket file is 0600, and every connection's peer credentials
// (SO_PEERCRED) are checked, so a socket whose mode was changed still serves
// root only. Not a TCP port: any local user can connect to one (KubeArmor's
// gRPC on localhost:32767 lets them change policy).
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import type { PeerCredentials } from '../native';

/** how long a refused peer may keep its connection open after our answer */
const REFUSED_LINGER_MS = 5000;

export type PeerCredentialReader = (fd: number) => PeerCredentials;

export interface RootSocketOptions {
  socketPath: string;
  peerCredentials: PeerCredentialReader;
  /**
   * The one user besides root that may connect and own the directory: the
   * service's own user when it does not run as root (e.g. `hub serve`).
   * Default: root only.
   */
  serviceUid?: number;
  /** a connection from root */
  onConnection(conn: net.Socket, peer: PeerCredentials): void;
  /** a connection refused; `reason` says who and why. The caller writes its refusal and ends it. */
  onRefused(conn: net.Socket, reason: string): void;
}

/** Checks (or creates, 0700) the socket's directory. Returns why it cannot be used, or undefined. */
export function prepareSocketDirectory(dir: string, serviceUid = 0): string | undefined {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    return `cannot create ${dir}: ${(e as Error).message}`;
  }
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (e) {
    return `cannot stat ${dir}: ${(e as Error).message}`;
  }
  if (!st.isDirectory()) return `${dir} is not a directory`;
  if (st.uid !== 0 && st.uid !== serviceUid) return `${dir} is owned by uid ${st.uid}, not root: another user could replace the socket`;
  if (st.mode & 0o022) return `${dir} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)}): another user could replace the socket`;
  return undefined;
}

/** True when something accepts connections on `socketPath` (a running agent); false for a stale file. */
export function socketInUse(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socketPath);
    const timer = setTimeout(() => {
      c.destroy();
      resolve(true); // it exists and does not refuse: treat as alive rather than steal it
    }, timeoutMs);
    c.once('connect', () => {
      clearTimeout(timer);
      c.destroy();
      resolve(true);
    });
    c.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

/** Listens on a root-only unix socket. Rejects with a message saying what is wrong. */
export async function listenRootOnly(opts: RootSocketOptions): Promise<net.Server> {
  const socketPath = opts.socketPath;
  if (!path.isAbsolute(socketPath)) throw new Error(`control socket ${socketPath}: must be an absolute path`);
  const serviceUid = opts.serviceUid ?? 0;
  const problem = prepareSocketDirectory(path.dirname(socketPath), serviceUid);
  if (problem) throw new Error(`control socket ${socketPath}: ${problem}`);

  let existing: fs.Stats | undefined;
  try {
    existing = fs.lstatSync(socketPath);
  } catch {
    // absent
  }
  if (existing) {
    if (!existing.isSocket()) throw new Error(`control socket ${socketPath}: exists and is not a socket; not replacing it`);
    if (await socketInUse(socketPath)) throw new Error(`control socket ${socketPath}: another process is listening on it`);
    fs.rmSync(socketPath); // left by an agent that was killed
  }

  const server = net.createServer((conn) => {
    conn.on('error', () => undefined);
    const refuse = (reason: string) => {
      // read and drop what the peer sends: a socket nobody reads never sees the peer's FIN,
      // never closes, and server.close() would wait for it forever
      conn.resume();
      conn.setTimeout(REFUSED_LINGER_MS, () => conn.destroy());
      opts.onRefused(conn, reason);
    };
    const fd = (conn as unknown as { _handle?: { fd?: number } })._handle?.fd;
    let peer: PeerCredentials;
    try {
      if (typeof fd !== 'number' || fd < 0) throw new Error('connection has no file descriptor');
      peer = opts.peerCredentials(fd);
    } catch (e) {
      refuse(`cannot read the peer's credentials (${(e as Error).message})`);
      return;
    }
    if (peer.uid !== 0 && peer.uid !== serviceUid) {
      refuse(`uid ${peer.uid} (pid ${peer.pid}) is not root${serviceUid !== 0 ? ` nor the service's uid ${serviceUid}` : ''}`);
      return;
    }
    opts.onConnection(conn, peer);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new Error(`control socket ${socketPath}: cannot listen: ${e.message}`)));
    // the file is created 0600 from the start: no window in which others could connect
    const mask = process.umask(0o177);
    try {
      server.listen(socketPath, () => resolve());
    } finally {
      process.umask(mask);
    }
  });
  fs.chmodSync(socketPath, 0o600);
  return server;
}
