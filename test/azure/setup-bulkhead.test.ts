// setupBulkhead's hooks inside the worker stand-in, against a recording shim: every invocation runs
// under its own `<function>/<invocationId>` tag (also when invocations overlap), deny records are
// delivered before the invocation's response is produced, and a second setup is a no-op.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { invocationTag, setupBulkhead } from '../../runtime-shims/node/azure/index.js';
import { installLocalWorker } from '../../runtime-shims/node/azure/local-worker.js';
import type { ShimPort } from '../../runtime-shims/node/shim-port.js';

const worker = installLocalWorker();
const { app } = createRequire(import.meta.url)('@azure/functions') as typeof import('@azure/functions');

const events: string[] = [];
let currentTag: string | undefined;
const { AsyncLocalStorage } = await import('node:async_hooks');
const tags = new AsyncLocalStorage<string>();

const recordingShim: ShimPort = {
  refresh: () => undefined,
  setInvocationId: () => undefined,
  handOverFetching: () => undefined,
  install: () => events.push('install'),
  reload: () => events.push('reload'),
  flush: async () => {
    events.push('flush');
  },
  runInInvocation: (tag, fn) => tags.run(tag, fn),
  status: () => ({ revision: 3 }),
};

const controller = setupBulkhead(app, {
  shim: recordingShim,
  env: {},
  workload: { cloud: 'azure', name: 'unit-app' },
});

app.http('pay', {
  handler: async (_request, context) => {
    currentTag = tags.getStore();
    events.push(`handler:${currentTag}`);
    // Overlapping invocations: yield so another one runs in between.
    await new Promise((resolve) => setTimeout(resolve, 5));
    return { jsonBody: { tag: tags.getStore(), id: context.invocationId } };
  },
});

function invokePay(invocationId: string) {
  return worker.invoke('pay', {
    invocationId,
    triggerData: { http: { method: 'GET', url: 'http://localhost/api/pay', headers: {} } },
  });
}

describe('setupBulkhead', () => {
  it('installs at setup and returns the same controller for the same app', () => {
    expect(events[0]).toBe('install');
    expect(setupBulkhead(app, { shim: recordingShim })).toBe(controller);
    expect(() => setupBulkhead({} as never)).toThrow(/@azure\/functions v4/);
  });

  it('tags each invocation with function name and invocation id, and delivers before the response', async () => {
    await worker.start();
    events.length = 0;
    const outcome = await invokePay('inv-a');
    const body = JSON.parse(
      Buffer.from(outcome.response?.returnValue?.http?.body?.bytes ?? []).toString('utf8'),
    );
    expect(body).toEqual({ tag: 'pay/inv-a', id: 'inv-a' });
    expect(events).toEqual(['handler:pay/inv-a', 'flush']);
    expect(invocationTag('pay', 'inv-a')).toBe('pay/inv-a');
  });

  it('keeps tags apart when invocations overlap', async () => {
    const outcomes = await Promise.all(['inv-1', 'inv-2', 'inv-3'].map(invokePay));
    const seen = outcomes.map(
      (o) => JSON.parse(Buffer.from(o.response?.returnValue?.http?.body?.bytes ?? []).toString('utf8')).tag,
    );
    expect(seen).toEqual(['pay/inv-1', 'pay/inv-2', 'pay/inv-3']);
    expect(controller.status().running).toBe(0);
  });
});
