// The handler redirect (dist/lambda-handler.cjs) run the way Lambda runs it: the real aws-lambda-ric
// in a sandbox of the Lambda emulator, `_HANDLER` pointing at the redirect, the function's own handler
// in BULKHEAD_ORIGINAL_HANDLER. Needs `npm run build` (npm test builds first). Each sandbox gets the
// extension's files in a temp state dir: the test writes the ready line of each request id as the
// extension would at INVOKE, and reads the done line the wrapper writes.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type InvokeResult, LambdaEmulator, type SandboxOptions } from '../../emulator/index.js';
import { type FakeExtension, fakeExtension } from './helpers.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const REDIRECT = join(root, 'dist', 'lambda-handler.handler');

let taskRoot: string;
/** The extension's files of each sandbox. */
const extensionOf = new Map<LambdaEmulator, FakeExtension>();
let closedPortServer: Server;
let targetPort = 0;
const emulators: LambdaEmulator[] = [];
const temps: string[] = [];

function write(relative: string, text: string): void {
  const file = join(taskRoot, relative);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
}

beforeAll(async () => {
  if (!existsSync(join(root, 'dist', 'lambda-handler.cjs')))
    throw new Error('dist/lambda-handler.cjs is missing: run `npm run build` first');
  taskRoot = mkdtempSync(join(tmpdir(), 'bulkhead-task-'));
  temps.push(taskRoot);
  // A loopback listener the deny test tries to reach: enforcement must stop the connection first.
  closedPortServer = createServer((socket) => socket.end('reached'));
  await new Promise<void>((done) => closedPortServer.listen(0, '127.0.0.1', done));
  targetPort = (closedPortServer.address() as { port: number }).port;

  write(
    'index.js',
    `exports.handler = async (event, context) => ({ style: 'cjs', echo: event, requestId: context.awsRequestId });`,
  );
  write(
    'src/esm/app.mjs',
    `export const handler = async (event, context) => ({ style: 'esm', echo: event, requestId: context.awsRequestId });`,
  );
  write(
    'tla.mjs',
    `const ready = await Promise.resolve('top-level-await');
     export const handler = async (event, context) => ({ style: ready, requestId: context.awsRequestId });`,
  );
  write(
    'stream-esm.mjs',
    `export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
       responseStream.write('esm-streamed:');
       responseStream.end(String(event.n));
     });`,
  );
  write(
    'stream-tla.mjs',
    `await Promise.resolve();
     export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
       responseStream.end('tla-streamed:' + event.n);
     });`,
  );
  write(
    'callback.js',
    `exports.handler = function (event, context, callback) { setImmediate(() => callback(null, { style: 'callback' })); };`,
  );
  write(
    'stream.js',
    `exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
       responseStream.write('streamed:');
       responseStream.end(String(event.n));
     });`,
  );
  write(
    'connect.js',
    `const net = require('node:net');
     exports.handler = async (event) => new Promise((done) => {
       const socket = net.connect(event.port, '127.0.0.1');
       socket.on('data', (data) => { done({ reached: String(data) }); socket.destroy(); });
       socket.on('error', (error) => done({ error: error.code }));
     });`,
  );
});

afterEach(async () => {
  await Promise.all(emulators.splice(0).map((e) => e.close()));
});

