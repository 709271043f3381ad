// The SigV4 signer against AWS's published test suite (aws-sig-v4-test-suite: credentials
// AKIDEXAMPLE, region us-east-1, service `service`, 20150830T123600Z; expected values from the
// suite's .creq/.sts/.authz files) and, over random requests, against @smithy/signature-v4 (the
// AWS SDK's own, independent implementation): both must produce the same Authorization header.
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AwsCredentialsError,
  amzDate,
  canonicalQuery,
  canonicalUri,
  credentialsFromEnv,
  deriveSigningKey,
  signRequest,
} from '../../runtime-shims/node/aws/sigv4.js';

const SUITE = {
  credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' },
  region: 'us-east-1',
  service: 'service',
  date: new Date('2015-08-30T12:36:00Z'),
};
const SCOPE = 'AKIDEXAMPLE/20150830/us-east-1/service/aws4_request';
const HOST = 'https://example.amazonaws.com';
const EMPTY_HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const SUITE_TOKEN =
  'AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==';

function authz(signedHeaders: string, signature: string): string {
  return `AWS4-HMAC-SHA256 Credential=${SCOPE}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
}

describe('SigV4: the AWS test suite', () => {
  it('get-vanilla: canonical request, string to sign and Authorization as published', () => {
    const signed = signRequest({ method: 'GET', url: `${HOST}/` }, SUITE);
    expect(signed.canonicalRequest).toBe(
      `GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n${EMPTY_HASH}`,
    );
    expect(signed.stringToSign).toBe(
      'AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n' +
        'bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63',
    );
    expect(signed.headers.authorization).toBe(
      authz('host;x-amz-date', '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31'),
    );
    expect(signed.headers).toMatchObject({ host: 'example.amazonaws.com', 'x-amz-date': '20150830T123600Z' });
  });

  it('post-x-www-form-urlencoded: the body and content-type are signed', () => {
    const signed = signRequest(
      {
        method: 'POST',
        url: `${HOST}/`,
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: 'Param1=value1',
      },
      SUITE,
    );
    expect(signed.canonicalRequest.split('\n').at(-1)).toBe(
      '9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e',
    );
    expect(signed.headers.authorization).toBe(
      authz(
        'content-type;host;x-amz-date',
        'ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a',
      ),
    );
  });

  it.each([
    [
      'post-vanilla',
      'POST',
      '/',
      {},
      'host;x-amz-date',
      '5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b',
    ],
    [
      'get-vanilla-query-order-key-case',
      'GET',
      '/?Param2=value2&Param1=value1',
      {},
      'host;x-amz-date',
      'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500',
    ],
    [
      'get-vanilla-query-order-key',
      'GET',
      '/?Param1=value2&Param1=Value1',
      {},
      'host;x-amz-date',
      'eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1',
    ],
    [
      'get-vanilla-utf8-query',
      'GET',
      '/?ሴ=bar',
      {},
      'host;x-amz-date',
      '2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04',
    ],
    [
      'get-unreserved',
      'GET',
      '/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz',
      {},
      'host;x-amz-date',
      '07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f',
    ],
    [
      'get-header-value-trim',
      'GET',
      '/',
      { 'My-Header1': 'value1', 'My-Header2': '"a   b   c"' },
      'host;my-header1;my-header2;x-amz-date',
      'acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736',
    ],
    [
      'post-header-value-case',
      'POST',
      '/',
      { 'My-Header1': 'VALUE1' },
      'host;my-header1;x-amz-date',
      'cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d',
    ],
    // normalize-path: dot segments and empty segments are dropped.
    [
      'get-relative-relative',
      'GET',
      '/example1/example2/../..',
      {},
      'host;x-amz-date',
      '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31',
    ],
  ] as const)('%s', (_name, method, path, headers, signedHeaders, signature) => {
    const signed = signRequest({ method, url: `${HOST}${path}`, headers }, SUITE);
    expect(signed.headers.authorization).toBe(authz(signedHeaders, signature));
  });

  it('post-sts-header-before: a session token is sent and signed', () => {
    const signed = signRequest(
      { method: 'POST', url: `${HOST}/` },
      { ...SUITE, credentials: { ...SUITE.credentials, sessionToken: SUITE_TOKEN } },
    );
    expect(signed.headers['x-amz-security-token']).toBe(SUITE_TOKEN);
    expect(signed.stringToSign.split('\n')[3]).toBe(
      'c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6',
    );
    expect(signed.headers.authorization).toBe(
      authz(
        'host;x-amz-date;x-amz-security-token',
        '85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead',
      ),
    );
  });

  it('derives the documented key chain and formats the date', () => {
    // The IAM user guide's example: secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam.
    expect(
      deriveSigningKey(SUITE.credentials.secretAccessKey, '20120215', 'us-east-1', 'iam').toString('hex'),
    ).toBe('f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d');
    expect(amzDate(new Date('2015-08-30T12:36:00.789Z'))).toBe('20150830T123600Z');
    expect(canonicalUri('/a//b/./c/../d/')).toBe('/a/b/d/');
    expect(canonicalUri('/a%20b')).toBe('/a%2520b');
    expect(canonicalQuery('?b=2&a=1&A=0&c')).toBe('A=0&a=1&b=2&c=');
    expect(canonicalQuery('?q=a+b%20c')).toBe('q=a%2Bb%20c');
  });

  it('is deterministic for a date, and refuses what no server could receive', () => {
    const one = signRequest({ method: 'POST', url: `${HOST}/`, body: 'x' }, SUITE);
    const two = signRequest({ method: 'post', url: new URL(`${HOST}/`), body: Buffer.from('x') }, SUITE);
    expect(two.headers.authorization).toBe(one.headers.authorization);
    expect(() =>
      signRequest({ method: 'GET', url: `${HOST}/`, headers: { 'x-a': 'a\r\nb' } }, SUITE),
    ).toThrow(/line break/);
    expect(() => signRequest({ method: 'GET', url: `${HOST}/`, headers: { A: '1', a: '2' } }, SUITE)).toThrow(
      /twice/,
    );
    expect(() => signRequest({ method: 'GET', url: 'ftp://example.com/' }, SUITE)).toThrow(/ftp/);
    expect(() => signRequest({ method: 'GET', url: `${HOST}/` }, { ...SUITE, region: 'US EAST' })).toThrow(
      /region/,
    );
  });
});

describe('SigV4: the same Authorization header as @smithy/signature-v4', () => {
  const token = fc.stringMatching(/^[A-Za-z0-9]{1,12}$/);
  const segment = fc.oneof(
    fc.constantFrom('.', '..', '', 'a b', 'é', '%41', "!'()*", '+', '=', '~x'),
    fc.stringMatching(/^[A-Za-z0-9._~-]{1,8}$/),
    fc.string({ maxLength: 6, unit: 'grapheme' }).map((s) => s.replace(/[/?#\\%]/g, '')),
  );
  const queryPart = fc.oneof(
    fc.constantFrom('', 'a b', 'ሴ', '*', 'x=y', '%2F'),
    fc.string({ maxLength: 6, unit: 'grapheme' }).map((s) => s.replace(/[&=#%+]/g, '')),
  );
  const headerValue = fc.stringMatching(/^[\x20-\x7e\t]{0,24}$/);
  const request = fc.record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD'),
    segments: fc.array(segment, { maxLength: 5 }),
    trailingSlash: fc.boolean(),
    query: fc.array(
      fc.tuple(
        fc.stringMatching(/^[A-Za-z0-9_-]{1,6}$/).filter((n) => n.toLowerCase() !== 'x-amz-signature'),
        queryPart,
      ),
      {
        maxLength: 4,
      },
    ),
    headers: fc.dictionary(
      fc
        .stringMatching(/^x-[a-z0-9-]{1,12}$/)
        .filter((n) => !['x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256'].includes(n)),
      headerValue,
      { maxKeys: 5 },
    ),
    body: fc.oneof(fc.string({ maxLength: 200 }), fc.uint8Array({ maxLength: 200 })),
    date: fc.date({
      min: new Date('2000-01-01T00:00:00Z'),
      max: new Date('2099-12-31T23:59:59Z'),
      noInvalidDate: true,
    }),
    region: fc.constantFrom('us-east-1', 'eu-west-1', 'ap-southeast-2', 'cn-north-1'),
    service: fc.constantFrom('sts', 'secretsmanager', 'ssm', 'execute-api'),
    accessKeyId: token,
    secretAccessKey: fc.string({ minLength: 1, maxLength: 40 }),
    sessionToken: fc.option(fc.stringMatching(/^[A-Za-z0-9+/=]{1,60}$/), { nil: undefined }),
  });

  it('agrees on random methods, paths, queries, headers, bodies, dates and credentials', async () => {
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const path = `/${r.segments.map(encodeURIComponent).join('/')}${r.trailingSlash ? '/' : ''}`;
        const search = r.query.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
        const url = new URL(`https://svc.example.amazonaws.com${path}${search ? `?${search}` : ''}`);
        const credentials = {
          accessKeyId: r.accessKeyId,
          secretAccessKey: r.secretAccessKey,
          sessionToken: r.sessionToken,
        };
        const ours = signRequest(
          { method: r.method, url, headers: r.headers, body: r.body },
          { credentials, region: r.region, service: r.service, date: r.date },
        );

        const query: Record<string, string | string[]> = {};
        for (const [key, value] of url.searchParams.entries()) {
          // searchParams decodes `+` as a space; the URL carries none (encodeURIComponent above).
          const existing = query[key];
          query[key] =
            existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
        }
        const smithy = new SignatureV4({
          credentials,
          region: r.region,
          service: r.service,
          sha256: Sha256,
          uriEscapePath: true,
          applyChecksum: false,
        });
        const signed = await smithy.sign(
          {
            method: r.method,
            protocol: 'https:',
            hostname: url.hostname,
            path: url.pathname,
            query,
            headers: { ...r.headers, host: url.host },
            body: r.body,
          },
          { signingDate: r.date },
        );
        expect(ours.headers.authorization).toBe(signed.headers.authorization);
      }),
      { numRuns: 300 },
    );
  });
});

