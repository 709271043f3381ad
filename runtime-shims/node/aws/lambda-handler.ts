// The handler the layer's exec wrapper points `_HANDLER` at (built to dist/lambda-handler.cjs,
// shipped as /opt/bulkhead/lambda-handler.cjs). It loads the function's own handler, named by
// BULKHEAD_ORIGINAL_HANDLER relative to LAMBDA_TASK_ROOT, and exports it wrapped with withBulkhead.
//
// CommonJS handlers are required synchronously, so the runtime sees the wrapped handler's streaming
// flag; so are ES module handlers where Node supports require(esm) (20.19+, 22.12+). Otherwise (no
// require(esm), or top-level await) an ES module can only be loaded with import(), which a CommonJS
// file cannot wait for: the import starts now (during init) and the exported handler awaits it on the
// first invocation. Such a handler is exported as non-streaming unless
// BULKHEAD_ORIGINAL_HANDLER_STREAMING=1 says otherwise.
import {
  HandlerLoadError,
  importHandlerModule,
  locateHandlerModule,
  parseHandlerString,
  requireEsmIfSupported,
  requireHandlerModule,
  resolveHandlerExport,
} from './handler-loader.js';
import { HANDLER_STREAMING, isStreamingHandler, withBulkhead } from './index.js';
import type { AnyHandler } from './with-bulkhead.js';

function loadHandler(env: NodeJS.ProcessEnv): AnyHandler {
  const handlerString = env.BULKHEAD_ORIGINAL_HANDLER;
  if (!handlerString)
    throw new HandlerLoadError(
      'Runtime.MalformedHandlerName',
      'BULKHEAD_ORIGINAL_HANDLER is not set: the Bulkhead exec wrapper sets it from _HANDLER',
    );
  const appRoot = env.LAMBDA_TASK_ROOT || process.cwd();
  const spec = parseHandlerString(handlerString);
  const located = locateHandlerModule(appRoot, spec);
  if (located === undefined || located.format === 'commonjs')
    return withBulkhead(
      resolveHandlerExport(requireHandlerModule(appRoot, spec, located), spec, handlerString),
    );
  const synchronous = requireEsmIfSupported(located);
  if (synchronous) return withBulkhead(resolveHandlerExport(synchronous.module, spec, handlerString));

  const loading = importHandlerModule(located).then((loaded) =>
    withBulkhead(resolveHandlerExport(loaded, spec, handlerString)),
  );
  // Surface a broken module in the init logs right away; invocations still reject with the same error.
  loading.catch((error: Error) =>
    console.error(`bulkhead: cannot load handler ${handlerString}: ${error.name}: ${error.message}`),
  );

  const declaredStreaming = env.BULKHEAD_ORIGINAL_HANDLER_STREAMING === '1';
  if (declaredStreaming) {
    const streaming = async function bulkheadDeferredStreamingHandler(
      event: unknown,
      stream: unknown,
      context: unknown,
    ) {
      const wrapped = await loading;
      return wrapped(event, stream, context);
    };
    Object.defineProperty(streaming, HANDLER_STREAMING, { value: 'response', enumerable: true });
    return streaming;
  }
  return async function bulkheadDeferredHandler(event: unknown, context: unknown) {
    const wrapped = await loading;
    if (isStreamingHandler(wrapped))
      throw new HandlerLoadError(
        'Runtime.HandlerNotFound',
        `${handlerString} is a response-streaming ES module handler: set BULKHEAD_ORIGINAL_HANDLER_STREAMING=1 so the Bulkhead redirect exports it as streaming`,
      );
    return wrapped(event, context);
  };
}

export const handler: AnyHandler = loadHandler(process.env);
