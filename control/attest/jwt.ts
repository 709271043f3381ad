// Verifiers of the JWT proofs (POST /v1/attest): a Google identity token from the metadata server
// (GCP) and a managed-identity access token from Microsoft Entra ID (Azure). Both are RS256 JWTs
// checked with jose against the issuer's JSON Web Key Set (fetched, cached, refetched when a token
// names a key it does not hold), its issuer, the control API's audience and their expiry.
//
// The proof is untrusted: its shape is checked before anything else, nothing of it is ever echoed
// in an error, and every failure is an outcome, never an exception (VerifyOutcome's statuses).
import { createRemoteJWKSet, customFetch, errors, type JWTPayload, jwtVerify } from 'jose';
import type { AttestationKind, AttestedPrincipal } from '../../policy/attestation.js';
import type { AzureAttestationConfig, GcpAttestationConfig, ProofVerifier, VerifyOutcome } from './types.js';

/** `iss` of Google identity tokens (Google's libraries accept both forms). */
export const GOOGLE_ISSUERS: readonly string[] = Object.freeze([
  'https://accounts.google.com',
  'accounts.google.com',
]);
/** Google's OAuth 2.0 signing keys as a JWK set. */
export const GOOGLE_JWKS_URI = 'https://www.googleapis.com/oauth2/v3/certs';
/** Microsoft Entra ID's signing keys (the same keys sign v1.0 and v2.0 tokens). */
export const AZURE_JWKS_URI = 'https://login.microsoftonline.com/common/discovery/v2.0/keys';

/** Longest token accepted (characters); real ones are 1–3 KiB. */
export const MAX_TOKEN_LENGTH = 16 * 1024;
/** Allowed clock difference with the issuer for `exp`, `nbf` and `iat`. */
export const CLOCK_TOLERANCE_SECONDS = 60;
/** The only signature algorithm accepted: what both issuers sign with. */
export const JWT_ALGORITHMS: readonly string[] = Object.freeze(['RS256']);

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** `NAME@PROJECT.iam.gserviceaccount.com`, a user-managed service account of PROJECT. */
const SERVICE_ACCOUNT = /^[a-z0-9][a-z0-9-]{0,62}@([a-z][a-z0-9-]{4,28}[a-z0-9])\.iam\.gserviceaccount\.com$/;
/** A function app's (or one of its slots') resource id: `xms_mirid` of its system-assigned identity. */
const FUNCTION_APP =
  /^\/subscriptions\/([^/]+)\/resourcegroups\/[^/]+\/providers\/microsoft\.web\/sites\/([^/]+)(?:\/slots\/[^/]+)?$/i;
const SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,59}$/;

/** The `iss` values of a tenant's tokens: v1.0 (`sts.windows.net`) and v2.0 (`login.microsoftonline.com`). */
export function azureIssuers(tenants: readonly string[]): string[] {
  return tenants.flatMap((tenant) => [
    `https://sts.windows.net/${tenant}/`,
    `https://login.microsoftonline.com/${tenant}/v2.0`,
  ]);
}

/** Tuning of the key set fetch and the clock (the defaults suit production). */
export interface JwtVerifierOptions {
  /** Bound on one JWKS request (ms). Default 5000. */
  jwksTimeoutMs?: number | undefined;
  /** After a JWKS fetch, how long a token naming an unknown key fails without another fetch (ms). Default 30000. */
  jwksCooldownMs?: number | undefined;
  /** How long a fetched JWKS is used before it is fetched again (ms). Default 600000. */
  jwksMaxAgeMs?: number | undefined;
  /** Largest JWKS answer accepted (bytes). Default 256 KiB. */
  maxJwksBytes?: number | undefined;
  /** The clock tokens are judged by (tests). */
  now?: (() => Date) | undefined;
}

type Failure = Extract<VerifyOutcome, { ok: false }>;

function fail(status: Failure['status'], error: string): Failure {
  return { ok: false, status, error };
}

/** The JWKS could not be fetched (503) or its answer cannot be used (502). */
class JwksUnavailable extends Error {
  constructor(
    readonly detail: string,
    readonly status: 502 | 503,
  ) {
    super(detail);
  }
}

/** jose's fetch, with statuses and failures told apart and the answer's size bounded. */
function jwksFetch(maxBytes: number) {
  return async (
    url: string,
    options: { headers: Headers; method: 'GET'; redirect: 'manual'; signal: AbortSignal },
  ): Promise<Response> => {
    const failed = (error: unknown): JwksUnavailable => {
      if (options.signal.aborted || (error as Error | undefined)?.name === 'TimeoutError')
        return new JwksUnavailable('timed out', 503);
      const cause = (error as { cause?: { code?: unknown } } | undefined)?.cause?.code;
      return new JwksUnavailable(`unreachable${typeof cause === 'string' ? ` (${cause})` : ''}`, 503);
    };
    let response: Response;
    try {
      response = await fetch(url, options);
    } catch (error) {
      throw failed(error);
    }
    if (response.status !== 200) {
      await response.body?.cancel().catch(() => {});
      throw new JwksUnavailable(`answered HTTP ${response.status}`, 503);
    }
    const declared = Number(response.headers.get('content-length') ?? Number.NaN);
    if (declared > maxBytes) {
      await response.body?.cancel().catch(() => {});
      throw new JwksUnavailable(`answer is larger than ${maxBytes} bytes`, 502);
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      const reader = response.body?.getReader();
      while (reader) {
        const { done, value } = await reader.read();
        if (done) break;
        size += value.byteLength;
        if (size > maxBytes) {
          await reader.cancel().catch(() => {});
          throw new JwksUnavailable(`answer is larger than ${maxBytes} bytes`, 502);
        }
        chunks.push(value);
      }
    } catch (error) {
      throw error instanceof JwksUnavailable ? error : failed(error);
    }
    return new Response(Buffer.concat(chunks, size), {
      status: 200,
      headers: { 'content-type': 'application/json' },
    });
  };
}

