// The workload token kept in AWS Secrets Manager or in an SSM SecureString parameter instead of in
// the function's environment: `bulkhead attach --token-secret ARN` sets BULKHEAD_TOKEN_SECRET, and
// the Lambda extension fetches the token at init with the function's own role credentials (SigV4,
// ./sigv4.ts). node: built-ins only: the extension bundles it. Errors name the ARN and what AWS
// answered, never the secret's value or the token.
import { boundedRequest } from '../client/bounded-request.js';
import { credentialsFromEnv, signRequest } from './sigv4.js';

export type TokenSecretService = 'secretsmanager' | 'ssm';

export interface TokenSecretArn {
  arn: string;
  service: TokenSecretService;
  partition: string;
  region: string;
  account: string;
  /** The secret's name (with AWS's 6-character suffix when the ARN has it), or the parameter's path after `parameter/`. */
  name: string;
}

/** Why the token could not be had. The message is safe to log: no secret value, no token. */
export class TokenSecretError extends Error {
  override readonly name = 'TokenSecretError';
}

const SHAPES =
  'arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME or arn:aws:ssm:REGION:ACCOUNT:parameter/NAME';
const MAX_ARN_LENGTH = 2048;
/** A secret value is at most 64 KiB, a parameter's 8 KiB; the JSON around either stays well under this. */
const MAX_ANSWER_BYTES = 256 * 1024;
const MAX_TOKEN_LENGTH = 4096;