afterAll(async () => {
  for (const extension of extensionOf.values()) extension.close();
  await new Promise<void>((done) => (closedPortServer ? closedPortServer.close(() => done()) : done()));
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

function sandbox(options: Partial<SandboxOptions> & { original?: string }): LambdaEmulator {
  const { original, env, ...rest } = options;
  const extension = fakeExtension();
  const instance = new LambdaEmulator({
    taskRoot,
    handler: REDIRECT,
    freeze: true,
    ...rest,
    env: {
      ...extension.env,
      // Observe mode without a bundle: the tests below that do not test denial must not be denied.
      BULKHEAD_FAIL_MODE: 'observe',
      ...(original ? { BULKHEAD_ORIGINAL_HANDLER: original } : {}),
      ...env,
    },
  });
  emulators.push(instance);
  extensionOf.set(instance, extension);
  return instance;
}

/**
 * Invokes as Lambda does with the extension attached: the INVOKE reaches the runtime and the extension
 * together, and the extension writes the ready line (revision 0: it holds no bundle) once its refresh
 * is done, `readyAfterMs` later (or never).
 */
async function invoke(
  lambda: LambdaEmulator,
  payload: unknown,
  readyAfterMs: number | 'never' = 0,
  timeoutMs?: number,
): Promise<InvokeResult> {
  const extension = extensionOf.get(lambda);
  if (!extension) throw new Error('not a sandbox of this file');
  const pending = lambda.startInvoke(payload, timeoutMs === undefined ? {} : { timeoutMs });
  const written =
    readyAfterMs === 'never' ? undefined : extension.readyLater(pending.requestId, 0, readyAfterMs);
  const result = await pending.completed;
  await written;
  return result;
}

describe('lambda-handler redirect under aws-lambda-ric', () => {
  it('loads a CommonJS handler, wraps it, waits for the ready line of each request and says done', async () => {
    const logs: string[] = [];
    const lambda = sandbox({ original: 'index.handler', onLog: (line) => logs.push(line.line) });
    const extension = extensionOf.get(lambda);
    const init = await lambda.init();
    expect(init.ok, init.errorMessage).toBe(true);
    // The wrapper announced itself when the redirect wrapped the handler (init).
    expect(extension?.done()).toEqual({ requestId: '-', queued: 0 });
    const first = await invoke(lambda, { n: 1 }, 50);
    expect(extension?.done()).toEqual({ requestId: first.requestId, queued: 0 });
    const second = await invoke(lambda, { n: 2 }, 0);
    expect(first.status, first.payload.toString()).toBe('success');
    expect(first.json()).toEqual({ style: 'cjs', echo: { n: 1 }, requestId: first.requestId });
    expect(second.json()).toMatchObject({ echo: { n: 2 }, requestId: second.requestId });
    expect(extension?.done()).toEqual({ requestId: second.requestId, queued: 0 });
    // Both ready lines were found in time.
    expect(logs.filter((line) => line.includes('bulkhead: sync failed'))).toEqual([]);
  });

  it('carries on when the ready line never comes, bounded by a quarter of the remaining time', async () => {
    const logs: string[] = [];
    const lambda = sandbox({ original: 'index.handler', onLog: (line) => logs.push(line.line) });
    const result = await invoke(lambda, { n: 9 }, 'never', 400);
    expect(result.status, result.payload.toString()).toBe('success');
    expect(result.json()).toMatchObject({ echo: { n: 9 }, requestId: result.requestId });
    const failed = logs.find(
      (line) =>
        line.includes('bulkhead: sync failed (invocation continues)') && line.includes(result.requestId),
    );
    // A 400 ms invocation waits a quarter of what is left, not the default second.
    const waitedMs = Number(/ready within (\d+) ms/.exec(failed ?? '')?.[1]);
    expect(waitedMs, failed).toBeGreaterThan(50);
    expect(waitedMs).toBeLessThanOrEqual(100);
    expect(result.responseMs).toBeGreaterThanOrEqual(waitedMs - 5);
    expect(extensionOf.get(lambda)?.done()).toEqual({ requestId: result.requestId, queued: 0 });
  });

  it('loads an ES module handler from a nested folder through import()', async () => {
    const lambda = sandbox({ original: 'src/esm/app.handler' });
    const result = await invoke(lambda, { n: 3 });
    expect(result.status, result.payload.toString()).toBe('success');
    expect(result.json()).toEqual({ style: 'esm', echo: { n: 3 }, requestId: result.requestId });
  });

  it('loads an ES module with top-level await through a deferred import()', async () => {
    const lambda = sandbox({ original: 'tla.handler' });
    const first = await invoke(lambda, {});
    const second = await invoke(lambda, {});
    expect(first.status, first.payload.toString()).toBe('success');
    expect(first.json()).toEqual({ style: 'top-level-await', requestId: first.requestId });
    expect(second.json()).toEqual({ style: 'top-level-await', requestId: second.requestId });
  });

  it('keeps an ES module streaming handler streaming', async () => {
    const lambda = sandbox({ original: 'stream-esm.handler' });
    const result = await invoke(lambda, { n: 4 });
    expect(result.status, result.payload.toString()).toBe('success');
    expect(result.payload.toString()).toBe('esm-streamed:4');
  });

  it('a streaming ES module with top-level await needs BULKHEAD_ORIGINAL_HANDLER_STREAMING=1, and says so', async () => {
    const unflagged = sandbox({ original: 'stream-tla.handler' });
    const refused = await invoke(unflagged, { n: 5 });
    expect(refused.status).not.toBe('success');
    expect(refused.payload.toString()).toContain('BULKHEAD_ORIGINAL_HANDLER_STREAMING=1');

    const flagged = sandbox({
      original: 'stream-tla.handler',
      env: { BULKHEAD_ORIGINAL_HANDLER_STREAMING: '1' },
    });
    const result = await invoke(flagged, { n: 5 });
    expect(result.status, result.payload.toString()).toBe('success');
    expect(result.payload.toString()).toBe('tla-streamed:5');
  });

  it('keeps a callback handler working on nodejs24.x, where the runtime refuses three declared parameters', async () => {
    // Without Bulkhead the runtime refuses it: this is what the two-parameter wrapper avoids.
    const bare = sandbox({ handler: 'callback.handler', runtimeName: 'nodejs24.x' });
    const refused = await invoke(bare, {});
    expect(refused.status).not.toBe('success');
    expect(refused.payload.toString()).toMatch(/callback/i);

    const wrapped = sandbox({ original: 'callback.handler', runtimeName: 'nodejs24.x' });
    const result = await invoke(wrapped, {});
    expect(result.status, result.payload.toString()).toBe('success');
    expect(result.json()).toEqual({ style: 'callback' });
  });

  it('keeps a response-streaming handler streaming', async () => {
    const lambda = sandbox({ original: 'stream.handler' });
    const result = await invoke(lambda, { n: 7 });
    expect(result.status, result.payload.toString()).toBe('success');
    expect(result.payload.toString()).toBe('streamed:7');
  });

  it('reports a missing handler the way the runtime does', async () => {
    const lambda = sandbox({ original: 'absent.handler' });
    const result = await invoke(lambda, {});
    expect(result.status).not.toBe('success');
    expect(result.payload.toString()).toContain('Runtime.ImportModuleError');
  });

  it('installs enforcement without the preload and tags the deny record with the request id', async () => {
    const state = mkdtempSync(join(tmpdir(), 'bulkhead-state-'));
    temps.push(state);
    const spool = join(state, 'spool.ndjson');
    const lambda = sandbox({
      original: 'connect.handler',
      env: { BULKHEAD_FAIL_MODE: 'closed', BULKHEAD_REPORT: spool, BULKHEAD_STATE_DIR: state },
    });
    const result = await invoke(lambda, { port: targetPort });
    expect(result.status, result.payload.toString()).toBe('success');
    expect(result.json()).toEqual({ error: 'ERR_BULKHEAD_DENIED' });
    // The wrapper flushed before the runtime answered: the record is on disk now.
    const records = readFileSync(spool, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { invocationId?: string; destination: { port?: number } });
    expect(
      records.some((r) => r.invocationId === result.requestId && r.destination.port === targetPort),
    ).toBe(true);
  });

  it('with the preload in NODE_OPTIONS, as the exec wrapper sets it: one installation, the would-deny tagged', async () => {
    const state = mkdtempSync(join(tmpdir(), 'bulkhead-state-'));
    temps.push(state);
    const spool = join(state, 'spool.ndjson');
    const logs: string[] = [];
    const lambda = sandbox({
      original: 'connect.handler',
      env: {
        // Observe: fail-closed would also deny the runtime client's own native addon (a shim matter).
        BULKHEAD_FAIL_MODE: 'observe',
        BULKHEAD_REPORT: spool,
        BULKHEAD_STATE_DIR: state,
        NODE_OPTIONS: `--require ${join(root, 'dist', 'register.cjs')}`,
      },
      onLog: (line) => logs.push(line.line),
    });
    const result = await invoke(lambda, { port: targetPort });
    expect(result.status, result.payload.toString()).toBe('success');
    expect(result.json()).toEqual({ reached: 'reached' });
    expect(logs.filter((line) => line.includes('bulkhead: installed'))).toHaveLength(1);
    const records = readFileSync(spool, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { invocationId?: string });
    expect(records.some((r) => r.invocationId === result.requestId)).toBe(true);
  });
});
