import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  preAuthEncoding,
  scopeMismatch,
  serializeEnvelope,
  signBundle,
  verifyBundle,
} from '../../policy/bundle.js';
import { canonicalJson } from '../../policy/canonical.js';
import { compilePolicy } from '../../policy/compile.js';
import { parseIdentity } from '../../policy/identity.js';
import { generateKeyPair, keyIdOf, loadTrustedKeys } from '../../policy/keys.js';
import { BUNDLE_PAYLOAD_TYPE, type Envelope } from '../../policy/types.js';
import { APP, mustParse, policyYaml } from './helpers.js';

const set = mustParse(
  policyYaml({ allow: ['to: { host: api.example.com, port: 443 }'], deny: ['to: { cidr: 169.254.0.0/16 }'] }),
);
const policy = compilePolicy(set, APP);
const signer = generateKeyPair();
const rotated = generateKeyPair();
const stranger = generateKeyPair();
const trustedKeys = loadTrustedKeys([signer.publicKeyPem, rotated.publicKeyPem]);
const issuedAt = new Date('2026-01-01T00:00:00Z');
const now = new Date('2026-01-01T01:00:00Z');
const envelope = signBundle({ policy, revision: 7, issuedAt }, signer.privateKeyPem);
const text = serializeEnvelope(envelope);
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function b64(value: unknown): string {
  return Buffer.from(canonicalJson(value)).toString('base64');
}

