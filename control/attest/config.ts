// The attestation configuration file of `bulkhead control serve --attestation FILE` (JSON), checked
// whole before the server starts: a mistake names the file and the field, and nothing half-works.
import { readFileSync } from 'node:fs';
import { AZURE_JWKS_URI, azureIssuers, GOOGLE_ISSUERS, GOOGLE_JWKS_URI } from './jwt.js';
import type { AttestationConfig } from './types.js';

export class AttestationConfigError extends Error {
  override readonly name = 'AttestationConfigError';
}

export const DEFAULT_STS_ENDPOINT = 'https://sts.amazonaws.com';

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses and checks the file's text; `file` only names it in errors. */
export function parseAttestationConfig(text: string, file: string): AttestationConfig {
  const fail = (field: string, problem: string): never => {
    throw new AttestationConfigError(`${file}: ${field}: ${problem}`);
  };
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch (error) {
    throw new AttestationConfigError(`${file}: not valid JSON (${(error as Error).message})`);
  }
  if (!isObject(input)) return fail('(top)', 'expected an object');
  const known = new Set(['audience', 'aws', 'gcp', 'azure', 'sessionTtlSeconds', 'require']);
  for (const key of Object.keys(input)) if (!known.has(key)) fail(key, 'unknown field');

  const url = (value: unknown, field: string, httpsOnly: boolean): string => {
    if (typeof value !== 'string') return fail(field, 'expected a URL');
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      return fail(field, `not a URL: ${JSON.stringify(value)}`);
    }
    const loopback = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(parsed.hostname);
    if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && (loopback || !httpsOnly)))
      fail(field, 'must be https (http only on loopback, for stand-ins)');
    return value;
  };
  const strings = (value: unknown, field: string, pattern: RegExp, what: string): string[] => {
    if (!Array.isArray(value) || value.length === 0)
      return fail(field, `expected a non-empty list of ${what}`);
    for (const item of value)
      if (typeof item !== 'string' || !pattern.test(item))
        fail(field, `${JSON.stringify(item)} is not ${what}`);
    return value as string[];
  };
  const only = (section: Json, name: string, fields: string[]) => {
    for (const key of Object.keys(section))
      if (!fields.includes(key)) fail(`${name}.${key}`, 'unknown field');
  };

  if (typeof input.audience !== 'string' || input.audience.length === 0 || input.audience.length > 512)
    fail(
      'audience',
      "expected the control API's public URL (what workloads name as the audience of their proofs)",
    );
  const config: AttestationConfig = { audience: input.audience as string };

  if (input.aws !== undefined) {
    if (!isObject(input.aws)) return fail('aws', 'expected an object');
    only(input.aws, 'aws', ['stsEndpoint', 'accounts', 'maxSkewSeconds']);
    config.aws = {
      stsEndpoint: url(input.aws.stsEndpoint ?? DEFAULT_STS_ENDPOINT, 'aws.stsEndpoint', true),
      accounts:
        input.aws.accounts === undefined
          ? undefined
          : strings(input.aws.accounts, 'aws.accounts', /^\d{12}$/, 'a 12-digit account id'),
    };
    const skew = input.aws.maxSkewSeconds;
    if (skew !== undefined) {
      if (typeof skew !== 'number' || !Number.isInteger(skew) || skew < 1 || skew > 900)
        fail('aws.maxSkewSeconds', 'expected an integer from 1 to 900');
      config.aws.maxSkewSeconds = skew as number;
    }
  }
  if (input.gcp !== undefined) {
    if (!isObject(input.gcp)) return fail('gcp', 'expected an object');
    only(input.gcp, 'gcp', ['issuers', 'jwksUri', 'projects']);
    config.gcp = {
      issuers:
        input.gcp.issuers === undefined
          ? [...GOOGLE_ISSUERS]
          : strings(input.gcp.issuers, 'gcp.issuers', /^\S{1,512}$/, 'an issuer'),
      jwksUri: url(input.gcp.jwksUri ?? GOOGLE_JWKS_URI, 'gcp.jwksUri', true),
      projects:
        input.gcp.projects === undefined
          ? undefined
          : strings(input.gcp.projects, 'gcp.projects', /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/, 'a project id'),
    };
  }
  if (input.azure !== undefined) {
    if (!isObject(input.azure)) return fail('azure', 'expected an object');
    only(input.azure, 'azure', ['issuers', 'jwksUri', 'tenants']);
    // Any tenant can mint tokens for any audience it likes: the tenants are what makes them ours.
    const tenants = strings(
      input.azure.tenants,
      'azure.tenants',
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i,
      'a tenant id (GUID)',
    );
    config.azure = {
      tenants,
      issuers:
        input.azure.issuers === undefined
          ? azureIssuers(tenants)
          : strings(input.azure.issuers, 'azure.issuers', /^\S{1,512}$/, 'an issuer'),
      jwksUri: url(input.azure.jwksUri ?? AZURE_JWKS_URI, 'azure.jwksUri', true),
    };
  }
  if (!config.aws && !config.gcp && !config.azure) fail('(top)', 'name at least one of aws, gcp, azure');
  if (input.sessionTtlSeconds !== undefined) {
    const ttl = input.sessionTtlSeconds;
    if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 300 || ttl > 43_200)
      fail('sessionTtlSeconds', 'expected an integer from 300 to 43200');
    config.sessionTtlSeconds = ttl as number;
  }
  if (input.require !== undefined) {
    if (typeof input.require !== 'boolean') fail('require', 'expected true or false');
    config.require = input.require as boolean;
  }
  return config;
}

export function loadAttestationConfig(file: string): AttestationConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new AttestationConfigError(`${file}: cannot read (${(error as NodeJS.ErrnoException).code})`);
  }
  return parseAttestationConfig(text, file);
}
