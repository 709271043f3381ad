// bulkhead bundle build / bundle verify.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { serializeEnvelope, signBundle, verifyBundle } from '../../policy/bundle.js';
import { compilePolicy, type UnselectedDefault } from '../../policy/compile.js';
import { loadTrustedKeys } from '../../policy/keys.js';
import {
  type Command,
  durationOption,
  EXIT_FAILURE,
  EXIT_OK,
  integerOption,
  requireOption,
  stringOption,
  UsageError,
} from '../command.js';
import { identityOption, loadPolicySet } from './policy.js';

const buildUsage = `Usage: bulkhead bundle build FILES_OR_DIRS... --key KEY --workload k=v,... --revision N --out FILE [--expires 24h] [--unselected observe|enforce|allow] [--json]

Checks the policy (errors and guardrails exit 1), compiles it for that workload only, signs it (DSSE, Ed25519)
and writes the envelope to FILE.`;

export const bundleBuildCommand: Command = {
  path: ['bundle', 'build'],
  summary: 'Compile and sign the bundle for one workload',
  usage: buildUsage,
  positionals: true,
  options: {
    key: { type: 'string' },
    workload: { type: 'string' },
    revision: { type: 'string' },
    out: { type: 'string' },
    expires: { type: 'string' },
    unselected: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const json = args.values.json === true;
    const keyPath = requireOption(args, 'key');
    const identity = identityOption(args);
    const revision = integerOption(requireOption(args, 'revision'), 'revision') as number;
    const out = requireOption(args, 'out');
    const lifetime = durationOption(stringOption(args, 'expires') ?? '24h', 'expires');
    const unselected = stringOption(args, 'unselected');
    if (unselected !== undefined && !['observe', 'enforce', 'allow'].includes(unselected))
      throw new UsageError('--unselected: expected observe, enforce or allow');
    let privateKeyPem: string;
    try {
      privateKeyPem = readFileSync(keyPath, 'utf8');
    } catch (error) {
      throw new UsageError(
        `--key: cannot read ${keyPath} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    if (!/-----BEGIN PRIVATE KEY-----/.test(privateKeyPem))
      throw new UsageError(
        `--key: ${keyPath} is not a PKCS#8 private key (bulkhead keys generate writes one)`,
      );
    const set = loadPolicySet(args.positionals, io, { json });
    if (!set) return EXIT_FAILURE;
    const policy = compilePolicy(
      set,
      identity,
      unselected ? { unselected: unselected as UnselectedDefault } : {},
    );
    const issuedAt = new Date();
    const envelope = signBundle(
      { policy, revision, issuedAt, expiresAt: new Date(issuedAt.getTime() + lifetime) },
      privateKeyPem,
    );
    const text = serializeEnvelope(envelope);
    // Write then rename, so a reader never sees half a bundle.
    const temporary = `${out}.${process.pid}.tmp`;
    writeFileSync(temporary, text, { mode: 0o644 });
    renameSync(temporary, out);
    const summary = {
      file: out,
      revision,
      scope: policy.scope.id,
      keyId: envelope.signatures[0]?.keyid,
      rules: policy.rules.length + (policy.unix?.rules.length ?? 0),
      mode: policy.mode,
      fallback: policy.fallback,
      bytes: Buffer.byteLength(text),
      issuedAt: issuedAt.toISOString(),
      expiresAt: new Date(issuedAt.getTime() + lifetime).toISOString(),
    };
    if (json) io.out(JSON.stringify(summary));
    else
      io.out(
        `wrote ${out}: revision ${revision}, scope ${summary.scope}, ${summary.rules} rule(s), key ${summary.keyId}, expires ${summary.expiresAt}`,
      );
    return EXIT_OK;
  },
};

const verifyUsage = `Usage: bulkhead bundle verify FILE --trusted PUB[,PUB...] [--min-revision N] [--workload k=v,...] [--json]

Verifies the envelope as a workload would. Exit 0 when valid; 1 with the reason otherwise
(bad-signature, unknown-key, unsigned, expired, rollback, wrong-scope, malformed).`;

export const bundleVerifyCommand: Command = {
  path: ['bundle', 'verify'],
  summary: 'Verify a signed bundle (signature, expiry, rollback, scope)',
  usage: verifyUsage,
  positionals: true,
  options: {
    trusted: { type: 'string', multiple: true },
    'min-revision': { type: 'string' },
    workload: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const json = args.values.json === true;
    const file = args.positionals[0];
    if (!file || args.positionals.length > 1) throw new UsageError('expected one bundle file');
    const trustedSpecs = (Array.isArray(args.values.trusted) ? args.values.trusted : []).map(String);
    if (trustedSpecs.length === 0) throw new UsageError('--trusted is required');
    let trustedKeys: ReturnType<typeof loadTrustedKeys>;
    try {
      trustedKeys = loadTrustedKeys(trustedSpecs);
    } catch (error) {
      throw new UsageError(`--trusted: ${(error as Error).message}`);
    }
    const minRevision = integerOption(stringOption(args, 'min-revision'), 'min-revision');
    const workload = stringOption(args, 'workload') !== undefined ? identityOption(args) : undefined;
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch (error) {
      throw new UsageError(`cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const result = verifyBundle(bytes, { trustedKeys, minRevision, workload });
    if (!result.ok) {
      if (json) io.out(JSON.stringify({ ok: false, reason: result.reason, message: result.message }));
      else io.err(`${result.reason}: ${result.message}`);
      return EXIT_FAILURE;
    }
    const p = result.payload;
    const summary = {
      ok: true,
      revision: p.revision,
      scope: p.scope.id,
      groups: p.scope.groups.map((g) => g.name),
      keyId: result.keyId,
      issuedAt: p.issuedAt,
      expiresAt: p.expiresAt,
      mode: p.policy.mode,
      rules: p.policy.rules.length + (p.policy.unix?.rules.length ?? 0),
    };
    if (json) io.out(JSON.stringify(summary));
    else
      io.out(
        `ok: revision ${p.revision}, scope ${summary.scope} (${summary.groups.join(', ') || 'unselected'}), signed by ${result.keyId}, expires ${p.expiresAt}`,
      );
    return EXIT_OK;
  },
};
