// One policy, three clouds: a SmartGroup `tags: {app: payments}` selects an AWS Lambda function (tags
// via BULKHEAD_TAGS, as `bulkhead attach` sets them; run in the emulator with the layer), an Azure
// Functions app (app setting BULKHEAD_TAGS; v4 library through the worker stand-in) and a Google Cloud
// function (labels via BULKHEAD_TAGS; the real functions-framework server). The same decisions hold on
// all three, and one apply changes all three. Needs `npm run build` first.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LambdaEmulator } from '../../emulator/index.js';
import { assembleLayer } from '../../layers/build.js';
import { CrossCloudHarness, freePort, paymentsPolicy, ROOT } from './harness.js';

interface ProbeResult {
  outcome: 'allowed' | 'denied' | 'failed';
  code?: string;
}
type Invoke = () => Promise<{ invocationId: string; results: Record<string, ProbeResult> }>;

const harness = new CrossCloudHarness();
const invokers: Record<'aws' | 'azure' | 'gcp', Invoke> = {} as never;
let lambda: LambdaEmulator | undefined;

describe('one policy across AWS, Azure and GCP', () => {
  beforeAll(async () => {
    await harness.start(['allowed', 'denied']);
    await harness.apply(paymentsPolicy([harness.destinations.allowed!.port]));
    const tags = { BULKHEAD_TAGS: 'app=payments' };

    // Google Cloud: labels app=payments.
    const gcpPort = await freePort();
    const gcp = harness.spawnFunction(
      process.execPath,
      [
        join(ROOT, 'node_modules/@google-cloud/functions-framework/build/src/main.js'),
        '--target=charge',
        `--source=${join(ROOT, 'test/gcp/fixtures/index.js')}`,
        `--port=${gcpPort}`,
      ],
      harness.functionEnv({
        K_SERVICE: 'charge-card',
        K_REVISION: 'charge-card-00001-abc',
        GOOGLE_CLOUD_PROJECT: 'shop',
        ...tags,
      }),
    );
    await harness.waitForPort(gcp, gcpPort);
    invokers.gcp = async () => {
      const response = await fetch(`http://127.0.0.1:${gcpPort}/`, { method: 'POST' });
      const body = (await response.json()) as { executionId: string; results: Record<string, ProbeResult> };
      return { invocationId: body.executionId, results: body.results };
    };

    // Azure: app setting BULKHEAD_TAGS.
    const azure = harness.spawnFunction(
      process.execPath,
      [join(ROOT, 'dist/azure-local.mjs'), '--app', join(ROOT, 'test/azure/fixtures/app.cjs')],
      harness.functionEnv({ WEBSITE_SITE_NAME: 'charge-card-func', REGION_NAME: 'West Europe', ...tags }),
    );
    const azureUrl = (await harness.waitForOutput(azure, /listening on (http:\/\/\S+)/))[1] as string;
    invokers.azure = async () => {
      const response = await fetch(`${azureUrl}/api/charge`, { method: 'POST', body: '{}' });
      return (await response.json()) as { invocationId: string; results: Record<string, ProbeResult> };
    };

    // AWS: the layer in the emulator, function tags through BULKHEAD_TAGS.
    const optDir = join(harness.dir, 'opt');
    assembleLayer(optDir, { controlUrl: harness.control.url, trustedKeys: [harness.publicKeyFile] });
    const env = harness.functionEnv(tags);
    lambda = new LambdaEmulator({
      taskRoot: join(ROOT, 'test/crosscloud/fixtures/aws'),
      handler: 'index.handler',
      functionName: 'charge-card',
      optDir,
      env: {
        AWS_LAMBDA_EXEC_WRAPPER: join(optDir, 'bulkhead-wrapper'),
        BULKHEAD_TOKEN: harness.workloadToken,
        BULKHEAD_TAGS: 'app=payments',
        DEST_ALLOWED_URL: env.DEST_ALLOWED_URL as string,
        DEST_DENIED_URL: env.DEST_DENIED_URL as string,
      },
    });
    await lambda.start();
    const init = await lambda.init();
    if (!init.ok) {
      const logs = lambda.logs.map((line) => JSON.stringify(line)).slice(-30);
      throw new Error(
        `Lambda sandbox init failed: ${init.errorType} ${init.errorMessage}\n${logs.join('\n')}`,
      );
    }
    invokers.aws = async () => {
      const result = await lambda!.invoke({});
      if (result.status !== 'success')
        throw new Error(`invoke ${result.status}: ${result.payload.toString()}`);
      return result.json();
    };
  }, 90_000);

  afterAll(async () => {
    await lambda?.close();
    await harness.close();
  });

  it('the SmartGroup selects all three and they decide alike', async () => {
    for (const cloud of ['aws', 'azure', 'gcp'] as const) {
      const { results } = await invokers[cloud]();
      expect({ cloud, allowed: results.allowed?.outcome, denied: results.denied?.outcome }).toEqual({
        cloud,
        allowed: 'allowed',
        denied: 'denied',
      });
    }
    expect(harness.destinations.denied!.bytes).toBe(0);
    const records = await harness.eventually(
      'deny records from all three clouds',
      () => harness.denies(),
      (rows) => new Set(rows.map((row) => row.workload.cloud)).size === 3,
    );
    for (const record of records) {
      expect(record.workload['tag.app']).toBe('payments');
      expect(record.destination.port).toBe(harness.destinations.denied!.port);
    }
  });

  it('one apply changes all three', async () => {
    await harness.apply(
      paymentsPolicy([harness.destinations.allowed!.port, harness.destinations.denied!.port]),
    );
    // AWS: the sandbox is frozen between invocations; the extension refreshes at INVOKE, before the handler.
    const aws = await invokers.aws();
    expect(aws.results.denied?.outcome).toBe('allowed');
    // Azure and GCP long-poll while busy and refresh when stale; the change arrives without a restart.
    for (const cloud of ['azure', 'gcp'] as const) {
      await harness.eventually(
        `${cloud} allows the formerly denied destination`,
        () => invokers[cloud](),
        (body) => body.results.denied?.outcome === 'allowed',
      );
    }
  });
});
