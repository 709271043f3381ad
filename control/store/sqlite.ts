// SQLite engine (better-sqlite3, WAL): the embedded default. One process owns the file;
// revision announcements are in-process only.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { sqliteMigrations } from './migrations.js';
import { buildDenyQuery, type Dialect, sandboxProgress, sqliteDialect } from './sql.js';
import type {
  ControlStore,
  DenyFilter,
  DenyRow,
  InsertDeniesResult,
  MetricsSnapshot,
  NewRevision,
  RevisionRow,
  SigningKeyRow,
  StoredDeny,
  TokenRow,
  TokenScope,
  Unsubscribe,
  WorkloadRow,
  WorkloadSighting,
} from './types.js';

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
 * of WAL), between slices and outside the gate below, so main-connection writes never wait for a
 * checkpoint's fsync. It is the only checkpointer: a second one makes PASSIVE checkpoints give up,
 * and a WAL restarts from its beginning only after a complete checkpoint.
 */
const DENY_WRITER_CHECKPOINT_ROWS = 16_000;
/** A WAL that grew in a burst is truncated back to this many bytes when it restarts. */
const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

const INSERT_DENY_SQL = `INSERT INTO denies (id, time, time_ms, workload, groups, host, ip, port, kind, decision,
    mode, rule, revision, sandbox_id, seq, received_at, record)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (id) DO NOTHING`;
const UPSERT_SANDBOX_SQL = `INSERT INTO sandboxes (id, workload, max_seq, received, last_seen) VALUES (?, ?, ?, ?, ?)
  ON CONFLICT (id) DO UPDATE SET max_seq = max(max_seq, excluded.max_seq),
    received = received + excluded.received, last_seen = excluded.last_seen`;

/** Column values of a deny row in INSERT_DENY_SQL's order. */
function denyValues(row: DenyRow): (string | number | null)[] {
  return [
    row.id,
    row.time,
    row.timeMs,
    row.workloadKey,
    row.groups,
    row.host,
    row.ip,
    row.port,
    row.kind,
    row.decision,
    row.mode,
    row.rule,
    row.revision,
    row.sandboxId,
    row.seq,
    row.receivedAt,
    row.record,
  ];
}
const DENY_COLUMNS = 17;

