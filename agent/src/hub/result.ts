// Errors as values: every hub operation that can fail on input, disk or
// network returns a Result instead of throwing, so the agent's enforcement
// never dies of a hub problem and callers must look at the outcome.

export type HubErrorCode =
  // configuration and identity
  | 'invalid-options'
  | 'invalid-identity'
  | 'invalid-topic'
  | 'key-unreadable'
  | 'tls-unreadable'
  // policy bundles (refusals are reported on `reported`)
  | 'unsigned'
  | 'bad-signature'
  | 'unknown-key'
  | 'malformed'
  | 'too-large'
  | 'wrong-target'
  | 'replayed'
  | 'downgrade'
  | 'version-conflict'
  | 'invalid-policy'
  // disk
  | 'io'
  | 'spool-full'
  | 'record-too-large'
  | 'closed'
  // network
  | 'connect-failed'
  | 'not-authorized'
  | 'publish-failed'
  | 'subscribe-failed'
  | 'timeout';

export interface HubError {
  code: HubErrorCode;
  /** one line, names what and where */
  message: string;
  /** the underlying error's text, when there was one */
  cause?: string;
}

export type Result<T, E = HubError> = { ok: true; value: T } | { ok: false; error: E };

export const ok = <T>(value: T): { ok: true; value: T } => ({ ok: true, value });
export const err = <E = HubError>(error: E): { ok: false; error: E } => ({ ok: false, error });

export function hubError(code: HubErrorCode, message: string, cause?: unknown): HubError {
  const e: HubError = { code, message };
  if (cause !== undefined) e.cause = causeText(cause);
  return e;
}

export function causeText(cause: unknown): string {
  const e = cause as NodeJS.ErrnoException | undefined;
  if (e && typeof e === 'object' && typeof e.message === 'string') return e.code ? `${e.code}: ${e.message.replace(/^[A-Z]+: /, '')}` : e.message;
  return String(cause);
}

export function formatHubError(e: HubError): string {
  return e.cause ? `${e.message} (${e.cause})` : e.message;
}
