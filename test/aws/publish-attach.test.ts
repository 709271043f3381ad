import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  GetFunctionConfigurationCommand,
  LambdaClient,
  ListLayerVersionsCommand,
  ListTagsCommand,
  PublishLayerVersionCommand,
  UpdateFunctionConfigurationCommand,
} from '@aws-sdk/client-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type CliIO, parseCommandArgs, UsageError } from '../../cli/command.js';
import { attachCommand } from '../../cli/commands/attach.js';
import { layerPublishCommand } from '../../cli/commands/layer-publish.js';
import {
  AttachError,
  attachLayer,
  EXEC_WRAPPER_PATH,
  hasQualifier,
  layerBase,
  MAX_LAYERS,
  planAttach,
  tokenSecretPolicy,
} from '../../layers/attach.js';
import { PublishError, publishLayer } from '../../layers/publish.js';
import { parseIdentity } from '../../policy/identity.js';

const lambda = mockClient(LambdaClient);
const LAYER_V3 = 'arn:aws:lambda:eu-west-1:123456789012:layer:bulkhead:3';
const LAYER_V2 = 'arn:aws:lambda:eu-west-1:123456789012:layer:bulkhead:2';
const OTHER = (n: number) => `arn:aws:lambda:eu-west-1:123456789012:layer:other-${n}:1`;
const FUNCTION_ARN = 'arn:aws:lambda:eu-west-1:123456789012:function:charge-card';
const CONTROL = 'https://bulkhead.example.com';

let dir: string;
let zipFile: string;
const zipBytes = Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.from('layer contents')]);
const zipSha = createHash('sha256').update(zipBytes).digest('hex');

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'bulkhead-publish-'));
  zipFile = join(dir, 'layer.zip');
  writeFileSync(zipFile, zipBytes);
  writeFileSync(join(dir, 'not-a-zip.txt'), 'hello');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeEach(() => lambda.reset());

function captureIO(): CliIO & { outText: string[]; errText: string[] } {
  const outText: string[] = [];
  const errText: string[] = [];
  return { outText, errText, out: (t) => outText.push(t), err: (t) => errText.push(t) };
}

function configWith(layers: string[], env: Record<string, string> = {}, extra: Record<string, unknown> = {}) {
  return {
    FunctionName: 'charge-card',
    FunctionArn: FUNCTION_ARN,
    Runtime: 'nodejs22.x' as const,
    PackageType: 'Zip' as const,
    RevisionId: 'rev-1',
    Layers: layers.map((Arn) => ({ Arn, CodeSize: 100 })),
    Environment: { Variables: env },
    ...extra,
  };
}

