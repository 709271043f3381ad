import fc from 'fast-check';
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import {
  ExtensionSyncError,
  parseExtensionUrl,
  parseReadyAnswer,
} from '../../runtime-shims/node/aws/extension-sync.js';
import type { TelemetryStage } from '../../runtime-shims/node/aws/invocation.js';
import {
  createWithBulkhead,
  HANDLER_HIGHWATERMARK,
  HANDLER_STREAMING,
  isBulkheadWrapped,
} from '../../runtime-shims/node/aws/with-bulkhead.js';
import { type FakeExtension, fakeContext, RecordingShim, startFakeExtension } from './helpers.js';

function setup(env: NodeJS.ProcessEnv = {}) {
  const shim = new RecordingShim();
  const errors: { message: string; stage: TelemetryStage }[] = [];
  const onError = (error: Error, stage: TelemetryStage) => errors.push({ message: error.message, stage });
  return { shim, errors, onError, withBulkhead: createWithBulkhead(shim, env) };
}

let extension: FakeExtension | undefined;
afterEach(async () => {
  await extension?.close();
  extension = undefined;
});

describe('withBulkhead: shape the runtime sees', () => {
  it('declares two parameters for async and callback handlers alike', () => {
    const { withBulkhead, onError } = setup();
    const asyncHandler = async (_event: unknown) => 'ok';
    const callbackHandler = (_e: unknown, _c: unknown, cb: (err: unknown, r?: unknown) => void) =>
      cb(null, 1);
    expect(withBulkhead(asyncHandler, { onError }).length).toBe(2);
    expect(withBulkhead(callbackHandler, { onError }).length).toBe(2);
  });

  it('is idempotent: wrapping a wrapped handler returns it unchanged', () => {
    const { withBulkhead, shim, onError } = setup();
    const once = withBulkhead(async () => 1, { onError });
    const twice = withBulkhead(once, { onError });
    expect(twice).toBe(once);
    expect(isBulkheadWrapped(once)).toBe(true);
    expect(shim.calls.filter((c) => c === 'install')).toHaveLength(1);
  });

  it('is idempotent across two copies of the library (marker is a global symbol)', () => {
    const first = setup().withBulkhead(async () => 1, { onError: () => undefined });
    const second = setup().withBulkhead(first, { onError: () => undefined });
    expect(second).toBe(first);
  });

  it('keeps the response-streaming flag and high-water mark the runtime reads', async () => {
    const { withBulkhead, shim, onError } = setup();
    const written: string[] = [];
    const streaming = async (event: { n: number }, stream: { write(s: string): void }, _context: unknown) => {
      stream.write(`n=${event.n}`);
    };
    Object.assign(streaming, { [HANDLER_STREAMING]: 'response', [HANDLER_HIGHWATERMARK]: 1024 });
    const wrapped = withBulkhead(streaming, { onError });
    expect((wrapped as unknown as Record<symbol, unknown>)[HANDLER_STREAMING]).toBe('response');
    expect((wrapped as unknown as Record<symbol, unknown>)[HANDLER_HIGHWATERMARK]).toBe(1024);
    expect(wrapped.length).toBe(3);
    await wrapped({ n: 7 }, { write: (s: string) => written.push(s) }, fakeContext('req-stream'));
    expect(written).toEqual(['n=7']);
    expect(shim.calls).toContain('run:req-stream');
    expect(shim.calls.at(-1)).toBe('set:-');
    expect(shim.calls).toContain('flush:end');
  });

  it('keeps the handler types: callable with (event, context), resolving to the handler result', () => {
    const { withBulkhead, onError } = setup();
    const wrapped = withBulkhead(async (event: { amount: number }) => ({ charged: event.amount }), {
      onError,
    });
    expectTypeOf(wrapped).toBeCallableWith({ amount: 1 }, fakeContext('t'));
    expectTypeOf(wrapped({ amount: 1 }, fakeContext('t'))).resolves.toEqualTypeOf<{ charged: number }>();
    // @ts-expect-error the event type is the handler's
    wrapped({ amount: 'one' }, fakeContext('t')).catch(() => undefined);
  });

  it('keeps the handler name for stack traces', () => {
    const { withBulkhead, onError } = setup();
    async function chargeCard() {
      return 1;
    }
    expect(withBulkhead(chargeCard, { onError }).name).toBe('chargeCard');
  });
});

