// The AWS proof of identity end to end: the workload side (awsProof signs sts:GetCallerIdentity with
// the function's role credentials) against the control API's verifier (createAwsVerifier), which
// sends the proof to an STS stand-in that really checks SigV4 signatures (test/support/aws-standin.ts).
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAwsVerifier } from '../../control/attest/aws.js';
import type { VerifyOutcome } from '../../control/attest/types.js';
import { AWS_SERVER_ID_HEADER, type AwsProof, GET_CALLER_IDENTITY_BODY } from '../../policy/attestation.js';
import { AwsCredentialsError } from '../../runtime-shims/node/aws/sigv4.js';
import { awsProof, stsTarget } from '../../runtime-shims/node/client/attest-aws.js';
import { type AwsStandin, startAwsStandin } from '../support/aws-standin.js';

const AUDIENCE = 'https://bulkhead.example.com';
const ACCOUNT = '111122223333';
const ROLE_ARN = `arn:aws:sts::${ACCOUNT}:assumed-role/charge-card-role/charge-card`;
const ROLE = {
  id: 'ASIAROLEEXAMPLE00001',
  secret: 'role/secret+key0000000000000000000000000',
  token: 'IQoJb3JpZ2luX2VjEROLE//token==',
};
const USER = {
  id: 'ASIAUSEREXAMPLE00001',
  secret: 'user/secret+key0000000000000000000000000',
  token: 'IQoJb3JpZ2luX2VjEUSER//token==',
};
const OTHER = {
  id: 'ASIAOTHEREXAMPLE0001',
  secret: 'other/secret+key000000000000000000000000',
  token: 'IQoJOTHER//token==',
};
const EXPIRED = {
  id: 'ASIAEXPIREDEXAMPLE01',
  secret: 'expired/secret+key0000000000000000000000',
  token: 'IQoJEXPIRED//token==',
};

let sts: AwsStandin;

function env(key: { id: string; secret: string; token: string }, extra: Record<string, string> = {}) {
  return {
    AWS_ACCESS_KEY_ID: key.id,
    AWS_SECRET_ACCESS_KEY: key.secret,
    AWS_SESSION_TOKEN: key.token,
    AWS_REGION: 'eu-west-1',
    AWS_ENDPOINT_URL_STS: sts.url,
    ...extra,
  };
}

function proofFor(
  key = ROLE,
  options: { audience?: string; now?: Date; extra?: Record<string, string> } = {},
) {
  return awsProof({ audience: options.audience ?? AUDIENCE, env: env(key, options.extra), now: options.now });
}

function verifier(
  overrides: { accounts?: string[]; maxSkewSeconds?: number; endpoint?: string; timeoutMs?: number } = {},
) {
  return createAwsVerifier(
    {
      stsEndpoint: overrides.endpoint ?? sts.url,
      accounts: overrides.accounts,
      maxSkewSeconds: overrides.maxSkewSeconds,
    },
    AUDIENCE,
    { timeoutMs: overrides.timeoutMs },
  );
}

/** The outcome, and how many requests reached STS meanwhile. */
async function verify(proof: unknown, v = verifier()): Promise<{ outcome: VerifyOutcome; calls: number }> {
  const before = sts.calls.length;
  const outcome = await v.verify(proof);
  return { outcome, calls: sts.calls.length - before };
}

function clone(proof: AwsProof): AwsProof {
  return JSON.parse(JSON.stringify(proof)) as AwsProof;
}

beforeAll(async () => {
  sts = await startAwsStandin({
    credentials: {
      [ROLE.id]: { secretAccessKey: ROLE.secret, sessionToken: ROLE.token, arn: ROLE_ARN, account: ACCOUNT },
      // GetSessionToken credentials: temporary, but an IAM user's.
      [USER.id]: {
        secretAccessKey: USER.secret,
        sessionToken: USER.token,
        arn: `arn:aws:iam::${ACCOUNT}:user/alice`,
        account: ACCOUNT,
      },
      [OTHER.id]: {
        secretAccessKey: OTHER.secret,
        sessionToken: OTHER.token,
        arn: 'arn:aws:sts::444455556666:assumed-role/intruder/fn',
        account: '444455556666',
      },
      [EXPIRED.id]: {
        secretAccessKey: EXPIRED.secret,
        sessionToken: EXPIRED.token,
        arn: ROLE_ARN,
        account: ACCOUNT,
        expired: true,
      },
    },
  });
});
afterAll(() => sts.close());
beforeEach(() => {
  sts.hijack = undefined;
});

