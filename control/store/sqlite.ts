// SQLite engine (better-sqlite3, WAL): the embedded default. One process owns the file;
// revision announcements are in-process only.
import { closeSync, openSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { sqliteMigrations } from './migrations.js';
import { countAnomalies, insertResult, SandboxFold } from './sandbox-progress.js';
import { buildDenyQuery, type Dialect, sqliteDialect } from './sql.js';
import { denyValues, INSERT_DENY_SQL, SANDBOX_HIGH_MARK_SQL, UPSERT_SANDBOX_SQL } from './sqlite-columns.js';
import { classifySqliteCode, storeUnavailable, translateSqliteError } from './sqlite-errors.js';
import { WalSpaceGuard } from './sqlite-wal.js';
import { DenyWriter } from './sqlite-writer-thread.js';
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
  buildMatchCount,
  buildScopeCounts,
  buildScopesOfGroup,
  buildWorkloadPage,
  KEY_ORDER_ABOVE,
  nameColumn,
  namedScopes,
  type PagePlan,
  type ScopeCountRecord,
  toScopeCount,
  toWorkloadRow,
  type WorkloadPageRecord,
} from './workload-sql.js';

interface RevisionRecord {
  revision: number;
  created_at: string;
  sources: string;
  restored_from: number | null;
  summary: string;
}

function toRevision(row: RevisionRecord): RevisionRow {
  return {
    revision: row.revision,
    createdAt: row.created_at,
    sources: JSON.parse(row.sources),
    restoredFrom: row.restored_from,
    summary: JSON.parse(row.summary),
  };
}

const INSERT_SLICE = 1000;

/**
 * How often the writer thread copies committed WAL frames into the database file when it is not
 * busy with batches. A checkpoint writes the database file and fsyncs it; on the event loop that
 * stalled every commit that crossed the threshold (the largest single cost of ingestion).
 */
const CHECKPOINT_INTERVAL_MS = 200;
/**
 * Backstop for the automatic checkpoint of both connections (pages, ~200 MiB of WAL): the writer
 * thread's own checkpoints keep the WAL far shorter, so this only fires if that thread is gone.
 */
const WRITER_AUTOCHECKPOINT_PAGES = 50_000;
/**
 * Under sustained ingestion the writer thread also checkpoints after every this many rows (~12 MiB
 * of WAL), between slices and outside the gate (sqlite-writer-thread.ts), so main-connection
 * writes never wait for a checkpoint's fsync. It is the only checkpointer: a second one makes PASSIVE checkpoints give up,
 * and a WAL restarts from its beginning only after a complete checkpoint.
 */
const DENY_WRITER_CHECKPOINT_ROWS = 16_000;
/** A WAL that grew in a burst is truncated back to this many bytes when it restarts. */
const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

/** After a space error, how often a checkpoint is tried before deny writes resume (sqlite-wal.ts). */
const SPACE_RECOVERY_INTERVAL_MS = 1000;

/**
 * The database holds token hashes and forensic records: a new file is created 0600 before SQLite
 * opens it (SQLite gives its -wal and -shm files the database file's mode). An existing file keeps
 * the mode it has: the operator may have chosen one (say 0640 for a backup group), so it is not
 * changed behind their back, but a world-readable one is reported.
 */
function createPrivately(file: string): void {
  if (file === '' || file === ':memory:' || file.startsWith('file:')) return;
  try {
    closeSync(openSync(file, 'wx', 0o600));
    return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return; // SQLite reports it as it always has
  }
  try {
    const mode = statSync(file).mode & 0o777;
    if ((mode & 0o007) !== 0) {
      process.emitWarning(
        `bulkhead: the database ${file} is readable by every user (mode ${mode.toString(8).padStart(4, '0')}); ` +
          'it holds token hashes and deny records: chmod 600 it (and its -wal, -shm files)',
      );
    }
  } catch {
    // Raced with a removal: SQLite creates it.
  }
}

export interface SqliteStoreOptions {
  /**
   * false: deny batches are written on the store's own connection, as when the writer thread
   * cannot start or has died (tests run both paths). Default true (ignored for `:memory:`).
   */
  writerThread?: boolean;
}

