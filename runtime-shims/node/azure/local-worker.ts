// A stand-in for the Azure Functions Node.js worker, so a v4 app (`@azure/functions`) runs here
// without the Functions host (a .NET program this machine cannot run). The worker hands the library a
// module named `@azure/functions-core` by intercepting `require`; this file answers that name with the
// same small API (registerFunction, registerHook, setProgrammingModel) and then drives invocations the
// way the worker's InvocationHandler does: getArguments → preInvocation hooks → invokeFunction →
// postInvocation hooks → getResponse. Not covered: the host's routing, auth levels, binding I/O to real
// storage, HTTP streaming.
import { randomUUID } from 'node:crypto';
import Module from 'node:module';

export interface RpcTypedData {
  string?: string;
  json?: string;
  bytes?: Uint8Array;
  http?: RpcHttpData;
  int?: number;
  double?: number;
}

export interface RpcHttpData {
  method?: string;
  url?: string;
  headers?: Record<string, string>;
  query?: Record<string, string>;
  params?: Record<string, string>;
  body?: RpcTypedData;
  statusCode?: string;
}

export interface RpcBindingInfo {
  type?: string;
  direction?: 'in' | 'out' | 'inout';
  route?: string;
  methods?: string[];
  [key: string]: unknown;
}

export interface CoreFunctionMetadata {
  name: string;
  bindings: Record<string, RpcBindingInfo>;
}

type FunctionCallback = (...args: unknown[]) => unknown;
type HookCallback = (context: Record<string, unknown>) => unknown;
export type HookName = 'appStart' | 'appTerminate' | 'preInvocation' | 'postInvocation' | 'log';

interface InvocationModelLike {
  getArguments(): Promise<{ context: { invocationId: string; functionName: string }; inputs: unknown[] }>;
  invokeFunction(context: unknown, inputs: unknown[], handler: FunctionCallback): Promise<unknown>;
  getResponse(context: unknown, result: unknown): Promise<RpcInvocationResponse>;
}

interface ProgrammingModelLike {
  name: string;
  version: string;
  getInvocationModel(coreContext: Record<string, unknown>): InvocationModelLike;
}

export interface RpcInvocationResponse {
  invocationId: string;
  outputData?: { name: string; data: RpcTypedData | null | undefined }[];
  returnValue?: RpcTypedData | null | undefined;
}

export interface InvocationRequest {
  /** Trigger payload as the host sends it over RPC (`{http: …}`, `{json: …}`, `{string: …}`). */
  triggerData: RpcTypedData;
  triggerMetadata?: Record<string, RpcTypedData> | undefined;
  invocationId?: string | undefined;
}

export interface InvocationOutcome {
  invocationId: string;
  response: RpcInvocationResponse | undefined;
  error: Error | undefined;
}

export interface LocalWorkerLog {
  level: string;
  category: string;
  message: string;
  invocationId?: string | undefined;
}

class Disposable {
  #dispose: (() => void) | undefined;
  constructor(dispose: () => void) {
    this.#dispose = dispose;
  }
  dispose(): void {
    this.#dispose?.();
    this.#dispose = undefined;
  }
}

const CORE_MODULE = '@azure/functions-core';
const WORKER_KEY = Symbol.for('bulkhead.azure.localWorker');

/**
 * The stand-in worker. One per process (the library caches the core module the first time it asks),
 * so `installLocalWorker()` returns the same instance when called again.
 */
export class LocalAzureWorker {
  readonly functions = new Map<string, { metadata: CoreFunctionMetadata; callback: FunctionCallback }>();
  readonly hooks: Record<HookName, HookCallback[]> = {
    appStart: [],
    appTerminate: [],
    preInvocation: [],
    postInvocation: [],
    log: [],
  };
  readonly logs: LocalWorkerLog[] = [];
  private programmingModel: ProgrammingModelLike | undefined;
  private readonly appHookData: Record<string, unknown> = {};

  /** The object `require('@azure/functions-core')` returns. */
  readonly coreApi = {
    version: '3.10.1-bulkhead-local',
    hostVersion: '4.1037.0.0',
    Disposable,
    registerFunction: (metadata: CoreFunctionMetadata, callback: FunctionCallback): Disposable => {
      if (this.functions.has(metadata.name))
        throw new Error(`function "${metadata.name}" is already registered`);
      this.functions.set(metadata.name, { metadata, callback });
      return new Disposable(() => this.functions.delete(metadata.name));
    },
    registerHook: (name: HookName, callback: HookCallback): Disposable => {
      const list = this.hooks[name];
      if (!list) throw new RangeError(`unknown hook "${name}"`);
      list.push(callback);
      return new Disposable(() => {
        const at = list.indexOf(callback);
        if (at !== -1) list.splice(at, 1);
      });
    },
    setProgrammingModel: (model: ProgrammingModelLike): void => {
      this.programmingModel = model;
    },
    getProgrammingModel: (): ProgrammingModelLike | undefined => this.programmingModel,
    log: (level: string, category: string, message: string): void => {
      this.logs.push({ level, category, message });
    },
  };

