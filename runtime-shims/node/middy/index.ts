// bulkhead/middy: the same per-invocation work as bulkhead/aws, as a middy middleware.
//
//   import middy from '@middy/core';
//   import { bulkheadMiddleware } from 'bulkhead/middy';
//   export const handler = middy().use(bulkheadMiddleware()).handler(async (event) => { … });
//
// A middleware that ends requests early (cache, warmup, CORS preflight) makes middy skip every
// `after`: create the handler with `middy({ requestEnd: bulkheadRequestEnd })`, or call
// `bulkheadCleanup(request)` from that middleware; otherwise the records go out with the next flush.
import { corePort } from '../core-port.js';
import { createBulkheadMiddleware } from './middleware.js';

export type { TelemetryStage } from '../aws/invocation.js';
export {
  BULKHEAD_CLEANUP_KEY,
  type BulkheadMiddlewareOptions,
  bulkheadCleanup,
  bulkheadRequestEnd,
  type MiddlewareLikeObj,
  type MiddyLikeRequest,
} from './middleware.js';

export const bulkheadMiddleware = createBulkheadMiddleware(corePort());
