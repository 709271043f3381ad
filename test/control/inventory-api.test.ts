// Inventory hygiene (issue 17) over real HTTP on loopback, on SQLite and PostgreSQL: identities
// beyond IDENTITY_BOUNDS are refused, GET /v1/workloads pages with cursors and filters and carries
// the propagation summary, and a forged sequence number is flagged instead of counted as missing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IDENTITY_BOUNDS } from '../../policy/identity.js';
import { denyRecord, LEDGER_GROUP, PAYMENTS_V1, PAYMENTS_V2 } from './fixtures.js';
import { type Api, ENGINES, type StoreFactory, startApi, storeFactory } from './harness.js';

interface WorkloadsAnswer {
  revision: number;
  workloads: {
    key: string;
    groups: string[];
    revision: number;
    current: boolean;
    missingRecords: number;
    seqAnomalies: number;
    sandboxes: number;
  }[];
  nextCursor?: string;
  groups?: { name: string; workloads: number; current: number; behind: number }[];
  groupsCountedAt?: string;
}

const payments = (i: number) =>
  `cloud=aws,name=pay-${String(i).padStart(2, '0')},tag.app=payments,tag.env=prod`;
const ledger = (i: number) => `cloud=aws,name=ledger-${String(i).padStart(2, '0')}`;

