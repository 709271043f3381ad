// Verifies AWS proofs of identity (policy/attestation.ts, AwsProof): a workload's signed
// `sts:GetCallerIdentity` request. The control API cannot check a SigV4 signature (it does not
// have the secret key); STS can, and its answer names the signer. So the proof is validated
// strictly, sent to the configured STS endpoint (never to the URL the proof names: that only has
// to name the same host, so a client cannot make the server call anywhere), and STS's answer is
// parsed into the caller's account, role and session (Lambda's session name is the function name).
//
// What a proof must be, before anything goes on the network: POST, the exact GetCallerIdentity
// body, a URL on the STS endpoint's host, at most 32 headers and 16 KiB of them, a SigV4
// Authorization whose signed headers include host, x-amz-date and AWS_SERVER_ID_HEADER, that header
// equal to this server's audience (a proof made for another service cannot be replayed here), and
// an X-Amz-Date within maxSkewSeconds. Only the signed headers and Authorization are forwarded.
import http from 'node:http';
import https from 'node:https';
import {
  type AttestedPrincipal,
  AWS_SERVER_ID_HEADER,
  GET_CALLER_IDENTITY_BODY,
} from '../../policy/attestation.js';
import { readBody } from '../../runtime-shims/node/client/read-body.js';
import type { AwsAttestationConfig, ProofVerifier, VerifyOutcome } from './types.js';

export const DEFAULT_STS_ENDPOINT = 'https://sts.amazonaws.com';
export const DEFAULT_MAX_SKEW_SECONDS = 900;
export const DEFAULT_STS_TIMEOUT_MS = 5_000;
export const MAX_PROOF_URL_LENGTH = 2048;
export const MAX_PROOF_HEADERS = 32;
export const MAX_PROOF_HEADER_BYTES = 16 * 1024;
/** STS's answer is well under 1 KiB; anything past this is not STS. */
export const MAX_STS_ANSWER_BYTES = 64 * 1024;

export interface AwsVerifierOptions {
  /** Bound on the whole STS exchange: connect, send, answer (default 5 s). */
  timeoutMs?: number | undefined;
  /** The server's clock, epoch milliseconds (tests). */
  now?: (() => number) | undefined;
}

type Failure = Extract<VerifyOutcome, { ok: false }>;

