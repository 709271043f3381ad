// PostgreSQL engine: any number of control API replicas share one database. A revision
// stored by any replica is announced to all of them with NOTIFY on one channel.
//
// The database may go away at any moment (killed, restarted, fast-stopped, a backend
// OOM-killed). Nothing here may then take the process down: every connection carries an error
// listener, every failure to reach the database becomes a StoreUnavailableError (answered 503
// with Retry-After), and the LISTEN connection is re-established for as long as the store is
// open, each time followed by a read of the head revision so that nothing stored meanwhile is
// missed. The server's periodic head check (`headRevision`) is the backstop.
import pg from 'pg';
import { StoreUnavailableError } from './errors.js';
import { postgresMigrations } from './migrations.js';
import { countAnomalies, insertResult, SandboxFold } from './sandbox-progress.js';
import { buildDenyQuery, postgresDialect } from './sql.js';
import { TOKEN_COLUMNS, type TokenRecord, tokenFromRecord, tokenValues } from './token-rows.js';
import type {
  ControlStore,
  DenyFilter,
  DenyRow,
  HitRow,
  HitTotal,
  InsertDeniesResult,
  MetricsSnapshot,
  NewRevision,
  RevisionRow,
  ScopeCount,
  SigningKeyRow,
  StoredDeny,
  TokenListing,
  TokenRevocations,
  TokenRow,
  Unsubscribe,
  WorkloadQuery,
  WorkloadRow,
  WorkloadSighting,
} from './types.js';
import {
  buildScopeCounts,
  buildScopesOfGroup,
  buildWorkloadPage,
  nameColumn,
  namedScopes,
  type ScopeCountRecord,
  toScopeCount,
  toWorkloadRow,
  type WorkloadPageRecord,
} from './workload-sql.js';

const REVISION_CHANNEL = 'bulkhead_revision';
// Arbitrary constants naming the advisory locks that serialise migrations and revision numbering.
const MIGRATION_LOCK = 0x6275_6c6b;
const REVISION_LOCK = 0x6275_6c6c;

interface RevisionRecord {
  revision: string;
  created_at: string;
  sources: string;
  restored_from: string | null;
  summary: string;
}

function toRevision(row: RevisionRecord): RevisionRow {
  return {
    revision: Number(row.revision),
    createdAt: row.created_at,
    sources: JSON.parse(row.sources),
    restoredFrom: row.restored_from === null ? null : Number(row.restored_from),
    summary: JSON.parse(row.summary),
  };
}

export interface PostgresStoreOptions {
  connectionString: string;
  /** Pool size per replica. */
  maxConnections?: number;
  /** Called with connection-level errors (logged by the caller; none of them is fatal). */
  onError?: (error: Error) => void;
}

/** Longest wait for a pooled connection: a request must not hang on a database that is away. */
const CONNECT_TIMEOUT_MS = 2000;
/** Re-LISTEN backoff after the connection is lost: first try, then doubling up to the cap. */
const LISTEN_RETRY_FIRST_MS = 100;
const LISTEN_RETRY_MAX_MS = 1000;

/**
 * SQLSTATE classes and codes that mean "the database is not there right now", as opposed to a
 * bug in a statement: connection exceptions (08), operator intervention (57: admin or crash
 * shutdown, cannot connect now), insufficient resources (53), and a lock timeout / deadlock /
 * serialization failure that a retry resolves (40001, 40P01, 55P03).
 */
function isTransient(error: unknown): boolean {
  if (error instanceof StoreUnavailableError) return true;
  const failure = error as { code?: unknown; message?: unknown };
  const code = typeof failure.code === 'string' ? failure.code : '';
  if (/^(08|53|57)/.test(code) || code === '40001' || code === '40P01' || code === '55P03') return true;
  // Socket-level errors from node (ECONNREFUSED, ECONNRESET, EPIPE, ETIMEDOUT, EHOSTUNREACH, ...).
  if (/^E[A-Z]+$/.test(code)) return true;
  const message = typeof failure.message === 'string' ? failure.message : '';
  return /Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect|Client was closed|Cannot use a pool after calling end/i.test(
    message,
  );
}

