// The CLI's end of the control socket: one request, one response (and for
// `logs --follow`, the stream after it).
import * as net from 'net';
import {
  ContainerStartedResult,
  ControlError,
  ControlRequest,
  ControlResponse,
  encodeLine,
  PROTOCOL_VERSION,
  StartedContainer,
  StreamLine,
} from './protocol';

/** Why the request did not get an answer; `notRunning`: nobody listens (exit code 3). */
export class ControlUnavailable extends Error {
  constructor(
    message: string,
    readonly notRunning: boolean,
  ) {
    super(message);
  }
}

export class ControlFailed extends Error {
  constructor(readonly error: ControlError) {
    super(error.message);
  }
}

function connect(socketPath: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socketPath);
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new ControlUnavailable(`no answer from the agent on ${socketPath} within ${timeoutMs} ms`, false));
    }, timeoutMs);
    conn.once('connect', () => {
      clearTimeout(timer);
      resolve(conn);
    });
    conn.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
        reject(new ControlUnavailable(`the agent is not running (nothing listens on ${socketPath})`, true));
      } else if (e.code === 'EACCES' || e.code === 'EPERM') {
        reject(new ControlUnavailable(`permission denied on ${socketPath}: the control socket is root only (run as root)`, false));
      } else {
        reject(new ControlUnavailable(`cannot connect to ${socketPath}: ${e.message}`, false));
      }
    });
  });
}

/** Reads newline-delimited JSON lines from `conn` and hands each to `onLine`. */
function readLines(conn: net.Socket, onLine: (value: unknown) => void, onEnd: (error?: Error) => void): void {
  let buf = '';
  let ended = false;
  const finish = (e?: Error) => {
    if (ended) return;
    ended = true;
    onEnd(e);
  };
  conn.setEncoding('utf8');
  conn.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (!line.trim()) continue;
      try {
        onLine(JSON.parse(line));
      } catch (e) {
        conn.destroy();
        finish(e instanceof ControlFailed ? e : new ControlUnavailable(`unreadable answer from the agent: ${(e as Error).message}`, false));
        return;
      }
    }
  });
  conn.on('error', (e) => finish(new ControlUnavailable(`connection to the agent failed: ${e.message}`, false)));
  conn.on('close', () => finish());
}

function checkResponse<T>(value: unknown): T {
  const r = value as ControlResponse<T>;
  if (typeof r !== 'object' || r === null || r.version !== PROTOCOL_VERSION || typeof r.ok !== 'boolean') {
    throw new Error(`not a protocol version ${PROTOCOL_VERSION} response`);
  }
  if (!r.ok) throw new ControlFailed(r.error);
  return r.result;
}

/** Sends one request; resolves with the result, rejects with ControlUnavailable or ControlFailed. */
export async function request<T>(socketPath: string, req: ControlRequest, timeoutMs = 30_000): Promise<T> {
  const conn = await connect(socketPath, timeoutMs);
  return new Promise<T>((resolve, reject) => {
    let answered = false;
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new ControlUnavailable(`no answer from the agent on ${socketPath} within ${timeoutMs} ms`, false));
    }, timeoutMs);
    readLines(
      conn,
      (v) => {
        answered = true;
        clearTimeout(timer);
        try {
          resolve(checkResponse<T>(v));
        } catch (e) {
          reject(e);
        }
        conn.destroy();
      },
      (e) => {
        clearTimeout(timer);
        if (!answered) reject(e ?? new ControlUnavailable('the agent closed the connection without answering', false));
      },
    );
    conn.write(encodeLine(req));
  });
}

/**
 * `logs --follow`: resolves once the agent accepted the request and calls
 * `onLine` for every streamed line; `done` settles when the stream ends.
 */
export async function follow(
  socketPath: string,
  req: ControlRequest & { op: 'logs' },
  onLine: (line: StreamLine) => void,
): Promise<{ close(): void; done: Promise<void> }> {
  const conn = await connect(socketPath, 30_000);
  return new Promise((resolve, reject) => {
    let accepted = false;
    let endStream: (e?: Error) => void = () => undefined;
    const done = new Promise<void>((res, rej) => {
      endStream = (e) => (e ? rej(e) : res());
    });
    readLines(
      conn,
      (v) => {
        if (!accepted) {
          checkResponse(v); // throws ControlFailed: handled by readLines' finish
          accepted = true;
          resolve({ close: () => conn.destroy(), done });
          return;
        }
        onLine(v as StreamLine);
      },
      (e) => {
        if (!accepted) reject(e ?? new ControlUnavailable('the agent closed the connection without answering', false));
        else endStream(e);
      },
    );
    // no end(): a half-closed connection would end the stream on the agent's side
    conn.write(encodeLine(req));
  });
}

/**
 * The runtime hook's `container.started`: resolves once the agent has the
 * container's rules in force; rejects with ControlUnavailable (no agent, no
 * answer within timeoutMs) or ControlFailed (the agent could not take it).
 */
export function containerStarted(socketPath: string, container: StartedContainer, timeoutMs: number): Promise<ContainerStartedResult> {
  return request<ContainerStartedResult>(socketPath, { version: PROTOCOL_VERSION, op: 'container.started', container }, timeoutMs);
}
