// Builds the SigV4 conformance vectors (test/conformance/sigv4-vectors.json) with the Node signer
// (runtime-shims/node/aws/sigv4.ts) and the Node AWS proof (runtime-shims/node/client/attest-aws.ts):
// requests drawn from a seeded generator (the same file every run), each with the credentials, region,
// service and date it is signed with, and what the Node side answers. test/aws/sigv4-vectors.test.ts
// regenerates it and fails when the checked-in file differs (`npm run conformance` rewrites it); the
// Python port (runtime-shims/python tests/test_sigv4.py) must reproduce every vector.
//
// Format 1:
//   {
//     "format": 1, "about": "…",
//     "requests": [ { "name", "method", "url" (as written: Node's URL parser serialises it),
//                     "headers": {…}, "body" (text) | "bodyBase64" (bytes),
//                     "credentials": {accessKeyId, secretAccessKey, sessionToken?}, "region", "service",
//                     "date" (ISO, milliseconds),
//                     "expect": {canonicalRequest, stringToSign, signedHeaders, signature, headers} } ],
//     "proofs": [ { "name", "audience", "env": {…}, "now" (ISO),
//                   "expect": AwsProof | {"error": message} } ]
//   }
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { signRequest } from '../../runtime-shims/node/aws/sigv4.js';
import { awsProof } from '../../runtime-shims/node/client/attest-aws.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const VECTORS_FILE = join(ROOT, 'test/conformance/sigv4-vectors.json');
const RANDOM_REQUESTS = 240;
const SEED = 0x5167_0004;

/** mulberry32: a small seeded generator, so the file is the same on every run. */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface RequestVector {
  name: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
  bodyBase64?: string;
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  region: string;
  service: string;
  date: string;
  expect: {
    canonicalRequest: string;
    stringToSign: string;
    signedHeaders: string;
    signature: string;
    headers: Record<string, string>;
  };
}

interface ProofVector {
  name: string;
  audience: string;
  env: Record<string, string>;
  now: string;
  expect: unknown;
}

export interface Vectors {
  format: 1;
  about: string;
  requests: RequestVector[];
  proofs: ProofVector[];
}

// Path segments and query parts as a caller might write them: dot segments (also percent-encoded),
// characters the URL parser encodes (space, quotes, braces, backtick, non-ASCII), escapes, reserved ones.
const SEGMENTS = [
  '.',
  '..',
  '',
  '%2e',
  '%2E%2e',
  '.%2E',
  'a b',
  'é',
  'ሴ',
  '%41',
  '%zz',
  "!'()*",
  '+',
  '=',
  '~x',
  '"q"',
  '<a>',
  '{x}',
  '`',
  '^|',
  '[x]',
  ';,:@$&',
  'A-Z_0.9',
];
const QUERY_PARTS = [
  '',
  'a b',
  'ሴ',
  '*',
  'x=y',
  '%2F',
  "'q'",
  '"',
  '<>',
  '+',
  '%zz',
  '%C3',
  'é%20x',
  '/?:@',
  '~',
  'A%2bb',
];
const HOSTS = [
  'https://svc.example.amazonaws.com',
  'https://sts.amazonaws.com',
  'https://EXAMPLE.Amazonaws.com',
  'https://h.example:443',
  'https://h.example:8443',
  'http://127.0.0.1:4566',
  'http://localhost:80',
  'http://[::1]:9000',
];
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'post'];
const REGIONS = ['us-east-1', 'eu-west-1', 'ap-southeast-2', 'cn-north-1', 'us-gov-west-1'];
const SERVICES = ['sts', 'secretsmanager', 'ssm', 'execute-api', 's3-outposts'];
const HEADER_NAMES = [
  'x-custom',
  'X-Mixed-Case',
  'content-type',
  'x-amz-target',
  'x-amz-meta-a',
  'accept',
  'x-bulkhead-server-id',
  'My-Header1',
];
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const PRINTABLE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(0x20 + i)).join('');

