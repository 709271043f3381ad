// Ed25519 keys as PEM, key ids, and the trusted-key list a verifier holds. node:crypto only.
import { createHash, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';

export interface KeyPair {
  /** PKCS#8 PEM. Secret: write it with mode 0600, never log it. */
  privateKeyPem: string;
  /** SPKI PEM. */
  publicKeyPem: string;
  keyId: string;
}

export interface TrustedKey {
  keyId: string;
  key: KeyObject;
}

export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem,
    keyId: keyIdOf(publicKey),
  };
}

/** Key id: hex SHA-256 of the SPKI DER of the public key, first 32 hex digits (128 bits). */
export function keyIdOf(publicKey: string | KeyObject): string {
  const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey;
  const der = key.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 32);
}

function publicKeyFrom(text: string, origin: string): KeyObject {
  const trimmed = text.trim();
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(trimmed))
    throw new Error(`${origin}: is a private key; trust the public key (bulkhead.pub) instead`);
  let key: KeyObject;
  try {
    if (trimmed.startsWith('-----BEGIN')) key = createPublicKey(trimmed);
    else {
      if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) throw new Error('not PEM or base64');
      const bytes = Buffer.from(trimmed, 'base64');
      const asText = bytes.toString('utf8');
      key = asText.startsWith('-----BEGIN')
        ? createPublicKey(asText)
        : createPublicKey({ key: bytes, format: 'der', type: 'spki' });
    }
  } catch (error) {
    throw new Error(`${origin}: not a public key (${(error as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new Error(`${origin}: expected an Ed25519 key, got ${key.asymmetricKeyType ?? 'unknown'}`);
  return key;
}

/**
 * Trusted public keys from specs: a file path, inline PEM, or base64 (of the PEM or of the SPKI
 * DER). A spec may hold several comma-separated entries (the `BULKHEAD_TRUSTED_KEYS` form).
 * Throws an Error naming the bad entry (never its content).
 */
export function loadTrustedKeys(specs: readonly string[] | string): TrustedKey[] {
  const list = typeof specs === 'string' ? [specs] : specs;
  const keys: TrustedKey[] = [];
  const seen = new Set<string>();
  for (const spec of list) {
    const entries = spec.trim().startsWith('-----BEGIN') ? [spec] : spec.split(',');
    for (const raw of entries) {
      const entry = raw.trim();
      if (entry === '') continue;
      let key: KeyObject;
      if (entry.startsWith('-----BEGIN')) key = publicKeyFrom(entry, 'inline key');
      else if (!/^[A-Za-z0-9+/_-]{40,}={0,2}$/.test(entry) || existsSync(entry)) {
        let text: string;
        try {
          text = readFileSync(entry, 'utf8');
        } catch (error) {
          throw new Error(
            `trusted key ${entry}: cannot read (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
          );
        }
        key = publicKeyFrom(text, `trusted key ${entry}`);
      } else {
        key = publicKeyFrom(entry, 'inline key');
      }
      const keyId = keyIdOf(key);
      if (seen.has(keyId)) continue;
      seen.add(keyId);
      keys.push({ keyId, key });
    }
  }
  return keys;
}
