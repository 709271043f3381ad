// Attested identity on Lambda, end to end: the real extension from the built layer, under the
// Lambda emulator, signs sts:GetCallerIdentity with the function's role credentials
// (BULKHEAD_ATTEST=aws); the control API (--require-attested) sends it to the AWS stand-in, which
// checks the SigV4 signature as STS does, and answers a session pinned to the function. Bundles
// and records then go with the session; an unattested token and an impostor role get nothing.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LambdaEmulator } from '../../emulator/index.js';
import { type AwsStandin, startAwsStandin } from '../support/aws-standin.js';
import {
  buildLayerDir,
  type ControlHarness,
  cardsPolicy,
  createSandbox,
  type LayerHarness,
  startControl,
} from './harness.js';

// The emulator's account (the Extensions API registers the extension with it).
const ACCOUNT = '012345678912';
const AUDIENCE = 'https://bulkhead.example.test';
const CHARGE_CARD_ROLE = {
  id: 'ASIACHARGECARD000002',
  secret: 'charge/card+role/secret1111111111111111',
  token: 'IQoJb3JpZ2luX2VjECHARGECARD//attest==',
};
const OTHER_ROLE = {
  id: 'ASIALEDGERWRITER0002',
  secret: 'ledger/writer+role/secret222222222222222',
  token: 'IQoJb3JpZ2luX2VjELEDGER//attest==',
};

interface WriterResult {
  requestId: string;
  ids: string[];
  revision: number | null;
}

let control: ControlHarness;
let aws: AwsStandin;
let layer: LayerHarness;
let revision: number;
const sandboxes: LambdaEmulator[] = [];

function sandbox(role: typeof CHARGE_CARD_ROLE | undefined): LambdaEmulator {
  const instance = createSandbox({
    layer,
    control,
    fn: 'spool-writer',
    timeoutMs: 10_000,
    region: 'eu-west-1',
    env: {
      ...(role
        ? {
            BULKHEAD_ATTEST: 'aws',
            BULKHEAD_ATTEST_AUDIENCE: AUDIENCE,
            AWS_ACCESS_KEY_ID: role.id,
            AWS_SECRET_ACCESS_KEY: role.secret,
            AWS_SESSION_TOKEN: role.token,
            AWS_ENDPOINT_URL_STS: aws.url,
          }
        : {}),
      BULKHEAD_FETCH_TIMEOUT_MS: '3000',
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

function expectNoSecrets(emulator: LambdaEmulator): void {
  const logs = emulator.logText();
  expect(logs).not.toContain(control.workloadToken);
  for (const role of [CHARGE_CARD_ROLE, OTHER_ROLE]) {
    expect(logs).not.toContain(role.secret);
    expect(logs).not.toContain(role.token);
  }
  expect(logs).not.toMatch(/bhk_[0-9a-f]{16}_/);
}

beforeAll(async () => {
  aws = await startAwsStandin({
    credentials: {
      [CHARGE_CARD_ROLE.id]: {
        secretAccessKey: CHARGE_CARD_ROLE.secret,
        sessionToken: CHARGE_CARD_ROLE.token,
        arn: `arn:aws:sts::${ACCOUNT}:assumed-role/charge-card-role/charge-card`,
        account: ACCOUNT,
      },
      [OTHER_ROLE.id]: {
        secretAccessKey: OTHER_ROLE.secret,
        sessionToken: OTHER_ROLE.token,
        arn: `arn:aws:sts::${ACCOUNT}:assumed-role/ledger-role/ledger-writer`,
        account: ACCOUNT,
      },
    },
  });
  control = await startControl(
    {
      attestation: {
        audience: AUDIENCE,
        aws: { stsEndpoint: aws.url, accounts: [ACCOUNT] },
        require: true,
      },
    },
    { groups: ['cards'] },
  );
  revision = await control.apply(cardsPolicy([443], 'enforce', 'api.example.com'));
  layer = buildLayerDir({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] });
});

afterAll(async () => {
  await Promise.all(sandboxes.map((s) => s.close()));
  layer?.cleanup();
  await aws?.close();
  await control?.close();
});

describe('attested identity on Lambda (BULKHEAD_ATTEST=aws, --require-attested)', () => {
  it('attests with the role, fetches its bundle and files its records as the attested function', async () => {
    const emulator = sandbox(CHARGE_CARD_ROLE);
    const result = await emulator.invoke({ records: 2 });
    expect(result.status, emulator.logText()).toBe('success');
    const body = result.json<WriterResult>();
    expect(status(emulator)).toMatchObject({ source: 'control-api', revision });
    expect(body.revision).toBe(revision);
    expect(emulator.logText('extension:bulkhead')).toContain(
      `attested as arn:aws:sts::${ACCOUNT}:assumed-role/charge-card-role/charge-card (aws)`,
    );
    expect(aws.count('GetCallerIdentity')).toBeGreaterThanOrEqual(1);
    const stored = (await control.denies('limit=1000')).filter((r) => r.invocationId === body.requestId);
    expect(stored.map((r) => r.id).sort()).toEqual([...body.ids].sort());
    for (const record of stored)
      expect(record.workload).toMatchObject({
        name: 'charge-card',
        account: ACCOUNT,
        role: 'charge-card-role',
        attested: 'aws',
      });
    expectNoSecrets(emulator);
  });

  it('without attestation, the workload token alone gets no bundle: the fail mode governs', async () => {
    const emulator = sandbox(undefined);
    const result = await emulator.invoke({});
    expect(result.status, emulator.logText()).toBe('success');
    expect(result.json<WriterResult>().revision).toBe(0);
    expect(status(emulator)).toMatchObject({ source: 'none', failMode: 'closed' });
    expect(emulator.logText('extension:bulkhead')).toMatch(/403/);
    expectNoSecrets(emulator);
  });

  it("a function holding another role's credentials is refused: the proof names the other function", async () => {
    const emulator = sandbox(OTHER_ROLE);
    const result = await emulator.invoke({});
    expect(result.status, emulator.logText()).toBe('success');
    expect(result.json<WriterResult>().revision).toBe(0);
    expect(emulator.logText('extension:bulkhead')).toContain(
      'attestation failed (POST /v1/attest answered 403: the workload claims name=charge-card but the proof says name=ledger-writer)',
    );
    expectNoSecrets(emulator);
  });
});
