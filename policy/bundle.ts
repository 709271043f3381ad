// Signed bundles: a DSSE envelope (https://github.com/secure-systems-lab/dsse) over the canonical
// JSON payload, Ed25519 through node:crypto. No npm dependencies: the shim verifies with this.
import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { canonicalJson } from './canonical.js';
import { type BundleScope, type CompiledPolicy, checkCompiledPolicy } from './compiled.js';
import { selectorMatches } from './identity.js';
import { keyIdOf, type TrustedKey } from './keys.js';
import { BUNDLE_PAYLOAD_TYPE, BUNDLE_SCHEMA_VERSION, type Envelope, type WorkloadIdentity } from './types.js';

export interface BundlePayload {
  schemaVersion: typeof BUNDLE_SCHEMA_VERSION;
  revision: number;
  issuedAt: string;
  expiresAt: string;
  scope: BundleScope;
  keyId?: string;
  policy: CompiledPolicy;
}

export type VerifyFailure =
  | 'bad-signature'
  | 'unknown-key'
  | 'unsigned'
  | 'expired'
  | 'rollback'
  | 'wrong-scope'
  | 'malformed';

export type VerifyResult =
  | { ok: true; payload: BundlePayload; keyId: string }
  | { ok: false; reason: VerifyFailure; message: string };

export interface VerifyOptions {
  trustedKeys: readonly TrustedKey[];
  /** The revision currently held: an older bundle is a rollback (an equal one is accepted). */
  minRevision?: number | undefined;
  /** When given, the bundle's scope must be satisfied by this identity. */
  workload?: WorkloadIdentity | undefined;
  now?: Date | number | undefined;
}

export const DEFAULT_BUNDLE_LIFETIME_MS = 24 * 60 * 60 * 1000;
/** Larger envelopes are refused before parsing (a 10k-rule bundle is ~2 MB). */
export const MAX_ENVELOPE_BYTES = 32 * 1024 * 1024;

/** DSSE pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body. */
export function preAuthEncoding(payloadType: string, payload: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  const head = Buffer.from(`DSSEv1 ${type.length} ${payloadType} ${payload.length} `, 'utf8');
  return Buffer.concat([head, payload]);
}

function toIso(value: Date | string | number, what: string): string {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) throw new TypeError(`signBundle: ${what} is not a valid time`);
  return date.toISOString();
}

export interface SignInput {
  policy: CompiledPolicy;
  revision: number;
  issuedAt?: Date | string | number | undefined;
  /** Default: issuedAt + 24 h. */
  expiresAt?: Date | string | number | undefined;
}

/** Sign a compiled policy. The envelope's keyid is derived from the private key's public half. */
export function signBundle(input: SignInput, privateKey: string | KeyObject): Envelope {
  if (!Number.isSafeInteger(input.revision) || input.revision < 0)
    throw new TypeError('signBundle: revision must be a non-negative integer');
  const key = typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey;
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError('signBundle: expected an Ed25519 private key');
  const keyId = keyIdOf(createPublicKey(key));
  const issuedAt = toIso(input.issuedAt ?? new Date(), 'issuedAt');
  const expiresAt = toIso(input.expiresAt ?? Date.parse(issuedAt) + DEFAULT_BUNDLE_LIFETIME_MS, 'expiresAt');
  if (Date.parse(expiresAt) <= Date.parse(issuedAt))
    throw new TypeError('signBundle: expiresAt must be after issuedAt');
  const payload: BundlePayload = {
    schemaVersion: BUNDLE_SCHEMA_VERSION,
    revision: input.revision,
    issuedAt,
    expiresAt,
    scope: input.policy.scope,
    keyId,
    policy: input.policy,
  };
  const body = Buffer.from(canonicalJson(payload), 'utf8');
  const sig = sign(null, preAuthEncoding(BUNDLE_PAYLOAD_TYPE, body), key);
  return {
    payloadType: BUNDLE_PAYLOAD_TYPE,
    payload: body.toString('base64'),
    signatures: [{ keyid: keyId, sig: sig.toString('base64') }],
  };
}

