// The inventory's SQL, shared by both engines: one page of workloads in key order (keyset
// pagination on the primary key, filters served by the indexes of migration 4) and the workload
// counts per scope that the propagation summary is made of.
import type { Dialect } from './sql.js';
import type { ScopeCount, WorkloadQuery, WorkloadRow, WorkloadSighting } from './types.js';

/** `,a,b,` (the stored form, as deny records' groups) ↔ names; null (no sighting named them) → undefined. */
export function groupsColumn(groups: readonly string[]): string {
  return groups.length === 0 ? '' : `,${groups.join(',')},`;
}

export function groupsOf(column: string | null): string[] | undefined {
  if (column === null) return undefined;
  return column === '' ? [] : column.slice(1, -1).split(',');
}

export function buildWorkloadPage(
  query: WorkloadQuery,
  dialect: Dialect,
): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const bind = (value: unknown): string => {
    params.push(value);
    return dialect.placeholder(params.length);
  };
  if (query.after !== undefined) where.push(`key > ${bind(query.after)}`);
  if (query.name !== undefined) where.push(dialect.globMatch('name', query.name, bind));
  if (query.group !== undefined)
    where.push(
      `scope IN (SELECT scope FROM workload_scopes WHERE ${dialect.substringPosition}(groups, ${bind(`,${query.group},`)}) > 0)`,
    );
  if (query.revision !== undefined)
    where.push(
      'below' in query.revision
        ? `revision < ${bind(query.revision.below)}`
        : `revision >= ${bind(query.revision.atLeast)}`,
    );
  const sql = `WITH page AS (
      SELECT key, identity, first_seen, last_seen, revision, scope FROM workloads
      ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY key LIMIT ${bind(query.limit)}
    )
    SELECT p.key, p.identity, p.first_seen, p.last_seen, p.revision, p.scope, sc.groups,
      coalesce(s.missing, 0) AS missing, coalesce(s.anomalies, 0) AS anomalies,
      coalesce(s.sandboxes, 0) AS sandboxes
    FROM page p
    LEFT JOIN workload_scopes sc ON sc.scope = p.scope
    LEFT JOIN (
      SELECT workload, sum(${dialect.greatest}(max_seq - received, 0)) AS missing,
        sum(seq_anomalies) AS anomalies, count(*) AS sandboxes
      FROM sandboxes WHERE workload IN (SELECT key FROM page) GROUP BY workload
    ) s ON s.workload = p.key
    ORDER BY p.key`;
  return { sql, params };
}

/** Per scope: workloads holding `current` or later, and all of them (the rest are behind). */
export function buildScopeCounts(current: number, dialect: Dialect): { sql: string; params: unknown[] } {
  return {
    sql: `SELECT c.scope, sc.groups, c.current, c.total FROM (
        SELECT scope, sum(CASE WHEN revision >= ${dialect.placeholder(1)} THEN 1 ELSE 0 END) AS current,
          count(*) AS total
        FROM workloads GROUP BY scope
      ) c LEFT JOIN workload_scopes sc ON sc.scope = c.scope`,
    params: [current],
  };
}

/** A page row as both engines return it (PostgreSQL gives BIGINT columns and sums as text). */
export interface WorkloadPageRecord {
  key: string;
  identity: string;
  first_seen: string;
  last_seen: string;
  revision: number | string;
  scope: string;
  groups: string | null;
  missing: number | string;
  anomalies: number | string;
  sandboxes: number | string;
}

export function toWorkloadRow(record: WorkloadPageRecord): WorkloadRow {
  return {
    key: record.key,
    identity: JSON.parse(record.identity),
    firstSeen: record.first_seen,
    lastSeen: record.last_seen,
    revision: Number(record.revision),
    scope: record.scope,
    groups: groupsOf(record.groups),
    missingRecords: Number(record.missing),
    seqAnomalies: Number(record.anomalies),
    sandboxes: Number(record.sandboxes),
  };
}

export interface ScopeCountRecord {
  scope: string;
  groups: string | null;
  current: number | string;
  total: number | string;
}

export function toScopeCount(record: ScopeCountRecord): ScopeCount {
  const current = Number(record.current);
  return {
    scope: record.scope,
    groups: groupsOf(record.groups),
    current,
    behind: Number(record.total) - current,
  };
}

/** The distinct scopes of a batch of sightings whose groups it names, for `workload_scopes`. */
export function namedScopes(sightings: readonly WorkloadSighting[]): { scope: string; groups: string }[] {
  const scopes = new Map<string, string>();
  for (const s of sightings)
    if (s.groups !== undefined && !scopes.has(s.scope)) scopes.set(s.scope, groupsColumn(s.groups));
  return [...scopes].map(([scope, groups]) => ({ scope, groups }));
}

/**
 * The `name` column of a workload: its identity's name, or null. A name holding U+0000 (a `%00`
 * someone sent) is left out: PostgreSQL text cannot hold it, and it would fail the whole batch.
 */
export function nameColumn(identity: Readonly<Record<string, string>>): string | null {
  const name = identity.name;
  return name === undefined || name.includes('\u0000') ? null : name;
}
