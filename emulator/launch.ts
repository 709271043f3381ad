// How the sandbox's processes are started: the environment each one sees (the function's variables,
// the runtime-only ones, what extensions are not given, §8.2), the runtime's command line as the
// managed runtime's bootstrap builds it (Node with aws-lambda-ric, Python with awslambdaric through
// python-bootstrap.py, an `AWS_LAMBDA_EXEC_WRAPPER` in front), and which files of the extensions
// folder are launched.
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, readdir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { packageRoot } from '../layers/package-root.js';
import type { Fatal, ResolvedPython, RuntimeName, SandboxOptions } from './types.js';

/** Variables the runtime gets and extensions do not (besides every `_`-prefixed one). */
const EXTENSION_ONLY_DROPPED = new Set([
  'AWS_EXECUTION_ENV',
  'AWS_LAMBDA_LOG_GROUP_NAME',
  'AWS_LAMBDA_LOG_STREAM_NAME',
  'AWS_XRAY_CONTEXT_MISSING',
  'AWS_XRAY_DAEMON_ADDRESS',
  'LAMBDA_RUNTIME_DIR',
  'LAMBDA_TASK_ROOT',
]);
/** Node bootstrap flags of the managed runtime (`/var/runtime/bootstrap`). */
const BOOTSTRAP_NODE_FLAGS = ['--expose-gc', '--max-http-header-size', '81920'];
/**
 * Interpreter flags of the managed Python runtimes' bootstrap: none (no `-u` either; awslambdaric
 * makes stdout and stderr unbuffered itself). See `runtimeCommand` for the sources.
 */
const BOOTSTRAP_PYTHON_FLAGS: readonly string[] = [];
/** The emulator's stand-in for the Python runtime's /var/runtime/bootstrap.py. */
const PYTHON_BOOTSTRAP = join(packageRoot(), 'emulator', 'python-bootstrap.py');

/** What the environment is made of: the emulator's public face (`LambdaEmulator` is one). */
export interface SandboxIdentity {
  readonly options: SandboxOptions;
  readonly functionName: string;
  readonly region: string;
  /** The sandbox's `/tmp` stand-in. */
  readonly tmpDir: string;
  /** `BULKHEAD_STATE_DIR` given to the sandbox's processes. */
  readonly stateDir: string;
  /** `127.0.0.1:<port>`, the value of `AWS_LAMBDA_RUNTIME_API`. */
  readonly runtimeApi: string;
  readonly runtimeName: RuntimeName;
}

/** Finds `aws-lambda-ric`'s entry (`index.mjs`) from wherever this module was loaded. */
export function defaultRuntimeEntry(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('aws-lambda-ric/package.json')), 'index.mjs');
}

/** What the runtime and extensions alike see: the function's configuration, its variables, the API. */
export function baseEnv(
  sandbox: SandboxIdentity,
  python: ResolvedPython | undefined,
): Record<string, string> {
  // The runtime's language folder first, as /var/lang/bin on Lambda (node or python lives there).
  const langDir = python ? dirname(python.path) : dirname(sandbox.options.nodePath ?? process.execPath);
  const optDir = sandbox.options.optDir;
  const path = [langDir, '/usr/local/bin', '/usr/bin', '/bin', ...(optDir ? [join(optDir, 'bin')] : [])];
  return {
    PATH: path.join(delimiter),
    LANG: 'en_US.UTF-8',
    TZ: 'UTC',
    TMPDIR: sandbox.tmpDir,
    BULKHEAD_STATE_DIR: sandbox.stateDir,
    AWS_REGION: sandbox.region,
    AWS_DEFAULT_REGION: sandbox.region,
    AWS_LAMBDA_FUNCTION_NAME: sandbox.functionName,
    AWS_LAMBDA_FUNCTION_VERSION: sandbox.options.functionVersion ?? '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(sandbox.options.memoryMb ?? 3008),
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    ...(sandbox.options.env ?? {}),
    AWS_LAMBDA_RUNTIME_API: sandbox.runtimeApi,
  };
}