/** The envelope as it is stored and served: canonical JSON. */
export function serializeEnvelope(envelope: Envelope): string {
  return canonicalJson(envelope);
}

/**
 * Base64 decode that refuses anything but the one canonical spelling of the bytes: Node's decoder
 * skips characters it does not know, so re-encoding and comparing catches every variant (and is
 * far cheaper on a 2 MB payload than a validating regular expression).
 */
function decodeBase64Strict(text: string): Buffer | undefined {
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : undefined;
}

function fail(reason: VerifyFailure, message: string): VerifyResult {
  return { ok: false, reason, message };
}

function isIsoTime(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 40 && !Number.isNaN(Date.parse(value));
}

/**
 * Verify an envelope (JSON text, bytes, or parsed) against trusted keys. Never throws: every
 * problem is a typed result. Order: malformed envelope → unsigned → unknown-key / bad-signature →
 * malformed payload → expired → rollback → wrong-scope.
 */
export function verifyBundle(input: string | Uint8Array | Envelope, options: VerifyOptions): VerifyResult {
  try {
    return verifyUnsafe(input, options);
  } catch (error) {
    return fail('malformed', `bundle could not be read: ${(error as Error).message}`);
  }
}

function verifyUnsafe(input: string | Uint8Array | Envelope, options: VerifyOptions): VerifyResult {
  let envelope: unknown = input;
  if (typeof input === 'string' || input instanceof Uint8Array) {
    if (input.length > MAX_ENVELOPE_BYTES)
      return fail('malformed', `envelope larger than ${MAX_ENVELOPE_BYTES} bytes`);
    const text =
      typeof input === 'string'
        ? input
        : new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(input);
    try {
      envelope = JSON.parse(text);
    } catch {
      return fail('malformed', 'envelope is not JSON');
    }
  }
  if (typeof envelope !== 'object' || envelope === null || Array.isArray(envelope))
    return fail('malformed', 'envelope is not a JSON object');
  const { payloadType, payload, signatures } = envelope as Record<string, unknown>;
  const extra = Object.keys(envelope).filter(
    (k) => k !== 'payloadType' && k !== 'payload' && k !== 'signatures',
  );
  if (extra.length > 0) return fail('malformed', `envelope has unknown fields: ${extra.join(', ')}`);
  if (payloadType !== BUNDLE_PAYLOAD_TYPE)
    return fail(
      'malformed',
      `payloadType must be ${BUNDLE_PAYLOAD_TYPE}, got ${JSON.stringify(payloadType)?.slice(0, 80)}`,
    );
  if (typeof payload !== 'string') return fail('malformed', 'payload must be a base64 string');
  const body = decodeBase64Strict(payload);
  if (!body) return fail('malformed', 'payload is not canonical base64');
  if (signatures === undefined || (Array.isArray(signatures) && signatures.length === 0))
    return fail('unsigned', 'envelope carries no signature; unsigned bundles are never accepted');
  if (!Array.isArray(signatures) || signatures.length > 16)
    return fail('malformed', 'signatures must be a list (≤ 16)');
  if (options.trustedKeys.length === 0) return fail('unknown-key', 'no trusted keys configured');

  const pae = preAuthEncoding(BUNDLE_PAYLOAD_TYPE, body);
  let verifiedKeyId: string | undefined;
  let knownKeySeen = false;
  for (const signature of signatures) {
    if (typeof signature !== 'object' || signature === null)
      return fail('malformed', 'signature entry is not an object');
    const { keyid, sig } = signature as Record<string, unknown>;
    const sigExtra = Object.keys(signature).filter((k) => k !== 'keyid' && k !== 'sig');
    if (sigExtra.length > 0 || typeof keyid !== 'string' || typeof sig !== 'string')
      return fail('malformed', 'signature entry must be {keyid, sig} strings');
    const sigBytes = decodeBase64Strict(sig);
    if (!sigBytes) return fail('malformed', 'signature is not canonical base64');
    const candidates = options.trustedKeys.filter((k) => k.keyId === keyid);
    if (candidates.length === 0) continue;
    knownKeySeen = true;
    for (const candidate of candidates) {
      if (sigBytes.length === 64 && verify(null, pae, candidate.key, sigBytes)) {
        verifiedKeyId = candidate.keyId;
        break;
      }
    }
    if (verifiedKeyId) break;
  }
  if (!verifiedKeyId) {
    if (!knownKeySeen) {
      const ids = signatures
        .map((s) => (s as { keyid?: unknown }).keyid)
        .filter((k): k is string => typeof k === 'string')
        .map((k) => k.slice(0, 64));
      return fail('unknown-key', `signed by ${ids.join(', ') || 'no key id'}, none of them trusted`);
    }
    return fail('bad-signature', 'signature does not verify against the trusted key it names');
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch {
    return fail('malformed', 'signed payload is not JSON');
  }
  const problem = checkPayload(parsed);
  if (problem) return fail('malformed', problem);
  const bundle = parsed as BundlePayload;
  if (bundle.keyId !== undefined && bundle.keyId !== verifiedKeyId)
    return fail('malformed', 'payload keyId differs from the key that signed it');

  const now = options.now === undefined ? Date.now() : new Date(options.now).getTime();
  if (now >= Date.parse(bundle.expiresAt))
    return fail('expired', `bundle revision ${bundle.revision} expired at ${bundle.expiresAt}`);
  if (options.minRevision !== undefined && bundle.revision < options.minRevision)
    return fail(
      'rollback',
      `bundle revision ${bundle.revision} is older than the held revision ${options.minRevision}`,
    );
  if (options.workload) {
    const scopeProblem = scopeMismatch(bundle.scope, options.workload);
    if (scopeProblem) return fail('wrong-scope', scopeProblem);
  }
  return { ok: true, payload: bundle, keyId: verifiedKeyId };
}

function checkPayload(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'payload is not an object';
  const p = value as Record<string, unknown>;
  if (p.schemaVersion !== BUNDLE_SCHEMA_VERSION)
    return `payload schemaVersion ${JSON.stringify(p.schemaVersion)} is not supported (expected ${BUNDLE_SCHEMA_VERSION})`;
  if (!Number.isSafeInteger(p.revision) || (p.revision as number) < 0)
    return 'payload revision is not a non-negative integer';
  if (!isIsoTime(p.issuedAt) || !isIsoTime(p.expiresAt)) return 'payload issuedAt/expiresAt are not times';
  if (p.keyId !== undefined && typeof p.keyId !== 'string') return 'payload keyId is not a string';
  const policyProblem = checkCompiledPolicy(p.policy);
  if (policyProblem) return policyProblem;
  if (canonicalJson(p.scope) !== canonicalJson((p.policy as CompiledPolicy).scope))
    return 'payload scope differs from the compiled policy scope';
  return undefined;
}

/**
 * Why `identity` does not hold a bundle of `scope`, or undefined when it does. `unknowable`: identity
 * keys the workload cannot tell (selectorMatches); a group's selector on one of them is not held
 * against it, and an exclusion on one never applies.
 */
export function scopeMismatch(
  scope: BundleScope,
  identity: WorkloadIdentity,
  unknowable?: ReadonlySet<string>,
): string | undefined {
  for (const group of scope.groups)
    if (!selectorMatches(group.match, identity, unknowable))
      return `bundle scope ${scope.id} is for SmartGroup ${group.name}, which does not select this workload`;
  for (const selector of scope.excludes)
    if (selectorMatches(selector, identity))
      return `bundle scope ${scope.id} was compiled without a SmartGroup that selects this workload`;
  return undefined;
}
