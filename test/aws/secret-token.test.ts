// The workload token from Secrets Manager or an SSM SecureString (BULKHEAD_TOKEN_SECRET), fetched
// with SigV4-signed requests from the function's credentials, against the AWS stand-in that checks
// the signatures and the credential's permissions.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fetchTokenFromSecret,
  parseTokenSecretArn,
  TokenSecretError,
  tokenFromSecretValue,
  tokenSecretEndpoint,
} from '../../runtime-shims/node/aws/secret-token.js';
import { type AwsStandin, startAwsStandin } from '../support/aws-standin.js';

const ACCOUNT = '111122223333';
const TOKEN = 'bhk_0123456789abcdef_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcde';
const PLAIN = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:bulkhead/charge-card-AbC123`;
const AS_JSON = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:bulkhead/json-token-XyZ789`;
const NOT_A_TOKEN = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:bulkhead/prose-QwE456`;
const MISSING = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:bulkhead/absent-AaA111`;
const PARAMETER = `arn:aws:ssm:eu-west-1:${ACCOUNT}:parameter/bulkhead/charge-card/token`;
const ROLE = {
  id: 'ASIAROLEEXAMPLE00001',
  secret: 'role/secret+key0000000000000000000000000',
  token: 'IQoJROLE//token==',
};
const NARROW = {
  id: 'ASIANARROWEXAMPLE001',
  secret: 'narrow/secret+key00000000000000000000000',
  token: 'IQoJNARROW//token==',
};

let aws: AwsStandin;

function env(key = ROLE, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    AWS_ACCESS_KEY_ID: key.id,
    AWS_SECRET_ACCESS_KEY: key.secret,
    AWS_SESSION_TOKEN: key.token,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: aws.url,
    AWS_ENDPOINT_URL_SSM: aws.url,
    ...extra,
  };
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a failure');
}

beforeAll(async () => {
  aws = await startAwsStandin({
    credentials: {
      [ROLE.id]: {
        secretAccessKey: ROLE.secret,
        sessionToken: ROLE.token,
        arn: `arn:aws:sts::${ACCOUNT}:assumed-role/charge-card-role/charge-card`,
        account: ACCOUNT,
      },
      // May read the plain secret and the parameter, but not decrypt it.
      [NARROW.id]: {
        secretAccessKey: NARROW.secret,
        sessionToken: NARROW.token,
        arn: `arn:aws:sts::${ACCOUNT}:assumed-role/narrow-role/other-fn`,
        account: ACCOUNT,
        allow: [{ action: 'secretsmanager:GetSecretValue', resource: PLAIN }, 'ssm:GetParameter'],
      },
    },
    secrets: {
      [PLAIN]: `${TOKEN}\n`,
      [AS_JSON]: JSON.stringify({ token: TOKEN, note: 'rotated by hand' }),
      [NOT_A_TOKEN]: 'two words',
    },
    parameters: { [PARAMETER]: TOKEN },
  });
});
afterAll(() => aws.close());

describe('token secret ARNs', () => {
  it('parses Secrets Manager and SSM parameter ARNs', () => {
    expect(parseTokenSecretArn(PLAIN)).toEqual({
      arn: PLAIN,
      service: 'secretsmanager',
      partition: 'aws',
      region: 'eu-west-1',
      account: ACCOUNT,
      name: 'bulkhead/charge-card-AbC123',
    });
    expect(parseTokenSecretArn(PARAMETER)).toMatchObject({
      service: 'ssm',
      name: 'bulkhead/charge-card/token',
    });
    expect(parseTokenSecretArn(`arn:aws-cn:ssm:cn-north-1:${ACCOUNT}:parameter/t`)).toMatchObject({
      partition: 'aws-cn',
    });
  });

  it.each([
    ['', /empty/],
    ['bulkhead/charge-card', /is not an ARN/],
    [`arn:aws:s3:eu-west-1:${ACCOUNT}:bucket/x`, /Secrets Manager secret or an SSM parameter, not s3/],
    [`arn:aws:secretsmanager::${ACCOUNT}:secret:x`, /has no region/],
    [`arn:aws:secretsmanager:Europe:${ACCOUNT}:secret:x`, /not an AWS region/],
    ['arn:aws:secretsmanager:eu-west-1:1234:secret:x', /12 digits/],
    [`arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:parameter/x`, /names a secret/],
    [`arn:aws:ssm:eu-west-1:${ACCOUNT}:secret:x`, /names a parameter/],
    [`arn:aws:ssm:eu-west-1:${ACCOUNT}:parameter//x`, /parameter name/],
    [`arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:a b`, /white space/],
    [`arn:oops:ssm:eu-west-1:${ACCOUNT}:parameter/x`, /not an AWS partition/],
  ])('refuses %j, saying what is wrong', (arn, message) => {
    expect(() => parseTokenSecretArn(arn)).toThrow(TokenSecretError);
    expect(() => parseTokenSecretArn(arn)).toThrow(message);
  });

  it('addresses the regional endpoint unless the SDK variable names another', () => {
    expect(tokenSecretEndpoint(parseTokenSecretArn(PLAIN), {}).href).toBe(
      'https://secretsmanager.eu-west-1.amazonaws.com/',
    );
    expect(tokenSecretEndpoint(parseTokenSecretArn(PARAMETER), {}).href).toBe(
      'https://ssm.eu-west-1.amazonaws.com/',
    );
    expect(
      tokenSecretEndpoint(parseTokenSecretArn(`arn:aws-cn:ssm:cn-north-1:${ACCOUNT}:parameter/t`), {}).host,
    ).toBe('ssm.cn-north-1.amazonaws.com.cn');
    expect(
      tokenSecretEndpoint(parseTokenSecretArn(PARAMETER), { AWS_ENDPOINT_URL_SSM: 'http://127.0.0.1:4566' })
        .host,
    ).toBe('127.0.0.1:4566');
    expect(() =>
      tokenSecretEndpoint(parseTokenSecretArn(PLAIN), { AWS_ENDPOINT_URL_SECRETS_MANAGER: 'nope' }),
    ).toThrow(/AWS_ENDPOINT_URL_SECRETS_MANAGER is not a URL/);
  });

  it('reads the token from the value itself or from JSON {"token": …}', () => {
    expect(tokenFromSecretValue(` ${TOKEN}\n`)).toBe(TOKEN);
    expect(tokenFromSecretValue(JSON.stringify({ token: TOKEN }))).toBe(TOKEN);
    for (const [value, message] of [
      [undefined, /no string value/],
      ['{"tok": "x"}', /without a string "token"/],
      ['{not json', /not JSON/],
      ['two words', /not a token/],
      ['', /not a token/],
    ] as const) {
      const error = (() => {
        try {
          tokenFromSecretValue(value);
        } catch (caught) {
          return caught as Error;
        }
        return undefined;
      })();
      expect(error?.message).toMatch(message);
      if (typeof value === 'string' && value !== '') expect(error?.message).not.toContain(value);
    }
  });
});