describe('credentials from the environment', () => {
  const env = {
    AWS_ACCESS_KEY_ID: 'ASIAEXAMPLE1234567890',
    AWS_SECRET_ACCESS_KEY: 'sekrit/value+1',
    AWS_SESSION_TOKEN: 'tok',
  };

  it('reads the three variables', () => {
    expect(credentialsFromEnv(env)).toEqual({
      accessKeyId: 'ASIAEXAMPLE1234567890',
      secretAccessKey: 'sekrit/value+1',
      sessionToken: 'tok',
    });
  });

  it('names what is missing, never a value', () => {
    expect(() => credentialsFromEnv({ AWS_SECRET_ACCESS_KEY: 'sekrit/value+1' })).toThrow(
      /AWS_ACCESS_KEY_ID is not set/,
    );
    expect(() =>
      credentialsFromEnv({ ...env, AWS_SESSION_TOKEN: '' }, { requireSessionToken: true }),
    ).toThrow(/AWS_SESSION_TOKEN is not set/);
    expect(credentialsFromEnv({ ...env, AWS_SESSION_TOKEN: '' }).sessionToken).toBeUndefined();
    for (const bad of [
      { ...env, AWS_ACCESS_KEY_ID: 'has space' },
      { ...env, AWS_SECRET_ACCESS_KEY: 'sekrit/value+1\n' },
      { ...env, AWS_SESSION_TOKEN: 'tok en' },
    ]) {
      let error: unknown;
      try {
        credentialsFromEnv(bad);
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(AwsCredentialsError);
      expect((error as Error).message).not.toContain('sekrit');
    }
  });
});
