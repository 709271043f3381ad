// Workload identity from the platform's own environment, so the same shim (and the same policy)
// works on Lambda, Azure Functions, Google Cloud functions and plain Node hosts. Used by the shim
// and by every platform wrapper; no I/O.
import { parseIdentity } from '../../policy/identity.js';
import type { WorkloadIdentity } from '../../policy/types.js';

type Env = Readonly<Record<string, string | undefined>>;

/** `k=v,…` (the BULKHEAD_WORKLOAD text form) → `tag.k = v`; a malformed list is ignored with no tags. */
function tagsFrom(text: string | undefined, into: Record<string, string>): void {
  if (!text) return;
  let parsed: WorkloadIdentity;
  try {
    parsed = parseIdentity(text);
  } catch {
    return;
  }
  for (const [key, value] of Object.entries(parsed)) into[`tag.${key}`] = value;
}

function nodeRuntime(): string {
  const major = process.versions.node.split('.')[0] ?? '20';
  return `nodejs${major}`;
}

function setIf(into: Record<string, string>, key: string, value: string | undefined): void {
  if (value !== undefined && value !== '') into[key] = value;
}

/**
 * The identity this process runs as. Platform facts (AWS, Azure, GCP) override what
 * `BULKHEAD_WORKLOAD` says, which only fills in what the platform does not tell (the AWS account,
 * for example). Tags come from `BULKHEAD_TAGS` (`k=v,…`), which `bulkhead attach` sets from the
 * function's tags. Never throws: a malformed `BULKHEAD_WORKLOAD` is ignored (the caller logs it).
 */
export function detectIdentity(env: Env = process.env): WorkloadIdentity {
  const identity: Record<string, string> = {};
  if (env.BULKHEAD_WORKLOAD) {
    try {
      Object.assign(identity, parseIdentity(env.BULKHEAD_WORKLOAD));
    } catch {
      // Reported by the shim's configuration check; identity falls back to the platform's facts.
    }
  }
  const platform: Record<string, string> = {};
  if (env.AWS_LAMBDA_FUNCTION_NAME) {
    platform.cloud = 'aws';
    setIf(platform, 'region', env.AWS_REGION ?? env.AWS_DEFAULT_REGION);
    platform.name = env.AWS_LAMBDA_FUNCTION_NAME;
    platform.runtime = env.AWS_EXECUTION_ENV?.startsWith('AWS_Lambda_')
      ? env.AWS_EXECUTION_ENV.slice('AWS_Lambda_'.length)
      : `${nodeRuntime()}.x`;
    setIf(platform, 'version', env.AWS_LAMBDA_FUNCTION_VERSION);
  } else if (env.WEBSITE_SITE_NAME) {
    platform.cloud = 'azure';
    setIf(platform, 'region', env.REGION_NAME);
    platform.name = env.WEBSITE_SITE_NAME;
    platform.runtime = nodeRuntime();
    // WEBSITE_OWNER_NAME is `<subscription id>+<resource group>-<region>webspace`.
    const owner = env.WEBSITE_OWNER_NAME;
    if (owner) setIf(platform, 'account', owner.split('+')[0]);
  } else if (env.K_SERVICE || env.FUNCTION_TARGET) {
    platform.cloud = 'gcp';
    setIf(platform, 'account', env.GOOGLE_CLOUD_PROJECT ?? env.GCLOUD_PROJECT ?? env.GCP_PROJECT);
    setIf(platform, 'region', env.FUNCTION_REGION ?? env.GOOGLE_CLOUD_REGION);
    setIf(platform, 'name', env.K_SERVICE ?? env.FUNCTION_TARGET);
    setIf(platform, 'revision', env.K_REVISION);
    setIf(platform, 'function', env.FUNCTION_TARGET);
    platform.runtime = nodeRuntime();
  }
  Object.assign(identity, platform);
  identity.cloud ??= 'other';
  tagsFrom(env.BULKHEAD_TAGS, identity);
  return Object.freeze(identity);
}
