// Attested identity for a Node function app on Azure, end to end: a real @azure/functions v4 app
// with setupBulkhead(app), run by dist/azure-local.mjs through the worker stand-in (the Functions
// host cannot run here), BULKHEAD_ATTEST=azure. The wrapper's proof — a managed-identity token from
// IDENTITY_ENDPOINT (the JWT stand-in's emulation) — is fetched by a thread the hooks do not govern;
// the function's own request to the identity endpoint is denied by its policy. The control API
// (--require-attested) verifies the token with jose against the stand-in's JWKS and the tenant.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrossCloudHarness, type FunctionProcess, paymentsPolicy, ROOT } from '../crosscloud/harness.js';
import { DEFAULT_MANAGED_IDENTITY, JwtStandin } from '../support/jwt-standin.js';

const AUDIENCE = 'https://bulkhead.example.test';
const SUBSCRIPTION = '11111111-2222-4333-8444-555555555555';
const IDENTITY = {
  ...DEFAULT_MANAGED_IDENTITY,
  resourceId: `/subscriptions/${SUBSCRIPTION}/resourcegroups/payments/providers/Microsoft.Web/sites/settle-payments`,
};
const harness = new CrossCloudHarness();
let standin: JwtStandin;

interface ProbeResult {
  outcome: 'allowed' | 'denied' | 'failed';
  code?: string;
}

async function startApp(env: Record<string, string>): Promise<{ url: string; host: FunctionProcess }> {
  const host = harness.spawnFunction(
    process.execPath,
    [join(ROOT, 'dist/azure-local.mjs'), '--app', join(ROOT, 'test/azure/fixtures/app.cjs')],
    harness.functionEnv({
      WEBSITE_SITE_NAME: 'settle-payments',
      REGION_NAME: 'West Europe',
      WEBSITE_OWNER_NAME: `${SUBSCRIPTION}+payments-WestEuropewebspace`,
      BULKHEAD_TAGS: 'app=payments',
      IDENTITY_ENDPOINT: standin.identityEndpoint,
      IDENTITY_HEADER: standin.identityHeader,
      BULKHEAD_ATTEST_AUDIENCE: AUDIENCE,
      // The function itself asks the identity endpoint: its policy does not allow it.
      DEST_DENIED_URL: `${standin.identityEndpoint}?resource=https://management.azure.com/&api-version=2019-08-01`,
      ...env,
    }),
  );
  const url = (await harness.waitForOutput(host, /listening on (http:\/\/\S+)/))[1] as string;
  return { url, host };
}

async function charge(url: string) {
  const response = await fetch(`${url}/api/charge`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  });
  return {
    status: response.status,
    json: (await response.json()) as { invocationId: string; results: Record<string, ProbeResult> },
  };
}

describe('bulkhead/azure with BULKHEAD_ATTEST=azure against --require-attested (worker stand-in)', () => {
  beforeAll(async () => {
    standin = await JwtStandin.start({ managedIdentity: IDENTITY });
    await harness.start(
      ['allowed'],
      {
        attestation: {
          audience: AUDIENCE,
          azure: {
            tenants: [IDENTITY.tenant],
            issuers: [`https://sts.windows.net/${IDENTITY.tenant}/`],
            jwksUri: standin.azureJwksUri,
          },
          require: true,
        },
      },
      { groups: ['payments'] },
    );
    await harness.apply(paymentsPolicy([harness.destinations.allowed?.port ?? 0]));
  });
  afterAll(async () => {
    await harness.close();
    await standin?.close();
  });

  it('attests with the managed identity; the function itself cannot reach the identity endpoint', async () => {
    const { url, host } = await startApp({ BULKHEAD_ATTEST: 'azure' });
    const { status, json } = await charge(url);
    expect(status, host.output.join('\n')).toBe(200);
    expect(json.results.allowed).toMatchObject({ outcome: 'allowed' });
    expect(json.results.denied).toMatchObject({ outcome: 'denied', code: 'ERR_BULKHEAD_DENIED' });
    const asked = standin.seen.filter((seen) => seen.path === new URL(standin.identityEndpoint).pathname);
    expect(asked.map((seen) => seen.query.get('resource'))).toEqual([AUDIENCE]);

    const records = (await harness.denies()).filter((r) => r.invocationId === `charge/${json.invocationId}`);
    expect(records.length).toBeGreaterThan(0);
    for (const record of records)
      expect(record.workload).toMatchObject({
        attested: 'azure',
        tenant: IDENTITY.tenant,
        principal: IDENTITY.objectId,
        account: SUBSCRIPTION,
        name: 'settle-payments',
      });
    expect(host.output.join('\n')).not.toMatch(/bhk_[0-9a-f]{16}_|eyJ[A-Za-z0-9_-]{20,}/);
  });

  it('without attestation the app gets no bundle: its fail mode (closed) governs', async () => {
    const { url } = await startApp({});
    const { status, json } = await charge(url);
    expect(status).toBe(200);
    expect(json.results.allowed).toMatchObject({ outcome: 'denied', code: 'ERR_BULKHEAD_DENIED' });
  });
});