describe('withBulkhead: per invocation', () => {
  it('runs the handler inside the invocation and flushes before resolving', async () => {
    const { withBulkhead, shim, onError } = setup();
    let seenInside: string | undefined;
    const wrapped = withBulkhead(
      async (event: { x: number }) => {
        seenInside = shim.storage.getStore();
        shim.calls.push('handler');
        return event.x * 2;
      },
      { onError },
    );
    let flushFinishedBeforeResult = false;
    shim.flushImpl = async () => {
      await new Promise((resolve) => setImmediate(resolve));
    };
    const result = await wrapped({ x: 21 }, fakeContext('req-1')).then((value: number) => {
      flushFinishedBeforeResult = shim.calls.includes('flush:end');
      return value;
    });
    expect(result).toBe(42);
    expect(seenInside).toBe('req-1');
    expect(flushFinishedBeforeResult).toBe(true);
    expect(shim.calls).toEqual([
      'install',
      'set:req-1',
      'run:req-1',
      'handler',
      'flush:start',
      'flush:end',
      'set:-',
    ]);
  });

  it('flushes and then rethrows the handler error unchanged', async () => {
    const { withBulkhead, shim, onError } = setup();
    const failure = new Error('boom');
    const wrapped = withBulkhead(
      async () => {
        throw failure;
      },
      { onError },
    );
    await expect(wrapped({}, fakeContext('req-2'))).rejects.toBe(failure);
    expect(shim.calls).toContain('flush:end');
  });

  it('normalises callback handlers: callback result, callback error, and returned promise', async () => {
    const { withBulkhead, onError } = setup();
    const viaCallback = withBulkhead(
      (_e: unknown, _c: unknown, cb: (err: unknown, r?: unknown) => void) =>
        setImmediate(() => cb(null, 'cb')),
      { onError },
    );
    await expect(viaCallback({}, fakeContext('a'))).resolves.toBe('cb');
    const viaCallbackError = withBulkhead(
      (_e: unknown, _c: unknown, cb: (err: unknown, r?: unknown) => void) => cb(new Error('cb-error')),
      { onError },
    );
    await expect(viaCallbackError({}, fakeContext('b'))).rejects.toThrow('cb-error');
    const viaThrow = withBulkhead(
      (_e: unknown, _c: unknown, _cb: unknown) => {
        throw new Error('sync-throw');
      },
      { onError },
    );
    await expect(viaThrow({}, fakeContext('c'))).rejects.toThrow('sync-throw');
    const viaPromise = withBulkhead(async (_e: unknown, _c: unknown, _cb: unknown) => 'promise', { onError });
    await expect(viaPromise({}, fakeContext('d'))).resolves.toBe('promise');
  });

  it('never lets a failing flush break the handler', async () => {
    const { withBulkhead, shim, errors, onError } = setup();
    shim.flushImpl = async () => {
      throw new Error('control API down');
    };
    const wrapped = withBulkhead(async () => 'fine', { onError });
    await expect(wrapped({}, fakeContext('req-3'))).resolves.toBe('fine');
    expect(errors).toEqual([{ message: 'control API down', stage: 'flush' }]);
  });

  it('bounds a flush that never finishes', async () => {
    const { withBulkhead, shim, errors, onError } = setup();
    shim.flushImpl = () => new Promise(() => undefined);
    const wrapped = withBulkhead(async () => 'fine', { onError, flushTimeoutMs: 20 });
    await expect(wrapped({}, fakeContext('req-4'))).resolves.toBe('fine');
    expect(errors.map((e) => e.stage)).toEqual(['flush']);
  });

  it('never lets a failing install or invocation tagging break the handler', async () => {
    const { withBulkhead, shim, errors, onError } = setup();
    shim.installImpl = () => {
      throw new Error('install exploded');
    };
    shim.runInInvocation = () => {
      throw new Error('als exploded');
    };
    const wrapped = withBulkhead(async () => 'still works', { onError });
    await expect(wrapped({}, fakeContext('req-5'))).resolves.toBe('still works');
    expect(errors.map((e) => e.message)).toEqual(['install exploded', 'als exploded']);
  });

  it('a throwing onError is itself swallowed', async () => {
    const { withBulkhead, shim } = setup();
    shim.flushImpl = async () => {
      throw new Error('x');
    };
    const wrapped = withBulkhead(async () => 'ok', {
      onError: () => {
        throw new Error('logger broken');
      },
    });
    await expect(wrapped({}, fakeContext('req-6'))).resolves.toBe('ok');
  });

  it('works without a context (local tests calling the handler directly)', async () => {
    const { withBulkhead, shim, onError } = setup();
    const wrapped = withBulkhead(async (event: number) => event + 1, { onError });
    await expect(wrapped(1, undefined)).resolves.toBe(2);
    expect(shim.calls.some((c) => c.startsWith('run:'))).toBe(false);
  });

  it('does not set a process-wide invocation id when several invocations share the process', async () => {
    const { withBulkhead, shim, onError } = setup({ AWS_LAMBDA_MAX_CONCURRENCY: '8' });
    const wrapped = withBulkhead(async () => shim.storage.getStore(), { onError });
    const results = await Promise.all([wrapped({}, fakeContext('p')), wrapped({}, fakeContext('q'))]);
    expect(results).toEqual(['p', 'q']);
    expect(shim.calls.some((c) => c.startsWith('set:'))).toBe(false);
  });
});

