// `bulkhead/gcp`: egress containment for Google Cloud functions / Cloud Run functions on the
// functions framework.
//
//   const functions = require('@google-cloud/functions-framework');
//   const bulkhead = require('bulkhead/gcp');
//   functions.http('charge', bulkhead.http((req, res) => { … }));
//   functions.cloudEvent('onEvent', bulkhead.cloudEvent(async (event) => { … }));
//
// The wrappers keep the handler's declared parameter count (the framework picks callback style from
// `fn.length`), run the handler tagged with the execution id, and deliver deny records BEFORE the
// response ends: Cloud Run throttles the CPU once the response is sent, and the framework's SIGTERM
// handler exits at once, so nothing may be left for later.
import { execFileSync } from 'node:child_process';
import type { WorkloadIdentity } from '../../../policy/types.js';
import {
  createInProcessController,
  type InProcessController,
  type InProcessOptions,
} from '../client/in-process.js';
import { platformWorkload, shimInstalled } from '../client/shim-binding.js';
import { corePort } from '../core-port.js';
import type { ShimPort } from '../shim-port.js';

export interface GcpBulkheadOptions
  extends Omit<InProcessOptions, 'workload' | 'env'>,
    Partial<Pick<InProcessOptions, 'env'>> {
  /** Identity to fetch bundles for (default: K_SERVICE, K_REVISION, FUNCTION_TARGET, project, BULKHEAD_TAGS labels). */
  workload?: WorkloadIdentity | undefined;
  /**
   * Ask the metadata server for the project when no project variable is set (default: on Cloud Run,
   * i.e. when K_SERVICE is set). Asked before enforcement is installed; with the preload (enforcement
   * already on) it is not asked: set GOOGLE_CLOUD_PROJECT.
   */
  projectFromMetadata?: boolean | undefined;
  /** For tests: the shim to drive (default: the process-wide shim). */
  shim?: ShimPort | undefined;
}

interface RequestLike {
  executionId?: string | undefined;
  headers?: Record<string, string | string[] | undefined> | undefined;
}

interface ResponseLike {
  end: (...args: never[]) => unknown;
}

type CloudEventLike = { id?: unknown } | null | undefined;

const CONTROLLER_KEY = Symbol.for('bulkhead.gcp.controller');
const WRAPPED = Symbol.for('bulkhead.gcp.wrapped');
const METADATA_TIMEOUT_MS = 1000;

/**
 * The process-wide controller; the first wrapper created (or `configure`) decides the options.
 * Started at once so connections made while the function's module loads are governed.
 */
export function configure(options: GcpBulkheadOptions = {}): InProcessController {
  const holder = globalThis as unknown as Record<symbol, InProcessController | undefined>;
  const existing = holder[CONTROLLER_KEY];
  if (existing) return existing;
  let env = options.env ?? process.env;
  const log = options.log ?? ((line: string) => console.error(`bulkhead: ${line}`));
  const useMetadata = options.projectFromMetadata ?? Boolean(env.K_SERVICE);
  if (!options.workload && useMetadata && !platformWorkload(env).account) {
    env = withMetadataProject(env, options.shim === undefined && shimInstalled(), log);
  }
  const controller = createInProcessController(options.shim ?? corePort(env, { ownClient: true }), {
    ...options,
    env,
    workload: options.workload ?? platformWorkload(env),
  });
  holder[CONTROLLER_KEY] = controller;
  void controller.start();
  return controller;
}

function keepLength<F extends (...args: never[]) => unknown>(wrapper: F, original: Function): F {
  Object.defineProperty(wrapper, 'length', { value: original.length });
  Object.defineProperty(wrapper, 'name', { value: original.name });
  Object.defineProperty(wrapper, WRAPPED, { value: true });
  return wrapper;
}

function isWrapped(fn: Function): boolean {
  return (fn as unknown as Record<symbol, unknown>)[WRAPPED] === true;
}

function executionIdOf(req: RequestLike): string {
  if (typeof req.executionId === 'string' && req.executionId !== '') return req.executionId;
  const header = req.headers?.['function-execution-id'];
  const value = Array.isArray(header) ? header[0] : header;
  return typeof value === 'string' && value !== '' ? value : 'unknown';
}

/** Wrap an HTTP function `(req, res) => …`. */
export function http<F extends (req: never, res: never, ...rest: never[]) => unknown>(
  handler: F,
  options?: GcpBulkheadOptions,
): F {
  if (typeof handler !== 'function') throw new TypeError('bulkhead/gcp http(): handler must be a function');
  if (isWrapped(handler)) return handler;
  const controller = configure(options);
  const wrapper = function bulkheadHttp(this: unknown, ...args: unknown[]): Promise<unknown> {
    const req = (args[0] ?? {}) as RequestLike;
    const res = args[1] as ResponseLike | undefined;
    if (res && typeof res.end === 'function') deferEndUntilDelivered(res, controller);
    return controller
      .beforeInvocation()
      .then(() =>
        controller.runInInvocation(
          executionIdOf(req),
          () => (handler as Function).apply(this, args) as unknown,
        ),
      );
  };
  return keepLength(wrapper as unknown as F, handler);
}

