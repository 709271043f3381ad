// Attach the Bulkhead layer to one function: read its configuration and tags, add (or upgrade)
// the layer and the environment the layer needs, keep every other layer and variable, and write
// the configuration back only when something changes. The plan is a pure function so its
// guarantees can be checked on arbitrary configurations.
import {
  type FunctionConfiguration,
  GetFunctionConfigurationCommand,
  type LambdaClient,
  ListTagsCommand,
  UpdateFunctionConfigurationCommand,
} from '@aws-sdk/client-lambda';
import { formatIdentity } from '../policy/identity.js';
import { parseTokenSecretArn, type TokenSecretArn } from '../runtime-shims/node/aws/secret-token.js';
import { LAYER_RUNTIMES } from './build.js';

export const EXEC_WRAPPER_PATH = '/opt/bulkhead-wrapper';
export const MAX_LAYERS = 5;
/** Lambda's limit on the total size of a function's environment variables. */
export const MAX_ENVIRONMENT_BYTES = 4 * 1024;
export const SUPPORTED_RUNTIMES = LAYER_RUNTIMES;

/** Why a runtime the layer does not govern cannot take it: the refusal says what to do instead. */
function unsupportedRuntime(functionName: string, runtime: string | undefined): string {
  const supported = SUPPORTED_RUNTIMES.join(', ');
  if (!runtime) return `${functionName} has no managed runtime: the Bulkhead layer governs ${supported}`;
  if (/^python3\.\d+$/.test(runtime))
    return (
      `${functionName} runs ${runtime}: the Bulkhead layer governs python3.12 and python3.13 (Amazon Linux 2023, ` +
      'whose glibc its vendored verifier needs); upgrade the runtime, it would otherwise run ungoverned'
    );
  if (/^nodejs\d+\.x$/.test(runtime))
    return `${functionName} runs ${runtime}: the Bulkhead layer governs ${supported}; upgrade the runtime`;
  if (runtime.startsWith('provided'))
    return (
      `${functionName} runs ${runtime}: custom runtimes ignore AWS_LAMBDA_EXEC_WRAPPER, so no shim would load and ` +
      `the function would run ungoverned; the Bulkhead layer governs ${supported}`
    );
  return `${functionName} runs ${runtime}: the Bulkhead layer governs ${supported} only; ${runtime} would run ungoverned`;
}

const LAYER_VERSION_ARN = /^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]{1,64}:[1-9]\d*$/;

export class AttachError extends Error {
  override readonly name = 'AttachError';
}

export interface AttachRequest {
  layerArn: string;
  controlUrl: string;
  /** Workload token to store in BULKHEAD_TOKEN; never printed. */
  token?: string | undefined;
  /**
   * Instead of `token`: the ARN of the Secrets Manager secret or SSM SecureString parameter holding it,
   * stored in BULKHEAD_TOKEN_SECRET (the extension reads it at init with the function's role).
   */
  tokenSecret?: string | undefined;
  /** Prove the function's identity with its role (BULKHEAD_ATTEST=aws; the control API needs --attestation). */
  attest?: boolean | undefined;
}

export type Change =
  | { kind: 'layer-add'; arn: string }
  | { kind: 'layer-replace'; from: string; to: string }
  | { kind: 'env-set'; name: string; secret: boolean }
  | { kind: 'env-remove'; name: string };

/** An IAM policy document: what the function's execution role needs to read its token secret. */
export interface RolePolicy {
  Version: '2012-10-17';
  Statement: {
    Sid: string;
    Effect: 'Allow';
    Action: string;
    Resource: string;
    Condition?: Record<string, Record<string, string>>;
  }[];
}

/** Checks a --token-secret ARN; AttachError says what is wrong with it. */
export function checkTokenSecret(arn: string): TokenSecretArn {
  try {
    return parseTokenSecretArn(arn);
  } catch (error) {
    throw new AttachError(`--token-secret: ${(error as Error).message}`);
  }
}

/**
 * The statements the execution role needs to read the token secret: GetSecretValue on the secret (its
 * ARN with `-??????` when it is given without the suffix Secrets Manager adds) or GetParameter on the
 * parameter, and kms:Decrypt through that service, needed when the key is customer managed (the AWS
 * managed keys aws/secretsmanager and aws/ssm need no statement).
 */