describe('withBulkhead: sync with the extension', () => {
  it('asks the extension for each request and reloads only when the revision moved', async () => {
    extension = await startFakeExtension(1);
    const { withBulkhead, shim, onError } = setup({ BULKHEAD_EXTENSION_URL: extension.url });
    const wrapped = withBulkhead(
      async () => {
        shim.calls.push(`handler@${shim.revision}`);
      },
      { onError },
    );
    await wrapped({}, fakeContext('r-1'));
    expect(shim.calls.filter((c) => c.startsWith('reload'))).toEqual([]);

    let current = 1;
    extension.respond = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ revision: current }));
    };
    current = 2;
    shim.revisionOnDisk = 2;
    await wrapped({}, fakeContext('r-2'));
    expect(extension.asked).toEqual(['r-1', 'r-2']);
    const order = shim.calls.slice(shim.calls.indexOf('set:r-2'));
    expect(order.indexOf('reload:2')).toBeLessThan(order.indexOf('handler@2'));
    expect(order).toContain('handler@2');
  });

  it('does not reload when the extension holds no bundle (revision 0) or an older one', async () => {
    extension = await startFakeExtension(0);
    const { withBulkhead, shim, onError } = setup({ BULKHEAD_EXTENSION_URL: extension.url });
    shim.revision = 3;
    const wrapped = withBulkhead(async () => 1, { onError });
    await wrapped({}, fakeContext('zero'));
    extension.respond = (_req, res) => res.writeHead(200).end('{"revision":2}');
    await wrapped({}, fakeContext('older'));
    expect(extension.asked).toEqual(['zero', 'older']);
    expect(shim.calls.filter((c) => c.startsWith('reload'))).toEqual([]);
  });

  it('concurrent invocations wait for the extension side by side, not one behind the other', async () => {
    extension = await startFakeExtension(1);
    const held: (() => void)[] = [];
    // Answer nobody until both requests are in: a single shared socket would never get there.
    extension.respond = (_req, res) => {
      held.push(() => res.writeHead(200).end('{"revision":1}'));
      if (held.length === 2) for (const release of held) release();
    };
    const { withBulkhead, errors, onError } = setup({ AWS_LAMBDA_MAX_CONCURRENCY: '4' });
    const wrapped = withBulkhead(async () => 'ok', {
      onError,
      extensionUrl: extension.url,
      readyTimeoutMs: 5000,
    });
    await expect(
      Promise.all([wrapped({}, fakeContext('c1')), wrapped({}, fakeContext('c2'))]),
    ).resolves.toEqual(['ok', 'ok']);
    expect(errors).toEqual([]);
    expect(extension.asked.sort()).toEqual(['c1', 'c2']);
  });

  it('encodes the request id into the path', async () => {
    extension = await startFakeExtension(1);
    const { withBulkhead, onError } = setup({ BULKHEAD_EXTENSION_URL: extension.url });
    await withBulkhead(async () => 1, { onError })({}, fakeContext('a/b?c#d'));
    expect(extension.asked).toEqual(['a/b?c#d']);
  });

  it('carries on when the extension does not answer in time', async () => {
    extension = await startFakeExtension(1);
    extension.respond = () => undefined; // never answers
    const { withBulkhead, errors, onError } = setup();
    const wrapped = withBulkhead(async () => 'ran', {
      onError,
      extensionUrl: extension.url,
      readyTimeoutMs: 30,
    });
    await expect(wrapped({}, fakeContext('slow'))).resolves.toBe('ran');
    expect(errors.map((e) => e.stage)).toEqual(['sync']);
  });

  it('carries on when the extension answers an error or nonsense', async () => {
    extension = await startFakeExtension(1);
    const answers: [number, string][] = [
      [500, '{"error":"x"}'],
      [200, 'not json'],
      [200, '{"revision":-1}'],
      [200, '[]'],
      [200, 'x'.repeat(20_000)],
    ];
    let index = 0;
    extension.respond = (_req, res) => {
      const [status, body] = answers[index++] ?? [200, '{}'];
      res.writeHead(status).end(body);
    };
    const { withBulkhead, errors, onError } = setup({ BULKHEAD_EXTENSION_URL: extension.url });
    const wrapped = withBulkhead(async () => 'ran', { onError });
    for (let i = 0; i < answers.length; i++)
      await expect(wrapped({}, fakeContext(`bad-${i}`))).resolves.toBe('ran');
    expect(errors).toHaveLength(answers.length);
    expect(errors.every((e) => e.stage === 'sync')).toBe(true);
  });

  it('carries on when the extension is not listening at all', async () => {
    extension = await startFakeExtension(1);
    const url = extension.url;
    await extension.close();
    extension = undefined;
    const { withBulkhead, errors, onError } = setup({ BULKHEAD_EXTENSION_URL: url });
    await expect(withBulkhead(async () => 'ran', { onError })({}, fakeContext('down'))).resolves.toBe('ran');
    expect(errors[0]?.message).toMatch(/unreachable/);
  });
});

