// The emulator itself, against the platform facts it must reproduce
// (/work/shared/reference/lambda-platform.md §1–§3, §9): real extension and runtime processes,
// aws-lambda-ric as the runtime client, RIE's status codes and error types.
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { LambdaEmulator, SandboxInitError, type SandboxOptions, startSandbox } from '../../emulator/index.js';
import { FIXTURES } from './harness.js';

const PROBE = join(FIXTURES, 'extensions', 'probe');
const CJS_FUNCTION = join(FIXTURES, 'functions', 'cjs');

const temps: string[] = [];
const emulators: LambdaEmulator[] = [];

afterEach(async () => {
  await Promise.all(emulators.splice(0).map((e) => e.close()));
});
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

/** An /opt with the probe extension under each of `names`. */
function optWith(names: string[]): { opt: string; log: string } {
  const opt = mkdtempSync(join(tmpdir(), 'emulator-opt-'));
  temps.push(opt);
  mkdirSync(join(opt, 'extensions'));
  for (const name of names) {
    copyFileSync(PROBE, join(opt, 'extensions', name));
    chmodSync(join(opt, 'extensions', name), 0o755);
  }
  return { opt, log: join(opt, 'probe.ndjson') };
}

function probeLog(file: string): Record<string, unknown>[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function emulator(options: Partial<SandboxOptions>): LambdaEmulator {
  const instance = new LambdaEmulator({ taskRoot: CJS_FUNCTION, handler: 'index.handler', ...options });
  emulators.push(instance);
  return instance;
}

function raw(
  runtimeApi: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const [host, port] = runtimeApi.split(':');
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), method, path, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        text += d;
      });
      res.on('end', () => {
        let parsed: Record<string, unknown> = {};
        try {
          parsed = JSON.parse(text) as Record<string, unknown>;
        } catch {
          parsed = { text };
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

function processState(pid: number): string {
  // Field 3 of /proc/<pid>/stat: R running, S sleeping, T stopped.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '?';
}

describe('lifecycle', () => {
  it('launches extensions, starts the runtime after registration, invokes, freezes, shuts down', async () => {
    const { opt, log } = optWith(['probe']);
    const sandbox = emulator({
      optDir: opt,
      env: { PROBE_LOG: log, PROBE_MODE: 'slow-register', PROBE_DELAY_MS: '300' },
    });
    await sandbox.start();
    const init = await sandbox.init();
    expect(init).toMatchObject({ ok: true });

    const result = await sandbox.invoke({ action: 'env' });
    expect(result.status).toBe('success');
    const body = result.json<{ env: Record<string, string>; execArgv: string[]; startedAt: number }>();
    const registered = probeLog(log).find((e) => e.event === 'registered');
    // The runtime process began only after the extension's Register arrived (1 ms: clock granularity).
    const registeredAt = sandbox.extensionTimings()[0]?.registeredAt ?? Number.POSITIVE_INFINITY;
    expect(body.startedAt).toBeGreaterThanOrEqual(registeredAt - 1);
    expect(registered?.body).toEqual({
      functionName: 'test_function',
      functionVersion: '$LATEST',
      handler: 'index.handler',
      accountId: '012345678912',
    });
    // Started as the Node bootstrap does.
    expect(body.execArgv).toEqual(['--expose-gc', '--max-http-header-size', '81920']);
    expect(body.env._HANDLER).toBe('index.handler');
    expect(body.env.AWS_LAMBDA_RUNTIME_API).toBe(sandbox.runtimeApi);
    expect(body.env.BULKHEAD_STATE_DIR).toBe(sandbox.stateDir);

    const invoke = probeLog(log).find((e) => e.event === 'INVOKE')?.body as Record<string, unknown>;
    expect(invoke).toMatchObject({
      eventType: 'INVOKE',
      requestId: result.requestId,
      invokedFunctionArn: 'arn:aws:lambda:us-east-1:012345678912:function:test_function',
    });
    expect(typeof invoke.deadlineMs).toBe('number');

    // Frozen between invocations: every process of the sandbox is stopped.
    const pids = sandbox.processIds();
    expect(pids.runtime).toBeDefined();
    expect(processState(pids.runtime as number)).toBe('T');
    expect(processState(pids.extensions.probe as number)).toBe('T');

    const second = await sandbox.invoke({ n: 2 });
    expect(second.coldStart).toBe(false);
    expect(second.json<{ pid: number }>().pid).toBe(pids.runtime);

    const shutdown = await sandbox.shutdown();
    expect(shutdown.budgetMs).toBe(2000);
    expect(shutdown.extensions).toEqual([
      expect.objectContaining({
        name: 'probe',
        subscribed: true,
        exitedInTime: true,
        exit: { code: 0, signal: null },
      }),
    ]);
    const shutdownEvent = probeLog(log).find((e) => e.event === 'SHUTDOWN')?.body as Record<string, unknown>;
    expect(shutdownEvent).toMatchObject({ eventType: 'SHUTDOWN', shutdownReason: 'spindown' });
  });

  it('gives extensions the function environment without runtime-only variables', async () => {
    const { opt, log } = optWith(['probe']);
    const sandbox = emulator({
      optDir: opt,
      env: { PROBE_LOG: log, PROBE_DUMP_ENV: '1', CUSTOMER_VAR: 'x' },
    });
    await sandbox.start();
    expect((await sandbox.init()).ok).toBe(true);
    const keys = probeLog(log).find((e) => e.event === 'env')?.keys as string[];
    expect(keys).toContain('AWS_LAMBDA_RUNTIME_API');
    expect(keys).toContain('CUSTOMER_VAR');
    expect(keys).toContain('AWS_LAMBDA_FUNCTION_NAME');
    for (const hidden of ['_HANDLER', 'AWS_LAMBDA_LOG_GROUP_NAME', 'LAMBDA_TASK_ROOT', 'AWS_EXECUTION_ENV'])
      expect(keys).not.toContain(hidden);
  });

  it('passes the bootstrap command line through AWS_LAMBDA_EXEC_WRAPPER', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'emulator-wrapper-'));
    temps.push(dir);
    const wrapper = join(dir, 'wrapper');
    const argvFile = join(dir, 'argv');
    writeFileSync(
      wrapper,
      `#!/bin/sh\nprintf '%s\\n' "$@" > "${argvFile}"\nexport WRAPPED=yes\nexec "$@"\n`,
      { mode: 0o755 },
    );
    const sandbox = emulator({ env: { AWS_LAMBDA_EXEC_WRAPPER: wrapper } });
    const result = await sandbox.invoke({ action: 'env' });
    expect(result.status).toBe('success');
    expect(result.json<{ env: Record<string, string> }>().env.WRAPPED).toBe('yes');
    const argv = readFileSync(argvFile, 'utf8').trim().split('\n');
    expect(argv[0]).toBe(process.execPath);
    expect(argv.slice(1, 4)).toEqual(['--expose-gc', '--max-http-header-size', '81920']);
    expect(argv[4]).toMatch(/aws-lambda-ric[/\\]index\.mjs$/);
  });

  it('fails init when the exec wrapper is missing or not executable', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'emulator-wrapper-'));
    temps.push(dir);
    const missing = emulator({ env: { AWS_LAMBDA_EXEC_WRAPPER: join(dir, 'nope') } });
    const result = await missing.invoke({});
    expect(result).toMatchObject({ status: 'failure', errorType: 'Runtime.ExitError' });
    writeFileSync(join(dir, 'plain'), '#!/bin/sh\nexec "$@"\n', { mode: 0o644 });
    const plain = emulator({ env: { AWS_LAMBDA_EXEC_WRAPPER: join(dir, 'plain') } });
    await plain.start();
    expect(await plain.init()).toMatchObject({
      ok: false,
      errorMessage: expect.stringContaining('not an executable'),
    });
  });
});

