// The control API's Ed25519 signing key, kept in a 0600 PEM file. Generated on first start
// when the file is absent; refused when the file is readable by others.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { generateKeyPair, keyIdOf } from '../policy/index.js';
import type { SigningKey } from './policy-state.js';

export function signingKeyFromPem(privateKeyPem: string): SigningKey {
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(privateKeyPem);
  } catch (error) {
    throw new Error(`signing key: not a PEM private key (${(error as Error).message})`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new Error(`signing key: expected Ed25519, got ${privateKey.asymmetricKeyType ?? 'unknown'}`);
  }
  const publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  return { privateKeyPem, publicKeyPem, keyId: keyIdOf(publicKeyPem) };
}

export interface LoadedSigningKey extends SigningKey {
  /** True when the file did not exist and a new key was written. */
  created: boolean;
}

export function loadOrCreateSigningKey(file: string): LoadedSigningKey {
  let stat: { mode: number } | undefined;
  try {
    stat = statSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (stat) {
    if ((stat.mode & 0o077) !== 0) {
      throw new Error(
        `signing key ${file}: mode ${(stat.mode & 0o777).toString(8)} lets others read it; run chmod 600 ${file}`,
      );
    }
    return { ...signingKeyFromPem(readFileSync(file, 'utf8')), created: false };
  }
  const pair = generateKeyPair();
  mkdirSync(dirname(file), { recursive: true });
  // 'wx': never overwrite a key another process wrote a moment ago.
  const fd = openSync(file, 'wx', 0o600);
  try {
    writeSync(fd, pair.privateKeyPem);
  } finally {
    closeSync(fd);
  }
  chmodSync(file, 0o600);
  return {
    privateKeyPem: pair.privateKeyPem,
    publicKeyPem: pair.publicKeyPem,
    keyId: pair.keyId,
    created: true,
  };
}