describe('awsProof (the workload side)', () => {
  it('signs GetCallerIdentity for the STS endpoint with every header the verifier needs', () => {
    const now = new Date('2026-03-01T10:00:00Z');
    const proof = awsProof({ audience: AUDIENCE, env: env(ROLE), now });
    expect(proof.type).toBe('aws');
    expect(proof.request).toMatchObject({
      method: 'POST',
      url: `${sts.url}/`,
      body: GET_CALLER_IDENTITY_BODY,
    });
    const headers = proof.request.headers;
    expect(headers).toMatchObject({
      host: new URL(sts.url).host,
      'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
      'x-amz-date': '20260301T100000Z',
      'x-amz-security-token': ROLE.token,
      [AWS_SERVER_ID_HEADER]: AUDIENCE,
    });
    expect(headers.authorization).toMatch(
      new RegExp(
        `^AWS4-HMAC-SHA256 Credential=${ROLE.id}/20260301/eu-west-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-bulkhead-server-id, Signature=[0-9a-f]{64}$`,
      ),
    );
    // The proof carries a signature, never the secret key.
    expect(JSON.stringify(proof)).not.toContain(ROLE.secret);
    // Deterministic for a date.
    expect(awsProof({ audience: AUDIENCE, env: env(ROLE), now })).toEqual(proof);
  });

  it('addresses the global endpoint by default (us-east-1), a regional one by its region, else AWS_REGION', () => {
    const base = { AWS_REGION: 'ap-south-1' };
    expect(stsTarget(base)).toMatchObject({ region: 'us-east-1' });
    expect(stsTarget(base).url.href).toBe('https://sts.amazonaws.com/');
    expect(
      stsTarget({ ...base, AWS_ENDPOINT_URL_STS: 'https://sts.eu-central-1.amazonaws.com' }).region,
    ).toBe('eu-central-1');
    expect(
      stsTarget({ ...base, AWS_ENDPOINT_URL_STS: 'https://sts-fips.us-east-2.amazonaws.com' }).region,
    ).toBe('us-east-2');
    expect(
      stsTarget({ ...base, AWS_ENDPOINT_URL_STS: 'https://vpce-0abc-xyz.sts.us-west-2.vpce.amazonaws.com' })
        .region,
    ).toBe('us-west-2');
    expect(stsTarget({ ...base, AWS_ENDPOINT_URL_STS: 'http://127.0.0.1:4566' }).region).toBe('ap-south-1');
    expect(() => stsTarget({ AWS_ENDPOINT_URL_STS: 'ftp://x' })).toThrow(/AWS_ENDPOINT_URL_STS/);
    const proof = awsProof({ audience: AUDIENCE, env: { ...env(ROLE), AWS_ENDPOINT_URL_STS: '' } });
    expect(proof.request.url).toBe('https://sts.amazonaws.com/');
    expect(proof.request.headers.authorization).toContain('/us-east-1/sts/aws4_request');
  });

  it('says which credential variable is missing, never a secret', () => {
    for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) {
      const partial: Record<string, string> = env(ROLE);
      delete partial[name];
      let error: unknown;
      try {
        awsProof({ audience: AUDIENCE, env: partial });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(AwsCredentialsError);
      expect((error as Error).message).toContain(`${name} is not set`);
      expect((error as Error).message).not.toContain(ROLE.secret);
    }
    expect(() => awsProof({ audience: 'has space', env: env(ROLE) })).toThrow(/audience/);
  });
});