export function tokenSecretPolicy(arn: string): RolePolicy {
  const secret = checkTokenSecret(arn);
  const suffix = secret.partition === 'aws-cn' ? 'amazonaws.com.cn' : 'amazonaws.com';
  const read =
    secret.service === 'secretsmanager'
      ? {
          Sid: 'ReadBulkheadToken',
          Effect: 'Allow' as const,
          Action: 'secretsmanager:GetSecretValue',
          Resource: /-[A-Za-z0-9]{6}$/.test(secret.name) ? secret.arn : `${secret.arn}-??????`,
        }
      : {
          Sid: 'ReadBulkheadToken',
          Effect: 'Allow' as const,
          Action: 'ssm:GetParameter',
          Resource: secret.arn,
        };
  return {
    Version: '2012-10-17',
    Statement: [
      read,
      {
        Sid: 'DecryptBulkheadTokenIfCustomerManagedKey',
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: `arn:${secret.partition}:kms:${secret.region}:${secret.account}:key/*`,
        Condition: { StringEquals: { 'kms:ViaService': `${secret.service}.${secret.region}.${suffix}` } },
      },
    ],
  };
}

/** The same, for people: one line per permission. */
export function describeTokenSecretPolicy(arn: string): string[] {
  const policy = tokenSecretPolicy(arn);
  const [read, decrypt] = policy.Statement;
  const service = checkTokenSecret(arn).service;
  return [
    `${read?.Action} on ${read?.Resource}`,
    `kms:Decrypt on the ${service === 'ssm' ? 'parameter' : 'secret'}'s KMS key (via ${decrypt?.Condition?.StringEquals?.['kms:ViaService']}) ` +
      `when it is a customer managed key; the AWS managed key ${service === 'ssm' ? 'aws/ssm' : 'aws/secretsmanager'} needs nothing more`,
  ];
}

export interface AttachPlan {
  layers: string[];
  environment: Record<string, string>;
  changes: Change[];
}

export function checkLayerArn(arn: string): string {
  if (!LAYER_VERSION_ARN.test(arn))
    throw new AttachError(
      `--layer '${arn}' is not a layer version ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION)`,
    );
  return arn;
}

