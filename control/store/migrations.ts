// Versioned schema migrations, one list per engine, applied in order and recorded in
// `schema_migrations`. Append new versions; never edit one that has shipped.

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const sqliteMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('admin', 'workload')),
        name TEXT,
        created_at TEXT NOT NULL
      );
      CREATE TABLE revisions (
        revision INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        sources TEXT NOT NULL,
        restored_from INTEGER,
        summary TEXT NOT NULL
      );
      CREATE TABLE workloads (
        key TEXT PRIMARY KEY,
        identity TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        revision INTEGER NOT NULL,
        scope TEXT NOT NULL
      );
      CREATE TABLE denies (
        -- rowid alias: monotonic because deny rows are never deleted (cursors rely on it)
        position INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        time TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        workload TEXT NOT NULL,
        groups TEXT NOT NULL,
        host TEXT,
        ip TEXT,
        port INTEGER,
        kind TEXT NOT NULL,
        decision TEXT NOT NULL,
        mode TEXT NOT NULL,
        rule TEXT NOT NULL,
        revision INTEGER NOT NULL,
        sandbox_id TEXT,
        seq INTEGER,
        received_at TEXT NOT NULL,
        record TEXT NOT NULL
      );
      CREATE INDEX denies_time ON denies (time_ms);
      CREATE INDEX denies_workload ON denies (workload, position);
      CREATE TABLE sandboxes (
        id TEXT PRIMARY KEY,
        workload TEXT NOT NULL,
        max_seq INTEGER NOT NULL,
        received INTEGER NOT NULL,
        last_seen TEXT NOT NULL
      );
      CREATE INDEX sandboxes_workload ON sandboxes (workload);
      CREATE TABLE signing_keys (
        key_id TEXT PRIMARY KEY,
        public_key TEXT NOT NULL,
        first_used TEXT NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: 'deny columns for the investigate filters',
    // The filters by workload name, invocation, origin package and severity get columns of their
    // own (filled from the record JSON at ingestion, no JSON parsing in SQL per insert or per query);
    // rows stored before this version are filled from their JSON once, here. Name and invocation
    // are indexed: they are what an investigation starts from and are selective. Package and severity,
    // like rule and decision, are read walking the position order (pages stop at their limit).
    sql: `
      ALTER TABLE denies ADD COLUMN workload_name TEXT;
      ALTER TABLE denies ADD COLUMN invocation_id TEXT;
      ALTER TABLE denies ADD COLUMN origin_package TEXT;
      ALTER TABLE denies ADD COLUMN severity TEXT NOT NULL DEFAULT 'normal';
      UPDATE denies SET
        workload_name = json_extract(record, '$.workload.name'),
        invocation_id = json_extract(record, '$.invocationId'),
        origin_package = json_extract(record, '$.origin.package'),
        severity = coalesce(json_extract(record, '$.severity'), 'normal');
      CREATE INDEX denies_workload_name ON denies (workload_name, position);
      CREATE INDEX denies_invocation ON denies (invocation_id);
    `,
  },
  {
    version: 3,
    name: 'rule hit counts',
    sql: `
      -- Allow decisions per rule, summed per UTC day and revision (contract §3, "Rule hit counts").
      CREATE TABLE rule_hits (
        day TEXT NOT NULL,
        revision INTEGER NOT NULL,
        rule TEXT NOT NULL,
        hits INTEGER NOT NULL,
        PRIMARY KEY (day, revision, rule)
      );
    `,
  },
  {
    version: 4,
    name: 'inventory paging and implausible sequence numbers',
    // GET /v1/workloads pages by key (the primary key's index) and filters by name (an index of its
    // own, filled from the identity JSON for rows stored before this version), by revision, and by
    // SmartGroup: workload_scopes names the groups of each scope id (a hash of the group names, so a
    // row never changes) and (scope, key) reads a group's workloads scope by scope in key order;
    // (scope, revision) serves the propagation summary from the index alone.
    // seq_anomalies counts a sandbox's records whose seq jumped implausibly (store/sandbox-progress.ts).
    sql: `
      ALTER TABLE sandboxes ADD COLUMN seq_anomalies INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE workloads ADD COLUMN name TEXT;
      UPDATE workloads SET name = json_extract(identity, '$.name');
      CREATE INDEX workloads_name ON workloads (name, key);
      CREATE INDEX workloads_scope ON workloads (scope, revision);
      CREATE INDEX workloads_scope_key ON workloads (scope, key);
      CREATE INDEX workloads_revision ON workloads (revision);
      CREATE TABLE workload_scopes (
        scope TEXT PRIMARY KEY,
        -- ',group-a,group-b,' ('' for none), as the deny records' groups column
        groups TEXT NOT NULL
      );
    `,
  },
  {
    version: 5,
    name: 'token scopes, expiry, revocation and attested sessions',
    sql: `
      -- groups: JSON array of SmartGroup names the token may act for (NULL: any workload).
      -- parent_id/identity/attestation: a session an attestation issued, pinned to one identity.
      ALTER TABLE tokens ADD COLUMN groups TEXT;
      ALTER TABLE tokens ADD COLUMN expires_at TEXT;
      ALTER TABLE tokens ADD COLUMN revoked_at TEXT;
      ALTER TABLE tokens ADD COLUMN last_used_at TEXT;
      ALTER TABLE tokens ADD COLUMN parent_id TEXT;
      ALTER TABLE tokens ADD COLUMN identity TEXT;
      ALTER TABLE tokens ADD COLUMN attestation TEXT;
      CREATE INDEX tokens_parent ON tokens (parent_id) WHERE parent_id IS NOT NULL;
      -- Every replica polls the newest seq and drops what it cached of the ids revoked since.
      CREATE TABLE token_revocations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        at TEXT NOT NULL
      );
    `,
  },
];

