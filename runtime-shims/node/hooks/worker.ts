// worker_threads: each worker is a separate JavaScript world that must load the shim itself.
// Every Worker gets the preload first in its execArgv and the shim's configuration in its env,
// whatever execArgv, env or eval the caller passes.
import * as workerThreads from 'node:worker_threads';
import { isControlledVariable } from '../config.js';
import { deniedError } from '../errors.js';
import type { HookPort } from '../hook-port.js';
import { lockHook } from './lock.js';

type WorkerOptions = { execArgv?: unknown; env?: unknown; [key: string]: unknown };

export function installWorker(core: HookPort): void {
  const module = workerThreads as unknown as Record<string, unknown>;
  // The namespace object of an ES import is frozen; the CommonJS exports object is what both share.
  const exportsObject = (module.default ?? module) as Record<string, unknown>;
  const Original = exportsObject.Worker as
    | (new (
        filename: unknown,
        options?: WorkerOptions,
      ) => object)
    | undefined;
  if (typeof Original !== 'function') {
    core.hooks.workerThreads = false;
    return;
  }
  const registerPath = core.registerPath;
  const governed = (options: unknown): WorkerOptions => {
    const given = (typeof options === 'object' && options !== null ? options : {}) as WorkerOptions;
    if (!registerPath) {
      const decision = {
        decision: 'deny',
        mode: 'enforce',
        blocked: true,
        rule: 'worker-without-preload',
      } as const;
      core.report('worker', decision, { command: 'worker_threads.Worker' });
      throw deniedError('worker', 'a worker thread', decision.rule, core.revision);
    }
    const execArgv = Array.isArray(given.execArgv) ? (given.execArgv as string[]) : process.execArgv;
    let env: unknown = given.env;
    if (env === undefined || env === workerThreads.SHARE_ENV)
      env = { ...process.env, ...core.config.propagate };
    else if (typeof env === 'object' && env !== null) {
      const copy: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(env)) if (!isControlledVariable(key)) copy[key] = value;
      env = { ...copy, ...core.config.propagate };
    }
    return { ...given, execArgv: ['--require', registerPath, ...execArgv], env };
  };
  class GovernedWorker extends Original {
    constructor(filename: unknown, options?: WorkerOptions) {
      super(filename, governed(options));
    }
  }
  // What code sees is a proxy whose prototype chain and `constructor` links never lead back to the
  // ungoverned class (`super()` inside still reaches it: that lookup does not go through the proxy).
  const parentOfOriginal = Object.getPrototypeOf(Original) as object;
  const Worker = new Proxy(GovernedWorker, {
    getPrototypeOf: () => parentOfOriginal,
    setPrototypeOf: () => {
      core.tamper('Object.setPrototypeOf(worker_threads.Worker)');
      return false;
    },
  });
  for (const proto of [GovernedWorker.prototype, Original.prototype])
    Object.defineProperty(proto, 'constructor', {
      value: Worker,
      writable: false,
      configurable: false,
      enumerable: false,
    });
  core.hooks.workerThreads = lockHook(
    core,
    exportsObject,
    'Worker',
    Worker,
    'worker_threads.Worker',
    'workerThreads',
  );
}
