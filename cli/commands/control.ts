// bulkhead control serve: run the control API.
import { resolve } from 'node:path';
import { startControlServer } from '../../control/server.js';
import { loadOrCreateSigningKey } from '../../control/signing-key.js';
import { openStore } from '../../control/store/index.js';
import { type Command, EXIT_OK, stringOption, UsageError } from '../command.js';

const usage = `Usage: bulkhead control serve [--db FILE | --database-url URL] [--port N] [--host ADDR] [--key FILE]

Runs the control API: policy apply, signed bundles per workload, deny-record ingestion and queries.

  --db FILE            SQLite database (default ./bulkhead.db)
  --database-url URL   PostgreSQL instead of SQLite (several replicas may share it); also BULKHEAD_DATABASE_URL
  --port N             listen port (default: $PORT, else 8080)
  --host ADDR          listen address (default 0.0.0.0)
  --key FILE           Ed25519 signing key, mode 0600 (default ./bulkhead-signing.pem); generated when absent

With PostgreSQL it starts while the database is down: /healthz answers 503 until it arrives.
Logs are JSON lines on stdout (BULKHEAD_LOG_LEVEL, default info). SIGINT/SIGTERM stop it cleanly.`;

export function parsePort(text: string | undefined, fallback: number): number {
  if (text === undefined || text === '') return fallback;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new UsageError(`not a port: ${text}`);
  return Number(text);
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
  },
  async run(args, io) {
    const databaseUrl = stringOption(args, 'database-url') ?? process.env.BULKHEAD_DATABASE_URL;
    const db = stringOption(args, 'db');
    if (databaseUrl && db) throw new UsageError('give --db or --database-url, not both');
    const port = parsePort(stringOption(args, 'port') ?? process.env.PORT, 8080);
    const host = stringOption(args, 'host') ?? '0.0.0.0';
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
      server = await startControlServer({ store, signingKey: key, logger: true, port, host });
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
      },
      'control API listening',
    );
    await new Promise<void>((done) => {
      const stop = (signal: string) => {
        log.info({ signal }, 'shutting down');
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
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
