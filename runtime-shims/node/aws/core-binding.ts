// Binds the AWS and middy wrappers to the process-wide shim core. The core keeps one installation
// per process (a Symbol.for global), so the preload's copy and this bundled copy share it.
import { flush, install, refresh, reload, runInInvocation, setInvocationId, status } from '../index.js';
import type { ShimPort } from './shim-port.js';

export const coreShim: ShimPort = {
  install: () => install(),
  reload: () => reload(),
  refresh: () => refresh(),
  flush: () => flush(),
  runInInvocation: (invocationId, fn) => runInInvocation(invocationId, fn),
  setInvocationId: (invocationId) => setInvocationId(invocationId),
  status: () => ({ revision: status().revision }),
};
