import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadOrCreateSigningKey, signingKeyFromPem } from '../../control/signing-key.js';
import { generateKeyPair } from '../../policy/index.js';

describe('signing key file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-key-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('generates a 0600 key on first start and loads the same key after', () => {
    const file = join(dir, 'nested', 'signing.pem');
    const created = loadOrCreateSigningKey(file);
    expect(created.created).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const loaded = loadOrCreateSigningKey(file);
    expect(loaded.created).toBe(false);
    expect(loaded.keyId).toBe(created.keyId);
    expect(loaded.publicKeyPem).toBe(created.publicKeyPem);
  });

  it('refuses a key file others can read', () => {
    const file = join(dir, 'open.pem');
    writeFileSync(file, generateKeyPair().privateKeyPem, { mode: 0o644 });
    chmodSync(file, 0o644);
    expect(() => loadOrCreateSigningKey(file)).toThrow(/chmod 600/);
  });

  it('refuses a file that is not an Ed25519 private key, without echoing it', () => {
    const file = join(dir, 'junk.pem');
    writeFileSync(file, 'secret-looking-junk', { mode: 0o600 });
    let message = '';
    try {
      loadOrCreateSigningKey(file);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/not a PEM private key/);
    expect(message).not.toContain('secret-looking-junk');
    expect(() => signingKeyFromPem(generateKeyPair().publicKeyPem)).toThrow();
    expect(readFileSync(file, 'utf8')).toBe('secret-looking-junk');
  });
});