describe('invoke results', () => {
  it('reports handler errors, timeouts and runtime exits, and resets after the last two', async () => {
    const sandbox = emulator({ timeoutMs: 1500 });
    const failed = await sandbox.invoke({ action: 'throw', message: 'bad input' });
    expect(failed).toMatchObject({ status: 'error', errorType: 'TypeError', functionError: 'Unhandled' });
    expect(failed.json()).toMatchObject({ errorType: 'TypeError', errorMessage: 'bad input' });
    expect(failed.reset).toBeUndefined();

    const slow = await sandbox.invoke({ action: 'sleep', ms: 5000 });
    expect(slow.status).toBe('timeout');
    expect(slow.json<{ errorMessage: string }>().errorMessage).toContain('Task timed out after 1.50 seconds');
    expect(slow.reset).toBe('timeout');

    const after = await sandbox.invoke({});
    expect(after).toMatchObject({ status: 'success', coldStart: true });

    const exited = await sandbox.invoke({ action: 'exit', code: 4 });
    expect(exited).toMatchObject({ status: 'failure', errorType: 'Runtime.ExitError', reset: 'failure' });
    expect(sandbox.initCountValue).toBe(2);
    expect((await sandbox.invoke({})).coldStart).toBe(true);
    expect(sandbox.initCountValue).toBe(3);
  });

  it('passes trace id, client context and cognito identity as the runtime API headers', async () => {
    const sandbox = emulator({});
    const traceId = 'Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1';
    const result = await sandbox.invoke(
      { hello: 'world' },
      {
        traceId,
        clientContext: { custom: { tenant: 't1' } },
        cognitoIdentity: { cognitoIdentityId: 'id-1', cognitoIdentityPoolId: 'pool-1' },
        functionArn: 'arn:aws:lambda:us-east-1:012345678912:function:test_function:live',
      },
    );
    expect(result.json()).toMatchObject({
      echo: { hello: 'world' },
      requestId: result.requestId,
      arn: 'arn:aws:lambda:us-east-1:012345678912:function:test_function:live',
      trace: traceId,
      clientContext: expect.objectContaining({ custom: { tenant: 't1' } }),
      identity: expect.objectContaining({ cognitoIdentityId: 'id-1', cognitoIdentityPoolId: 'pool-1' }),
    });
  });

  it('collects a streamed response', async () => {
    const sandbox = emulator({ taskRoot: join(FIXTURES, 'functions', 'streaming') });
    const result = await sandbox.invoke({ parts: ['one ', 'two ', 'three'] });
    expect(result.status, sandbox.logText()).toBe('success');
    expect(result.payload.toString('utf8')).toContain('one two three');
  });

  it('answers an oversized response with 413 RequestEntityTooLarge', async () => {
    const sandbox = emulator({});
    const result = await sandbox.invoke({ action: 'big', bytes: 7 * 1024 * 1024 });
    expect(result.status).not.toBe('success');
    expect(sandbox.logText('runtime')).toMatch(/413|RequestEntityTooLarge|Exceeded maximum/);
  });
});

