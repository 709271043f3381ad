// Attested identity for a Node function on Google Cloud, end to end: the real functions framework
// as a child process, the function wrapped with bulkhead/gcp and BULKHEAD_ATTEST=gcp. The wrapper's
// proof — an identity token from the metadata server (the JWT stand-in's emulation, GCE_METADATA_HOST)
// — is fetched by a thread the shim's hooks do not govern, while the function's own request to the
// metadata server is denied by its policy. The control API (--require-attested) verifies the token
// with jose against the stand-in's JWKS, and the records carry the attested service account.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrossCloudHarness, freePort, paymentsPolicy, ROOT } from '../crosscloud/harness.js';
import { JwtStandin, METADATA_IDENTITY_PATH, STANDIN_GOOGLE_ISSUER } from '../support/jwt-standin.js';

const FRAMEWORK = join(ROOT, 'node_modules/@google-cloud/functions-framework/build/src/main.js');
const SOURCE = join(ROOT, 'test/gcp/fixtures/index.js');
const AUDIENCE = 'https://bulkhead.example.test';
const SERVICE_ACCOUNT = {
  email: 'charge-card@payments-prod.iam.gserviceaccount.com',
  sub: '1048576000000000042',
};
const harness = new CrossCloudHarness();
let standin: JwtStandin;

async function startFramework(env: Record<string, string>): Promise<{ port: number; output: string[] }> {
  const port = await freePort();
  const fn = harness.spawnFunction(
    process.execPath,
    [FRAMEWORK, '--target=charge', '--signature-type=http', `--source=${SOURCE}`, `--port=${port}`],
    harness.functionEnv({
      K_SERVICE: 'charge-card',
      FUNCTION_TARGET: 'charge',
      GOOGLE_CLOUD_PROJECT: 'payments-prod',
      BULKHEAD_TAGS: 'app=payments',
      GCE_METADATA_HOST: standin.metadataHost,
      BULKHEAD_ATTEST_AUDIENCE: AUDIENCE,
      // The function itself tries the metadata server: its policy does not allow it.
      DEST_DENIED_URL: `http://${standin.metadataHost}${METADATA_IDENTITY_PATH}?audience=https://elsewhere.test`,
      ...env,
    }),
  );
  await harness.waitForPort(fn, port);
  return { port, output: fn.output };
}

interface ProbeResult {
  outcome: 'allowed' | 'denied' | 'failed';
  code?: string;
}

async function invoke(port: number, id: string) {
  const response = await fetch(`http://127.0.0.1:${port}/`, {
    method: 'POST',
    headers: { 'function-execution-id': id },
  });
  return {
    status: response.status,
    body: (await response.json()) as { results: Record<string, ProbeResult> },
  };
}

describe('bulkhead/gcp with BULKHEAD_ATTEST=gcp against --require-attested', () => {
  beforeAll(async () => {
    standin = await JwtStandin.start({ serviceAccount: SERVICE_ACCOUNT });
    await harness.start(
      ['allowed'],
      {
        attestation: {
          audience: AUDIENCE,
          gcp: {
            issuers: [STANDIN_GOOGLE_ISSUER],
            jwksUri: standin.googleJwksUri,
            projects: ['payments-prod'],
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

  it('attests in a thread the hooks do not govern; the function itself cannot reach the metadata server', async () => {
    const { port, output } = await startFramework({ BULKHEAD_ATTEST: 'gcp' });
    const { status, body } = await invoke(port, 'exec-attest-1');
    expect(status, output.join('\n')).toBe(200);
    expect(body.results.allowed).toMatchObject({ outcome: 'allowed' });
    expect(body.results.denied).toMatchObject({ outcome: 'denied', code: 'ERR_BULKHEAD_DENIED' });
    // The one identity request that reached the metadata server asked for this control API's audience.
    const asked = standin.seen.filter((seen) => seen.path === METADATA_IDENTITY_PATH);
    expect(asked.map((seen) => seen.query.get('audience'))).toEqual([AUDIENCE]);
    expect(output.join('\n')).toContain(`attested as ${SERVICE_ACCOUNT.email} (gcp)`);

    let records: Awaited<ReturnType<CrossCloudHarness['denies']>> = [];
    for (let i = 0; i < 100 && records.length === 0; i++) {
      records = (await harness.denies()).filter((r) => r.invocationId === 'exec-attest-1');
      if (records.length === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(records.length).toBeGreaterThan(0);
    for (const record of records)
      expect(record.workload).toMatchObject({
        attested: 'gcp',
        serviceAccount: SERVICE_ACCOUNT.email,
        account: 'payments-prod',
        name: 'charge-card',
      });
    expect(output.join('\n')).not.toMatch(/bhk_[0-9a-f]{16}_|eyJ[A-Za-z0-9_-]{20,}/);
  });

  it('without attestation the function gets no bundle: its fail mode (closed) governs', async () => {
    const { port } = await startFramework({});
    const { status, body } = await invoke(port, 'exec-plain-1');
    expect(status).toBe(200);
    expect(body.results.allowed).toMatchObject({ outcome: 'denied', code: 'ERR_BULKHEAD_DENIED' });
  });
});
