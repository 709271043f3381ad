// The inventory's storage (issue 17): pages in key order with filters, counts per scope, the
// groups each scope names, and sequence numbers that jump implausibly — on SQLite and PostgreSQL.
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_SEQ_JUMP } from '../../control/store/sandbox-progress.js';
import type { ControlStore, DenyRow, WorkloadQuery, WorkloadSighting } from '../../control/store/types.js';
import { ENGINES, type StoreFactory, storeFactory } from './harness.js';

function sighting(name: string, revision: number, scope: string, groups?: string[]): WorkloadSighting {
  return {
    key: `cloud=aws,name=${name}`,
    identity: { cloud: 'aws', name },
    seenAt: '2026-11-28T03:00:00.000Z',
    revision,
    scope,
    groups,
  };
}

function numbered(id: string, sandboxId: string, seq: number, workloadKey: string): DenyRow {
  return {
    id,
    time: '2026-11-28T03:00:00.000Z',
    timeMs: Date.parse('2026-11-28T03:00:00.000Z'),
    workloadKey,
    workloadName: null,
    invocationId: null,
    originPackage: null,
    severity: 'normal',
    groups: '',
    host: 'x.test',
    ip: null,
    port: 443,
    kind: 'connect',
    decision: 'deny',
    mode: 'enforce',
    rule: 'default-deny',
    revision: 1,
    sandboxId,
    seq,
    receivedAt: new Date().toISOString(),
    record: JSON.stringify({ id }),
  };
}

