import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { isSendableRequestId, LineFile, readReady } from '../../runtime-shims/node/aws/extension-sync.js';
import type { TelemetryStage } from '../../runtime-shims/node/aws/invocation.js';
import {
  createWithBulkhead,
  HANDLER_HIGHWATERMARK,
  HANDLER_STREAMING,
  isBulkheadWrapped,
} from '../../runtime-shims/node/aws/with-bulkhead.js';
import {
  type DoneLine,
  expectTakenFromWholeLine,
  type FakeExtension,
  fakeContext,
  fakeExtension,
  lineIds,
  RecordingShim,
  stateFileContents,
} from './helpers.js';

function setup(env: NodeJS.ProcessEnv = {}, shim = new RecordingShim()) {
  const errors: { message: string; stage: TelemetryStage }[] = [];
  const onError = (error: Error, stage: TelemetryStage) => errors.push({ message: error.message, stage });
  return { shim, errors, onError, withBulkhead: createWithBulkhead(shim, env) };
}

/** A wrapper syncing through a fresh fake extension's files; its ready lines go into `shim.calls`. */
function setupWithExtension(env: NodeJS.ProcessEnv = {}) {
  const shim = new RecordingShim();
  extension = fakeExtension(shim.calls);
  return { extension, ...setup({ ...extension.env, ...env }, shim) };
}

const reloads = (shim: RecordingShim) => shim.calls.filter((c) => c.startsWith('reload'));

async function timed<T>(work: Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await work;
  return { value, ms: performance.now() - start };
}

