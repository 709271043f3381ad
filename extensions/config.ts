// Configuration of the Lambda extension: environment variables win over the layer's baked
// `config.json` (written by `bulkhead layer build`). Trusted keys never come over the
// bundle channel: they are in the layer or in the function's environment.
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { TrustedKey } from '../policy/keys.js';
import { loadTrustedKeys } from '../policy/keys.js';
import { parseTokenSecretArn } from '../runtime-shims/node/aws/secret-token.js';
import { attestKind } from '../runtime-shims/node/client/attest.js';

export type FailMode = 'closed' | 'observe';

/** The shape of `/opt/bulkhead/config.json`. Every field is optional. */
export interface LayerConfig {
  controlUrl?: string;
  /** Public keys (PEM or base64 SPKI). */
  trustedKeys?: string[];
  failMode?: FailMode;
  /** File name (relative to the config) of a signed envelope used when the control API cannot be reached. */
  fallbackBundle?: string;
  fetchTimeoutMs?: number;
  /** Extra identity attributes, `k=v,k=v` (like BULKHEAD_WORKLOAD). */
  workload?: string;
}

export interface ExtensionConfig {
  controlUrl: string | undefined;
  /** Secret: never logged. */
  token: string | undefined;
  /**
   * BULKHEAD_TOKEN_SECRET: the ARN of a Secrets Manager secret or SSM SecureString parameter holding the
   * token, fetched at init with the function's credentials. Only when BULKHEAD_TOKEN is not set (it wins).
   */
  tokenSecret: string | undefined;
  trustedKeys: TrustedKey[];
  failMode: FailMode;
  /** The baked fallback envelope's text, if the layer has one. */
  fallbackEnvelope: string | undefined;
  fetchTimeoutMs: number;
  stateDir: string;
  workloadText: string | undefined;
  /** Subscribe to the platform's `runtimeDone`: the backstop when the shim never says done (BULKHEAD_WAIT_RUNTIME_DONE=0 turns it off). */
  waitForRuntimeDone: boolean;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const DEFAULT_FETCH_TIMEOUT_MS = 2_000;
const MAX_FETCH_TIMEOUT_MS = 8_000;

function readLayerConfig(file: string): LayerConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConfigError(`${file}: cannot read (${(error as NodeJS.ErrnoException).code})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ConfigError(`${file}: not valid JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new ConfigError(`${file}: must hold a JSON object`);
  return parsed as LayerConfig;
}

function positiveInteger(value: unknown, name: string, fallback: number, max: number): number {
  if (value === undefined || value === '') return fallback;
  const number = typeof value === 'string' ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number) || number < 0 || number > max)
    throw new ConfigError(`${name} must be an integer between 0 and ${max}`);
  return number;
}

/**
 * Resolves the configuration. `layerDir` is the folder holding `extension.cjs` and `config.json`
 * (`/opt/bulkhead` on Lambda). Throws ConfigError with a message safe to log.
 */
export function loadExtensionConfig(env: NodeJS.ProcessEnv, layerDir: string): ExtensionConfig {
  const configFile = join(layerDir, 'config.json');
  const layer = readLayerConfig(configFile);

  const failModeText = env.BULKHEAD_FAIL_MODE ?? layer.failMode ?? 'closed';
  if (failModeText !== 'closed' && failModeText !== 'observe')
    throw new ConfigError(
      `BULKHEAD_FAIL_MODE must be closed or observe, got ${JSON.stringify(failModeText)}`,
    );

  const keySpecs: string[] = [];
  if (env.BULKHEAD_TRUSTED_KEYS) keySpecs.push(env.BULKHEAD_TRUSTED_KEYS);
  else if (Array.isArray(layer.trustedKeys)) {
    for (const key of layer.trustedKeys) if (typeof key === 'string') keySpecs.push(key);
  }
  let trustedKeys: TrustedKey[] = [];
  if (keySpecs.length > 0) {
    try {
      trustedKeys = loadTrustedKeys(keySpecs);
    } catch (error) {
      throw new ConfigError(`trusted keys: ${(error as Error).message}`);
    }
  }

  let fallbackEnvelope: string | undefined;
  if (typeof layer.fallbackBundle === 'string' && layer.fallbackBundle !== '') {
    const file = isAbsolute(layer.fallbackBundle)
      ? layer.fallbackBundle
      : join(layerDir, layer.fallbackBundle);
    try {
      fallbackEnvelope = readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError(
        `fallback bundle ${file}: cannot read (${(error as NodeJS.ErrnoException).code})`,
      );
    }
  }

  const controlUrl = env.BULKHEAD_CONTROL_URL || layer.controlUrl || undefined;
  if (controlUrl !== undefined) {
    let url: URL;
    try {
      url = new URL(controlUrl);
    } catch {
      throw new ConfigError('BULKHEAD_CONTROL_URL is not a URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new ConfigError('BULKHEAD_CONTROL_URL must be http(s)');
    if (url.username || url.password)
      throw new ConfigError('BULKHEAD_CONTROL_URL must not carry credentials');
  }
  const token = env.BULKHEAD_TOKEN || undefined;
  if (token !== undefined && /[\r\n]/.test(token)) throw new ConfigError('BULKHEAD_TOKEN must be one line');
  let tokenSecret: string | undefined;
  if (token === undefined && env.BULKHEAD_TOKEN_SECRET) {
    try {
      tokenSecret = parseTokenSecretArn(env.BULKHEAD_TOKEN_SECRET).arn;
    } catch (error) {
      throw new ConfigError(`BULKHEAD_TOKEN_SECRET: ${(error as Error).message}`);
    }
  }
  try {
    attestKind(env);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }

  return {
    controlUrl,
    token,
    tokenSecret,
    trustedKeys,
    failMode: failModeText,
    fallbackEnvelope,
    fetchTimeoutMs: positiveInteger(
      env.BULKHEAD_FETCH_TIMEOUT_MS ?? layer.fetchTimeoutMs,
      'BULKHEAD_FETCH_TIMEOUT_MS',
      DEFAULT_FETCH_TIMEOUT_MS,
      MAX_FETCH_TIMEOUT_MS,
    ),
    stateDir: env.BULKHEAD_STATE_DIR || '/tmp/bulkhead',
    workloadText: env.BULKHEAD_WORKLOAD || layer.workload || undefined,
    waitForRuntimeDone: env.BULKHEAD_WAIT_RUNTIME_DONE !== '0',
  };
}
