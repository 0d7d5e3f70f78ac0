import * as crypto from 'crypto';
import {
  BundleDocument,
  BundleTarget,
  checkAgainst,
  contentHashOf,
  generateSigningKeyPair,
  parsePublicKey,
  PinnedKey,
  policiesOf,
  signBundle,
  SigningKey,
  verifyBundle,
} from '../../agent/src/hub/bundle';

const POLICY = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: block-nc
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  process:
    matchPaths:
      - path: /usr/bin/nc.openbsd
  action: Block
`;

function keys(): { signing: SigningKey; pinned: PinnedKey } {
  const pair = generateSigningKeyPair();
  const signing = { keyId: pair.keyId, key: crypto.createPrivateKey(pair.privateKeyPem) };
  const pinned = parsePublicKey(pair.publicKeyPem, 'test.pub');
  if (!pinned.ok) throw new Error(pinned.error.message);
  return { signing, pinned: pinned.value };
}

const docs: BundleDocument[] = [{ name: 'nc.yaml', yaml: POLICY }];
const target = { scope: 'node' as const, name: 'n1' };

describe('policy bundles', () => {
  const { signing, pinned } = keys();
  const sign = (version = 5, documents = docs, t: BundleTarget = target, org = 'org') => signBundle({ org, target: t, version, documents }, signing);

  test('a signed bundle verifies and carries version, target and content hash', () => {
    const r = verifyBundle(sign(), [pinned]);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.payload.version).toBe(5);
    expect(r.value.payload.target).toEqual(target);
    expect(r.value.payload.contentHash).toBe(contentHashOf(docs));
    expect(r.value.keyId).toBe(signing.keyId);
  });

  test('the content hash separates names from texts unambiguously', () => {
    expect(contentHashOf([{ name: 'a', yaml: 'bc' }])).not.toBe(contentHashOf([{ name: 'ab', yaml: 'c' }]));
  });

  test('unsigned bundles are refused', () => {
    const env = JSON.parse(sign().toString());
    delete env.signature;
    const r = verifyBundle(Buffer.from(JSON.stringify(env)), [pinned]);
    expect(r).toEqual({ ok: false, error: expect.objectContaining({ code: 'unsigned' }) });
  });

  test('a bundle signed with another key is refused as unknown-key, or forged when it claims the pinned key id', () => {
    const other = keys();
    const foreign = signBundle({ org: 'org', target, version: 6, documents: docs }, other.signing);
    expect(verifyBundle(foreign, [pinned])).toEqual({ ok: false, error: expect.objectContaining({ code: 'unknown-key' }) });
    const env = JSON.parse(foreign.toString());
    env.keyId = pinned.keyId;
    expect(verifyBundle(Buffer.from(JSON.stringify(env)), [pinned])).toEqual({ ok: false, error: expect.objectContaining({ code: 'bad-signature' }) });
  });

  test('a payload changed after signing is refused', () => {
    const env = JSON.parse(sign().toString());
    const payload = JSON.parse(Buffer.from(env.payload, 'base64').toString());
    payload.version = 999;
    env.payload = Buffer.from(JSON.stringify(payload)).toString('base64');
    expect(verifyBundle(Buffer.from(JSON.stringify(env)), [pinned])).toEqual({ ok: false, error: expect.objectContaining({ code: 'bad-signature' }) });
  });

  test('a signature over the bare payload (no domain prefix) is refused', () => {
    const env = JSON.parse(sign().toString());
    env.signature = crypto.sign(null, Buffer.from(env.payload, 'base64'), signing.key).toString('base64');
    expect(verifyBundle(Buffer.from(JSON.stringify(env)), [pinned])).toEqual({ ok: false, error: expect.objectContaining({ code: 'bad-signature' }) });
  });

  test('truncated bundles are refused at every cut', () => {
    const bytes = sign();
    for (const cut of [1, 10, Math.floor(bytes.length / 2), bytes.length - 2, bytes.length - 1]) {
      const r = verifyBundle(bytes.subarray(0, cut), [pinned]);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(['malformed', 'bad-signature']).toContain(r.error.code);
    }
  });

  test('oversized bundles are refused before parsing', () => {
    const big = Buffer.alloc(10 * 1024 * 1024, 0x20);
    const r = verifyBundle(big, [pinned]);
    expect(r).toEqual({ ok: false, error: expect.objectContaining({ code: 'too-large' }) });
    expect(verifyBundle(sign(), [pinned], 100)).toEqual({ ok: false, error: expect.objectContaining({ code: 'too-large' }) });
  });

  test('malformed input is refused with a reason', () => {
    for (const text of ['', 'not json', '[]', '{"format":"other"}', POLICY, '{"format":"edgeward.bundle.v1","keyId":"x","payload":"%%%","signature":"AAAA"}']) {
      const r = verifyBundle(Buffer.from(text), [pinned]);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.message.length).toBeGreaterThan(5);
    }
    expect(verifyBundle(Buffer.from([0xff, 0xfe, 0x7b]), [pinned])).toEqual({ ok: false, error: expect.objectContaining({ code: 'malformed' }) });
  });

  test('a signed payload with a wrong content hash or bad shape is refused', () => {
    const bad = (mutate: (p: Record<string, unknown>) => void) => {
      const payload: Record<string, unknown> = { org: 'org', target, version: 3, issuedAt: 'x', documents: docs, contentHash: contentHashOf(docs) };
      mutate(payload);
      const bytes = Buffer.from(JSON.stringify(payload));
      const sig = crypto.sign(null, Buffer.concat([Buffer.from('edgeward.bundle.v1\n'), bytes]), signing.key);
      const env = { format: 'edgeward.bundle.v1', keyId: signing.keyId, payload: bytes.toString('base64'), signature: sig.toString('base64') };
      return verifyBundle(Buffer.from(JSON.stringify(env)), [pinned]);
    };
    expect(bad(() => undefined).ok).toBe(true);
    expect(bad((p) => (p.contentHash = 'sha256:00'))).toEqual({ ok: false, error: expect.objectContaining({ code: 'malformed' }) });
    expect(bad((p) => (p.version = 0))).toEqual({ ok: false, error: expect.objectContaining({ code: 'malformed' }) });
    expect(bad((p) => (p.version = 1.5))).toEqual({ ok: false, error: expect.objectContaining({ code: 'malformed' }) });
    expect(bad((p) => (p.target = { scope: 'node', name: '../x' }))).toEqual({ ok: false, error: expect.objectContaining({ code: 'malformed' }) });
    expect(bad((p) => (p.documents = [{ name: '../../etc/x.yaml', yaml: POLICY }]))).toEqual({ ok: false, error: expect.objectContaining({ code: 'malformed' }) });
  });

  test('replayed, downgraded and conflicting versions are refused; the bundle in force again is "same"', () => {
    const inForce = { version: 5, contentHash: contentHashOf(docs) };
    const expectedTarget = { org: 'org', target };
    const v = (bytes: Buffer) => {
      const r = verifyBundle(bytes, [pinned]);
      if (!r.ok) throw new Error(r.error.message);
      return r.value;
    };
    expect(checkAgainst(v(sign(5)), expectedTarget, inForce)).toEqual({ ok: true, value: 'same' });
    expect(checkAgainst(v(sign(6)), expectedTarget, inForce)).toEqual({ ok: true, value: 'new' });
    expect(checkAgainst(v(sign(6)), expectedTarget, undefined)).toEqual({ ok: true, value: 'new' });
    const other = [{ name: 'x.yaml', yaml: POLICY.replace('block-nc', 'other') }];
    expect(checkAgainst(v(sign(5, other)), expectedTarget, inForce)).toEqual({ ok: false, error: expect.objectContaining({ code: 'version-conflict' }) });
    expect(checkAgainst(v(sign(4)), expectedTarget, inForce)).toEqual({ ok: false, error: expect.objectContaining({ code: 'downgrade' }) });
    expect(checkAgainst(v(sign(4)), expectedTarget, inForce, (ver) => ver === 4)).toEqual({ ok: false, error: expect.objectContaining({ code: 'replayed' }) });
  });

  test('a bundle for another node, group or organisation is refused', () => {
    const expected = { org: 'org', target };
    const verified = (bytes: Buffer) => {
      const r = verifyBundle(bytes, [pinned]);
      if (!r.ok) throw new Error(r.error.message);
      return r.value;
    };
    expect(checkAgainst(verified(sign(9, docs, { scope: 'node', name: 'n2' })), expected, undefined).ok).toBe(false);
    expect(checkAgainst(verified(sign(9, docs, { scope: 'group', name: 'n1' })), expected, undefined).ok).toBe(false);
    expect(checkAgainst(verified(sign(9, docs, target, 'org2')), expected, undefined)).toEqual({ ok: false, error: expect.objectContaining({ code: 'wrong-target' }) });
  });

  test('invalid YAML or an invalid policy inside a valid signature refuses the whole bundle', () => {
    const ok = verifyBundle(sign(), [pinned]);
    expect(ok.ok && policiesOf(ok.value.payload).ok).toBe(true);
    const broken = verifyBundle(sign(7, [...docs, { name: 'bad.yaml', yaml: 'kind: [unclosed' }]), [pinned]);
    if (!broken.ok) throw new Error(broken.error.message);
    const r = policiesOf(broken.value.payload);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe('invalid-policy');
      expect(r.error.message).toMatch(/bad\.yaml.*invalid YAML/);
    }
    const dup = verifyBundle(sign(8, [...docs, { name: 'again.yaml', yaml: POLICY }]), [pinned]);
    if (!dup.ok) throw new Error(dup.error.message);
    const d = policiesOf(dup.value.payload);
    expect(d.ok).toBe(false);
    if (!d.ok) expect(d.error.message).toMatch(/KubeArmorHostPolicy\/block-nc is also defined in nc\.yaml/);
  });

  test('only Ed25519 public keys can be pinned', () => {
    const rsa = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(parsePublicKey(rsa, 'ec.pub')).toEqual({ ok: false, error: expect.objectContaining({ code: 'key-unreadable' }) });
    expect(parsePublicKey('nonsense', 'x.pub')).toEqual({ ok: false, error: expect.objectContaining({ code: 'key-unreadable' }) });
  });
});
