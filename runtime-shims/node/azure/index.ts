// `bulkhead/azure`: egress containment for an Azure Functions Node.js v4 app in one call.
//
//   import { app } from '@azure/functions';
//   import { setupBulkhead } from 'bulkhead/azure';
//   setupBulkhead(app);
//
// Enforcement is installed at once (or already was, by the `--require bulkhead/register` preload); the
// bundle is fetched at app start, refreshed before an invocation when stale and long-polled while
// invocations run; every invocation runs tagged with its invocationId and function name; deny records
// are delivered in postInvocation, which the worker awaits before the response leaves.
import type { WorkloadIdentity } from '../../../policy/types.js';
import {
  createInProcessController,
  type InProcessController,
  type InProcessOptions,
} from '../client/in-process.js';
import { platformWorkload } from '../client/shim-binding.js';
import { corePort } from '../core-port.js';
import type { ShimPort } from '../shim-port.js';

/** The part of `@azure/functions`' `app` this uses (structural, so the package stays an optional peer). */
export interface AzureAppLike {
  hook: {
    appStart(handler: (context: unknown) => unknown): unknown;
    appTerminate(handler: (context: unknown) => unknown): unknown;
    preInvocation(handler: (context: AzurePreInvocationLike) => unknown): unknown;
    postInvocation(handler: (context: AzurePostInvocationLike) => unknown): unknown;
  };
}

interface AzureInvocationContextLike {
  invocationId: string;
  functionName: string;
}

export interface AzurePreInvocationLike {
  hookData: Record<string, unknown>;
  invocationContext: AzureInvocationContextLike;
  functionHandler: (...args: never[]) => unknown;
}

export interface AzurePostInvocationLike {
  hookData: Record<string, unknown>;
  invocationContext: AzureInvocationContextLike;
}

export interface AzureBulkheadOptions
  extends Omit<InProcessOptions, 'workload' | 'env'>,
    Partial<Pick<InProcessOptions, 'env'>> {
  /** Identity to fetch bundles for (default: from WEBSITE_SITE_NAME, REGION_NAME, WEBSITE_OWNER_NAME, BULKHEAD_TAGS …). */
  workload?: WorkloadIdentity | undefined;
  /** For tests: the shim to drive (default: the process-wide shim). */
  shim?: ShimPort | undefined;
}

const SETUP_KEY = Symbol.for('bulkhead.azure.setup');
const HOOK_DATA_KEY = 'bulkhead.started';

/**
 * Register Bulkhead's hooks on the app. Calling it again with the same app returns the first
 * controller (a second set of hooks would deliver reports twice).
 */
export function setupBulkhead(app: AzureAppLike, options: AzureBulkheadOptions = {}): InProcessController {
  if (typeof app !== 'object' || app === null || typeof app.hook?.preInvocation !== 'function') {
    throw new TypeError('setupBulkhead: pass the `app` object exported by @azure/functions v4');
  }
  const marked = app as AzureAppLike & { [SETUP_KEY]?: InProcessController };
  const existing = marked[SETUP_KEY];
  if (existing) return existing;

  const env = options.env ?? process.env;
  const controller = createInProcessController(options.shim ?? corePort(env, { ownClient: true }), {
    ...options,
    env,
    workload: options.workload ?? platformWorkload(env),
  });
  Object.defineProperty(marked, SETUP_KEY, { value: controller });

  // Start now rather than at appStart: connections made while the app's modules load are governed too.
  void controller.start();

  app.hook.appStart(() => controller.start());

  app.hook.preInvocation(async (context) => {
    await controller.beforeInvocation();
    context.hookData[HOOK_DATA_KEY] = true;
    const { invocationId, functionName } = context.invocationContext;
    const tag = invocationTag(functionName, invocationId);
    const original = context.functionHandler;
    // Invocations run concurrently in one worker: the tag travels in the shim's async context.
    context.functionHandler = (...args: never[]) => controller.runInInvocation(tag, () => original(...args));
  });

  app.hook.postInvocation(async (context) => {
    if (context.hookData[HOOK_DATA_KEY] !== true) return;
    await controller.afterInvocation();
  });

  // Best effort: the host skips this hook on forced termination.
  app.hook.appTerminate(() => controller.shutdown());

  return controller;
}

/**
 * The invocation id deny records carry: `<functionName>/<invocationId>`, so a record names the
 * function inside the app (the workload identity names the app) and still holds the id Application
 * Insights shows.
 */
export function invocationTag(functionName: string, invocationId: string): string {
  return `${functionName}/${invocationId}`;
}
