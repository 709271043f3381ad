// The project from the metadata server: a Cloud Run function without GOOGLE_CLOUD_PROJECT learns it
// from a (loopback stand-in) metadata server before enforcement starts, so a SmartGroup selecting the
// project governs it and its records name the project. Needs `npm run build` first.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrossCloudHarness, freePort, ROOT } from '../crosscloud/harness.js';

const harness = new CrossCloudHarness();
const metadataRequests: { url: string; flavor: string | undefined }[] = [];
const metadata = http.createServer((req, res) => {
  metadataRequests.push({ url: req.url ?? '', flavor: req.headers['metadata-flavor'] as string | undefined });
  if (req.url === '/computeMetadata/v1/project/project-id' && req.headers['metadata-flavor'] === 'Google') {
    res.writeHead(200, { 'content-type': 'application/text' }).end('shop-prod');
  } else res.writeHead(403).end();
});

function policy(allowedPort: number): string {
  // Only a workload whose project is shop-prod is selected (and so enforced); an unselected one would
  // run in observe mode and reach everything.
  return `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: shop-prod-payments }
spec:
  match: { cloud: gcp, account: shop-prod, tags: { app: payments } }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: payments-egress }
spec:
  appliesTo: [shop-prod-payments]
  mode: enforce
  owner: payments-team@example.com
  allow:
    - to: { host: localhost, port: ${allowedPort} }
`;
}

describe('GCP project from the metadata server', () => {
  let port = 0;

  beforeAll(async () => {
    await harness.start(['allowed', 'denied']);
    await harness.apply(policy(harness.destinations.allowed!.port));
    metadata.listen(0, '127.0.0.1');
    await once(metadata, 'listening');
    port = await freePort();
    const fn = harness.spawnFunction(
      process.execPath,
      [
        join(ROOT, 'node_modules/@google-cloud/functions-framework/build/src/main.js'),
        '--target=charge',
        `--source=${join(ROOT, 'test/gcp/fixtures/index.js')}`,
        `--port=${port}`,
      ],
      harness.functionEnv({
        K_SERVICE: 'charge-card',
        BULKHEAD_TAGS: 'app=payments',
        GCE_METADATA_HOST: `127.0.0.1:${(metadata.address() as AddressInfo).port}`,
      }),
    );
    await harness.waitForPort(fn, port);
  });
  afterAll(async () => {
    metadata.close();
    await harness.close();
  });

  it('asks once, with the Metadata-Flavor header, and the project-scoped policy governs', async () => {
    const response = await fetch(`http://127.0.0.1:${port}/`, {
      method: 'POST',
      headers: { 'function-execution-id': 'exec-md-1' },
    });
    const body = (await response.json()) as { results: Record<string, { outcome: string }> };
    expect(body.results.allowed?.outcome).toBe('allowed');
    expect(body.results.denied?.outcome).toBe('denied');
    expect(metadataRequests).toEqual([{ url: '/computeMetadata/v1/project/project-id', flavor: 'Google' }]);
    const records = (await harness.denies()).filter((record) => record.invocationId === 'exec-md-1');
    expect(records).toHaveLength(1);
    expect(records[0]?.workload).toMatchObject({ cloud: 'gcp', account: 'shop-prod', name: 'charge-card' });
    expect(records[0]?.rule).toBe('default-deny');
  });
});