describe('extension failures', () => {
  it('treats an extension that exits before registering as a crash', async () => {
    const { opt, log } = optWith(['probe']);
    const sandbox = emulator({ optDir: opt, env: { PROBE_LOG: log, PROBE_MODE: 'exit-before-register' } });
    await expect(startSandbox(sandbox.options)).rejects.toThrow(SandboxInitError);
    await sandbox.start();
    expect(await sandbox.init()).toMatchObject({ ok: false, errorType: 'Extension.Crash' });
  });

  it('fails init on /extension/init/error with the reported type', async () => {
    const { opt, log } = optWith(['probe']);
    const sandbox = emulator({ optDir: opt, env: { PROBE_LOG: log, PROBE_MODE: 'init-error' } });
    await sandbox.start();
    expect(await sandbox.init()).toMatchObject({ ok: false, errorType: 'Extension.ProbeFailed' });
  });

  it('enforces the init limit', async () => {
    const { opt, log } = optWith(['probe']);
    const sandbox = emulator({
      optDir: opt,
      initTimeoutMs: 400,
      env: { PROBE_LOG: log, PROBE_MODE: 'slow-register', PROBE_DELAY_MS: '5000' },
    });
    await sandbox.start();
    expect(await sandbox.init()).toMatchObject({ ok: false, errorType: 'Sandbox.Timeout' });
  });

  it('refuses a file in extensions/ that cannot be executed', async () => {
    const { opt } = optWith([]);
    writeFileSync(join(opt, 'extensions', 'not-executable'), '#!/bin/sh\n', { mode: 0o644 });
    const sandbox = emulator({ optDir: opt });
    await sandbox.start();
    expect(await sandbox.init()).toMatchObject({ ok: false, errorType: 'Extension.LaunchError' });
  });

  it('resets the sandbox when an extension exits during an invocation', async () => {
    const { opt, log } = optWith(['probe']);
    const sandbox = emulator({ optDir: opt, env: { PROBE_LOG: log, PROBE_MODE: 'crash-on-invoke' } });
    const result = await sandbox.invoke({});
    expect(result.reset).toBe('failure');
    const next = await sandbox.invoke({});
    expect(next.coldStart).toBe(true);
    expect(sandbox.initCountValue).toBe(2);
  });

  it('SIGKILLs an extension that ignores SHUTDOWN once the budget is spent', async () => {
    const { opt, log } = optWith(['good', 'stubborn']);
    const sandbox = emulator({
      optDir: opt,
      // Only the copy named "stubborn" ignores SHUTDOWN; it is killed when the 2,000 ms budget is spent.
      env: { PROBE_LOG: log, PROBE_MODE_stubborn: 'ignore-shutdown' },
    });
    await sandbox.invoke({});
    const shutdown = await sandbox.shutdown();
    expect(shutdown.extensions).toEqual([
      expect.objectContaining({ name: 'good', exitedInTime: true, exit: { code: 0, signal: null } }),
      expect.objectContaining({
        name: 'stubborn',
        exitedInTime: false,
        exit: { code: null, signal: 'SIGKILL' },
      }),
    ]);
    expect(
      probeLog(log)
        .filter((e) => e.event === 'SHUTDOWN')
        .map((e) => e.name)
        .sort(),
    ).toEqual(['good', 'stubborn']);
  });
});

