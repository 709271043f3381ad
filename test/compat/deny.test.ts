// Denials through real libraries: under a bundle that allows nothing the cases need, every request
// fails with ERR_BULKHEAD_DENIED in its error/cause chain, no server sees anything, the deny records
// name the real destination (the port the connection went to, 127.0.0.1 where one was attempted), and
// no client retries a denial beyond its own retry policy. One child process per case, so the records
// (and their counts) belong to that case alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, killAll, REGISTER_CJS } from '../shim/harness.js';
import { type Compat, denyingFixture, runScenario, startCompat } from './harness.js';

interface DenyCase {
  library: string;
  case: string;
  /** Which server the case really talks to (a key of the config). */
  server: 'http' | 'https' | 's3';
  /** Attempts its default retry policy would make on a retryable network error (a denial gets one). */
  retriesUpTo: number;
}

const CASES: DenyCase[] = [
  { library: 'undici', case: 'fetch GET', server: 'http', retriesUpTo: 1 },
  { library: 'undici', case: 'request GET', server: 'http', retriesUpTo: 1 },
  { library: 'undici', case: 'custom Host header', server: 'http', retriesUpTo: 1 },
  { library: 'undici', case: 'connect.lookup fake name (fetch)', server: 'http', retriesUpTo: 1 },
  // interceptors.retry() defaults: maxRetries 5.
  { library: 'undici', case: 'fetch with retry interceptor (defaults)', server: 'http', retriesUpTo: 6 },
  { library: 'undici', case: 'TLS localhost with ca', server: 'https', retriesUpTo: 1 },
  { library: 'node-fetch', case: 'GET', server: 'http', retriesUpTo: 1 },
  { library: 'node-fetch', case: 'custom Host header', server: 'http', retriesUpTo: 1 },
  { library: 'node-fetch', case: 'agent with lookup (fake name)', server: 'http', retriesUpTo: 1 },
  { library: 'axios', case: 'GET', server: 'http', retriesUpTo: 1 },
  { library: 'axios', case: 'custom Host header', server: 'http', retriesUpTo: 1 },
  { library: 'axios', case: 'lookup option (fake name)', server: 'http', retriesUpTo: 1 },
  // got's default retry: limit 2 (3 attempts) for GET on its list of network error codes.
  { library: 'got', case: 'GET with default retry', server: 'http', retriesUpTo: 3 },
  { library: 'got', case: 'dnsLookup custom (fake name)', server: 'http', retriesUpTo: 1 },
  { library: 'got', case: 'custom Host header', server: 'http', retriesUpTo: 1 },
  { library: 'ws', case: 'connect + echo', server: 'http', retriesUpTo: 1 },
  { library: 'ws', case: 'custom Host header', server: 'http', retriesUpTo: 1 },
  { library: 'ws', case: 'lookup option (fake name)', server: 'http', retriesUpTo: 1 },
  // The SDK's standard retry strategy: 3 attempts.
  { library: 's3', case: 'default retry strategy (single GET)', server: 's3', retriesUpTo: 3 },
  { library: 's3', case: 'fake host endpoint via agent lookup', server: 's3', retriesUpTo: 3 },
  { library: 'node-http', case: 'http.request custom Host header', server: 'http', retriesUpTo: 1 },
  { library: 'node-http', case: 'http.request lookup (fake name)', server: 'http', retriesUpTo: 1 },
];

let compat: Compat;
let fixture: Fixture;

beforeAll(async () => {
  compat = await startCompat();
  fixture = denyingFixture();
});

afterAll(async () => {
  killAll();
  await compat?.cleanup();
  fixture?.cleanup();
});

type Row = Record<string, unknown>;
const destination = (r: Row) => (r.destination ?? {}) as { host?: string; ip?: string; port?: number };

/**
 * Attempts: one denied request files a request record (`http`, the L7 hook) and a connection record
 * (`connect`, the TCP hook) for the same try, so an attempt is counted once: the larger of the two
 * aggregated counts (DNS records are not attempts).
 */
