import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DistinctSet } from '../../runtime-shims/node/distinct.js';

describe('DistinctSet (aggregate.distinct without keeping the values)', () => {
  it('counts what a Set counts, across growth and clears', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.string({ maxLength: 24 }), { maxLength: 300 }), { maxLength: 4 }),
        (windows) => {
          const set = new DistinctSet();
          for (const values of windows) {
            const reference = new Set<string>();
            for (const value of values) {
              const isNew = !reference.has(value);
              reference.add(value);
              expect(set.add(value)).toBe(isNew);
            }
            expect(set.size).toBe(reference.size);
            set.clear();
            expect(set.size).toBe(0);
          }
        },
      ),
    );
  });

  it('tells 100,000 flood values apart (address:port and names) and forgets them on clear', () => {
    const set = new DistinctSet();
    let added = 0;
    for (let i = 0; i < 50_000; i++) if (set.add(`127.0.0.${2 + (i >> 16)}:${1024 + (i & 0xffff)}`)) added++;
    for (let i = 0; i < 50_000; i++) if (set.add(`x${i}.exfil.attacker.test`)) added++;
    expect(added).toBe(100_000);
    expect(set.add('x7.exfil.attacker.test')).toBe(false);
    set.clear();
    expect(set.add('x7.exfil.attacker.test')).toBe(true);
    expect(set.size).toBe(1);
  });
});