describe('API error semantics', () => {
  it('answers extension API misuse with RIE error types', async () => {
    const { opt, log } = optWith(['probe']);
    const sandbox = emulator({ optDir: opt, env: { PROBE_LOG: log, PROBE_MODE: 'check-errors' } });
    await sandbox.start();
    expect((await sandbox.init()).ok).toBe(true);
    const before = probeLog(log).find((e) => e.event === 'errors-before')?.answers as Record<
      string,
      { status: number; body: { errorType: string } }
    >;
    expect(before.registerNoName).toMatchObject({
      status: 403,
      body: { errorType: 'Extension.InvalidExtensionName' },
    });
    expect(before.registerBadJson).toMatchObject({
      status: 403,
      body: { errorType: 'InvalidRequestFormat' },
    });
    expect(before.registerBadEvent).toMatchObject({
      status: 403,
      body: { errorType: 'Extension.InvalidEventType' },
    });
    expect(before.internalShutdown).toMatchObject({
      status: 403,
      body: { errorType: 'Extension.InvalidEventType' },
    });
    expect(before.nextNoId).toMatchObject({
      status: 403,
      body: { errorType: 'Extension.MissingExtensionIdentifier' },
    });
    expect(before.nextBadId).toMatchObject({
      status: 403,
      body: { errorType: 'Extension.InvalidExtensionIdentifier' },
    });
    expect(before.nextUnknownId).toMatchObject({
      status: 403,
      body: { errorType: 'Extension.UnknownExtensionIdentifier' },
    });
    const after = probeLog(log).find((e) => e.event === 'errors-after')?.answers as Record<
      string,
      { status: number; body: { errorType: string } }
    >;
    expect(after.registerTwice).toMatchObject({
      status: 403,
      body: { errorType: 'Extension.InvalidExtensionState' },
    });
    expect(after.initErrorNoType).toMatchObject({
      status: 403,
      body: { errorType: 'Extension.MissingHeader' },
    });
    expect(after.telemetryBadSchema).toMatchObject({ status: 400, body: { errorType: 'ValidationError' } });
    expect(after.telemetryBadHost).toMatchObject({ status: 400, body: { errorType: 'ValidationError' } });

    // After init, registration is closed; unknown routes are 404; runtime calls out of order fail.
    const api = sandbox.runtimeApi;
    expect(
      await raw(
        api,
        'POST',
        '/2020-01-01/extension/register',
        { 'Lambda-Extension-Name': 'late' },
        '{"events":[]}',
      ),
    ).toMatchObject({ status: 403, body: { errorType: 'Extension.RegistrationClosed' } });
    expect((await raw(api, 'GET', '/2019-01-01/nothing')).status).toBe(404);
    expect(
      await raw(
        api,
        'POST',
        '/2018-06-01/runtime/invocation/00000000-0000-4000-8000-000000000000/response',
        {},
        '{}',
      ),
    ).toMatchObject({ status: 400, body: { errorType: 'InvalidRequestID' } });
    expect(await raw(api, 'POST', '/2018-06-01/runtime/init/error', {}, '{}')).toMatchObject({
      status: 403,
      body: { errorType: 'InvalidStateTransition' },
    });
    expect((await raw(api, 'POST', '/2018-06-01/runtime/invocation/next')).status).toBe(405);
  });

  it('answers hostile requests with a client error and keeps serving (property)', async () => {
    const sandbox = emulator({});
    await sandbox.start();
    const api = sandbox.runtimeApi;
    const paths = fc.oneof(
      fc.constantFrom(
        '/2018-06-01/runtime/invocation/next',
        '/2018-06-01/runtime/invocation/%E0%A4%A/response',
        '/2018-06-01/runtime/init/error',
        '/2020-01-01/extension/register',
        '/2020-01-01/extension/event/next',
        '/2020-01-01/extension/init/error',
        '/2022-07-01/telemetry',
      ),
      fc.webPath(),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'),
        paths,
        fc.string({ maxLength: 300 }),
        fc.dictionary(
          fc.constantFrom(
            'Lambda-Extension-Name',
            'Lambda-Extension-Identifier',
            'Lambda-Extension-Function-Error-Type',
          ),
          fc.stringMatching(/^[\x21-\x7e]{0,40}$/),
        ),
        async (method, path, body, headers) => {
          const answer = await raw(api, method, path.startsWith('/') ? path : `/${path}`, headers, body);
          expect(answer.status).toBeGreaterThanOrEqual(400);
          expect(answer.status).toBeLessThan(500);
        },
      ),
      { numRuns: 150 },
    );
    expect((await sandbox.init()).ok).toBe(true);
  });

  it('rejects a response mode other than streaming', async () => {
    const sandbox = emulator({});
    await sandbox.start();
    await sandbox.init();
    const answer = await raw(
      sandbox.runtimeApi,
      'POST',
      '/2018-06-01/runtime/invocation/abc/response',
      { 'Lambda-Runtime-Function-Response-Mode': 'buffered-please' },
      '{}',
    );
    expect(answer).toMatchObject({ status: 400, body: { errorType: 'InvalidFunctionResponseMode' } });
  });
});

