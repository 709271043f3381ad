// The per-invocation work shared by `withBulkhead` and the middy middleware: sync with the extension
// before the handler runs, flush deny records and tell the extension the handler is done before the
// sandbox can freeze. Nothing here may throw into the handler: every failure goes to `onError` and the
// invocation carries on.

import type { ShimPort } from '../shim-port.js';
import { isSendableRequestId, LineFile, waitForReady } from './extension-sync.js';

export type TelemetryStage = 'install' | 'sync' | 'reload' | 'flush';

export interface InvocationOptions {
  /** Longest wait for the extension's ready file (ms, default 1000). */
  readyTimeoutMs?: number | undefined;
  /** Longest wait for deny records to be delivered before the handler's result is returned (ms, default 2000). */
  flushTimeoutMs?: number | undefined;
  /** Install enforcement when the preload did not (default true). */
  install?: boolean | undefined;
  /** Receives every telemetry failure (default: one line on stderr). Must not throw; if it does, ignored. */
  onError?: ((error: Error, stage: TelemetryStage) => void) | undefined;
}

export interface ResolvedInvocationOptions {
  /** The extension's files (`BULKHEAD_READY_FILE`, `BULKHEAD_DONE_FILE`, set by the layer's exec wrapper). */
  readyFile: string | undefined;
  doneFile: string | undefined;
  readyTimeoutMs: number;
  flushTimeoutMs: number;
  install: boolean;
  onError: (error: Error, stage: TelemetryStage) => void;
}

const OPTION_NAMES = ['readyTimeoutMs', 'flushTimeoutMs', 'install', 'onError'] as const;
const MAX_TIMEOUT_MS = 60_000;
/** Share of the remaining invocation time the ready wait may take: the handler needs the rest. */
const READY_SHARE_OF_REMAINING = 0.25;

function logToStderr(error: Error, stage: TelemetryStage): void {
  // One line, message only: stacks of telemetry failures are noise in the function's logs.
  console.error(`bulkhead: ${stage} failed (invocation continues): ${error.message}`);
}

function checkTimeout(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_TIMEOUT_MS)
    throw new TypeError(`bulkhead: option ${name} must be an integer from 1 to ${MAX_TIMEOUT_MS} (ms)`);
  return value;
}

/** Validate wrapper options. Explicit options that are wrong throw a TypeError (a programming error, seen at init). */
export function resolveInvocationOptions(
  options: unknown,
  env: NodeJS.ProcessEnv,
  wrapperName: string,
): ResolvedInvocationOptions {
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options)))
    throw new TypeError(`${wrapperName}: options must be an object`);
  const given = (options ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!(OPTION_NAMES as readonly string[]).includes(key))
      throw new TypeError(`${wrapperName}: unknown option '${key}' (known: ${OPTION_NAMES.join(', ')})`);
  }
  if (given.install !== undefined && typeof given.install !== 'boolean')
    throw new TypeError(`${wrapperName}: option install must be a boolean`);
  if (given.onError !== undefined && typeof given.onError !== 'function')
    throw new TypeError(`${wrapperName}: option onError must be a function`);
  const userOnError = given.onError as ResolvedInvocationOptions['onError'] | undefined;
  const onError: ResolvedInvocationOptions['onError'] = userOnError
    ? (error, stage) => {
        try {
          userOnError(error, stage);
        } catch {
          // The error sink failing must not break the handler either.
        }
      }
    : logToStderr;

  return {
    readyFile: env.BULKHEAD_READY_FILE || undefined,
    doneFile: env.BULKHEAD_DONE_FILE || undefined,
    readyTimeoutMs: checkTimeout('readyTimeoutMs', given.readyTimeoutMs, 1000),
    flushTimeoutMs: checkTimeout('flushTimeoutMs', given.flushTimeoutMs, 2000),
    install: (given.install as boolean | undefined) ?? true,
    onError,
  };
}

/** Records a flush delivered (the core answers `{ delivered }`; a recording adapter may answer nothing). */
function deliveredCount(outcome: unknown): number {
  const delivered = (outcome as { delivered?: unknown } | null | undefined)?.delivered;
  return typeof delivered === 'number' && Number.isSafeInteger(delivered) && delivered > 0 ? delivered : 0;
}

export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