export class SqliteStore implements ControlStore {
  readonly engine = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly dialect: Dialect = sqliteDialect;
  private readonly revisionListeners = new Set<(revision: number) => void>();
  private readonly insertDeny: Database.Statement;
  private readonly upsertSandbox: Database.Statement;
  private readonly sandboxHighMark: Database.Statement;
  private readonly upsertWorkload: Database.Statement;
  private readonly rememberScope: Database.Statement;
  private readonly addHit: Database.Statement;
  private readonly insertDenyBatch: Database.Transaction<
    (rows: DenyRow[]) => { stored: number; duplicate: number; seqAnomalies: number }
  >;
  private readonly denyWriter: DenyWriter | undefined;
  /** Disk-full recovery of the in-thread deny path (the writer thread has its own). */
  private readonly space: WalSpaceGuard;

  constructor(file: string, options: SqliteStoreOptions = {}) {
    createPrivately(file);
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // NORMAL is durable across process crashes in WAL mode; only an OS crash can lose the last commits.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    // 64 MiB page cache: the deny table's indexes stay in memory while batches stream in.
    this.db.pragma('cache_size = -65536');
    this.db.pragma('foreign_keys = ON');
    this.runMigrations();
    this.space = new WalSpaceGuard(this.db, this.db.name, SPACE_RECOVERY_INTERVAL_MS, (message) =>
      process.emitWarning(`bulkhead: ${message}`),
    );
    this.denyWriter = this.db.memory || options.writerThread === false ? undefined : this.startDenyWriter();
    this.insertDeny = this.db.prepare(INSERT_DENY_SQL);
    this.upsertSandbox = this.db.prepare(UPSERT_SANDBOX_SQL);
    this.sandboxHighMark = this.db.prepare(SANDBOX_HIGH_MARK_SQL).pluck();
    this.addHit = this.db.prepare(
      `INSERT INTO rule_hits (day, revision, rule, hits) VALUES (?, ?, ?, ?)
       ON CONFLICT (day, revision, rule) DO UPDATE SET hits = hits + excluded.hits`,
    );
    this.upsertWorkload = this.db.prepare(
      `INSERT INTO workloads (key, identity, name, first_seen, last_seen, revision, scope) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET last_seen = excluded.last_seen, revision = excluded.revision,
         scope = excluded.scope, identity = excluded.identity, name = excluded.name`,
    );
    this.rememberScope = this.db.prepare(
      'INSERT INTO workload_scopes (scope, groups) VALUES (?, ?) ON CONFLICT (scope) DO NOTHING',
    );
    this.insertDenyBatch = this.db.transaction((rows: DenyRow[]) => {
      let stored = 0;
      const fold = new SandboxFold();
      for (const row of rows) {
        // Positional parameters: binding by name costs a property lookup per column per row.
        if (this.insertDeny.run(denyValues(row)).changes !== 1) continue;
        stored++;
        if (row.sandboxId !== null && row.seq !== null) fold.add(row.sandboxId, row.workloadKey, row.seq);
      }
      const now = new Date().toISOString();
      const progress = fold.progress((id) => this.sandboxHighMark.get(id) as number | undefined);
      for (const p of progress)
        this.upsertSandbox.run(p.id, p.workload, p.maxSeq, p.received, p.anomalies, now);
      return { stored, duplicate: rows.length - stored, seqAnomalies: countAnomalies(progress) };
    });
  }

  private startDenyWriter(): DenyWriter | undefined {
    // Checkpoints (the only fsync with synchronous=NORMAL) run on the writer thread, off the event loop.
    this.db.pragma(`wal_autocheckpoint = ${WRITER_AUTOCHECKPOINT_PAGES}`);
    this.db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    const inThread = () => {
      // Without the thread, batches go through the in-thread path and this connection checkpoints.
      if (this.db.open) this.db.pragma('wal_autocheckpoint = 4000');
    };
    try {
      return new DenyWriter(
        this.db.name,
        {
          autocheckpointPages: WRITER_AUTOCHECKPOINT_PAGES,
          walSizeLimit: WAL_SIZE_LIMIT_BYTES,
          checkpointRows: DENY_WRITER_CHECKPOINT_ROWS,
          checkpointIntervalMs: CHECKPOINT_INTERVAL_MS,
          recoveryIntervalMs: SPACE_RECOVERY_INTERVAL_MS,
          slice: INSERT_SLICE,
        },
        (message) => {
          process.emitWarning(`bulkhead: deny writer thread: ${message}`);
          inThread();
        },
        (notice) => process.emitWarning(`bulkhead: deny writer thread: ${notice}`),
      );
    } catch (error) {
      process.emitWarning(`bulkhead: deny writer thread not started: ${(error as Error).message}`);
      inThread();
      return undefined;
    }
  }

