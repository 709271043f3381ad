// Contract test for the worker stand-in: the real @azure/functions v4 library registers http, timer
// and queue functions and hooks through it, and invocations round-trip through the library's own
// RPC conversion. If a library upgrade changes the worker contract, this fails first.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { installLocalWorker } from '../../runtime-shims/node/azure/local-worker.js';

const worker = installLocalWorker();
// Loaded after the stand-in is in place, as the real worker does.
const { app } = createRequire(import.meta.url)('@azure/functions') as typeof import('@azure/functions');

const order: string[] = [];
app.hook.appStart(() => {
  order.push('appStart');
});
app.hook.preInvocation((context) => {
  order.push(`pre:${context.invocationContext.functionName}`);
  const original = context.functionHandler;
  context.functionHandler = (...args: Parameters<typeof original>) => {
    order.push('wrapped');
    return original(...args);
  };
});
app.hook.postInvocation((context) => {
  order.push(`post:${context.invocationContext.functionName}:${context.error ? 'error' : 'ok'}`);
});
app.http('hello', {
  methods: ['GET', 'POST'],
  authLevel: 'anonymous',
  handler: async (request, context) => ({
    status: 201,
    jsonBody: { q: request.query.get('q'), id: context.invocationId, body: await request.text() },
  }),
});
app.timer('tick', { schedule: '0 */5 * * * *', handler: (timer) => ({ pastDue: timer.isPastDue }) });
app.storageQueue('jobs', {
  queueName: 'jobs',
  connection: 'AzureWebJobsStorage',
  handler: (entry, context) => ({ entry, dequeueCount: context.triggerMetadata?.dequeueCount }),
});
app.http('broken', {
  handler: () => {
    throw new Error('handler failed');
  },
});

describe('Azure worker stand-in', () => {
  it('captures registrations, the programming model and hooks', async () => {
    expect([...worker.functions.keys()].sort()).toEqual(['broken', 'hello', 'jobs', 'tick']);
    expect(worker.triggerOf('hello').binding.type).toBe('httpTrigger');
    expect(worker.triggerOf('tick').binding.type).toBe('timerTrigger');
    expect(worker.triggerOf('jobs').binding.type).toBe('queueTrigger');
    await worker.start();
    expect(order).toEqual(['appStart']);
  });

  it('invokes an http function through the library conversion with hooks in worker order', async () => {
    order.length = 0;
    const outcome = await worker.invoke('hello', {
      invocationId: 'inv-1',
      triggerData: {
        http: {
          method: 'POST',
          url: 'http://localhost/api/hello?q=7',
          headers: { 'content-type': 'text/plain' },
          query: { q: '7' },
          body: { string: 'payload' },
        },
      },
    });
    expect(outcome.error).toBeUndefined();
    const http = outcome.response?.returnValue?.http;
    expect(http?.statusCode).toBe('201');
    expect(JSON.parse(Buffer.from(http?.body?.bytes ?? []).toString('utf8'))).toEqual({
      q: '7',
      id: 'inv-1',
      body: 'payload',
    });
    expect(order).toEqual(['pre:hello', 'wrapped', 'post:hello:ok']);
  });

  it('invokes timer and queue functions with their trigger conversions', async () => {
    const timer = await worker.invoke('tick', { triggerData: { json: '{"IsPastDue":true}' } });
    expect(JSON.parse(timer.response?.returnValue?.json ?? 'null')).toEqual({ pastDue: true });
    const queue = await worker.invoke('jobs', {
      triggerData: { string: '{"job":1}' },
      triggerMetadata: { DequeueCount: { int: 2 } },
    });
    expect(JSON.parse(queue.response?.returnValue?.json ?? 'null')).toEqual({
      entry: { job: 1 },
      dequeueCount: 2,
    });
  });

  it('returns handler errors after the post hooks ran', async () => {
    order.length = 0;
    const outcome = await worker.invoke('broken', {
      triggerData: { http: { method: 'GET', url: 'http://localhost/api/broken', headers: {} } },
    });
    expect(outcome.error?.message).toBe('handler failed');
    expect(order).toEqual(['pre:broken', 'wrapped', 'post:broken:error']);
  });
});
