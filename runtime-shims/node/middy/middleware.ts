// `bulkheadMiddleware()` for middy, built over any ShimPort (the public entry binds the real core).
// Structural types only: no import of @middy/core, which stays an optional peer (6.x or 7.x).
import {
  type InvocationOptions,
  InvocationSync,
  isInvocationHandled,
  requestIdOf,
  resolveInvocationOptions,
} from '../aws/invocation.js';
import type { ShimPort } from '../shim-port.js';

/** Key under `request.internal` holding our cleanup, for middlewares that return early (Powertools pattern). */
export const BULKHEAD_CLEANUP_KEY = 'bulkhead.cleanup';
/** Set once the flush for a request has run, so after/onError/cleanup flush at most once. */
const FLUSHED_KEY = 'bulkhead.flushed';
/** Set when an enclosing withBulkhead (e.g. the layer's handler redirect) does sync and flush itself. */
const DELEGATED_KEY = 'bulkhead.delegated';

/** The part of middy's request object the middleware touches. */
export interface MiddyLikeRequest {
  event?: unknown;
  context?: unknown;
  response?: unknown;
  error?: unknown;
  internal?: Record<string, unknown>;
}

export interface MiddlewareLikeObj {
  name: string;
  before: (request: MiddyLikeRequest) => Promise<void>;
  after: (request: MiddyLikeRequest) => Promise<void>;
  onError: (request: MiddyLikeRequest) => Promise<void>;
}

export type BulkheadMiddlewareOptions = InvocationOptions;

function internalOf(request: MiddyLikeRequest): Record<string, unknown> | undefined {
  const internal = request?.internal;
  return internal !== null && typeof internal === 'object' ? internal : undefined;
}

/**
 * Run the Bulkhead cleanup registered on `request.internal`, if any. For middlewares that end a
 * request early (`return response` in `before`), which makes middy skip every `after`.
 */
export async function bulkheadCleanup(request: MiddyLikeRequest): Promise<void> {
  const cleanup = internalOf(request)?.[BULKHEAD_CLEANUP_KEY];
  if (typeof cleanup === 'function') await (cleanup as () => Promise<void>)();
}

/**
 * middy plugin hook: `middy({ requestEnd: bulkheadRequestEnd })` flushes after every request, early
 * returns included, without the early-returning middleware's cooperation (middy 7 also runs it when
 * the request throws; middy 6 only on success, where `onError` covers the rest).
 */
export async function bulkheadRequestEnd(request: MiddyLikeRequest): Promise<void> {
  await bulkheadCleanup(request);
}

export function createBulkheadMiddleware(shim: ShimPort, env: NodeJS.ProcessEnv = process.env) {
  return function bulkheadMiddleware(options?: BulkheadMiddlewareOptions): MiddlewareLikeObj {
    const sync = new InvocationSync(shim, resolveInvocationOptions(options, env, 'bulkheadMiddleware'), env);
    sync.ensureInstalled();

    async function flushOnce(request: MiddyLikeRequest): Promise<void> {
      const internal = internalOf(request);
      if (internal?.[FLUSHED_KEY] === true || internal?.[DELEGATED_KEY] === true) return;
      if (internal) internal[FLUSHED_KEY] = true;
      await sync.afterHandler(request?.context);
    }

    // Named functions so middy's profiling hooks (beforeMiddleware/afterMiddleware) show them.
    async function bulkheadMiddlewareBefore(request: MiddyLikeRequest): Promise<void> {
      const internal = internalOf(request);
      if (internal) internal[BULKHEAD_CLEANUP_KEY] = () => flushOnce(request);
      if (isInvocationHandled(request?.context)) {
        if (internal) internal[DELEGATED_KEY] = true;
        return;
      }
      await sync.beforeHandler(requestIdOf(request?.context), request?.context);
    }
    // Both return nothing: a value would be taken as an early response, and onError must let the error through.
    async function bulkheadMiddlewareAfter(request: MiddyLikeRequest): Promise<void> {
      await flushOnce(request);
    }
    async function bulkheadMiddlewareOnError(request: MiddyLikeRequest): Promise<void> {
      await flushOnce(request);
    }
    return {
      name: 'bulkhead',
      before: bulkheadMiddlewareBefore,
      after: bulkheadMiddlewareAfter,
      onError: bulkheadMiddlewareOnError,
    };
  };
}