describe('withBulkhead: options', () => {
  it('rejects unknown options and wrong types with a clear TypeError', () => {
    const { withBulkhead } = setup();
    const handler = async () => 1;
    expect(() => withBulkhead(handler, { flushTimeOutMs: 5 } as never)).toThrow(
      /unknown option 'flushTimeOutMs'/,
    );
    expect(() => withBulkhead(handler, { readyTimeoutMs: 0 })).toThrow(/readyTimeoutMs/);
    expect(() => withBulkhead(handler, { flushTimeoutMs: 1.5 })).toThrow(/flushTimeoutMs/);
    expect(() => withBulkhead(handler, { install: 'yes' } as never)).toThrow(/install/);
    expect(() => withBulkhead(handler, { extensionUrl: 'http://example.com:80' })).toThrow(/loopback/);
    expect(() => withBulkhead(handler, 'x' as never)).toThrow(/options must be an object/);
    expect(() => withBulkhead('nope' as never)).toThrow(/handler must be a function/);
  });

  it('reports a bad BULKHEAD_EXTENSION_URL instead of failing the function', async () => {
    const { withBulkhead, errors, onError } = setup({ BULKHEAD_EXTENSION_URL: 'ftp://127.0.0.1:1' });
    await expect(withBulkhead(async () => 'ok', { onError })({}, fakeContext('e'))).resolves.toBe('ok');
    expect(errors[0]?.message).toMatch(/BULKHEAD_EXTENSION_URL ignored/);
  });

  it('install: false leaves enforcement to the preload', () => {
    const { withBulkhead, shim, onError } = setup();
    withBulkhead(async () => 1, { onError, install: false });
    expect(shim.calls).not.toContain('install');
  });
});

describe('withBulkhead: hostile contexts', () => {
  it('returns the handler result for any context shape, and never asks the extension with a bad id', async () => {
    extension = await startFakeExtension(1);
    const { withBulkhead, onError } = setup({ BULKHEAD_EXTENSION_URL: extension.url });
    const wrapped = withBulkhead(async (event: number) => event * 2, { onError, readyTimeoutMs: 200 });
    const hostileContext = fc.oneof(
      fc.constant(undefined),
      fc.constant(null),
      fc.anything(),
      fc.record({
        awsRequestId: fc.oneof(fc.string({ maxLength: 300 }), fc.integer(), fc.constant({})),
        getRemainingTimeInMillis: fc.oneof(
          fc.constant(() => {
            throw new Error('broken clock');
          }),
          fc.constant(() => Number.NaN),
          fc.constant(() => -5),
          fc.constant('not a function'),
        ),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.integer(), hostileContext, async (n, context) => {
        expect(await wrapped(n, context)).toBe(n * 2);
      }),
      { numRuns: 150 },
    );
    for (const id of extension.asked) expect(id.length).toBeLessThanOrEqual(200);
  });
});

describe('extension answers and URLs from outside input', () => {
  it('parseReadyAnswer accepts only a revision object and fails only with ExtensionSyncError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (body) => {
        try {
          const answer = parseReadyAnswer(body);
          expect(Number.isSafeInteger(answer.revision) && answer.revision >= 0).toBe(true);
        } catch (error) {
          expect(error).toBeInstanceOf(ExtensionSyncError);
        }
      }),
      { numRuns: 2000 },
    );
    expect(parseReadyAnswer('{"revision":3,"bundleFile":"/tmp/b.json"}')).toEqual({
      revision: 3,
      bundleFile: '/tmp/b.json',
    });
  });

  it('parseExtensionUrl never throws and only accepts loopback http', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.webUrl()), (text) => {
        const parsed = parseExtensionUrl(text);
        if (parsed.ok) {
          expect(parsed.origin.protocol).toBe('http:');
          expect(['127.0.0.1', 'localhost', '[::1]']).toContain(parsed.origin.hostname);
        }
      }),
      { numRuns: 2000 },
    );
    expect(parseExtensionUrl('http://127.0.0.1:4000').ok).toBe(true);
    expect(parseExtensionUrl('http://user:pw@127.0.0.1:4000').ok).toBe(false);
  });
});
