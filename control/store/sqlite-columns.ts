// The deny table's columns, declared once: the INSERT statement, the flattening of rows into
// positional values (the form batches cross to the writer thread in) and the positions the thread
// reads back are all generated from DENY_COLUMNS. Shared by the store (control/store/sqlite.ts)
// and the writer thread (control/store/sqlite-deny-writer.ts, built as its own entry).
import type { DenyRow } from './types.js';

/** One column value as bound to a statement. */
export type DenyValue = string | number | null;

/** Column of the `denies` table and the DenyRow field it is filled from, in INSERT order. */
export const DENY_COLUMNS = [
  { column: 'id', field: 'id' },
  { column: 'time', field: 'time' },
  { column: 'time_ms', field: 'timeMs' },
  { column: 'workload', field: 'workloadKey' },
  { column: 'workload_name', field: 'workloadName' },
  { column: 'invocation_id', field: 'invocationId' },
  { column: 'origin_package', field: 'originPackage' },
  { column: 'severity', field: 'severity' },
  { column: 'groups', field: 'groups' },
  { column: 'host', field: 'host' },
  { column: 'ip', field: 'ip' },
  { column: 'port', field: 'port' },
  { column: 'kind', field: 'kind' },
  { column: 'decision', field: 'decision' },
  { column: 'mode', field: 'mode' },
  { column: 'rule', field: 'rule' },
  { column: 'revision', field: 'revision' },
  { column: 'sandbox_id', field: 'sandboxId' },
  { column: 'seq', field: 'seq' },
  { column: 'received_at', field: 'receivedAt' },
  { column: 'record', field: 'record' },
] as const satisfies readonly { column: string; field: keyof DenyRow }[];

type DenyField = (typeof DENY_COLUMNS)[number]['field'];
// Compile-time check that every DenyRow field has a column: adding a field to DenyRow without
// a column here fails the type check instead of silently not being stored.
type MissingField = Exclude<keyof DenyRow, DenyField>;
const everyFieldHasAColumn: [MissingField] extends [never] ? true : MissingField = true;
void everyFieldHasAColumn;

/** Values per row in a flattened batch. */
export const DENY_COLUMN_COUNT = DENY_COLUMNS.length;

const FIELDS: readonly DenyField[] = DENY_COLUMNS.map((c) => c.field);

function positionOf(field: DenyField): number {
  return FIELDS.indexOf(field);
}

/** Positions, within one row's values, of the fields the writer thread needs for sandbox progress. */
export const DENY_VALUE_INDEX = {
  workload: positionOf('workloadKey'),
  sandboxId: positionOf('sandboxId'),
  seq: positionOf('seq'),
} as const;

export const INSERT_DENY_SQL = `INSERT INTO denies (${DENY_COLUMNS.map((c) => c.column).join(', ')})
  VALUES (${DENY_COLUMNS.map(() => '?').join(', ')})
  ON CONFLICT (id) DO NOTHING`;

export const UPSERT_SANDBOX_SQL = `INSERT INTO sandboxes (id, workload, max_seq, received, seq_anomalies, last_seen)
  VALUES (?, ?, ?, ?, ?, ?)
  ON CONFLICT (id) DO UPDATE SET max_seq = max(max_seq, excluded.max_seq),
    received = received + excluded.received, seq_anomalies = seq_anomalies + excluded.seq_anomalies,
    last_seen = excluded.last_seen`;

/** A sandbox's stored high mark, for the plausibility of new sequence numbers (sandbox-progress.ts). */
export const SANDBOX_HIGH_MARK_SQL = 'SELECT max_seq FROM sandboxes WHERE id = ?';

/** Column values of a deny row in INSERT_DENY_SQL's order. */
export function denyValues(row: DenyRow): DenyValue[] {
  const values: DenyValue[] = new Array(DENY_COLUMN_COUNT);
  for (let i = 0; i < DENY_COLUMN_COUNT; i++) values[i] = row[FIELDS[i]!];
  return values;
}

/** The column values of `rows` in one flat array (cheaper to clone to a thread than row objects). */
export function flattenDenyRows(rows: readonly DenyRow[]): DenyValue[] {
  // Preallocated and filled by index: as fast as a literal array per row (push is twice as slow).
  const values: DenyValue[] = new Array(rows.length * DENY_COLUMN_COUNT);
  let at = 0;
  for (const row of rows) for (let i = 0; i < DENY_COLUMN_COUNT; i++) values[at++] = row[FIELDS[i]!];
  return values;
}