  /** True while deny batches are written by the writer thread (false: on this connection). */
  get writerThreadAlive(): boolean {
    return this.denyWriter?.alive ?? false;
  }

  /**
   * Write transactions on this connection go through here, so the deny writer thread lets them
   * in; a full disk or a held lock comes out as a StoreUnavailableError (507 / 503).
   */
  private write<T>(transaction: () => T): T {
    try {
      return this.denyWriter?.alive ? this.denyWriter.exclusive(transaction) : transaction();
    } catch (error) {
      if (!this.denyWriter?.alive) this.space.noteError(error);
      throw translateSqliteError(error, this.db.name);
    }
  }

  private runMigrations(): void {
    this.db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
    );
    const applied = new Set(
      (this.db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map(
        (r) => r.version,
      ),
    );
    for (const migration of sqliteMigrations) {
      if (applied.has(migration.version)) continue;
      this.db
        .transaction(() => {
          this.db.exec(migration.sql);
          this.db
            .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
            .run(migration.version, migration.name, new Date().toISOString());
        })
        .immediate();
    }
  }

  async migrate(): Promise<void> {
    this.write(() => this.runMigrations());
  }

  async schemaVersion(): Promise<number> {
    const row = this.db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as {
      v: number | null;
    };
    return row.v ?? 0;
  }

