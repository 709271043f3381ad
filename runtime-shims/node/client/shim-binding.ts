// Binds the in-process controller to the process-wide shim core and its platform identity detection.
// Kept in one file so the Azure and GCP wrappers share it.
import type { WorkloadIdentity } from '../../../policy/types.js';
import { detectIdentity } from '../identity.js';
import { flush, install, reload, runInInvocation, status } from '../index.js';
import type { InProcessShim } from './in-process.js';

/**
 * Without an extension the deny records go straight to the control API: when only
 * BULKHEAD_CONTROL_URL is set, BULKHEAD_REPORT defaults to its `/v1/reports`.
 */
export function withReportDefault(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (env.BULKHEAD_REPORT || !env.BULKHEAD_CONTROL_URL) return env;
  return { ...env, BULKHEAD_REPORT: `${env.BULKHEAD_CONTROL_URL.replace(/\/+$/, '')}/v1/reports` };
}

/** The process-wide shim (installed by the preload already, or by the first wrapper that asks). */
export function platformShim(env: NodeJS.ProcessEnv = process.env): InProcessShim {
  return {
    install: () => install({ env: withReportDefault(env) }),
    reload: (envelopeText) => reload(envelopeText),
    flush: () => flush(),
    runInInvocation: (invocationId, fn) => runInInvocation(invocationId, fn),
    status: () => {
      const now = status();
      return { revision: now.revision >= 0 ? now.revision : undefined, bundleSource: now.bundleSource };
    },
  };
}

/** Whether enforcement is already on in this process (the preload, or another wrapper). */
export function shimInstalled(): boolean {
  return status().installed;
}

/** The identity this process fetches bundles for, from the platform's environment. */
export function platformWorkload(env: NodeJS.ProcessEnv): WorkloadIdentity {
  return detectIdentity(env);
}
