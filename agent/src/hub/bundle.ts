// Policy bundles: a set of KubeArmor policy files signed by the hub with
// Ed25519 and verified on the node against pinned public keys.
//
// Wire form (JSON): { format, keyId, payload: base64(payload JSON), signature: base64 }.
// The signature covers SIGNING_DOMAIN || payload bytes, so a signature made
// for anything else can never pass as a bundle's. The payload names its
// target (org + node or group), a version that only grows, and the SHA-256
// of its documents; the node checks all three after the signature.
import * as crypto from 'crypto';
import * as fs from 'fs';
import { err, hubError, HubError, ok, Result } from './result';
import { checkId, ID_PATTERN } from './topics';
import { LoadedPolicy, parsePolicyText, formatPolicyError } from '../policy/loader';

export const BUNDLE_FORMAT = 'edgeward.bundle.v1';
const SIGNING_DOMAIN = Buffer.from(`${BUNDLE_FORMAT}\n`, 'utf8');
/** default refusal size for a bundle on the wire */
export const DEFAULT_MAX_BUNDLE_BYTES = 4 * 1024 * 1024;
export const MAX_BUNDLE_DOCUMENTS = 1000;
const DOCUMENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export type BundleScope = 'node' | 'group';

export interface BundleTarget {
  scope: BundleScope;
  /** the node id or group name */
  name: string;
}

export interface BundleDocument {
  /** e.g. the file name it was pushed from */
  name: string;
  /** KubeArmor policy YAML, one or more documents */
  yaml: string;
}

export interface BundlePayload {
  org: string;
  target: BundleTarget;
  /** positive integer, greater than every earlier bundle's for this target */
  version: number;
  issuedAt: string;
  documents: BundleDocument[];
  /** "sha256:<hex>" of the documents, see contentHashOf */
  contentHash: string;
}

export interface BundleEnvelope {
  format: typeof BUNDLE_FORMAT;
  keyId: string;
  payload: string;
  signature: string;
}

export interface PinnedKey {
  keyId: string;
  key: crypto.KeyObject;
  /** where it was read from, for messages */
  source: string;
}

export interface VerifiedBundle {
  payload: BundlePayload;
  keyId: string;
}

/** SHA-256 over the documents' names and texts, unambiguous (JSON array of pairs). */
export function contentHashOf(documents: readonly BundleDocument[]): string {
  const canonical = JSON.stringify(documents.map((d) => [d.name, d.yaml]));
  return 'sha256:' + crypto.createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/** First 16 hex digits of the SHA-256 of the key's SPKI DER form. */
export function keyIdOf(publicKey: crypto.KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(der).digest('hex').slice(0, 16);
}

export function generateSigningKeyPair(): { privateKeyPem: string; publicKeyPem: string; keyId: string } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

function readKeyFile(file: string): Result<string> {
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) return err(hubError('key-unreadable', `${file}: not a regular file`));
    if (st.size > 64 * 1024) return err(hubError('key-unreadable', `${file}: too large for a key (${st.size} bytes)`));
    return ok(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    return err(hubError('key-unreadable', `${file}: cannot read key`, e));
  }
}

export function parsePublicKey(pem: string, source: string): Result<PinnedKey> {
  let key: crypto.KeyObject;
  try {
    key = crypto.createPublicKey(pem);
  } catch (e) {
    return err(hubError('key-unreadable', `${source}: not a PEM public key`, e));
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    return err(hubError('key-unreadable', `${source}: an ${key.asymmetricKeyType ?? 'unknown'} key; bundles are verified with Ed25519 keys`));
  }
  return ok({ keyId: keyIdOf(key), key, source });
}

export function loadPublicKey(file: string): Result<PinnedKey> {
  const r = readKeyFile(file);
  return r.ok ? parsePublicKey(r.value, file) : r;
}

export interface SigningKey {
  keyId: string;
  key: crypto.KeyObject;
}

export function loadSigningKey(file: string): Result<SigningKey> {
  const r = readKeyFile(file);
  if (!r.ok) return r;
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(r.value);
  } catch (e) {
    return err(hubError('key-unreadable', `${file}: not a PEM private key`, e));
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    return err(hubError('key-unreadable', `${file}: an ${key.asymmetricKeyType ?? 'unknown'} key; bundles are signed with Ed25519 keys`));
  }
  return ok({ keyId: keyIdOf(crypto.createPublicKey(key)), key });
}

export interface BundleInput {
  org: string;
  target: BundleTarget;
  version: number;
  documents: BundleDocument[];
  issuedAt?: string;
}