// Runs in a worker thread on its own connection, and owns WAL checkpoints: deny batches are inserted there, so the event
// loop keeps parsing and validating the next batches (and answering long-polls) meanwhile. Same
// statements and transaction shape as the in-thread path below; the 202 is sent only after the
// worker has committed. Slices of INSERT_SLICE rows are separate transactions so the main
// connection's writes (revisions, sightings) can get in between.
const DENY_WRITER_WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 5000');
db.pragma('synchronous = NORMAL');
db.pragma('cache_size = -65536');
db.pragma('wal_autocheckpoint = ' + workerData.autocheckpointPages);
db.pragma('journal_size_limit = ' + workerData.walSizeLimit);
const insertDeny = db.prepare(workerData.insertDenySql);
const upsertSandbox = db.prepare(workerData.upsertSandboxSql);
const COLUMNS = workerData.columns;
// gate[0] = 1 while the main connection wants to write; gate[1] = 1 while this thread is in a slice.
const gate = new Int32Array(workerData.gate);
function enterSlice() {
  for (;;) {
    while (Atomics.load(gate, 0) === 1) Atomics.wait(gate, 0, 1, 100);
    Atomics.store(gate, 1, 1);
    if (Atomics.load(gate, 0) === 0) return;
    Atomics.store(gate, 1, 0);
    Atomics.notify(gate, 1);
  }
}
let rowsSinceCheckpoint = 0;
function leaveSlice() {
  Atomics.store(gate, 1, 0);
  Atomics.notify(gate, 1);
}
const insertSlice = db.transaction((values, from, to) => {
  const sandboxes = new Map();
  let stored = 0;
  for (let at = from; at < to; at += COLUMNS) {
    const changes = insertDeny.run(values.slice(at, at + COLUMNS)).changes;
    if (changes !== 1) continue;
    stored++;
    const workload = values[at + 3];
    const sandboxId = values[at + 13];
    const seq = values[at + 14];
    if (sandboxId === null || seq === null) continue;
    const progress = sandboxes.get(sandboxId);
    if (progress) {
      progress.received++;
      if (seq > progress.maxSeq) progress.maxSeq = seq;
    } else {
      sandboxes.set(sandboxId, { id: sandboxId, workload, maxSeq: seq, received: 1 });
    }
  }
  const now = new Date().toISOString();
  for (const p of sandboxes.values()) upsertSandbox.run(p.id, p.workload, p.maxSeq, p.received, now);
  return stored;
});
const checkpoint = () => {
  rowsSinceCheckpoint = 0;
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (error) {
    parentPort.postMessage({ warning: String((error && error.message) || error) });
  }
};
const timer = setInterval(checkpoint, workerData.checkpointIntervalMs);
parentPort.on('message', (message) => {
  if (message === 'close') {
    clearInterval(timer);
    db.close();
    parentPort.close();
    return;
  }
  const { id, values } = message;
  try {
    let stored = 0;
    const step = workerData.slice * COLUMNS;
    for (let start = 0; start < values.length; start += step) {
      enterSlice();
      try {
        stored += insertSlice.immediate(values, start, Math.min(values.length, start + step));
      } finally {
        leaveSlice();
      }
      rowsSinceCheckpoint += workerData.slice;
      if (rowsSinceCheckpoint >= workerData.checkpointRows) checkpoint();
    }
    parentPort.postMessage({ id, stored, duplicate: values.length / COLUMNS - stored });
  } catch (error) {
    parentPort.postMessage({ id, error: String((error && error.message) || error) });
  }
});
`;

/** Inserts deny batches on a worker thread; `alive` turns false for good if the thread fails. */
class DenyWriter {
  alive = true;
  private closing = false;
  private readonly worker: Worker;
  private readonly exited: Promise<void>;
  private readonly pending = new Map<
    number,
    { resolve: (result: InsertDeniesResult) => void; reject: (error: Error) => void }
  >();
  private nextId = 1;

  /**
   * Shared with the thread. Slices follow each other back to back, so a writer on the main
   * connection sleeping in SQLite's busy handler could miss every gap between them; instead it
   * raises gate[0], waits (at most one slice) for gate[1] to drop, and the thread holds off
   * until it lowers gate[0] again.
   */
  private readonly gate = new Int32Array(new SharedArrayBuffer(8));

  constructor(file: string, onError: (message: string) => void) {
    this.worker = new Worker(DENY_WRITER_WORKER, {
      eval: true,
      workerData: {
        driver: createRequire(import.meta.url).resolve('better-sqlite3'),
        file,
        autocheckpointPages: WRITER_AUTOCHECKPOINT_PAGES,
        checkpointRows: DENY_WRITER_CHECKPOINT_ROWS,
        checkpointIntervalMs: CHECKPOINT_INTERVAL_MS,
        walSizeLimit: WAL_SIZE_LIMIT_BYTES,
        insertDenySql: INSERT_DENY_SQL,
        upsertSandboxSql: UPSERT_SANDBOX_SQL,
        slice: INSERT_SLICE,
        columns: DENY_COLUMNS,
        gate: this.gate.buffer,
      },
    });
    this.worker.on(
      'message',
      (message: { id: number; stored: number; duplicate: number; error?: string }) => {
        const waiter = this.pending.get(message.id);
        if (!waiter) return;
        this.pending.delete(message.id);
        if (message.error !== undefined) waiter.reject(new Error(`deny insert failed: ${message.error}`));
        else waiter.resolve({ stored: message.stored, duplicate: message.duplicate });
      },
    );
    const fail = (reason: string) => {
      const wasAlive = this.alive;
      this.alive = false;
      if (wasAlive && !this.closing) onError(reason);
      for (const waiter of this.pending.values()) waiter.reject(new Error(`deny writer thread: ${reason}`));
      this.pending.clear();
    };
    this.worker.on('error', (error) => fail(error.message));
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', (code) => {
        fail(`exited with code ${code}`);
        resolve();
      }),
    );
    this.worker.unref();
  }

  /** Runs `write` on the main connection while the thread is between slices. */
  exclusive<T>(write: () => T): T {
    Atomics.store(this.gate, 0, 1);
    try {
      // Bounded waits: a thread that died mid-slice must not hang the event loop.
      for (let waited = 0; Atomics.load(this.gate, 1) === 1 && this.alive && waited < 50; waited++) {
        Atomics.wait(this.gate, 1, 1, 100);
      }
      return write();
    } finally {
      Atomics.store(this.gate, 0, 0);
      Atomics.notify(this.gate, 0);
    }
  }

  insert(rows: DenyRow[]): Promise<InsertDeniesResult> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      // One flat array of column values: cloning it to the thread costs a fraction of cloning row objects.
      const values: (string | number | null)[] = [];
      for (const row of rows) values.push(...denyValues(row));
      this.worker.postMessage({ id, values });
    });
  }

  async close(): Promise<void> {
    // Queued after every batch already sent, so those are committed first.
    this.closing = true;
    this.worker.postMessage('close');
    await this.exited;
  }
}

export class SqliteStore implements ControlStore {
  readonly engine = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly dialect: Dialect = sqliteDialect;
  private readonly revisionListeners = new Set<(revision: number) => void>();
  private readonly insertDeny: Database.Statement;
  private readonly upsertSandbox: Database.Statement;
  private readonly upsertWorkload: Database.Statement;
  private readonly insertDenyBatch: Database.Transaction<(rows: DenyRow[]) => InsertDeniesResult>;
  private readonly denyWriter: DenyWriter | undefined;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // NORMAL is durable across process crashes in WAL mode; only an OS crash can lose the last commits.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    // 64 MiB page cache: the deny table's indexes stay in memory while batches stream in.
    this.db.pragma('cache_size = -65536');
    this.db.pragma('foreign_keys = ON');
    this.runMigrations();
    if (this.db.memory) {
      this.denyWriter = undefined;
    } else {
      // Checkpoints (the only fsync with synchronous=NORMAL) run on the writer thread, off the event loop.
      this.db.pragma(`wal_autocheckpoint = ${WRITER_AUTOCHECKPOINT_PAGES}`);
      this.db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
      this.denyWriter = new DenyWriter(this.db.name, (message) => {
        process.emitWarning(`bulkhead: deny writer thread: ${message}`);
        // Without the thread, batches go through the in-thread path and this connection checkpoints.
        if (this.denyWriter?.alive === false && this.db.open) this.db.pragma('wal_autocheckpoint = 4000');
      });
    }
    this.insertDeny = this.db.prepare(INSERT_DENY_SQL);
    this.upsertSandbox = this.db.prepare(UPSERT_SANDBOX_SQL);
    this.upsertWorkload = this.db.prepare(
      `INSERT INTO workloads (key, identity, first_seen, last_seen, revision, scope) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET last_seen = excluded.last_seen, revision = excluded.revision,
         scope = excluded.scope, identity = excluded.identity`,
    );
    this.insertDenyBatch = this.db.transaction((rows: DenyRow[]) => {
      const stored: DenyRow[] = [];
      for (const row of rows) {
        // Positional parameters: binding by name costs a property lookup per column per row.
        const changes = this.insertDeny.run(denyValues(row)).changes;
        if (changes === 1) stored.push(row);
      }
      const now = new Date().toISOString();
      for (const progress of sandboxProgress(stored)) {
        this.upsertSandbox.run(progress.id, progress.workload, progress.maxSeq, progress.received, now);
      }
      return { stored: stored.length, duplicate: rows.length - stored.length };
    });
  }

  /** Write transactions on this connection go through here, so the deny writer thread lets them in. */
  private write<T>(transaction: () => T): T {
    return this.denyWriter?.alive ? this.denyWriter.exclusive(transaction) : transaction();
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
        .prepare('INSERT INTO tokens (id, hash, scope, name, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(token.id, token.hash, token.scope, token.name, token.createdAt),
    );
  }

  async findToken(id: string): Promise<TokenRow | undefined> {
    const row = this.db
      .prepare('SELECT id, hash, scope, name, created_at FROM tokens WHERE id = ?')
      .get(id) as
      | { id: string; hash: string; scope: TokenScope; name: string | null; created_at: string }
      | undefined;
    return row && { id: row.id, hash: row.hash, scope: row.scope, name: row.name, createdAt: row.created_at };
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
          JSON.stringify(revision.sources),
          revision.restoredFrom,
          JSON.stringify(revision.summary ?? null),
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
        for (const s of sightings.slice(start, start + INSERT_SLICE)) {
          this.upsertWorkload.run(s.key, JSON.stringify(s.identity), s.seenAt, s.seenAt, s.revision, s.scope);
        }
      });
      this.write(() => slice.immediate());
    }
  }

  async listWorkloads(): Promise<WorkloadRow[]> {
    const rows = this.db
      .prepare(
        `SELECT w.key, w.identity, w.first_seen, w.last_seen, w.revision, w.scope,
           coalesce(sum(max(s.max_seq - s.received, 0)), 0) AS missing, count(s.id) AS sandboxes
         FROM workloads w LEFT JOIN sandboxes s ON s.workload = w.key
         GROUP BY w.key ORDER BY w.key`,
      )
      .all() as {
      key: string;
      identity: string;
      first_seen: string;
      last_seen: string;
      revision: number;
      scope: string;
      missing: number;
      sandboxes: number;
    }[];
    return rows.map((row) => ({
      key: row.key,
      identity: JSON.parse(row.identity),
      firstSeen: row.first_seen,
      lastSeen: row.last_seen,
      revision: row.revision,
      scope: row.scope,
      missingRecords: row.missing,
      sandboxes: row.sandboxes,
    }));
  }

  async insertDenies(rows: DenyRow[]): Promise<InsertDeniesResult> {
    if (rows.length === 0) return { stored: 0, duplicate: 0 };
    if (this.denyWriter?.alive) return this.denyWriter.insert(rows);
    const total: InsertDeniesResult = { stored: 0, duplicate: 0 };
    // better-sqlite3 is synchronous: big batches go in slices of 1000, yielding between them, so parked
    // long-polls are answered promptly while reports stream in. Each slice is its own transaction;
    // idempotency by id makes a partly stored batch safe to resend.
    for (let start = 0; start < rows.length; start += INSERT_SLICE) {
      if (start > 0) await new Promise((resolve) => setImmediate(resolve));
      const result = this.insertDenyBatch.immediate(rows.slice(start, start + INSERT_SLICE));
      total.stored += result.stored;
      total.duplicate += result.duplicate;
    }
    return total;
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
           (SELECT count(*) FROM denies) AS denies`,
      )
      .get({ current: currentRevision }) as {
      workloads: number;
      current: number;
      missing: number;
      denies: number;
    };
    return {
      workloads: row.workloads,
      workloadsCurrent: row.current,
      missingRecords: row.missing,
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

export function openSqliteStore(file: string): SqliteStore {
  return new SqliteStore(file);
}
