// The control API over real HTTP on loopback, the same suite on SQLite and PostgreSQL.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTrustedKeys, verifyBundle } from '../../policy/index.js';
import {
  BAD_PORT,
  CHARGE_CARD,
  denyRecord,
  LEDGER_GROUP,
  LEDGER_WRITER,
  PAYMENTS_V1,
  PAYMENTS_V2,
  REFUND,
} from './fixtures.js';
import {
  type Api,
  ENGINES,
  type StoreFactory,
  startApi,
  storeFactory,
  waitForParkedLongPolls,
} from './harness.js';

function putPolicy(api: Api, text: string, query = '') {
  return api.call(`/v1/policy${query}`, {
    method: 'PUT',
    body: text,
    headers: { 'content-type': 'application/yaml' },
  });
}

const record = denyRecord;

describe.each(ENGINES)('control API on %s', (engine) => {
  let factory: StoreFactory;
  let api: Api;

  beforeAll(async () => {
    factory = await storeFactory(engine);
    api = await startApi(factory);
  });
  afterAll(async () => {
    await api?.server.close();
    await factory?.cleanup();
  });

  describe('authentication', () => {
    it('answers /healthz without a token', async () => {
      const response = await api.call('/healthz', { token: null });
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ status: 'ok', engine });
    });

    it('refuses a missing or wrong token with 401 and a reason', async () => {
      const missing = await api.call('/v1/workloads', { token: null });
      expect(missing.status).toBe(401);
      expect(await missing.json()).toMatchObject({
        error: 'unauthorized',
        message: expect.stringContaining('Authorization'),
      });
      const forged = await api.call('/v1/workloads', { token: `${api.admin.slice(0, -4)}AAAA` });
      expect(forged.status).toBe(401);
      expect(await forged.json()).toMatchObject({ error: 'unauthorized', message: 'invalid token' });
      const garbage = await api.call('/v1/workloads', { token: 'not-a-token' });
      expect(garbage.status).toBe(401);
    });

    it('refuses a workload token on admin routes with 403', async () => {
      const response = await api.call('/v1/denies', { token: api.workload });
      expect(response.status).toBe(403);
      expect(await response.json()).toMatchObject({ error: 'forbidden' });
      expect((await api.call('/metrics', { token: api.workload })).status).toBe(403);
    });

    it('serves /v1/keys to any token: the key that signs bundles', async () => {
      const response = await api.call('/v1/keys', { token: api.workload });
      expect(response.status).toBe(200);
      const { keys } = (await response.json()) as {
        keys: { keyid: string; publicKey: string; active: boolean }[];
      };
      expect(keys.filter((k) => k.active)).toHaveLength(1);
      expect(keys[0]?.keyid).toBe(api.server.key.keyId);
    });

    it('describes every route in /openapi.json', async () => {
      const response = await api.call('/openapi.json', { token: null });
      const doc = (await response.json()) as { openapi: string; paths: Record<string, unknown> };
      expect(doc.openapi).toMatch(/^3\./);
      for (const path of [
        '/v1/bundle',
        '/v1/reports',
        '/v1/policy',
        '/v1/revisions',
        '/v1/revisions/{n}/restore',
        '/v1/denies',
        '/v1/workloads',
        '/v1/blast-radius',
        '/v1/keys',
        '/healthz',
        '/metrics',
      ]) {
        expect(doc.paths, path).toHaveProperty([path]);
      }
    });
  });

  describe('policy', () => {
    it('answers 404 for a bundle before any policy exists', async () => {
      const response = await api.call(`/v1/bundle?workload=${encodeURIComponent(CHARGE_CARD)}`, {
        token: api.workload,
      });
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({ error: 'no-policy' });
    });

    it('refuses an invalid policy with file:line:column errors naming the request file', async () => {
      const response = await putPolicy(api, BAD_PORT, '?file=payments.yaml');
      expect(response.status).toBe(400);
      const body = (await response.json()) as {
        message: string;
        errors: { file: string; line: number; column: number }[];
      };
      expect(body.errors.length).toBeGreaterThan(0);
      expect(body.errors[0]).toMatchObject({ file: 'payments.yaml', line: 15 });
      expect(body.message).toMatch(/^payments\.yaml:15:\d+ /);
      expect((await api.call('/v1/revisions')).status).toBe(200);
      const revisions = (await (await api.call('/v1/revisions')).json()) as { revisions: unknown[] };
      expect(revisions.revisions).toHaveLength(0);
    });

    it('keeps per-file positions when sources come as JSON', async () => {
      const response = await api.call('/v1/policy', {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          sources: [
            { file: 'ok.yaml', text: LEDGER_GROUP },
            { file: 'bad.yaml', text: BAD_PORT },
          ],
        }),
      });
      expect(response.status).toBe(400);
      const body = (await response.json()) as { errors: { file: string }[] };
      expect(body.errors.every((e) => e.file === 'bad.yaml')).toBe(true);
    });

    it('validates and diffs without storing on dryRun', async () => {
      const response = await putPolicy(api, PAYMENTS_V1, '?dryRun=true');
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ dryRun: true, revision: 0 });
      const revisions = (await (await api.call('/v1/revisions')).json()) as { revisions: unknown[] };
      expect(revisions.revisions).toHaveLength(0);
    });

    it('stores revision 1, then 2, and restore makes a higher one', async () => {
      const first = await putPolicy(api, PAYMENTS_V1, '?file=payments.yaml');
      expect(first.status).toBe(200);
      expect(await first.json()).toMatchObject({ revision: 1, previousRevision: 0, dryRun: false });
      const same = await putPolicy(api, PAYMENTS_V1, '?file=payments.yaml');
      expect(await same.json()).toMatchObject({ revision: 1, unchanged: true });

      const current = (await (await api.call('/v1/policy')).json()) as {
        revision: number;
        sources: { file: string }[];
      };
      expect(current.revision).toBe(1);
      expect(current.sources[0]?.file).toBe('payments.yaml');
    });
  });

  describe('bundles', () => {
    const bundlePath = (identity: string, extra = '') =>
      `/v1/bundle?workload=${encodeURIComponent(identity)}${extra}`;

    it('signs a bundle a workload can verify with the published key, scoped to it', async () => {
      const response = await api.call(bundlePath(CHARGE_CARD), { token: api.workload });
      expect(response.status).toBe(200);
      expect(response.headers.get('etag')).toMatch(/^"r1-/);
      expect(response.headers.get('x-bulkhead-revision')).toBe('1');
      const envelope = await response.text();
      const trustedKeys = loadTrustedKeys([api.server.key.publicKeyPem]);
      const identity = { cloud: 'aws', name: 'charge-card', 'tag.app': 'payments', 'tag.env': 'prod' };
      const verified = verifyBundle(envelope, { trustedKeys, workload: identity });
      expect(verified.ok).toBe(true);
      if (verified.ok) {
        expect(verified.payload.revision).toBe(1);
        expect(verified.payload.policy.scope.groups.map((g) => g.name)).toEqual(['payments-prod']);
      }
    });

    it('answers 304 to a matching If-None-Match', async () => {
      const first = await api.call(bundlePath(REFUND), { token: api.workload });
      const etag = first.headers.get('etag') ?? '';
      const again = await api.call(bundlePath(REFUND), {
        token: api.workload,
        headers: { 'if-none-match': etag },
      });
      expect(again.status).toBe(304);
      expect(again.headers.get('etag')).toBe(etag);
    });

    it('rejects a malformed identity with 400', async () => {
      const response = await api.call('/v1/bundle?workload=novalue', { token: api.workload });
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ error: 'bad-request' });
      expect((await api.call('/v1/bundle', { token: api.workload })).status).toBe(400);
      expect((await api.call(bundlePath(CHARGE_CARD, '&wait=-1'), { token: api.workload })).status).toBe(400);
    });

    it('wakes a long-poll the moment a newer revision is applied', async () => {
      const first = await api.call(bundlePath(CHARGE_CARD), { token: api.workload });
      const etag = first.headers.get('etag') ?? '';
      const parked = api.call(bundlePath(CHARGE_CARD, '&wait=30'), {
        token: api.workload,
        headers: { 'if-none-match': etag },
      });
      await waitForParkedLongPolls(api, 1);
      const applied = await putPolicy(api, PAYMENTS_V2, '?file=payments.yaml');
      const applyBody = (await applied.json()) as {
        revision: number;
        diff: { changed: boolean; groups: { group: string; reachable: { destination: string }[] }[] };
        affectedWorkloads: { count: number; workloads: { key: string }[] };
      };
      expect(applyBody.revision).toBe(2);
      const paymentsDiff = applyBody.diff.groups.find((g) => g.group === 'payments-prod');
      expect(paymentsDiff?.reachable.map((r) => r.destination).join(' ')).toContain('hooks.slack.com');
      const woken = await parked;
      expect(woken.status).toBe(200);
      expect(woken.headers.get('x-bulkhead-revision')).toBe('2');
      expect(applyBody.affectedWorkloads.workloads.map((w) => w.key)).toContain(
        'cloud=aws,name=charge-card,tag.app=payments,tag.env=prod',
      );
    });

    it('answers a parked long-poll with its new scope when an apply changes the SmartGroups', async () => {
      await putPolicy(api, PAYMENTS_V2, '?file=payments.yaml');
      const first = await api.call(bundlePath(CHARGE_CARD), { token: api.workload });
      const parked = api.call(bundlePath(CHARGE_CARD, '&wait=30'), {
        token: api.workload,
        headers: { 'if-none-match': first.headers.get('etag') ?? '' },
      });
      await waitForParkedLongPolls(api, 1);
      // A second SmartGroup selects charge-card too: its scope becomes both groups.
      const cards = LEDGER_GROUP.replaceAll('ledger', 'cards').replace('"cards-*"', '"charge-*"');
      const applied = await putPolicy(api, `${PAYMENTS_V2}---\n${cards}`, '?file=payments.yaml');
      expect(applied.status).toBe(200);
      const { affectedWorkloads } = (await applied.json()) as {
        affectedWorkloads: { workloads: { key: string }[] };
      };
      expect(affectedWorkloads.workloads.map((w) => w.key)).toContain(CHARGE_CARD);
      const woken = await parked;
      expect(woken.status).toBe(200);
      const trustedKeys = loadTrustedKeys([api.server.key.publicKeyPem]);
      const identity = { cloud: 'aws', name: 'charge-card', 'tag.app': 'payments', 'tag.env': 'prod' };
      const verified = verifyBundle(await woken.text(), { trustedKeys, workload: identity });
      expect(verified.ok).toBe(true);
      if (verified.ok) {
        expect(verified.payload.policy.scope.groups.map((g) => g.name).sort()).toEqual([
          'cards',
          'payments-prod',
        ]);
      }
    });

    it('answers a long-poll with 304 when nothing changes before the wait ends', async () => {
      const first = await api.call(bundlePath(REFUND), { token: api.workload });
      const etag = first.headers.get('etag') ?? '';
      const response = await api.call(bundlePath(REFUND, '&wait=1'), {
        token: api.workload,
        headers: { 'if-none-match': etag },
      });
      expect(response.status).toBe(304);
    });

    it('adds a new workload to the inventory and governs it by every matching SmartGroup', async () => {
      await putPolicy(api, `${PAYMENTS_V2}---\n${LEDGER_GROUP}`, '?file=all.yaml');
      const response = await api.call(bundlePath(LEDGER_WRITER), { token: api.workload });
      expect(response.status).toBe(200);
      const body = (await (await api.call('/v1/workloads')).json()) as {
        revision: number;
        workloads: { key: string; groups: string[]; revision: number; current: boolean }[];
        groups: { name: string; workloads: number; current: number }[];
      };
      const ledger = body.workloads.find((w) => w.key === LEDGER_WRITER);
      expect(ledger).toMatchObject({ groups: ['ledger'], revision: body.revision, current: true });
      expect(body.groups.find((g) => g.name === 'ledger')).toMatchObject({ workloads: 1, current: 1 });
      const payments = body.groups.find((g) => g.name === 'payments-prod');
      expect(payments?.workloads).toBe(2);
    });

    it('restores an older revision as a new, higher one', async () => {
      const before = (await (await api.call('/v1/revisions')).json()) as { current: number };
      const restored = await api.call('/v1/revisions/1/restore', { method: 'POST' });
      expect(restored.status).toBe(200);
      expect(await restored.json()).toMatchObject({ revision: before.current + 1, restoredFrom: 1 });
      const policy = (await (await api.call('/v1/policy')).json()) as {
        revision: number;
        restoredFrom: number;
      };
      expect(policy).toMatchObject({ revision: before.current + 1, restoredFrom: 1 });
      expect((await api.call('/v1/revisions/999/restore', { method: 'POST' })).status).toBe(404);
    });
  });

  describe('reports and denies', () => {
    const post = (body: unknown, token = api.workload) =>
      api.call('/v1/reports', {
        method: 'POST',
        token,
        headers: { 'content-type': 'application/json' },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });

    it('stores a batch, rejects bad records by index, and stores nothing twice on replay', async () => {
      const batch = {
        records: [record('r-1'), record('r-2'), { ...record('r-3'), destination: { port: 99999 } }, 'junk'],
      };
      const first = await post(batch);
      expect(first.status).toBe(202);
      const body = (await first.json()) as {
        stored: number;
        duplicate: number;
        rejected: number;
        errors: { index: number }[];
      };
      expect(body).toMatchObject({ stored: 2, duplicate: 0, rejected: 2 });
      expect(body.errors.map((e) => e.index)).toEqual([2, 3]);
      const replay = await post(batch);
      expect(await replay.json()).toMatchObject({ stored: 0, duplicate: 2, rejected: 2 });
    });

    it('refuses an oversized batch and a malformed body with 4xx', async () => {
      const tooMany = { records: Array.from({ length: 5001 }, (_, i) => record(`many-${i}`)) };
      expect((await post(tooMany)).status).toBe(400);
      expect((await post('{"records": [')).status).toBe(400);
      expect((await post({ nope: [] })).status).toBe(400);
      const huge = { records: [record('huge', { rule: 'x'.repeat(9 * 1024 * 1024) })] };
      expect((await post(huge)).status).toBe(413);
    });

    it('stores aggregate records (a flood counted per pattern) verbatim; bounds and checks their summary', async () => {
      const aggregate = {
        pattern: '*.attacker.test',
        distinct: 99_000,
        sample: ['x1.exfil.attacker.test', 'x2.exfil.attacker.test'],
      };
      const flood = record('agg-1', {
        kind: 'dns',
        count: 99_000,
        rule: 'flood',
        lastTime: '2026-11-28T03:00:02.500Z',
        destination: { host: 'x1.exfil.attacker.test', protocol: 'dns' },
        origin: { file: '/var/task/exfil.js', line: 12 },
        aggregate,
      });
      const capped = record('agg-2', {
        rule: 'flood',
        count: 70_000,
        destination: { ip: '203.0.113.7', port: 1024, protocol: 'tcp' },
        aggregate: { pattern: '203.0.113.7:1024-65535', distinct: 50_000, distinctCapped: true, sample: [] },
      });
      const bad = [
        record('agg-bad-1', { aggregate: { ...aggregate, distinct: 5 } }), // more than count
        record('agg-bad-2', { count: 10, aggregate: { pattern: '*', distinct: 1, sample: ['a', 'b'] } }),
        record('agg-bad-3', { aggregate: { pattern: '', distinct: 0, sample: [] } }),
        record('agg-bad-4', { aggregate: 'everything' }),
        record('agg-bad-5', { count: 3, aggregate: { pattern: '*', distinct: 1, sample: 'a' } }),
      ];
      const response = await post({ records: [flood, capped, ...bad] });
      expect(response.status).toBe(202);
      const body = (await response.json()) as {
        stored: number;
        rejected: number;
        errors: { index: number; reason: string }[];
      };
      expect(body).toMatchObject({ stored: 2, rejected: 5 });
      expect(body.errors.map((e) => e.index)).toEqual([2, 3, 4, 5, 6]);
      expect(body.errors[0]?.reason).toMatch(/aggregate\.distinct/);
      const stored = (await (await api.call('/v1/denies?rule=flood')).json()) as {
        records: Record<string, unknown>[];
      };
      const byId = new Map(stored.records.map((r) => [r.id, r]));
      expect(byId.get('agg-1')).toMatchObject({
        count: 99_000,
        aggregate,
        origin: { file: '/var/task/exfil.js', line: 12 },
      });
      expect(byId.get('agg-2')).toMatchObject({ aggregate: { distinctCapped: true, sample: [] } });
      // Found by the destination filter like any record of the domain.
      const found = (await (await api.call('/v1/denies?rule=flood&destination=*.attacker.test')).json()) as {
        records: { id: string }[];
      };
      expect(found.records.map((r) => r.id)).toEqual(['agg-1']);
    });

    it('refuses a batch with an oversized aggregate sample with 400 (a hostile client, before any record is read)', async () => {
      const many = record('agg-many', {
        count: 1000,
        aggregate: { pattern: '*', distinct: 1000, sample: Array.from({ length: 17 }, (_, i) => `v${i}`) },
      });
      expect((await post({ records: [many] })).status).toBe(400);
      const long = record('agg-long', {
        count: 10,
        aggregate: { pattern: '*', distinct: 1, sample: ['x'.repeat(513)] },
      });
      expect((await post({ records: [long] })).status).toBe(400);
      const longPattern = record('agg-long-pattern', {
        aggregate: { pattern: 'p'.repeat(513), distinct: 1, sample: [] },
      });
      expect((await post({ records: [longPattern] })).status).toBe(400);
      const denies = (await (await api.call('/v1/denies?rule=default-deny&limit=1000')).json()) as {
        records: { id: string }[];
      };
      expect(denies.records.some((r) => r.id.startsWith('agg-'))).toBe(false);
    });

    it('counts records that never arrived from sequence numbers', async () => {
      const bySeq = (seq: number) => record(`seq-${seq}`, { sandboxId: 'sandbox-a', seq });
      await post({ records: [bySeq(1), bySeq(2), bySeq(5)] });
      const workloads = (await (await api.call('/v1/workloads')).json()) as {
        workloads: { key: string; missingRecords: number }[];
      };
      const card = workloads.workloads.find(
        (w) => w.key === 'cloud=aws,name=charge-card,tag.app=payments,tag.env=prod',
      );
      expect(card?.missingRecords).toBe(2);
      const metrics = await (await api.call('/metrics')).text();
      expect(metrics).toMatch(/^bulkhead_report_records_missing 2$/m);
    });

    it('filters denies by workload, group, destination, rule, decision and time', async () => {
      // Groups are those of the revision current when a record arrives.
      await putPolicy(api, `${PAYMENTS_V2}---\n${LEDGER_GROUP}`, '?file=all.yaml');
      await post({
        records: [
          record('q-1', { destination: { host: 'a.evil.test', port: 443 }, rule: 'payments-egress/deny[0]' }),
          record('q-2', {
            destination: { host: 'b.evil.test', port: 443 },
            time: '2026-11-28T04:00:00.000Z',
          }),
          record('q-3', {
            workload: { cloud: 'aws', name: 'ledger-writer' },
            decision: 'deny',
            mode: 'observe',
          }),
        ],
      });
      const query = async (q: string) =>
        ((await (await api.call(`/v1/denies?${q}`)).json()) as { records: { id: string }[] }).records.map(
          (r) => r.id,
        );
      expect(await query('destination=*.evil.test')).toEqual(['q-2', 'q-1']);
      expect(await query('rule=payments-egress%2Fdeny%5B0%5D')).toEqual(['q-1']);
      expect(await query(`workload=${encodeURIComponent('name=ledger-writer,cloud=aws')}`)).toEqual(['q-3']);
      expect(await query('group=ledger')).toEqual(['q-3']);
      expect(await query('since=2026-11-28T03:30:00Z&destination=*.evil.test')).toEqual(['q-2']);
      expect(await query('decision=allow')).toEqual([]);
      expect((await api.call('/v1/denies?since=yesterday')).status).toBe(400);
      expect((await api.call('/v1/denies?cursor=zzz')).status).toBe(400);
      expect((await api.call('/v1/denies?decision=maybe')).status).toBe(400);
    });

    it('filters denies by workload name or glob, invocation, origin package, kind and severity', async () => {
      await post({
        records: [
          record('inv-1', {
            rule: 'investigate',
            invocationId: 'req-0300-a',
            origin: { package: 'evil-dep@1.0.0', file: '/var/task/node_modules/evil-dep/index.js', line: 7 },
          }),
          record('inv-2', {
            rule: 'investigate',
            workload: { cloud: 'aws', name: 'charge-refund', region: 'eu-west-1' },
            kind: 'tamper',
            severity: 'high',
            invocationId: 'req-0300-b',
            origin: { package: '@scope/evil-dep@2.0.0' },
          }),
          record('inv-3', {
            rule: 'investigate',
            workload: { cloud: 'aws', name: 'ledger-writer' },
            kind: 'dns',
            destination: { host: 'exfil.attacker.test', protocol: 'dns' },
          }),
        ],
      });
      const query = async (q: string) =>
        (
          (await (await api.call(`/v1/denies?rule=investigate&${q}`)).json()) as { records: { id: string }[] }
        ).records.map((r) => r.id);
      expect(await query('workload=charge-card')).toEqual(['inv-1']);
      expect(await query('workload=charge-*')).toEqual(['inv-2', 'inv-1']);
      expect(
        await query(`workload=${encodeURIComponent('name=charge-refund,region=eu-west-1,cloud=aws')}`),
      ).toEqual(['inv-2']);
      expect(await query('workload=charge')).toEqual([]);
      expect(await query('invocation=req-0300-b')).toEqual(['inv-2']);
      expect(await query('package=evil-dep')).toEqual(['inv-1']);
      expect(await query(`package=${encodeURIComponent('@scope/*')}`)).toEqual(['inv-2']);
      expect(await query(`package=${encodeURIComponent('evil-dep@1.0.0')}`)).toEqual(['inv-1']);
      expect(await query('kind=dns')).toEqual(['inv-3']);
      expect(await query('severity=high')).toEqual(['inv-2']);
      expect(await query('severity=normal&workload=*-writer')).toEqual(['inv-3']);
      const bad = async (q: string) => {
        const response = await api.call(`/v1/denies?${q}`);
        expect(response.status).toBe(400);
        return ((await response.json()) as { message: string }).message;
      };
      expect(await bad('kind=socket')).toBe(
        'kind: expected one of connect, http, dns, udp, exec, addon, worker, tamper, unix, got "socket"',
      );
      expect(await bad('severity=urgent')).toMatch(/^severity: expected one of normal, high/);
      expect(await bad('workload=%20')).toMatch(/^workload: expected a name/);
      expect(await bad(`workload=${encodeURIComponent('name=a,name=b')}`)).toMatch(/duplicate key/);
      expect(await bad('package=')).toMatch(/^package: /);
    });

    it('pages with cursors and exports NDJSON', async () => {
      await post({ records: Array.from({ length: 30 }, (_, i) => record(`page-${i}`, { rule: 'paging' })) });
      const ids: string[] = [];
      let cursor: string | null = null;
      do {
        const page = (await (
          await api.call(`/v1/denies?rule=paging&limit=7${cursor ? `&cursor=${cursor}` : ''}`)
        ).json()) as { records: { id: string }[]; nextCursor: string | null };
        ids.push(...page.records.map((r) => r.id));
        cursor = page.nextCursor;
      } while (cursor);
      expect(ids).toHaveLength(30);
      expect(new Set(ids).size).toBe(30);

      const ndjson = await api.call('/v1/denies?rule=paging', {
        headers: { accept: 'application/x-ndjson' },
      });
      expect(ndjson.headers.get('content-type')).toMatch(/application\/x-ndjson/);
      const lines = (await ndjson.text()).trim().split('\n');
      expect(lines).toHaveLength(30);
      expect(lines.map((l) => (JSON.parse(l) as { id: string }).id).sort()).toEqual([...ids].sort());
    });

    it('follows new records with an ascending cursor', async () => {
      const head = (await (await api.call('/v1/denies?rule=follow')).json()) as { followCursor: string };
      await post({
        records: [record('follow-1', { rule: 'follow' }), record('follow-2', { rule: 'follow' })],
      });
      const next = (await (
        await api.call(`/v1/denies?rule=follow&order=asc&cursor=${head.followCursor}`)
      ).json()) as { records: { id: string }[]; followCursor: string };
      expect(next.records.map((r) => r.id)).toEqual(['follow-1', 'follow-2']);
      const none = (await (
        await api.call(`/v1/denies?rule=follow&order=asc&cursor=${next.followCursor}`)
      ).json()) as { records: unknown[] };
      expect(none.records).toHaveLength(0);
    });

    it('exposes counters in /metrics', async () => {
      const text = await (await api.call('/metrics')).text();
      expect(text).toMatch(/^bulkhead_report_records_total\{result="stored"\} \d+$/m);
      expect(text).toMatch(/^bulkhead_report_records_total\{result="duplicate"\} [1-9]\d*$/m);
      expect(text).toMatch(/^bulkhead_policy_revision \d+$/m);
      expect(text).toMatch(/^bulkhead_longpolls_open 0$/m);
    });
  });
});
