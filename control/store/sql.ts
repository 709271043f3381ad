// SQL shared by both engines. Only placeholders and a few function names differ.
import type { DenyFilter } from './types.js';

export interface Dialect {
  placeholder(index: number): string;
  /** Position of a substring, 0 when absent (SQLite `instr`, PostgreSQL `strpos`). */
  substringPosition: string;
  /** The larger of two values (SQLite's two-argument `max`, PostgreSQL `greatest`). */
  greatest: string;
  /**
   * `column` in a term the planner must not serve from an index on it (SQLite's unary `+`; PostgreSQL
   * plans by its statistics and gets the column as it is).
   */
  unindexed(column: string): string;
  /**
   * `column` matches `glob` (`*` any run of characters, `?` one character, the rest literal),
   * case-sensitively, in a form each engine serves from an index on `column` when the glob starts
   * with literal characters.
   */
  globMatch(column: string, glob: string, bind: (value: unknown) => string): string;
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

export const isGlob = (text: string) => text.includes('*') || text.includes('?');

export const sqliteDialect: Dialect = {
  placeholder: () => '?',
  substringPosition: 'instr',
  greatest: 'max',
  unindexed: (column) => `+${column}`,
  // GLOB, not LIKE: SQLite's LIKE ignores ASCII case and uses an index only on NOCASE columns.
  // In a GLOB pattern `[` opens a character class; `[[]` is a literal one.
  globMatch: (column, glob, bind) =>
    isGlob(glob) ? `${column} GLOB ${bind(glob.replace(/\[/g, '[[]'))}` : `${column} = ${bind(glob)}`,
};

export const postgresDialect: Dialect = {
  placeholder: (i) => `$${i}`,
  substringPosition: 'strpos',
  greatest: 'greatest',
  unindexed: (column) => column,
  globMatch: (column, glob, bind) =>
    isGlob(glob)
      ? `${column} LIKE ${bind(escapeLike(glob).replace(/\*/g, '%').replace(/\?/g, '_'))} ESCAPE '\\'`
      : `${column} = ${bind(glob)}`,
};

/**
 * The globs an origin-package filter stands for: `axios@1.*` (a version given) as it is; `axios`
 * or `@aws-sdk/*` also with any version (`…@*`), since the shim records `name@version`.
 */
export function packageGlobs(filter: string): string[] {
  const hasVersion = filter.lastIndexOf('@') > 0;
  return hasVersion ? [filter] : [filter, `${filter}@*`];
}

export function buildDenyQuery(filter: DenyFilter, dialect: Dialect): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const bind = (value: unknown): string => {
    params.push(value);
    return dialect.placeholder(params.length);
  };
  if (filter.workload !== undefined) where.push(`workload = ${bind(filter.workload)}`);
  if (filter.workloadName !== undefined)
    where.push(dialect.globMatch('workload_name', filter.workloadName, bind));
  if (filter.invocation !== undefined) where.push(`invocation_id = ${bind(filter.invocation)}`);
  if (filter.package !== undefined) {
    const matches = packageGlobs(filter.package).map((glob) =>
      dialect.globMatch('origin_package', glob, bind),
    );
    where.push(`(${matches.join(' OR ')})`);
  }
  if (filter.kind !== undefined) where.push(`kind = ${bind(filter.kind)}`);
  if (filter.severity !== undefined) where.push(`severity = ${bind(filter.severity)}`);
  if (filter.group !== undefined)
    where.push(`${dialect.substringPosition}(groups, ${bind(`,${filter.group},`)}) > 0`);
  if (filter.destination !== undefined) {
    const destination = filter.destination.toLowerCase();
    if (destination.startsWith('*.')) {
      where.push(`host LIKE ${bind(`%${escapeLike(destination.slice(1))}`)} ESCAPE '\\'`);
    } else {
      where.push(`(host = ${bind(destination)} OR ip = ${bind(destination)})`);
    }
  }
  if (filter.rule !== undefined) where.push(`rule = ${bind(filter.rule)}`);
  if (filter.decision !== undefined) where.push(`decision = ${bind(filter.decision)}`);
  if (filter.sinceMs !== undefined) where.push(`time_ms >= ${bind(filter.sinceMs)}`);
  if (filter.untilMs !== undefined) where.push(`time_ms < ${bind(filter.untilMs)}`);
  if (filter.after !== undefined) where.push(`position > ${bind(filter.after)}`);
  if (filter.before !== undefined) where.push(`position < ${bind(filter.before)}`);
  const sql = [
    'SELECT position, record FROM denies',
    where.length > 0 ? `WHERE ${where.join(' AND ')}` : '',
    `ORDER BY position ${filter.order === 'asc' ? 'ASC' : 'DESC'}`,
    `LIMIT ${bind(filter.limit)}`,
  ].join(' ');
  return { sql, params };
}