function buildRequests(): RequestVector[] {
  const random = generator(SEED);
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(list: readonly T[]): T => list[int(list.length)] as T;
  const text = (alphabet: string, min: number, max: number) =>
    Array.from({ length: min + int(max - min + 1) }, () => alphabet[int(alphabet.length)]).join('');
  const vectors: RequestVector[] = [];
  for (let i = 0; i < RANDOM_REQUESTS; i++) {
    const segments = Array.from({ length: int(6) }, () =>
      random() < 0.6 ? pick(SEGMENTS) : text(`${ALNUM}-._~`, 1, 8),
    );
    const path = `/${segments.join('/')}${random() < 0.3 ? '/' : ''}`;
    const query = Array.from({ length: int(5) }, () => {
      const name = random() < 0.2 ? pick(QUERY_PARTS) : text(`${ALNUM}_-`, 1, 6);
      return random() < 0.15 ? name : `${name}=${pick(QUERY_PARTS)}`;
    }).join('&');
    const url = `${pick(HOSTS)}${path}${query || random() < 0.1 ? `?${query}` : ''}${random() < 0.1 ? '#frag' : ''}`;
    const headers: Record<string, string> = {};
    const used = new Set<string>();
    for (let h = int(5); h > 0; h--) {
      const name =
        random() < 0.7 ? pick(HEADER_NAMES) : `x-${text('abcdefghijklmnopqrstuvwxyz0123456789-', 1, 10)}`;
      if (used.has(name.toLowerCase())) continue;
      used.add(name.toLowerCase());
      headers[name] = text(`${PRINTABLE}\t`, 0, 24);
    }
    if (random() < 0.1) headers.Host = pick(['override.example', 'sts.amazonaws.com', 'h.example:8443']);
    const binary = random() < 0.2;
    const bodyText = random() < 0.3 ? '' : text(`${PRINTABLE}\néሴ☃`, 0, 120);
    const bytes = Uint8Array.from({ length: int(100) }, () => int(256));
    const secret = text(`${PRINTABLE}é☃`, 1, 40);
    const credentials = {
      accessKeyId: text(ALNUM, 1, 20),
      secretAccessKey: secret,
      ...(random() < 0.6 ? { sessionToken: text(`${ALNUM}+/=`, 1, 80) } : {}),
    };
    // 2000 to 2099, to the millisecond.
    const date = new Date(946_684_800_000 + Math.floor(random() * 3_155_760_000) * 1000 + int(1000));
    const region = pick(REGIONS);
    const service = pick(SERVICES);
    const method = pick(METHODS);
    const signed = signRequest(
      { method, url, headers, body: binary ? bytes : bodyText },
      { credentials, region, service, date },
    );
    vectors.push({
      name: `random-${String(i + 1).padStart(3, '0')}`,
      method,
      url,
      headers,
      ...(binary ? { bodyBase64: Buffer.from(bytes).toString('base64') } : { body: bodyText }),
      credentials,
      region,
      service,
      date: date.toISOString(),
      expect: {
        canonicalRequest: signed.canonicalRequest,
        stringToSign: signed.stringToSign,
        signedHeaders: signed.signedHeaders,
        signature: signed.signature,
        headers: signed.headers,
      },
    });
  }
  return vectors;
}

const ROLE = {
  AWS_ACCESS_KEY_ID: 'ASIAEXAMPLEROLE00001',
  AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
  AWS_SESSION_TOKEN: 'IQoJb3JpZ2luX2VjEXAMPLE//session+token==',
};
const NOW = '2026-03-01T10:00:00.250Z';