describe('telemetry', () => {
  it('delivers platform.runtimeDone for the request before the invoke phase ends', async () => {
    const { opt, log } = optWith(['probe']);
    const sandbox = emulator({ optDir: opt, env: { PROBE_LOG: log, PROBE_MODE: 'telemetry' } });
    const result = await sandbox.invoke({});
    expect(result.status).toBe('success');
    const entries = probeLog(log);
    expect(entries.find((e) => e.event === 'subscribed')).toMatchObject({ status: 200, body: '"OK"' });
    // The probe only calls next after it saw runtimeDone, and the phase waited for it.
    expect(entries.find((e) => e.event === 'runtime-done-seen')?.requestId).toBe(result.requestId);
    expect(
      entries.some(
        (e) =>
          e.event === 'telemetry' && e.type === 'platform.runtimeDone' && e.requestId === result.requestId,
      ),
    ).toBe(true);
  });

  it('answers 202 Telemetry.NotSupported in not-supported mode', async () => {
    const { opt, log } = optWith(['probe']);
    const sandbox = emulator({
      optDir: opt,
      telemetry: 'not-supported',
      env: { PROBE_LOG: log, PROBE_MODE: 'telemetry' },
    });
    await sandbox.start();
    await sandbox.init();
    expect(probeLog(log).find((e) => e.event === 'subscribed')).toMatchObject({ status: 202 });
  });
});