describe('createAwsVerifier against the STS stand-in', () => {
  it('attests a role session: account, role and session name (the function name)', async () => {
    const { outcome, calls } = await verify(proofFor());
    expect(outcome).toEqual({
      ok: true,
      attested: {
        kind: 'aws',
        principal: ROLE_ARN,
        attributes: { cloud: 'aws', account: ACCOUNT, role: 'charge-card-role', name: 'charge-card' },
      },
    });
    expect(calls).toBe(1);
    expect(sts.calls.at(-1)).toMatchObject({
      service: 'sts',
      action: 'GetCallerIdentity',
      accessKeyId: ROLE.id,
      status: 200,
    });
  });

  it('passes an allow-listed account, refuses another with 403', async () => {
    expect((await verify(proofFor(), verifier({ accounts: [ACCOUNT] }))).outcome.ok).toBe(true);
    const { outcome } = await verify(proofFor(), verifier({ accounts: ['999999999999'] }));
    expect(outcome).toEqual({ ok: false, status: 403, error: `account ${ACCOUNT} is not allowed to attest` });
    const other = await verify(proofFor(OTHER), verifier({ accounts: [ACCOUNT] }));
    expect(other.outcome).toMatchObject({ ok: false, status: 403 });
  });

  it('refuses an IAM user (even with temporary credentials) with 403: only role sessions attest', async () => {
    const { outcome, calls } = await verify(proofFor(USER));
    expect(outcome).toMatchObject({ ok: false, status: 403 });
    expect(!outcome.ok && outcome.error).toMatch(/only role sessions attest/);
    expect(calls).toBe(1);
  });

  it('a tampered body is malformed (400) and never sent', async () => {
    const proof = clone(proofFor());
    proof.request.body = 'Action=GetCallerIdentity&Version=2011-06-15&Extra=1';
    const { outcome, calls } = await verify(proof);
    expect(outcome).toMatchObject({ ok: false, status: 400 });
    expect(calls).toBe(0);
  });

  it('a tampered signed header or signature is refused by STS: 401 naming its code', async () => {
    const header = clone(proofFor());
    header.request.headers['content-type'] = 'application/x-www-form-urlencoded';
    const signature = clone(proofFor());
    signature.request.headers.authorization = signature.request.headers.authorization!.replace(
      /Signature=(.)/,
      (_m, c: string) => `Signature=${c === '0' ? '1' : '0'}`,
    );
    for (const proof of [header, signature]) {
      const { outcome, calls } = await verify(proof);
      expect(outcome).toEqual({
        ok: false,
        status: 401,
        error: 'STS refused the proof: SignatureDoesNotMatch',
      });
      expect(calls).toBe(1);
    }
  });

  it('unknown keys, wrong and expired session tokens: 401 InvalidClientTokenId / ExpiredToken', async () => {
    const unknown = proofFor({ id: 'ASIAUNKNOWNEXAMPLE01', secret: 'x', token: 't' });
    expect((await verify(unknown)).outcome).toMatchObject({
      status: 401,
      error: 'STS refused the proof: InvalidClientTokenId',
    });
    const wrongToken = proofFor({ ...ROLE, token: 'IQoJ-not-the-token' });
    expect((await verify(wrongToken)).outcome).toMatchObject({
      status: 401,
      error: 'STS refused the proof: InvalidClientTokenId',
    });
    expect((await verify(proofFor(EXPIRED))).outcome).toMatchObject({
      status: 401,
      error: 'STS refused the proof: ExpiredToken',
    });
  });

  it('a proof made for another audience: 401, never sent', async () => {
    const { outcome, calls } = await verify(proofFor(ROLE, { audience: 'https://other.example.com' }));
    expect(outcome).toMatchObject({ ok: false, status: 401 });
    expect(!outcome.ok && outcome.error).toMatch(/another audience/);
    expect(calls).toBe(0);
  });

  it('a proof signed for another STS host: 401, never sent (the server only calls its own endpoint)', async () => {
    const regional = proofFor(ROLE, {
      extra: { AWS_ENDPOINT_URL_STS: 'https://sts.eu-west-1.amazonaws.com' },
    });
    const { outcome, calls } = await verify(regional);
    expect(outcome).toMatchObject({ ok: false, status: 401 });
    expect(!outcome.ok && outcome.error).toMatch(/another host/);
    expect(calls).toBe(0);
    // Renaming the URL alone does not help: the signed host header names the other host.
    const renamed = clone(regional);
    renamed.request.url = `${sts.url}/`;
    expect((await verify(renamed)).outcome).toMatchObject({
      status: 401,
      error: expect.stringMatching(/host header/),
    });
    // An attacker's URL on the right host with a path is refused as well.
    const pathed = clone(proofFor());
    pathed.request.url = `${sts.url}/elsewhere`;
    expect((await verify(pathed)).outcome).toMatchObject({ status: 401 });
  });

  it('a stale X-Amz-Date: 401 before any call; past a lenient verifier, STS refuses it too', async () => {
    const old = proofFor(ROLE, { now: new Date(Date.now() - 20 * 60_000) });
    const early = await verify(old);
    expect(early.outcome).toMatchObject({
      ok: false,
      status: 401,
      error: expect.stringMatching(/signed 120[01] s ago/),
    });
    expect(early.calls).toBe(0);
    const future = await verify(proofFor(ROLE, { now: new Date(Date.now() + 20 * 60_000) }));
    expect(future.outcome).toMatchObject({ status: 401, error: expect.stringMatching(/in the future/) });
    const lenient = await verify(old, verifier({ maxSkewSeconds: 3600 }));
    expect(lenient.outcome).toMatchObject({
      status: 401,
      error: 'STS refused the proof: SignatureDoesNotMatch',
    });
    expect(lenient.calls).toBe(1);
  });

  it('a proof that does not sign the server id, host or date is malformed (400), never sent', async () => {
    for (const drop of [AWS_SERVER_ID_HEADER, 'host', 'x-amz-date']) {
      const proof = clone(proofFor());
      proof.request.headers.authorization = proof.request.headers.authorization!.replace(
        /SignedHeaders=([a-z0-9;-]+)/,
        (_m, list: string) =>
          `SignedHeaders=${list
            .split(';')
            .filter((n) => n !== drop)
            .join(';')}`,
      );
      const { outcome, calls } = await verify(proof);
      expect(outcome).toMatchObject({ ok: false, status: 400, error: `the proof does not sign ${drop}` });
      expect(calls).toBe(0);
    }
  });

  it('STS unreachable (port closed) or silent: 503', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const endpoint = `http://127.0.0.1:${port}`;
    const proof = proofFor(ROLE, { extra: { AWS_ENDPOINT_URL_STS: endpoint } });
    const down = await verifier({ endpoint }).verify(proof);
    expect(down).toMatchObject({
      ok: false,
      status: 503,
      error: expect.stringMatching(/could not be reached \(ECONNREFUSED\)/),
    });

    const silent: Server = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const silentEndpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
      const started = Date.now();
      const outcome = await verifier({ endpoint: silentEndpoint, timeoutMs: 300 }).verify(
        proofFor(ROLE, { extra: { AWS_ENDPOINT_URL_STS: silentEndpoint } }),
      );
      expect(outcome).toMatchObject({
        ok: false,
        status: 503,
        error: expect.stringMatching(/did not answer within 300 ms/),
      });
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it('an answer that is not STS: 502; STS unavailable: 503', async () => {
    const cases: [AwsStandin['hijack'], number][] = [
      [{ status: 200, body: 'garbage' }, 502],
      [{ status: 500, body: '<html>oops</html>' }, 502],
      [
        {
          status: 200,
          body: `<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>x</Arn></GetCallerIdentityResult></GetCallerIdentityResponse>`,
        },
        502,
      ],
      [
        {
          status: 200,
          body: `<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>${ROLE_ARN}</Arn><UserId>AROAX:charge-card</UserId><Account>999999999999</Account></GetCallerIdentityResult></GetCallerIdentityResponse>`,
        },
        502,
      ],
      [{ status: 200, body: 'x'.repeat(70_000) }, 502],
      [
        {
          status: 503,
          body: '<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</Code></Error></ErrorResponse>',
        },
        503,
      ],
      [
        {
          status: 400,
          body: '<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code></Error></ErrorResponse>',
        },
        503,
      ],
    ];
    for (const [hijack, status] of cases) {
      sts.hijack = hijack;
      const { outcome } = await verify(proofFor());
      expect(outcome, hijack?.body.slice(0, 60)).toMatchObject({ ok: false, status });
    }
  });

  it('forwards only the signed headers and authorization, to its own endpoint', async () => {
    let seen: IncomingHttpHeaders | undefined;
    let seenUrl: string | undefined;
    const recorder = createServer((req, res) => {
      seen = req.headers;
      seenUrl = req.url;
      req.resume();
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end(
        `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>${ROLE_ARN}</Arn><UserId>AROAEXAMPLE:charge-card</UserId><Account>${ACCOUNT}</Account></GetCallerIdentityResult></GetCallerIdentityResponse>`,
      );
    });
    await new Promise<void>((resolve) => recorder.listen(0, '127.0.0.1', resolve));
    try {
      const endpoint = `http://127.0.0.1:${(recorder.address() as AddressInfo).port}`;
      const proof = clone(proofFor(ROLE, { extra: { AWS_ENDPOINT_URL_STS: endpoint } }));
      proof.request.headers['x-forwarded-for'] = '10.0.0.1';
      proof.request.headers.cookie = 'session=steal-me';
      const outcome = await verifier({ endpoint }).verify(proof);
      expect(outcome.ok).toBe(true);
      expect(seenUrl).toBe('/');
      expect(Object.keys(seen ?? {}).sort()).toEqual(
        [
          'authorization',
          'connection',
          'content-length',
          'content-type',
          'host',
          'x-amz-date',
          'x-amz-security-token',
          AWS_SERVER_ID_HEADER,
        ].sort(),
      );
    } finally {
      recorder.closeAllConnections();
      recorder.close();
    }
  });

  it('refuses a signed header it would not forward, and an oversized or crowded proof, without a call', async () => {
    const accept = clone(proofFor());
    accept.request.headers.accept = 'application/json';
    accept.request.headers.authorization = accept.request.headers.authorization!.replace(
      'SignedHeaders=',
      'SignedHeaders=accept;',
    );
    const crowded = clone(proofFor());
    for (let i = 0; i < 40; i++) crowded.request.headers[`x-pad-${i}`] = 'x';
    const huge = clone(proofFor());
    huge.request.headers['x-pad'] = 'x'.repeat(17_000);
    const longUrl = clone(proofFor());
    longUrl.request.url = `${sts.url}/?${'a'.repeat(3000)}`;
    for (const [proof, pattern] of [
      [accept, /signs accept/],
      [crowded, /more than 32 headers/],
      [huge, /more than 16384 bytes/],
      [longUrl, /at most 2048/],
    ] as const) {
      const { outcome, calls } = await verify(proof);
      expect(outcome).toMatchObject({ ok: false, status: 400, error: expect.stringMatching(pattern) });
      expect(calls).toBe(0);
    }
  });

  it('never throws on junk, and sends nothing that is malformed (property)', async () => {
    const valid = proofFor();
    const v = verifier();
    const mutation = fc.oneof(
      fc.anything(),
      fc.record({ type: fc.constantFrom('aws', 'gcp', 1), request: fc.anything() }),
      fc.record({
        type: fc.constant('aws'),
        request: fc.record(
          {
            method: fc.oneof(fc.constant('POST'), fc.string()),
            url: fc.oneof(fc.constant(valid.request.url), fc.webUrl(), fc.string()),
            headers: fc.oneof(
              fc.constant(valid.request.headers),
              fc.dictionary(
                fc.string({ maxLength: 20 }),
                fc.oneof(fc.string(), fc.integer(), fc.constant(null)),
              ),
              fc.anything(),
            ),
            body: fc.oneof(fc.constant(GET_CALLER_IDENTITY_BODY), fc.string()),
          },
          { requiredKeys: [] },
        ),
      }),
      // A valid proof with one header replaced by junk.
      fc
        .tuple(
          fc.constantFrom(...Object.keys(valid.request.headers)),
          fc.oneof(fc.string(), fc.integer(), fc.constant(undefined)),
        )
        .map(([name, value]) => ({
          ...valid,
          request: { ...valid.request, headers: { ...valid.request.headers, [name]: value } },
        })),
    );
    await fc.assert(
      fc.asyncProperty(mutation, async (proof) => {
        const before = sts.calls.length;
        const outcome = await v.verify(proof);
        expect([true, false]).toContain(outcome.ok);
        if (!outcome.ok) {
          expect([400, 401, 403, 502, 503]).toContain(outcome.status);
          expect(typeof outcome.error).toBe('string');
          expect(outcome.error).not.toContain(ROLE.token);
          if (outcome.status === 400) expect(sts.calls.length).toBe(before);
        }
      }),
      { numRuns: 400 },
    );
    // A proof from a getter that throws is malformed, not a crash.
    const hostile = { type: 'aws', request: {} };
    Object.defineProperty(hostile.request, 'method', {
      enumerable: true,
      get() {
        throw new Error('boom');
      },
    });
    expect(await v.verify(hostile)).toMatchObject({ ok: false, status: 400 });
  });
});
