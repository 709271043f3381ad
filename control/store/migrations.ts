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
];