function fail(status: Failure['status'], error: string): Failure {
  return { ok: false, status, error };
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
/** Printable ASCII and tab: what a SigV4-signed header can carry through any HTTP stack unchanged. */
const HEADER_VALUE = /^[\t\x20-\x7e]*$/;
const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([A-Za-z0-9]{1,128})\/(\d{8})\/([a-z0-9-]{1,32})\/([a-z0-9-]{1,32})\/aws4_request, ?SignedHeaders=([a-z0-9;-]{1,2048}), ?Signature=([0-9a-f]{64})$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
/**
 * Signed headers that may be forwarded to STS. Hop-by-hop and content-negotiation headers are
 * refused: forwarding them would change the exchange (an `accept: application/json` gets JSON).
 */
const FORWARDABLE = /^(?:host|content-type|content-length|x-amz-[a-z0-9-]+|amz-sdk-[a-z0-9-]+)$/;

/** Connection-level causes STS gives for a refusal that is no fault of the proof. */
const TRANSIENT_CODES = new Set([
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'ServiceUnavailable',
  'InternalFailure',
  'InternalError',
]);

const ROLE_SESSION_ARN =
  /^arn:(aws[a-z-]{0,20}):sts::(\d{12}):assumed-role\/([\w+=,.@-]{1,64})\/([\w+=,.@-]{2,64})$/;
const OTHER_PRINCIPAL_ARN = /^arn:aws[a-z-]{0,20}:(?:iam|sts)::(\d{12}):[\w+=,.@/:-]{1,512}$/;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function onlyKeys(value: Record<string, unknown>, allowed: readonly string[]): string | undefined {
  return Object.keys(value).find((key) => !allowed.includes(key));
}

interface ValidProof {
  /** Lowercase name → value: the signed headers and authorization, the only ones forwarded. */
  forward: Record<string, string>;
}

/** Parses an X-Amz-Date; NaN when it is not a real instant. */
function parseAmzDate(text: string): number {
  const m = AMZ_DATE.exec(text);
  if (!m) return Number.NaN;
  const [, y, mo, d, h, mi, s] = m.map(Number) as number[];
  const time = Date.UTC(y as number, (mo as number) - 1, d, h, mi, s);
  // Date.UTC rolls over (month 13, second 61): a rolled-over date is not the one written.
  return new Date(time)
    .toISOString()
    .replace(/\.000Z$/, 'Z')
    .replace(/[-:]/g, '') === text
    ? time
    : Number.NaN;
}

export function createAwsVerifier(
  config: AwsAttestationConfig,
  audience: string,
  options: AwsVerifierOptions = {},
): ProofVerifier {
  let endpoint: URL;
  try {
    endpoint = new URL(config.stsEndpoint || DEFAULT_STS_ENDPOINT);
  } catch {
    throw new TypeError('aws attestation: stsEndpoint is not a URL');
  }
  if (endpoint.protocol !== 'https:' && endpoint.protocol !== 'http:')
    throw new TypeError('aws attestation: stsEndpoint must be an http(s) URL');
  if (endpoint.username || endpoint.password || endpoint.search || endpoint.hash)
    throw new TypeError('aws attestation: stsEndpoint must not carry credentials, a query or a fragment');
  if (typeof audience !== 'string' || audience === '')
    throw new TypeError('aws attestation: audience is empty');
  const accounts = config.accounts === undefined ? undefined : new Set(config.accounts);
  for (const account of accounts ?? [])
    if (!/^\d{12}$/.test(account))
      throw new TypeError(`aws attestation: account ${account} is not 12 digits`);
  const maxSkewMs = (config.maxSkewSeconds ?? DEFAULT_MAX_SKEW_SECONDS) * 1000;
  if (!(maxSkewMs > 0)) throw new TypeError('aws attestation: maxSkewSeconds must be positive');
  const timeoutMs = options.timeoutMs ?? DEFAULT_STS_TIMEOUT_MS;
  const now = options.now ?? Date.now;
  const endpointHost = endpoint.host;
  const transport = endpoint.protocol === 'https:' ? https : http;

  function validate(proof: unknown): ValidProof | Failure {
    if (!isPlainObject(proof)) return fail(400, 'the proof must be an object');
    const extra = onlyKeys(proof, ['type', 'request']);
    if (extra !== undefined) return fail(400, 'the proof has a field other than type and request');
    if (proof.type !== 'aws') return fail(400, 'the proof type must be aws');
    const request = proof.request;
    if (!isPlainObject(request)) return fail(400, 'proof.request must be an object');
    if (onlyKeys(request, ['method', 'url', 'headers', 'body']) !== undefined)
      return fail(400, 'proof.request has a field other than method, url, headers and body');
    if (request.method !== 'POST') return fail(400, 'proof.request.method must be POST');
    if (request.body !== GET_CALLER_IDENTITY_BODY)
      return fail(400, `proof.request.body must be exactly ${GET_CALLER_IDENTITY_BODY}`);
    if (typeof request.url !== 'string' || request.url.length > MAX_PROOF_URL_LENGTH)
      return fail(400, `proof.request.url must be a string of at most ${MAX_PROOF_URL_LENGTH} characters`);
    const headers = request.headers;
    if (!isPlainObject(headers)) return fail(400, 'proof.request.headers must be an object');
    const entries = Object.entries(headers);
    if (entries.length > MAX_PROOF_HEADERS)
      return fail(400, `proof.request.headers: more than ${MAX_PROOF_HEADERS} headers`);
    const lower: Record<string, string> = Object.create(null);
    let bytes = 0;
    for (const [name, value] of entries) {
      if (!HEADER_NAME.test(name))
        return fail(400, 'proof.request.headers: a header name is not an HTTP token');
      if (typeof value !== 'string' || !HEADER_VALUE.test(value))
        return fail(400, `proof.request.headers: ${name.toLowerCase()} must be a printable string`);
      bytes += name.length + value.length;
      if (bytes > MAX_PROOF_HEADER_BYTES)
        return fail(400, `proof.request.headers: more than ${MAX_PROOF_HEADER_BYTES} bytes`);
      const key = name.toLowerCase();
      if (key in lower) return fail(400, `proof.request.headers: ${key} given twice`);
      lower[key] = value;
    }

    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      return fail(400, 'proof.request.url is not a URL');
    }
    if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password || url.hash)
      return fail(400, 'proof.request.url must be a plain http(s) URL');
    if (url.host !== endpointHost)
      return fail(401, `the proof is signed for another host: proofs must be addressed to ${endpointHost}`);
    if (url.pathname !== endpoint.pathname || url.search !== '')
      return fail(401, `the proof is signed for another path: proofs must be addressed to ${endpoint.href}`);
    if (lower.host?.toLowerCase() !== endpointHost)
      return fail(401, `the proof's host header is not ${endpointHost}`);

    const authorization = lower.authorization;
    if (authorization === undefined) return fail(400, 'the proof has no authorization header');
    const auth = AUTHORIZATION.exec(authorization);
    if (!auth) return fail(400, 'the proof authorization is not an AWS4-HMAC-SHA256 header signature');
    const [, , scopeDate, , scopeService, signedText] = auth as unknown as string[];
    if (scopeService !== 'sts') return fail(401, 'the proof is not signed for sts');
    const signed = (signedText as string).split(';');
    for (let i = 0; i < signed.length; i++) {
      const name = signed[i] as string;
      if (name === '' || (i > 0 && (signed[i - 1] as string) >= name))
        return fail(400, 'the proof SignedHeaders are not sorted and distinct');
      if (!(name in lower)) return fail(400, `the proof signs ${name} but does not send it`);
      if (!FORWARDABLE.test(name) && name !== AWS_SERVER_ID_HEADER)
        return fail(400, `the proof signs ${name}, which is not forwarded to STS`);
    }
    for (const required of ['host', 'x-amz-date', AWS_SERVER_ID_HEADER])
      if (!signed.includes(required)) return fail(400, `the proof does not sign ${required}`);
    if (
      lower['content-length'] !== undefined &&
      lower['content-length'] !== String(GET_CALLER_IDENTITY_BODY.length)
    )
      return fail(400, 'the proof content-length does not match its body');

    if (lower[AWS_SERVER_ID_HEADER] !== audience)
      return fail(
        401,
        `the proof was made for another audience: ${AWS_SERVER_ID_HEADER} must be ${audience}`,
      );
    const dateText = lower['x-amz-date'] as string;
    const signedAt = parseAmzDate(dateText);
    if (Number.isNaN(signedAt) || dateText.slice(0, 8) !== scopeDate)
      return fail(400, 'the proof x-amz-date is not a date matching its credential scope');
    const skew = Math.round((now() - signedAt) / 1000);
    if (Math.abs(skew) * 1000 > maxSkewMs)
      return fail(
        401,
        `the proof is signed ${Math.abs(skew)} s ${skew > 0 ? 'ago' : 'in the future'}: at most ${maxSkewMs / 1000} s allowed`,
      );

    const forward: Record<string, string> = {};
    for (const name of signed) forward[name] = lower[name] as string;
    forward.authorization = authorization;
    return { forward };
  }

  function callSts(forward: Record<string, string>): Promise<{ status: number; body: string } | Failure> {
    return new Promise((resolve) => {
      let settled = false;
      const settle = (value: { status: number; body: string } | Failure) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      };
      const request = transport.request(endpoint, {
        method: 'POST',
        headers: { ...forward, 'content-length': String(Buffer.byteLength(GET_CALLER_IDENTITY_BODY)) },
      });
      const timer = setTimeout(() => {
        settle(fail(503, `STS (${endpointHost}) did not answer within ${timeoutMs} ms`));
        request.destroy();
      }, timeoutMs);
      request.on('error', (error: NodeJS.ErrnoException) =>
        settle(fail(503, `STS (${endpointHost}) could not be reached (${error.code ?? 'network error'})`)),
      );
      request.on('response', (response) => {
        readBody(response, MAX_STS_ANSWER_BYTES).then((read) => {
          if (!read.ok)
            settle(
              read.reason === 'too-large'
                ? fail(502, `STS (${endpointHost}) answered more than ${MAX_STS_ANSWER_BYTES} bytes`)
                : fail(503, `STS (${endpointHost}) broke off its answer`),
            );
          else settle({ status: response.statusCode ?? 0, body: read.body.toString('utf8') });
        });
      });
      request.end(GET_CALLER_IDENTITY_BODY);
    });
  }

  function interpret(status: number, body: string): VerifyOutcome {
    if (status !== 200) {
      const code = /<ErrorResponse\b/.test(body)
        ? /<Code>([A-Za-z0-9.]{1,64})<\/Code>/.exec(body)?.[1]
        : undefined;
      if (code === undefined) return fail(502, `STS answered ${status} without an error code`);
      if (TRANSIENT_CODES.has(code) || status >= 500) return fail(503, `STS could not answer (${code})`);
      return fail(401, `STS refused the proof: ${code}`);
    }
    if (!/<GetCallerIdentityResponse\b[^>]{0,256}>/.test(body) || !/<GetCallerIdentityResult>/.test(body))
      return fail(502, 'STS answered 200 without a GetCallerIdentityResult');
    const field = (name: string, pattern: string): string | undefined => {
      const matches = [...body.matchAll(new RegExp(`<${name}>(${pattern})</${name}>`, 'g'))];
      return matches.length === 1 ? matches[0]?.[1] : undefined;
    };
    const arn = field('Arn', '[^<>]{1,2048}');
    const account = field('Account', '\\d{12}');
    const userId = field('UserId', '[A-Za-z0-9:+=,.@_-]{1,256}');
    if (arn === undefined || account === undefined || userId === undefined)
      return fail(502, 'STS answered 200 without one Arn, Account and UserId');
    const session = ROLE_SESSION_ARN.exec(arn);
    if (!session) {
      const other = OTHER_PRINCIPAL_ARN.exec(arn);
      if (!other || other[1] !== account) return fail(502, 'STS answered an ARN it could not have issued');
      return fail(
        403,
        `${arn} is not a role session: only role sessions attest (Lambda functions run as assumed roles)`,
      );
    }
    const [, , arnAccount, role, name] = session as unknown as string[];
    if (arnAccount !== account) return fail(502, 'STS answered an Account that is not the ARN account');
    if (accounts && !accounts.has(account)) return fail(403, `account ${account} is not allowed to attest`);
    const attested: AttestedPrincipal = {
      kind: 'aws',
      principal: arn,
      attributes: { cloud: 'aws', account, role: role as string, name: name as string },
    };
    return { ok: true, attested };
  }

  return {
    kind: 'aws',
    async verify(proof: unknown): Promise<VerifyOutcome> {
      let valid: ValidProof | Failure;
      try {
        valid = validate(proof);
      } catch {
        // A hostile object (a throwing getter, a proxy): nothing of it is worth describing.
        return fail(400, 'the proof could not be read');
      }
      if ('ok' in valid) return valid;
      const answer = await callSts(valid.forward);
      if ('ok' in answer) return answer;
      return interpret(answer.status, answer.body);
    },
  };
}
