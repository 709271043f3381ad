// Which credentials a process sends to the control API (BULKHEAD_ATTEST): the workload token
// alone, or sessions for proofs of the platform identity — a SigV4-signed sts:GetCallerIdentity
// on AWS (signed here, no network), a metadata-server identity token on GCP, a managed-identity
// token on Azure. One function for the extension, the wrappers and the control link.
import type { AttestationKind, AttestationProof } from '../../../policy/attestation.js';
import type { WorkloadIdentity } from '../../../policy/types.js';
import { awsProof } from './attest-aws.js';
import { attestAudience, attestKind, type Env } from './attest-env.js';
import { azureProof, gcpProof } from './attest-jwt.js';
import { attestedCredentials } from './attested-credentials.js';
import { type ControlCredentials, tokenCredentials } from './credentials.js';

export { attestAudience, attestKind } from './attest-env.js';

/** A fresh proof of this process's identity on `kind`'s platform. */
export async function makeProof(
  kind: AttestationKind,
  options: { audience: string; env: Env; timeoutMs: number },
): Promise<AttestationProof> {
  const env = options.env as NodeJS.ProcessEnv;
  switch (kind) {
    case 'aws':
      return awsProof({ audience: options.audience, env });
    case 'gcp':
      return gcpProof({ audience: options.audience, env, timeoutMs: options.timeoutMs });
    case 'azure':
      return azureProof({ audience: options.audience, env, timeoutMs: options.timeoutMs });
  }
}

export interface CredentialsOptions {
  env: Env;
  controlUrl: string;
  token: string;
  workload: WorkloadIdentity;
  timeoutMs: number;
  log?: ((level: 'info' | 'warn', message: string) => void) | undefined;
  /** Where proofs come from (default makeProof in this process; the wrappers make GCP and Azure proofs in a thread the hooks do not govern). */
  proof?: ((kind: AttestationKind, audience: string) => Promise<AttestationProof>) | undefined;
}

/** The workload token, or attesting credentials when BULKHEAD_ATTEST names a platform. */
export function controlCredentials(options: CredentialsOptions): ControlCredentials {
  const kind = attestKind(options.env);
  if (!kind) return tokenCredentials(options.token, options.workload);
  const audience = attestAudience(options.env, options.controlUrl);
  const prove =
    options.proof ??
    ((proofKind: AttestationKind, proofAudience: string) =>
      makeProof(proofKind, { audience: proofAudience, env: options.env, timeoutMs: options.timeoutMs }));
  return attestedCredentials({
    controlUrl: options.controlUrl,
    token: options.token,
    workload: options.workload,
    timeoutMs: options.timeoutMs,
    log: options.log,
    proof: () => prove(kind, audience),
  });
}
