// bulkhead control serve: run the control API.

import { resolve } from 'node:path';
import type { Server as TlsServer } from 'node:tls';
import { AttestationConfigError, loadAttestationConfig } from '../../control/attest/config.js';
import { verifiersFor } from '../../control/attest/index.js';
import type { AttestationConfig } from '../../control/attest/types.js';
import { startControlServer } from '../../control/server.js';
import { loadOrCreateSigningKey } from '../../control/signing-key.js';
import { openStore } from '../../control/store/index.js';
import { loadTlsFiles, type TlsFiles } from '../../control/tls.js';
import { normalizeIp } from '../../policy/cidr.js';
import { type Command, EXIT_OK, stringOption, UsageError } from '../command.js';

const usage = `Usage: bulkhead control serve [--db FILE | --database-url URL] [--port N] [--host ADDR] [--key FILE]
                             [--tls-cert FILE --tls-key FILE] [--attestation FILE] [--require-attested]

Runs the control API: policy apply, signed bundles per workload, deny-record ingestion and queries.

  --db FILE            SQLite database (default ./bulkhead.db)
  --database-url URL   PostgreSQL instead of SQLite (several replicas may share it); also BULKHEAD_DATABASE_URL
  --port N             listen port (default: $PORT, else 8080)
  --host ADDR          listen address (default 127.0.0.1: this machine only). Give 0.0.0.0 (or ::) to
                       serve other machines, behind a TLS-terminating proxy or with --tls-cert/--tls-key
  --key FILE           Ed25519 signing key, mode 0600 (default ./bulkhead-signing.pem); generated when absent
  --tls-cert FILE      serve HTTPS with this certificate (PEM; the chain, leaf first)
  --tls-key FILE       ... and this private key (PEM, mode 0600). Both or neither. SIGHUP reads both
                       files again (certificate rotation) without dropping connections
  --attestation FILE   verify workload identity (POST /v1/attest): AWS STS, GCP identity tokens, Azure
                       managed identities; JSON {audience, aws?, gcp?, azure?, sessionTtlSeconds?, require?}
                       (docs/identity.md)
  --require-attested   refuse bundles and records to workload tokens that are not attested sessions

Tokens are bearer tokens: over plain HTTP they cross the network in clear text. See docs/production.md.
With PostgreSQL it starts while the database is down: /healthz answers 503 until it arrives.
Logs are JSON lines on stdout (BULKHEAD_LOG_LEVEL, default info). SIGINT/SIGTERM stop it cleanly.`;

export function parsePort(text: string | undefined, fallback: number): number {
  if (text === undefined || text === '') return fallback;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new UsageError(`not a port: ${text}`);
  return Number(text);
}

/** Does a listen address keep the API on this machine (127.0.0.0/8, ::1, localhost)? */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare.toLowerCase() === 'localhost') return true;
  const ip = normalizeIp(bare);
  return ip !== undefined && (ip.startsWith('127.') || ip === '::1');
}

function tlsFields(tls: TlsFiles): Record<string, string> {
  return { subject: tls.subject, validTo: tls.validTo, fingerprint256: tls.fingerprint256 };
}