describe('signBundle / verifyBundle', () => {
  it('round-trips: the payload carries revision, times, scope, key id and the compiled policy', () => {
    const result = verifyBundle(text, { trustedKeys, now, workload: APP, minRevision: 7 });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.keyId).toBe(signer.keyId);
    expect(result.payload).toMatchObject({
      schemaVersion: 1,
      revision: 7,
      issuedAt: '2026-01-01T00:00:00.000Z',
      expiresAt: '2026-01-02T00:00:00.000Z',
      keyId: signer.keyId,
    });
    expect(result.payload.policy).toEqual(policy);
    expect(result.payload.scope).toEqual(policy.scope);
    expect(envelope.payloadType).toBe(BUNDLE_PAYLOAD_TYPE);
    expect(verifyBundle(Buffer.from(text), { trustedKeys, now }).ok).toBe(true);
    expect(verifyBundle(envelope, { trustedKeys, now }).ok).toBe(true);
  });

  it('is deterministic: same input, same bytes', () => {
    expect(
      serializeEnvelope(
        signBundle({ policy: compilePolicy(set, APP), revision: 7, issuedAt }, signer.privateKeyPem),
      ),
    ).toBe(text);
  });

  it('uses the DSSE pre-authentication encoding', () => {
    expect(preAuthEncoding('t', Buffer.from('hello')).toString()).toBe('DSSEv1 1 t 5 hello');
  });

  it('accepts any of several trusted keys (rotation)', () => {
    const next = signBundle({ policy, revision: 8, issuedAt }, rotated.privateKeyPem);
    expect(verifyBundle(next, { trustedKeys, now })).toMatchObject({ ok: true, keyId: rotated.keyId });
  });

  it('unknown-key: signed by a key nobody trusts', () => {
    const foreign = signBundle({ policy, revision: 8, issuedAt }, stranger.privateKeyPem);
    expect(verifyBundle(foreign, { trustedKeys, now })).toMatchObject({ ok: false, reason: 'unknown-key' });
    expect(verifyBundle(text, { trustedKeys: [], now })).toMatchObject({ ok: false, reason: 'unknown-key' });
  });

  it('bad-signature: a trusted key id with a signature from another key, or over another payload', () => {
    const forged = signBundle({ policy, revision: 99, issuedAt }, stranger.privateKeyPem);
    const sig = forged.signatures[0]?.sig as string;
    expect(
      verifyBundle({ ...forged, signatures: [{ keyid: signer.keyId, sig }] }, { trustedKeys, now }),
    ).toMatchObject({
      ok: false,
      reason: 'bad-signature',
    });
    const swapped: Envelope = { ...envelope, payload: forged.payload };
    expect(verifyBundle(swapped, { trustedKeys, now })).toMatchObject({ ok: false, reason: 'bad-signature' });
  });

  it('unsigned: no signatures is never accepted', () => {
    expect(verifyBundle({ ...envelope, signatures: [] }, { trustedKeys, now })).toMatchObject({
      ok: false,
      reason: 'unsigned',
    });
    const { signatures: _s, ...bare } = envelope;
    expect(verifyBundle(JSON.stringify(bare), { trustedKeys, now })).toMatchObject({
      ok: false,
      reason: 'unsigned',
    });
  });

  it('expired, rollback, wrong-scope', () => {
    expect(verifyBundle(text, { trustedKeys, now: new Date('2026-01-02T00:00:00Z') })).toMatchObject({
      reason: 'expired',
    });
    expect(verifyBundle(text, { trustedKeys, now, minRevision: 8 })).toMatchObject({ reason: 'rollback' });
    expect(verifyBundle(text, { trustedKeys, now, minRevision: 7 }).ok).toBe(true);
    expect(verifyBundle(text, { trustedKeys, now, workload: parseIdentity('tag.app=other') })).toMatchObject({
      reason: 'wrong-scope',
    });
  });

  it('wrong-scope also when a group the bundle was not compiled for selects the workload', () => {
    const two = mustParse(`${policyYaml({ allow: ['to: { host: a.com }'] })}---
apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: prod }
spec: { match: { tags: { env: prod } } }
`);
    const plain = signBundle(
      { policy: compilePolicy(two, APP), revision: 1, issuedAt },
      signer.privateKeyPem,
    );
    const prodWorkload = parseIdentity('cloud=aws,name=fn,tag.app=demo,tag.env=prod');
    expect(verifyBundle(plain, { trustedKeys, now, workload: APP }).ok).toBe(true);
    expect(verifyBundle(plain, { trustedKeys, now, workload: prodWorkload })).toMatchObject({
      reason: 'wrong-scope',
    });
  });

  it('scopeMismatch: a group selector on a key the workload cannot know is not held against it; an exclusion on one never applies', () => {
    const scope = {
      id: 's1',
      groups: [{ name: 'prod-acct', match: { account: ['111'], 'tag.app': ['demo'] } }],
      excludes: [{ account: ['222'] }],
    };
    const inLambda = parseIdentity('cloud=aws,name=fn,tag.app=demo');
    expect(scopeMismatch(scope, inLambda)).toMatch(/SmartGroup prod-acct, which does not select/);
    expect(scopeMismatch(scope, inLambda, new Set(['account']))).toBeUndefined();
    // What the workload does know still decides.
    expect(
      scopeMismatch(scope, parseIdentity('cloud=aws,name=fn,tag.app=other'), new Set(['account'])),
    ).toMatch(/does not select/);
    // A known account is checked as usual, and an exclusion on it applies.
    expect(scopeMismatch(scope, parseIdentity('account=222,tag.app=demo'), new Set(['account']))).toMatch(
      /does not select/,
    );
    const excluded = { ...scope, groups: [] };
    expect(scopeMismatch(excluded, parseIdentity('account=222,tag.app=demo'), new Set(['account']))).toMatch(
      /compiled without a SmartGroup/,
    );
    expect(scopeMismatch(excluded, inLambda, new Set(['account']))).toBeUndefined();
  });

  it.each([
    ['not JSON', '{'],
    ['an array', '[]'],
    ['wrong payload type', JSON.stringify({ ...envelope, payloadType: 'application/json' })],
    ['extra envelope field', JSON.stringify({ ...envelope, extra: 1 })],
    ['non-canonical base64', JSON.stringify({ ...envelope, payload: `${envelope.payload}\n` })],
    ['signatures not a list', JSON.stringify({ ...envelope, signatures: 'x' })],
    ['huge', ' '.repeat(33 * 1024 * 1024)],
  ])('malformed: %s', (_name, input) => {
    expect(verifyBundle(input, { trustedKeys, now })).toMatchObject({ ok: false, reason: 'malformed' });
  });

  it('malformed: a validly signed payload that is not a bundle', () => {
    const signRaw = (payload: string) => {
      const body = Buffer.from(payload);
      const sig = sign(
        null,
        preAuthEncoding(BUNDLE_PAYLOAD_TYPE, body),
        createPrivateKey(signer.privateKeyPem),
      );
      return {
        payloadType: BUNDLE_PAYLOAD_TYPE,
        payload: body.toString('base64'),
        signatures: [{ keyid: signer.keyId, sig: sig.toString('base64') }],
      };
    };
    const good = JSON.parse(Buffer.from(envelope.payload, 'base64').toString()) as Record<string, unknown>;
    for (const broken of [
      'null',
      'not json',
      canonicalJson({ ...good, schemaVersion: 2 }),
      canonicalJson({ ...good, revision: -1 }),
      canonicalJson({ ...good, expiresAt: 'soon' }),
      canonicalJson({
        ...good,
        policy: { ...policy, rules: [{ id: 'x', action: 'maybe', mode: 'enforce' }] },
      }),
      canonicalJson({
        ...good,
        policy: { ...policy, rules: [{ id: 'x', action: 'allow', mode: 'enforce', ports: [[9, 1]] }] },
      }),
      canonicalJson({ ...good, keyId: rotated.keyId }),
      canonicalJson({ ...good, scope: { ...policy.scope, groups: [] } }),
    ])
      expect(verifyBundle(signRaw(broken), { trustedKeys, now }), broken.slice(0, 40)).toMatchObject({
        reason: 'malformed',
      });
    expect(b64({ a: 1 })).toBe(Buffer.from('{"a":1}').toString('base64'));
  });

  it('any flipped byte of the envelope fails verification', () => {
    const bytes = Buffer.from(text);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: bytes.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        (index, flip) => {
          const copy = Buffer.from(bytes);
          copy[index] = (copy[index] as number) ^ flip;
          const result = verifyBundle(copy, { trustedKeys, now });
          expect(result.ok).toBe(false);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('compile → sign → verify round-trips for any workload identity', () => {
    const identity = fc.dictionary(
      fc.constantFrom('cloud', 'name', 'region', 'tag.app', 'tag.env', 'account'),
      fc.constantFrom('aws', 'demo', 'prod', 'x', 'us-east-1', 'fn'),
    );
    fc.assert(
      fc.property(identity, fc.integer({ min: 0, max: 1_000_000 }), (id, revision) => {
        const compiled = compilePolicy(set, id);
        const signed = signBundle({ policy: compiled, revision, issuedAt }, signer.privateKeyPem);
        const result = verifyBundle(serializeEnvelope(signed), {
          trustedKeys,
          now,
          workload: id,
          minRevision: revision,
        });
        expect(result.ok).toBe(true);
        if (result.ok) expect(result.payload.policy).toEqual(compiled);
      }),
      { numRuns: 100 },
    );
  });

  it('never throws on arbitrary input', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.uint8Array(),
          fc.jsonValue().map((v) => JSON.stringify(v)),
        ),
        (input) => {
          expect(verifyBundle(input as string, { trustedKeys, now }).ok).toBe(false);
        },
      ),
    );
    expect(verifyBundle(null as never, { trustedKeys, now }).ok).toBe(false);
  });
});

