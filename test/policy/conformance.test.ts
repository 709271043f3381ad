// The kernel conformance table (test/conformance/table.json) is what the TypeScript kernel answers
// today: regenerated here and compared byte for byte with the checked-in file, which the other
// kernel ports (runtime-shims/python) are tested against. `npm run conformance` rewrites it.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildTable, renderTable, TABLE_FILE } from '../conformance/generate.js';

describe('kernel conformance table', () => {
  it('is what the TypeScript kernel answers (run `npm run conformance` to update)', () => {
    const table = buildTable();
    const text = renderTable(table);
    if (process.env.UPDATE_CONFORMANCE === '1') writeFileSync(TABLE_FILE, text);
    const current = existsSync(TABLE_FILE) ? readFileSync(TABLE_FILE, 'utf8') : '';
    if (current !== text) {
      const old = current === '' ? [] : (JSON.parse(current).rows as { name: string; expect: unknown }[]);
      const byName = new Map(old.map((row) => [row.name, JSON.stringify(row.expect)]));
      const changed = table.rows
        .filter((row) => byName.get(row.name) !== JSON.stringify(row.expect))
        .map((row) => `  ${row.name}: ${byName.get(row.name) ?? '(new)'} → ${JSON.stringify(row.expect)}`);
      expect.fail(
        `test/conformance/table.json is out of date: run \`npm run conformance\` to update it ` +
          `(then check the Python kernel agrees: runtime-shims/python tests/test_conformance.py).\n` +
          `${changed.slice(0, 40).join('\n')}${changed.length > 40 ? `\n  … ${changed.length - 40} more` : ''}`,
      );
    }
    expect(table.rows.length).toBeGreaterThan(300);
  });

  it('is reproducible: the same bytes twice', () => {
    expect(renderTable(buildTable())).toBe(renderTable(buildTable()));
  });
});