export function remainingMillis(context: unknown): number | undefined {
  const getRemaining = (context as { getRemainingTimeInMillis?: unknown } | null | undefined)
    ?.getRemainingTimeInMillis;
  if (typeof getRemaining !== 'function') return undefined;
  try {
    const value = getRemaining.call(context);
    return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

export function requestIdOf(context: unknown): string | undefined {
  const id = (context as { awsRequestId?: unknown } | null | undefined)?.awsRequestId;
  return isSendableRequestId(id) ? id : undefined;
}

/**
 * Set (non-enumerable) on the invocation's context by withBulkhead, so a bulkhead middy middleware inside
 * a wrapped handler (the layer's redirect wraps every handler) leaves sync and flush to the wrapper.
 * A global symbol: the redirect's copy of this code and the application's copy see the same mark.
 */
const HANDLED_MARK = Symbol.for('bulkhead.aws.invocationHandled');

export function markInvocationHandled(context: unknown): void {
  if (context === null || typeof context !== 'object' || Object.isFrozen(context)) return;
  try {
    Object.defineProperty(context, HANDLED_MARK, { value: true, enumerable: false, configurable: true });
  } catch {
    // A context that refuses new properties: the middleware then syncs and flushes a second time, harmlessly.
  }
}

export function isInvocationHandled(context: unknown): boolean {
  return (
    context !== null &&
    typeof context === 'object' &&
    (context as Record<symbol, unknown>)[HANDLED_MARK] === true
  );
}

/** Several invocations share one process only on Lambda Managed Instances (AWS_LAMBDA_MAX_CONCURRENCY > 1). */
export function isSingleConcurrency(env: NodeJS.ProcessEnv): boolean {
  const value = Number(env.AWS_LAMBDA_MAX_CONCURRENCY ?? '1');
  return !(value > 1);
}

export class InvocationSync {
  readonly #shim: ShimPort;
  readonly #options: ResolvedInvocationOptions;
  readonly #singleConcurrency: boolean;
  /** `invocation-done`, kept open: one write per invocation. */
  readonly #done: LineFile | undefined;
  #installed = false;

  constructor(shim: ShimPort, options: ResolvedInvocationOptions, env: NodeJS.ProcessEnv) {
    this.#shim = shim;
    this.#options = options;
    this.#singleConcurrency = isSingleConcurrency(env);
    // One ready line and one done line at a time: with several invocations in one process (Managed
    // Instances, no freeze) the wrapper does not sync; the long-poll keeps the bundle file current.
    if (options.doneFile !== undefined && this.#singleConcurrency) {
      this.#done = new LineFile(options.doneFile, 0o600);
      try {
        // The file's existence tells the extension a shim will say done; `- 0` until the first invocation.
        if (this.#done.open()) this.#done.write('-', 0);
      } catch (error) {
        options.onError(asError(error), 'sync');
      }
    }
  }

  /** Install enforcement once (the core makes a second install a no-op as well). */
  ensureInstalled(): void {
    if (this.#installed || !this.#options.install) return;
    this.#installed = true;
    try {
      this.#shim.install();
    } catch (error) {
      this.#options.onError(asError(error), 'install');
    }
  }

  /** Before the handler: wait (bounded) for the extension's refresh, reload when the revision moved. */
  async beforeHandler(requestId: string | undefined, context: unknown): Promise<void> {
    this.ensureInstalled();
    if (requestId !== undefined && this.#singleConcurrency) this.#safeSetInvocationId(requestId);
    const readyFile = this.#options.readyFile;
    if (readyFile === undefined || requestId === undefined || !this.#singleConcurrency) return;
    const remaining = remainingMillis(context);
    const budget =
      remaining === undefined
        ? this.#options.readyTimeoutMs
        : Math.min(this.#options.readyTimeoutMs, Math.floor(remaining * READY_SHARE_OF_REMAINING));
    if (budget < 1) return;
    try {
      await waitForReady(readyFile, requestId, budget);
    } catch (error) {
      this.#options.onError(asError(error), 'sync');
      return;
    }
    // The ready line says the extension's check is over; whether the bundle changed is the file's to say
    // (one stat), not the line's advisory revision.
    try {
      await this.#shim.refresh();
    } catch (error) {
      this.#options.onError(asError(error), 'reload');
    }
  }

  runInInvocation<T>(requestId: string | undefined, fn: () => T): T {
    if (requestId === undefined) return fn();
    let entered = false;
    try {
      return this.#shim.runInInvocation(requestId, () => {
        entered = true;
        return fn();
      });
    } catch (error) {
      // The handler's own exception propagates; only a failure of the shim before `fn` ran is ours.
      if (entered) throw error;
      this.#options.onError(asError(error), 'install');
      return fn();
    }
  }

  /**
   * After the handler (result or error): deliver queued deny records (to the spool on Lambda), bounded,
   * then tell the extension the handler is done and how many records it delivered. Never throws.
   */
  async afterHandler(context: unknown): Promise<void> {
    const remaining = remainingMillis(context);
    const budget =
      remaining === undefined
        ? this.#options.flushTimeoutMs
        : Math.min(this.#options.flushTimeoutMs, remaining);
    let timer: NodeJS.Timeout | undefined;
    let delivered = 0;
    try {
      const flushing = Promise.resolve().then(() => this.#shim.flush());
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), Math.max(1, budget));
      });
      const outcome = await Promise.race([flushing, timedOut]);
      if (outcome === 'timeout') {
        // Records stay queued in the core and go out with the next flush.
        flushing.catch(() => undefined);
        this.#options.onError(new Error(`flush did not finish within ${budget} ms`), 'flush');
      } else delivered = deliveredCount(outcome);
    } catch (error) {
      this.#options.onError(asError(error), 'flush');
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      if (this.#singleConcurrency) {
        this.#safeSetInvocationId(undefined);
        this.#sayDone(requestIdOf(context), delivered);
      }
    }
  }

  #sayDone(requestId: string | undefined, delivered: number): void {
    if (this.#done === undefined || requestId === undefined) return;
    try {
      this.#done.write(requestId, delivered);
    } catch (error) {
      this.#options.onError(asError(error), 'flush');
    }
  }

  #safeSetInvocationId(requestId: string | undefined): void {
    try {
      this.#shim.setInvocationId(requestId);
    } catch (error) {
      this.#options.onError(asError(error), 'install');
    }
  }
}
