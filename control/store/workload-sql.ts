// The inventory's SQL, shared by both engines: one page of workloads in key order (keyset
// pagination on the primary key, filters served by the indexes of migration 4) and the workload
// counts per scope that the propagation summary is made of.
import { type Dialect, isGlob } from './sql.js';
import type { ScopeCount, WorkloadQuery, WorkloadRow, WorkloadSighting } from './types.js';

/** `,a,b,` (the stored form, as deny records' groups) ↔ names; null (no sighting named them) → undefined. */
export function groupsColumn(groups: readonly string[]): string {
  return groups.length === 0 ? '' : `,${groups.join(',')},`;
}

export function groupsOf(column: string | null): string[] | undefined {
  if (column === null) return undefined;
  return column === '' ? [] : column.slice(1, -1).split(',');
}

/**
 * How a page is read. By default each filter is served from its index (name, revision) and the
 * matches sorted by key: right for a filter with few matches. `keyOrder` reads the key index
 * instead, filtering as it goes (a page then costs about limit / density rows): right for one with
 * many. A SmartGroup filter reads, per scope of the group, its (scope, key) index range (at most
 * MAX_SCOPE_BRANCHES scopes; beyond, in key order).
 */
export interface PagePlan {
  /** The scopes whose SmartGroups include `query.group` (workload_scopes); unused without a group filter. */
  scopes?: readonly string[] | undefined;
  keyOrder?: boolean | undefined;
}

/** Most scopes of a SmartGroup read one index range each. */
export const MAX_SCOPE_BRANCHES = 64;
/** A name glob or revision filter with more matches than this is read in key order (SQLite). */
export const KEY_ORDER_ABOVE = 2000;

const PAGE_COLUMNS = 'key, identity, first_seen, last_seen, revision, scope';

/** The name and revision terms of `query`; `keyOrder`: written so that no index serves them. */
function filterTerms(
  query: WorkloadQuery,
  dialect: Dialect,
  bind: (value: unknown) => string,
  keyOrder: boolean,
): string[] {
  const where: string[] = [];
  const column = (name: string) => (keyOrder ? dialect.unindexed(name) : name);
  if (query.name !== undefined) where.push(dialect.globMatch(column('name'), query.name, bind));
  if (query.revision !== undefined)
    where.push(
      'below' in query.revision
        ? `${column('revision')} < ${bind(query.revision.below)}`
        : `${column('revision')} >= ${bind(query.revision.atLeast)}`,
    );
  return where;
}

function pageOf(
  query: WorkloadQuery,
  dialect: Dialect,
  bind: (value: unknown) => string,
  plan: PagePlan,
): string {
  const range = (extra: string[]) => {
    const where = [...extra];
    if (query.after !== undefined) where.push(`key > ${bind(query.after)}`);
    where.push(...filterTerms(query, dialect, bind, plan.keyOrder === true));
    return `SELECT ${PAGE_COLUMNS} FROM workloads ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY key LIMIT ${bind(query.limit)}`;
  };
  if (query.group === undefined) return range([]);
  const scopes = plan.scopes ?? [];
  if (scopes.length > MAX_SCOPE_BRANCHES)
    return range([`${dialect.unindexed('scope')} IN (${scopes.map((scope) => bind(scope)).join(', ')})`]);
  // One (scope, key) range per scope, each at most a page; the first page of them all in key order.
  const branches = scopes.map((scope) => `SELECT * FROM (${range([`scope = ${bind(scope)}`])}) b`);
  return `SELECT * FROM (${branches.join(' UNION ALL ')}) u ORDER BY key LIMIT ${bind(query.limit)}`;
}

/** One page of workloads, with their scope's groups and their sandboxes' counts. A group filter needs `plan.scopes` (none: no rows). */
export function buildWorkloadPage(
  query: WorkloadQuery,
  dialect: Dialect,
  plan: PagePlan = {},
): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const bind = (value: unknown): string => {
    params.push(value);
    return dialect.placeholder(params.length);
  };
  const sql = `SELECT p.key, p.identity, p.first_seen, p.last_seen, p.revision, p.scope, sc.groups,
      coalesce(sum(${dialect.greatest}(s.max_seq - s.received, 0)), 0) AS missing,
      coalesce(sum(s.seq_anomalies), 0) AS anomalies, count(s.id) AS sandboxes
    FROM (${pageOf(query, dialect, bind, plan)}) p
    LEFT JOIN workload_scopes sc ON sc.scope = p.scope
    LEFT JOIN sandboxes s ON s.workload = p.key
    GROUP BY p.key, p.identity, p.first_seen, p.last_seen, p.revision, p.scope, sc.groups
    ORDER BY p.key`;
  return { sql, params };
}

/** The scopes whose SmartGroups include `group`. */
export function buildScopesOfGroup(group: string, dialect: Dialect): { sql: string; params: unknown[] } {
  return {
    sql: `SELECT scope FROM workload_scopes WHERE ${dialect.substringPosition}(groups, ${dialect.placeholder(1)}) > 0`,
    params: [`,${group},`],
  };
}

/**
 * Whether `query`'s name glob or revision filter is better read in key order: the filter's matches
 * counted from its index, up to KEY_ORDER_ABOVE + 1. Undefined when neither is there (or the name
 * is exact: its (name, key) index is already in key order).
 */
export function buildMatchCount(
  query: WorkloadQuery,
  dialect: Dialect,
): { sql: string; params: unknown[] } | undefined {
  const exactName = query.name !== undefined && !isGlob(query.name);
  if (exactName || (query.name === undefined && query.revision === undefined)) return undefined;
  const params: unknown[] = [];
  const bind = (value: unknown): string => {
    params.push(value);
    return dialect.placeholder(params.length);
  };
  const where = filterTerms(query, dialect, bind, false);
  return {
    sql: `SELECT count(*) AS n FROM (SELECT 1 FROM workloads WHERE ${where.join(' AND ')} LIMIT ${bind(KEY_ORDER_ABOVE + 1)}) m`,
    params,
  };
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
