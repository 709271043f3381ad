import middy from '@middy/core';
import { afterEach, describe, expect, it } from 'vitest';
import type { TelemetryStage } from '../../runtime-shims/node/aws/invocation.js';
import { createWithBulkhead } from '../../runtime-shims/node/aws/with-bulkhead.js';
import {
  BULKHEAD_CLEANUP_KEY,
  bulkheadCleanup,
  bulkheadRequestEnd,
  createBulkheadMiddleware,
  type MiddyLikeRequest,
} from '../../runtime-shims/node/middy/middleware.js';
import { type FakeExtension, fakeContext, fakeExtension, RecordingShim } from './helpers.js';

function setup(env: NodeJS.ProcessEnv = {}, shim = new RecordingShim()) {
  const errors: { message: string; stage: TelemetryStage }[] = [];
  const onError = (error: Error, stage: TelemetryStage) => errors.push({ message: error.message, stage });
  return { shim, errors, onError, bulkheadMiddleware: createBulkheadMiddleware(shim, env) };
}

const flushCount = (shim: RecordingShim) => shim.calls.filter((c) => c === 'flush:start').length;

let extension: FakeExtension | undefined;
afterEach(() => {
  extension?.close();
  extension = undefined;
});

describe('bulkheadMiddleware with @middy/core 6', () => {
  it('tags the invocation before the handler and flushes once after it', async () => {
    const { shim, bulkheadMiddleware, onError } = setup();
    const handler = middy()
      .use(bulkheadMiddleware({ onError }))
      .handler(async (event: unknown) => {
        shim.calls.push(`handler:${shim.currentInvocationId}`);
        return (event as { v: number }).v + 1;
      });
    await expect(handler({ v: 1 }, fakeContext('m-1') as never)).resolves.toBe(2);
    expect(shim.calls).toEqual(['install', 'set:m-1', 'handler:m-1', 'flush:start', 'flush:end', 'set:-']);
  });

  it('flushes in onError and lets the original error through', async () => {
    const { shim, bulkheadMiddleware, onError } = setup();
    const failure = new Error('handler failed');
    const handler = middy()
      .use(bulkheadMiddleware({ onError }))
      .handler(async () => {
        throw failure;
      });
    await expect(handler({}, fakeContext('m-2') as never)).rejects.toBe(failure);
    expect(flushCount(shim)).toBe(1);
  });

  it('flushes once when after throws into onError', async () => {
    const { shim, bulkheadMiddleware, onError } = setup();
    const breaksAfter = {
      after: async () => {
        throw new Error('later middleware broke');
      },
    };
    // onion order: afters run in reverse, so the breaking after runs before ours... and ours runs in onError.
    const handler = middy()
      .use(bulkheadMiddleware({ onError }))
      .use(breaksAfter)
      .handler(async () => 'ok');
    await expect(handler({}, fakeContext('m-3') as never)).rejects.toThrow('later middleware broke');
    expect(flushCount(shim)).toBe(1);
  });

  it('registers a cleanup that an early-returning middleware can call (after is skipped then)', async () => {
    const { shim, bulkheadMiddleware, onError } = setup();
    const cache = {
      before: async (request: MiddyLikeRequest) => {
        await bulkheadCleanup(request);
        return { statusCode: 200, body: 'from cache' };
      },
    };
    const handler = middy()
      .use(bulkheadMiddleware({ onError }))
      .use(cache)
      .handler(async () => {
        shim.calls.push('handler');
        return 'not reached';
      });
    await expect(handler({}, fakeContext('m-4') as never)).resolves.toEqual({
      statusCode: 200,
      body: 'from cache',
    });
    expect(shim.calls).not.toContain('handler');
    expect(flushCount(shim)).toBe(1);
  });

  it('without the cleanup call an early return skips the flush: the cleanup key is what closes that gap', async () => {
    const { shim, bulkheadMiddleware, onError } = setup();
    let registered: unknown;
    const cache = {
      before: async (request: MiddyLikeRequest) => {
        registered = request.internal?.[BULKHEAD_CLEANUP_KEY];
        return 'cached';
      },
    };
    const handler = middy()
      .use(bulkheadMiddleware({ onError }))
      .use(cache)
      .handler(async () => 'x');
    await handler({}, fakeContext('m-5') as never);
    expect(flushCount(shim)).toBe(0);
    expect(typeof registered).toBe('function');
    await (registered as () => Promise<void>)();
    await (registered as () => Promise<void>)();
    expect(flushCount(shim)).toBe(1);
  });

  it('the requestEnd plugin hook flushes after an early return without the middleware calling cleanup', async () => {
    const { shim, bulkheadMiddleware, onError } = setup();
    const cache = { before: async () => 'cached' };
    const handler = middy({ requestEnd: bulkheadRequestEnd })
      .use(bulkheadMiddleware({ onError }))
      .use(cache)
      .handler(async () => 'x');
    await expect(handler({}, fakeContext('m-8') as never)).resolves.toBe('cached');
    expect(flushCount(shim)).toBe(1);
    // And on the normal path after + requestEnd still flush once.
    const normal = middy({ requestEnd: bulkheadRequestEnd })
      .use(bulkheadMiddleware({ onError }))
      .handler(async () => 'y');
    await normal({}, fakeContext('m-9') as never);
    expect(flushCount(shim)).toBe(2);
  });

  it('never throws into the request when flushing fails', async () => {
    const { shim, bulkheadMiddleware, errors, onError } = setup();
    shim.flushImpl = async () => {
      throw new Error('sink down');
    };
    const handler = middy()
      .use(bulkheadMiddleware({ onError }))
      .handler(async () => 'ok');
    await expect(handler({}, fakeContext('m-6') as never)).resolves.toBe('ok');
    expect(errors).toEqual([{ message: 'sink down', stage: 'flush' }]);
  });

  it('syncs with the extension in before: the refresh re-reads a changed bundle before the handler', async () => {
    const shim = new RecordingShim();
    extension = fakeExtension(shim.calls);
    const { bulkheadMiddleware, errors, onError } = setup(extension.env, shim);
    shim.revisionOnDisk = 5;
    const handler = middy()
      .use(bulkheadMiddleware({ onError, readyTimeoutMs: 5000 }))
      .handler(async () => {
        shim.calls.push(`handler@${shim.revision}`);
      });
    const written = extension.readyLater('m-7', 5, 30);
    await handler({}, fakeContext('m-7') as never);
    await written;
    const order = shim.calls.slice(shim.calls.indexOf('set:m-7'));
    expect(order.slice(0, 5)).toEqual(['set:m-7', 'ready:m-7', 'refresh', 'reload:5', 'handler@5']);
    expect(errors).toEqual([]);
  });

  it('announces itself, then says done after the flush in after and in onError', async () => {
    const shim = new RecordingShim();
    extension = fakeExtension();
    const { bulkheadMiddleware, errors, onError } = setup(extension.env, shim);
    const middleware = bulkheadMiddleware({ onError });
    expect(extension.done()).toEqual({ requestId: '-', queued: 0 });
    shim.flushImpl = async () => ({ delivered: 2, pending: 0, dropped: 0 });
    extension.ready('m-11', 1);
    await middy()
      .use(middleware)
      .handler(async () => 'ok')({}, fakeContext('m-11') as never);
    expect(extension.done()).toEqual({ requestId: 'm-11', queued: 2 });
    const failure = new Error('handler failed');
    shim.flushImpl = async () => ({ delivered: 1, pending: 0, dropped: 0 });
    extension.ready('m-12', 1);
    const failing = middy()
      .use(middleware)
      .handler(async () => {
        throw failure;
      });
    await expect(failing({}, fakeContext('m-12') as never)).rejects.toBe(failure);
    expect(extension.done()).toEqual({ requestId: 'm-12', queued: 1 });
    expect(errors).toEqual([]);
  });

  it('carries on when the ready line does not come, and does not sync with several invocations per process', async () => {
    extension = fakeExtension();
    const single = setup(extension.env);
    const handler = middy()
      .use(single.bulkheadMiddleware({ onError: single.onError, readyTimeoutMs: 30 }))
      .handler(async () => 'ran');
    await expect(handler({}, fakeContext('m-13') as never)).resolves.toBe('ran');
    expect(single.errors.map((e) => e.stage)).toEqual(['sync']);
    expect(extension.done()).toEqual({ requestId: 'm-13', queued: 0 });

    extension.clearDone();
    const several = setup({ ...extension.env, AWS_LAMBDA_MAX_CONCURRENCY: '3' });
    const concurrent = middy()
      .use(several.bulkheadMiddleware({ onError: several.onError, readyTimeoutMs: 5000 }))
      .handler(async () => 'ran');
    const start = performance.now();
    await expect(
      Promise.all([
        concurrent({}, fakeContext('m-14') as never),
        concurrent({}, fakeContext('m-15') as never),
      ]),
    ).resolves.toEqual(['ran', 'ran']);
    expect(performance.now() - start).toBeLessThan(1000);
    expect(several.errors).toEqual([]);
    expect(extension.doneText()).toBeUndefined();
  });

  it('tolerates hostile request objects', async () => {
    const { bulkheadMiddleware, onError } = setup();
    const middleware = bulkheadMiddleware({ onError });
    for (const request of [
      {},
      { internal: null },
      { context: 42 },
      { context: { awsRequestId: {} } },
    ] as never[]) {
      await expect(middleware.before(request)).resolves.toBeUndefined();
      await expect(middleware.after(request)).resolves.toBeUndefined();
      await expect(middleware.onError(request)).resolves.toBeUndefined();
    }
  });

  it('inside withBulkhead (the layer redirect wraps every handler) it leaves sync and flush to the wrapper', async () => {
    const shim = new RecordingShim();
    extension = fakeExtension(shim.calls);
    const env = extension.env;
    const { bulkheadMiddleware, errors, onError } = setup(env, shim);
    const withBulkhead = createWithBulkhead(shim, env);
    shim.flushImpl = async () => ({ delivered: 1, pending: 0, dropped: 0 });
    const inner = middy()
      // After the wrapper's wait, the ready file names another request: a second wait would fail.
      .use({ before: async () => extension?.ready('someone-else', 1) })
      .use(bulkheadMiddleware({ onError, readyTimeoutMs: 30 }))
      .handler(async () => {
        shim.calls.push('handler');
        return 'ok';
      });
    const handler = withBulkhead(inner, { onError, readyTimeoutMs: 5000 });
    const context = fakeContext('m-10');
    const written = extension.readyLater('m-10', 1, 20);
    await expect(handler({}, context)).resolves.toBe('ok');
    await written;
    // One wait (the wrapper's), one flush, one done line with what that flush delivered.
    expect(shim.calls.indexOf('ready:m-10')).toBeLessThan(shim.calls.indexOf('handler'));
    expect(errors).toEqual([]);
    expect(flushCount(shim)).toBe(1);
    expect(extension.done()).toEqual({ requestId: 'm-10', queued: 1 });
    expect(Object.keys(context)).not.toContain('bulkhead');
    expect(JSON.stringify(context)).not.toContain('invocationHandled');
  });

  it('validates options like withBulkhead', () => {
    const { bulkheadMiddleware } = setup();
    expect(() => bulkheadMiddleware({ readyTimeout: 3 } as never)).toThrow(
      /bulkheadMiddleware: unknown option/,
    );
    expect(() => bulkheadMiddleware({ extensionUrl: 'http://127.0.0.1:2772' } as never)).toThrow(
      /bulkheadMiddleware: unknown option 'extensionUrl'/,
    );
  });
});