let extension: FakeExtension | undefined;
afterEach(() => {
  extension?.close();
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
  it('waits for the ready record of its request id, then refreshes before the handler: a changed bundle is re-read', async () => {
    const { extension, withBulkhead, shim, errors, onError } = setupWithExtension();
    const wrapped = withBulkhead(
      async () => {
        shim.calls.push(`handler@${shim.revision}`);
      },
      { onError, readyTimeoutMs: 5000 },
    );
    // Written while the wrapper waits: the refresh and the handler come only after it.
    const written = extension.readyLater('r-1', 1, 30);
    await wrapped({}, fakeContext('r-1'));
    await written;
    expect(shim.calls.slice(shim.calls.indexOf('set:r-1'))).toEqual([
      'set:r-1',
      'ready:r-1',
      'refresh',
      'run:r-1',
      'handler@1',
      'flush:start',
      'flush:end',
      'set:-',
    ]);

    // The extension wrote a new bundle before its ready record: the refresh re-reads it first.
    shim.revisionOnDisk = 2;
    extension.ready('r-2', 2);
    await wrapped({}, fakeContext('r-2'));
    const order = shim.calls.slice(shim.calls.indexOf('set:r-2'));
    expect(order.slice(0, 5)).toEqual(['set:r-2', 'refresh', 'reload:2', 'run:r-2', 'handler@2']);
    expect(reloads(shim)).toEqual(['reload:2']);
    expect(errors).toEqual([]);
  });

  it("the record's revision is advisory: the wrapper refreshes whatever it says, and only a changed file is re-read", async () => {
    const { extension, withBulkhead, shim, errors, onError } = setupWithExtension();
    shim.revision = 3;
    shim.revisionOnDisk = 3;
    const wrapped = withBulkhead(async () => 1, { onError });
    // No bundle (0), older, the same, newer than the file: the file has not changed, nothing is re-read.
    for (const [requestId, revision] of [
      ['zero', 0],
      ['older', 2],
      ['same', 3],
      ['ahead', 99],
    ] as const) {
      extension.ready(requestId, revision);
      await expect(wrapped({}, fakeContext(requestId))).resolves.toBe(1);
      expect(extension.done()?.requestId).toBe(requestId);
    }
    expect(shim.calls.filter((c) => c === 'refresh')).toHaveLength(4);
    expect(reloads(shim)).toEqual([]);
    // The file changed but the record says 0 (a torn read of the number): the new bundle is still read.
    shim.revisionOnDisk = 4;
    extension.ready('torn', 0);
    await wrapped({}, fakeContext('torn'));
    expect(reloads(shim)).toEqual(['reload:4']);
    expect(errors).toEqual([]);
  });

  it('a failing refresh goes to onError (reload) and never breaks the handler', async () => {
    const { extension, withBulkhead, shim, errors, onError } = setupWithExtension();
    shim.refreshImpl = () => {
      throw new Error('bundle unreadable');
    };
    extension.ready('f-1', 2);
    await expect(withBulkhead(async () => 'ran', { onError })({}, fakeContext('f-1'))).resolves.toBe('ran');
    expect(errors).toEqual([{ message: 'bundle unreadable', stage: 'reload' }]);
    expect(extension.done()).toEqual({ requestId: 'f-1', queued: 0 });
  });

  it('does not take a ready record naming another request', async () => {
    const { extension, withBulkhead, shim, errors, onError } = setupWithExtension();
    shim.revisionOnDisk = 7;
    const wrapped = withBulkhead(async () => 'ran', { onError, readyTimeoutMs: 60 });
    // The previous invocation's record (and a look-alike id) stay unread: no refresh either.
    for (const other of ['previous', 'mine-2', 'min', 'MINE']) {
      extension.ready(other, 7);
      await expect(wrapped({}, fakeContext('mine'))).resolves.toBe('ran');
    }
    expect(shim.calls).not.toContain('refresh');
    expect(reloads(shim)).toEqual([]);
    expect(errors.map((e) => e.stage)).toEqual(['sync', 'sync', 'sync', 'sync']);

    // Then the record for this request replaces the other one while it waits: that one is taken.
    errors.length = 0;
    extension.ready('previous', 7);
    const patient = withBulkhead(async () => 'ran', { onError, readyTimeoutMs: 5000 });
    const written = extension.readyLater('mine', 7, 30);
    await expect(patient({}, fakeContext('mine'))).resolves.toBe('ran');
    await written;
    expect(reloads(shim)).toEqual(['reload:7']);
    expect(errors).toEqual([]);
  });

  it('carries on (onError sync) when the ready record never comes within the bound', async () => {
    const { extension, withBulkhead, shim, errors, onError } = setupWithExtension();
    const wrapped = withBulkhead(
      async () => {
        shim.calls.push('handler');
        return 'ran';
      },
      { onError, readyTimeoutMs: 30 },
    );
    const { value, ms } = await timed(wrapped({}, fakeContext('slow')));
    expect(value).toBe('ran');
    expect(ms).toBeGreaterThanOrEqual(25);
    expect(ms).toBeLessThan(1000);
    expect(errors).toEqual([{ stage: 'sync', message: expect.stringMatching(/slow.*within 30 ms/) }]);
    expect(shim.calls).toContain('handler');
    expect(shim.calls).not.toContain('refresh');
    // The handler still says done, so the extension does not wait for its backstop.
    expect(extension.done()).toEqual({ requestId: 'slow', queued: 0 });
  });

  it('bounds the wait by a quarter of the remaining time, and skips it when almost none is left', async () => {
    const { withBulkhead, errors, onError } = setupWithExtension();
    const wrapped = withBulkhead(async () => 'ran', { onError, readyTimeoutMs: 5000 });
    const short = await timed(wrapped({}, fakeContext('short', 200)));
    expect(short.value).toBe('ran');
    expect(short.ms).toBeLessThan(1000);
    expect(errors).toEqual([{ stage: 'sync', message: expect.stringMatching(/within (4\d|50) ms/) }]);
    errors.length = 0;
    await expect(wrapped({}, fakeContext('nearly-out', 3))).resolves.toBe('ran');
    expect(errors.filter((e) => e.stage === 'sync')).toEqual([]);
  });

  it('concurrent invocations (several per process) do not sync: no wait, no done file', async () => {
    const { extension, withBulkhead, shim, errors, onError } = setupWithExtension({
      AWS_LAMBDA_MAX_CONCURRENCY: '4',
    });
    const wrapped = withBulkhead(async () => shim.storage.getStore(), { onError, readyTimeoutMs: 5000 });
    expect(extension.doneText()).toBeUndefined();
    const { value, ms } = await timed(
      Promise.all([wrapped({}, fakeContext('c1')), wrapped({}, fakeContext('c2'))]),
    );
    expect(value).toEqual(['c1', 'c2']);
    expect(ms).toBeLessThan(1000);
    expect(errors).toEqual([]);
    expect(extension.doneText()).toBeUndefined();
    expect(reloads(shim)).toEqual([]);
  });

  it('never waits for nor writes a request id that is not sendable (whitespace, over 200 characters)', async () => {
    const { extension, withBulkhead, shim, errors, onError } = setupWithExtension();
    const wrapped = withBulkhead(async () => 'ran', { onError, readyTimeoutMs: 5000 });
    for (const id of ['has space', 'tab\tid', 'line\nbreak', 'x'.repeat(201), '', '\u00a0nbsp']) {
      expect(isSendableRequestId(id)).toBe(false);
      const { value, ms } = await timed(wrapped({}, fakeContext(id)));
      expect(value).toBe('ran');
      expect(ms).toBeLessThan(1000);
      expect(extension.done()).toEqual({ requestId: '-', queued: 0 });
    }
    expect(shim.calls.filter((c) => /^(set|run):/.test(c) && c !== 'set:-')).toEqual([]);
    expect(errors).toEqual([]);
    // 200 characters is still an id; a shorter one after it leaves no tail of it in the record.
    const longest = 'x'.repeat(200);
    extension.ready(longest, 1);
    await expect(wrapped({}, fakeContext(longest))).resolves.toBe('ran');
    expect(extension.done()).toEqual({ requestId: longest, queued: 0 });
    extension.ready('short', 1);
    await expect(wrapped({}, fakeContext('short'))).resolves.toBe('ran');
    expect(extension.done()).toEqual({ requestId: 'short', queued: 0 });
  });

  it('after the handler (result or error), the done line names the request and the records the flush delivered', async () => {
    const { extension, withBulkhead, shim, errors, onError } = setupWithExtension();
    let doneDuringFlush: DoneLine | undefined;
    shim.flushImpl = async () => {
      doneDuringFlush = extension.done();
      return { delivered: 3, pending: 0, dropped: 0 };
    };
    extension.ready('d-1', 1);
    await expect(withBulkhead(async () => 'ok', { onError })({}, fakeContext('d-1'))).resolves.toBe('ok');
    // Written after the flush, never before it.
    expect(doneDuringFlush).toEqual({ requestId: '-', queued: 0 });
    expect(extension.done()).toEqual({ requestId: 'd-1', queued: 3 });

    const failure = new Error('handler failed');
    shim.flushImpl = async () => {
      doneDuringFlush = extension.done();
      return { delivered: 2, pending: 0, dropped: 0 };
    };
    extension.ready('d-2', 1);
    const failing = withBulkhead(
      async () => {
        throw failure;
      },
      { onError },
    );
    await expect(failing({}, fakeContext('d-2'))).rejects.toBe(failure);
    expect(doneDuringFlush).toEqual({ requestId: 'd-1', queued: 3 });
    expect(extension.done()).toEqual({ requestId: 'd-2', queued: 2 });
    expect(errors).toEqual([]);
  });

  it('says done with 0 when the flush fails, hangs or answers nonsense', async () => {
    const { extension, withBulkhead, shim, errors, onError } = setupWithExtension();
    const wrapped = withBulkhead(async () => 'ok', { onError, flushTimeoutMs: 20 });
    const flushes: (() => Promise<unknown>)[] = [
      async () => {
        throw new Error('sink down');
      },
      () => new Promise(() => undefined),
      async () => ({ delivered: -1 }),
      async () => ({ delivered: 1.5 }),
      async () => ({ delivered: '4' }),
      async () => null,
    ];
    for (const [index, flush] of flushes.entries()) {
      shim.flushImpl = flush;
      extension.ready(`n-${index}`, 1);
      await expect(wrapped({}, fakeContext(`n-${index}`))).resolves.toBe('ok');
      expect(extension.done()).toEqual({ requestId: `n-${index}`, queued: 0 });
    }
    expect(errors.map((e) => e.stage)).toEqual(['flush', 'flush']);
  });

  it('announces itself (`- 0`) at construction, only in single concurrency, and keeps a line already there', () => {
    const { extension, withBulkhead, onError } = setupWithExtension();
    expect(extension.doneText()).toBeUndefined();
    withBulkhead(async () => 1, { onError });
    expect(extension.done()).toEqual({ requestId: '-', queued: 0 });
    // A second wrapper in the same sandbox (or a warm start) does not erase a done record.
    writeFileSync(extension.doneFile, 'r-9 4\n');
    withBulkhead(async () => 2, { onError });
    expect(extension.doneText()).toBe('r-9 4\n');

    const several = fakeExtension();
    try {
      createWithBulkhead(new RecordingShim(), { ...several.env, AWS_LAMBDA_MAX_CONCURRENCY: '2' })(
        async () => 1,
        { onError },
      );
      expect(several.doneText()).toBeUndefined();
    } finally {
      several.close();
    }
  });

  it('announces itself when the state dir does not exist yet (the runtime can start before the extension made it)', () => {
    const { extension, onError, errors } = setupWithExtension();
    const doneFile = join(extension.dir, 'not-yet', 'bulkhead', 'invocation-done');
    createWithBulkhead(new RecordingShim(), { ...extension.env, BULKHEAD_DONE_FILE: doneFile })(
      async () => 1,
      {
        onError,
      },
    );
    expect(readFileSync(doneFile, 'latin1').trimEnd()).toBe('- 0');
    expect(statSync(dirname(doneFile)).mode & 0o777).toBe(0o700);
    expect(errors).toEqual([]);
  });

  it('a failing done write goes to onError and never breaks the handler', async () => {
    const { extension, errors, onError } = setupWithExtension();
    // Its folder is a regular file: neither the folder nor the record can be created.
    writeFileSync(join(extension.dir, 'not-a-dir'), '');
    const unwritable = join(extension.dir, 'not-a-dir', 'invocation-done');
    const withBrokenDone = createWithBulkhead(new RecordingShim(), {
      ...extension.env,
      BULKHEAD_DONE_FILE: unwritable,
    });
    const failure = new Error('handler failed');
    const working = withBrokenDone(async () => 'still works', { onError });
    const failing = withBrokenDone(
      async () => {
        throw failure;
      },
      { onError },
    );
    // Each announcement failed already, without throwing.
    expect(errors.map((e) => e.stage)).toEqual(['sync', 'sync']);
    extension.ready('w-1', 1);
    await expect(working({}, fakeContext('w-1'))).resolves.toBe('still works');
    extension.ready('w-2', 1);
    await expect(failing({}, fakeContext('w-2'))).rejects.toBe(failure);
    expect(errors.map((e) => e.stage)).toEqual(['sync', 'sync', 'flush', 'flush']);
    expect(errors.every((e) => /ENOTDIR|EEXIST/.test(e.message))).toBe(true);
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
    expect(() => withBulkhead(handler, { readyTimeoutMs: 60_001 })).toThrow(/readyTimeoutMs/);
    expect(() => withBulkhead(handler, { flushTimeoutMs: 1.5 })).toThrow(/flushTimeoutMs/);
    expect(() => withBulkhead(handler, { install: 'yes' } as never)).toThrow(/install/);
    expect(() => withBulkhead(handler, { onError: 'log' } as never)).toThrow(/onError/);
    // The extension is reached through files now: the old endpoint option is unknown.
    expect(() => withBulkhead(handler, { extensionUrl: 'http://127.0.0.1:2772' } as never)).toThrow(
      /unknown option 'extensionUrl'/,
    );
    expect(() => withBulkhead(handler, { extensionUrl: 'http://127.0.0.1:2772' } as never)).toThrow(
      TypeError,
    );
    expect(() => withBulkhead(handler, 'x' as never)).toThrow(/options must be an object/);
    expect(() => withBulkhead('nope' as never)).toThrow(/handler must be a function/);
  });

  it('without BULKHEAD_READY_FILE and BULKHEAD_DONE_FILE (or with them empty) it neither waits nor writes', async () => {
    for (const env of [
      {},
      { BULKHEAD_READY_FILE: '', BULKHEAD_DONE_FILE: '' },
      // A leftover variable from the local endpoint means nothing now.
      { BULKHEAD_EXTENSION_URL: 'http://127.0.0.1:1' },
    ]) {
      const { withBulkhead, errors, onError } = setup(env);
      const { value, ms } = await timed(
        withBulkhead(async () => 'ok', { onError, readyTimeoutMs: 5000 })({}, fakeContext('e')),
      );
      expect(value).toBe('ok');
      expect(ms).toBeLessThan(1000);
      expect(errors).toEqual([]);
    }
  });

  it('install: false leaves enforcement to the preload', () => {
    const { withBulkhead, shim, onError } = setup();
    withBulkhead(async () => 1, { onError, install: false });
    expect(shim.calls).not.toContain('install');
  });
});

