// Configuration and result of proof verification (POST /v1/attest). One verifier per cloud
// (./aws.ts, ./jwt.ts), chosen by the proof's `type` in ./index.ts.
import type { AttestationKind, AttestedPrincipal } from '../../policy/attestation.js';

export interface AwsAttestationConfig {
  /** Where proofs are sent to be answered (default https://sts.amazonaws.com). Proofs must be signed for its host. */
  stsEndpoint: string;
  /** Accounts whose roles may attest; absent = any account. */
  accounts?: string[] | undefined;
  /** How far a proof's X-Amz-Date may be from the server's clock (default 900 s, as STS allows). */
  maxSkewSeconds?: number | undefined;
}

export interface JwtIssuerConfig {
  /** Accepted `iss` values. */
  issuers: string[];
  /** The issuer's JSON Web Key Set. */
  jwksUri: string;
}

export interface GcpAttestationConfig extends JwtIssuerConfig {
  /** Projects whose service accounts may attest; absent = any. */
  projects?: string[] | undefined;
}

export interface AzureAttestationConfig extends JwtIssuerConfig {
  /** Entra tenants (`tid`) whose managed identities may attest. Required: any tenant can mint tokens. */
  tenants: string[];
}

export interface AttestationConfig {
  /**
   * What every proof must name as its audience: the value of the signed AWS_SERVER_ID_HEADER, the
   * `aud` of GCP and Azure tokens. Conventionally the control API's public URL (what clients
   * default to).
   */
  audience: string;
  aws?: AwsAttestationConfig | undefined;
  gcp?: GcpAttestationConfig | undefined;
  azure?: AzureAttestationConfig | undefined;
  /** Lifetime of the session token an attestation returns (default 3600). */
  sessionTtlSeconds?: number | undefined;
  /** Refuse bundle fetches and reports from workload tokens that are not attested sessions. */
  require?: boolean | undefined;
}

export type VerifyOutcome =
  | { ok: true; attested: AttestedPrincipal }
  /**
   * 400 malformed proof; 401 a proof that does not verify (bad signature, expired, wrong audience or
   * issuer); 403 verified but not allowed (account, project or tenant not listed); 502 the issuer
   * (STS, JWKS) answered something unusable; 503 the issuer could not be reached. `error` is safe to
   * return to the client and to log: it never holds the proof.
   */
  | { ok: false; status: 400 | 401 | 403 | 502 | 503; error: string };

/** Verifies proofs of one kind. */
export interface ProofVerifier {
  readonly kind: AttestationKind;
  verify(proof: unknown): Promise<VerifyOutcome>;
}
