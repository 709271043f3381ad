// The workload token from Secrets Manager or an SSM SecureString (BULKHEAD_TOKEN_SECRET, set by
// `bulkhead attach --token-secret`), end to end: the real extension from the built layer, under the
// Lambda emulator, reads its token with the function's role credentials from the AWS stand-in
// (which checks the SigV4 signatures and the role's permissions), then fetches its bundle and
// forwards its records with it. A secret it may not read falls to the fail mode, as an unreachable
// control API does, and is read again later.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LambdaEmulator } from '../../emulator/index.js';
import type { StandinCredential } from '../support/aws-standin.js';
import { type AwsStandin, startAwsStandin } from '../support/aws-standin.js';
import {
  buildLayerDir,
  type ControlHarness,
  cardsPolicy,
  createSandbox,
  type LayerHarness,
  startControl,
} from './harness.js';

const ACCOUNT = '111122223333';
const SECRET = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:bulkhead/charge-card-AbC123`;
const JSON_SECRET = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:bulkhead/charge-card-json-QwE456`;
const DENIED = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:bulkhead/other-team-ZzZ999`;
const PARAMETER = `arn:aws:ssm:eu-west-1:${ACCOUNT}:parameter/bulkhead/charge-card/token`;
const ROLE = {
  id: 'ASIACHARGECARD000001',
  secret: 'charge/card+role/secret0000000000000000',
  token: 'IQoJb3JpZ2luX2VjECHARGECARD//session==',
};

interface WriterResult {
  requestId: string;
  ids: string[];
  revision: number | null;
}

let control: ControlHarness;
let aws: AwsStandin;
let role: StandinCredential;
let layer: LayerHarness;
let revision: number;
const sandboxes: LambdaEmulator[] = [];

function sandbox(tokenSecret: string): LambdaEmulator {
  // No BULKHEAD_TOKEN (no `control` given to createSandbox): the token comes from the secret.
  const instance = createSandbox({
    layer,
    fn: 'spool-writer',
    timeoutMs: 10_000,
    region: 'eu-west-1',
    env: {
      BULKHEAD_TOKEN_SECRET: tokenSecret,
      AWS_ACCESS_KEY_ID: ROLE.id,
      AWS_SECRET_ACCESS_KEY: ROLE.secret,
      AWS_SESSION_TOKEN: ROLE.token,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: aws.url,
      AWS_ENDPOINT_URL_SSM: aws.url,
      BULKHEAD_FETCH_TIMEOUT_MS: '2000',
    },
  });
  sandboxes.push(instance);
  return instance;
}

function status(emulator: LambdaEmulator): Record<string, unknown> {
  return JSON.parse(readFileSync(join(emulator.stateDir, 'extension-status.json'), 'utf8')) as Record<
    string,
    unknown
  >;
}

async function storedIds(requestId: string): Promise<string[]> {
  return (await control.denies('limit=1000'))
    .filter((r) => r.invocationId === requestId)
    .map((r) => r.id as string)
    .sort();
}

function expectNoSecrets(emulator: LambdaEmulator): void {
  const logs = emulator.logText();
  expect(logs).not.toContain(control.workloadToken);
  expect(logs).not.toContain(ROLE.secret);
  expect(logs).not.toContain(ROLE.token);
}

beforeAll(async () => {
  control = await startControl();
  revision = await control.apply(cardsPolicy([443], 'enforce', 'api.example.com'));
  role = {
    secretAccessKey: ROLE.secret,
    sessionToken: ROLE.token,
    arn: `arn:aws:sts::${ACCOUNT}:assumed-role/charge-card-role/charge-card`,
    account: ACCOUNT,
    allow: [
      { action: 'secretsmanager:GetSecretValue', resource: SECRET },
      { action: 'secretsmanager:GetSecretValue', resource: JSON_SECRET },
      { action: 'ssm:GetParameter', resource: PARAMETER },
      { action: 'kms:Decrypt', resource: PARAMETER },
    ],
  };
  aws = await startAwsStandin({
    credentials: { [ROLE.id]: role },
    secrets: {
      [SECRET]: control.workloadToken,
      [JSON_SECRET]: JSON.stringify({ token: control.workloadToken }),
      [DENIED]: control.workloadToken,
    },
    parameters: { [PARAMETER]: control.workloadToken },
  });
  layer = buildLayerDir({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] });
});

afterAll(async () => {
  await Promise.all(sandboxes.map((s) => s.close()));
  layer?.cleanup();
  await aws?.close();
  await control?.close();
});

describe('the extension reads its token from BULKHEAD_TOKEN_SECRET', () => {
  it('from a Secrets Manager secret: fetches its bundle and forwards its records with it', async () => {
    const emulator = sandbox(SECRET);
    const result = await emulator.invoke({ records: 2 });
    expect(result.status, emulator.logText()).toBe('success');
    const body = result.json<WriterResult>();
    expect(status(emulator)).toMatchObject({ source: 'control-api', revision, failMode: 'closed' });
    expect(body.revision).toBe(revision);
    expect(emulator.logText('extension:bulkhead')).toContain(`workload token read from ${SECRET}`);
    expect(aws.calls).toContainEqual({
      service: 'secretsmanager',
      action: 'GetSecretValue',
      accessKeyId: ROLE.id,
      status: 200,
    });
    // The report forwarder uses the same token: the records reach the control API.
    expect(await storedIds(body.requestId)).toEqual([...body.ids].sort());
    expectNoSecrets(emulator);
  });

  it('from a JSON secret {"token": …} and from an SSM SecureString parameter', async () => {
    for (const arn of [JSON_SECRET, PARAMETER]) {
      const emulator = sandbox(arn);
      const result = await emulator.invoke({});
      expect(result.status, emulator.logText()).toBe('success');
      expect(status(emulator)).toMatchObject({ source: 'control-api', revision });
      expect(result.json<WriterResult>().revision).toBe(revision);
      expectNoSecrets(emulator);
    }
    expect(aws.calls).toContainEqual({
      service: 'ssm',
      action: 'GetParameter',
      accessKeyId: ROLE.id,
      status: 200,
    });
  });

  it('a secret the role may not read: fail mode, the reason logged without secrets; read again once allowed', async () => {
    const emulator = sandbox(DENIED);
    const first = await emulator.invoke({});
    expect(first.status, emulator.logText()).toBe('success');
    expect(first.json<WriterResult>().revision).toBe(0);
    const failed = status(emulator);
    expect(failed).toMatchObject({ source: 'none', revision: 0, failMode: 'closed' });
    expect(failed.reason).toMatch(
      new RegExp(`^token secret: Secrets Manager refused ${DENIED} \\(400 AccessDeniedException\\)`),
    );
    const logs = emulator.logText('extension:bulkhead');
    expect(logs).toMatch(/cannot read the workload token: Secrets Manager refused .*AccessDeniedException/);
    expect(logs).toMatch(/no verified bundle: the shim applies fail mode closed \(token secret:/);
    expectNoSecrets(emulator);

    // Allowed now: after the retry wait (2 s after a failure), the next INVOKE reads it and fetches.
    role.allow?.push({ action: 'secretsmanager:GetSecretValue', resource: DENIED });
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    const second = await emulator.invoke({});
    expect(second.status).toBe('success');
    expect(second.json<WriterResult>().revision).toBe(revision);
    expect(emulator.logText('extension:bulkhead')).toContain(`workload token read from ${DENIED}`);
    expectNoSecrets(emulator);
  });
});
