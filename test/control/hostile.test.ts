// Hostile input at every route: whatever arrives, the answer is a 2xx/3xx/4xx with a reason,
// never a 5xx, and the server keeps serving. Same suite on both engines.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHARGE_CARD, PAYMENTS_V1 } from './fixtures.js';
import {
  type Api,
  ENGINES,
  type StoreFactory,
  startApi,
  storeFactory,
  waitForParkedLongPolls,
} from './harness.js';

const ROUTES: { method: string; path: string }[] = [
  { method: 'GET', path: '/v1/bundle' },
  { method: 'POST', path: '/v1/reports' },
  { method: 'PUT', path: '/v1/policy' },
  { method: 'GET', path: '/v1/policy' },
  { method: 'GET', path: '/v1/revisions' },
  { method: 'POST', path: '/v1/revisions/1/restore' },
  { method: 'GET', path: '/v1/denies' },
  { method: 'GET', path: '/v1/workloads' },
  { method: 'GET', path: '/v1/blast-radius' },
  { method: 'GET', path: '/v1/keys' },
  { method: 'GET', path: '/healthz' },
  { method: 'GET', path: '/metrics' },
  { method: 'GET', path: '/openapi.json' },
];

const CONTENT_TYPES = [
  'application/json',
  'application/yaml',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=utf-16',
  'text/html',
];

const jsonish = fc.oneof(
  fc.json(),
  fc.string(),
  fc.jsonValue().map((v) => JSON.stringify({ records: [v] })),
  fc.array(fc.jsonValue(), { maxLength: 5 }).map((records) => JSON.stringify({ records })),
  fc
    .record(
      {
        id: fc.oneof(fc.string(), fc.integer()),
        time: fc.oneof(
          fc.string(),
          fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        ),
        workload: fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer())),
        kind: fc.constantFrom('connect', 'http', 'dns', 'bogus'),
        destination: fc.record(
          { host: fc.string(), port: fc.integer(), ip: fc.string() },
          { requiredKeys: [] },
        ),
        decision: fc.constantFrom('deny', 'allow', 'x'),
        mode: fc.constantFrom('enforce', 'observe', ''),
        rule: fc.string(),
        revision: fc.oneof(fc.integer(), fc.double()),
        seq: fc.oneof(fc.integer(), fc.constant(Number.MAX_SAFE_INTEGER + 2)),
        sandboxId: fc.string(),
        count: fc.oneof(fc.integer(), fc.constant(-1)),
      },
      { requiredKeys: [] },
    )
    .map((r) => JSON.stringify({ records: [r] })),
  fc.constantFrom(
    PAYMENTS_V1,
    `${PAYMENTS_V1}\n: : :\n`,
    '---\n---\n',
    '&a [*a, *a]',
    'a: &x [1]\nb: *x\n'.repeat(50),
    '{"sources":[{"file":"../../etc/passwd","text":"x"}]}',
    '{"sources":[{"file":"a.yaml","text":1}]}',
    '{"sources":[]}',
    '\u0000\uffff',
  ),
);

const queryString = fc
  .array(
    fc.tuple(
      fc.constantFrom(
        'workload',
        'wait',
        'dryRun',
        'file',
        'cursor',
        'limit',
        'order',
        'format',
        'since',
        'until',
        'group',
        'destination',
        'rule',
        'decision',
        'revision',
        fc.string() as unknown as string,
      ),
      fc.oneof(
        fc.string(),
        fc.constant(CHARGE_CARD),
        fc.integer().map(String),
        fc.constant('%'),
        fc.constant('c0'),
        // Ajv coerces these to non-finite numbers and then skips its range checks.
        fc.constantFrom('Infinity', '-Infinity', '1e400', '-1e400', 'NaN', '1e3', '0x10'),
      ),
    ),
    { maxLength: 4 },
  )
  .map((pairs) =>
    pairs.map(([k, v]) => `${encodeURIComponent(String(k))}=${encodeURIComponent(v)}`).join('&'),
  );