export function checkControlUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new AttachError(`--control '${text}' is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new AttachError(`--control must be an http(s) URL, got ${url.protocol}`);
  if (url.username || url.password)
    throw new AttachError('--control must not carry credentials: pass the token with --token-env');
  if (url.search || url.hash) throw new AttachError('--control must not have a query or fragment');
  return url.href.replace(/\/$/, '');
}

/** Layer ARN without its version: identifies "the same layer" across versions. */
export function layerBase(arn: string): string {
  const cut = arn.lastIndexOf(':');
  return cut === -1 ? arn : arn.slice(0, cut);
}

export function environmentBytes(environment: Record<string, string>): number {
  let total = 0;
  for (const [key, value] of Object.entries(environment))
    total += Buffer.byteLength(key) + Buffer.byteLength(value);
  return total;
}

/** Compute the new layers and environment; throws AttachError when the function cannot take the layer. */
export function planAttach(
  functionName: string,
  config: Pick<FunctionConfiguration, 'Layers' | 'Environment' | 'Runtime' | 'PackageType'>,
  tags: Record<string, string>,
  request: AttachRequest,
): AttachPlan {
  if (config.PackageType === 'Image')
    throw new AttachError(
      `${functionName} is a container image function: images cannot use layers; copy the layer into the image (see README)`,
    );
  if (!config.Runtime || !SUPPORTED_RUNTIMES.includes(config.Runtime))
    throw new AttachError(unsupportedRuntime(functionName, config.Runtime));
  const changes: Change[] = [];
  const current = (config.Layers ?? []).map((layer) => layer.Arn).filter((arn): arn is string => !!arn);
  const base = layerBase(request.layerArn);
  const layers: string[] = [];
  let placed = false;
  for (const arn of current) {
    if (layerBase(arn) !== base) {
      layers.push(arn);
    } else if (!placed) {
      // Keep the layer's position: layer order decides which file wins when two layers ship the same path.
      layers.push(request.layerArn);
      placed = true;
      if (arn !== request.layerArn) changes.push({ kind: 'layer-replace', from: arn, to: request.layerArn });
    } else {
      changes.push({ kind: 'layer-replace', from: arn, to: request.layerArn });
    }
  }
  if (!placed) {
    if (layers.length >= MAX_LAYERS)
      throw new AttachError(
        `${functionName} already has ${layers.length} layers, the Lambda maximum of ${MAX_LAYERS}: ` +
          `${layers.join(', ')}. Remove one, or import bulkhead/aws in the function instead of the layer`,
      );
    layers.push(request.layerArn);
    changes.push({ kind: 'layer-add', arn: request.layerArn });
  }

  const before = config.Environment?.Variables ?? {};
  const existingWrapper = before.AWS_LAMBDA_EXEC_WRAPPER;
  if (existingWrapper !== undefined && existingWrapper !== EXEC_WRAPPER_PATH)
    throw new AttachError(
      `${functionName} already uses the exec wrapper ${existingWrapper}: a function has only one; ` +
        'remove it first, or import bulkhead/aws in the function instead of the layer',
    );
  const wanted: Record<string, string> = {
    AWS_LAMBDA_EXEC_WRAPPER: EXEC_WRAPPER_PATH,
    BULKHEAD_CONTROL_URL: request.controlUrl,
  };
  // BULKHEAD_TAGS uses the identity text form (`k=v,…`, separators percent-encoded); the shim prefixes `tag.`.
  const tagText = formatIdentity(tags);
  if (tagText !== '' || before.BULKHEAD_TAGS !== undefined) wanted.BULKHEAD_TAGS = tagText;
  if (request.token !== undefined && request.tokenSecret !== undefined)
    throw new AttachError('give the workload token or its secret, not both (--token-env or --token-secret)');
  // One way to the token: the other variable goes (a plain BULKHEAD_TOKEN would win over the secret).
  const unwanted: string[] = [];
  if (request.token !== undefined) {
    wanted.BULKHEAD_TOKEN = request.token;
    unwanted.push('BULKHEAD_TOKEN_SECRET');
  }
  if (request.tokenSecret !== undefined) {
    wanted.BULKHEAD_TOKEN_SECRET = checkTokenSecret(request.tokenSecret).arn;
    unwanted.push('BULKHEAD_TOKEN');
  }
  if (request.attest) wanted.BULKHEAD_ATTEST = 'aws';
  const environment: Record<string, string> = { ...before };
  for (const name of unwanted) {
    if (!(name in environment)) continue;
    delete environment[name];
    changes.push({ kind: 'env-remove', name });
  }
  for (const [name, value] of Object.entries(wanted)) {
    if (environment[name] === value) continue;
    environment[name] = value;
    changes.push({ kind: 'env-set', name, secret: name === 'BULKHEAD_TOKEN' });
  }
  const size = environmentBytes(environment);
  if (size > MAX_ENVIRONMENT_BYTES)
    throw new AttachError(
      `${functionName}: the environment would be ${size} bytes, over Lambda's ${MAX_ENVIRONMENT_BYTES}-byte limit ` +
        '(BULKHEAD_TAGS carries the function tags: trim tags or other variables)',
    );
  return { layers, environment, changes };
}

export function describeChange(change: Change): string {
  switch (change.kind) {
    case 'layer-add':
      return `add layer ${change.arn}`;
    case 'layer-replace':
      return `replace layer ${change.from} with ${change.to}`;
    case 'env-set':
      return `set ${change.name}${change.secret ? ' (value hidden)' : ''}`;
    case 'env-remove':
      return `remove ${change.name}`;
  }
}

export interface AttachOptions extends AttachRequest {
  client: LambdaClient;
  functionName: string;
  dryRun?: boolean | undefined;
  /** Wait until Lambda has applied the update (LastUpdateStatus no longer InProgress). */
  wait?: boolean | undefined;
  waitTimeoutMs?: number | undefined;
  onProgress?: ((message: string) => void) | undefined;
  /** For tests: how to pause between status polls. */
  sleep?: ((ms: number) => Promise<void>) | undefined;
}

