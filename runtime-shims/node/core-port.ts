// The one binding of the wrappers' ShimPort to the process-wide shim core. The core keeps one
// installation per process (a Symbol.for global), so the preload's copy and a wrapper's bundled copy
// share it. (The Lambda handler redirect is built with `./index.js` resolved to register.cjs.)
import {
  flush,
  handOverFetching,
  install,
  proveIdentity,
  refresh,
  reload,
  runInInvocation,
  setInvocationId,
  status,
  useCredentials,
} from './index.js';
import type { ShimPort } from './shim-port.js';

/**
 * The core as a ShimPort. `env` configures the installation when a wrapper is the first to install;
 * `ownClient`: the wrapper fetches bundles itself, so installing starts no control link.
 */
export function corePort(env?: NodeJS.ProcessEnv, options: { ownClient?: boolean } = {}): ShimPort {
  return {
    install: () =>
      install({ ...(env === undefined ? {} : { env }), controlLink: options.ownClient !== true }),
    reload: (envelopeText) => reload(envelopeText),
    refresh: () => refresh(),
    flush: () => flush(),
    runInInvocation: (invocationId, fn) => runInInvocation(invocationId, fn),
    setInvocationId: (invocationId) => setInvocationId(invocationId),
    handOverFetching: () => handOverFetching(),
    proveIdentity: (timeoutMs) => proveIdentity(timeoutMs),
    useCredentials: (credentials) => useCredentials(credentials),
    status: () => {
      const now = status();
      return { revision: now.revision >= 0 ? now.revision : undefined, bundleSource: now.bundleSource };
    },
  };
}
