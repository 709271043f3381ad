// AWS Signature Version 4, header form (`Authorization: AWS4-HMAC-SHA256 …`), with node:crypto only:
// it is bundled into the Lambda extension, whose cold start pays for every module it loads. Used to
// sign the `sts:GetCallerIdentity` proof of identity (../client/attest-aws.ts) and the Secrets
// Manager / SSM calls that fetch the workload token (./secret-token.ts).
//
// The algorithm (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html):
//   canonical request = METHOD \n canonical URI \n canonical query \n canonical headers \n
//                       signed headers \n hex(sha256(body))
//   string to sign    = AWS4-HMAC-SHA256 \n X-Amz-Date \n DATE/REGION/SERVICE/aws4_request \n
//                       hex(sha256(canonical request))
//   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, DATE), REGION), SERVICE), "aws4_request")
//   signature         = hex(HMAC(signing key, string to sign))
// The canonical URI is that of every service but S3: the path's dot segments and empty segments
// removed, then each segment of the path as sent URI-encoded once more.
import { createHash, createHmac } from 'node:crypto';

export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';

export interface AwsCredentials {
  accessKeyId: string;
  /** Secret: used only as HMAC key material, never copied into a header, an error or a log. */
  secretAccessKey: string;
  /** Temporary credentials (a role session) carry one; it is sent and signed as `x-amz-security-token`. */
  sessionToken?: string | undefined;
}

export interface SignableRequest {
  method: string;
  /** Absolute http(s) URL; its path and query are signed as sent. */
  url: string | URL;
  /** Headers to send and sign (any case; names must be distinct once lowercased). */
  headers?: Record<string, string> | undefined;
  body?: string | Uint8Array | undefined;
}

export interface SigningParams {
  credentials: AwsCredentials;
  region: string;
  service: string;
  /** Signing instant (default now); the same inputs and date give the same signature. */
  date?: Date | undefined;
}

export interface SignedRequest {
  /**
   * Every header to send, lowercase names: the caller's, `host` (unless given), `x-amz-date`,
   * `x-amz-security-token` (with a session token) and `authorization`. All but `authorization` are signed.
   */
  headers: Record<string, string>;
  /** `a;b;c`: the signed header names, sorted. */
  signedHeaders: string;
  canonicalRequest: string;
  stringToSign: string;
  /** Hex HMAC-SHA256. */
  signature: string;
}

/** `YYYYMMDDTHHMMSSZ`, the form of X-Amz-Date. */
export function amzDate(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new RangeError('sigv4: invalid signing date');
  return date
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** The derived key of one day, region and service. */
export function deriveSigningKey(
  secretAccessKey: string,
  shortDate: string,
  region: string,
  service: string,
): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, shortDate), region), service), 'aws4_request');
}

