// `node --require bulkhead/register` (dist/register.cjs, self-contained): enforcement is in place
// before any application code runs.
// Its exports are the shim's API: the layer's handler redirect (lambda-handler.cjs) requires this same
// file instead of carrying a second copy of the core, so a preloaded process loads the core once.
import { preload } from './index.js';

export {
  flush,
  handOverFetching,
  install,
  refresh,
  reload,
  runInInvocation,
  setInvocationId,
  status,
} from './index.js';

preload();
