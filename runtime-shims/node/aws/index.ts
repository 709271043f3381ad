// bulkhead/aws: wrap a Lambda handler so each invocation is synced with the Bulkhead extension,
// its deny records carry the request id, and they are flushed before the sandbox can freeze.
//
//   import { withBulkhead } from 'bulkhead/aws';
//   export const handler = withBulkhead(async (event, context) => { … });
import { corePort } from '../core-port.js';
import { createWithBulkhead } from './with-bulkhead.js';

export type { TelemetryStage } from './invocation.js';
export {
  type AnyHandler,
  type BulkheadHandler,
  HANDLER_HIGHWATERMARK,
  HANDLER_STREAMING,
  isBulkheadWrapped,
  isStreamingHandler,
  type WithBulkheadOptions,
  WRAPPED_MARKER,
} from './with-bulkhead.js';

export const withBulkhead = createWithBulkhead(corePort());