/** The runtime's environment: the base plus `_HANDLER`, the task and runtime folders, log names. */
export function runtimeEnv(
  sandbox: SandboxIdentity,
  python: ResolvedPython | undefined,
): Record<string, string> {
  const env: Record<string, string> = {
    ...baseEnv(sandbox, python),
    _HANDLER: sandbox.options.handler,
    LAMBDA_TASK_ROOT: sandbox.options.taskRoot,
    LAMBDA_RUNTIME_DIR: python
      ? python.runtimeDir
      : dirname(sandbox.options.runtimeEntry ?? defaultRuntimeEntry()),
    AWS_EXECUTION_ENV: `AWS_Lambda_${sandbox.runtimeName}`,
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${sandbox.functionName}`,
    AWS_LAMBDA_LOG_STREAM_NAME: `${new Date().toISOString().slice(0, 10).replaceAll('-', '/')}/[$LATEST]${randomUUID().replaceAll('-', '')}`,
  };
  // Real Lambda's Node runtime client prints no colour codes into CloudWatch either.
  if (!python) env.NO_COLOR = '1';
  return env;
}

/** Extensions see the function env minus runtime-only and `_`-prefixed keys (§8.2). */
export function extensionEnv(
  sandbox: SandboxIdentity,
  python: ResolvedPython | undefined,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(baseEnv(sandbox, python))) {
    if (key.startsWith('_') || EXTENSION_ONLY_DROPPED.has(key)) continue;
    env[key] = value;
  }
  return env;
}

/** Every regular file of the extensions folder (`extensionsDir`, else `<optDir>/extensions`), sorted. */
export async function listExtensionFiles(options: SandboxOptions): Promise<string[]> {
  const dir = options.extensionsDir ?? (options.optDir ? join(options.optDir, 'extensions') : undefined);
  if (!dir) return [];
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const files: string[] = [];
  for (const name of names.sort()) {
    const file = join(dir, name);
    const info = await stat(file).catch(() => undefined);
    if (info?.isFile()) files.push(file);
  }
  return files;
}

/**
 * The runtime's command line as the managed runtime's `/var/runtime/bootstrap` builds it:
 *
 * Node: `[wrapper] node --expose-gc --max-http-header-size 81920 <aws-lambda-ric>/index.mjs`.
 *
 * Python (python3.12, python3.13): `[wrapper] <python> <this folder>/python-bootstrap.py`. Lambda's
 * bootstrap is a bash script that exports `AWS_EXECUTION_ENV=AWS_Lambda_python3.X`, then runs
 * `exec /var/lang/bin/python3.X /var/runtime/bootstrap.py` (no interpreter flags, no `-u`), or,
 * with `AWS_LAMBDA_EXEC_WRAPPER` set, exits 127 (`<wrapper>: does not exist`) or 126
 * (`<wrapper>: is not an executable`) or runs `exec -- "$wrapper" /var/lang/bin/python3.X
 * /var/runtime/bootstrap.py`: the wrapper gets the interpreter command line as its arguments.
 * `bootstrap.py` puts `LAMBDA_TASK_ROOT` first on sys.path (and, only when PYTHONPATH is unset,
 * `/opt/python/lib/python3.X/site-packages` and `/opt/python` after it, then sets PYTHONPATH to
 * `LAMBDA_RUNTIME_DIR` for child processes) and hands `_HANDLER` to `awslambdaric`'s `main`.
 * Here python-bootstrap.py stands in for bootstrap.py: the function folder first on sys.path, then
 * awslambdaric's own `main` with the handler read from `_HANDLER` at start (so a wrapper that
 * rewrites `_HANDLER` redirects the handler, as on Lambda; Runtime API = `AWS_LAMBDA_RUNTIME_API`,
 * thread polling when `AWS_EXECUTION_ENV` is python3.12+), with the function folder as working
 * directory. Not reproduced: the `/opt/python` entries and the PYTHONPATH default.
 * Sources: /var/runtime/bootstrap and the head of bootstrap.py of the public.ecr.aws/lambda/python
 * image as printed in https://dingxiong.github.io/posts/aws-lambda (python3.10; the 3.12 and 3.13
 * images differ in the version only, as SAM-style debug bootstraps such as obscurelyme/jeeves
 * templates/scripts/python/bootstrap.sh reproduce them for any python3.X); aws/aws-lambda-base-images
 * branch python3.12 Dockerfile (LAMBDA_TASK_ROOT=/var/task, LAMBDA_RUNTIME_DIR=/var/runtime, PATH
 * with /var/lang/bin first, WORKDIR /var/task); aws/aws-lambda-python-runtime-interface-client
 * awslambdaric/__main__.py and lambda_config.py (4.x); AWS Lambda docs "Modifying the runtime
 * environment" (wrapper scripts get the interpreter path and all original arguments) and
 * "Defined runtime environment variables" (PYTHONPATH = $LAMBDA_RUNTIME_DIR);
 * open-telemetry/opentelemetry-lambda#1714 (bootstrap.py skips /opt/python when PYTHONPATH is set).
 */
export async function runtimeCommand(
  options: SandboxOptions,
  python: ResolvedPython | undefined,
): Promise<{ file: string; args: string[] } | Fatal> {
  const wrapper = options.env?.AWS_LAMBDA_EXEC_WRAPPER;
  let file: string;
  let args: string[];
  if (python) {
    file = python.path;
    args = [...BOOTSTRAP_PYTHON_FLAGS, PYTHON_BOOTSTRAP];
  } else {
    file = options.nodePath ?? process.execPath;
    args = [...BOOTSTRAP_NODE_FLAGS, options.runtimeEntry ?? defaultRuntimeEntry()];
  }
  if (wrapper) {
    // The bootstrap's own checks (exit 127 / 126 on Lambda).
    const info = await stat(wrapper).catch(() => undefined);
    if (!info) return { errorType: 'Runtime.ExitError', errorMessage: `${wrapper}: does not exist` };
    try {
      await access(wrapper, fsConstants.X_OK);
    } catch {
      return { errorType: 'Runtime.ExitError', errorMessage: `${wrapper}: is not an executable` };
    }
    args = [file, ...args];
    file = wrapper;
  }
  return { file, args };
}