describe('layer publish', () => {
  it('publishes with the runtimes, architectures and content hash, reporting progress', async () => {
    lambda.on(ListLayerVersionsCommand).resolves({ LayerVersions: [] });
    lambda.on(PublishLayerVersionCommand).resolves({ LayerVersionArn: LAYER_V3, Version: 3 });
    const progress: string[] = [];
    const result = await publishLayer({
      client: new LambdaClient({ region: 'eu-west-1' }),
      zip: zipFile,
      onProgress: (m) => progress.push(m),
    });
    expect(result).toEqual({
      layerVersionArn: LAYER_V3,
      version: 3,
      sha256: zipSha,
      size: zipBytes.length,
      reused: false,
    });
    const input = lambda.commandCalls(PublishLayerVersionCommand)[0]?.args[0].input;
    expect(input?.LayerName).toBe('bulkhead');
    expect(input?.CompatibleRuntimes).toEqual([
      'nodejs20.x',
      'nodejs22.x',
      'nodejs24.x',
      'python3.12',
      'python3.13',
    ]);
    // One architecture per layer: the Python side carries native wheels.
    expect(input?.CompatibleArchitectures).toEqual(['x86_64']);
    expect(Buffer.from(input?.Content?.ZipFile ?? []).equals(zipBytes)).toBe(true);
    expect(input?.Description).toContain(`sha256:${zipSha}`);
    expect(progress.some((m) => m.includes(zipSha))).toBe(true);
    expect(progress.at(-1)).toBe(`published ${LAYER_V3}`);
  });

  it('reuses the newest version when it has the same content, unless forced', async () => {
    lambda.on(ListLayerVersionsCommand).resolves({
      LayerVersions: [{ LayerVersionArn: LAYER_V2, Version: 2, Description: `Bulkhead sha256:${zipSha}` }],
    });
    lambda.on(PublishLayerVersionCommand).resolves({ LayerVersionArn: LAYER_V3, Version: 3 });
    const client = new LambdaClient({ region: 'eu-west-1' });
    const reused = await publishLayer({ client, zip: zipFile });
    expect(reused).toMatchObject({ layerVersionArn: LAYER_V2, reused: true });
    expect(lambda.commandCalls(PublishLayerVersionCommand)).toHaveLength(0);
    const forced = await publishLayer({ client, zip: zipFile, force: true });
    expect(forced).toMatchObject({ layerVersionArn: LAYER_V3, reused: false });
  });

  it('refuses a missing file, a file that is not a zip, and a bad layer name', async () => {
    const client = new LambdaClient({ region: 'eu-west-1' });
    await expect(publishLayer({ client, zip: join(dir, 'absent.zip') })).rejects.toThrow(
      /cannot read layer zip/,
    );
    await expect(publishLayer({ client, zip: join(dir, 'not-a-zip.txt') })).rejects.toThrow(/not a zip/);
    await expect(publishLayer({ client, zip: zipFile, layerName: 'bad name!' })).rejects.toBeInstanceOf(
      PublishError,
    );
    expect(lambda.calls()).toHaveLength(0);
  });

  it('CLI: prints the ARN on stdout and progress on stderr', async () => {
    lambda.on(ListLayerVersionsCommand).resolves({});
    lambda.on(PublishLayerVersionCommand).resolves({ LayerVersionArn: LAYER_V3, Version: 3 });
    const io = captureIO();
    const args = parseCommandArgs(layerPublishCommand, [
      '--region',
      'eu-west-1',
      '--zip',
      zipFile,
      '--name',
      'bh',
    ]);
    expect(await layerPublishCommand.run(args, io)).toBe(0);
    expect(io.outText).toEqual([LAYER_V3]);
    expect(io.errText.every((line) => line.startsWith('[eu-west-1] '))).toBe(true);
    expect(lambda.commandCalls(PublishLayerVersionCommand)[0]?.args[0].input.LayerName).toBe('bh');
  });
});

describe('layer publish: several regions', () => {
  it('publishes region by region, one ARN per line; a failing region is reported and the others still done', async () => {
    lambda.on(ListLayerVersionsCommand).resolves({});
    lambda
      .on(PublishLayerVersionCommand)
      .resolvesOnce({ LayerVersionArn: 'arn:aws:lambda:eu-west-1:123456789012:layer:bulkhead:1', Version: 1 })
      .rejectsOnce(new Error('AccessDeniedException: not allowed in us-east-1'))
      .resolvesOnce({
        LayerVersionArn: 'arn:aws:lambda:ap-south-1:123456789012:layer:bulkhead:1',
        Version: 1,
      });
    const io = captureIO();
    const args = parseCommandArgs(layerPublishCommand, [
      '--region',
      'eu-west-1,us-east-1,ap-south-1',
      '--zip',
      zipFile,
    ]);
    expect(await layerPublishCommand.run(args, io)).toBe(1);
    expect(io.outText).toEqual([
      'arn:aws:lambda:eu-west-1:123456789012:layer:bulkhead:1',
      'arn:aws:lambda:ap-south-1:123456789012:layer:bulkhead:1',
    ]);
    expect(io.errText).toContain('[us-east-1] failed: AccessDeniedException: not allowed in us-east-1');
    expect(lambda.commandCalls(PublishLayerVersionCommand)).toHaveLength(3);
  });

  it('rejects a malformed region list before calling AWS', async () => {
    const io = captureIO();
    const args = parseCommandArgs(layerPublishCommand, ['--region', 'eu-west-1,../etc', '--zip', zipFile]);
    await expect(layerPublishCommand.run(args, io)).rejects.toThrow(/not a region name/);
    expect(lambda.calls()).toHaveLength(0);
  });
});

