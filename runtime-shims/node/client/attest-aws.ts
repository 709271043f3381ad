// The AWS proof of identity (policy/attestation.ts, AwsProof): an `sts:GetCallerIdentity` request
// signed with the function's own role credentials, handed to the control API instead of to STS. The
// control API sends it on to its STS endpoint, and STS's answer names the caller (the way Vault's
// AWS IAM auth works). The proof holds a signature and the session token, never the secret key.
// node: built-ins only: the Lambda extension bundles it.
import {
  AWS_SERVER_ID_HEADER,
  type AwsProof,
  GET_CALLER_IDENTITY_BODY,
} from '../../../policy/attestation.js';
import { AwsCredentialsError, credentialsFromEnv, signRequest } from '../aws/sigv4.js';

/** Where a proof is addressed when AWS_ENDPOINT_URL_STS is not set (and what the control API asks by default). */
export const DEFAULT_STS_ENDPOINT = 'https://sts.amazonaws.com';
/** The global endpoint's signing region. */
const GLOBAL_STS_REGION = 'us-east-1';
const STS_CONTENT_TYPE = 'application/x-www-form-urlencoded; charset=utf-8';

export interface AwsProofOptions {
  /** The control API's audience (its AttestationConfig.audience), signed as AWS_SERVER_ID_HEADER. */
  audience: string;
  /** AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; AWS_ENDPOINT_URL_STS, AWS_REGION. */
  env: NodeJS.ProcessEnv;
  /** Signing instant (default now). */
  now?: Date | undefined;
}

export interface StsTarget {
  url: URL;
  region: string;
}

/**
 * The STS endpoint a proof is signed for: AWS_ENDPOINT_URL_STS (the SDKs' variable) else the global
 * endpoint. Its signing region: us-east-1 for the global endpoint, the host's for a regional one
 * (`sts.<region>.amazonaws.com`, FIPS and VPC endpoint names too), else AWS_REGION.
 */
export function stsTarget(env: NodeJS.ProcessEnv): StsTarget {
  const text = env.AWS_ENDPOINT_URL_STS || DEFAULT_STS_ENDPOINT;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new AwsCredentialsError('AWS_ENDPOINT_URL_STS is not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new AwsCredentialsError('AWS_ENDPOINT_URL_STS must be an http(s) URL');
  if (url.username || url.password || url.search || url.hash)
    throw new AwsCredentialsError('AWS_ENDPOINT_URL_STS must not carry credentials, a query or a fragment');
  const host = url.hostname;
  const regional =
    /^sts(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/.exec(host) ??
    /\.sts\.([a-z0-9-]+)\.vpce\.amazonaws\.com(?:\.cn)?$/.exec(host);
  const region =
    host === 'sts.amazonaws.com'
      ? GLOBAL_STS_REGION
      : (regional?.[1] ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION || GLOBAL_STS_REGION));
  return { url, region };
}

/**
 * Builds the proof: POST GET_CALLER_IDENTITY_BODY to the STS endpoint, with host, content-type,
 * x-amz-date, x-amz-security-token and AWS_SERVER_ID_HEADER (= `audience`) all signed. Throws
 * AwsCredentialsError naming what is missing or malformed (never a secret).
 */
export function awsProof(options: AwsProofOptions): AwsProof {
  const { audience, env } = options;
  if (typeof audience !== 'string' || !/^[\x21-\x7e]{1,1024}$/.test(audience))
    throw new AwsCredentialsError('the audience must be 1 to 1024 printable characters without spaces');
  // Only role sessions attest, and their credentials always have a session token.
  const credentials = credentialsFromEnv(env, { requireSessionToken: true });
  const { url, region } = stsTarget(env);
  const signed = signRequest(
    {
      method: 'POST',
      url,
      headers: { 'content-type': STS_CONTENT_TYPE, [AWS_SERVER_ID_HEADER]: audience },
      body: GET_CALLER_IDENTITY_BODY,
    },
    { credentials, region, service: 'sts', date: options.now },
  );
  return {
    type: 'aws',
    request: { method: 'POST', url: url.href, headers: signed.headers, body: GET_CALLER_IDENTITY_BODY },
  };
}
