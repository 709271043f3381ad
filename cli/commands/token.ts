// bulkhead token create: mint an API token straight into the store.
import { issueToken, isTokenScope } from '../../control/auth.js';
import { openStore } from '../../control/store/index.js';
import { type Command, EXIT_OK, requireOption, stringOption, UsageError } from '../command.js';

const usage = `Usage: bulkhead token create --scope admin|workload [--name TEXT] [--db FILE | --database-url URL] [--json]

Creates a token and prints it once (only its hash is stored). Give it to clients through BULKHEAD_TOKEN.
  admin     apply policy, query denies and workloads, metrics
  workload  fetch bundles and send deny reports (what the shim, extension and wrappers use)`;

export const tokenCreateCommand: Command = {
  path: ['token', 'create'],
  summary: 'Create an admin or workload API token',
  usage,
  options: {
    scope: { type: 'string' },
    name: { type: 'string' },
    db: { type: 'string' },
    'database-url': { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const scope = requireOption(args, 'scope');
    if (!isTokenScope(scope)) throw new UsageError(`--scope: expected admin or workload, got ${scope}`);
    const databaseUrl = stringOption(args, 'database-url') ?? process.env.BULKHEAD_DATABASE_URL;
    const db = stringOption(args, 'db');
    if (databaseUrl && db) throw new UsageError('give --db or --database-url, not both');
    const store = await openStore({ databaseUrl, db: db ?? './bulkhead.db' });
    try {
      const issued = await issueToken(store, scope, stringOption(args, 'name'));
      if (args.values.json)
        io.out(JSON.stringify({ id: issued.id, scope: issued.scope, token: issued.token }));
      else {
        io.out(issued.token);
        io.err(`created ${scope} token ${issued.id} (shown once; store it as a secret)`);
      }
    } finally {
      await store.close();
    }
    return EXIT_OK;
  },
};