describe('attach: plan', () => {
  const request = { layerArn: LAYER_V3, controlUrl: CONTROL };

  it('adds the layer after the existing ones and sets the environment, keeping what is there', () => {
    const plan = planAttach('f', configWith([OTHER(1)], { APP_MODE: 'prod' }), { app: 'payments' }, request);
    expect(plan.layers).toEqual([OTHER(1), LAYER_V3]);
    expect(plan.environment).toEqual({
      APP_MODE: 'prod',
      AWS_LAMBDA_EXEC_WRAPPER: EXEC_WRAPPER_PATH,
      BULKHEAD_CONTROL_URL: CONTROL,
      BULKHEAD_TAGS: 'app=payments',
    });
  });

  it('replaces an older version of the same layer in place', () => {
    const plan = planAttach('f', configWith([OTHER(1), LAYER_V2, OTHER(2)]), {}, request);
    expect(plan.layers).toEqual([OTHER(1), LAYER_V3, OTHER(2)]);
    expect(plan.changes[0]).toEqual({ kind: 'layer-replace', from: LAYER_V2, to: LAYER_V3 });
  });

  it('upgrades even when five layers are attached, one of them ours', () => {
    const five = [OTHER(1), OTHER(2), LAYER_V2, OTHER(3), OTHER(4)];
    expect(planAttach('f', configWith(five), {}, request).layers).toEqual([
      OTHER(1),
      OTHER(2),
      LAYER_V3,
      OTHER(3),
      OTHER(4),
    ]);
  });

  it('refuses clearly when five other layers are attached', () => {
    const five = [1, 2, 3, 4, 5].map(OTHER);
    expect(() => planAttach('charge-card', configWith(five), {}, request)).toThrow(
      /charge-card already has 5 layers, the Lambda maximum of 5/,
    );
  });

  it('refuses another exec wrapper, container images and runtimes it cannot govern, saying why', () => {
    expect(() =>
      planAttach('f', configWith([], { AWS_LAMBDA_EXEC_WRAPPER: '/opt/otel-handler' }), {}, request),
    ).toThrow(/already uses the exec wrapper \/opt\/otel-handler/);
    expect(() =>
      planAttach('f', configWith([], {}, { PackageType: 'Image', Runtime: undefined }), {}, request),
    ).toThrow(/container image/);
    expect(() => planAttach('f', configWith([], {}, { Runtime: 'python3.11' }), {}, request)).toThrow(
      /f runs python3.11: the Bulkhead layer governs python3.12 and python3.13 .*would otherwise run ungoverned/,
    );
    expect(() => planAttach('f', configWith([], {}, { Runtime: 'provided.al2023' }), {}, request)).toThrow(
      /custom runtimes ignore AWS_LAMBDA_EXEC_WRAPPER/,
    );
    expect(() => planAttach('f', configWith([], {}, { Runtime: 'java21' }), {}, request)).toThrow(
      /java21 would run ungoverned/,
    );
  });

  it('attaches Python functions on python3.12 and python3.13 the same way as Node ones', () => {
    for (const runtime of ['python3.12', 'python3.13'] as const) {
      const plan = planAttach('f', configWith([], {}, { Runtime: runtime }), {}, request);
      expect(plan.layers).toEqual([request.layerArn]);
      expect(plan.environment.AWS_LAMBDA_EXEC_WRAPPER).toBe('/opt/bulkhead-wrapper');
    }
  });

  it('refuses an environment over the 4 KB limit', () => {
    expect(() => planAttach('f', configWith([]), { big: 'x'.repeat(5000) }, request)).toThrow(
      /4096-byte limit/,
    );
  });

  it('writes tags in the identity text form, separators encoded, so the shim reads them back', () => {
    const tags = { 'b=c': 'x,y', a: '100%' };
    const plan = planAttach('f', configWith([]), tags, request);
    expect(plan.environment.BULKHEAD_TAGS).toBe('a=100%25,b%3Dc=x%2Cy');
    expect(parseIdentity(plan.environment.BULKHEAD_TAGS ?? '')).toEqual(tags);
  });

  it('holds its guarantees for arbitrary existing configurations', () => {
    const layerArn = fc
      .tuple(fc.constantFrom('bulkhead', 'other', 'otel', 'datadog'), fc.integer({ min: 1, max: 9 }))
      .map(([name, version]) => `arn:aws:lambda:eu-west-1:123456789012:layer:${name}:${version}`);
    const envKey = fc.stringMatching(/^[A-Z][A-Z0-9_]{0,10}$/);
    fc.assert(
      fc.property(
        fc.array(layerArn, { maxLength: 5 }),
        fc.dictionary(envKey, fc.string({ maxLength: 20 }), { maxKeys: 6 }),
        fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 4 }),
        (layers, env, tags) => {
          delete env.AWS_LAMBDA_EXEC_WRAPPER;
          let plan: ReturnType<typeof planAttach>;
          try {
            plan = planAttach('f', configWith(layers, env), tags, request);
          } catch (error) {
            expect(error).toBeInstanceOf(AttachError);
            expect(layers.filter((l) => layerBase(l) !== layerBase(LAYER_V3)).length).toBeGreaterThanOrEqual(
              MAX_LAYERS,
            );
            return;
          }
          expect(plan.layers.length).toBeLessThanOrEqual(MAX_LAYERS);
          expect(plan.layers.filter((l) => layerBase(l) === layerBase(LAYER_V3))).toEqual([LAYER_V3]);
          expect(plan.layers.filter((l) => layerBase(l) !== layerBase(LAYER_V3))).toEqual(
            layers.filter((l) => layerBase(l) !== layerBase(LAYER_V3)),
          );
          for (const [key, value] of Object.entries(env))
            if (!key.startsWith('BULKHEAD_')) expect(plan.environment[key]).toBe(value);
          // Applying the plan again changes nothing: attach is idempotent.
          const again = planAttach('f', configWith(plan.layers, plan.environment), tags, request);
          expect(again.changes).toEqual([]);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('attach: against the Lambda API', () => {
  beforeEach(() => {
    lambda.on(ListTagsCommand).resolves({ Tags: { app: 'payments', env: 'prod' } });
  });

  it('reads configuration and tags, then updates with the revision id', async () => {
    lambda.on(GetFunctionConfigurationCommand).resolves(configWith([OTHER(1)], { KEEP: 'me' }));
    lambda.on(UpdateFunctionConfigurationCommand).resolves({});
    const result = await attachLayer({
      client: new LambdaClient({ region: 'eu-west-1' }),
      functionName: 'charge-card',
      layerArn: LAYER_V3,
      controlUrl: `${CONTROL}/`,
      token: 'wl_secret_token',
    });
    expect(result.updated).toBe(true);
    expect(lambda.commandCalls(ListTagsCommand)[0]?.args[0].input).toEqual({ Resource: FUNCTION_ARN });
    const update = lambda.commandCalls(UpdateFunctionConfigurationCommand)[0]?.args[0].input;
    expect(update).toEqual({
      FunctionName: 'charge-card',
      Layers: [OTHER(1), LAYER_V3],
      Environment: {
        Variables: {
          KEEP: 'me',
          AWS_LAMBDA_EXEC_WRAPPER: EXEC_WRAPPER_PATH,
          BULKHEAD_CONTROL_URL: CONTROL,
          BULKHEAD_TAGS: 'app=payments,env=prod',
          BULKHEAD_TOKEN: 'wl_secret_token',
        },
      },
      RevisionId: 'rev-1',
    });
  });

  it('refuses a version or alias: configuration changes apply to $LATEST', async () => {
    const client = new LambdaClient({ region: 'eu-west-1' });
    for (const functionName of [
      `${FUNCTION_ARN}:live`,
      'charge-card:3',
      '123456789012:function:charge-card:live',
    ]) {
      await expect(
        attachLayer({ client, functionName, layerArn: LAYER_V3, controlUrl: CONTROL }),
      ).rejects.toThrow(/names a version or alias/);
    }
    expect(lambda.calls()).toHaveLength(0);
    for (const name of ['charge-card', FUNCTION_ARN, '123456789012:function:charge-card'])
      expect(hasQualifier(name), name).toBe(false);
  });

  it('writes nothing when already attached', async () => {
    lambda.on(GetFunctionConfigurationCommand).resolves(
      configWith([LAYER_V3], {
        AWS_LAMBDA_EXEC_WRAPPER: EXEC_WRAPPER_PATH,
        BULKHEAD_CONTROL_URL: CONTROL,
        BULKHEAD_TAGS: 'app=payments,env=prod',
      }),
    );
    const progress: string[] = [];
    const result = await attachLayer({
      client: new LambdaClient({ region: 'eu-west-1' }),
      functionName: 'charge-card',
      layerArn: LAYER_V3,
      controlUrl: CONTROL,
      onProgress: (m) => progress.push(m),
    });
    expect(result).toMatchObject({ updated: false, changes: [] });
    expect(progress.some((line) => line.includes('warning: no BULKHEAD_TOKEN'))).toBe(true);
    expect(lambda.commandCalls(UpdateFunctionConfigurationCommand)).toHaveLength(0);
  });

  it('waits for the update to be applied when asked, and reports a failed update', async () => {
    lambda
      .on(GetFunctionConfigurationCommand)
      .resolvesOnce(configWith([]))
      .resolvesOnce(configWith([], {}, { LastUpdateStatus: 'InProgress' }))
      .resolvesOnce(configWith([], {}, { LastUpdateStatus: 'Successful' }));
    lambda.on(UpdateFunctionConfigurationCommand).resolves({});
    const sleeps: number[] = [];
    const progress: string[] = [];
    await attachLayer({
      client: new LambdaClient({ region: 'eu-west-1' }),
      functionName: 'charge-card',
      layerArn: LAYER_V3,
      controlUrl: CONTROL,
      wait: true,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
      onProgress: (m) => progress.push(m),
    });
    expect(sleeps).toEqual([1000]);
    expect(progress.at(-1)).toBe('charge-card: update applied');

    lambda.reset();
    lambda.on(ListTagsCommand).resolves({});
    lambda
      .on(GetFunctionConfigurationCommand)
      .resolvesOnce(configWith([]))
      .resolvesOnce(
        configWith([], {}, { LastUpdateStatus: 'Failed', LastUpdateStatusReason: 'KMS key disabled' }),
      );
    lambda.on(UpdateFunctionConfigurationCommand).resolves({});
    await expect(
      attachLayer({
        client: new LambdaClient({ region: 'eu-west-1' }),
        functionName: 'charge-card',
        layerArn: LAYER_V3,
        controlUrl: CONTROL,
        wait: true,
        sleep: async () => undefined,
      }),
    ).rejects.toThrow(/KMS key disabled/);
  });

  it('validates the layer ARN and control URL before calling AWS', async () => {
    const client = new LambdaClient({ region: 'eu-west-1' });
    const base = { client, functionName: 'f', controlUrl: CONTROL, layerArn: LAYER_V3 };
    await expect(
      attachLayer({ ...base, layerArn: 'arn:aws:lambda:eu-west-1:123456789012:layer:bulkhead' }),
    ).rejects.toThrow(/not a layer version ARN/);
    await expect(attachLayer({ ...base, controlUrl: 'ftp://x' })).rejects.toThrow(/http\(s\)/);
    await expect(attachLayer({ ...base, controlUrl: 'https://u:p@x' })).rejects.toThrow(/credentials/);
    expect(lambda.calls()).toHaveLength(0);
  });
});

describe('attach: CLI', () => {
  const saved = process.env.BH_TEST_TOKEN;
  afterEach(() => {
    if (saved === undefined) delete process.env.BH_TEST_TOKEN;
    else process.env.BH_TEST_TOKEN = saved;
  });

  it('takes the token from the named variable and never prints it', async () => {
    process.env.BH_TEST_TOKEN = 'wl_do_not_print_me';
    lambda.on(GetFunctionConfigurationCommand).resolves(configWith([]));
    lambda.on(ListTagsCommand).resolves({});
    lambda.on(UpdateFunctionConfigurationCommand).resolves({});
    const io = captureIO();
    const args = parseCommandArgs(attachCommand, [
      FUNCTION_ARN,
      '--layer',
      LAYER_V3,
      '--control',
      CONTROL,
      '--token-env',
      'BH_TEST_TOKEN',
      '--json',
    ]);
    expect(await attachCommand.run(args, io)).toBe(0);
    const printed = [...io.outText, ...io.errText].join('\n');
    expect(printed).not.toContain('wl_do_not_print_me');
    expect(printed).toContain('set BULKHEAD_TOKEN (value hidden)');
    expect(JSON.parse(io.outText[0] ?? '{}')).toMatchObject({ updated: true, layers: [LAYER_V3] });
    const update = lambda.commandCalls(UpdateFunctionConfigurationCommand)[0]?.args[0].input;
    expect(update?.Environment?.Variables?.BULKHEAD_TOKEN).toBe('wl_do_not_print_me');
  });

  it('dry run shows the changes and writes nothing', async () => {
    lambda.on(GetFunctionConfigurationCommand).resolves(configWith([LAYER_V2]));
    lambda.on(ListTagsCommand).resolves({});
    const io = captureIO();
    const args = parseCommandArgs(attachCommand, [
      'f',
      '--layer',
      LAYER_V3,
      '--control',
      CONTROL,
      '--region',
      'eu-west-1',
      '--dry-run',
    ]);
    expect(await attachCommand.run(args, io)).toBe(0);
    expect(io.errText).toContain(`f: replace layer ${LAYER_V2} with ${LAYER_V3}`);
    expect(io.outText).toEqual(['f: would apply 3 change(s)']);
    expect(lambda.commandCalls(UpdateFunctionConfigurationCommand)).toHaveLength(0);
  });

  it('usage errors: no function, empty token variable, no region', async () => {
    const io = captureIO();
    const run = (argv: string[]) => attachCommand.run(parseCommandArgs(attachCommand, argv), io);
    await expect(run(['--layer', LAYER_V3, '--control', CONTROL])).rejects.toThrow(/exactly one FUNCTION/);
    delete process.env.BH_TEST_TOKEN;
    await expect(
      run(['f', '--layer', LAYER_V3, '--control', CONTROL, '--token-env', 'BH_TEST_TOKEN']),
    ).rejects.toThrow(/empty or unset/);
    const region = process.env.AWS_REGION;
    delete process.env.AWS_REGION;
    try {
      await expect(run(['f', '--layer', LAYER_V3, '--control', CONTROL])).rejects.toThrow(
        /--region is required/,
      );
    } finally {
      if (region !== undefined) process.env.AWS_REGION = region;
    }
  });
});

describe('attach --token-secret', () => {
  const SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:bulkhead/charge-card-AbC123';
  const PARTIAL = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:bulkhead/charge-card';
  const PARAMETER = 'arn:aws:ssm:eu-west-1:123456789012:parameter/bulkhead/charge-card/token';
  const request = { layerArn: LAYER_V3, controlUrl: CONTROL };

  it('plans BULKHEAD_TOKEN_SECRET instead of BULKHEAD_TOKEN, removing a plain token (and the reverse)', () => {
    const plan = planAttach(
      'f',
      configWith([], { BULKHEAD_TOKEN: 'bhk_old', KEEP: '1' }),
      {},
      {
        ...request,
        tokenSecret: SECRET,
      },
    );
    expect(plan.environment).toEqual({
      KEEP: '1',
      AWS_LAMBDA_EXEC_WRAPPER: EXEC_WRAPPER_PATH,
      BULKHEAD_CONTROL_URL: CONTROL,
      BULKHEAD_TOKEN_SECRET: SECRET,
    });
    expect(plan.changes).toContainEqual({ kind: 'env-remove', name: 'BULKHEAD_TOKEN' });
    expect(plan.changes).toContainEqual({ kind: 'env-set', name: 'BULKHEAD_TOKEN_SECRET', secret: false });
    // Idempotent.
    expect(
      planAttach('f', configWith(plan.layers, plan.environment), {}, { ...request, tokenSecret: SECRET })
        .changes,
    ).toEqual([]);
    // Back to a plain token: the secret variable goes.
    const back = planAttach(
      'f',
      configWith(plan.layers, plan.environment),
      {},
      { ...request, token: 'bhk_new' },
    );
    expect(back.environment.BULKHEAD_TOKEN_SECRET).toBeUndefined();
    expect(back.environment.BULKHEAD_TOKEN).toBe('bhk_new');
    expect(() =>
      planAttach('f', configWith([]), {}, { ...request, token: 't', tokenSecret: SECRET }),
    ).toThrow(/not both/);
    // Python functions too: the layer's Python extension reads the secret as the Node one does.
    for (const Runtime of ['python3.12', 'python3.13']) {
      const python = planAttach(
        'f',
        configWith([], { BULKHEAD_TOKEN: 'bhk_old' }, { Runtime }),
        {},
        {
          ...request,
          tokenSecret: SECRET,
        },
      );
      expect(python.environment).toEqual({
        AWS_LAMBDA_EXEC_WRAPPER: EXEC_WRAPPER_PATH,
        BULKHEAD_CONTROL_URL: CONTROL,
        BULKHEAD_TOKEN_SECRET: SECRET,
      });
    }
  });

  it('--attest sets BULKHEAD_ATTEST=aws beside the secret, idempotently; without it the variable is left alone', () => {
    const plan = planAttach('f', configWith([]), {}, { ...request, tokenSecret: SECRET, attest: true });
    expect(plan.environment).toMatchObject({ BULKHEAD_TOKEN_SECRET: SECRET, BULKHEAD_ATTEST: 'aws' });
    expect(plan.changes).toContainEqual({ kind: 'env-set', name: 'BULKHEAD_ATTEST', secret: false });
    expect(
      planAttach(
        'f',
        configWith(plan.layers, plan.environment),
        {},
        { ...request, tokenSecret: SECRET, attest: true },
      ).changes,
    ).toEqual([]);
    const again = planAttach(
      'f',
      configWith(plan.layers, plan.environment),
      {},
      { ...request, tokenSecret: SECRET },
    );
    expect(again.environment.BULKHEAD_ATTEST).toBe('aws');
  });

  it('says what the execution role needs: the read, and kms:Decrypt through the service', () => {
    expect(tokenSecretPolicy(SECRET).Statement).toEqual([
      {
        Sid: 'ReadBulkheadToken',
        Effect: 'Allow',
        Action: 'secretsmanager:GetSecretValue',
        Resource: SECRET,
      },
      {
        Sid: 'DecryptBulkheadTokenIfCustomerManagedKey',
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: 'arn:aws:kms:eu-west-1:123456789012:key/*',
        Condition: { StringEquals: { 'kms:ViaService': 'secretsmanager.eu-west-1.amazonaws.com' } },
      },
    ]);
    // Without the suffix Secrets Manager appends, the policy matches any suffix.
    expect(tokenSecretPolicy(PARTIAL).Statement[0]?.Resource).toBe(`${PARTIAL}-??????`);
    expect(tokenSecretPolicy(PARAMETER).Statement.map((s) => [s.Action, s.Resource])).toEqual([
      ['ssm:GetParameter', PARAMETER],
      ['kms:Decrypt', 'arn:aws:kms:eu-west-1:123456789012:key/*'],
    ]);
    expect(tokenSecretPolicy(PARAMETER).Statement[1]?.Condition).toEqual({
      StringEquals: { 'kms:ViaService': 'ssm.eu-west-1.amazonaws.com' },
    });
  });

  it('CLI: sets the ARN, never a token, and prints the permissions (text and JSON)', async () => {
    lambda.on(GetFunctionConfigurationCommand).resolves(configWith([], { BULKHEAD_TOKEN: 'bhk_plain_old' }));
    lambda.on(ListTagsCommand).resolves({});
    lambda.on(UpdateFunctionConfigurationCommand).resolves({});
    const io = captureIO();
    const argv = [FUNCTION_ARN, '--layer', LAYER_V3, '--control', CONTROL, '--token-secret', PARAMETER];
    expect(await attachCommand.run(parseCommandArgs(attachCommand, argv), io)).toBe(0);
    const variables = lambda.commandCalls(UpdateFunctionConfigurationCommand)[0]?.args[0].input.Environment
      ?.Variables;
    expect(variables?.BULKHEAD_TOKEN_SECRET).toBe(PARAMETER);
    expect(variables).not.toHaveProperty('BULKHEAD_TOKEN');
    expect(io.errText).toContain(`${FUNCTION_ARN}: remove BULKHEAD_TOKEN`);
    const out = io.outText.join('\n');
    expect(out).toContain('its execution role must be allowed to read the token:');
    expect(out).toContain(`  ssm:GetParameter on ${PARAMETER}`);
    expect(out).toMatch(/ {2}kms:Decrypt on the parameter's KMS key \(via ssm\.eu-west-1\.amazonaws\.com\)/);
    expect(out).not.toContain('bhk_plain_old');

    lambda.reset();
    lambda.on(GetFunctionConfigurationCommand).resolves(configWith([LAYER_V3], {}));
    lambda.on(ListTagsCommand).resolves({});
    const json = captureIO();
    await attachCommand.run(parseCommandArgs(attachCommand, [...argv, '--json', '--dry-run']), json);
    expect(JSON.parse(json.outText[0] ?? '{}')).toMatchObject({
      dryRun: true,
      changes: expect.arrayContaining(['set BULKHEAD_TOKEN_SECRET']),
      executionRolePolicy: tokenSecretPolicy(PARAMETER),
    });
  });

  it('CLI: notes a secret in another account', async () => {
    lambda.on(GetFunctionConfigurationCommand).resolves(configWith([]));
    lambda.on(ListTagsCommand).resolves({});
    lambda.on(UpdateFunctionConfigurationCommand).resolves({});
    const io = captureIO();
    const elsewhere = 'arn:aws:secretsmanager:eu-west-1:999988887777:secret:shared/bulkhead-QwE456';
    await attachCommand.run(
      parseCommandArgs(attachCommand, [
        FUNCTION_ARN,
        '--layer',
        LAYER_V3,
        '--control',
        CONTROL,
        '--token-secret',
        elsewhere,
      ]),
      io,
    );
    expect(io.errText.join('\n')).toMatch(
      /the token secret is in account 999988887777, the function in 123456789012: the secret's resource policy/,
    );
  });

  it('CLI: refuses --token-secret with --token-env, and a bad ARN, saying why, before calling AWS', async () => {
    process.env.BH_TEST_TOKEN = 'wl_token';
    const io = captureIO();
    const run = (extra: string[]) =>
      attachCommand.run(
        parseCommandArgs(attachCommand, [FUNCTION_ARN, '--layer', LAYER_V3, '--control', CONTROL, ...extra]),
        io,
      );
    try {
      await expect(run(['--token-env', 'BH_TEST_TOKEN', '--token-secret', SECRET])).rejects.toThrow(
        /exclusive/,
      );
      for (const [arn, message] of [
        ['bulkhead/charge-card', /is not an ARN/],
        ['arn:aws:s3:::bucket/token', /Secrets Manager secret or an SSM parameter, not s3/],
        ['arn:aws:secretsmanager:eu-west-1:123:secret:x', /the account must be 12 digits/],
        ['arn:aws:ssm:eu-west-1:123456789012:secret:x', /names a parameter/],
      ] as const) {
        const error = await run(['--token-secret', arn]).catch((caught: unknown) => caught as Error);
        expect(error).toBeInstanceOf(UsageError);
        expect((error as Error).message).toMatch(/^--token-secret: /);
        expect((error as Error).message).toMatch(message);
      }
      expect(lambda.calls()).toHaveLength(0);
    } finally {
      delete process.env.BH_TEST_TOKEN;
    }
  });
});