describe.each(ENGINES)('hostile requests on %s', (engine) => {
  let factory: StoreFactory;
  let api: Api;

  beforeAll(async () => {
    factory = await storeFactory(engine);
    api = await startApi(factory);
    const applied = await api.call('/v1/policy', {
      method: 'PUT',
      body: PAYMENTS_V1,
      headers: { 'content-type': 'application/yaml' },
    });
    expect(applied.status).toBe(200);
  });
  afterAll(async () => {
    await api?.server.close();
    await factory?.cleanup();
  });

  it('answers every route with < 500 whatever the body, query and headers', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...ROUTES),
        queryString,
        fc.option(jsonish, { nil: undefined }),
        fc.constantFrom(...CONTENT_TYPES),
        fc.constantFrom<'admin' | 'workload' | 'none' | 'junk'>('admin', 'workload', 'none', 'junk'),
        fc.option(fc.string({ maxLength: 80 }), { nil: undefined }),
        async (route, query, body, contentType, who, ifNoneMatch) => {
          const headers: Record<string, string> = {};
          if (who === 'admin') headers.authorization = `Bearer ${api.admin}`;
          if (who === 'workload') headers.authorization = `Bearer ${api.workload}`;
          if (who === 'junk') headers.authorization = 'Bearer bhk_0000000000000000_AAAA';
          if (body !== undefined) headers['content-type'] = contentType;
          if (ifNoneMatch !== undefined) headers['if-none-match'] = ifNoneMatch.replace(/[^\x20-\x7e]/g, '');
          const sendsBody = body !== undefined && route.method !== 'GET';
          const url = `${api.server.url}${route.path}${query ? `?${query.replace(/wait=\d+/, 'wait=0')}` : ''}`;
          const response = await fetch(url, {
            method: route.method,
            headers,
            ...(sendsBody ? { body } : {}),
          });
          const text = await response.text();
          expect(response.status, `${route.method} ${url} -> ${text.slice(0, 200)}`).toBeLessThan(500);
          if (response.status >= 400) {
            const parsed = JSON.parse(text) as { error: string; message: string };
            expect(typeof parsed.error).toBe('string');
            expect(typeof parsed.message).toBe('string');
          }
        },
      ),
      { numRuns: Number(process.env.BULKHEAD_FUZZ_RUNS ?? 300) },
    );
    const health = await fetch(`${api.server.url}/healthz`);
    expect(health.status).toBe(200);
  });

  it('answers 400 to a non-finite number in a query string', async () => {
    for (const path of ['/v1/denies', '/v1/revisions']) {
      for (const limit of ['Infinity', '1e400', '-Infinity']) {
        const response = await api.call(`${path}?limit=${limit}`);
        expect(response.status, `${path}?limit=${limit}`).toBe(400);
        expect(await response.json()).toMatchObject({ error: 'bad-request' });
      }
    }
    expect((await api.call('/v1/revisions?limit=1e3')).status).toBe(200);
  });

  it('rate-limits one token without starving the others', async () => {
    const limited = await startApi(factory, {
      rateLimit: { admin: { perSecond: 1, burst: 3 }, workload: { perSecond: 1000, burst: 1000 } },
    });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await limited.call('/v1/revisions')).status);
      expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
      expect(statuses).toContain(429);
      const refused = await limited.call('/v1/revisions');
      expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
      expect((await limited.call('/v1/keys', { token: limited.workload })).status).toBe(200);
    } finally {
      await limited.server.close();
    }
  });

  it('caps parked long-polls with 429 and a Retry-After', async () => {
    const capped = await startApi(factory, { longPolls: 1 });
    try {
      await capped.call('/v1/policy', {
        method: 'PUT',
        body: PAYMENTS_V1,
        headers: { 'content-type': 'application/yaml' },
      });
      const path = `/v1/bundle?workload=${encodeURIComponent(CHARGE_CARD)}`;
      const first = await capped.call(path, { token: capped.workload });
      const etag = first.headers.get('etag') ?? '';
      const controller = new AbortController();
      const parked = capped
        .call(`${path}&wait=30`, {
          token: capped.workload,
          headers: { 'if-none-match': etag },
          signal: controller.signal,
        })
        .catch(() => undefined);
      await waitForParkedLongPolls(capped, 1);
      const second = await capped.call(`${path}&wait=30`, {
        token: capped.workload,
        headers: { 'if-none-match': etag },
      });
      expect(second.status).toBe(429);
      expect(second.headers.get('retry-after')).toBe('1');
      expect(await second.json()).toMatchObject({ error: 'long-poll-capacity' });
      controller.abort();
      await parked;
    } finally {
      await capped.server.close();
    }
  });
});
