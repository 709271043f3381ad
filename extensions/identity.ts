// The workload identity the extension asks the control API for: the shim's own detection
// (runtime-shims/node/identity.ts), from what an extension sees (§8.2: no AWS_EXECUTION_ENV, but the
// same Node binary as the runtime), plus the account id Register returns.
import type { WorkloadIdentity } from '../policy/types.js';
import { detectIdentity } from '../runtime-shims/node/identity.js';

export function lambdaIdentity(
  env: NodeJS.ProcessEnv,
  extra: { accountId?: string | undefined; workloadText?: string | undefined } = {},
): WorkloadIdentity {
  const detected = detectIdentity(
    extra.workloadText && !env.BULKHEAD_WORKLOAD ? { ...env, BULKHEAD_WORKLOAD: extra.workloadText } : env,
  );
  // The account is a platform fact: it wins over what BULKHEAD_WORKLOAD says, as in detectIdentity.
  return extra.accountId ? Object.freeze({ ...detected, account: extra.accountId }) : detected;
}
