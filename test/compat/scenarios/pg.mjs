// pg (node-postgres): TCP to 127.0.0.1 and the Unix socket directory; simple and parameterised
// queries, a transaction, a pool.
import pg from 'pg';
import { cfg, runCases } from './lib.mjs';

async function withClient(config, fn) {
  const client = new pg.Client({ user: 'bulkhead', database: 'postgres', ...config });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const tcp = { host: '127.0.0.1', port: cfg.pgPort };
const unix = { host: cfg.pgSocketDir, port: cfg.pgPort };

const simple = (c) =>
  c.query('SELECT 1 AS one, $$text$$ AS t').then((r) => ({ rows: r.rows, command: r.command }));
const param = (c) =>
  c.query('SELECT $1::int + $2::int AS sum, $3::text AS s', [2, 3, 'x']).then((r) => ({ rows: r.rows }));

await runCases({
  'TCP simple query': () => withClient(tcp, simple),
  'TCP parameterised query': () => withClient(tcp, param),
  'TCP transaction': () =>
    withClient(tcp, async (c) => {
      const table = `compat_${process.pid}`;
      await c.query('BEGIN');
      await c.query(`CREATE TEMP TABLE ${table} (n int) ON COMMIT DROP`);
      await c.query(`INSERT INTO ${table} VALUES (1), (2), (3)`);
      const inside = await c.query(`SELECT sum(n)::int AS total FROM ${table}`);
      await c.query('ROLLBACK');
      const after = await c.query(`SELECT to_regclass('pg_temp.${table}') IS NULL AS gone`);
      return { inside: inside.rows, after: after.rows };
    }),
  'TCP connection string': () =>
    withClient({ connectionString: `postgres://bulkhead@127.0.0.1:${cfg.pgPort}/postgres` }, simple),
  'localhost name': () => withClient({ host: 'localhost', port: cfg.pgPort }, simple),
  'Unix socket simple query': () => withClient(unix, simple),
  'Unix socket parameterised query': () => withClient(unix, param),
  'pool over TCP': async () => {
    const pool = new pg.Pool({ ...tcp, user: 'bulkhead', database: 'postgres', max: 2 });
    try {
      const all = await Promise.all([1, 2, 3].map((n) => pool.query('SELECT $1::int * 10 AS v', [n])));
      return all.map((r) => r.rows[0]);
    } finally {
      await pool.end();
    }
  },
});