describe.each(ENGINES)('inventory store on %s', (engine) => {
  let factory: StoreFactory;
  let store: ControlStore;

  beforeAll(async () => {
    factory = await storeFactory(engine);
    store = await factory.open();
    // 30 workloads: fn-00 … fn-29; even ones in scope A (payments, cards), odd ones in B (ledger);
    // fn-20 and later hold revision 2 (current), the others revision 1 (behind).
    const sightings = Array.from({ length: 30 }, (_, i) => {
      const name = `fn-${String(i).padStart(2, '0')}`;
      return i % 2 === 0
        ? sighting(name, i >= 20 ? 2 : 1, 'scope-a', ['cards', 'payments'])
        : sighting(name, i >= 20 ? 2 : 1, 'scope-b', ['ledger']);
    });
    sightings.push(sighting('no-groups', 2, 'scope-none', []));
    sightings.push(sighting('unnamed-scope', 2, 'scope-unknown'));
    await store.recordSightings(sightings);
  });
  afterAll(async () => {
    await factory?.cleanup();
  });

  async function all(query: Omit<WorkloadQuery, 'after' | 'limit'>, limit: number): Promise<string[]> {
    const keys: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await store.listWorkloads({ ...query, after, limit });
      expect(page.length).toBeLessThanOrEqual(limit);
      keys.push(...page.map((row) => row.key));
      if (page.length < limit) return keys;
      after = page[page.length - 1]?.key;
    }
  }

  it('pages the whole inventory in key order, each workload once', async () => {
    const keys = await all({}, 7);
    expect(keys).toHaveLength(32);
    expect(new Set(keys).size).toBe(32);
    expect([...keys].sort()).toEqual(keys);
    const first = await store.listWorkloads({ limit: 1 });
    expect(first[0]).toMatchObject({
      key: 'cloud=aws,name=fn-00',
      identity: { cloud: 'aws', name: 'fn-00' },
      groups: ['cards', 'payments'],
      revision: 1,
      missingRecords: 0,
      seqAnomalies: 0,
      sandboxes: 0,
    });
  });

  it('filters by name (exact or glob), SmartGroup and revision, and pages the filtered set', async () => {
    expect(await all({ name: 'fn-07' }, 5)).toEqual(['cloud=aws,name=fn-07']);
    expect(await all({ name: 'fn-2*' }, 3)).toHaveLength(10);
    expect(await all({ name: 'fn-?5' }, 3)).toEqual([
      'cloud=aws,name=fn-05',
      'cloud=aws,name=fn-15',
      'cloud=aws,name=fn-25',
    ]);
    expect(await all({ name: 'FN-*' }, 3)).toEqual([]);
    const ledger = await all({ group: 'ledger' }, 4);
    expect(ledger).toHaveLength(15);
    expect(ledger.every((key) => Number(key.slice(-2)) % 2 === 1)).toBe(true);
    expect(await all({ group: 'cards' }, 4)).toHaveLength(15);
    // A group name is matched whole, not as a part of another.
    expect(await all({ group: 'card' }, 4)).toEqual([]);
    expect(await all({ revision: { below: 2 } }, 6)).toHaveLength(20);
    expect(await all({ revision: { atLeast: 2 } }, 6)).toHaveLength(12);
    expect(await all({ group: 'ledger', revision: { below: 2 }, name: 'fn-1*' }, 2)).toEqual(
      ['11', '13', '15', '17', '19'].map((n) => `cloud=aws,name=fn-${n}`),
    );
  });

  it('counts workloads per scope against the current revision, with the groups each scope names', async () => {
    const counts = (await store.scopeCounts(2)).sort((a, b) => a.scope.localeCompare(b.scope));
    expect(counts).toEqual([
      { scope: 'scope-a', groups: ['cards', 'payments'], current: 5, behind: 10 },
      { scope: 'scope-b', groups: ['ledger'], current: 5, behind: 10 },
      { scope: 'scope-none', groups: [], current: 1, behind: 0 },
      { scope: 'scope-unknown', groups: undefined, current: 1, behind: 0 },
    ]);
    // A later sighting names the scope; the names of a scope never change (its id is their hash).
    await store.recordSightings([sighting('unnamed-scope', 2, 'scope-unknown', ['late'])]);
    await store.recordSightings([sighting('fn-00', 1, 'scope-a', ['other'])]);
    const named = await store.scopeCounts(3);
    expect(named.find((c) => c.scope === 'scope-unknown')).toMatchObject({ groups: ['late'], behind: 1 });
    expect(named.find((c) => c.scope === 'scope-a')?.groups).toEqual(['cards', 'payments']);
  });

  it('reads the same pages whichever plan serves a filter (many matches, many scopes)', async () => {
    const big = await factory.open();
    // 2,600 workloads (more than KEY_ORDER_ABOVE match bulk-*), spread over 70 scopes of group `wide`
    // (more than MAX_SCOPE_BRANCHES) and 2 of group `narrow`; every fifth one behind.
    const rows = Array.from({ length: 2600 }, (_, i) => {
      const name = `bulk-${String(i).padStart(4, '0')}`;
      return i % 100 === 0
        ? sighting(name, 3, `narrow-${i % 2}`, ['narrow'])
        : sighting(name, i % 5 === 0 ? 2 : 3, `wide-${i % 70}`, ['wide']);
    });
    await big.recordSightings(rows);
    const expected = (keep: (i: number) => boolean) => rows.filter((_, i) => keep(i)).map((row) => row.key);
    const walk = async (query: Omit<WorkloadQuery, 'after' | 'limit'>, limit: number) => {
      const keys: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await big.listWorkloads({ ...query, after, limit });
        keys.push(...page.map((row) => row.key));
        if (page.length < limit) return keys;
        after = page[page.length - 1]?.key;
      }
    };
    expect(await walk({ name: 'bulk-*' }, 500)).toEqual(expected(() => true));
    expect(await walk({ name: 'bulk-00*' }, 30)).toEqual(expected((i) => i < 100));
    expect(await walk({ group: 'wide' }, 400)).toEqual(expected((i) => i % 100 !== 0));
    expect(await walk({ group: 'narrow' }, 7)).toEqual(expected((i) => i % 100 === 0));
    expect(await walk({ revision: { below: 3 } }, 150)).toEqual(
      expected((i) => i % 100 !== 0 && i % 5 === 0),
    );
    expect(await walk({ revision: { atLeast: 3 } }, 900)).toEqual(
      expected((i) => i % 100 === 0 || i % 5 !== 0),
    );
    expect(await walk({ group: 'wide', revision: { below: 3 }, name: 'bulk-1*' }, 40)).toEqual(
      expected((i) => i >= 1000 && i < 2000 && i % 100 !== 0 && i % 5 === 0),
    );
  });

  it('flags a sequence number that jumps implausibly instead of counting it as missing records', async () => {
    const key = 'cloud=aws,name=fn-01';
    const victim = (id: string, seq: number) => numbered(id, 'sb-victim', seq, key);
    // 1, 2, 4 arrive: one missing.
    expect(await store.insertDenies([victim('v-1', 1), victim('v-2', 2), victim('v-4', 4)])).toEqual({
      stored: 3,
      duplicate: 0,
    });
    const row = async () => (await store.listWorkloads({ name: 'fn-01', limit: 1 }))[0];
    expect(await row()).toMatchObject({ missingRecords: 1, seqAnomalies: 0, sandboxes: 1 });
    const before = await store.metrics();
    // A forged record near Number.MAX_SAFE_INTEGER: stored (evidence), flagged, no missing records.
    expect(await store.insertDenies([victim('forged', 9_007_199_254_740_990)])).toEqual({
      stored: 1,
      duplicate: 0,
      seqAnomalies: 1,
    });
    expect(await row()).toMatchObject({ missingRecords: 1, seqAnomalies: 1 });
    const after = await store.metrics();
    expect(after.missingRecords).toBe(before.missingRecords);
    expect(after.seqAnomalies).toBe(before.seqAnomalies + 1);
    expect(after.denies).toBe(before.denies + 1);
    // Normal gaps still count, up to the bound: 4 → 4 + MAX_SEQ_JUMP is plausible, one beyond is not.
    await store.insertDenies([victim('v-far', 4 + MAX_SEQ_JUMP)]);
    expect(await row()).toMatchObject({ missingRecords: MAX_SEQ_JUMP, seqAnomalies: 1 });
    await store.insertDenies([victim('v-too-far', 4 + 2 * MAX_SEQ_JUMP + 1)]);
    expect(await row()).toMatchObject({ missingRecords: MAX_SEQ_JUMP, seqAnomalies: 2 });
    // A new sandbox starts from 0: its first record is judged against MAX_SEQ_JUMP. Within one batch
    // the numbers are taken in ascending order, so a batch may climb in steps whatever its order.
    const fresh = (id: string, seq: number) => numbered(id, 'sb-fresh', seq, key);
    const steps = await store.insertDenies([
      fresh('f-3', 3 * MAX_SEQ_JUMP),
      fresh('f-1', MAX_SEQ_JUMP),
      fresh('f-2', 2 * MAX_SEQ_JUMP),
    ]);
    expect(steps).toEqual({ stored: 3, duplicate: 0 });
    expect(await store.insertDenies([numbered('n-1', 'sb-new', MAX_SEQ_JUMP + 1, key)])).toEqual({
      stored: 1,
      duplicate: 0,
      seqAnomalies: 1,
    });
    expect(await row()).toMatchObject({ sandboxes: 3, seqAnomalies: 3 });
    // A replayed forged record is a duplicate: flagged once.
    expect(await store.insertDenies([victim('forged', 9_007_199_254_740_990)])).toEqual({
      stored: 0,
      duplicate: 1,
    });
  });

  it('fills the name column of workloads stored before version 4', async () => {
    const old = await factory.open();
    await old.recordSightings([sighting('before-v4', 1, 'scope-a', ['payments'])]);
    await old.close();
    const downgrade = [
      'DROP INDEX workloads_name',
      'DROP INDEX workloads_scope',
      'DROP INDEX workloads_scope_key',
      'DROP INDEX workloads_revision',
      'DROP TABLE workload_scopes',
      'ALTER TABLE workloads DROP COLUMN name',
      'ALTER TABLE sandboxes DROP COLUMN seq_anomalies',
      'DELETE FROM schema_migrations WHERE version = 4',
    ];
    if (engine === 'sqlite') {
      const db = new Database(factory.location());
      for (const sql of downgrade) db.exec(sql);
      db.close();
    } else {
      const client = new pg.Client({ connectionString: factory.location() });
      await client.connect();
      for (const sql of downgrade) await client.query(sql);
      await client.end();
    }
    const migrated = await factory.openReplica();
    expect(await migrated.schemaVersion()).toBe(5);
    const [row] = await migrated.listWorkloads({ name: 'before-*', limit: 10 });
    // Found by name; its scope's groups are named again by its next sighting.
    expect(row).toMatchObject({ key: 'cloud=aws,name=before-v4', groups: undefined, seqAnomalies: 0 });
  });
});