/** The envelope's bytes, ready to publish. */
export function signBundle(input: BundleInput, signingKey: SigningKey): Buffer {
  const payload: BundlePayload = {
    org: input.org,
    target: { scope: input.target.scope, name: input.target.name },
    version: input.version,
    issuedAt: input.issuedAt ?? new Date().toISOString(),
    documents: input.documents.map((d) => ({ name: d.name, yaml: d.yaml })),
    contentHash: contentHashOf(input.documents),
  };
  const payloadBytes = Buffer.from(JSON.stringify(payload), 'utf8');
  const signature = crypto.sign(null, Buffer.concat([SIGNING_DOMAIN, payloadBytes]), signingKey.key);
  const envelope: BundleEnvelope = {
    format: BUNDLE_FORMAT,
    keyId: signingKey.keyId,
    payload: payloadBytes.toString('base64'),
    signature: signature.toString('base64'),
  };
  return Buffer.from(JSON.stringify(envelope), 'utf8');
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Checks size, envelope, signature and payload shape. Says nothing yet about
 * whether this node wants it (see checkAgainst) or whether its policies are
 * valid (see policiesOf).
 */
export function verifyBundle(bytes: Buffer, keys: readonly PinnedKey[], maxBytes = DEFAULT_MAX_BUNDLE_BYTES): Result<VerifiedBundle> {
  if (bytes.length > maxBytes) return err(hubError('too-large', `bundle of ${bytes.length} bytes refused: the limit is ${maxBytes} bytes`));
  if (bytes.length === 0) return err(hubError('malformed', 'empty bundle'));
  let envelope: unknown;
  try {
    envelope = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    return err(hubError('malformed', 'bundle is not valid UTF-8 JSON (truncated or corrupt?)', e));
  }
  if (!isRecord(envelope)) return err(hubError('malformed', 'bundle is not a JSON object'));
  if (envelope.format !== BUNDLE_FORMAT) {
    return err(hubError('malformed', `bundle format ${JSON.stringify(envelope.format)} is not ${BUNDLE_FORMAT}`));
  }
  if (envelope.signature === undefined || envelope.signature === '' || envelope.signature === null) {
    return err(hubError('unsigned', 'bundle carries no signature'));
  }
  if (typeof envelope.payload !== 'string' || !BASE64.test(envelope.payload)) return err(hubError('malformed', 'bundle payload is not base64'));
  if (typeof envelope.signature !== 'string' || !BASE64.test(envelope.signature)) return err(hubError('malformed', 'bundle signature is not base64'));
  if (typeof envelope.keyId !== 'string') return err(hubError('malformed', 'bundle names no keyId'));
  const key = keys.find((k) => k.keyId === envelope.keyId);
  if (!key) {
    return err(hubError('unknown-key', `bundle signed with key ${JSON.stringify(envelope.keyId)}, which is not pinned (pinned: ${keys.map((k) => k.keyId).join(', ') || 'none'})`));
  }
  const payloadBytes = Buffer.from(envelope.payload, 'base64');
  const signature = Buffer.from(envelope.signature, 'base64');
  let valid = false;
  try {
    valid = signature.length === 64 && crypto.verify(null, Buffer.concat([SIGNING_DOMAIN, payloadBytes]), key.key, signature);
  } catch {
    valid = false;
  }
  if (!valid) return err(hubError('bad-signature', `bundle signature does not verify with pinned key ${key.keyId} (${key.source})`));
  // Signed by the hub from here on; still checked, since a hub bug must not crash a node.
  let payload: unknown;
  try {
    payload = JSON.parse(payloadBytes.toString('utf8'));
  } catch (e) {
    return err(hubError('malformed', 'signed payload is not JSON', e));
  }
  const shape = checkPayloadShape(payload);
  if (!shape.ok) return shape;
  return ok({ payload: shape.value, keyId: key.keyId });
}

function checkPayloadShape(p: unknown): Result<BundlePayload> {
  const bad = (what: string) => err(hubError('malformed', `signed payload: ${what}`));
  if (!isRecord(p)) return bad('not an object');
  if (typeof p.org !== 'string' || !ID_PATTERN.test(p.org)) return bad('org is not a valid id');
  const t = p.target;
  if (!isRecord(t) || (t.scope !== 'node' && t.scope !== 'group') || typeof t.name !== 'string' || !checkId('target', t.name).ok) {
    return bad('target must be {scope: node|group, name: id}');
  }
  if (typeof p.version !== 'number' || !Number.isSafeInteger(p.version) || p.version < 1) return bad('version must be a positive integer');
  if (typeof p.issuedAt !== 'string') return bad('issuedAt must be a string');
  if (!Array.isArray(p.documents)) return bad('documents must be a list');
  if (p.documents.length > MAX_BUNDLE_DOCUMENTS) return bad(`more than ${MAX_BUNDLE_DOCUMENTS} documents`);
  const names = new Set<string>();
  for (const [i, d] of p.documents.entries()) {
    if (!isRecord(d) || typeof d.name !== 'string' || typeof d.yaml !== 'string') return bad(`documents[${i}] must be {name, yaml}`);
    if (!DOCUMENT_NAME.test(d.name)) return bad(`documents[${i}].name ${JSON.stringify(d.name)} is not a plain file name`);
    if (names.has(d.name)) return bad(`documents[${i}].name ${JSON.stringify(d.name)} appears twice`);
    names.add(d.name);
  }
  const documents = (p.documents as BundleDocument[]).map((d) => ({ name: d.name, yaml: d.yaml }));
  if (typeof p.contentHash !== 'string' || p.contentHash !== contentHashOf(documents)) return bad('contentHash does not match the documents');
  return ok({
    org: p.org,
    target: { scope: t.scope, name: t.name as string },
    version: p.version,
    issuedAt: p.issuedAt,
    documents,
    contentHash: p.contentHash,
  });
}

export interface InForce {
  version: number;
  contentHash: string;
}

/**
 * Whether a verified bundle may replace what is in force for its target:
 * 'new' to apply, 'same' when it is the bundle in force again (a retained
 * message delivered anew on reconnect: nothing to do, nothing refused).
 */
export function checkAgainst(
  v: VerifiedBundle,
  expected: { org: string; target: BundleTarget },
  inForce: InForce | undefined,
  seenBefore: (version: number, contentHash: string) => boolean = () => false,
): Result<'new' | 'same'> {
  const p = v.payload;
  if (p.org !== expected.org || p.target.scope !== expected.target.scope || p.target.name !== expected.target.name) {
    return err(
      hubError(
        'wrong-target',
        `bundle for ${p.org}/${p.target.scope}/${p.target.name} arrived on the topic of ${expected.org}/${expected.target.scope}/${expected.target.name}`,
      ),
    );
  }
  if (!inForce) return ok('new');
  if (p.version === inForce.version) {
    if (p.contentHash === inForce.contentHash) return ok('same');
    return err(hubError('version-conflict', `bundle version ${p.version} is the version in force but its content differs (${p.contentHash} vs ${inForce.contentHash})`));
  }
  if (p.version < inForce.version) {
    if (seenBefore(p.version, p.contentHash)) {
      return err(hubError('replayed', `bundle version ${p.version} was in force before; version ${inForce.version} is in force now`));
    }
    return err(hubError('downgrade', `bundle version ${p.version} is older than version ${inForce.version} in force`));
  }
  return ok('new');
}

/** The policies of a bundle's documents; any invalid document refuses the whole bundle. */
export function policiesOf(payload: BundlePayload): Result<Array<{ document: string; policies: LoadedPolicy[] }>, HubError & { details: string[] }> {
  const details: string[] = [];
  const out: Array<{ document: string; policies: LoadedPolicy[] }> = [];
  const identities = new Map<string, string>();
  for (const d of payload.documents) {
    const r = parsePolicyText(d.yaml, d.name);
    details.push(...r.errors.map(formatPolicyError));
    for (const p of r.policies) {
      const id = policyIdentity(p);
      const first = identities.get(id);
      if (first !== undefined) details.push(`${d.name}: ${id} is also defined in ${first}`);
      else identities.set(id, d.name);
    }
    out.push({ document: d.name, policies: r.policies });
  }
  if (details.length) {
    const shown = details.slice(0, 20);
    const more = details.length - shown.length;
    return err({
      ...hubError('invalid-policy', `bundle version ${payload.version} holds invalid policies: ${shown.join('; ')}${more > 0 ? `; ${more} more` : ''}`),
      details,
    });
  }
  return ok(out);
}

/** How policies override each other across bundles: same kind, namespace and name. */
export function policyIdentity(p: Pick<LoadedPolicy, 'kind' | 'name' | 'namespace'>): string {
  return p.kind === 'KubeArmorHostPolicy' ? `${p.kind}/${p.name}` : `${p.kind}/${p.namespace ?? ''}/${p.name}`;
}
