// `withBulkhead(handler)`: the Lambda handler wrapper, built over any ShimPort so the public entry
// (`index.ts`) binds it to the real shim core.

import type { ShimPort } from '../shim-port.js';
import {
  type InvocationOptions,
  InvocationSync,
  markInvocationHandled,
  requestIdOf,
  resolveInvocationOptions,
} from './invocation.js';

/** Set on every wrapper: wrapping a wrapped handler returns it unchanged. */
export const WRAPPED_MARKER: unique symbol = Symbol.for('bulkhead.aws.withBulkhead') as never;
/** What the runtime interface client reads to decide how to call a handler (RIC UserFunctionLoader). */
export const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
export const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const STREAM_RESPONSE = 'response';

export type WithBulkheadOptions = InvocationOptions;

// biome-ignore lint/suspicious/noExplicitAny: a handler wrapper must accept every handler signature.
export type AnyHandler = (...args: any[]) => any;

// biome-ignore lint/suspicious/noExplicitAny: inferred from the user's handler.
type EventOf<H> = H extends (event: infer E, ...rest: any[]) => any ? E : unknown;

/**
 * The wrapped handler: callable as the user's handler was, and as the runtime calls it
 * (`(event, context)`, a promise in every style).
 */
export type BulkheadHandler<H extends AnyHandler> = H &
  ((event: EventOf<H>, context?: unknown, ...rest: unknown[]) => Promise<Awaited<ReturnType<H>>>);

export function isStreamingHandler(handler: AnyHandler): boolean {
  return (handler as unknown as Record<symbol, unknown>)[HANDLER_STREAMING] === STREAM_RESPONSE;
}

export function isBulkheadWrapped(handler: unknown): boolean {
  return (
    typeof handler === 'function' && (handler as unknown as Record<symbol, unknown>)[WRAPPED_MARKER] === true
  );
}

/**
 * Call a handler of any style and get a promise: async handlers as they are; callback handlers
 * (three declared parameters, not streaming) get a callback, and whichever of callback or returned
 * promise settles first wins, as on Lambda's Node ≤ 22 runtimes.
 */
function invokeNormalised(
  handler: AnyHandler,
  thisArg: unknown,
  event: unknown,
  context: unknown,
): Promise<unknown> {
  if (handler.length < 3) return Promise.resolve().then(() => handler.call(thisArg, event, context));
  return new Promise((resolve, reject) => {
    const callback = (error: unknown, result?: unknown) => {
      if (error !== undefined && error !== null) reject(error);
      else resolve(result);
    };
    try {
      const returned = handler.call(thisArg, event, context, callback);
      if (returned && typeof (returned as PromiseLike<unknown>).then === 'function')
        (returned as PromiseLike<unknown>).then(resolve, reject);
    } catch (error) {
      reject(error);
    }
  });
}

/** Copy the properties the runtime reads (streaming flag, high-water mark) and any other symbol-keyed ones. */
function copyRuntimeProperties(from: AnyHandler, to: AnyHandler): void {
  for (const key of Object.getOwnPropertySymbols(from)) {
    if (key === WRAPPED_MARKER) continue;
    const descriptor = Object.getOwnPropertyDescriptor(from, key);
    if (descriptor) Object.defineProperty(to, key, descriptor);
  }
}

export function createWithBulkhead(shim: ShimPort, env: NodeJS.ProcessEnv = process.env) {
  return function withBulkhead<H extends AnyHandler>(
    handler: H,
    options?: WithBulkheadOptions,
  ): BulkheadHandler<H> {
    if (typeof handler !== 'function')
      throw new TypeError(
        `withBulkhead: handler must be a function, got ${handler === null ? 'null' : typeof handler}`,
      );
    if (isBulkheadWrapped(handler)) return handler as BulkheadHandler<H>;
    const sync = new InvocationSync(shim, resolveInvocationOptions(options, env, 'withBulkhead'), env);
    // Installed at wrap time (function init), so the handler module's own init code is already governed
    // when the preload is absent.
    sync.ensureInstalled();

    async function run(context: unknown, call: () => Promise<unknown>): Promise<unknown> {
      const requestId = requestIdOf(context);
      markInvocationHandled(context);
      await sync.beforeHandler(requestId, context);
      let result: unknown;
      let failure: { error: unknown } | undefined;
      try {
        result = await sync.runInInvocation(requestId, call);
      } catch (error) {
        failure = { error };
      }
      await sync.afterHandler(context);
      if (failure) throw failure.error;
      return result;
    }

    let wrapper: AnyHandler;
    if (isStreamingHandler(handler)) {
      // Streaming handlers are called (event, responseStream, context); three declared parameters are
      // allowed for them on every runtime.
      wrapper = function bulkheadStreamingHandler(
        this: unknown,
        event: unknown,
        responseStream: unknown,
        context: unknown,
      ) {
        return run(context, () =>
          Promise.resolve().then(() => handler.call(this, event, responseStream, context)),
        );
      };
    } else {
      // Two declared parameters: Node 24 runtimes refuse handlers declaring three (callback style).
      wrapper = function bulkheadHandler(this: unknown, event: unknown, context: unknown) {
        return run(context, () => invokeNormalised(handler, this, event, context));
      };
    }
    copyRuntimeProperties(handler, wrapper);
    Object.defineProperty(wrapper, WRAPPED_MARKER, { value: true });
    Object.defineProperty(wrapper, 'name', { value: handler.name || wrapper.name });
    return wrapper as BulkheadHandler<H>;
  };
}