describe.each(ENGINES)('inventory over the API on %s', (engine) => {
  let factory: StoreFactory;
  let api: Api;

  const fetchBundle = (identity: string) =>
    api.call(`/v1/bundle?workload=${encodeURIComponent(identity)}`, { token: api.workload });
  const workloads = async (query = ''): Promise<WorkloadsAnswer> => {
    const response = await api.call(`/v1/workloads${query}`);
    expect(response.status, await response.clone().text()).toBe(200);
    return (await response.json()) as WorkloadsAnswer;
  };
  const apply = (text: string) =>
    api.call('/v1/policy', { method: 'PUT', body: text, headers: { 'content-type': 'application/yaml' } });

  beforeAll(async () => {
    factory = await storeFactory(engine);
    api = await startApi(factory);
    expect((await apply(`${PAYMENTS_V1}---\n${LEDGER_GROUP}`)).status).toBe(200);
    // 15 payments workloads and 10 ledger ones.
    for (let i = 0; i < 15; i++) expect((await fetchBundle(payments(i))).status).toBe(200);
    for (let i = 0; i < 10; i++) expect((await fetchBundle(ledger(i))).status).toBe(200);
  });
  afterAll(async () => {
    await api?.server.close();
    await factory?.cleanup();
  });

  describe('identity bounds', () => {
    it('refuses a bundle fetch beyond a bound with 400 naming it, and keeps it out of the inventory', async () => {
      const cases: [string, number][] = [
        [
          `cloud=aws,name=big,tag.note=${'v'.repeat(IDENTITY_BOUNDS.valueLength + 1)}`,
          IDENTITY_BOUNDS.valueLength,
        ],
        [`cloud=aws,name=big,tag.${'k'.repeat(IDENTITY_BOUNDS.keyLength)}=v`, IDENTITY_BOUNDS.keyLength],
        [
          `cloud=aws,name=big,${Array.from({ length: IDENTITY_BOUNDS.attributes }, (_, i) => `a${i}=v`).join(',')}`,
          IDENTITY_BOUNDS.attributes,
        ],
        [
          `cloud=aws,name=big,${Array.from({ length: 30 }, (_, i) => `tag.k${i}=${'v'.repeat(250)}`).join(',')}`,
          IDENTITY_BOUNDS.textLength,
        ],
      ];
      for (const [identity, bound] of cases) {
        const response = await fetchBundle(identity);
        expect(response.status).toBe(400);
        const body = (await response.json()) as { error: string; message: string };
        expect(body.message).toContain(String(bound));
      }
      expect((await workloads('?name=big')).workloads).toEqual([]);
      // At the bounds exactly: accepted.
      const atBounds = `cloud=aws,name=big,tag.${'k'.repeat(IDENTITY_BOUNDS.keyLength - 4)}=${'v'.repeat(IDENTITY_BOUNDS.valueLength)}`;
      expect((await fetchBundle(atBounds)).status).toBe(200);
      expect((await workloads('?name=big')).workloads).toHaveLength(1);
    });

    it('rejects a deny record whose workload is beyond a bound, naming it, and stores the rest', async () => {
      const response = await api.call('/v1/reports', {
        token: api.workload,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          records: [
            denyRecord('bounds-ok'),
            denyRecord('bounds-value', {
              workload: { cloud: 'aws', name: 'x'.repeat(IDENTITY_BOUNDS.valueLength + 1) },
            }),
            denyRecord('bounds-text', {
              workload: Object.fromEntries(
                Array.from({ length: 30 }, (_, i) => [`tag.k${i}`, 'v'.repeat(IDENTITY_BOUNDS.valueLength)]),
              ),
            }),
          ],
        }),
      });
      expect(response.status).toBe(202);
      const body = (await response.json()) as {
        stored: number;
        rejected: number;
        errors: { index: number; reason: string }[];
      };
      expect(body).toMatchObject({ stored: 1, rejected: 2 });
      expect(body.errors[0]?.reason).toContain(String(IDENTITY_BOUNDS.valueLength));
      expect(body.errors[1]?.reason).toContain(String(IDENTITY_BOUNDS.textLength));
    });
  });

  describe('GET /v1/workloads', () => {
    it('pages through every workload in key order with cursors; the summary comes with the first page', async () => {
      const first = await workloads('?limit=10');
      expect(first.workloads).toHaveLength(10);
      expect(first.nextCursor).toEqual(expect.any(String));
      expect(first.groups?.find((g) => g.name === 'payments-prod')).toEqual({
        name: 'payments-prod',
        workloads: 15,
        current: 15,
        behind: 0,
      });
      expect(first.groups?.find((g) => g.name === 'ledger')).toMatchObject({ workloads: 10, current: 10 });
      expect(Date.parse(first.groupsCountedAt ?? '')).toBeGreaterThan(0);
      const keys = first.workloads.map((w) => w.key);
      let cursor = first.nextCursor;
      while (cursor) {
        const page = await workloads(`?limit=10&cursor=${encodeURIComponent(cursor)}`);
        expect(page.groups).toBeUndefined();
        keys.push(...page.workloads.map((w) => w.key));
        cursor = page.nextCursor;
      }
      expect(keys).toHaveLength(26); // 15 + 10 + the identity at the bounds
      expect(new Set(keys).size).toBe(26);
      expect([...keys].sort()).toEqual(keys);
      // Without limit: 100 a page, so all of them and no cursor.
      const whole = await workloads();
      expect(whole.workloads).toHaveLength(26);
      expect(whole.nextCursor).toBeUndefined();
      const pay = whole.workloads.find((w) => w.key === payments(3));
      expect(pay).toMatchObject({
        groups: ['payments-prod'],
        current: true,
        missingRecords: 0,
        seqAnomalies: 0,
      });
    });

    it('answers only the summary with limit=0, and refuses bad paging input', async () => {
      const summary = await workloads('?limit=0');
      expect(summary.workloads).toEqual([]);
      expect(summary.nextCursor).toBeUndefined();
      expect(summary.groups?.length).toBeGreaterThan(0);
      for (const query of [
        '?limit=1001',
        '?limit=-1',
        '?cursor=nonsense',
        '?cursor=k',
        '?name=%20',
        '?behind=maybe',
      ]) {
        const response = await api.call(`/v1/workloads${query}`);
        expect(response.status, query).toBe(400);
        expect(((await response.json()) as { error: string }).error).toBe('bad-request');
      }
    });

    it('filters by SmartGroup, name glob and behind, and pages the filtered set', async () => {
      expect((await workloads('?group=ledger')).workloads.map((w) => w.key)).toEqual(
        Array.from({ length: 10 }, (_, i) => ledger(i)),
      );
      const byName = await workloads('?name=pay-1*&limit=3');
      expect(byName.workloads.map((w) => w.key)).toEqual([payments(10), payments(11), payments(12)]);
      const rest = await workloads(`?name=pay-1*&limit=3&cursor=${byName.nextCursor}`);
      expect(rest.workloads.map((w) => w.key)).toEqual([payments(13), payments(14)]);
      expect(rest.nextCursor).toBeUndefined();
      expect((await workloads('?behind=true')).workloads).toEqual([]);
      expect((await workloads('?group=nope')).workloads).toEqual([]);
    });

    it('counts a workload behind until it fetches the new revision', async () => {
      expect((await apply(`${PAYMENTS_V2}---\n${LEDGER_GROUP}`)).status).toBe(200);
      // A new revision: the summary is counted again at once.
      const after = await workloads('?limit=0');
      expect(after.groups?.find((g) => g.name === 'payments-prod')).toEqual({
        name: 'payments-prod',
        workloads: 15,
        current: 0,
        behind: 15,
      });
      expect((await workloads('?behind=true&group=payments-prod')).workloads).toHaveLength(15);
      expect((await fetchBundle(payments(0))).status).toBe(200);
      expect((await workloads('?behind=false&group=payments-prod')).workloads.map((w) => w.key)).toEqual([
        payments(0),
      ]);
      // The summary of one revision is counted at most once a second.
      let current = 0;
      for (let i = 0; i < 40 && current === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        current = (await workloads('?limit=0')).groups?.find((g) => g.name === 'payments-prod')?.current ?? 0;
      }
      expect(current).toBe(1);
    });
  });

  describe('sequence numbers', () => {
    it('flags a forged seq instead of counting 9,007,199,254,740,990 missing records; normal gaps still count', async () => {
      const victim = { cloud: 'aws', name: 'pay-07', 'tag.app': 'payments', 'tag.env': 'prod' };
      const report = async (records: unknown[]) => {
        const response = await api.call('/v1/reports', {
          token: api.workload,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ records }),
        });
        expect(response.status).toBe(202);
        return response.json();
      };
      const numbered = (id: string, seq: number) =>
        denyRecord(id, { workload: victim, sandboxId: 'victim-sandbox', seq });
      expect(await report([numbered('s-1', 1), numbered('s-2', 2), numbered('s-5', 5)])).toEqual({
        stored: 3,
        duplicate: 0,
        rejected: 0,
      });
      const row = async () => (await workloads('?name=pay-07')).workloads[0];
      expect(await row()).toMatchObject({ missingRecords: 2, seqAnomalies: 0 });
      expect(await report([numbered('forged', 9_007_199_254_740_990)])).toEqual({
        stored: 1,
        duplicate: 0,
        rejected: 0,
        seqAnomalies: 1,
      });
      expect(await row()).toMatchObject({ missingRecords: 2, seqAnomalies: 1, sandboxes: 1 });
      // The record is kept as evidence.
      const denies = (await (await api.call('/v1/denies?limit=1000')).json()) as {
        records: { id: string }[];
      };
      expect(denies.records.some((r) => r.id === 'forged')).toBe(true);
      // An ordinary gap after it still counts.
      await report([numbered('s-9', 9)]);
      expect(await row()).toMatchObject({ missingRecords: 5, seqAnomalies: 1 });
      const metrics = await (await api.call('/metrics')).text();
      expect(metrics).toMatch(/^bulkhead_report_seq_anomalies 1$/m);
      expect(metrics).toMatch(/^bulkhead_report_records_missing 5$/m);
    });
  });
});