export const controlServeCommand: Command = {
  path: ['control', 'serve'],
  summary: 'Run the control API server',
  usage,
  options: {
    db: { type: 'string' },
    'database-url': { type: 'string' },
    port: { type: 'string' },
    host: { type: 'string' },
    key: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    attestation: { type: 'string' },
    'require-attested': { type: 'boolean' },
  },
  async run(args, io) {
    const databaseUrl = stringOption(args, 'database-url') ?? process.env.BULKHEAD_DATABASE_URL;
    const db = stringOption(args, 'db');
    if (databaseUrl && db) throw new UsageError('give --db or --database-url, not both');
    const port = parsePort(stringOption(args, 'port') ?? process.env.PORT, 8080);
    const host = stringOption(args, 'host') ?? '127.0.0.1';
    if (host === '') throw new UsageError('--host: give an address (0.0.0.0 for every interface)');
    const tlsCertOption = stringOption(args, 'tls-cert');
    const tlsKeyOption = stringOption(args, 'tls-key');
    if ((tlsCertOption === undefined) !== (tlsKeyOption === undefined))
      throw new UsageError('--tls-cert and --tls-key go together: give both (PEM files) or neither');
    const tlsCertFile = tlsCertOption === undefined ? undefined : resolve(tlsCertOption);
    const tlsKeyFile = tlsKeyOption === undefined ? undefined : resolve(tlsKeyOption);
    // Read before anything is opened: a bad certificate stops the start with its own message.
    let tls = tlsCertFile && tlsKeyFile ? loadTlsFiles(tlsCertFile, tlsKeyFile) : undefined;
    const attestationFile = stringOption(args, 'attestation');
    if (args.values['require-attested'] && !attestationFile)
      throw new UsageError('--require-attested needs --attestation FILE (what to verify identities against)');
    let attestation: AttestationConfig | undefined;
    try {
      attestation = attestationFile ? loadAttestationConfig(resolve(attestationFile)) : undefined;
      if (attestation && args.values['require-attested']) attestation.require = true;
      // Each verifier checks its settings (https issuers, tenants) now, not at the first proof.
      if (attestation) verifiersFor(attestation);
    } catch (error) {
      if (error instanceof AttestationConfigError) throw new UsageError(error.message);
      throw new UsageError(`--attestation: ${(error as Error).message}`);
    }
    const keyFile = resolve(stringOption(args, 'key') ?? './bulkhead-signing.pem');
    const key = loadOrCreateSigningKey(keyFile);
    // Connection errors are logged by the server once per outage; this only sees the pool's.
    let lastPoolErrorMs = 0;
    const store = await openStore({
      databaseUrl,
      db: db ?? './bulkhead.db',
      lazy: true,
      onError: (error) => {
        if (Date.now() - lastPoolErrorMs < 10_000) return;
        lastPoolErrorMs = Date.now();
        io.err(`bulkhead control: database connection: ${error.message}`);
      },
    });
    let server: Awaited<ReturnType<typeof startControlServer>>;
    try {
      server = await startControlServer({
        store,
        signingKey: key,
        logger: true,
        port,
        host,
        tls: tls && { cert: tls.cert, key: tls.key },
        attestation,
      });
    } catch (error) {
      await store.close();
      throw error;
    }
    const log = server.app.log;
    if (key.created) log.info({ keyFile, keyId: key.keyId }, 'generated a new signing key (mode 0600)');
    log.info(
      {
        url: server.url,
        engine: store.engine,
        keyId: key.keyId,
        ...(databaseUrl ? {} : { db: resolve(db ?? './bulkhead.db') }),
        ...(tls ? { tls: tlsFields(tls) } : {}),
        ...(attestation
          ? {
              attestation: {
                audience: attestation.audience,
                clouds: (['aws', 'gcp', 'azure'] as const).filter((cloud) => attestation?.[cloud]),
                required: attestation.require === true,
              },
            }
          : {}),
      },
      `control API listening on ${server.url}`,
    );
    if (!isLoopbackHost(host) && !tls) {
      log.warn(
        { host },
        `listening on ${host} over plain HTTP: bearer tokens travel in clear text unless a TLS-terminating ` +
          'proxy or load balancer is in front (or give --tls-cert and --tls-key)',
      );
    }
    if (tls && Date.parse(tls.validTo) < Date.now())
      log.warn({ tls: tlsFields(tls) }, 'the TLS certificate has expired: clients will refuse it');
    // SIGHUP: the certificate and key files again (rotation). A bad pair is logged and the old one kept;
    // connections already open keep theirs, new handshakes get the new one.
    const onHup = () => {
      if (!tlsCertFile || !tlsKeyFile) return;
      try {
        const next = loadTlsFiles(tlsCertFile, tlsKeyFile);
        (server.app.server as unknown as TlsServer).setSecureContext({ cert: next.cert, key: next.key });
        tls = next;
        log.info({ tls: tlsFields(next) }, 'SIGHUP: reloaded the TLS certificate');
      } catch (error) {
        log.error(
          { reason: (error as Error).message },
          'SIGHUP: could not reload the TLS certificate; still serving the previous one',
        );
      }
    };
    // Without TLS SIGHUP keeps its default (ends the process), as before.
    if (tls) process.on('SIGHUP', onHup);
    await new Promise<void>((done) => {
      const stop = (signal: string) => {
        log.info({ signal }, 'shutting down');
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
        process.off('SIGHUP', onHup);
        server
          .close()
          .then(() => store.close())
          .then(done, (error: Error) => {
            io.err(`bulkhead control: shutdown: ${error.message}`);
            done();
          });
      };
      const onInt = () => stop('SIGINT');
      const onTerm = () => stop('SIGTERM');
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
    });
    return EXIT_OK;
  },
};
