// The proofs a Google Cloud or Azure function sends to `POST /v1/attest` (policy/attestation.ts):
// a Google identity token from the metadata server, or a managed-identity access token from the
// App Service / Functions identity endpoint, each for the control API's audience. Bundled into the
// wrappers, whose cold start matters: node:http(s) only, no npm packages. Each request is bounded in
// time and size; errors name what is missing or what went wrong, never the token nor the secret
// header.
import type { AzureProof, GcpProof } from '../../../policy/attestation.js';
import { boundedRequest } from './bounded-request.js';

/** Default bound on one proof request (ms): both endpoints are local to the instance. */
export const PROOF_TIMEOUT_MS = 2000;
/** Largest answer read from either endpoint (bytes). */
export const MAX_PROOF_ANSWER_BYTES = 64 * 1024;
/** Longest token accepted (characters), as the control API's verifier. */
export const MAX_PROOF_TOKEN_LENGTH = 16 * 1024;
export const METADATA_IDENTITY_PATH = '/computeMetadata/v1/instance/service-accounts/default/identity';
export const IDENTITY_API_VERSION = '2019-08-01';

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const HOST_PORT = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

export type ProofErrorReason =
  /** The environment lacks what the request needs (a variable, an audience). */
  | 'not-configured'
  /** No answer: connection refused, reset, DNS. */
  | 'unreachable'
  | 'timeout'
  /** The endpoint answered with an error status. */
  | 'refused'
  /** The answer is not a token (or is too large). */
  | 'malformed';

/** Why no proof could be had. The message never holds a token or a secret header. */
export class ProofError extends Error {
  constructor(
    readonly reason: ProofErrorReason,
    message: string,
    readonly status?: number | undefined,
  ) {
    super(message);
    this.name = 'ProofError';
  }
}

export interface ProofOptions {
  /** The control API's audience (`aud` of the token). */
  audience: string;
  /** Where GCE_METADATA_HOST, IDENTITY_ENDPOINT, IDENTITY_HEADER and BULKHEAD_AZURE_CLIENT_ID are read. Default process.env. */
  env?: Record<string, string | undefined> | undefined;
  /** Bound on the request (ms). Default PROOF_TIMEOUT_MS. */
  timeoutMs?: number | undefined;
}

function checkAudience(audience: unknown): string {
  if (typeof audience !== 'string' || audience === '')
    throw new ProofError('not-configured', 'attestation audience is empty');
  if (audience.length > 2048 || [...audience].some((c) => c < ' ' || c === '\u007f'))
    throw new ProofError(
      'not-configured',
      'attestation audience must be one line of at most 2048 characters',
    );
  return audience;
}

function checkTimeout(timeoutMs: number | undefined): number {
  const value = timeoutMs ?? PROOF_TIMEOUT_MS;
  if (!Number.isFinite(value) || value <= 0) throw new RangeError('timeoutMs must be a positive number');
  return value;
}

function checkToken(token: string, source: string): string {
  if (token.length > MAX_PROOF_TOKEN_LENGTH || !JWT_SHAPE.test(token))
    throw new ProofError('malformed', `${source} did not answer a JWT`);
  return token;
}

/** One GET, settled within `timeoutMs` (connect, headers and body together), its body capped. */
async function get(
  url: URL,
  headers: Record<string, string>,
  timeoutMs: number,
  what: string,
): Promise<{ status: number; body: Buffer }> {
  const answer = await boundedRequest(url, { method: 'GET', headers }, timeoutMs, MAX_PROOF_ANSWER_BYTES);
  if (answer.ok) return answer;
  switch (answer.cause) {
    case 'invalid':
      // Node refused a header value or the URL before any byte was sent; never echoed.
      throw new ProofError(
        'not-configured',
        `request to ${what} could not be made (${answer.code ?? 'invalid request'})`,
      );
    case 'timeout':
      throw new ProofError('timeout', `${what} did not answer within ${timeoutMs} ms`);
    case 'too-large':
      throw new ProofError('malformed', `${what} answered more than ${MAX_PROOF_ANSWER_BYTES} bytes`);
    case 'broken':
      throw new ProofError('unreachable', `${what} closed the connection before its answer ended`);
    default:
      throw new ProofError('unreachable', `${what} unreachable (${answer.code ?? answer.name})`);
  }
}

