// The GCP wrappers' contract with the framework, against a recording shim: declared parameter count
// kept, invocation tagged with the execution id / CloudEvent id, deny records delivered before the
// response ends or the callback fires, handler errors passed through unchanged.
import { EventEmitter } from 'node:events';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cloudEvent, configure, http } from '../../runtime-shims/node/gcp/index.js';
import type { ShimPort } from '../../runtime-shims/node/shim-port.js';

const events: string[] = [];
let currentTag: string | undefined;
let releaseFlush: (() => void) | undefined;
let holdFlush = false;

const recordingShim: ShimPort = {
  refresh: () => undefined,
  setInvocationId: () => undefined,
  handOverFetching: () => undefined,
  install: () => events.push('install'),
  reload: () => events.push('reload'),
  flush: () => {
    events.push(`flush:${currentTag ?? 'none'}`);
    if (!holdFlush) return Promise.resolve();
    return new Promise<void>((resolve) => {
      releaseFlush = () => {
        events.push('flushed');
        resolve();
      };
    });
  },
  runInInvocation: (tag, fn) => {
    const previous = currentTag;
    currentTag = tag;
    try {
      return fn();
    } finally {
      currentTag = previous;
    }
  },
  status: () => ({ revision: 1 }),
};

// No control API configured: the controller installs the shim and delivers reports, nothing else.
configure({ shim: recordingShim, env: {}, workload: { cloud: 'gcp', name: 'unit' }, flushTimeoutMs: 5000 });

class FakeResponse extends EventEmitter {
  ended: unknown[] | undefined;
  end(...args: unknown[]): this {
    this.ended = args;
    events.push('end');
    return this;
  }
}

describe('bulkhead/gcp wrappers', () => {
  it('keep the declared parameter count and the name, and wrap only once', () => {
    const two = (_req: unknown, _res: unknown) => undefined;
    const oneEvent = async (_event: unknown) => undefined;
    const withCallback = (_event: unknown, _callback: unknown) => undefined;
    expect(http(two).length).toBe(2);
    expect(http(two).name).toBe('two');
    expect(cloudEvent(oneEvent).length).toBe(1);
    expect(cloudEvent(withCallback).length).toBe(2);
    const wrapped = http(two);
    expect(http(wrapped)).toBe(wrapped);
    expect(() => http('nope' as never)).toThrow(/handler must be a function/);
  });

  it('hold res.end until deny records are delivered, and tag the invocation with the execution id', async () => {
    events.length = 0;
    holdFlush = true;
    try {
      let tagSeen: string | undefined;
      const handler = http((_req: unknown, res: FakeResponse) => {
        tagSeen = currentTag;
        res.end('done');
      });
      const res = new FakeResponse();
      await handler({ executionId: 'exec-42' } as never, res as never);
      expect(tagSeen).toBe('exec-42');
      // The handler called end, but the response has not ended: delivery is still running.
      expect(res.ended).toBeUndefined();
      expect(events.filter((event) => event.startsWith('flush:'))).toHaveLength(1);
      releaseFlush?.();
      await new Promise((resolve) => setImmediate(resolve));
      expect(res.ended).toEqual(['done']);
      expect(events.indexOf('flushed')).toBeLessThan(events.indexOf('end'));
    } finally {
      holdFlush = false;
      releaseFlush?.();
    }
  });

  it('fall back to the function-execution-id header', async () => {
    let tagSeen: string | undefined;
    const handler = http((_req: unknown, res: FakeResponse) => {
      tagSeen = currentTag;
      res.end();
    });
    const res = new FakeResponse();
    await handler({ headers: { 'function-execution-id': 'from-header' } } as never, res as never);
    expect(tagSeen).toBe('from-header');
    // Let the deferred end run before the next test records events.
    while (res.ended === undefined) await new Promise((resolve) => setImmediate(resolve));
  });

  it('tag every request with a string, whatever its execution id and headers hold', async () => {
    const handler = http((_req: unknown, res: FakeResponse) => {
      events.push(`tag:${typeof currentTag}`);
      res.end();
    });
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          { executionId: fc.anything(), headers: fc.option(fc.dictionary(fc.string(), fc.anything())) },
          {
            requiredKeys: [],
          },
        ),
        async (req) => {
          events.length = 0;
          const res = new FakeResponse();
          await handler(req as never, res as never);
          while (res.ended === undefined) await new Promise((resolve) => setImmediate(resolve));
          expect(events[0]).toBe('tag:string');
        },
      ),
      { numRuns: 200 },
    );
  });

  it('deliver before an async CloudEvent handler resolves, and pass its errors through', async () => {
    events.length = 0;
    const ok = cloudEvent(async (event: { id: string }) => {
      events.push(`handler:${currentTag}`);
      return event.id;
    });
    await expect(ok({ id: 'evt-1' } as never)).resolves.toBe('evt-1');
    expect(events).toEqual(['handler:evt-1', 'flush:none']);

    const failing = cloudEvent(async (_event: unknown) => {
      throw new Error('downstream failed');
    });
    await expect(failing({ id: 'evt-2' } as never)).rejects.toThrow('downstream failed');
  });

  it('deliver before a callback CloudEvent handler calls back, once, with its result or error', async () => {
    events.length = 0;
    const calls: unknown[][] = [];
    const handler = cloudEvent(
      (event: { id: string }, callback: (error: unknown, result?: unknown) => void) => {
        events.push(`handler:${currentTag}`);
        setImmediate(() => {
          callback(null, `${event.id}-done`);
          callback(null, 'second call ignored');
        });
      },
    );
    await new Promise<void>((resolve) => {
      (handler as (event: unknown, callback: (...args: unknown[]) => void) => void)(
        { id: 'evt-3' },
        (...args) => {
          calls.push(args);
          events.push('callback');
          resolve();
        },
      );
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls).toEqual([[null, 'evt-3-done']]);
    expect(events).toEqual(['handler:evt-3', 'flush:none', 'callback']);

    const thrown = cloudEvent((_event: unknown, _callback: unknown) => {
      throw new Error('sync failure');
    });
    const error = await new Promise<unknown>((resolve) =>
      (thrown as (event: unknown, callback: (error: unknown) => void) => void)({ id: 'evt-4' }, resolve),
    );
    expect((error as Error).message).toBe('sync failure');
  });
});