function keySet(jwksUri: string, options: JwtVerifierOptions) {
  let url: URL;
  try {
    url = new URL(jwksUri);
  } catch {
    throw new TypeError(`attestation: jwksUri is not a URL: ${JSON.stringify(jwksUri.slice(0, 200))}`);
  }
  const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback))
    throw new TypeError('attestation: jwksUri must be https (http only on a loopback address)');
  return createRemoteJWKSet(url, {
    timeoutDuration: options.jwksTimeoutMs ?? 5000,
    cooldownDuration: options.jwksCooldownMs ?? 30_000,
    cacheMaxAge: options.jwksMaxAgeMs ?? 600_000,
    [customFetch]: jwksFetch(options.maxJwksBytes ?? 256 * 1024),
  });
}

/** The token of a proof of `kind`, or why the proof is malformed (400). */
function tokenOf(proof: unknown, kind: AttestationKind): string | Failure {
  if (typeof proof !== 'object' || proof === null || Array.isArray(proof))
    return fail(400, 'proof must be an object');
  const { type, token } = proof as { type?: unknown; token?: unknown };
  if (type !== kind) return fail(400, `proof type must be "${kind}"`);
  if (typeof token !== 'string') return fail(400, 'proof.token must be a string');
  if (token.length > MAX_TOKEN_LENGTH)
    return fail(400, `proof.token is longer than ${MAX_TOKEN_LENGTH} characters`);
  if (!JWT_SHAPE.test(token)) return fail(400, 'proof.token is not a JWT (three base64url parts)');
  return token;
}

const CLAIM_PROBLEMS: Record<string, string> = {
  aud: 'wrong audience',
  iss: 'wrong issuer',
  nbf: 'not valid yet',
  exp: 'no valid expiry',
  iat: 'invalid issue time',
};

/** What a jose failure means for the caller. Never holds any part of the token. */
function rejected(error: unknown): Failure {
  if (error instanceof JwksUnavailable) return fail(error.status, `the issuer's key set ${error.detail}`);
  if (error instanceof errors.JWKSTimeout) return fail(503, "the issuer's key set timed out");
  if (error instanceof errors.JWTExpired) return fail(401, `token expired (${error.code})`);
  if (error instanceof errors.JWTClaimValidationFailed) {
    const claim = /^[a-z_]{1,16}$/.test(error.claim) ? error.claim : 'claim';
    return fail(401, `${CLAIM_PROBLEMS[claim] ?? `invalid "${claim}" claim`} (${error.code})`);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return fail(401, `bad signature (${error.code})`);
  if (error instanceof errors.JOSEAlgNotAllowed)
    return fail(401, `signature algorithm not allowed, RS256 only (${error.code})`);
  if (error instanceof errors.JWKSNoMatchingKey)
    return fail(401, `signed by a key the issuer does not publish (${error.code})`);
  if (error instanceof errors.JWKSMultipleMatchingKeys)
    return fail(401, `the token's key id matches several keys (${error.code})`);
  if (error instanceof errors.JWKSInvalid || error instanceof errors.JWKInvalid)
    return fail(502, `the issuer's key set is not a usable JWK set (${error.code})`);
  if (error instanceof errors.JWSInvalid) return fail(400, `malformed token (${error.code})`);
  if (error instanceof errors.JWTInvalid) return fail(401, `invalid token (${error.code})`);
  if (error instanceof errors.JOSENotSupported) return fail(401, `unsupported token (${error.code})`);
  if (error instanceof errors.JOSEError)
    return fail(502, `the issuer's key set answer is unusable (${error.code})`);
  return fail(401, 'token did not verify');
}

interface JwtCheck {
  kind: AttestationKind;
  jwks: ReturnType<typeof createRemoteJWKSet>;
  issuers: string[];
  audience: string;
  now: (() => Date) | undefined;
  /** Claims of a verified token → the principal, or why it is refused (401/403). */
  principal(payload: JWTPayload): AttestedPrincipal | Failure;
}

function verifier(check: JwtCheck): ProofVerifier {
  return {
    kind: check.kind,
    async verify(proof: unknown): Promise<VerifyOutcome> {
      const token = tokenOf(proof, check.kind);
      if (typeof token !== 'string') return token;
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, check.jwks, {
          algorithms: [...JWT_ALGORITHMS],
          issuer: check.issuers,
          audience: check.audience,
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          requiredClaims: ['exp'],
          ...(check.now ? { currentDate: check.now() } : {}),
        }));
      } catch (error) {
        return rejected(error);
      }
      try {
        const principal = check.principal(payload);
        return 'ok' in principal ? principal : { ok: true, attested: principal };
      } catch {
        return fail(401, 'token claims could not be read');
      }
    },
  };
}

