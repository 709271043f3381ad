// End to end: a real @azure/functions v4 app (http, timer and queue triggers) with `setupBulkhead(app)`,
// run by dist/azure-local.mjs through the worker stand-in, fetching its bundle from a real control API,
// making real loopback connections that the shim allows or denies. Needs `npm run build` first.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrossCloudHarness, type FunctionProcess, paymentsPolicy, ROOT } from '../crosscloud/harness.js';

const harness = new CrossCloudHarness();
let host: FunctionProcess;
let url = '';
let revision = 0;

interface ProbeResult {
  outcome: 'allowed' | 'denied' | 'failed';
  code?: string;
  message?: string;
}

async function post(path: string, body = '{}'): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

describe('bulkhead/azure on @azure/functions v4 (worker stand-in, not the Functions host)', () => {
  beforeAll(async () => {
    await harness.start(['allowed', 'denied']);
    revision = await harness.apply(paymentsPolicy([harness.destinations.allowed!.port]));
    host = harness.spawnFunction(
      process.execPath,
      [join(ROOT, 'dist/azure-local.mjs'), '--app', join(ROOT, 'test/azure/fixtures/app.cjs')],
      harness.functionEnv({
        WEBSITE_SITE_NAME: 'settle-payments',
        REGION_NAME: 'West Europe',
        WEBSITE_OWNER_NAME: '11111111-2222-4333-8444-555555555555+payments-WestEuropewebspace',
        BULKHEAD_TAGS: 'app=payments',
      }),
    );
    url = (await harness.waitForOutput(host, /listening on (http:\/\/\S+)/))[1] as string;
  });
  afterAll(() => harness.close());

  it('an HTTP function reaches the allowed destination and is denied the other', async () => {
    const before = harness.destinations.denied!.bytes;
    const { status, json } = await post('/api/charge');
    expect(status).toBe(200);
    const results = json.results as Record<string, ProbeResult>;
    expect(results.allowed).toMatchObject({ outcome: 'allowed' });
    expect(results.denied).toMatchObject({ outcome: 'denied', code: 'ERR_BULKHEAD_DENIED' });
    expect(harness.destinations.denied!.bytes).toBe(before);

    // The deny record arrived before the response (postInvocation), tagged with function and invocation.
    const records = await harness.denies();
    const tag = `charge/${json.invocationId as string}`;
    const mine = records.filter((record) => record.invocationId === tag);
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({
      decision: 'deny',
      rule: 'default-deny',
      revision,
      destination: { port: harness.destinations.denied!.port },
      workload: { cloud: 'azure', name: 'settle-payments', 'tag.app': 'payments' },
    });
  });

  it('timer and queue functions are governed and reported the same way', async () => {
    const timer = await post('/admin/functions/nightly', '{"input":""}');
    expect(timer.status).toBe(202);
    const timerResult = timer.json.returnValue as { results: Record<string, ProbeResult>; pastDue: boolean };
    expect(timerResult.results.allowed?.outcome).toBe('allowed');
    expect(timerResult.results.denied?.outcome).toBe('denied');

    const queue = await post('/admin/functions/settle', JSON.stringify({ input: '{"batch":7}' }));
    expect(queue.status).toBe(202);
    const queueResult = queue.json.returnValue as { results: Record<string, ProbeResult>; entry: unknown };
    expect(queueResult.entry).toEqual({ batch: 7 });
    expect(queueResult.results.allowed?.outcome).toBe('allowed');
    expect(queueResult.results.denied?.outcome).toBe('denied');

    const records = await harness.denies();
    const tags = records.map((record) => record.invocationId);
    expect(tags).toContain(`nightly/${timer.json.invocationId as string}`);
    expect(tags).toContain(`settle/${queue.json.invocationId as string}`);
  });

  it('concurrent invocations keep their own tags', async () => {
    const answers = await Promise.all([post('/api/charge'), post('/api/charge'), post('/api/charge')]);
    const records = await harness.denies();
    for (const { json } of answers) {
      const tag = `charge/${json.invocationId as string}`;
      expect(records.filter((record) => record.invocationId === tag)).toHaveLength(1);
    }
  });

  it('works under the preload too (languageWorkers__node__arguments=--require …): one installation', async () => {
    const preloaded = harness.spawnFunction(
      process.execPath,
      [
        '--require',
        join(ROOT, 'dist/register.cjs'),
        join(ROOT, 'dist/azure-local.mjs'),
        '--app',
        join(ROOT, 'test/azure/fixtures/app.cjs'),
      ],
      harness.functionEnv({ WEBSITE_SITE_NAME: 'settle-preloaded', BULKHEAD_TAGS: 'app=payments' }),
    );
    const preloadedUrl = (await harness.waitForOutput(preloaded, /listening on (http:\/\/\S+)/))[1] as string;
    const response = await fetch(`${preloadedUrl}/api/charge`, { method: 'POST', body: '{}' });
    const json = (await response.json()) as { invocationId: string; results: Record<string, ProbeResult> };
    expect(json.results.allowed?.outcome).toBe('allowed');
    expect(json.results.denied?.outcome).toBe('denied');
    const records = (await harness.denies()).filter(
      (record) => record.invocationId === `charge/${json.invocationId}`,
    );
    expect(records).toHaveLength(1);
    expect(records[0]?.workload.name).toBe('settle-preloaded');
    expect(preloaded.output.filter((line) => line.includes('bulkhead: installed:'))).toHaveLength(1);
  });

  it('a policy change reaches the running app without a restart', async () => {
    const next = await harness.apply(
      paymentsPolicy([harness.destinations.allowed!.port, harness.destinations.denied!.port]),
    );
    // Long-poll while busy, conditional refresh when stale: the next invocation runs under `next`.
    await harness.eventually(
      'workload holds the new revision',
      () => harness.workloads(),
      (rows) => rows.some((row) => row.identity.cloud === 'azure' && (row.revision ?? 0) >= next),
    );
    // The inventory records the bundle as served; the function holds it a moment later.
    await harness.eventually(
      'the formerly denied destination is allowed',
      () => post('/api/charge'),
      ({ json }) => (json.results as Record<string, ProbeResult>).denied?.outcome === 'allowed',
    );
  });
});