export interface AttachResult {
  functionArn: string | undefined;
  changes: Change[];
  updated: boolean;
  layers: string[];
  /** With a token secret: what the function's execution role must be allowed. */
  executionRolePolicy?: RolePolicy | undefined;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Whether a function name/ARN names a version or alias (`name:live`, `arn:…:function:name:3`). */
export function hasQualifier(functionName: string): boolean {
  const parts = functionName.split(':');
  if (parts[0] === 'arn') return parts.length > 7;
  // `name:qualifier`, or the partial ARN `account:function:name[:qualifier]`.
  return parts.length === 2 || parts.length > 3;
}

export async function attachLayer(options: AttachOptions): Promise<AttachResult> {
  const progress = options.onProgress ?? (() => undefined);
  if (hasQualifier(options.functionName))
    throw new AttachError(
      `${options.functionName} names a version or alias: configuration changes apply to the unpublished ` +
        'function ($LATEST); attach to the function name, then publish a version and move the alias',
    );
  const request: AttachRequest = {
    layerArn: checkLayerArn(options.layerArn),
    controlUrl: checkControlUrl(options.controlUrl),
    token: options.token,
    tokenSecret: options.tokenSecret === undefined ? undefined : checkTokenSecret(options.tokenSecret).arn,
    attest: options.attest,
  };
  if (request.token !== undefined && request.tokenSecret !== undefined)
    throw new AttachError('give the workload token or its secret, not both (--token-env or --token-secret)');
  progress(`reading configuration of ${options.functionName}`);
  const config = await options.client.send(
    new GetFunctionConfigurationCommand({ FunctionName: options.functionName }),
  );
  let tags: Record<string, string> = {};
  if (config.FunctionArn) {
    // ListTags needs the unqualified ARN; a qualified one ($LATEST, alias) is refused by the API.
    const unqualified = config.FunctionArn.split(':').slice(0, 7).join(':');
    tags = (await options.client.send(new ListTagsCommand({ Resource: unqualified }))).Tags ?? {};
  }
  const plan = planAttach(options.functionName, config, tags, request);
  if (!plan.environment.BULKHEAD_TOKEN && !plan.environment.BULKHEAD_TOKEN_SECRET)
    progress(
      `${options.functionName}: warning: no BULKHEAD_TOKEN or BULKHEAD_TOKEN_SECRET on the function: the extension ` +
        'cannot fetch bundles (pass --token-env NAME or --token-secret ARN); until it has one the fail mode governs',
    );
  const result: AttachResult = {
    functionArn: config.FunctionArn,
    changes: plan.changes,
    updated: false,
    layers: plan.layers,
  };
  if (request.tokenSecret !== undefined) {
    result.executionRolePolicy = tokenSecretPolicy(request.tokenSecret);
    const secretAccount = checkTokenSecret(request.tokenSecret).account;
    const functionAccount = config.FunctionArn?.split(':')[4];
    if (functionAccount && functionAccount !== secretAccount)
      progress(
        `${options.functionName}: the token secret is in account ${secretAccount}, the function in ${functionAccount}: ` +
          "the secret's resource policy (and its KMS key's policy) must also allow the execution role",
      );
  }
  if (plan.changes.length === 0) {
    progress(`${options.functionName}: already attached, nothing to change`);
    return result;
  }
  for (const change of plan.changes) progress(`${options.functionName}: ${describeChange(change)}`);
  if (options.dryRun) return result;

  await options.client.send(
    new UpdateFunctionConfigurationCommand({
      FunctionName: options.functionName,
      Layers: plan.layers,
      Environment: { Variables: plan.environment },
      // Optimistic concurrency: fails instead of overwriting a change made since we read the configuration.
      RevisionId: config.RevisionId,
    }),
  );
  result.updated = true;
  progress(`${options.functionName}: configuration updated`);
  if (options.wait) await waitUntilUpdated(options, progress);
  return result;
}

async function waitUntilUpdated(options: AttachOptions, progress: (message: string) => void): Promise<void> {
  const sleep = options.sleep ?? defaultSleep;
  const deadline = Date.now() + (options.waitTimeoutMs ?? 120_000);
  for (;;) {
    const config = await options.client.send(
      new GetFunctionConfigurationCommand({ FunctionName: options.functionName }),
    );
    if (config.LastUpdateStatus === 'Failed')
      throw new AttachError(
        `${options.functionName}: Lambda failed to apply the update: ${config.LastUpdateStatusReason ?? 'no reason given'}`,
      );
    if (config.LastUpdateStatus !== 'InProgress') {
      progress(`${options.functionName}: update applied`);
      return;
    }
    if (Date.now() > deadline)
      throw new AttachError(`${options.functionName}: update still in progress, gave up waiting`);
    progress(`${options.functionName}: update in progress…`);
    await sleep(1000);
  }
}
