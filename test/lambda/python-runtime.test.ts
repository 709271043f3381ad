// The emulator's Python runtimes (python3.12, python3.13): the real `awslambdaric` from PyPI as the
// runtime client, started as Lambda's managed Python bootstrap starts it
// (`[wrapper] <python> -m awslambdaric <_HANDLER>`, see LambdaEmulator.startRuntime), real
// processes on loopback. Needs `.venv/py3.12` or `.venv/py3.13` with awslambdaric
// (`node scripts/python.mjs setup`); without one the file is skipped and says why.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  findPythonRuntime,
  LambdaEmulator,
  type PythonVersion,
  type SandboxOptions,
} from '../../emulator/index.js';
import { packageRoot } from '../../layers/build.js';
import { FIXTURES } from './harness.js';

const FUNCTION_DIR = join(FIXTURES, 'python');
const WRAPPER = join(FUNCTION_DIR, 'wrapper.sh');
const found = findPythonRuntime();

interface Echo {
  event: unknown;
  invocations: number;
  pid: number;
  requestId: string;
  functionName: string;
  functionVersion: string;
  invokedFunctionArn: string;
  memoryLimitInMb: string;
  remainingMs: number;
  executionEnv: string | null;
  handlerEnv: string | null;
  taskRoot: string | null;
  path: string | null;
  pythonPathEnv: string | null;
  cwd: string;
  sysPath0: string;
  pythonVersion: string;
  executable: string;
  wrapped: string | null;
  wrapperArgv: string | null;
}

const emulators: LambdaEmulator[] = [];

afterEach(async () => {
  await Promise.all(emulators.splice(0).map((e) => e.close()));
});

function python(options: Partial<SandboxOptions> = {}): LambdaEmulator {
  const instance = new LambdaEmulator({
    taskRoot: FUNCTION_DIR,
    handler: 'app.handler',
    runtimeName: `python${found.version ?? '3.13'}` as SandboxOptions['runtimeName'],
    functionName: 'py-fn',
    memoryMb: 512,
    ...options,
  });
  emulators.push(instance);
  return instance;
}

function processState(pid: number): string {
  // Field 3 of /proc/<pid>/stat: R running, S sleeping, T stopped.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '?';
}

