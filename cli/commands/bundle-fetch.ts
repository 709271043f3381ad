// bulkhead bundle fetch: the workload's signed bundle from the control API, verified, written to a
// file (for BULKHEAD_BUNDLE_FILE in a container image, a VM or a CI job). The same bundle client
// the wrappers, the Lambda extension and the preload's control link use.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { verifyBundle } from '../../policy/bundle.js';
import { parseIdentity } from '../../policy/identity.js';
import { loadTrustedKeys } from '../../policy/keys.js';
import type { WorkloadIdentity } from '../../policy/types.js';
import { createBundleClient, type FetchOutcome } from '../../runtime-shims/node/client/bundle-client.js';
import { keysDiscoverable, listSigningKeys } from '../../runtime-shims/node/client/signing-keys.js';
import { detectIdentity } from '../../runtime-shims/node/identity.js';
import {
  type Command,
  EXIT_FAILURE,
  EXIT_OK,
  integerOption,
  requireOption,
  stringOption,
  UsageError,
} from '../command.js';

const usage = `Usage: bulkhead bundle fetch --out FILE [--workload k=v,...] [--control URL] [--token TOKEN]
                             [--trusted PUB[,PUB...]] [--wait SECONDS] [--timeout MS] [--json]

Fetches the signed bundle for one workload from the control API, verifies it (signature, expiry,
scope) and writes it to FILE (write then rename; mode 0644). When FILE already holds a valid
bundle, an older revision is refused (rollback) and FILE is left as it is; the same revision is
written again (the control API re-signs bundles before they expire).

  --workload   identity text (default BULKHEAD_WORKLOAD, else what the platform's variables say)
  --control    control API URL (default BULKHEAD_CONTROL_URL)
  --token      workload token (default BULKHEAD_TOKEN; never printed)
  --trusted    signing public keys (default BULKHEAD_TRUSTED_KEYS). Without any, the keys the control
               API lists are trusted, over https or loopback only (pin them: bulkhead.pub)
  --wait       long-poll: wait up to SECONDS (max 60) for a revision newer than FILE's
  --timeout    bound on the request in milliseconds (default 10000; the wait is added)

Exit 0 when FILE holds the newest bundle (written or already current); 1 when the control API could
not be reached or its bundle was refused (FILE unchanged).`;

