// bulkhead keys generate / keys id / keys public: Ed25519 signing keys for bundles.
import { createPublicKey } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPair, keyIdOf } from '../../policy/keys.js';
import { controlClient, describeFailure } from '../client.js';
import { type Command, EXIT_FAILURE, EXIT_OK, requireOption, stringOption, UsageError } from '../command.js';

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

const publicUsage = `Usage: bulkhead keys public [--key FILE] [--json]
       bulkhead keys public --control URL [--token TOKEN] [--all] [--json]

Prints the public half of the bundle signing key (SPKI PEM), for workloads to pin
(BULKHEAD_TRUSTED_KEYS) and for layer build --trusted-key:

  --key FILE      from the control API's private key file (default ./bulkhead-signing.pem, as
                  control serve); a public key file is accepted too
  --control URL   from a running control API instead (GET /v1/keys; any token): the key it signs with now
  --token TOKEN   token for --control (default BULKHEAD_TOKEN)
  --all           with --control: every key the API has signed with, the active one marked
  --json          {keyId, publicKey} (with --control also active, firstUsed); with --all an array

The key id (hex SHA-256 of the SPKI DER, 32 digits) is what bundles name; text output writes it to stderr.
A key fetched from the API is only as trustworthy as the channel: use https, or compare the key id
with the one control serve logged at start.`;

interface PublicKeyEntry {
  keyId: string;
  publicKey: string;
  active?: boolean;
  firstUsed?: string;
}

function publicKeyFromFile(file: string): PublicKeyEntry {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(`${file}: ${code === 'ENOENT' ? 'no such file' : `cannot read (${code})`}`);
  }
  let key: ReturnType<typeof createPublicKey>;
  try {
    // A private key gives its public half; a public key is itself.
    key = createPublicKey(text);
  } catch (error) {
    throw new Error(`${file}: not a PEM key (${(error as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new Error(`${file}: expected an Ed25519 key, got ${key.asymmetricKeyType ?? 'unknown'}`);
  const publicKey = key.export({ type: 'spki', format: 'pem' }).toString();
  return { keyId: keyIdOf(publicKey), publicKey };
}

async function publicKeysFromApi(args: Parameters<Command['run']>[0]): Promise<PublicKeyEntry[]> {
  const client = controlClient(args);
  const response = await client.request('GET', '/v1/keys', { accept: 'application/json' });
  if (!response.ok) throw new Error(`GET /v1/keys: ${await describeFailure(response)}`);
  const body = (await response.json()) as {
    keys?: { keyid?: unknown; publicKey?: unknown; active?: unknown; firstUsed?: unknown }[];
  };
  const entries: PublicKeyEntry[] = [];
  for (const listed of Array.isArray(body.keys) ? body.keys : []) {
    if (typeof listed?.publicKey !== 'string') throw new Error('GET /v1/keys: an entry without a publicKey');
    let keyId: string;
    try {
      keyId = keyIdOf(listed.publicKey);
    } catch {
      throw new Error(`GET /v1/keys: key ${String(listed.keyid)} is not a PEM public key`);
    }
    // The id is derived from the key: one that does not match was not made by a Bulkhead API.
    if (listed.keyid !== keyId)
      throw new Error(`GET /v1/keys: key ${String(listed.keyid)} does not match its public key (${keyId})`);
    entries.push({
      keyId,
      publicKey: listed.publicKey.endsWith('\n') ? listed.publicKey : `${listed.publicKey}\n`,
      active: listed.active === true,
      ...(typeof listed.firstUsed === 'string' ? { firstUsed: listed.firstUsed } : {}),
    });
  }
  return entries;
}

export const keysPublicCommand: Command = {
  path: ['keys', 'public'],
  summary: 'Print the signing public key (SPKI PEM) from the key file or a running control API',
  usage: publicUsage,
  options: {
    key: { type: 'string' },
    control: { type: 'string' },
    token: { type: 'string' },
    all: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const fromApi = stringOption(args, 'control') !== undefined;
    const all = args.values.all === true;
    if (fromApi && stringOption(args, 'key') !== undefined)
      throw new UsageError('give --key FILE or --control URL, not both');
    if (!fromApi && all) throw new UsageError('--all lists the keys of a control API: give --control URL');
    if (!fromApi && stringOption(args, 'token') !== undefined)
      throw new UsageError('--token goes with --control URL');
    let entries: PublicKeyEntry[];
    if (fromApi) {
      const listed = await publicKeysFromApi(args);
      if (all) entries = listed;
      else {
        const active = listed.find((entry) => entry.active);
        if (!active) {
          io.err('bulkhead keys public: the control API marks no key active');
          return EXIT_FAILURE;
        }
        entries = [active];
      }
    } else {
      entries = [publicKeyFromFile(stringOption(args, 'key') ?? './bulkhead-signing.pem')];
    }
    if (args.values.json) {
      io.out(JSON.stringify(all ? entries : entries[0]));
      return EXIT_OK;
    }
    for (const entry of entries) {
      const notes = [
        entry.active && all ? 'active' : '',
        entry.firstUsed ? `first used ${entry.firstUsed}` : '',
      ]
        .filter(Boolean)
        .join(', ');
      io.err(`key ${entry.keyId}${notes && all ? ` (${notes})` : ''}`);
      io.out(entry.publicKey.trimEnd());
    }
    return EXIT_OK;
  },
};