function requireAudience(audience: string): void {
  if (typeof audience !== 'string' || audience === '')
    throw new TypeError('attestation: audience must be a non-empty string');
}

/**
 * Verifies Google identity tokens (`GcpProof`): RS256 against `config.jwksUri` (default
 * GOOGLE_JWKS_URI), `iss` one of `config.issuers` (default GOOGLE_ISSUERS), `aud` the audience,
 * `email_verified` true. The token's email is the principal; a `NAME@PROJECT.iam.gserviceaccount.com`
 * account's PROJECT is its `account`, which must be in `config.projects` when that is given.
 */
export function createGcpVerifier(
  config: GcpAttestationConfig,
  audience: string,
  options: JwtVerifierOptions = {},
): ProofVerifier {
  requireAudience(audience);
  const issuers = config.issuers.length > 0 ? [...config.issuers] : [...GOOGLE_ISSUERS];
  const projects = config.projects ? new Set(config.projects.map((p) => p.toLowerCase())) : undefined;
  return verifier({
    kind: 'gcp',
    jwks: keySet(config.jwksUri || GOOGLE_JWKS_URI, options),
    issuers,
    audience,
    now: options.now,
    principal(payload) {
      const email = payload.email;
      if (typeof email !== 'string' || email.length > 320 || !/^[^\s@]+@[^\s@]+$/.test(email))
        return fail(401, 'token has no email claim (ask the metadata server with format=full)');
      if (payload.email_verified !== true) return fail(401, "token's email is not verified");
      const serviceAccount = email.toLowerCase();
      const project = SERVICE_ACCOUNT.exec(serviceAccount)?.[1];
      if (projects && (project === undefined || !projects.has(project)))
        return fail(
          403,
          project === undefined
            ? `${serviceAccount} is not a project's service account (NAME@PROJECT.iam.gserviceaccount.com) and projects are restricted`
            : `project ${project} is not allowed to attest`,
        );
      const attributes: Record<string, string> = { cloud: 'gcp', serviceAccount };
      if (project !== undefined) attributes.account = project;
      return { kind: 'gcp', principal: serviceAccount, attributes };
    },
  });
}

/**
 * Verifies Entra ID managed-identity access tokens (`AzureProof`): RS256 against `config.jwksUri`
 * (default AZURE_JWKS_URI), `aud` the audience, `iss` one of `config.issuers` (default: the v1.0
 * and v2.0 issuers of `config.tenants`, and then the one of the token's own tenant), `tid` one of
 * `config.tenants` (403 otherwise), `oid` present. The object id is the principal; a function app's
 * resource id (`xms_mirid` of its system-assigned identity) adds its subscription and site name.
 */
export function createAzureVerifier(
  config: AzureAttestationConfig,
  audience: string,
  options: JwtVerifierOptions = {},
): ProofVerifier {
  requireAudience(audience);
  if (!Array.isArray(config.tenants) || config.tenants.length === 0)
    throw new TypeError(
      'attestation: azure.tenants must list at least one tenant (any tenant can mint tokens)',
    );
  const tenants = new Set(config.tenants.map((t) => t.toLowerCase()));
  const derived = config.issuers.length === 0;
  const issuers = derived ? azureIssuers([...tenants]) : [...config.issuers];
  return verifier({
    kind: 'azure',
    jwks: keySet(config.jwksUri || AZURE_JWKS_URI, options),
    issuers,
    audience,
    now: options.now,
    principal(payload) {
      const tid = typeof payload.tid === 'string' ? payload.tid.toLowerCase() : undefined;
      if (tid === undefined || !GUID.test(tid)) return fail(401, 'token has no tenant id (tid)');
      if (!tenants.has(tid)) return fail(403, `tenant ${tid} is not allowed to attest`);
      if (derived && !azureIssuers([tid]).includes(String(payload.iss).toLowerCase()))
        return fail(401, "wrong issuer for the token's tenant");
      const oid = typeof payload.oid === 'string' ? payload.oid.toLowerCase() : undefined;
      if (oid === undefined || !GUID.test(oid)) return fail(401, 'token has no object id (oid)');
      const attributes: Record<string, string> = { cloud: 'azure', tenant: tid, principal: oid };
      const app = typeof payload.xms_mirid === 'string' ? FUNCTION_APP.exec(payload.xms_mirid) : null;
      if (app && GUID.test(app[1] as string) && SITE_NAME.test(app[2] as string)) {
        attributes.account = (app[1] as string).toLowerCase();
        attributes.name = app[2] as string;
      }
      return { kind: 'azure', principal: oid, attributes };
    },
  });
}
