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
import { type FakeExtension, fakeContext, RecordingShim, startFakeExtension } from './helpers.js';

function setup(env: NodeJS.ProcessEnv = {}) {
  const shim = new RecordingShim();
  const errors: { message: string; stage: TelemetryStage }[] = [];
  const onError = (error: Error, stage: TelemetryStage) => errors.push({ message: error.message, stage });
  return { shim, errors, onError, bulkheadMiddleware: createBulkheadMiddleware(shim, env) };
}

const flushCount = (shim: RecordingShim) => shim.calls.filter((c) => c === 'flush:start').length;

let extension: FakeExtension | undefined;
afterEach(async () => {
  await extension?.close();
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

  it('syncs with the extension in before and reloads a moved revision before the handler', async () => {
    extension = await startFakeExtension(5);
    const { shim, bulkheadMiddleware, onError } = setup({ BULKHEAD_EXTENSION_URL: extension.url });
    shim.revisionOnDisk = 5;
    const handler = middy()
      .use(bulkheadMiddleware({ onError }))
      .handler(async () => {
        shim.calls.push(`handler@${shim.revision}`);
      });
    await handler({}, fakeContext('m-7') as never);
    expect(extension.asked).toEqual(['m-7']);
    expect(shim.calls.indexOf('reload:5')).toBeLessThan(shim.calls.indexOf('handler@5'));
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
    extension = await startFakeExtension(1);
    const env = { BULKHEAD_EXTENSION_URL: extension.url };
    const { shim, bulkheadMiddleware, onError } = setup(env);
    const withBulkhead = createWithBulkhead(shim, env);
    const inner = middy()
      .use(bulkheadMiddleware({ onError }))
      .handler(async () => {
        shim.calls.push('handler');
        return 'ok';
      });
    const handler = withBulkhead(inner, { onError });
    const context = fakeContext('m-10');
    await expect(handler({}, context)).resolves.toBe('ok');
    expect(extension.asked).toEqual(['m-10']);
    expect(flushCount(shim)).toBe(1);
    expect(Object.keys(context)).not.toContain('bulkhead');
    expect(JSON.stringify(context)).not.toContain('invocationHandled');
  });

  it('validates options like withBulkhead', () => {
    const { bulkheadMiddleware } = setup();
    expect(() => bulkheadMiddleware({ readyTimeout: 3 } as never)).toThrow(
      /bulkheadMiddleware: unknown option/,
    );
  });
});