/**
 * A Google identity token for `audience` from the metadata server
 * (`http://$GCE_METADATA_HOST|metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity?audience=…&format=full`,
 * `Metadata-Flavor: Google`): the function's service account, with its email (format=full).
 */
export async function gcpProof(options: ProofOptions): Promise<GcpProof> {
  const audience = checkAudience(options.audience);
  const timeoutMs = checkTimeout(options.timeoutMs);
  const env = options.env ?? process.env;
  const host = env.GCE_METADATA_HOST || 'metadata.google.internal';
  if (!HOST_PORT.test(host))
    throw new ProofError('not-configured', 'GCE_METADATA_HOST must be host[:port] of the metadata server');
  const url = new URL(`http://${host}${METADATA_IDENTITY_PATH}`);
  url.searchParams.set('audience', audience);
  url.searchParams.set('format', 'full');
  const what = `the metadata server (${host})`;
  const answer = await get(url, { 'metadata-flavor': 'Google', accept: 'text/plain' }, timeoutMs, what);
  if (answer.status !== 200)
    throw new ProofError(
      'refused',
      `${what} answered ${answer.status} to the identity token request`,
      answer.status,
    );
  return { type: 'gcp', token: checkToken(answer.body.toString('latin1').trim(), what) };
}

/**
 * A managed-identity access token for `audience` (`resource`) from the App Service / Functions
 * identity endpoint (IDENTITY_ENDPOINT with `X-IDENTITY-HEADER: $IDENTITY_HEADER`,
 * `api-version=2019-08-01`); a user-assigned identity's client id from BULKHEAD_AZURE_CLIENT_ID.
 */
export async function azureProof(options: ProofOptions): Promise<AzureProof> {
  const audience = checkAudience(options.audience);
  const timeoutMs = checkTimeout(options.timeoutMs);
  const env = options.env ?? process.env;
  const endpoint = env.IDENTITY_ENDPOINT;
  const secret = env.IDENTITY_HEADER;
  if (!endpoint)
    throw new ProofError(
      'not-configured',
      'IDENTITY_ENDPOINT is not set: turn on a managed identity for the function app',
    );
  if (!secret)
    throw new ProofError(
      'not-configured',
      'IDENTITY_HEADER is not set: turn on a managed identity for the function app',
    );
  if (/[\r\n]/.test(secret)) throw new ProofError('not-configured', 'IDENTITY_HEADER must be one line');
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new ProofError('not-configured', 'IDENTITY_ENDPOINT is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ProofError('not-configured', 'IDENTITY_ENDPOINT must be an http(s) URL');
  url.searchParams.set('resource', audience);
  url.searchParams.set('api-version', IDENTITY_API_VERSION);
  const clientId = env.BULKHEAD_AZURE_CLIENT_ID?.trim();
  if (clientId) url.searchParams.set('client_id', clientId);
  const what = `the identity endpoint (${url.host})`;
  const answer = await get(url, { 'x-identity-header': secret, accept: 'application/json' }, timeoutMs, what);
  if (answer.status !== 200)
    throw new ProofError('refused', `${what} answered ${answer.status} to the token request`, answer.status);
  let token: unknown;
  try {
    token = (JSON.parse(answer.body.toString('utf8')) as { access_token?: unknown } | null)?.access_token;
  } catch {
    throw new ProofError('malformed', `${what} did not answer JSON`);
  }
  if (typeof token !== 'string') throw new ProofError('malformed', `${what} answered no access_token`);
  return { type: 'azure', token: checkToken(token, what) };
}
