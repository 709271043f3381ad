// bulkhead keys generate / keys id: Ed25519 signing keys for bundles.
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPair, keyIdOf } from '../../policy/keys.js';
import { type Command, EXIT_FAILURE, EXIT_OK, requireOption, UsageError } from '../command.js';

const generateUsage = `Usage: bulkhead keys generate --out DIR [--force] [--json]

Creates an Ed25519 key pair for signing bundles:
  DIR/bulkhead.key  private key (PKCS#8 PEM, mode 0600): keep it where bundles are signed, nowhere else
  DIR/bulkhead.pub  public key (SPKI PEM): give it to workloads (BULKHEAD_TRUSTED_KEYS)
Refuses to overwrite existing files unless --force.`;

function writeFileExclusive(path: string, text: string, mode: number, force: boolean): void {
  // Open with the final mode so the private key is never readable by others, even briefly.
  const fd = openSync(path, force ? 'w' : 'wx', mode);
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

export const keysGenerateCommand: Command = {
  path: ['keys', 'generate'],
  summary: 'Create an Ed25519 signing key pair (bulkhead.key 0600, bulkhead.pub)',
  usage: generateUsage,
  options: { out: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' } },
  async run(args, io) {
    const dir = requireOption(args, 'out');
    const force = args.values.force === true;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const pair = generateKeyPair();
    const keyPath = join(dir, 'bulkhead.key');
    const pubPath = join(dir, 'bulkhead.pub');
    try {
      writeFileExclusive(keyPath, pair.privateKeyPem, 0o600, force);
      writeFileExclusive(pubPath, pair.publicKeyPem, 0o644, force);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        io.err(`bulkhead keys generate: ${dir} already holds a key (use --force to replace it)`);
        return EXIT_FAILURE;
      }
      throw error;
    }
    if (force) {
      // An existing file keeps its old mode when overwritten: set it again.
      chmodSync(keyPath, 0o600);
    }
    if (args.values.json)
      io.out(JSON.stringify({ keyId: pair.keyId, privateKey: keyPath, publicKey: pubPath }));
    else io.out(`key ${pair.keyId}\n  private ${keyPath} (0600)\n  public  ${pubPath}`);
    return EXIT_OK;
  },
};

export const keysIdCommand: Command = {
  path: ['keys', 'id'],
  summary: 'Print the key id of a public key file',
  usage:
    'Usage: bulkhead keys id PUBLIC_KEY_FILE\n\nPrints the key id (hex SHA-256 of the SPKI DER, 32 digits) bundles name.',
  positionals: true,
  async run(args, io) {
    const file = args.positionals[0];
    if (!file || args.positionals.length > 1) throw new UsageError('expected one public key file');
    const text = readFileSync(file, 'utf8');
    if (/PRIVATE KEY/.test(text)) throw new UsageError(`${file} is a private key; give the public key`);
    io.out(keyIdOf(text));
    return EXIT_OK;
  },
};