describe('fetchTokenFromSecret against the stand-in', () => {
  it('reads a Secrets Manager secret (plain and JSON) and an SSM SecureString with signed requests', async () => {
    expect(await fetchTokenFromSecret(PLAIN, { env: env(), timeoutMs: 2_000 })).toBe(TOKEN);
    expect(await fetchTokenFromSecret(AS_JSON, { env: env(), timeoutMs: 2_000 })).toBe(TOKEN);
    expect(await fetchTokenFromSecret(PARAMETER, { env: env(), timeoutMs: 2_000 })).toBe(TOKEN);
    expect(aws.calls.slice(-3)).toEqual([
      { service: 'secretsmanager', action: 'GetSecretValue', accessKeyId: ROLE.id, status: 200 },
      { service: 'secretsmanager', action: 'GetSecretValue', accessKeyId: ROLE.id, status: 200 },
      { service: 'ssm', action: 'GetParameter', accessKeyId: ROLE.id, status: 200 },
    ]);
  });

  it('says what AWS refused: access denied, not found, no kms:Decrypt, bad credentials; never the value', async () => {
    const cases: [string, NodeJS.ProcessEnv, RegExp][] = [
      [
        AS_JSON,
        env(NARROW),
        /Secrets Manager refused .*json-token.* \(400 AccessDeniedException\): User: .* is not authorized/,
      ],
      [MISSING, env(), /\(400 ResourceNotFoundException\)/],
      [PARAMETER, env(NARROW), /SSM refused .* \(400 AccessDeniedException\): .*kms:Decrypt/],
      [PLAIN, env({ ...ROLE, secret: 'wrong/secret' }), /\(400 InvalidSignatureException\)/],
      [PLAIN, env({ ...ROLE, token: 'IQoJ-other' }), /\(400 UnrecognizedClientException\)/],
      [NOT_A_TOKEN, env(), /not a token/],
    ];
    for (const [arn, environment, message] of cases) {
      const error = await failure(fetchTokenFromSecret(arn, { env: environment, timeoutMs: 2_000 }));
      expect(error).toBeInstanceOf(TokenSecretError);
      expect(error.message).toMatch(message);
      expect(error.message).not.toContain(TOKEN);
      expect(error.message).not.toContain('two words');
      expect(error.message).not.toContain(ROLE.secret);
    }
    // The narrow role still reads what it may.
    expect(await fetchTokenFromSecret(PLAIN, { env: env(NARROW), timeoutMs: 2_000 })).toBe(TOKEN);
  });

  it('names a missing credential variable', async () => {
    const partial = env();
    delete partial.AWS_SECRET_ACCESS_KEY;
    expect((await failure(fetchTokenFromSecret(PLAIN, { env: partial, timeoutMs: 2_000 }))).message).toMatch(
      /AWS_SECRET_ACCESS_KEY is not set/,
    );
  });

  it('is bounded in time, and says when the service cannot be reached', async () => {
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const started = Date.now();
      const error = await failure(
        fetchTokenFromSecret(PLAIN, {
          env: env(ROLE, { AWS_ENDPOINT_URL_SECRETS_MANAGER: url }),
          timeoutMs: 200,
        }),
      );
      expect(error.message).toMatch(/did not answer within 200 ms/);
      expect(Date.now() - started).toBeLessThan(1_500);
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
    const down = await failure(
      fetchTokenFromSecret(PARAMETER, { env: env(ROLE, { AWS_ENDPOINT_URL_SSM: url }), timeoutMs: 1_000 }),
    );
    expect(down.message).toMatch(/SSM \(127\.0\.0\.1:\d+\) could not be reached \(ECONNREFUSED\)/);
  });
});