/** Parses and checks a token secret ARN; the error says what is wrong with it. */
export function parseTokenSecretArn(text: string): TokenSecretArn {
  if (typeof text !== 'string' || text === '')
    throw new TokenSecretError(`the token secret ARN is empty (${SHAPES})`);
  if (text.length > MAX_ARN_LENGTH)
    throw new TokenSecretError(`the token secret ARN is longer than ${MAX_ARN_LENGTH} characters`);
  if (/\s/.test(text)) throw new TokenSecretError('the token secret ARN contains white space');
  const parts = text.split(':');
  if (parts[0] !== 'arn' || parts.length < 6)
    throw new TokenSecretError(`'${text}' is not an ARN (${SHAPES})`);
  const [, partition = '', service = '', region = '', account = ''] = parts;
  const resource = parts.slice(5).join(':');
  if (!/^aws(?:-cn|-us-gov|-iso|-iso-[a-z])?$/.test(partition))
    throw new TokenSecretError(`'${text}': '${partition}' is not an AWS partition (aws, aws-cn, aws-us-gov)`);
  if (service !== 'secretsmanager' && service !== 'ssm')
    throw new TokenSecretError(
      `'${text}': the token must be a Secrets Manager secret or an SSM parameter, not ${service || 'an empty service'} (${SHAPES})`,
    );
  if (region === '')
    throw new TokenSecretError(`'${text}' has no region: the secret is read in the region it lives in`);
  if (!/^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/.test(region))
    throw new TokenSecretError(`'${text}': '${region}' is not an AWS region`);
  if (!/^\d{12}$/.test(account)) throw new TokenSecretError(`'${text}': the account must be 12 digits`);
  let name: string;
  if (service === 'secretsmanager') {
    if (!resource.startsWith('secret:'))
      throw new TokenSecretError(`'${text}': a Secrets Manager ARN names a secret (…:secret:NAME)`);
    name = resource.slice('secret:'.length);
    if (!/^[A-Za-z0-9/_+=.@-]{1,512}$/.test(name))
      throw new TokenSecretError(`'${text}': a secret name is 1 to 512 of A-Z a-z 0-9 / _ + = . @ -`);
  } else {
    if (!resource.startsWith('parameter/'))
      throw new TokenSecretError(`'${text}': an SSM ARN names a parameter (…:parameter/NAME)`);
    name = resource.slice('parameter/'.length);
    if (!/^[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*$/.test(name) || name.length > 1011)
      throw new TokenSecretError(
        `'${text}': a parameter name is segments of A-Z a-z 0-9 _ . - separated by /`,
      );
  }
  return { arn: text, service, partition, region, account, name };
}

export interface FetchTokenOptions {
  /** AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; AWS_ENDPOINT_URL_SECRETS_MANAGER / AWS_ENDPOINT_URL_SSM. */
  env: NodeJS.ProcessEnv;
  /** Bound on the whole exchange (connect, send, answer). */
  timeoutMs: number;
  /** Signing instant (default now). */
  now?: Date | undefined;
}

const SERVICE = {
  secretsmanager: {
    title: 'Secrets Manager',
    endpointVariable: 'AWS_ENDPOINT_URL_SECRETS_MANAGER',
    target: 'secretsmanager.GetSecretValue',
    input: (arn: string) => ({ SecretId: arn }),
    value: (answer: Record<string, unknown>) => answer.SecretString,
  },
  ssm: {
    title: 'SSM',
    endpointVariable: 'AWS_ENDPOINT_URL_SSM',
    target: 'AmazonSSM.GetParameter',
    input: (arn: string) => ({ Name: arn, WithDecryption: true }),
    value: (answer: Record<string, unknown>) =>
      typeof answer.Parameter === 'object' && answer.Parameter !== null
        ? (answer.Parameter as Record<string, unknown>).Value
        : undefined,
  },
} as const;

/** The service endpoint: the SDKs' per-service variable, else the regional endpoint of the ARN's region. */
export function tokenSecretEndpoint(parsed: TokenSecretArn, env: NodeJS.ProcessEnv): URL {
  const variable = SERVICE[parsed.service].endpointVariable;
  const configured = env[variable];
  const suffix = parsed.partition === 'aws-cn' ? 'amazonaws.com.cn' : 'amazonaws.com';
  const text = configured || `https://${parsed.service}.${parsed.region}.${suffix}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TokenSecretError(`${variable} is not a URL`);
  }
  if (
    (url.protocol !== 'https:' && url.protocol !== 'http:') ||
    url.username ||
    url.password ||
    url.search ||
    url.hash
  )
    throw new TokenSecretError(`${variable} must be a plain http(s) URL`);
  return url;
}

/** Text AWS answered, made safe for one log line. */
function clean(text: unknown, max = 300): string {
  return typeof text === 'string' ? text.replace(/[^\x20-\x7e]/g, ' ').slice(0, max) : '';
}

/** The token in a secret's value: the value itself, or the `token` field of a JSON object. */
export function tokenFromSecretValue(value: unknown): string {
  if (typeof value !== 'string') throw new TokenSecretError('the secret has no string value');
  let token: unknown = value.trim();
  if ((token as string).startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(token as string);
    } catch {
      throw new TokenSecretError('the secret value starts with { but is not JSON');
    }
    token =
      typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>).token : undefined;
    if (typeof token !== 'string')
      throw new TokenSecretError('the secret value is JSON without a string "token" field');
    token = token.trim();
  }
  if (!/^[\x21-\x7e]+$/.test(token as string) || (token as string).length > MAX_TOKEN_LENGTH)
    throw new TokenSecretError(
      `the secret value is not a token (one word of at most ${MAX_TOKEN_LENGTH} printable characters)`,
    );
  return token as string;
}

/**
 * Fetches the workload token from the secret or parameter `arn` with the function's credentials.
 * Resolves with the token; rejects with TokenSecretError (or AwsCredentialsError) saying why.
 */
export async function fetchTokenFromSecret(arn: string, options: FetchTokenOptions): Promise<string> {
  const parsed = parseTokenSecretArn(arn);
  const service = SERVICE[parsed.service];
  const url = tokenSecretEndpoint(parsed, options.env);
  const credentials = credentialsFromEnv(options.env);
  const body = JSON.stringify(service.input(parsed.arn));
  const signed = signRequest(
    {
      method: 'POST',
      url,
      headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': service.target },
      body,
    },
    { credentials, region: parsed.region, service: parsed.service, date: options.now },
  );
  const answer = await post(url, signed.headers, body, options.timeoutMs, service.title);
  let json: unknown;
  try {
    json = JSON.parse(answer.body);
  } catch {
    json = undefined;
  }
  const object = typeof json === 'object' && json !== null ? (json as Record<string, unknown>) : undefined;
  if (answer.status !== 200) {
    // `__type` may carry a namespace (`com.amazonaws.secretsmanager#ResourceNotFoundException`).
    const type = clean(object?.__type, 100).split('#').pop();
    const message = clean(object?.message ?? object?.Message);
    throw new TokenSecretError(
      `${service.title} refused ${parsed.arn} (${answer.status}${type ? ` ${type}` : ''})${message ? `: ${message}` : ''}`,
    );
  }
  if (!object)
    throw new TokenSecretError(`${service.title} answered ${parsed.arn} with something that is not JSON`);
  try {
    return tokenFromSecretValue(service.value(object));
  } catch (error) {
    throw new TokenSecretError(`${parsed.arn}: ${(error as Error).message}`);
  }
}

async function post(
  url: URL,
  headers: Record<string, string>,
  body: string,
  timeoutMs: number,
  title: string,
): Promise<{ status: number; body: string }> {
  const answer = await boundedRequest(url, { method: 'POST', headers, body }, timeoutMs, MAX_ANSWER_BYTES);
  if (answer.ok) return { status: answer.status, body: answer.body.toString('utf8') };
  const where = `${title} (${url.host})`;
  switch (answer.cause) {
    case 'timeout':
      throw new TokenSecretError(`${where} did not answer within ${timeoutMs} ms`);
    case 'too-large':
      throw new TokenSecretError(`${where} answered more than ${MAX_ANSWER_BYTES} bytes`);
    case 'broken':
      throw new TokenSecretError(`${where} broke off its answer`);
    default:
      throw new TokenSecretError(`${where} could not be reached (${answer.code ?? 'network error'})`);
  }
}