function attempts(records: Row[]): { attempts: number; connects: number; requests: number } {
  const sum = (kind: string) =>
    records.filter((r) => r.kind === kind).reduce((total, r) => total + Number(r.count ?? 1), 0);
  const connects = sum('connect');
  const requests = sum('http');
  return { attempts: Math.max(connects, requests), connects, requests };
}

describe('under a denying bundle, real clients fail closed and the records name the real destination', () => {
  const observed: string[] = [];

  afterAll(() => {
    // The attempt counts per client, for the report (`npm run test:compat` prints them).
    if (observed.length) console.log(`attempts per denied case:\n${observed.join('\n')}`);
  });

  for (const c of CASES) {
    it(`${c.library} / ${c.case}`, { timeout: 40_000 }, async () => {
      const port = compat.servers.config[c.server];
      const before = compat.servers.totals();
      const run = await runScenario(c.library, {
        fixture,
        shim: true,
        config: compat.servers.config,
        cases: [c.case],
        env: { COMPAT_CASE_TIMEOUT_MS: '25000' },
      });
      const after = compat.servers.totals();
      const result = run.results[c.case] as { denied?: boolean; error?: unknown } | undefined;
      const records = run.spool.filter((r) => r.kind !== 'dns');
      const summary = records.map((r) => ({ kind: r.kind, ...destination(r), count: r.count, rule: r.rule }));
      const counted = attempts(run.spool);
      const n = counted.attempts;
      observed.push(
        `  ${c.library} / ${c.case}: ${n} attempt(s) (connect records ${counted.connects}, request records ${counted.requests})`,
      );
      const context = `result ${JSON.stringify(result)}\nrecords ${JSON.stringify(summary)}\nstderr ${run.stderr.slice(0, 1500)}`;

      expect(run.code, context).toBe(0);
      expect.soft(result?.denied, `ERR_BULKHEAD_DENIED in the error chain\n${context}`).toBe(true);
      expect.soft(after, 'nothing reached any server').toEqual(before);
      expect.soft(records.length, `at least one deny record\n${context}`).toBeGreaterThan(0);
      expect
        .soft(
          records.map((r) => destination(r).port),
          `every record names the real port ${port}\n${context}`,
        )
        .toEqual(records.map(() => port));
      const connects = records.filter((r) => r.kind === 'connect');
      expect
        .soft(
          connects.map((r) => destination(r).ip),
          `connection records name 127.0.0.1\n${context}`,
        )
        .toEqual(connects.map(() => '127.0.0.1'));
      expect
        .soft(
          records.filter((r) => destination(r).ip !== undefined && destination(r).ip !== '127.0.0.1'),
          `no record names another address\n${context}`,
        )
        .toEqual([]);
      expect
        .soft(
          n,
          `a denial is not retried (the default policy retries up to ${c.retriesUpTo} attempts)\n${context}`,
        )
        .toBe(1);
      expect.soft(n, `attempts counted\n${context}`).toBeGreaterThanOrEqual(1);
    });
  }

  it('npm under the shim: a lifecycle script spawning sh is denied (the preload reaches npm)', {
    timeout: 40_000,
  }, async () => {
    const run = await runScenario('npm', {
      fixture,
      shim: true,
      config: compat.servers.config,
      cases: ['npm run (script)'],
      env: { COMPAT_NPM_NODE_OPTIONS: `--require ${REGISTER_CJS}` },
    });
    const result = run.results['npm run (script)'] as { status?: number } | undefined;
    expect(run.code, run.stderr).toBe(0);
    expect(result?.status, JSON.stringify(result)).not.toBe(0);
    const execs = run.spool.filter((r) => r.kind === 'exec');
    expect(execs.length, JSON.stringify(run.spool)).toBeGreaterThan(0);
  });
});