/** Rethrows a database outage as StoreUnavailableError; anything else unchanged. */
function unavailable(error: unknown): never {
  if (error instanceof StoreUnavailableError) throw error;
  if (isTransient(error)) {
    const reason = (error as Error).message || String(error);
    throw new StoreUnavailableError(
      'unavailable',
      `the database is unreachable (${reason}); retry shortly`,
      1,
      {
        cause: error,
      },
    );
  }
  throw error;
}

export class PostgresStore implements ControlStore {
  readonly engine = 'postgres' as const;
  private readonly pool: pg.Pool;
  private listener: pg.Client | undefined;
  private listening: Promise<void> | undefined;
  private readonly revisionListeners = new Set<(revision: number) => void>();
  private highestAnnounced = 0;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = LISTEN_RETRY_FIRST_MS;

  constructor(private readonly options: PostgresStoreOptions) {
    this.pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    });
    // Idle pooled clients report a lost connection here; checked-out ones in `transaction`.
    this.pool.on('error', (error) => options.onError?.(error));
    // And every client has a listener of its own from birth: a connection's "ready" and a 57P01
    // can arrive in one read, so pg-pool hands the client out and emits 'error' before the
    // taker could attach anything (an unhandled 'error' ends the process). The failed client's
    // next query rejects, and `transaction` destroys it.
    this.pool.on('connect', (client) => {
      client.on('error', () => {});
    });
  }

  /** Migrates and connects the LISTEN client; `openPostgresStore` calls it and fails if the database is away. */
  async start(): Promise<void> {
    await this.migrate();
    this.keepListening();
    await this.listening;
  }

  /**
   * Keeps one LISTEN connection for as long as the store is open: started by `start` or the
   * first `onRevision`, re-established after every loss with backoff.
   */
  private keepListening(): void {
    if (this.closed || this.listener || this.listening) return;
    const attempt = this.listen();
    this.listening = attempt;
    attempt.then(
      () => {
        this.listening = undefined;
        this.retryDelayMs = LISTEN_RETRY_FIRST_MS;
      },
      (error: Error) => {
        this.listening = undefined;
        this.options.onError?.(error);
        this.retryListen();
      },
    );
  }

  private retryListen(): void {
    if (this.closed || this.retryTimer) return;
    const delay = this.retryDelayMs;
    this.retryDelayMs = Math.min(LISTEN_RETRY_MAX_MS, this.retryDelayMs * 2);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.keepListening();
    }, delay);
    this.retryTimer.unref();
  }

  private async listen(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.options.connectionString,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      keepAlive: true,
    });
    let lost = false;
    const onLost = (error?: Error) => {
      if (lost) return;
      lost = true;
      if (error) this.options.onError?.(error);
      if (this.listener === client) this.listener = undefined;
      client.end().catch(() => {});
      this.retryListen();
    };
    client.on('notification', (message) => {
      if (message.channel !== REVISION_CHANNEL || message.payload === undefined) return;
      const revision = Number(message.payload);
      if (Number.isSafeInteger(revision)) this.announce(revision);
    });
    client.on('error', (error) => onLost(error));
    client.on('end', () => onLost());
    try {
      await client.connect();
      await client.query(`LISTEN ${REVISION_CHANNEL}`);
      if (this.closed) {
        await client.end();
        return;
      }
      if (lost) throw new Error('LISTEN connection lost while connecting');
      this.listener = client;
      // A revision stored while we were not listening would otherwise go unannounced.
      const latest = await this.headRevision();
      if (latest > 0) this.announce(latest);
    } catch (error) {
      // onLost has already scheduled the retry when the connection dropped; make sure it is closed.
      lost = true;
      if (this.listener === client) this.listener = undefined;
      client.end().catch(() => {});
      throw error;
    }
  }

  private announce(revision: number): void {
    if (revision <= this.highestAnnounced) return;
    this.highestAnnounced = revision;
    for (const listener of this.revisionListeners) listener(revision);
  }

  /** `pool.query`, with a database outage turned into StoreUnavailableError. */
  private async query<R extends pg.QueryResultRow>(
    sql: string,
    params?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(sql, params);
    } catch (error) {
      return unavailable(error);
    }
  }

  /**
   * Runs `work` in a transaction on one pooled client. A checked-out client has no pool error
   * listener: without ours, a connection lost between two statements is an unhandled 'error'
   * event, which ends the process. A client that failed is destroyed, not returned to the pool.
   */
  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      return unavailable(error);
    }
    let broken: Error | undefined;
    const onError = (error: Error) => {
      broken = error;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      if (!broken) await client.query('ROLLBACK').catch(() => {});
      broken ??= isTransient(error) ? (error as Error) : undefined;
      return unavailable(error);
    } finally {
      client.removeListener('error', onError);
      client.release(broken);
    }
  }

  async migrate(): Promise<void> {
    await this.transaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query(
        'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
      );
      const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
      const applied = new Set(rows.map((r) => r.version));
      for (const migration of postgresMigrations) {
        if (applied.has(migration.version)) continue;
        await client.query(migration.sql);
        await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
          migration.version,
          migration.name,
          new Date().toISOString(),
        ]);
      }
    });
  }

  async schemaVersion(): Promise<number> {
    const { rows } = await this.query<{ v: number | null }>(
      'SELECT max(version) AS v FROM schema_migrations',
    );
    return rows[0]?.v ?? 0;
  }

  async createToken(token: TokenRow): Promise<void> {
    await this.query(
      `INSERT INTO tokens (${TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
      tokenValues(token),
    );
  }

  async findToken(id: string): Promise<TokenRow | undefined> {
    const { rows } = await this.query<TokenRecord>(`SELECT ${TOKEN_COLUMNS} FROM tokens WHERE id = $1`, [id]);
    return rows[0] && tokenFromRecord(rows[0]);
  }

  async listTokens(options: { sessions: boolean; nowIso: string }): Promise<TokenListing[]> {
    const { rows } = await this.query<TokenRecord & { sessions: string }>(
      `SELECT ${TOKEN_COLUMNS.replace(/(^|, )/g, '$1t.')},
         (SELECT count(*) FROM tokens s WHERE s.parent_id = t.id AND s.revoked_at IS NULL
            AND (s.expires_at IS NULL OR s.expires_at > $1)) AS sessions
       FROM tokens t ${options.sessions ? '' : 'WHERE t.parent_id IS NULL'}
       ORDER BY t.created_at DESC, t.id`,
      [options.nowIso],
    );
    return rows.map((row) => ({ ...tokenFromRecord(row), sessions: Number(row.sessions) }));
  }

  async revokeToken(id: string, atIso: string): Promise<number> {
    return this.transaction(async (client) => {
      const { rowCount } = await client.query(
        'UPDATE tokens SET revoked_at = $1 WHERE (id = $2 OR parent_id = $2) AND revoked_at IS NULL',
        [atIso, id],
      );
      const changes = rowCount ?? 0;
      if (changes > 0)
        await client.query('INSERT INTO token_revocations (id, at) VALUES ($1, $2)', [id, atIso]);
      return changes;
    });
  }

  async tokenRevocations(afterSeq: number, limit: number): Promise<TokenRevocations> {
    const { rows } = await this.query<{ seq: string; id: string }>(
      'SELECT seq, id FROM token_revocations WHERE seq > $1 ORDER BY seq LIMIT $2',
      [afterSeq, limit],
    );
    const last = rows.at(-1);
    return { seq: last ? Number(last.seq) : afterSeq, ids: rows.map((row) => row.id) };
  }

  async touchTokens(uses: { id: string; atIso: string }[]): Promise<void> {
    if (uses.length === 0) return;
    await this.query(
      `UPDATE tokens SET last_used_at = u.at FROM unnest($1::text[], $2::text[]) AS u(id, at)
       WHERE tokens.id = u.id AND (tokens.last_used_at IS NULL OR tokens.last_used_at < u.at)`,
      [uses.map((use) => use.id), uses.map((use) => use.atIso)],
    );
  }

  async deleteExpiredSessions(beforeIso: string): Promise<number> {
    const { rowCount } = await this.query(
      'DELETE FROM tokens WHERE parent_id IS NOT NULL AND expires_at < $1',
      [beforeIso],
    );
    return rowCount ?? 0;
  }

  async headRevision(): Promise<number> {
    const { rows } = await this.query<{ n: string | null }>('SELECT max(revision) AS n FROM revisions');
    return Number(rows[0]?.n ?? 0);
  }

  async latestRevision(): Promise<RevisionRow | undefined> {
    const { rows } = await this.query<RevisionRecord>(
      'SELECT * FROM revisions ORDER BY revision DESC LIMIT 1',
    );
    return rows[0] && toRevision(rows[0]);
  }

  async getRevision(revision: number): Promise<RevisionRow | undefined> {
    const { rows } = await this.query<RevisionRecord>('SELECT * FROM revisions WHERE revision = $1', [
      revision,
    ]);
    return rows[0] && toRevision(rows[0]);
  }

  async listRevisions(limit: number): Promise<Omit<RevisionRow, 'sources'>[]> {
    const { rows } = await this.query<Omit<RevisionRecord, 'sources'>>(
      'SELECT revision, created_at, restored_from, summary FROM revisions ORDER BY revision DESC LIMIT $1',
      [limit],
    );
    return rows.map((row) => ({
      revision: Number(row.revision),
      createdAt: row.created_at,
      restoredFrom: row.restored_from === null ? null : Number(row.restored_from),
      summary: JSON.parse(row.summary),
    }));
  }

  async appendRevision(revision: NewRevision): Promise<number> {
    const number = await this.transaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1)', [REVISION_LOCK]);
      const { rows } = await client.query<{ n: string | null }>('SELECT max(revision) AS n FROM revisions');
      const next = Number(rows[0]?.n ?? 0) + 1;
      await client.query(
        'INSERT INTO revisions (revision, created_at, sources, restored_from, summary) VALUES ($1, $2, $3, $4, $5)',
        [
          next,
          revision.createdAt,
          revision.sourcesJson ?? JSON.stringify(revision.sources),
          revision.restoredFrom,
          revision.summaryJson ?? JSON.stringify(revision.summary ?? null),
        ],
      );
      // Delivered to every listening replica when (and only if) the transaction commits.
      await client.query('SELECT pg_notify($1, $2)', [REVISION_CHANNEL, String(next)]);
      return next;
    });
    this.announce(number);
    return number;
  }

  onRevision(listener: (revision: number) => void): Unsubscribe {
    this.revisionListeners.add(listener);
    this.keepListening();
    return () => this.revisionListeners.delete(listener);
  }

  async recordSightings(sightings: WorkloadSighting[]): Promise<void> {
    if (sightings.length === 0) return;
    // One statement: the scopes first (a CTE), then the workloads.
    const scopes = namedScopes(sightings);
    await this.query(
      `WITH named AS (
         INSERT INTO workload_scopes (scope, groups) SELECT * FROM unnest($7::text[], $8::text[])
         ON CONFLICT (scope) DO NOTHING
       )
       INSERT INTO workloads (key, identity, name, first_seen, last_seen, revision, scope)
       SELECT k, i, n, t, t, r, s
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[]) AS u(k, i, n, t, r, s)
       ON CONFLICT (key) DO UPDATE SET last_seen = excluded.last_seen, revision = excluded.revision,
         scope = excluded.scope, identity = excluded.identity, name = excluded.name`,
      [
        sightings.map((s) => s.key),
        sightings.map((s) => JSON.stringify(s.identity)),
        sightings.map((s) => nameColumn(s.identity)),
        sightings.map((s) => s.seenAt),
        sightings.map((s) => s.revision),
        sightings.map((s) => s.scope),
        scopes.map((s) => s.scope),
        scopes.map((s) => s.groups),
      ],
    );
  }

  async addHits(rows: HitRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.query(
      `INSERT INTO rule_hits (day, revision, rule, hits)
       SELECT d, r, u, h FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[]) AS x(d, r, u, h)
       ON CONFLICT (day, revision, rule) DO UPDATE SET hits = rule_hits.hits + excluded.hits`,
      [rows.map((r) => r.day), rows.map((r) => r.revision), rows.map((r) => r.rule), rows.map((r) => r.hits)],
    );
  }

  async hitTotals(sinceDay: string): Promise<HitTotal[]> {
    const { rows } = await this.query<{ revision: string; rule: string; hits: string; last_day: string }>(
      `SELECT revision, rule, sum(hits) AS hits, max(day) AS last_day FROM rule_hits
       WHERE day >= $1 GROUP BY revision, rule`,
      [sinceDay],
    );
    return rows.map((row) => ({
      revision: Number(row.revision),
      rule: row.rule,
      hits: Number(row.hits),
      lastDay: row.last_day,
    }));
  }

  async listWorkloadKeys(): Promise<string[]> {
    const { rows } = await this.query<{ key: string }>('SELECT key FROM workloads');
    return rows.map((row) => row.key);
  }

  async listWorkloads(query: WorkloadQuery): Promise<WorkloadRow[]> {
    // The planner weighs the filters by its statistics; only a group filter needs its scopes first.
    let scopes: string[] | undefined;
    if (query.group !== undefined) {
      const found = buildScopesOfGroup(query.group, postgresDialect);
      scopes = (await this.query<{ scope: string }>(found.sql, found.params)).rows.map((row) => row.scope);
      if (scopes.length === 0) return [];
    }
    const { sql, params } = buildWorkloadPage(query, postgresDialect, { scopes });
    const { rows } = await this.query<WorkloadPageRecord>(sql, params);
    return rows.map(toWorkloadRow);
  }

  async scopeCounts(currentRevision: number): Promise<ScopeCount[]> {
    const { sql, params } = buildScopeCounts(currentRevision, postgresDialect);
    const { rows } = await this.query<ScopeCountRecord>(sql, params);
    return rows.map(toScopeCount);
  }

  async insertDenies(rows: DenyRow[]): Promise<InsertDeniesResult> {
    if (rows.length === 0) return { stored: 0, duplicate: 0 };
    return this.transaction(async (client) => {
      const inserted = await client.query<{ id: string }>(
        `INSERT INTO denies (id, time, time_ms, workload, workload_name, invocation_id, origin_package,
           severity, groups, host, ip, port, kind, decision, mode, rule, revision, sandbox_id, seq, received_at,
           record)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
           $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::int[], $13::text[], $14::text[],
           $15::text[], $16::text[], $17::bigint[], $18::text[], $19::bigint[], $20::text[], $21::text[])
         ON CONFLICT (id) DO NOTHING RETURNING id`,
        [
          rows.map((r) => r.id),
          rows.map((r) => r.time),
          rows.map((r) => r.timeMs),
          rows.map((r) => r.workloadKey),
          rows.map((r) => r.workloadName),
          rows.map((r) => r.invocationId),
          rows.map((r) => r.originPackage),
          rows.map((r) => r.severity),
          rows.map((r) => r.groups),
          rows.map((r) => r.host),
          rows.map((r) => r.ip),
          rows.map((r) => r.port),
          rows.map((r) => r.kind),
          rows.map((r) => r.decision),
          rows.map((r) => r.mode),
          rows.map((r) => r.rule),
          rows.map((r) => r.revision),
          rows.map((r) => r.sandboxId),
          rows.map((r) => r.seq),
          rows.map((r) => r.receivedAt),
          rows.map((r) => r.record),
        ],
      );
      const storedIds = new Set(inserted.rows.map((r) => r.id));
      // A batch may repeat an id: only its first occurrence was stored.
      let stored = 0;
      const fold = new SandboxFold();
      for (const row of rows) {
        if (!storedIds.delete(row.id)) continue;
        stored++;
        if (row.sandboxId !== null && row.seq !== null) fold.add(row.sandboxId, row.workloadKey, row.seq);
      }
      const ids = fold.sandboxIds;
      if (ids.length === 0) return insertResult(stored, rows.length - stored, 0);
      // Locked, so that batches of one sandbox on two replicas judge their numbers one after the other.
      const known = await client.query<{ id: string; max_seq: string }>(
        'SELECT id, max_seq FROM sandboxes WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE',
        [ids],
      );
      const highMarks = new Map(known.rows.map((r) => [r.id, Number(r.max_seq)]));
      const progress = fold.progress((id) => highMarks.get(id));
      await client.query(
        `INSERT INTO sandboxes (id, workload, max_seq, received, seq_anomalies, last_seen)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[])
         ON CONFLICT (id) DO UPDATE SET max_seq = greatest(sandboxes.max_seq, excluded.max_seq),
           received = sandboxes.received + excluded.received,
           seq_anomalies = sandboxes.seq_anomalies + excluded.seq_anomalies, last_seen = excluded.last_seen`,
        [
          progress.map((p) => p.id),
          progress.map((p) => p.workload),
          progress.map((p) => p.maxSeq),
          progress.map((p) => p.received),
          progress.map((p) => p.anomalies),
          progress.map(() => new Date().toISOString()),
        ],
      );
      return insertResult(stored, rows.length - stored, countAnomalies(progress));
    });
  }

  async queryDenies(filter: DenyFilter): Promise<StoredDeny[]> {
    const { sql, params } = buildDenyQuery(filter, postgresDialect);
    const { rows } = await this.query<{ position: string; record: string }>(sql, params);
    return rows.map((row) => ({ position: Number(row.position), record: row.record }));
  }

  async rememberSigningKey(key: SigningKeyRow): Promise<void> {
    await this.query(
      'INSERT INTO signing_keys (key_id, public_key, first_used) VALUES ($1, $2, $3) ON CONFLICT (key_id) DO NOTHING',
      [key.keyId, key.publicKeyPem, key.firstUsed],
    );
  }

  async listSigningKeys(): Promise<SigningKeyRow[]> {
    const { rows } = await this.query<{ key_id: string; public_key: string; first_used: string }>(
      'SELECT key_id, public_key, first_used FROM signing_keys ORDER BY first_used',
    );
    return rows.map((r) => ({ keyId: r.key_id, publicKeyPem: r.public_key, firstUsed: r.first_used }));
  }

  async metrics(currentRevision = 0): Promise<MetricsSnapshot> {
    const { rows } = await this.query<{
      workloads: string;
      current: string;
      missing: string;
      anomalies: string;
      denies: string;
    }>(
      `SELECT (SELECT count(*) FROM workloads) AS workloads,
         (SELECT count(*) FROM workloads WHERE revision >= $1) AS current,
         (SELECT coalesce(sum(greatest(max_seq - received, 0)), 0) FROM sandboxes) AS missing,
         (SELECT coalesce(sum(seq_anomalies), 0) FROM sandboxes) AS anomalies,
         (SELECT count(*) FROM denies) AS denies`,
      [currentRevision],
    );
    const row = rows[0];
    return {
      workloads: Number(row?.workloads ?? 0),
      workloadsCurrent: Number(row?.current ?? 0),
      missingRecords: Number(row?.missing ?? 0),
      seqAnomalies: Number(row?.anomalies ?? 0),
      denies: Number(row?.denies ?? 0),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.revisionListeners.clear();
    const listener = this.listener;
    this.listener = undefined;
    await listener?.end().catch(() => {});
    await this.pool.end().catch(() => {});
  }
}

export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  const store = new PostgresStore(options);
  try {
    await store.start();
  } catch (error) {
    await store.close().catch(() => {});
    throw error;
  }
  return store;
}