  /** Runs the appStart hooks (the worker does this after loading the app's entry files). */
  async start(functionAppDirectory = process.cwd()): Promise<void> {
    await this.runHooks('appStart', {
      hookData: this.appHookData,
      appHookData: this.appHookData,
      functionAppDirectory,
    });
  }

  async terminate(): Promise<void> {
    await this.runHooks('appTerminate', { hookData: this.appHookData, appHookData: this.appHookData });
  }

  /** The trigger binding of a registered function (name and RPC binding info). */
  triggerOf(functionName: string): { name: string; binding: RpcBindingInfo } {
    const registered = this.functions.get(functionName);
    if (!registered) throw new Error(`no function named "${functionName}" is registered`);
    for (const [name, binding] of Object.entries(registered.metadata.bindings)) {
      if (
        binding.direction === 'in' &&
        typeof binding.type === 'string' &&
        binding.type.endsWith('Trigger')
      ) {
        return { name, binding };
      }
    }
    throw new Error(`function "${functionName}" has no trigger binding`);
  }

  /** One invocation, in the worker's order. Errors from the handler come back in `error`. */
  async invoke(functionName: string, request: InvocationRequest): Promise<InvocationOutcome> {
    const model = this.programmingModel;
    if (!model) throw new Error('the app did not set a programming model (was @azure/functions loaded?)');
    const registered = this.functions.get(functionName);
    if (!registered) throw new Error(`no function named "${functionName}" is registered`);
    const trigger = this.triggerOf(functionName);
    const invocationId = request.invocationId ?? randomUUID();
    const coreContext: Record<string, unknown> = {
      invocationId,
      metadata: registered.metadata,
      request: {
        invocationId,
        functionId: functionName,
        inputData: [{ name: trigger.name, data: request.triggerData }],
        triggerMetadata: request.triggerMetadata ?? {},
      },
      state: undefined,
      log: (level: string, category: string, message: string) =>
        this.logs.push({ level, category, message, invocationId }),
    };
    const invocationModel = model.getInvocationModel(coreContext);
    const { context, inputs } = await invocationModel.getArguments();
    const hookData: Record<string, unknown> = {};
    const pre: Record<string, unknown> = {
      hookData,
      appHookData: this.appHookData,
      invocationContext: context,
      inputs,
      functionCallback: registered.callback,
    };
    coreContext.state = 'preInvocationHooks';
    await this.runHooks('preInvocation', pre);
    coreContext.state = 'invocation';
    const post: Record<string, unknown> = {
      hookData,
      appHookData: this.appHookData,
      invocationContext: context,
      inputs: pre.inputs,
      result: undefined,
      error: undefined,
    };
    try {
      post.result = await invocationModel.invokeFunction(
        context,
        pre.inputs as unknown[],
        pre.functionCallback as FunctionCallback,
      );
    } catch (error) {
      post.error = error;
    }
    coreContext.state = 'postInvocationHooks';
    await this.runHooks('postInvocation', post);
    if (post.error !== undefined && post.error !== null) {
      const error = post.error instanceof Error ? post.error : new Error(String(post.error));
      return { invocationId, response: undefined, error };
    }
    const response = await invocationModel.getResponse(context, post.result);
    return { invocationId, response, error: undefined };
  }

  private async runHooks(name: HookName, context: Record<string, unknown>): Promise<void> {
    // Sequential and awaited, in registration order, as the worker's executeHooks does.
    for (const hook of [...this.hooks[name]]) await hook(context);
  }
}

/**
 * Make `require('@azure/functions-core')` answer with the stand-in. Must run before the app's first
 * `app.*` call (the library looks the module up lazily and caches it).
 */
export function installLocalWorker(): LocalAzureWorker {
  const holder = globalThis as unknown as Record<symbol, LocalAzureWorker | undefined>;
  const existing = holder[WORKER_KEY];
  if (existing) return existing;
  const worker = new LocalAzureWorker();
  holder[WORKER_KEY] = worker;
  const prototype = Module.prototype as unknown as { require: (this: unknown, id: string) => unknown };
  const originalRequire = prototype.require;
  prototype.require = function requireWithCoreModule(this: unknown, id: string): unknown {
    if (id === CORE_MODULE) return worker.coreApi;
    return originalRequire.call(this, id);
  };
  return worker;
}