/**
 * Hold `res.end` until the invocation's deny records are delivered (bounded by flushTimeoutMs), so
 * they leave while the instance still has CPU. Express's `send`/`json` end through `res.end` too.
 */
function deferEndUntilDelivered(res: ResponseLike, controller: InProcessController): void {
  const originalEnd = res.end;
  let ending = false;
  res.end = function endAfterDelivery(this: unknown, ...endArgs: never[]): unknown {
    if (ending) return originalEnd.apply(this ?? res, endArgs);
    ending = true;
    void controller.afterInvocation().finally(() => {
      originalEnd.apply(res, endArgs);
    });
    return res;
  } as ResponseLike['end'];
}

/** Wrap a CloudEvent function: `async (event) => …` or callback style `(event, callback) => …`. */
export function cloudEvent<F extends (event: never, ...rest: never[]) => unknown>(
  handler: F,
  options?: GcpBulkheadOptions,
): F {
  if (typeof handler !== 'function')
    throw new TypeError('bulkhead/gcp cloudEvent(): handler must be a function');
  if (isWrapped(handler)) return handler;
  const controller = configure(options);
  const idOf = (event: CloudEventLike) =>
    event && typeof event.id === 'string' && event.id !== '' ? event.id : 'unknown';

  if (handler.length > 1) {
    const wrapper = function bulkheadCloudEventCallback(this: unknown, ...args: unknown[]): void {
      const callback = args[1] as (error?: unknown, result?: unknown) => void;
      let finished = false;
      const finish = (error?: unknown, result?: unknown) => {
        if (finished) return;
        finished = true;
        void controller.afterInvocation().finally(() => callback(error, result));
      };
      controller
        .beforeInvocation()
        .then(() =>
          controller.runInInvocation(idOf(args[0] as CloudEventLike), () =>
            (handler as Function).apply(this, [args[0], finish, ...args.slice(2)]),
          ),
        )
        .catch((error: unknown) => finish(error));
    };
    return keepLength(wrapper as unknown as F, handler);
  }

  const wrapper = async function bulkheadCloudEvent(this: unknown, ...args: unknown[]): Promise<unknown> {
    await controller.beforeInvocation();
    try {
      return await controller.runInInvocation(
        idOf(args[0] as CloudEventLike),
        () => (handler as Function).apply(this, args) as unknown,
      );
    } finally {
      await controller.afterInvocation();
    }
  };
  return keepLength(wrapper as unknown as F, handler);
}

/**
 * The project from the metadata server (`GCE_METADATA_HOST` overrides the host, as in Google's client
 * libraries), asked once, synchronously, BEFORE enforcement is installed, so that the shim's own
 * identity (records, bundle scope) includes it. A short-lived Node child does the request (one Node
 * start at cold start, only when no project variable is set). When the preload installed enforcement first,
 * the identity is already fixed: then GOOGLE_CLOUD_PROJECT must be set.
 */
function withMetadataProject(
  env: NodeJS.ProcessEnv,
  enforcementInstalled: boolean,
  log: (line: string) => void,
): NodeJS.ProcessEnv {
  if (enforcementInstalled) {
    log(
      'project unknown: the preload fixed the identity before the metadata server could be asked; set GOOGLE_CLOUD_PROJECT',
    );
    return env;
  }
  const url = `http://${env.GCE_METADATA_HOST || 'metadata.google.internal'}/computeMetadata/v1/project/project-id`;
  let project = '';
  try {
    project = execFileSync(process.execPath, ['-e', METADATA_LOOKUP, url], {
      encoding: 'utf8',
      timeout: METADATA_TIMEOUT_MS + 500,
      env: { PATH: env.PATH ?? '' },
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    project = '';
  }
  if (!/^[a-z][a-z0-9.:-]{0,127}$/.test(project)) {
    log(`project not found on the metadata server (${url}); set GOOGLE_CLOUD_PROJECT`);
    return env;
  }
  return { ...env, GOOGLE_CLOUD_PROJECT: project };
}

/** Runs in the lookup child: prints the project id (nothing on any failure). */
const METADATA_LOOKUP = `
const request = require('node:http').get(process.argv[1], { headers: { 'metadata-flavor': 'Google' }, timeout: ${METADATA_TIMEOUT_MS} }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (chunk) => { body += chunk; if (body.length > 256) res.destroy(); });
  res.on('end', () => { if (res.statusCode === 200) process.stdout.write(body); });
});
request.on('timeout', () => request.destroy());
request.on('error', () => {});
`;
