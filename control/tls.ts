// The control API's TLS certificate and private key (PEM files), for serving HTTPS itself. Read at
// start and again on SIGHUP (certificate rotation); the key file is refused when others can read it,
// as the signing key is, and a key that does not belong to the certificate is refused by name.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

export interface TlsFiles {
  /** The certificate, or the chain (leaf first), PEM. */
  cert: string;
  /** The private key, PEM. Secret: never log it. */
  key: string;
  /** The leaf certificate's subject and validity, for the log. */
  subject: string;
  validFrom: string;
  validTo: string;
  /** SHA-256 fingerprint of the leaf. */
  fingerprint256: string;
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`${what} ${file}: no such file`);
    if (code === 'EACCES') throw new Error(`${what} ${file}: not readable by this user`);
    throw new Error(`${what} ${file}: cannot read (${code ?? (error as Error).message})`);
  }
}

export function loadTlsFiles(certFile: string, keyFile: string): TlsFiles {
  let mode: number;
  try {
    mode = statSync(keyFile).mode;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(`TLS key ${keyFile}: ${code === 'ENOENT' ? 'no such file' : `cannot read (${code})`}`);
  }
  if ((mode & 0o077) !== 0) {
    throw new Error(
      `TLS key ${keyFile}: mode ${(mode & 0o777).toString(8)} lets others read it; run chmod 600 ${keyFile}`,
    );
  }
  const key = readText(keyFile, 'TLS key');
  const cert = readText(certFile, 'TLS certificate');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (error) {
    throw new Error(`TLS certificate ${certFile}: not a PEM certificate (${(error as Error).message})`);
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    // Node's message names the problem (format, passphrase), never the key's content.
    throw new Error(`TLS key ${keyFile}: not a PEM private key (${(error as Error).message})`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new Error(`TLS key ${keyFile} does not belong to the certificate in ${certFile}`);
  }
  return {
    cert,
    key,
    subject: leaf.subject.replace(/\n/g, ', '),
    validFrom: new Date(leaf.validFrom).toISOString(),
    validTo: new Date(leaf.validTo).toISOString(),
    fingerprint256: leaf.fingerprint256,
  };
}
