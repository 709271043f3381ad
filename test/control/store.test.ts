// The storage interface, the same assertions on SQLite and PostgreSQL.
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlStore, DenyFilter, DenyRow } from '../../control/store/types.js';
import { ENGINES, type StoreFactory, storeFactory } from './harness.js';

function denyRow(id: string, overrides: Partial<DenyRow> = {}): DenyRow {
  const time = overrides.time ?? '2026-11-28T03:00:00.000Z';
  return {
    id,
    time,
    timeMs: Date.parse(time),
    workloadKey: 'cloud=aws,name=charge-card',
    workloadName: 'charge-card',
    invocationId: null,
    originPackage: null,
    severity: 'normal',
    groups: ',payments-prod,',
    host: 'exfil.attacker.test',
    ip: null,
    port: 443,
    kind: 'connect',
    decision: 'deny',
    mode: 'enforce',
    rule: 'default-deny',
    revision: 1,
    sandboxId: null,
    seq: null,
    receivedAt: new Date().toISOString(),
    record: JSON.stringify({ id }),
    ...overrides,
  };
}

describe.each(ENGINES)('control store on %s', (engine) => {
  let factory: StoreFactory;
  let store: ControlStore;

  beforeAll(async () => {
    factory = await storeFactory(engine);
    store = await factory.open();
  });
  afterAll(async () => {
    await factory?.cleanup();
  });

  it('migrates once and again without harm', async () => {
    expect(await store.schemaVersion()).toBe(5);
    await store.migrate();
    expect(await store.schemaVersion()).toBe(5);
  });

  it('numbers revisions N+1 even when appends race', async () => {
    const start = (await store.latestRevision())?.revision ?? 0;
    const numbers = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        store.appendRevision({
          createdAt: new Date().toISOString(),
          sources: [{ file: `p${i}.yaml`, text: `# ${i}` }],
          restoredFrom: null,
          summary: { i },
        }),
      ),
    );
    expect([...numbers].sort((a, b) => a - b)).toEqual(Array.from({ length: 8 }, (_, i) => start + i + 1));
    const latest = await store.latestRevision();
    expect(latest?.revision).toBe(start + 8);
    const listed = await store.listRevisions(3);
    expect(listed.map((r) => r.revision)).toEqual([start + 8, start + 7, start + 6]);
    const one = await store.getRevision(start + 1);
    expect(one?.sources).toHaveLength(1);
    expect(await store.getRevision(999_999)).toBeUndefined();
  });

  it('announces a stored revision to its listeners', async () => {
    const heard: number[] = [];
    const stop = store.onRevision((n) => heard.push(n));
    const n = await store.appendRevision({
      createdAt: new Date().toISOString(),
      sources: [],
      restoredFrom: null,
      summary: null,
    });
    stop();
    expect(heard).toContain(n);
  });

  it('stores deny records once per id and counts duplicates', async () => {
    const first = await store.insertDenies([denyRow('a-1'), denyRow('a-2'), denyRow('a-1')]);
    expect(first).toEqual({ stored: 2, duplicate: 1 });
    const replay = await store.insertDenies([denyRow('a-1'), denyRow('a-2')]);
    expect(replay).toEqual({ stored: 0, duplicate: 2 });
    expect((await store.metrics()).denies).toBe(2);
  });

  it('stores a large batch exactly once, duplicates across slices included', async () => {
    const rows = Array.from({ length: 2500 }, (_, i) =>
      denyRow(`big-${i % 2000}`, { sandboxId: 'big-sandbox', seq: (i % 2000) + 1 }),
    );
    const before = (await store.metrics()).denies;
    expect(await store.insertDenies(rows)).toEqual({ stored: 2000, duplicate: 500 });
    expect(await store.insertDenies(rows.slice(0, 300))).toEqual({ stored: 0, duplicate: 300 });
    expect((await store.metrics()).denies).toBe(before + 2000);
  });

  it('stores concurrent overlapping batches exactly once while revisions and sightings are written', async () => {
    // On a SQLite file the batches go to the writer thread while the main connection writes too.
    const batch = (offset: number) =>
      Array.from({ length: 1500 }, (_, i) =>
        denyRow(`race-${offset + i}`, { sandboxId: 'race-sandbox', seq: offset + i + 1 }),
      );
    const before = await store.metrics();
    const previous = (await store.latestRevision())?.revision ?? 0;
    const [a, b, c, revision] = await Promise.all([
      store.insertDenies(batch(0)),
      store.insertDenies(batch(1000)),
      store.insertDenies(batch(500)),
      store.appendRevision({
        createdAt: new Date().toISOString(),
        sources: [],
        restoredFrom: null,
        summary: null,
      }),
      store.recordSightings([
        {
          key: 'cloud=aws,name=race',
          identity: { cloud: 'aws', name: 'race' },
          seenAt: new Date().toISOString(),
          revision: 1,
          scope: 'race-scope',
        },
      ]),
    ]);
    expect(a.stored + b.stored + c.stored).toBe(2500);
    expect(a.duplicate + b.duplicate + c.duplicate).toBe(2000);
    expect(revision).toBe(previous + 1);
    const after = await store.metrics();
    expect(after.denies).toBe(before.denies + 2500);
    // Seqs 1..2500 all arrived once each: no gap, whatever the order the batches landed in.
    expect(after.missingRecords).toBe(before.missingRecords);
    const race = (await store.listWorkloads({ limit: 1000 })).find((w) => w.key === 'cloud=aws,name=race');
    expect(race?.scope).toBe('race-scope');
  });

  it('filters and pages deny records', async () => {
    const rows = Array.from({ length: 25 }, (_, i) =>
      denyRow(`f-${i}`, {
        host: i % 2 === 0 ? 'a.example.com' : 'b.other.test',
        rule: i % 5 === 0 ? 'p/deny[0]' : 'default-deny',
        groups: i % 3 === 0 ? ',ledger_prod,' : ',payments-prod,',
        time: new Date(Date.UTC(2026, 10, 1, 0, i)).toISOString(),
        workloadKey: 'cloud=aws,name=pager',
      }),
    );
    await store.insertDenies(rows);
    const base = { order: 'desc' as const, limit: 100, workload: 'cloud=aws,name=pager' };
    expect(await store.queryDenies(base)).toHaveLength(25);
    expect(await store.queryDenies({ ...base, destination: '*.example.com' })).toHaveLength(13);
    expect(await store.queryDenies({ ...base, destination: 'b.other.test' })).toHaveLength(12);
    expect(await store.queryDenies({ ...base, rule: 'p/deny[0]' })).toHaveLength(5);
    // `_` is not a wildcard in group names.
    expect(await store.queryDenies({ ...base, group: 'ledger_prod' })).toHaveLength(9);
    expect(await store.queryDenies({ ...base, group: 'ledgerXprod' })).toHaveLength(0);
    const since = Date.UTC(2026, 10, 1, 0, 10);
    const until = Date.UTC(2026, 10, 1, 0, 20);
    expect(await store.queryDenies({ ...base, sinceMs: since, untilMs: until })).toHaveLength(10);

    const seen: string[] = [];
    let before: number | undefined;
    for (;;) {
      const page = await store.queryDenies({ ...base, limit: 10, before });
      if (page.length === 0) break;
      seen.push(...page.map((p) => JSON.parse(p.record).id as string));
      before = page[page.length - 1]?.position;
    }
    expect(seen).toHaveLength(25);
    expect(new Set(seen).size).toBe(25);
    expect(seen[0]).toBe('f-24');
  });

  it('filters by workload name or glob, invocation, origin package, kind and severity', async () => {
    const rows = [
      denyRow('i-1', {
        workloadKey: 'cloud=aws,name=charge-card',
        workloadName: 'charge-card',
        invocationId: 'inv-a',
        originPackage: 'evil-dep@1.0.0',
        kind: 'dns',
      }),
      denyRow('i-2', {
        workloadKey: 'cloud=aws,name=charge-refund',
        workloadName: 'charge-refund',
        invocationId: 'inv-b',
        originPackage: '@scope/evil-dep@2.1.0',
        severity: 'high',
        kind: 'tamper',
      }),
      denyRow('i-3', {
        workloadKey: 'cloud=aws,name=charge[1]',
        workloadName: 'charge[1]',
        originPackage: 'evil-dep-tools@1.0.0',
      }),
      denyRow('i-4', { workloadKey: 'cloud=aws', workloadName: null, originPackage: 'evil_dep@1.0.0' }),
    ];
    await store.insertDenies(rows);
    const ids = async (filter: Partial<DenyFilter>) =>
      (await store.queryDenies({ order: 'desc', limit: 100, sinceMs: 0, ...filter, after: undefined }))
        .map((p) => JSON.parse(p.record).id as string)
        .filter((id) => id.startsWith('i-'));
    expect(await ids({ workloadName: 'charge-card' })).toEqual(['i-1']);
    expect(await ids({ workloadName: 'charge-*' })).toEqual(['i-2', 'i-1']);
    expect(await ids({ workloadName: 'charge-????' })).toEqual(['i-1']);
    expect(await ids({ workloadName: 'Charge-*' })).toEqual([]);
    // `[` is literal, not a character class; `%` and `_` are not wildcards either.
    expect(await ids({ workloadName: 'charge[1*' })).toEqual(['i-3']);
    expect(await ids({ workloadName: 'charge%' })).toEqual([]);
    expect(await ids({ invocation: 'inv-b' })).toEqual(['i-2']);
    expect(await ids({ package: 'evil-dep' })).toEqual(['i-1']);
    expect(await ids({ package: 'evil-dep@1.0.0' })).toEqual(['i-1']);
    expect(await ids({ package: 'evil-dep@2.*' })).toEqual([]);
    expect(await ids({ package: '@scope/evil-dep' })).toEqual(['i-2']);
    expect(await ids({ package: 'evil-dep*' })).toEqual(['i-3', 'i-1']);
    expect(await ids({ package: 'evil_dep' })).toEqual(['i-4']);
    expect(await ids({ kind: 'tamper' })).toEqual(['i-2']);
    expect(await ids({ severity: 'high' })).toEqual(['i-2']);
    expect(await ids({ severity: 'normal', workloadName: 'charge-*' })).toEqual(['i-1']);
  });

  it('fills the filter columns of records stored before version 2 from their JSON', async () => {
    // A database as version 1 left it: the version-2 columns and indexes taken away again.
    const old = await factory.open();
    await old.close();
    const record = {
      id: 'old-1',
      workload: { cloud: 'aws', name: 'charge-card' },
      invocationId: 'inv-old',
      origin: { package: 'evil-dep@1.0.0', file: '/var/task/x.js', line: 3 },
      severity: 'high',
    };
    const downgrade = [
      'DROP INDEX denies_workload_name',
      'DROP INDEX denies_invocation',
      ...['workload_name', 'invocation_id', 'origin_package', 'severity'].map(
        (column) => `ALTER TABLE denies DROP COLUMN ${column}`,
      ),
      'DELETE FROM schema_migrations WHERE version = 2',
      `INSERT INTO denies (id, time, time_ms, workload, groups, host, ip, port, kind, decision, mode, rule,
         revision, sandbox_id, seq, received_at, record)
       VALUES ('old-1', '2026-11-28T03:00:00.000Z', 1795834800000, 'cloud=aws,name=charge-card', '', 'x.test',
         NULL, 443, 'connect', 'deny', 'enforce', 'default-deny', 1, NULL, NULL, '2026-11-28T03:00:01.000Z',
         '${JSON.stringify(record)}')`,
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
    const found = async (filter: Partial<DenyFilter>) =>
      (await migrated.queryDenies({ order: 'desc', limit: 10, ...filter })).map(
        (row) => JSON.parse(row.record).id as string,
      );
    expect(await found({ workloadName: 'charge-*' })).toEqual(['old-1']);
    expect(await found({ invocation: 'inv-old' })).toEqual(['old-1']);
    expect(await found({ package: 'evil-dep' })).toEqual(['old-1']);
    expect(await found({ severity: 'high' })).toEqual(['old-1']);
  });

  it('adds rule hit counts per day, revision and rule, and sums them from a day on', async () => {
    await store.addHits([
      { day: '2026-11-01', revision: 1, rule: 'p/allow[0]', hits: 5 },
      { day: '2026-11-01', revision: 1, rule: 'p/allow[1]', hits: 1 },
      { day: '2026-11-20', revision: 2, rule: 'p/allow[0]', hits: 2 },
    ]);
    await store.addHits([{ day: '2026-11-20', revision: 2, rule: 'p/allow[0]', hits: 3 }]);
    await store.addHits([]);
    const totals = (since: string) =>
      store
        .hitTotals(since)
        .then((rows) => rows.sort((a, b) => a.revision - b.revision || a.rule.localeCompare(b.rule)));
    expect(await totals('2026-10-01')).toEqual([
      { revision: 1, rule: 'p/allow[0]', hits: 5, lastDay: '2026-11-01' },
      { revision: 1, rule: 'p/allow[1]', hits: 1, lastDay: '2026-11-01' },
      { revision: 2, rule: 'p/allow[0]', hits: 5, lastDay: '2026-11-20' },
    ]);
    expect(await totals('2026-11-02')).toEqual([
      { revision: 2, rule: 'p/allow[0]', hits: 5, lastDay: '2026-11-20' },
    ]);
    // Counts beyond 32 bits add up (BIGINT on PostgreSQL).
    await store.addHits([{ day: '2026-11-21', revision: 3, rule: 'big', hits: 2 ** 40 }]);
    await store.addHits([{ day: '2026-11-21', revision: 3, rule: 'big', hits: 2 ** 40 }]);
    expect((await totals('2026-11-21'))[0]?.hits).toBe(2 ** 41);
  });

  it('counts sequence gaps per sandbox, not duplicates', async () => {
    const workloadKey = 'cloud=aws,name=gappy';
    await store.recordSightings([
      {
        key: workloadKey,
        identity: { cloud: 'aws', name: 'gappy' },
        seenAt: new Date().toISOString(),
        revision: 1,
        scope: 's',
      },
    ]);
    const sandboxRow = (seq: number) => denyRow(`g-${seq}`, { sandboxId: 'sb-1', seq, workloadKey });
    // 1, 2, 4, 7 arrive: 3, 5, 6 never do.
    await store.insertDenies([sandboxRow(1), sandboxRow(2)]);
    await store.insertDenies([sandboxRow(4), sandboxRow(7), sandboxRow(2)]);
    const workload = (await store.listWorkloads({ limit: 1000 })).find((w) => w.key === workloadKey);
    expect(workload?.missingRecords).toBe(3);
    expect(workload?.sandboxes).toBe(1);
    await store.insertDenies([sandboxRow(3)]);
    const after = (await store.listWorkloads({ limit: 1000 })).find((w) => w.key === workloadKey);
    expect(after?.missingRecords).toBe(2);
    expect((await store.metrics()).missingRecords).toBeGreaterThanOrEqual(2);
  });

  it('keeps the inventory: first seen stays, last seen and revision move', async () => {
    const key = 'cloud=aws,name=inv';
    await store.recordSightings([
      {
        key,
        identity: { cloud: 'aws', name: 'inv' },
        seenAt: '2026-11-01T00:00:00.000Z',
        revision: 1,
        scope: 'a',
      },
    ]);
    await store.recordSightings([
      {
        key,
        identity: { cloud: 'aws', name: 'inv' },
        seenAt: '2026-11-02T00:00:00.000Z',
        revision: 2,
        scope: 'b',
      },
    ]);
    const row = (await store.listWorkloads({ limit: 1000 })).find((w) => w.key === key);
    expect(row).toMatchObject({
      firstSeen: '2026-11-01T00:00:00.000Z',
      lastSeen: '2026-11-02T00:00:00.000Z',
      revision: 2,
    });
  });

  it('keeps tokens and signing keys', async () => {
    await store.createToken({
      id: '0123456789abcdef',
      hash: 'ab'.repeat(32),
      scope: 'admin',
      name: null,
      createdAt: 'now',
    });
    expect(await store.findToken('0123456789abcdef')).toMatchObject({
      scope: 'admin',
      hash: 'ab'.repeat(32),
    });
    expect(await store.findToken('ffffffffffffffff')).toBeUndefined();
    await store.rememberSigningKey({ keyId: 'k1', publicKeyPem: 'PEM', firstUsed: '2026-01-01' });
    await store.rememberSigningKey({ keyId: 'k1', publicKeyPem: 'PEM', firstUsed: '2026-02-01' });
    expect(await store.listSigningKeys()).toEqual([
      { keyId: 'k1', publicKeyPem: 'PEM', firstUsed: '2026-01-01' },
    ]);
  });
});