/** RFC 3986 encoding as SigV4 wants it: every byte but A-Z a-z 0-9 - . _ ~ as %XX (upper case). */
export function uriEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    if (
      (byte >= 0x41 && byte <= 0x5a) ||
      (byte >= 0x61 && byte <= 0x7a) ||
      (byte >= 0x30 && byte <= 0x39) ||
      byte === 0x2d ||
      byte === 0x2e ||
      byte === 0x5f ||
      byte === 0x7e
    )
      out += String.fromCharCode(byte);
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Canonical URI of a path as sent (`URL.pathname`): normalised, each segment encoded again. */
export function canonicalUri(pathname: string): string {
  const segments: string[] = [];
  for (const segment of pathname.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  if (segments.length === 0) return '/';
  const trailing = pathname.endsWith('/') ? '/' : '';
  return `/${segments.map(uriEncode).join('/')}${trailing}`;
}

/** Percent-decoding that leaves a malformed escape as it is (`+` is a plus sign, not a space). */
function decodeComponent(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Canonical query of a query string as sent (`URL.search`, with or without `?`): decoded, re-encoded, sorted. */
export function canonicalQuery(search: string): string {
  const text = search.startsWith('?') ? search.slice(1) : search;
  if (text === '') return '';
  const pairs: [string, string][] = [];
  for (const part of text.split('&')) {
    if (part === '') continue;
    const cut = part.indexOf('=');
    const name = cut === -1 ? part : part.slice(0, cut);
    const value = cut === -1 ? '' : part.slice(cut + 1);
    pairs.push([uriEncode(decodeComponent(name)), uriEncode(decodeComponent(value))]);
  }
  // Encoded text is ASCII: code-unit order is byte order.
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([name, value]) => `${name}=${value}`).join('&');
}

/** A header value as SigV4 signs it: runs of spaces and tabs made one space, leading and trailing one dropped. */
export function canonicalHeaderValue(value: string): string {
  return value.replace(/[ \t]+/g, ' ').replace(/^ | $/g, '');
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Signs `request` (Authorization header form). Throws TypeError on a request no server could receive. */
export function signRequest(request: SignableRequest, params: SigningParams): SignedRequest {
  const url = typeof request.url === 'string' ? new URL(request.url) : request.url;
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new TypeError(`sigv4: cannot sign a ${url.protocol} URL`);
  const method = request.method.toUpperCase();
  if (!/^[A-Z]+$/.test(method)) throw new TypeError('sigv4: invalid method');
  const { credentials, region, service } = params;
  if (!credentials.accessKeyId || !credentials.secretAccessKey)
    throw new TypeError('sigv4: credentials need an access key id and a secret access key');
  for (const [name, value] of [
    ['region', region],
    ['service', service],
  ] as const)
    if (!/^[a-z0-9-]{1,64}$/.test(value)) throw new TypeError(`sigv4: invalid ${name}`);

  const longDate = amzDate(params.date ?? new Date());
  const shortDate = longDate.slice(0, 8);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers ?? {})) {
    const lower = name.toLowerCase();
    if (!HEADER_NAME.test(name)) throw new TypeError(`sigv4: invalid header name ${JSON.stringify(name)}`);
    if (lower === 'authorization')
      throw new TypeError('sigv4: the request already has an authorization header');
    if (Object.hasOwn(headers, lower)) throw new TypeError(`sigv4: header ${lower} given twice`);
    if (/[\r\n\0]/.test(value)) throw new TypeError(`sigv4: header ${lower} holds a line break`);
    headers[lower] = value;
  }
  headers.host ??= url.host;
  headers['x-amz-date'] = longDate;
  if (credentials.sessionToken) headers['x-amz-security-token'] = credentials.sessionToken;

  const names = Object.keys(headers).sort();
  const signedHeaders = names.join(';');
  const canonicalHeaders = names
    .map((name) => `${name}:${canonicalHeaderValue(headers[name] as string)}\n`)
    .join('');
  const canonicalRequest = [
    method,
    canonicalUri(url.pathname),
    canonicalQuery(url.search),
    canonicalHeaders,
    signedHeaders,
    sha256Hex(request.body ?? ''),
  ].join('\n');
  const scope = `${shortDate}/${region}/${service}/aws4_request`;
  const stringToSign = [SIGV4_ALGORITHM, longDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const signature = createHmac(
    'sha256',
    deriveSigningKey(credentials.secretAccessKey, shortDate, region, service),
  )
    .update(stringToSign, 'utf8')
    .digest('hex');
  headers.authorization = `${SIGV4_ALGORITHM} Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return { headers, signedHeaders, canonicalRequest, stringToSign, signature };
}

/** Raised when the environment holds no usable AWS credentials. Its message names variables, never values. */
export class AwsCredentialsError extends Error {
  override readonly name = 'AwsCredentialsError';
}

/**
 * The credentials Lambda gives a function (its execution role's session): AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN. `requireSessionToken`: refuse long-term keys.
 */
export function credentialsFromEnv(
  env: NodeJS.ProcessEnv,
  options: { requireSessionToken?: boolean } = {},
): AwsCredentials {
  const missing = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN'].filter(
    (name) => (name !== 'AWS_SESSION_TOKEN' || options.requireSessionToken) && !env[name],
  );
  if (missing.length > 0)
    throw new AwsCredentialsError(
      `no AWS credentials: ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not set`,
    );
  const accessKeyId = env.AWS_ACCESS_KEY_ID as string;
  if (!/^[A-Za-z0-9]{1,128}$/.test(accessKeyId))
    throw new AwsCredentialsError('AWS_ACCESS_KEY_ID is not an access key id (up to 128 letters and digits)');
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY as string;
  if (/[\r\n\0]/.test(secretAccessKey))
    throw new AwsCredentialsError('AWS_SECRET_ACCESS_KEY must be one line');
  const sessionToken = env.AWS_SESSION_TOKEN || undefined;
  if (sessionToken !== undefined && !/^[\x21-\x7e]+$/.test(sessionToken))
    throw new AwsCredentialsError('AWS_SESSION_TOKEN must be printable ASCII without spaces');
  return { accessKeyId, secretAccessKey, sessionToken };
}
