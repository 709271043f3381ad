// End to end: the real `functions-framework --target` server as a child process on loopback, the
// function wrapped with bulkhead/gcp, its bundle from a real control API, real loopback connections
// the shim allows or denies. Needs `npm run build` first.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrossCloudHarness, freePort, paymentsPolicy, ROOT } from '../crosscloud/harness.js';

const FRAMEWORK = join(ROOT, 'node_modules/@google-cloud/functions-framework/build/src/main.js');
const SOURCE = join(ROOT, 'test/gcp/fixtures/index.js');
const harness = new CrossCloudHarness();
let revision = 0;

interface ProbeResult {
  outcome: 'allowed' | 'denied' | 'failed';
  code?: string;
}

async function startFramework(
  target: string,
  signatureType: 'http' | 'cloudevent',
  nodeFlags: string[] = [],
): Promise<{ port: number; output: string[] }> {
  const port = await freePort();
  const fn = harness.spawnFunction(
    process.execPath,
    [
      ...nodeFlags,
      FRAMEWORK,
      `--target=${target}`,
      `--signature-type=${signatureType}`,
      `--source=${SOURCE}`,
      `--port=${port}`,
    ],
    harness.functionEnv({
      K_SERVICE: 'charge-card',
      K_REVISION: 'charge-card-00007-xyz',
      FUNCTION_TARGET: target,
      GOOGLE_CLOUD_PROJECT: 'payments-prod',
      BULKHEAD_TAGS: 'app=payments',
    }),
  );
  await harness.waitForPort(fn, port);
  return { port, output: fn.output };
}

function postCloudEvent(port: number, id: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}/`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'ce-id': id,
      'ce-specversion': '1.0',
      'ce-type': 'com.example.payment.settled',
      'ce-source': '//payments/test',
    },
    body: '{"amount":1999}',
  });
}

describe('bulkhead/gcp on the functions framework', () => {
  let httpPort = 0;

  beforeAll(async () => {
    await harness.start(['allowed', 'denied']);
    revision = await harness.apply(paymentsPolicy([harness.destinations.allowed!.port]));
    httpPort = (await startFramework('charge', 'http')).port;
  });
  afterAll(() => harness.close());

  it('an HTTP function is allowed one destination, denied the other, and reports before responding', async () => {
    const before = harness.destinations.denied!.bytes;
    const response = await fetch(`http://127.0.0.1:${httpPort}/`, {
      method: 'POST',
      headers: { 'function-execution-id': 'exec-http-1' },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { executionId: string; results: Record<string, ProbeResult> };
    expect(body.executionId).toBe('exec-http-1');
    expect(body.results.allowed).toMatchObject({ outcome: 'allowed' });
    expect(body.results.denied).toMatchObject({ outcome: 'denied', code: 'ERR_BULKHEAD_DENIED' });
    expect(harness.destinations.denied!.bytes).toBe(before);

    // No waiting: the wrapper held res.end until the record was delivered.
    const records = (await harness.denies()).filter((record) => record.invocationId === 'exec-http-1');
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      decision: 'deny',
      revision,
      destination: { port: harness.destinations.denied!.port },
      workload: { cloud: 'gcp', name: 'charge-card', 'tag.app': 'payments' },
    });
  });

  it('async and callback CloudEvent functions keep their style and report before the 204', async () => {
    for (const target of ['onPayment', 'onPaymentCallback']) {
      const { port } = await startFramework(target, 'cloudevent');
      const id = `ce-${target}`;
      const response = await postCloudEvent(port, id);
      // A wrapper that lost the callback parameter would make the framework answer 500.
      expect(response.status).toBe(204);
      const records = (await harness.denies()).filter((record) => record.invocationId === id);
      expect(records).toHaveLength(1);
      expect(records[0]?.destination.port).toBe(harness.destinations.denied!.port);
    }
  });

  // Also guards against preload hardening that breaks ordinary libraries: Express 5's router sets
  // `Router.prototype = function () {}` and then assigns `Router.prototype.bind` (the HTTP method BIND),
  // which fails when Function.prototype.bind has been made read-only before Express loads.
  it('works under the preload too: one installation, the wrapper drives it', async () => {
    const { port, output } = await startFramework('charge', 'http', [
      '--require',
      join(ROOT, 'dist/register.cjs'),
    ]);
    const response = await fetch(`http://127.0.0.1:${port}/`, {
      method: 'POST',
      headers: { 'function-execution-id': 'exec-preload-1' },
    });
    const body = (await response.json()) as { results: Record<string, ProbeResult> };
    expect(body.results.allowed?.outcome).toBe('allowed');
    expect(body.results.denied?.outcome).toBe('denied');
    expect(
      (await harness.denies()).filter((record) => record.invocationId === 'exec-preload-1'),
    ).toHaveLength(1);
    expect(output.filter((line) => line.includes('bulkhead: installed:'))).toHaveLength(1);
  });

  it('a policy change reaches the running function', async () => {
    const next = await harness.apply(
      paymentsPolicy([harness.destinations.allowed!.port, harness.destinations.denied!.port]),
    );
    expect(next).toBe(revision + 1);
    await harness.eventually(
      'the formerly denied destination is allowed',
      async () => {
        const response = await fetch(`http://127.0.0.1:${httpPort}/`, { method: 'POST' });
        return (await response.json()) as { results: Record<string, ProbeResult> };
      },
      (body) => body.results.denied?.outcome === 'allowed',
    );
  });
});