describe.skipIf(found.python === undefined)(
  found.python === undefined
    ? `Python runtime (skipped: ${found.reason})`
    : `Python runtime (CPython ${found.version}, awslambdaric ${found.awslambdaric})`,
  () => {
    it('inits, then invokes the handler with the event and a Lambda context', async () => {
      const sandbox = python();
      await sandbox.start();
      const init = await sandbox.init();
      expect(init).toMatchObject({ ok: true });
      const result = await sandbox.invoke({ amount: 42, currency: 'EUR' });
      expect(result).toMatchObject({ status: 'success', coldStart: false });
      expect(result.functionError).toBeUndefined();
      const echo = result.json<Echo>();
      expect(echo).toMatchObject({
        event: { amount: 42, currency: 'EUR' },
        invocations: 1,
        requestId: result.requestId,
        functionName: 'py-fn',
        functionVersion: '$LATEST',
        invokedFunctionArn: sandbox.functionArn,
        memoryLimitInMb: '512',
        executionEnv: `AWS_Lambda_python${found.version}`,
        handlerEnv: 'app.handler',
        taskRoot: FUNCTION_DIR,
        cwd: FUNCTION_DIR,
        // -m puts the working folder (the function folder) first, as bootstrap.py puts LAMBDA_TASK_ROOT.
        sysPath0: FUNCTION_DIR,
        pythonVersion: found.version,
        executable: found.python,
        // Lambda's bootstrap starts the interpreter without PYTHONPATH.
        pythonPathEnv: null,
        wrapped: null,
      });
      expect(echo.remainingMs).toBeGreaterThan(0);
      expect(echo.remainingMs).toBeLessThanOrEqual(3_000);
      // The interpreter's folder heads PATH, as /var/lang/bin does on Lambda.
      expect(echo.path?.split(':')[0]).toBe(dirname(found.python ?? ''));
    });

    it.for(['3.12', '3.13'] as PythonVersion[])(
      'runs python%s with that interpreter',
      async (version, ctx) => {
        const runtime = findPythonRuntime(version);
        if (runtime.python === undefined) return ctx.skip(runtime.reason);
        const sandbox = python({ runtimeName: `python${version}` as SandboxOptions['runtimeName'] });
        const result = await sandbox.invoke({});
        expect(result).toMatchObject({ status: 'success', coldStart: true });
        expect(result.json<Echo>()).toMatchObject({
          pythonVersion: version,
          executable: runtime.python,
          executionEnv: `AWS_Lambda_python${version}`,
        });
      },
    );

    it('returns the error document awslambdaric posts when the handler raises, and stays warm', async () => {
      const sandbox = python({ handler: 'app.fail' });
      const failed = await sandbox.invoke({ card: '4242' });
      expect(failed).toMatchObject({
        status: 'error',
        functionError: 'Unhandled',
        errorType: 'PaymentDeclinedError',
      });
      expect(failed.reset).toBeUndefined();
      const document = failed.json<{
        errorType: string;
        errorMessage: string;
        requestId: string;
        stackTrace: string[];
      }>();
      expect(document).toMatchObject({
        errorType: 'PaymentDeclinedError',
        errorMessage: 'card 4242 declined',
        requestId: failed.requestId,
      });
      expect(document.stackTrace.join('')).toContain(`${join(FUNCTION_DIR, 'app.py')}", line`);
      expect(sandbox.logText('runtime')).toContain('[ERROR] PaymentDeclinedError: card 4242 declined');

      const again = await sandbox.invoke({ card: '5555' });
      expect(again).toMatchObject({ status: 'error', coldStart: false });
      expect(again.json<{ errorMessage: string }>().errorMessage).toBe('card 5555 declined');
    });

    it('fails init with Runtime.ImportModuleError when the handler module does not import', async () => {
      const sandbox = python({ handler: 'broken.handler' });
      await sandbox.start();
      expect(await sandbox.init()).toMatchObject({
        ok: false,
        errorType: 'Runtime.ImportModuleError',
        errorMessage: expect.stringContaining("Unable to import module 'broken'"),
      });
      const result = await sandbox.invoke({});
      expect(result).toMatchObject({ status: 'failure', errorType: 'Runtime.ImportModuleError' });
    });

    it('captures print, stderr and logging output of the function', async () => {
      const sandbox = python({ handler: 'app.chatty' });
      const result = await sandbox.invoke({ tag: 'receipt-7' });
      expect(result.json()).toEqual({ printed: true });
      const lines = sandbox.logs.filter((l) => l.source === 'runtime');
      expect(lines).toContainEqual({
        source: 'runtime',
        stream: 'stdout',
        line: 'hello from print receipt-7',
      });
      expect(lines).toContainEqual({ source: 'runtime', stream: 'stderr', line: 'to stderr receipt-7' });
      // awslambdaric's log format: level, time, request id, message.
      const warning = lines.find((l) => l.line.includes('logged warning receipt-7'));
      expect(warning?.line).toMatch(
        new RegExp(`^\\[WARNING\\]\\t\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\t${result.requestId}\\tlogged warning`),
      );
    });

    it('freezes the runtime between invokes and thaws the same process for the next one', async () => {
      const sandbox = python();
      await sandbox.start();
      expect((await sandbox.init()).ok).toBe(true);
      const pid = sandbox.processIds().runtime;
      expect(pid).toBeDefined();
      expect(sandbox.isFrozen).toBe(true);
      expect(processState(pid ?? 0)).toBe('T');

      const first = await sandbox.invoke({ n: 1 });
      expect(processState(pid ?? 0)).toBe('T');
      const second = await sandbox.invoke({ n: 2 });
      expect(second).toMatchObject({ status: 'success', coldStart: false });
      expect(second.json<Echo>()).toMatchObject({
        event: { n: 2 },
        invocations: 2,
        pid: first.json<Echo>().pid,
      });
      expect(sandbox.initCountValue).toBe(1);
    });

    it('execs AWS_LAMBDA_EXEC_WRAPPER with the interpreter command line as its arguments', async () => {
      const sandbox = python({ env: { AWS_LAMBDA_EXEC_WRAPPER: WRAPPER } });
      const result = await sandbox.invoke({});
      expect(result.status).toBe('success');
      const echo = result.json<Echo>();
      expect(echo.wrapped).toBe('yes');
      expect(echo.wrapperArgv?.split('\n')).toEqual([
        found.python,
        join(packageRoot(), 'emulator', 'python-bootstrap.py'),
      ]);
      expect(echo.executionEnv).toBe(`AWS_Lambda_python${found.version}`);
      // exec, not a child: the wrapper's process is the runtime.
      expect(echo.pid).toBe(sandbox.processIds().runtime);
    });

    it('loads the handler _HANDLER names when the interpreter starts, so a wrapper can redirect it', async () => {
      const sandbox = python({ env: { AWS_LAMBDA_EXEC_WRAPPER: join(FUNCTION_DIR, 'redirect-wrapper.sh') } });
      const result = await sandbox.invoke({ tag: 'redirected' });
      expect(result.status).toBe('success');
      expect(result.json()).toEqual({ printed: true });
    });

    it('fails init when the exec wrapper is missing or not executable', async () => {
      const missing = python({ env: { AWS_LAMBDA_EXEC_WRAPPER: join(FUNCTION_DIR, 'nope.sh') } });
      await missing.start();
      expect(await missing.init()).toMatchObject({
        ok: false,
        errorType: 'Runtime.ExitError',
        errorMessage: `${join(FUNCTION_DIR, 'nope.sh')}: does not exist`,
      });
      // app.py is a regular file without exec bits.
      const plain = python({ env: { AWS_LAMBDA_EXEC_WRAPPER: join(FUNCTION_DIR, 'app.py') } });
      await plain.start();
      expect(await plain.init()).toMatchObject({
        ok: false,
        errorType: 'Runtime.ExitError',
        errorMessage: `${join(FUNCTION_DIR, 'app.py')}: is not an executable`,
      });
    });

    it('reports an interpreter it cannot start or find', async () => {
      const absent = python({ pythonPath: join(FUNCTION_DIR, 'no-such-python') });
      const result = await absent.invoke({});
      expect(result).toMatchObject({ status: 'failure', errorType: 'Runtime.ExitError' });
      expect(result.json<{ errorMessage: string }>().errorMessage).toContain(
        'Runtime exited with a launch error',
      );

      const unknown = python({ runtimeName: 'python3.99' });
      await unknown.start();
      expect(await unknown.init()).toMatchObject({
        ok: false,
        errorType: 'Emulator.PythonNotFound',
        errorMessage: expect.stringContaining('.venv/py3.99 does not exist'),
      });
    });
  },
);
