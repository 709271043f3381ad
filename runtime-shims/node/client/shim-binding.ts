// What the Azure and GCP wrappers share about the process-wide shim core: whether it is installed
// and the identity the platform's environment gives.
import type { WorkloadIdentity } from '../../../policy/types.js';
import { detectIdentity } from '../identity.js';
import { status } from '../index.js';

/** Whether enforcement is already on in this process (the preload, or another wrapper). */
export function shimInstalled(): boolean {
  return status().installed;
}

/** The identity this process fetches bundles for, from the platform's environment. */
export function platformWorkload(env: NodeJS.ProcessEnv): WorkloadIdentity {
  return detectIdentity(env);
}