  async createToken(token: TokenRow): Promise<void> {
    this.write(() =>
      this.db
        .prepare(`INSERT INTO tokens (${TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(...tokenValues(token)),
    );
  }

  async findToken(id: string): Promise<TokenRow | undefined> {
    const row = this.db.prepare(`SELECT ${TOKEN_COLUMNS} FROM tokens WHERE id = ?`).get(id) as
      | TokenRecord
      | undefined;
    return row && tokenFromRecord(row);
  }

  async listTokens(options: { sessions: boolean; nowIso: string }): Promise<TokenListing[]> {
    const rows = this.db
      .prepare(
        `SELECT ${TOKEN_COLUMNS.replace(/(^|, )/g, '$1t.')},
           (SELECT count(*) FROM tokens s WHERE s.parent_id = t.id AND s.revoked_at IS NULL
              AND (s.expires_at IS NULL OR s.expires_at > @now)) AS sessions
         FROM tokens t ${options.sessions ? '' : 'WHERE t.parent_id IS NULL'}
         ORDER BY t.created_at DESC, t.id`,
      )
      .all({ now: options.nowIso }) as (TokenRecord & { sessions: number })[];
    return rows.map((row) => ({ ...tokenFromRecord(row), sessions: row.sessions }));
  }

  async revokeToken(id: string, atIso: string): Promise<number> {
    const revoke = this.db.transaction(() => {
      const { changes } = this.db
        .prepare('UPDATE tokens SET revoked_at = ? WHERE (id = ? OR parent_id = ?) AND revoked_at IS NULL')
        .run(atIso, id, id);
      if (changes > 0) this.db.prepare('INSERT INTO token_revocations (id, at) VALUES (?, ?)').run(id, atIso);
      return changes;
    });
    return this.write(() => revoke());
  }

  async tokenRevocations(afterSeq: number, limit: number): Promise<TokenRevocations> {
    const rows = this.db
      .prepare('SELECT seq, id FROM token_revocations WHERE seq > ? ORDER BY seq LIMIT ?')
      .all(afterSeq, limit) as { seq: number; id: string }[];
    return { seq: rows.at(-1)?.seq ?? afterSeq, ids: rows.map((row) => row.id) };
  }

  async touchTokens(uses: { id: string; atIso: string }[]): Promise<void> {
    if (uses.length === 0) return;
    const update = this.db.prepare(
      'UPDATE tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)',
    );
    const touch = this.db.transaction(() => {
      for (const use of uses) update.run(use.atIso, use.id, use.atIso);
    });
    this.write(() => touch());
  }

  async deleteExpiredSessions(beforeIso: string): Promise<number> {
    return this.write(
      () =>
        this.db.prepare('DELETE FROM tokens WHERE parent_id IS NOT NULL AND expires_at < ?').run(beforeIso)
          .changes,
    );
  }

  async latestRevision(): Promise<RevisionRow | undefined> {
    const row = this.db.prepare('SELECT * FROM revisions ORDER BY revision DESC LIMIT 1').get() as
      | RevisionRecord
      | undefined;
    return row && toRevision(row);
  }

  async getRevision(revision: number): Promise<RevisionRow | undefined> {
    const row = this.db.prepare('SELECT * FROM revisions WHERE revision = ?').get(revision) as
      | RevisionRecord
      | undefined;
    return row && toRevision(row);
  }

  async listRevisions(limit: number): Promise<Omit<RevisionRow, 'sources'>[]> {
    const rows = this.db
      .prepare(
        'SELECT revision, created_at, restored_from, summary FROM revisions ORDER BY revision DESC LIMIT ?',
      )
      .all(limit) as Omit<RevisionRecord, 'sources'>[];
    return rows.map((row) => ({
      revision: row.revision,
      createdAt: row.created_at,
      restoredFrom: row.restored_from,
      summary: JSON.parse(row.summary),
    }));
  }

  async appendRevision(revision: NewRevision): Promise<number> {
    const next = this.db.transaction(() => {
      const row = this.db.prepare('SELECT max(revision) AS n FROM revisions').get() as { n: number | null };
      const number = (row.n ?? 0) + 1;
      this.db
        .prepare(
          'INSERT INTO revisions (revision, created_at, sources, restored_from, summary) VALUES (?, ?, ?, ?, ?)',
        )
        .run(
          number,
          revision.createdAt,
          revision.sourcesJson ?? JSON.stringify(revision.sources),
          revision.restoredFrom,
          revision.summaryJson ?? JSON.stringify(revision.summary ?? null),
        );
      return number;
    });
    const number = this.write(() => next.immediate());
    for (const listener of this.revisionListeners) listener(number);
    return number;
  }

  onRevision(listener: (revision: number) => void): Unsubscribe {
    this.revisionListeners.add(listener);
    return () => this.revisionListeners.delete(listener);
  }

  async recordSightings(sightings: WorkloadSighting[]): Promise<void> {
    for (let start = 0; start < sightings.length; start += INSERT_SLICE) {
      if (start > 0) await new Promise((resolve) => setImmediate(resolve));
      const slice = this.db.transaction(() => {
        const batch = sightings.slice(start, start + INSERT_SLICE);
        for (const s of batch) {
          const name = nameColumn(s.identity);
          this.upsertWorkload.run(
            s.key,
            JSON.stringify(s.identity),
            name,
            s.seenAt,
            s.seenAt,
            s.revision,
            s.scope,
          );
        }
        for (const { scope, groups } of namedScopes(batch)) this.rememberScope.run(scope, groups);
      });
      this.write(() => slice.immediate());
    }
  }

  async addHits(rows: HitRow[]): Promise<void> {
    if (rows.length === 0) return;
    const add = this.db.transaction(() => {
      for (const row of rows) this.addHit.run(row.day, row.revision, row.rule, row.hits);
    });
    this.write(() => add.immediate());
  }

  async hitTotals(sinceDay: string): Promise<HitTotal[]> {
    return this.db
      .prepare(
        `SELECT revision, rule, sum(hits) AS hits, max(day) AS lastDay FROM rule_hits
         WHERE day >= ? GROUP BY revision, rule`,
      )
      .all(sinceDay) as HitTotal[];
  }

  async listWorkloadKeys(): Promise<string[]> {
    return this.db.prepare('SELECT key FROM workloads').pluck().all() as string[];
  }

  async listWorkloads(query: WorkloadQuery): Promise<WorkloadRow[]> {
    const plan = this.pagePlan(query);
    if (plan === undefined) return [];
    const { sql, params } = buildWorkloadPage(query, this.dialect, plan);
    return (this.db.prepare(sql).all(...params) as WorkloadPageRecord[]).map(toWorkloadRow);
  }

  /** SQLite plans without statistics: a filter's matches are counted (up to a bound) to choose. */
  private pagePlan(query: WorkloadQuery): PagePlan | undefined {
    if (query.group !== undefined) {
      const { sql, params } = buildScopesOfGroup(query.group, this.dialect);
      const scopes = this.db
        .prepare(sql)
        .pluck()
        .all(...params) as string[];
      return scopes.length === 0 ? undefined : { scopes };
    }
    const count = buildMatchCount(query, this.dialect);
    if (count === undefined) return {};
    const matches = this.db
      .prepare(count.sql)
      .pluck()
      .get(...count.params) as number;
    return { keyOrder: matches > KEY_ORDER_ABOVE };
  }

  async scopeCounts(currentRevision: number): Promise<ScopeCount[]> {
    const { sql, params } = buildScopeCounts(currentRevision, this.dialect);
    return (this.db.prepare(sql).all(...params) as ScopeCountRecord[]).map(toScopeCount);
  }

  async insertDenies(rows: DenyRow[]): Promise<InsertDeniesResult> {
    if (rows.length === 0) return { stored: 0, duplicate: 0 };
    if (this.denyWriter?.alive) return this.denyWriter.insert(rows);
    // After a space error nothing is written until a checkpoint has made room (sqlite-wal.ts).
    const paused = this.space.ready();
    if (paused) {
      const failure = classifySqliteCode(paused.code, this.db.name);
      if (failure === undefined) throw Object.assign(new Error(paused.message), { code: paused.code });
      throw storeUnavailable(failure, paused.code ?? 'SQLITE_FULL');
    }
    const total = { stored: 0, duplicate: 0, seqAnomalies: 0 };
    // better-sqlite3 is synchronous: big batches go in slices of 1000, yielding between them, so parked
    // long-polls are answered promptly while reports stream in. Each slice is its own transaction;
    // idempotency by id makes a partly stored batch safe to resend.
    for (let start = 0; start < rows.length; start += INSERT_SLICE) {
      if (start > 0) await new Promise((resolve) => setImmediate(resolve));
      try {
        const result = this.insertDenyBatch.immediate(rows.slice(start, start + INSERT_SLICE));
        total.stored += result.stored;
        total.duplicate += result.duplicate;
        total.seqAnomalies += result.seqAnomalies;
      } catch (error) {
        this.space.noteError(error);
        // Nothing of the batch is acknowledged; what earlier slices committed counts as duplicate on resend.
        const detail =
          total.stored > 0
            ? ` (${total.stored} of the batch's ${rows.length} records were stored before the failure; resend the batch)`
            : '';
        throw translateSqliteError(error, this.db.name, detail);
      }
    }
    return insertResult(total.stored, total.duplicate, total.seqAnomalies);
  }

  async queryDenies(filter: DenyFilter): Promise<StoredDeny[]> {
    const { sql, params } = buildDenyQuery(filter, this.dialect);
    return this.db.prepare(sql).all(...params) as StoredDeny[];
  }

  async rememberSigningKey(key: SigningKeyRow): Promise<void> {
    this.write(() =>
      this.db
        .prepare(
          'INSERT INTO signing_keys (key_id, public_key, first_used) VALUES (?, ?, ?) ON CONFLICT (key_id) DO NOTHING',
        )
        .run(key.keyId, key.publicKeyPem, key.firstUsed),
    );
  }

  async listSigningKeys(): Promise<SigningKeyRow[]> {
    const rows = this.db
      .prepare('SELECT key_id, public_key, first_used FROM signing_keys ORDER BY first_used')
      .all() as { key_id: string; public_key: string; first_used: string }[];
    return rows.map((r) => ({ keyId: r.key_id, publicKeyPem: r.public_key, firstUsed: r.first_used }));
  }

  async metrics(currentRevision = 0): Promise<MetricsSnapshot> {
    const row = this.db
      .prepare(
        `SELECT (SELECT count(*) FROM workloads) AS workloads,
           (SELECT count(*) FROM workloads WHERE revision >= @current) AS current,
           (SELECT coalesce(sum(max(max_seq - received, 0)), 0) FROM sandboxes) AS missing,
           (SELECT coalesce(sum(seq_anomalies), 0) FROM sandboxes) AS anomalies,
           (SELECT count(*) FROM denies) AS denies`,
      )
      .get({ current: currentRevision }) as {
      workloads: number;
      current: number;
      missing: number;
      anomalies: number;
      denies: number;
    };
    return {
      workloads: row.workloads,
      workloadsCurrent: row.current,
      missingRecords: row.missing,
      seqAnomalies: row.anomalies,
      denies: row.denies,
    };
  }

  async close(): Promise<void> {
    this.revisionListeners.clear();
    // The writer thread closes first, so this connection's close checkpoints and removes the WAL.
    await this.denyWriter?.close();
    if (this.db.open) this.db.close();
  }
}

export function openSqliteStore(file: string, options?: SqliteStoreOptions): SqliteStore {
  return new SqliteStore(file, options);
}
