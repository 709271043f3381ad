// Deny records of a window as the store keeps them (JSON texts), page by page up to a bound: what the
// suggestions and the dry run's "would break" read, and hand to the policy thread unparsed.
import type { ControlStore, DenyFilter } from './types.js';

const PAGE = 1000;

/**
 * Every record `filter` matches (its order and limit are replaced: pages in storage order, `order`
 * asc = oldest first, desc = newest first), at most `max`; `truncated` when there were more.
 */
export async function readRecordTexts(
  store: ControlStore,
  filter: Omit<DenyFilter, 'limit' | 'after' | 'before'>,
  max: number,
): Promise<{ records: string[]; truncated: boolean }> {
  const page: DenyFilter = { ...filter, limit: PAGE };
  const records: string[] = [];
  for (;;) {
    const rows = await store.queryDenies(page);
    for (const row of rows) records.push(row.record);
    const last = rows[rows.length - 1];
    if (rows.length < PAGE || last === undefined || records.length > max) break;
    if (filter.order === 'asc') page.after = last.position;
    else page.before = last.position;
  }
  const truncated = records.length > max;
  if (truncated) records.length = max;
  return { records, truncated };
}
