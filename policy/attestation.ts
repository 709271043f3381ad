// Wire format of attested workload identity (contract §4a): what a workload sends to
// `POST /v1/attest` to prove which function it is, and what the control API answers. Types and
// constants only, no dependencies: the shims, the Lambda extension and the control API import it.

/** The clouds whose workload identity the control API can verify. */
export type AttestationKind = 'aws' | 'gcp' | 'azure';

export const ATTESTATION_KINDS: readonly AttestationKind[] = ['aws', 'gcp', 'azure'];

/**
 * An `sts:GetCallerIdentity` request signed (SigV4, `Authorization` header) with the function's
 * own role credentials, sent to the control API instead of to STS (the way Vault's AWS IAM auth
 * works). The control API sends it to its configured STS endpoint — never to the URL given here,
 * which only has to name the same host — and STS's answer names the caller.
 *
 * `headers` must include `host`, `x-amz-date`, `authorization`, `x-amz-security-token` (role
 * credentials are temporary) and AWS_SERVER_ID_HEADER, and that header must be among the signed
 * ones: its value is the control API's audience, so a proof made for one service cannot be
 * replayed at another.
 */
export interface AwsProof {
  type: 'aws';
  request: {
    method: 'POST';
    url: string;
    headers: Record<string, string>;
    /** Exactly `Action=GetCallerIdentity&Version=2011-06-15`. */
    body: string;
  };
}

/** A Google identity token (JWT) from the metadata server, its audience the control API's. */
export interface GcpProof {
  type: 'gcp';
  token: string;
}

/** A managed-identity access token (JWT) from Microsoft Entra ID, its audience the control API's. */
export interface AzureProof {
  type: 'azure';
  token: string;
}

export type AttestationProof = AwsProof | GcpProof | AzureProof;

/** The identity attribute that marks an attested identity, its value the cloud that vouched. */
export const ATTESTED_ATTRIBUTE = 'attested';

/** The attributes a proof of each kind vouches for (besides ATTESTED_ATTRIBUTE). */
export const ATTESTABLE_ATTRIBUTES: Readonly<Record<AttestationKind, readonly string[]>> = {
  aws: ['cloud', 'account', 'role', 'name'],
  gcp: ['cloud', 'account', 'serviceAccount'],
  azure: ['cloud', 'tenant', 'principal', 'account', 'name'],
};

/**
 * Attributes only an attestation tells: a workload cannot know them of itself, so a SmartGroup that
 * selects on one is not held against the workload when it checks a bundle's scope (like the AWS
 * account inside Lambda). The control API, which knows them, decided the scope.
 */
export const ATTESTED_ONLY_ATTRIBUTES: readonly string[] = [
  ATTESTED_ATTRIBUTE,
  'role',
  'serviceAccount',
  'principal',
  'tenant',
];

/** Header whose signed value names the control API an AWS proof was made for. */
export const AWS_SERVER_ID_HEADER = 'x-bulkhead-server-id';

/** The body of every AWS proof. */
export const GET_CALLER_IDENTITY_BODY = 'Action=GetCallerIdentity&Version=2011-06-15';

/** `POST /v1/attest` body. */
export interface AttestRequest {
  /** The identity the workload claims (`k=v,…`); attested attributes must agree with it. */
  workload?: string;
  proof: AttestationProof;
}

/**
 * Who a verified proof says the caller is.
 *
 * `attributes` are the identity attributes the proof vouches for; the control API merges them
 * over the claimed identity (a claimed attribute that disagrees is refused) and adds
 * `attested=<kind>`:
 * - aws: `cloud=aws`, `account`, `role` (the role name), `name` (the role session name, which
 *   Lambda sets to the function name);
 * - gcp: `cloud=gcp`, `account` (the project of a `…@PROJECT.iam.gserviceaccount.com` service
 *   account, when it is one), `serviceAccount` (the token's verified email);
 * - azure: `cloud=azure`, `tenant`, `principal` (the identity's object id), and from the
 *   managed identity's resource id when it is a function app: `account` (subscription), `name` (site).
 */
export interface AttestedPrincipal {
  kind: AttestationKind;
  /** The principal as the cloud names it: the assumed-role ARN, the service account, the object id. */
  principal: string;
  attributes: Record<string, string>;
}

/** `POST /v1/attest` answer (200). */
export interface AttestAnswer {
  /** A session token (`bhk_…`) pinned to `identity`: use it instead of the workload token. */
  token: string;
  id: string;
  expiresAt: string;
  /** The identity bundles and records are now bound to (canonical `k=v,…`). */
  identity: string;
  attested: AttestedPrincipal;
}
