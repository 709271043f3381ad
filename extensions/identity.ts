// The workload identity the extension asks the control API for. It mirrors what the shim
// derives inside the runtime, from what an extension can see (§8.2: no AWS_EXECUTION_ENV, but
// the same Node binary as the runtime, and the account id from Register).
import { parseIdentity } from '../policy/identity.js';
import type { WorkloadIdentity } from '../policy/types.js';

export function lambdaIdentity(
  env: NodeJS.ProcessEnv,
  extra: { accountId?: string | undefined; workloadText?: string | undefined } = {},
): WorkloadIdentity {
  const identity: Record<string, string> = {};
  if (extra.workloadText) Object.assign(identity, parseIdentity(extra.workloadText));
  const major = process.versions.node.split('.')[0] ?? '20';
  const platform: Record<string, string | undefined> = {
    cloud: 'aws',
    account: extra.accountId,
    region: env.AWS_REGION,
    name: env.AWS_LAMBDA_FUNCTION_NAME,
    runtime: env.AWS_EXECUTION_ENV?.replace(/^AWS_Lambda_/, '') ?? `nodejs${major}.x`,
  };
  for (const [key, value] of Object.entries(platform)) if (value) identity[key] = value;
  return identity;
}