describe('keys', () => {
  it('key id is the truncated SHA-256 of the SPKI DER, stable across PEM and DER spellings', () => {
    const der = createPublicKey(signer.publicKeyPem).export({ type: 'spki', format: 'der' });
    expect(keyIdOf(signer.publicKeyPem)).toBe(createHash('sha256').update(der).digest('hex').slice(0, 32));
    const fromDer = loadTrustedKeys(der.toString('base64'));
    const fromPemB64 = loadTrustedKeys(Buffer.from(signer.publicKeyPem).toString('base64'));
    expect(fromDer[0]?.keyId).toBe(signer.keyId);
    expect(fromPemB64[0]?.keyId).toBe(signer.keyId);
  });

  it('loads files and comma-separated lists, refuses private keys and non-Ed25519 keys without echoing them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulkhead-keys-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'a.pub'), signer.publicKeyPem);
    writeFileSync(join(dir, 'b.pub'), rotated.publicKeyPem);
    const keys = loadTrustedKeys(`${join(dir, 'a.pub')},${join(dir, 'b.pub')}`);
    expect(keys.map((k) => k.keyId)).toEqual([signer.keyId, rotated.keyId]);
    expect(() => loadTrustedKeys([signer.privateKeyPem])).toThrow(/private key/);
    try {
      loadTrustedKeys([signer.privateKeyPem]);
    } catch (error) {
      expect((error as Error).message).not.toContain('BEGIN');
    }
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .publicKey.export({ type: 'spki', format: 'pem' })
      .toString();
    expect(() => loadTrustedKeys([ec])).toThrow(/Ed25519/);
    expect(() => loadTrustedKeys([join(dir, 'missing.pub')])).toThrow(/cannot read/);
  });
});