function buildProofs(): ProofVector[] {
  const cases: [string, string, Record<string, string>][] = [
    ['global endpoint (default)', 'https://bulkhead.example.com', { ...ROLE }],
    [
      'global endpoint with AWS_REGION set',
      'https://bulkhead.example.com',
      { ...ROLE, AWS_REGION: 'eu-west-1' },
    ],
    [
      'regional endpoint',
      'https://bulkhead.example.com',
      { ...ROLE, AWS_ENDPOINT_URL_STS: 'https://sts.eu-west-1.amazonaws.com' },
    ],
    [
      'FIPS endpoint',
      'https://bulkhead.example.com:8443',
      { ...ROLE, AWS_ENDPOINT_URL_STS: 'https://sts-fips.us-east-2.amazonaws.com/' },
    ],
    [
      'China endpoint',
      'https://bulkhead.example.cn',
      { ...ROLE, AWS_ENDPOINT_URL_STS: 'https://sts.cn-north-1.amazonaws.com.cn' },
    ],
    [
      'VPC endpoint',
      'https://bulkhead.example.com',
      { ...ROLE, AWS_ENDPOINT_URL_STS: 'https://vpce-0a1b2c3d-e4f5g6h7.sts.eu-central-1.vpce.amazonaws.com' },
    ],
    [
      'stand-in on loopback, AWS_REGION',
      'http://127.0.0.1:8080',
      { ...ROLE, AWS_ENDPOINT_URL_STS: 'http://127.0.0.1:4566', AWS_REGION: 'eu-west-1' },
    ],
    [
      'stand-in with a path, AWS_DEFAULT_REGION',
      'bulkhead-prod',
      { ...ROLE, AWS_ENDPOINT_URL_STS: 'http://LOCALHOST:4566/sts/./', AWS_DEFAULT_REGION: 'ap-south-1' },
    ],
    ['stand-in, no region: us-east-1', 'x', { ...ROLE, AWS_ENDPOINT_URL_STS: 'http://127.0.0.1:4566' }],
    ['no session token', 'https://bulkhead.example.com', { ...ROLE, AWS_SESSION_TOKEN: '' }],
    ['no credentials at all', 'https://bulkhead.example.com', {}],
    ['not an access key id', 'https://bulkhead.example.com', { ...ROLE, AWS_ACCESS_KEY_ID: 'AKIA/NOT' }],
    [
      'a secret on two lines',
      'https://bulkhead.example.com',
      { ...ROLE, AWS_SECRET_ACCESS_KEY: 'line one\nline two' },
    ],
    [
      'a session token with a space',
      'https://bulkhead.example.com',
      { ...ROLE, AWS_SESSION_TOKEN: 'two words' },
    ],
    ['an audience with a space', 'https://bulkhead example', { ...ROLE }],
    ['an empty audience', '', { ...ROLE }],
    ['an ftp endpoint', 'a', { ...ROLE, AWS_ENDPOINT_URL_STS: 'ftp://sts.amazonaws.com' }],
    ['an endpoint that is not a URL', 'a', { ...ROLE, AWS_ENDPOINT_URL_STS: 'not a url' }],
    [
      'an endpoint with credentials',
      'a',
      { ...ROLE, AWS_ENDPOINT_URL_STS: 'https://user:pw@sts.amazonaws.com' },
    ],
    ['an endpoint with a query', 'a', { ...ROLE, AWS_ENDPOINT_URL_STS: 'https://sts.amazonaws.com/?x=1' }],
  ];
  return cases.map(([name, audience, env]) => {
    let expect: unknown;
    try {
      expect = awsProof({ audience, env, now: new Date(NOW) });
    } catch (error) {
      expect = { error: (error as Error).message };
    }
    return { name, audience, env, now: NOW, expect };
  });
}

export function buildVectors(): Vectors {
  return {
    format: 1,
    about:
      'SigV4 conformance vectors generated by test/conformance/sigv4.ts with the Node signer ' +
      '(runtime-shims/node/aws/sigv4.ts) and awsProof (runtime-shims/node/client/attest-aws.ts); the ' +
      'Python port must reproduce every one. Regenerate: npm run conformance. Credentials are made up.',
    requests: buildRequests(),
    proofs: buildProofs(),
  };
}

/** The vectors as checked in: JSON formatted by Biome, as `npm run lint` wants it. */
export function renderVectors(vectors: Vectors): string {
  const biome = join(ROOT, 'node_modules/.bin/biome');
  const result = spawnSync(biome, ['format', `--stdin-file-path=${VECTORS_FILE}`], {
    input: JSON.stringify(vectors),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0) throw new Error(`biome format failed: ${result.stderr}`);
  return result.stdout;
}