describe('withBulkhead: hostile contexts', () => {
  it('returns the handler result for any context shape, and writes only sendable request ids', async () => {
    const { extension, withBulkhead, onError } = setupWithExtension();
    const wrapped = withBulkhead(async (event: number) => event * 2, { onError, readyTimeoutMs: 50 });
    const requestId = fc.oneof(
      fc.uuid(),
      fc.string({ maxLength: 300 }),
      fc.string({ unit: 'binary', maxLength: 20 }),
      fc.constantFrom('has space', 'x'.repeat(200), 'x'.repeat(201), '', 'a\nb'),
      fc.integer(),
      fc.constant({}),
    );
    const hostileContext = fc.oneof(
      fc.constant(undefined),
      fc.constant(null),
      fc.anything(),
      fc.record({
        awsRequestId: requestId,
        getRemainingTimeInMillis: fc.oneof(
          fc.constant(() => {
            throw new Error('broken clock');
          }),
          fc.constant(() => Number.NaN),
          fc.constant(() => -5),
          fc.constant(() => 30_000),
          fc.constant('not a function'),
        ),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.integer(), hostileContext, async (n, context) => {
        // Rewritten, not removed: the wrapper keeps the file open.
        writeFileSync(extension.doneFile, 'before 1\n');
        const id = (context as { awsRequestId?: unknown } | null | undefined)?.awsRequestId;
        // What the extension would write for this INVOKE (a sendable id is then found at once).
        if (typeof id === 'string' && isSendableRequestId(id)) extension.ready(id, 1);
        expect(await wrapped(n, context)).toBe(n * 2);
        if (!isSendableRequestId(id)) expect(extension.doneText()).toBe('before 1\n');
        // Records are latin1: an id beyond ASCII (never a Lambda one) is written, but not as itself.
        else if (/^[\x21-\x7e]+$/.test(id)) expect(extension.done()).toEqual({ requestId: id, queued: 0 });
      }),
      { numRuns: 150 },
    );
  });
});

describe('the ready file is outside input', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-ready-'));
  const file = join(dir, 'invocation-ready');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('readReady never throws and yields a revision only for exactly `<id> <digits>\\n` (then padding) with the same id', () => {
    fc.assert(
      fc.property(stateFileContents(15), lineIds, (written, asked) => {
        writeFileSync(file, written);
        const revision = readReady(file, asked);
        // The shim reads the file as latin1 (ids are ASCII).
        if (revision !== undefined)
          expectTakenFromWholeLine(Buffer.from(written).toString('latin1'), asked, revision, 15);
      }),
      { numRuns: 2000 },
    );
  });

  it("readReady takes the extension's record of its own id, and no other record nor a half-written one", () => {
    const record = new LineFile(file, 0o644);
    try {
      fc.assert(
        fc.property(
          fc.uuid(),
          fc.uuid(),
          // The record carries at most 15 digits.
          fc.integer({ min: 0, max: 999_999_999_999_999 }),
          (mine, other, revision) => {
            record.write(mine, revision);
            expect(readReady(file, mine)).toBe(revision);
            if (other !== mine) expect(readReady(file, other)).toBeUndefined();
            // Rewritten in place: a read that catches the line before its newline takes nothing.
            const whole = `${mine} ${revision}\n`;
            for (let end = 0; end < whole.length; end++) {
              writeFileSync(file, whole.slice(0, end));
              expect(readReady(file, mine)).toBeUndefined();
            }
          },
        ),
        { numRuns: 100 },
      );
    } finally {
      record.close();
    }
    rmSync(file, { force: true });
    expect(readReady(file, 'req-1')).toBeUndefined();
    expect(readReady(dir, 'req-1')).toBeUndefined();
  });

  it('a record is never written for an id that is not sendable', () => {
    const record = new LineFile(join(dir, 'refused'), 0o644);
    try {
      for (const id of ['has space', 'tab\tid', 'line\nbreak', 'x'.repeat(201)]) {
        expect(() => record.write(id, 1)).toThrow(RangeError);
      }
      record.write('x'.repeat(200), 999_999_999_999_999);
      expect(readReady(join(dir, 'refused'), 'x'.repeat(200))).toBe(999_999_999_999_999);
    } finally {
      record.close();
    }
  });
});