export const postgresMigrations: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL,
        scope TEXT NOT NULL CHECK (scope IN ('admin', 'workload')),
        name TEXT,
        created_at TEXT NOT NULL
      );
      CREATE TABLE revisions (
        revision BIGINT PRIMARY KEY,
        created_at TEXT NOT NULL,
        sources TEXT NOT NULL,
        restored_from BIGINT,
        summary TEXT NOT NULL
      );
      CREATE TABLE workloads (
        key TEXT PRIMARY KEY,
        identity TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        revision BIGINT NOT NULL,
        scope TEXT NOT NULL
      );
      CREATE TABLE denies (
        position BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        time TEXT NOT NULL,
        time_ms BIGINT NOT NULL,
        workload TEXT NOT NULL,
        groups TEXT NOT NULL,
        host TEXT,
        ip TEXT,
        port INTEGER,
        kind TEXT NOT NULL,
        decision TEXT NOT NULL,
        mode TEXT NOT NULL,
        rule TEXT NOT NULL,
        revision BIGINT NOT NULL,
        sandbox_id TEXT,
        seq BIGINT,
        received_at TEXT NOT NULL,
        record TEXT NOT NULL
      );
      CREATE INDEX denies_time ON denies (time_ms);
      CREATE INDEX denies_workload ON denies (workload, position);
      CREATE TABLE sandboxes (
        id TEXT PRIMARY KEY,
        workload TEXT NOT NULL,
        max_seq BIGINT NOT NULL,
        received BIGINT NOT NULL,
        last_seen TEXT NOT NULL
      );
      CREATE INDEX sandboxes_workload ON sandboxes (workload);
      CREATE TABLE signing_keys (
        key_id TEXT PRIMARY KEY,
        public_key TEXT NOT NULL,
        first_used TEXT NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: 'deny columns for the investigate filters',
    // As SQLite's version 2. The name index uses text_pattern_ops so that a glob with a literal
    // prefix (LIKE 'charge-%') can use it whatever the database's collation. PostgreSQL refuses to
    // turn a \u0000 escape into text, and a workload may have sent one: such rows (never a real
    // investigation's) are left unfilled rather than failing the migration, and so every start.
    sql: `
      ALTER TABLE denies ADD COLUMN workload_name TEXT, ADD COLUMN invocation_id TEXT,
        ADD COLUMN origin_package TEXT, ADD COLUMN severity TEXT NOT NULL DEFAULT 'normal';
      UPDATE denies SET
        workload_name = record::json #>> '{workload,name}',
        invocation_id = record::json ->> 'invocationId',
        origin_package = record::json #>> '{origin,package}',
        severity = coalesce(record::json ->> 'severity', 'normal')
      WHERE strpos(record, '\\u0000') = 0;
      CREATE INDEX denies_workload_name ON denies (workload_name text_pattern_ops, position);
      CREATE INDEX denies_invocation ON denies (invocation_id);
    `,
  },
  {
    version: 3,
    name: 'rule hit counts',
    sql: `
      -- Allow decisions per rule, summed per UTC day and revision (contract §3, "Rule hit counts").
      CREATE TABLE rule_hits (
        day TEXT NOT NULL,
        revision INTEGER NOT NULL,
        rule TEXT NOT NULL,
        hits BIGINT NOT NULL,
        PRIMARY KEY (day, revision, rule)
      );
    `,
  },
  {
    version: 4,
    name: 'inventory paging and implausible sequence numbers',
    // As SQLite's version 4; the name index uses text_pattern_ops (globs with a literal prefix), and an
    // identity holding a \u0000 escape is left without a name, as in version 2.
    sql: `
      ALTER TABLE sandboxes ADD COLUMN seq_anomalies BIGINT NOT NULL DEFAULT 0;
      ALTER TABLE workloads ADD COLUMN name TEXT;
      UPDATE workloads SET name = identity::json ->> 'name' WHERE strpos(identity, '\\u0000') = 0;
      CREATE INDEX workloads_name ON workloads (name text_pattern_ops, key);
      CREATE INDEX workloads_scope ON workloads (scope, revision);
      CREATE INDEX workloads_scope_key ON workloads (scope, key);
      CREATE INDEX workloads_revision ON workloads (revision);
      CREATE TABLE workload_scopes (
        scope TEXT PRIMARY KEY,
        groups TEXT NOT NULL
      );
    `,
  },
  {
    version: 5,
    name: 'token scopes, expiry, revocation and attested sessions',
    sql: `
      -- groups: JSON array of SmartGroup names the token may act for (NULL: any workload).
      -- parent_id/identity/attestation: a session an attestation issued, pinned to one identity.
      ALTER TABLE tokens ADD COLUMN groups TEXT;
      ALTER TABLE tokens ADD COLUMN expires_at TEXT;
      ALTER TABLE tokens ADD COLUMN revoked_at TEXT;
      ALTER TABLE tokens ADD COLUMN last_used_at TEXT;
      ALTER TABLE tokens ADD COLUMN parent_id TEXT;
      ALTER TABLE tokens ADD COLUMN identity TEXT;
      ALTER TABLE tokens ADD COLUMN attestation TEXT;
      CREATE INDEX tokens_parent ON tokens (parent_id) WHERE parent_id IS NOT NULL;
      -- Every replica polls the newest seq and drops what it cached of the ids revoked since.
      CREATE TABLE token_revocations (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL,
        at TEXT NOT NULL
      );
    `,
  },
];