export const bundleFetchCommand: Command = {
  path: ['bundle', 'fetch'],
  summary: 'Fetch, verify and write the bundle of one workload from the control API',
  usage,
  options: {
    out: { type: 'string' },
    workload: { type: 'string' },
    control: { type: 'string' },
    token: { type: 'string' },
    trusted: { type: 'string', multiple: true },
    wait: { type: 'string' },
    timeout: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const json = args.values.json === true;
    const out = requireOption(args, 'out');
    const controlUrl = stringOption(args, 'control') ?? process.env.BULKHEAD_CONTROL_URL;
    if (!controlUrl) throw new UsageError('--control URL (or BULKHEAD_CONTROL_URL) is required');
    const token = stringOption(args, 'token') ?? process.env.BULKHEAD_TOKEN;
    if (!token) throw new UsageError('--token (or BULKHEAD_TOKEN) is required');
    const waitSeconds = integerOption(stringOption(args, 'wait'), 'wait', { min: 0, max: 60 });
    const timeoutMs =
      integerOption(stringOption(args, 'timeout'), 'timeout', { min: 1, max: 600_000 }) ?? 10_000;
    const workloadText = stringOption(args, 'workload') ?? process.env.BULKHEAD_WORKLOAD;
    let workload: WorkloadIdentity;
    try {
      workload = workloadText ? parseIdentity(workloadText) : detectIdentity(process.env);
    } catch (error) {
      throw new UsageError(`--workload: ${(error as Error).message}`);
    }
    let base: URL;
    try {
      base = new URL(controlUrl);
    } catch {
      throw new UsageError(`--control: not a URL: ${controlUrl}`);
    }

    const given = (Array.isArray(args.values.trusted) ? args.values.trusted : []).map(String);
    let specs = given.length > 0 ? given : (process.env.BULKHEAD_TRUSTED_KEYS ?? '').split(',');
    specs = specs.map((s) => s.trim()).filter((s) => s !== '');
    if (specs.length === 0) {
      if (!keysDiscoverable(base))
        throw new UsageError(
          '--trusted (or BULKHEAD_TRUSTED_KEYS) is required: the control API is neither https nor loopback, so its own key list proves nothing',
        );
      const listed = await listSigningKeys(base.href, token, timeoutMs);
      if ('problem' in listed) {
        io.err(`bulkhead bundle fetch: cannot list the control API's signing keys: ${listed.problem}`);
        return EXIT_FAILURE;
      }
      specs = listed.keys;
      io.err(
        `bulkhead bundle fetch: trusting the ${specs.length} signing key(s) the control API lists (pin them with --trusted)`,
      );
    }
    let trustedKeys: ReturnType<typeof loadTrustedKeys>;
    try {
      trustedKeys = loadTrustedKeys(specs);
    } catch (error) {
      throw new UsageError(`--trusted: ${(error as Error).message}`);
    }

    // What FILE holds now, if it is a valid bundle for this workload: its revision is the floor.
    let heldRevision: number | undefined;
    try {
      const held = verifyBundle(readFileSync(out, 'utf8'), { trustedKeys, workload });
      if (held.ok) heldRevision = held.payload.revision;
    } catch {
      heldRevision = undefined;
    }
    let client: ReturnType<typeof createBundleClient>;
    try {
      client = createBundleClient({
        controlUrl: base.href,
        token,
        workload,
        trustedKeys,
        timeoutMs,
        log: (level, message) => {
          if (level === 'warn') io.err(`bulkhead bundle fetch: ${message}`);
        },
      });
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    // The client's long-poll sockets do not hold a process open (right for a shim, not for a command).
    const keepAlive = setInterval(() => undefined, 60_000);
    let outcome: FetchOutcome;
    try {
      outcome = await client.fetchOnce();
      if (outcome.kind === 'updated' && heldRevision !== undefined && outcome.revision < heldRevision) {
        io.err(
          `bulkhead bundle fetch: the control API offered revision ${outcome.revision}, older than the ${heldRevision} in ${out} (rollback refused); ${out} unchanged`,
        );
        return EXIT_FAILURE;
      }
      // FILE is current: with --wait, hold the request (conditional on what was just fetched) for the next one.
      if (outcome.kind === 'updated' && outcome.revision === heldRevision && waitSeconds)
        outcome = await client.fetchOnce({ waitSeconds });
    } finally {
      clearInterval(keepAlive);
      client.stop();
    }
    if (outcome.kind === 'updated') {
      const temporary = `${out}.${process.pid}.tmp`;
      writeFileSync(temporary, outcome.envelopeText, { mode: 0o644 });
      renameSync(temporary, out);
      const summary = {
        outcome: outcome.revision === heldRevision ? 'refreshed' : 'written',
        file: out,
        revision: outcome.revision,
        scope: outcome.payload.scope.id,
        expiresAt: outcome.payload.expiresAt,
      };
      if (json) io.out(JSON.stringify(summary));
      else
        io.out(
          `wrote ${out}: revision ${outcome.revision}, scope ${summary.scope}, expires ${summary.expiresAt}`,
        );
      return EXIT_OK;
    }
    if (outcome.kind === 'not-modified') {
      if (json) io.out(JSON.stringify({ outcome: 'current', file: out, revision: outcome.revision }));
      else io.out(`${out} holds revision ${outcome.revision}, the newest: unchanged`);
      return EXIT_OK;
    }
    const reason =
      outcome.kind === 'rejected'
        ? `${outcome.reason}: ${outcome.message}`
        : `${outcome.cause}: ${outcome.message}`;
    if (json) io.out(JSON.stringify({ outcome: outcome.kind, file: out, message: reason }));
    else
      io.err(
        `bulkhead bundle fetch: ${outcome.kind === 'rejected' ? 'bundle refused' : 'no bundle'} (${reason}); ${out} unchanged`,
      );
    return EXIT_FAILURE;
  },
};
