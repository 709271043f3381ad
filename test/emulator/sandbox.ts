// A local Lambda execution environment: the Runtime API (2018-06-01), the Extensions API
// (2020-01-01) and the Telemetry API (2022-07-01) on one loopback port, real extension and
// runtime processes, SIGSTOP/SIGCONT freezing between invocations, and the documented init,
// invoke, reset and shutdown rules. Behaviour follows /work/shared/reference/lambda-platform.md
// §1–§3 and §9; RIE (aws-lambda-runtime-interface-emulator) is the oracle for error codes.
//
// No test framework imports here: the demo reuses this module.
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, join } from 'node:path';
import { packageRoot } from '../../layers/build.js';
import {
  ACCEPTED,
  drainBody,
  headerValue,
  isUuid,
  MAX_CONTROL_BODY_BYTES,
  MAX_RESPONSE_PAYLOAD_BYTES,
  MAX_STREAMED_PAYLOAD_BYTES,
  parseJson,
  readBody,
  sendError,
  sendJson,
} from './http.js';
import { type ExitInfo, type LogLine, SandboxProcess } from './processes.js';
import { findPythonRuntime, type PythonVersion, probePythonAsync, pythonVersionOf } from './python.js';
import { parseSubscription, TelemetryDispatcher, type TelemetryEvent } from './telemetry.js';

export type { LogLine } from './processes.js';
export type { TelemetryEvent } from './telemetry.js';

export type ShutdownReason = 'spindown' | 'timeout' | 'failure';

/** A managed runtime's identifier: `nodejs20.x`, `nodejs22.x`, `python3.12`, `python3.13` … */
export type RuntimeName = `nodejs${number}.x` | `python${number}.${number}`;

export interface SandboxOptions {
  /** Function code directory (`LAMBDA_TASK_ROOT`, `/var/task`). */
  taskRoot: string;
  /** `_HANDLER`, e.g. `index.handler`. */
  handler: string;
  /** Unpacked layers (stand-in for `/opt`); its `extensions/` folder is launched. */
  optDir?: string;
  /** Overrides `<optDir>/extensions`. */
  extensionsDir?: string;
  /** Customer environment variables (may hold `AWS_LAMBDA_EXEC_WRAPPER`, `NODE_OPTIONS`, …). */
  env?: Record<string, string>;
  functionName?: string;
  functionVersion?: string;
  memoryMb?: number;
  region?: string;
  accountId?: string;
  /** Function timeout: bounds each invoke phase (runtime + extensions). Default 3,000 ms. */
  timeoutMs?: number;
  /** Init phase limit. Default 10,000 ms. */
  initTimeoutMs?: number;
  /** Shutdown budget with external extensions. Default 2,000 ms. */
  shutdownBudgetMs?: number;
  /** Share of the budget the runtime gets after SIGTERM. Default 300 ms (docs). */
  runtimeShutdownMs?: number;
  /** SIGSTOP the sandbox between phases. Default true. */
  freeze?: boolean;
  /** Telemetry subscriptions answered as on Lambda (`supported`) or as classic RIE (202). */
  telemetry?: 'supported' | 'not-supported';
  /** Sandbox `/tmp` stand-in; created (and removed on close) when absent. */
  tmpDir?: string;
  /** Runtime entry the Node bootstrap starts. Default `aws-lambda-ric`'s `index.mjs`. */
  runtimeEntry?: string;
  /** Node binary. Default the one running this process. */
  nodePath?: string;
  /**
   * The managed runtime emulated (and `AWS_EXECUTION_ENV`): `nodejs20.x` … starts Node with
   * `aws-lambda-ric`, `python3.12` / `python3.13` start Python with `awslambdaric` (see
   * `startRuntime`). Default `nodejs<major>.x` of the running Node.
   */
  runtimeName?: RuntimeName;
  /**
   * Python interpreter for `python*` runtimes; it must have `awslambdaric` importable. Default
   * `findPythonRuntime(<runtimeName's version>)`: the repository's `.venv/py3.X`.
   */
  pythonPath?: string;
  onLog?: (line: LogLine) => void;
}

export interface InitResult {
  ok: boolean;
  errorType?: string;
  errorMessage?: string;
  durationMs: number;
}

export interface InvokeOptions {
  /** Overrides the function timeout for this invocation. */
  timeoutMs?: number;
  traceId?: string;
  /** Client context object (sent JSON-encoded, as RIE passes it on after base64-decoding). */
  clientContext?: unknown;
  cognitoIdentity?: unknown;
  tenantId?: string;
  /** Invoked ARN with qualifier; default the unqualified function ARN. */
  functionArn?: string;
  contentType?: string;
}

export type InvokeStatus = 'success' | 'error' | 'timeout' | 'failure';

export interface InvokeResponse {
  requestId: string;
  status: InvokeStatus;
  /** Raw response bytes (the function's result, or the error document). */
  payload: Buffer;
  /** `Unhandled` (or the runtime's error type) when the function failed. */
  functionError?: string;
  errorType?: string;
  /** Milliseconds from dispatch to the runtime's response. */
  responseMs: number;
}

export interface InvokeResult extends InvokeResponse {
  /** Milliseconds from dispatch until runtime and every extension were back in `next`. */
  phaseMs: number;
  /** Whether the sandbox had to (re-)initialise for this invocation. */
  coldStart: boolean;
  init?: InitResult;
  /** Set when the sandbox was reset after this invocation (timeout, crash): the next one is cold. */
  reset?: ShutdownReason;
  /** Parses the payload as JSON (throws on non-JSON). */
  json<T = unknown>(): T;
}

export interface PendingInvoke {
  requestId: string;
  /** Resolves when the runtime posted its response (as Lambda answers the caller). */
  response: Promise<InvokeResponse>;
  /** Resolves when the invoke phase ended and the sandbox is frozen again. */
  completed: Promise<InvokeResult>;
}

export interface ExtensionShutdown {
  name: string;
  subscribed: boolean;
  /** Exited by itself before the deadline. */
  exitedInTime: boolean;
  exit: ExitInfo | undefined;
  durationMs: number;
}

export interface ShutdownResult {
  reason: ShutdownReason;
  budgetMs: number;
  runtimeExitedInTime: boolean;
  extensions: ExtensionShutdown[];
  durationMs: number;
}

export type SandboxState = 'new' | 'initializing' | 'ready' | 'invoking' | 'shutting-down' | 'shut-down';

interface Fatal {
  errorType: string;
  errorMessage: string;
}

type ExtensionEventType = 'INVOKE' | 'SHUTDOWN';

interface LaunchedExtension {
  name: string;
  file: string;
  launchedAt: number;
  registeredAt?: number;
  process: SandboxProcess;
  registration?: RegisteredExtension;
}

interface RegisteredExtension {
  id: string;
  name: string;
  kind: 'external' | 'internal';
  events: Set<ExtensionEventType>;
  launched?: LaunchedExtension;
  pendingNext?: ServerResponse;
  queue: object[];
  /** init/error or exit/error was posted: no further calls succeed. */
  errored: boolean;
}

interface RuntimeState {
  process: SandboxProcess;
  pendingNext?: ServerResponse;
  /** The request handed out by the last `next`, until its response or error. */
  busyWith?: string;
  calledNext: boolean;
}

interface Invocation {
  requestId: string;
  payload: Buffer;
  contentType: string;
  deadlineMs: number;
  startedAt: number;
  /** performance.now() at dispatch: phase and response times with sub-millisecond resolution. */
  startedPerf: number;
  headers: Record<string, string>;
  delivered: boolean;
  response?: InvokeResponse;
  runtimeDoneSent: boolean;
}

interface Waiter {
  predicate: () => boolean;
  resolve: () => void;
}

const MAX_EXTENSIONS = 10;
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
 * makes stdout and stderr unbuffered itself). See `startRuntime` for the sources.
 */
const BOOTSTRAP_PYTHON_FLAGS: readonly string[] = [];
/** The emulator's stand-in for the Python runtime's /var/runtime/bootstrap.py. */
const PYTHON_BOOTSTRAP = join(packageRoot(), 'test', 'emulator', 'python-bootstrap.py');

interface ResolvedPython {
  path: string;
  runtimeDir: string;
}

/** Finds `aws-lambda-ric`'s entry (`index.mjs`) from wherever this module was loaded. */
export function defaultRuntimeEntry(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('aws-lambda-ric/package.json')), 'index.mjs');
}

function epochDeadline(timeoutMs: number): number {
  return Date.now() + timeoutMs;
}

export class LambdaEmulator {
  readonly options: SandboxOptions;
  readonly functionName: string;
  readonly accountId: string;
  readonly region: string;
  readonly functionArn: string;
  readonly logs: LogLine[] = [];
  /** Every telemetry event produced, in order (subscribers get the ones they asked for). */
  readonly telemetryEvents: TelemetryEvent[] = [];

  private server: Server | undefined;
  private port = 0;
  private tmpDirValue: string | undefined;
  private ownsTmpDir = false;
  private stateValue: SandboxState = 'new';
  private launched: LaunchedExtension[] = [];
  private extensions = new Map<string, RegisteredExtension>();
  private runtime: RuntimeState | undefined;
  private registrationOpen = false;
  private subscriptionOpen = false;
  private dispatchers = new Map<string, TelemetryDispatcher>();
  private frozen = false;
  private fatal: Fatal | undefined;
  private needsInit = true;
  private current: Invocation | undefined;
  private waiters: Waiter[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private initCount = 0;
  private closed = false;
  private lastInit: InitResult | undefined;
  private python: ResolvedPython | undefined;

  constructor(options: SandboxOptions) {
    this.options = options;
    this.functionName = options.functionName ?? 'test_function';
    this.accountId = options.accountId ?? '012345678912';
    this.region = options.region ?? 'us-east-1';
    this.functionArn = `arn:aws:lambda:${this.region}:${this.accountId}:function:${this.functionName}`;
  }

  /** `127.0.0.1:<port>`, the value of `AWS_LAMBDA_RUNTIME_API`. */
  get runtimeApi(): string {
    if (!this.server) throw new Error('emulator not started');
    return `127.0.0.1:${this.port}`;
  }

  /** The sandbox's `/tmp` stand-in. */
  get tmpDir(): string {
    if (!this.tmpDirValue) throw new Error('emulator not started');
    return this.tmpDirValue;
  }

  /** `BULKHEAD_STATE_DIR` given to the sandbox's processes. */
  get stateDir(): string {
    return join(this.tmpDir, 'bulkhead');
  }

  get state(): SandboxState {
    return this.stateValue;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }

  /** How many init phases ran (a reset makes the next invoke initialise again). */
  get initCountValue(): number {
    return this.initCount;
  }

  get lastInitResult(): InitResult | undefined {
    return this.lastInit;
  }

  /** pids of live sandbox processes (group leaders), for tests that check freezing. */
  processIds(): { runtime?: number; extensions: Record<string, number> } {
    const extensions: Record<string, number> = {};
    for (const launched of this.launched) {
      if (launched.process.running && launched.process.pid !== undefined)
        extensions[launched.name] = launched.process.pid;
    }
    const runtimePid = this.runtime?.process.running ? this.runtime.process.pid : undefined;
    return runtimePid === undefined ? { extensions } : { runtime: runtimePid, extensions };
  }

  /** When each extension of the current init was launched and when its Register arrived (epoch ms). */
  extensionTimings(): { name: string; launchedAt: number; registeredAt: number | undefined }[] {
    return this.launched.map((l) => ({
      name: l.name,
      launchedAt: l.launchedAt,
      registeredAt: l.registeredAt,
    }));
  }

  /** Log lines of one source (`runtime`, `extension:<name>`), or all. */
  logText(source?: string): string {
    return this.logs
      .filter((l) => source === undefined || l.source === source)
      .map((l) => `[${l.source}] ${l.line}`)
      .join('\n');
  }

  /** The runtime emulated: `nodejs20.x`, `python3.12` … */
  get runtimeName(): RuntimeName {
    const major = process.versions.node.split('.')[0] ?? '20';
    return this.options.runtimeName ?? `nodejs${Number(major)}.x`;
  }

  /** Whether the sandbox runs a Python runtime (`runtimeName` `python*`). */
  get isPython(): boolean {
    return this.runtimeName.startsWith('python');
  }

  async start(): Promise<void> {
    if (this.server) return;
    const taskRoot = await stat(this.options.taskRoot).catch(() => undefined);
    if (!taskRoot?.isDirectory()) throw new Error(`taskRoot ${this.options.taskRoot} is not a directory`);
    if (this.options.tmpDir) {
      this.tmpDirValue = this.options.tmpDir;
      await mkdir(this.tmpDirValue, { recursive: true });
    } else {
      this.tmpDirValue = await mkdtemp(join(tmpdir(), 'lambda-sandbox-'));
      this.ownsTmpDir = true;
    }
    const server = createServer((req, res) => {
      this.route(req, res).catch((error: unknown) => {
        sendError(res, 500, 'Emulator.InternalError', (error as Error).message);
      });
    });
    // `next` is a long-poll with no timeout, held across freezes: no server-side limits.
    server.requestTimeout = 0;
    server.headersTimeout = 0;
    server.keepAliveTimeout = 60_000;
    server.timeout = 0;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Runs the init phase (launch extensions, wait for registration, start the runtime). */
  init(): Promise<InitResult> {
    return this.serialize(() => this.initNow());
  }

  /** Invokes and waits for the whole invoke phase (the sandbox is frozen again afterwards). */
  async invoke(payload: unknown = {}, options: InvokeOptions = {}): Promise<InvokeResult> {
    return this.startInvoke(payload, options).completed;
  }

  /**
   * Queues an invocation. `response` settles when the runtime answers (Lambda returns it to
   * the caller then); `completed` when extensions are done too. Invocations run one at a time.
   */
  startInvoke(payload: unknown = {}, options: InvokeOptions = {}): PendingInvoke {
    const requestId = randomUUID();
    let resolveResponse!: (response: InvokeResponse) => void;
    let rejectResponse!: (error: unknown) => void;
    const response = new Promise<InvokeResponse>((resolve, reject) => {
      resolveResponse = resolve;
      rejectResponse = reject;
    });
    // Callers often await only `completed`; its failure must not surface twice.
    response.catch(() => undefined);
    const completed = this.serialize(() => this.invokeNow(requestId, payload, options, resolveResponse));
    completed.then(resolveResponse, rejectResponse);
    return { requestId, response, completed };
  }

  /** SHUTDOWN with the platform's budget; the next invoke starts a new sandbox (cold). */
  shutdown(reason: ShutdownReason = 'spindown'): Promise<ShutdownResult> {
    return this.serialize(() => this.shutdownNow(reason));
  }

  /** Shuts down (if needed), kills every process, stops the server, removes a temp `/tmp`. */
  async close(): Promise<void> {
    await this.queue.catch(() => undefined);
    this.closed = true;
    if (this.stateValue !== 'shut-down' && this.stateValue !== 'new') {
      await this.shutdownNow('spindown').catch(() => undefined);
    }
    await this.killAll();
    for (const dispatcher of this.dispatchers.values()) dispatcher.close();
    const server = this.server;
    this.server = undefined;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    if (this.ownsTmpDir && this.tmpDirValue) await rm(this.tmpDirValue, { recursive: true, force: true });
    this.stateValue = 'shut-down';
  }

  // ───────────────────────────── lifecycle ─────────────────────────────

  private serialize<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private notify(): void {
    const pending = this.waiters;
    this.waiters = [];
    for (const waiter of pending) {
      if (waiter.predicate()) waiter.resolve();
      else this.waiters.push(waiter);
    }
  }

  /** Waits until `predicate` holds or a fatal error happened; false on timeout. */
  private waitFor(predicate: () => boolean, untilEpochMs: number): Promise<boolean> {
    const satisfied = () => predicate() || this.fatal !== undefined;
    if (satisfied()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve(false);
        },
        Math.max(0, untilEpochMs - Date.now()),
      );
      const waiter: Waiter = {
        predicate: satisfied,
        resolve: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      this.waiters.push(waiter);
    });
  }

  private setFatal(errorType: string, errorMessage: string): void {
    if (this.fatal) return;
    this.fatal = { errorType, errorMessage };
    this.notify();
  }

  private baseEnv(): Record<string, string> {
    // The runtime's language folder first, as /var/lang/bin on Lambda (node or python lives there).
    const langDir = this.python
      ? dirname(this.python.path)
      : dirname(this.options.nodePath ?? process.execPath);
    const optDir = this.options.optDir;
    const path = [langDir, '/usr/local/bin', '/usr/bin', '/bin', ...(optDir ? [join(optDir, 'bin')] : [])];
    return {
      PATH: path.join(delimiter),
      LANG: 'en_US.UTF-8',
      TZ: 'UTC',
      TMPDIR: this.tmpDir,
      BULKHEAD_STATE_DIR: this.stateDir,
      AWS_REGION: this.region,
      AWS_DEFAULT_REGION: this.region,
      AWS_LAMBDA_FUNCTION_NAME: this.functionName,
      AWS_LAMBDA_FUNCTION_VERSION: this.options.functionVersion ?? '$LATEST',
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(this.options.memoryMb ?? 3008),
      AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
      ...(this.options.env ?? {}),
      AWS_LAMBDA_RUNTIME_API: this.runtimeApi,
    };
  }

  private runtimeEnv(): Record<string, string> {
    const env: Record<string, string> = {
      ...this.baseEnv(),
      _HANDLER: this.options.handler,
      LAMBDA_TASK_ROOT: this.options.taskRoot,
      LAMBDA_RUNTIME_DIR: this.python
        ? this.python.runtimeDir
        : dirname(this.options.runtimeEntry ?? defaultRuntimeEntry()),
      AWS_EXECUTION_ENV: `AWS_Lambda_${this.runtimeName}`,
      AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${this.functionName}`,
      AWS_LAMBDA_LOG_STREAM_NAME: `${new Date().toISOString().slice(0, 10).replaceAll('-', '/')}/[$LATEST]${randomUUID().replaceAll('-', '')}`,
    };
    // Real Lambda's Node runtime client prints no colour codes into CloudWatch either.
    if (!this.python) env.NO_COLOR = '1';
    return env;
  }

  /** The interpreter of a Python runtime: `pythonPath`, else the repository's virtualenv. */
  private async resolvePython(): Promise<Fatal | undefined> {
    if (this.python) return undefined;
    let python = this.options.pythonPath;
    if (!python) {
      const version = pythonVersionOf(this.runtimeName);
      const found = findPythonRuntime(version as PythonVersion | undefined);
      if (found.python === undefined)
        return { errorType: 'Emulator.PythonNotFound', errorMessage: found.reason };
      python = found.python;
    }
    // Without awslambdaric the runtime fails as on Lambda (exit 1 at import); the folder is a guess then.
    const probe = await probePythonAsync(python);
    this.python = { path: python, runtimeDir: probe.ok ? probe.runtimeDir : dirname(python) };
    return undefined;
  }

  /** Extensions see the function env minus runtime-only and `_`-prefixed keys (§8.2). */
  private extensionEnv(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(this.baseEnv())) {
      if (key.startsWith('_') || EXTENSION_ONLY_DROPPED.has(key)) continue;
      env[key] = value;
    }
    return env;
  }

  private onLog = (line: LogLine): void => {
    this.logs.push(line);
    if (this.logs.length > 5_000) this.logs.splice(0, this.logs.length - 5_000);
    this.options.onLog?.(line);
  };

  private async listExtensionFiles(): Promise<string[]> {
    const dir =
      this.options.extensionsDir ??
      (this.options.optDir ? join(this.options.optDir, 'extensions') : undefined);
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

  private async initNow(): Promise<InitResult> {
    if (!this.needsInit && this.lastInit?.ok) return this.lastInit;
    await this.start();
    const startedAt = Date.now();
    const deadline = startedAt + (this.options.initTimeoutMs ?? 10_000);
    this.initCount++;
    await this.killAll();
    this.resetProcessState();
    this.stateValue = 'initializing';
    this.registrationOpen = true;
    this.subscriptionOpen = true;
    this.emitTelemetry('platform.initStart', {
      initializationType: 'on-demand',
      phase: 'init',
      functionName: this.functionName,
    });

    const finish = async (fatal: Fatal | undefined): Promise<InitResult> => {
      this.registrationOpen = false;
      this.subscriptionOpen = false;
      const durationMs = Date.now() - startedAt;
      if (fatal) {
        this.lastInit = { ok: false, ...fatal, durationMs };
        await this.killAll();
        this.stateValue = 'new';
        this.needsInit = true;
        this.fatal = undefined;
      } else {
        this.lastInit = { ok: true, durationMs };
        this.needsInit = false;
        this.stateValue = 'ready';
        this.emitTelemetry('platform.initReport', {
          initializationType: 'on-demand',
          phase: 'init',
          status: 'success',
          metrics: { durationMs },
        });
        await this.freezeAll();
      }
      return this.lastInit;
    };

    // 0. A Python runtime's interpreter (its folder heads PATH for extensions and runtime alike).
    if (this.isPython) {
      const missing = await this.resolvePython();
      if (missing) return finish(missing);
    }

    // 1. Launch every regular file in the extensions folder, in parallel, each in its own group.
    for (const file of await this.listExtensionFiles()) {
      try {
        await access(file, fsConstants.X_OK);
      } catch {
        return finish({ errorType: 'Extension.LaunchError', errorMessage: `${file}: permission denied` });
      }
      const name = basename(file);
      const launched: LaunchedExtension = {
        name,
        file,
        launchedAt: Date.now(),
        process: new SandboxProcess(
          `extension:${name}`,
          file,
          [],
          { cwd: dirname(dirname(file)), env: this.extensionEnv() },
          this.onLog,
        ),
      };
      this.launched.push(launched);
      void launched.process.exited.then(() => this.onExtensionExit(launched));
    }

    // 2. The runtime starts only once every launched extension has registered.
    const registered = await this.waitFor(() => this.launched.every((l) => l.registration), deadline);
    if (this.fatal) return finish(this.fatal);
    if (!registered)
      return finish({
        errorType: 'Sandbox.Timeout',
        errorMessage: 'extensions did not register within the init limit',
      });

    // 3. Start the runtime as the managed runtime's bootstrap does (see `startRuntime`).
    const launchError = await this.startRuntime();
    if (launchError) return finish(launchError);

    // 4. Init ends when the runtime and every extension are waiting in `next`.
    const ready = await this.waitFor(() => this.everyoneWaiting(), deadline);
    if (this.fatal) return finish(this.fatal);
    if (!ready)
      return finish({
        errorType: 'Sandbox.Timeout',
        errorMessage: 'init did not complete within the init limit',
      });
    return finish(undefined);
  }

  /**
   * Starts the runtime process as the managed runtime's `/var/runtime/bootstrap` does:
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
  private async startRuntime(): Promise<Fatal | undefined> {
    const wrapper = this.options.env?.AWS_LAMBDA_EXEC_WRAPPER;
    let file: string;
    let args: string[];
    if (this.python) {
      file = this.python.path;
      args = [...BOOTSTRAP_PYTHON_FLAGS, PYTHON_BOOTSTRAP];
    } else {
      file = this.options.nodePath ?? process.execPath;
      args = [...BOOTSTRAP_NODE_FLAGS, this.options.runtimeEntry ?? defaultRuntimeEntry()];
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
    const runtimeProcess = new SandboxProcess(
      'runtime',
      file,
      args,
      { cwd: this.options.taskRoot, env: this.runtimeEnv() },
      this.onLog,
    );
    const runtime: RuntimeState = { process: runtimeProcess, calledNext: false };
    this.runtime = runtime;
    void runtimeProcess.exited.then((exit) => {
      if (this.runtime !== runtime) return;
      if (this.stateValue === 'shutting-down' || this.stateValue === 'shut-down') return;
      const how = runtimeProcess.spawnError
        ? `a launch error (${runtimeProcess.spawnError.message})`
        : exit.signal
          ? `signal ${exit.signal}`
          : `exit status ${exit.code}`;
      this.setFatal(
        'Runtime.ExitError',
        `RequestId: ${this.current?.requestId ?? '-'} Error: Runtime exited with ${how}`,
      );
      if (this.stateValue === 'ready') this.needsInit = true;
    });
    return undefined;
  }

  private onExtensionExit(launched: LaunchedExtension): void {
    if (!this.launched.includes(launched)) return;
    if (this.stateValue === 'shutting-down' || this.stateValue === 'shut-down') return;
    // Any exit outside shutdown is a crash: Lambda resets the environment.
    const exit = launched.process.exit;
    const errorType = launched.process.spawnError ? 'Extension.LaunchError' : 'Extension.Crash';
    const detail = launched.process.spawnError?.message ?? `exit ${exit?.code ?? exit?.signal}`;
    this.setFatal(errorType, `extension ${launched.name} exited outside shutdown (${detail})`);
    if (this.stateValue === 'ready') this.needsInit = true;
  }

  private everyoneWaiting(): boolean {
    if (!this.runtime?.pendingNext) return false;
    for (const extension of this.extensions.values()) {
      if (extension.errored) continue;
      if (!extension.pendingNext || extension.queue.length > 0) return false;
    }
    return true;
  }

  private resetProcessState(): void {
    this.launched = [];
    this.extensions.clear();
    this.runtime = undefined;
    this.current = undefined;
    this.fatal = undefined;
    for (const dispatcher of this.dispatchers.values()) dispatcher.close();
    this.dispatchers.clear();
    this.frozen = false;
  }

  private allProcesses(): SandboxProcess[] {
    const processes = this.launched.map((l) => l.process);
    if (this.runtime) processes.push(this.runtime.process);
    return processes;
  }

  /** SIGSTOP every group and wait until the kernel reports the processes stopped. */
  private async freezeAll(): Promise<void> {
    if (this.options.freeze === false || this.frozen) return;
    for (const dispatcher of this.dispatchers.values()) dispatcher.pause();
    const running = this.allProcesses().filter((p) => p.running);
    for (const p of running) p.signalGroup('SIGSTOP');
    this.frozen = true;
    // A signal takes effect when the process is next scheduled; on a busy machine that is later.
    await Promise.all(running.map((p) => p.waitStopped(1_000)));
  }

  private thawAll(): void {
    if (!this.frozen) return;
    for (const p of this.allProcesses()) if (p.running) p.signalGroup('SIGCONT');
    this.frozen = false;
    for (const dispatcher of this.dispatchers.values()) dispatcher.resume();
  }

  private async killAll(): Promise<void> {
    const processes = this.allProcesses();
    this.frozen = false;
    await Promise.all(processes.map((p) => p.kill()));
    for (const extension of this.extensions.values()) {
      extension.pendingNext?.destroy();
      extension.pendingNext = undefined;
    }
    this.runtime?.pendingNext?.destroy();
  }

  private async invokeNow(
    requestId: string,
    payload: unknown,
    options: InvokeOptions,
    onResponse: (response: InvokeResponse) => void,
  ): Promise<InvokeResult> {
    if (this.closed) throw new Error('emulator is closed');
    let coldStart = false;
    let init: InitResult | undefined;
    if (this.needsInit || this.stateValue === 'new') {
      coldStart = true;
      init = await this.initNow();
      if (!init.ok) {
        const document = { errorMessage: init.errorMessage, errorType: init.errorType };
        return this.result(
          {
            requestId,
            status: 'failure',
            payload: Buffer.from(JSON.stringify(document)),
            functionError: 'Unhandled',
            errorType: init.errorType ?? 'Runtime.Unknown',
            responseMs: 0,
          },
          0,
          coldStart,
          init,
        );
      }
    }
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs ?? 3_000;
    const body = Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload ?? {}));
    const invocation: Invocation = {
      requestId,
      payload: body,
      contentType: options.contentType ?? 'application/json',
      deadlineMs: epochDeadline(timeoutMs),
      startedAt: Date.now(),
      startedPerf: performance.now(),
      headers: {},
      delivered: false,
      runtimeDoneSent: false,
    };
    const arn = options.functionArn ?? this.functionArn;
    invocation.headers = {
      'Lambda-Runtime-Aws-Request-Id': requestId,
      'Lambda-Runtime-Deadline-Ms': String(invocation.deadlineMs),
      'Lambda-Runtime-Invoked-Function-Arn': arn,
      ...(options.traceId ? { 'Lambda-Runtime-Trace-Id': options.traceId } : {}),
      ...(options.clientContext !== undefined
        ? { 'Lambda-Runtime-Client-Context': JSON.stringify(options.clientContext) }
        : {}),
      ...(options.cognitoIdentity !== undefined
        ? { 'Lambda-Runtime-Cognito-Identity': JSON.stringify(options.cognitoIdentity) }
        : {}),
      ...(options.tenantId ? { 'Lambda-Runtime-Aws-Tenant-Id': options.tenantId } : {}),
    };
    this.current = invocation;
    this.stateValue = 'invoking';
    this.thawAll();
    this.emitTelemetry('platform.start', { requestId, version: this.options.functionVersion ?? '$LATEST' });

    this.deliverToRuntime();
    const event = {
      eventType: 'INVOKE',
      deadlineMs: invocation.deadlineMs,
      requestId,
      invokedFunctionArn: arn,
      ...(options.traceId ? { tracing: { type: 'X-Amzn-Trace-Id', value: options.traceId } } : {}),
    };
    for (const extension of this.extensions.values()) {
      if (!extension.events.has('INVOKE') || extension.errored) continue;
      extension.queue.push(event);
      this.deliverToExtension(extension);
    }
    this.notify();

    // The caller gets the runtime's answer as soon as it is posted.
    const answered = await this.waitFor(() => invocation.response !== undefined, invocation.deadlineMs);
    let response: InvokeResponse;
    if (invocation.response) {
      response = invocation.response;
    } else {
      const fatal = answered ? this.fatal : undefined;
      const timedOut = fatal === undefined;
      const errorType = timedOut ? 'Sandbox.Timedout' : fatal.errorType;
      const errorMessage = timedOut
        ? `${new Date().toISOString()} ${requestId} Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`
        : fatal.errorMessage;
      response = {
        requestId,
        status: timedOut ? 'timeout' : 'failure',
        payload: Buffer.from(JSON.stringify({ errorType, errorMessage })),
        functionError: 'Unhandled',
        errorType,
        responseMs: performance.now() - invocation.startedPerf,
      };
      invocation.response = response;
    }
    onResponse(response);

    // The phase ends when the runtime and every extension are back in `next`.
    const phaseOver = await this.waitFor(() => this.everyoneWaiting(), invocation.deadlineMs);
    const phaseMs = performance.now() - invocation.startedPerf;
    if (response.status === 'timeout' || !phaseOver) {
      // Also when extensions overran the function timeout after the runtime answered.
      this.emitRuntimeDone(invocation, 'timeout');
      await this.resetNow('timeout');
      return this.result(response, phaseMs, coldStart, init, 'timeout');
    }
    if (this.fatal) {
      await this.resetNow('failure');
      return this.result(response, phaseMs, coldStart, init, 'failure');
    }
    this.emitTelemetry('platform.report', {
      requestId,
      status: response.status === 'success' ? 'success' : 'error',
      metrics: {
        durationMs: response.responseMs,
        billedDurationMs: Math.ceil(phaseMs),
        memorySizeMB: this.options.memoryMb ?? 3008,
        maxMemoryUsedMB: 0,
      },
    });
    this.current = undefined;
    this.stateValue = 'ready';
    await this.freezeAll();
    return this.result(response, phaseMs, coldStart, init);
  }

  private result(
    response: InvokeResponse,
    phaseMs: number,
    coldStart: boolean,
    init: InitResult | undefined,
    reset?: ShutdownReason,
  ): InvokeResult {
    return {
      ...response,
      phaseMs,
      coldStart,
      ...(init ? { init } : {}),
      ...(reset ? { reset } : {}),
      json<T>(): T {
        return JSON.parse(response.payload.toString('utf8')) as T;
      },
    };
  }

  /** A failed invoke resets the sandbox: it shuts down like SHUTDOWN and re-inits on the next invoke. */
  private async resetNow(reason: ShutdownReason): Promise<void> {
    await this.shutdownNow(reason);
    this.stateValue = 'new';
    this.needsInit = true;
  }

  private async shutdownNow(reason: ShutdownReason): Promise<ShutdownResult> {
    const startedAt = Date.now();
    const externals = [...this.extensions.values()].filter((e) => e.kind === 'external' && !e.errored);
    const budgetMs = externals.length > 0 ? (this.options.shutdownBudgetMs ?? 2_000) : 0;
    const deadline = startedAt + budgetMs;
    this.thawAll();
    this.stateValue = 'shutting-down';
    this.registrationOpen = false;
    this.subscriptionOpen = false;

    // Runtime first: SIGTERM only when extensions are registered, then SIGKILL after its share.
    let runtimeExitedInTime = true;
    const runtime = this.runtime;
    if (runtime?.process.running) {
      if (this.extensions.size === 0) {
        await runtime.process.kill();
        runtimeExitedInTime = false;
      } else {
        runtime.process.signalGroup('SIGTERM');
        const share = Math.min(this.options.runtimeShutdownMs ?? 300, budgetMs);
        const exit = await runtime.process.waitExit(share);
        if (!exit) {
          runtimeExitedInTime = false;
          await runtime.process.kill();
        }
      }
    }
    runtime?.pendingNext?.destroy();

    // Then SHUTDOWN to subscribers; non-subscribers are killed at once.
    const results: ExtensionShutdown[] = [];
    const waits: Promise<void>[] = [];
    for (const launched of this.launched) {
      const registration = launched.registration;
      const subscribed = registration?.events.has('SHUTDOWN') === true && !registration.errored;
      if (!subscribed || !launched.process.running) {
        const alreadyExited = !launched.process.running;
        const exit = await launched.process.kill();
        results.push({
          name: launched.name,
          subscribed,
          exitedInTime: alreadyExited,
          exit,
          durationMs: Date.now() - startedAt,
        });
        continue;
      }
      registration.queue.push({ eventType: 'SHUTDOWN', shutdownReason: reason, deadlineMs: deadline });
      this.deliverToExtension(registration);
      waits.push(
        (async () => {
          const exit = await launched.process.waitExit(deadline - Date.now());
          const exitedInTime = exit !== undefined;
          const finalExit = exit ?? (await launched.process.kill());
          // Stragglers the extension left in its group go too.
          launched.process.signalGroup('SIGKILL');
          results.push({
            name: launched.name,
            subscribed: true,
            exitedInTime,
            exit: finalExit,
            durationMs: Date.now() - startedAt,
          });
        })(),
      );
    }
    await Promise.all(waits);
    await this.killAll();
    for (const dispatcher of this.dispatchers.values()) dispatcher.close();
    this.dispatchers.clear();
    this.stateValue = 'shut-down';
    this.needsInit = true;
    this.current = undefined;
    return {
      reason,
      budgetMs,
      runtimeExitedInTime,
      extensions: results.sort((a, b) => a.name.localeCompare(b.name)),
      durationMs: Date.now() - startedAt,
    };
  }

  // ───────────────────────────── event delivery ─────────────────────────────

  private deliverToRuntime(): void {
    const runtime = this.runtime;
    const invocation = this.current;
    if (!runtime?.pendingNext || !invocation || invocation.delivered) return;
    const res = runtime.pendingNext;
    runtime.pendingNext = undefined;
    runtime.busyWith = invocation.requestId;
    invocation.delivered = true;
    res.writeHead(200, {
      'Content-Type': invocation.contentType,
      'Content-Length': invocation.payload.length,
      ...invocation.headers,
    });
    res.end(invocation.payload);
  }

  private deliverToExtension(extension: RegisteredExtension): void {
    const res = extension.pendingNext;
    const event = extension.queue[0];
    if (!res || event === undefined) return;
    extension.queue.shift();
    extension.pendingNext = undefined;
    sendJson(res, 200, event, {
      'Lambda-Extension-Event-Identifier': randomUUID(),
      'Lambda-Extension-Identifier': extension.id,
    });
  }

  private emitTelemetry(type: string, record: unknown): void {
    const event: TelemetryEvent = { time: new Date().toISOString(), type, record };
    this.telemetryEvents.push(event);
    if (this.telemetryEvents.length > 10_000) this.telemetryEvents.splice(0, 1_000);
    for (const dispatcher of this.dispatchers.values()) dispatcher.push(event);
  }

  private emitRuntimeDone(invocation: Invocation, status: 'success' | 'error' | 'failure' | 'timeout'): void {
    if (invocation.runtimeDoneSent) return;
    invocation.runtimeDoneSent = true;
    this.emitTelemetry('platform.runtimeDone', {
      requestId: invocation.requestId,
      status,
      ...(status === 'error' || status === 'failure' ? { errorType: invocation.response?.errorType } : {}),
      metrics: {
        durationMs: Date.now() - invocation.startedAt,
        producedBytes: invocation.response?.payload.length ?? 0,
      },
    });
  }

  // ───────────────────────────── HTTP API ─────────────────────────────

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Not `new URL()`: a request target like `//x` would be read as a host.
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const method = req.method ?? 'GET';
    const invocationMatch = /^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/.exec(path);
    const readsBody =
      method === 'POST' &&
      (invocationMatch !== null ||
        path === '/2018-06-01/runtime/init/error' ||
        path.startsWith('/2020-01-01/extension/register') ||
        path.endsWith('/error'));
    if (!readsBody && !(method === 'PUT' && path.startsWith('/2022-07-01/telemetry'))) await drainBody(req);
    if (path === '/2018-06-01/runtime/invocation/next') {
      if (method !== 'GET') return this.methodNotAllowed(req, res);
      return this.runtimeNext(res);
    }
    if (invocationMatch) {
      if (method !== 'POST') return this.methodNotAllowed(req, res);
      let requestId: string;
      try {
        requestId = decodeURIComponent(invocationMatch[1] ?? '');
      } catch {
        req.resume();
        sendError(res, 400, 'InvalidRequestID', 'Invalid request ID');
        return;
      }
      return this.runtimeResult(req, res, requestId, invocationMatch[2] === 'error');
    }
    if (path === '/2018-06-01/runtime/init/error') {
      if (method !== 'POST') return this.methodNotAllowed(req, res);
      return this.runtimeInitError(req, res);
    }
    if (path === '/2020-01-01/extension/register') {
      if (method !== 'POST') return this.methodNotAllowed(req, res);
      return this.extensionRegister(req, res);
    }
    if (path === '/2020-01-01/extension/event/next') {
      if (method !== 'GET') return this.methodNotAllowed(req, res);
      return this.extensionNext(req, res);
    }
    if (path === '/2020-01-01/extension/init/error' || path === '/2020-01-01/extension/exit/error') {
      if (method !== 'POST') return this.methodNotAllowed(req, res);
      return this.extensionError(req, res, path.endsWith('/init/error') ? 'init' : 'exit');
    }
    if (path === '/2022-07-01/telemetry' || path === '/2022-07-01/telemetry/') {
      if (method !== 'PUT') return this.methodNotAllowed(req, res);
      return this.telemetrySubscribe(req, res);
    }
    if (path === '/2020-08-15/logs' || path === '/2020-08-15/logs/') {
      req.resume();
      return sendError(
        res,
        202,
        'Logs.NotSupported',
        'Logs API is not supported by this emulator; use the Telemetry API',
      );
    }
    req.resume();
    sendError(res, 404, 'NotFound', `no route for ${method} ${path}`);
  }

  private methodNotAllowed(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    sendError(res, 405, 'MethodNotAllowed', `${req.method} is not allowed on ${req.url}`);
  }

  private runtimeNext(res: ServerResponse): void {
    const runtime = this.runtime;
    if (!runtime || runtime.pendingNext || runtime.busyWith || this.stateValue === 'shutting-down') {
      sendError(res, 403, 'InvalidStateTransition', 'State transition from Ready to Ready failed');
      return;
    }
    if (!runtime.calledNext) {
      runtime.calledNext = true;
      // Internal extensions must have registered before the runtime's first `next`.
      this.registrationOpen = false;
      this.emitTelemetry('platform.initRuntimeDone', {
        initializationType: 'on-demand',
        phase: 'init',
        status: 'success',
      });
    }
    runtime.pendingNext = res;
    res.on('close', () => {
      if (runtime.pendingNext === res && !res.writableEnded) runtime.pendingNext = undefined;
    });
    const invocation = this.current;
    if (invocation?.response && !invocation.runtimeDoneSent) {
      this.emitRuntimeDone(invocation, invocation.response.status === 'success' ? 'success' : 'error');
    }
    this.deliverToRuntime();
    this.notify();
  }

  private async runtimeResult(
    req: IncomingMessage,
    res: ServerResponse,
    requestId: string,
    isError: boolean,
  ): Promise<void> {
    const runtime = this.runtime;
    const invocation = this.current;
    const responseMode = headerValue(req, 'Lambda-Runtime-Function-Response-Mode');
    if (!isError && responseMode !== undefined && responseMode.toLowerCase() !== 'streaming') {
      req.resume();
      return sendError(
        res,
        400,
        'InvalidFunctionResponseMode',
        `Invalid function response mode: ${responseMode}`,
      );
    }
    if (!invocation || invocation.requestId !== requestId) {
      req.resume();
      return sendError(res, 400, 'InvalidRequestID', 'Invalid request ID');
    }
    if (!runtime || runtime.busyWith !== requestId || invocation.response) {
      req.resume();
      return sendError(
        res,
        403,
        'InvalidStateTransition',
        'State transition from Responded to Responded failed',
      );
    }
    const streaming = !isError && responseMode !== undefined;
    const body = await readBody(req, streaming ? MAX_STREAMED_PAYLOAD_BYTES : MAX_RESPONSE_PAYLOAD_BYTES);
    if (!body.ok) {
      if (body.reason === 'too-large')
        return sendError(
          res,
          413,
          'RequestEntityTooLarge',
          `Exceeded maximum allowed payload size (${MAX_RESPONSE_PAYLOAD_BYTES} bytes).`,
        );
      return;
    }
    // A streamed error arrives in trailers.
    const trailerErrorType = body.trailers['lambda-runtime-function-error-type'];
    const trailerErrorBody = body.trailers['lambda-runtime-function-error-body'];
    const failed = isError || trailerErrorType !== undefined;
    let payload = body.body;
    let errorType: string | undefined;
    if (failed) {
      errorType =
        trailerErrorType ?? headerValue(req, 'Lambda-Runtime-Function-Error-Type') ?? 'Runtime.Unknown';
      if (trailerErrorBody) payload = Buffer.from(trailerErrorBody, 'base64');
      const document = parseJson(payload) as { errorType?: unknown } | undefined;
      if (typeof document?.errorType === 'string' && !headerValue(req, 'Lambda-Runtime-Function-Error-Type'))
        errorType = document.errorType;
    }
    runtime.busyWith = undefined;
    invocation.response = {
      requestId,
      status: failed ? 'error' : 'success',
      payload,
      ...(failed ? { functionError: 'Unhandled', errorType } : {}),
      responseMs: performance.now() - invocation.startedPerf,
    };
    sendJson(res, 202, ACCEPTED);
    this.notify();
  }

  private async runtimeInitError(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, MAX_CONTROL_BODY_BYTES);
    if (this.stateValue !== 'initializing' || !this.runtime || this.runtime.calledNext) {
      return sendError(res, 403, 'InvalidStateTransition', 'State transition from Ready to InitError failed');
    }
    const document = body.ok ? (parseJson(body.body) as { errorMessage?: unknown } | undefined) : undefined;
    const errorType = headerValue(req, 'Lambda-Runtime-Function-Error-Type') ?? 'Runtime.Unknown';
    const message = typeof document?.errorMessage === 'string' ? document.errorMessage : 'runtime init error';
    sendJson(res, 202, ACCEPTED);
    this.setFatal(errorType, message);
  }

  /** Identifier checks shared by every extension call (RIE middleware). */
  private identify(req: IncomingMessage, res: ServerResponse): RegisteredExtension | undefined {
    const id = headerValue(req, 'Lambda-Extension-Identifier');
    if (!id) {
      sendError(
        res,
        403,
        'Extension.MissingExtensionIdentifier',
        'Missing Lambda-Extension-Identifier header',
      );
      return undefined;
    }
    if (!isUuid(id)) {
      sendError(res, 403, 'Extension.InvalidExtensionIdentifier', 'Invalid Lambda-Extension-Identifier');
      return undefined;
    }
    const extension = this.extensions.get(id);
    if (!extension) {
      sendError(res, 403, 'Extension.UnknownExtensionIdentifier', 'Unknown extension identifier');
      return undefined;
    }
    return extension;
  }

  private async extensionRegister(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, MAX_CONTROL_BODY_BYTES);
    const name = headerValue(req, 'Lambda-Extension-Name')?.trim();
    if (!name) return sendError(res, 403, 'Extension.InvalidExtensionName', 'Empty extension name');
    if (!this.registrationOpen)
      return sendError(res, 403, 'Extension.RegistrationClosed', 'Extension registration is closed');
    if (!body.ok) return sendError(res, 403, 'InvalidRequestFormat', 'request body too large');
    const document = parseJson(body.body);
    if (typeof document !== 'object' || document === null || Array.isArray(document))
      return sendError(res, 403, 'InvalidRequestFormat', 'request body must be a JSON object');
    const { events = [], configurationKeys } = document as { events?: unknown; configurationKeys?: unknown };
    if (Array.isArray(configurationKeys) && configurationKeys.length > 0)
      return sendError(res, 403, 'InvalidRequestFormat', 'configurationKeys are not supported');
    if (!Array.isArray(events) || !events.every((e) => e === 'INVOKE' || e === 'SHUTDOWN'))
      return sendError(res, 403, 'Extension.InvalidEventType', 'events must be INVOKE and/or SHUTDOWN');
    if ([...this.extensions.values()].some((e) => e.name === name))
      return sendError(
        res,
        403,
        'Extension.InvalidExtensionState',
        `extension ${name} is already registered`,
      );
    if (this.extensions.size >= MAX_EXTENSIONS)
      return sendError(res, 403, 'Extension.TooManyExtensions', `at most ${MAX_EXTENSIONS} extensions`);
    const launched = this.launched.find((l) => l.name === name && !l.registration);
    const kind = launched ? 'external' : 'internal';
    if (kind === 'internal' && events.includes('SHUTDOWN'))
      return sendError(
        res,
        403,
        'Extension.InvalidEventType',
        'internal extensions cannot register for SHUTDOWN',
      );
    const features = (headerValue(req, 'Lambda-Extension-Accept-Feature') ?? '')
      .split(',')
      .map((f) => f.trim());
    const extension: RegisteredExtension = {
      id: randomUUID(),
      name,
      kind,
      events: new Set(events as ExtensionEventType[]),
      queue: [],
      errored: false,
      ...(launched ? { launched } : {}),
    };
    this.extensions.set(extension.id, extension);
    if (launched) {
      launched.registration = extension;
      launched.registeredAt = Date.now();
    }
    sendJson(
      res,
      200,
      {
        functionName: this.functionName,
        functionVersion: this.options.functionVersion ?? '$LATEST',
        handler: this.options.handler,
        ...(features.includes('accountId') ? { accountId: this.accountId } : {}),
      },
      { 'Lambda-Extension-Identifier': extension.id },
    );
    this.emitTelemetry('platform.extension', { name, state: 'Ready', events: [...extension.events] });
    this.notify();
  }

  private extensionNext(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    const extension = this.identify(req, res);
    if (!extension) return;
    if (extension.errored || extension.pendingNext) {
      sendError(res, 403, 'Extension.InvalidExtensionState', `extension ${extension.name} cannot wait now`);
      return;
    }
    extension.pendingNext = res;
    res.on('close', () => {
      if (extension.pendingNext === res && !res.writableEnded) extension.pendingNext = undefined;
    });
    this.deliverToExtension(extension);
    this.notify();
  }

  private async extensionError(
    req: IncomingMessage,
    res: ServerResponse,
    kind: 'init' | 'exit',
  ): Promise<void> {
    const body = await readBody(req, MAX_CONTROL_BODY_BYTES);
    const extension = this.identify(req, res);
    if (!extension) return;
    const errorType = headerValue(req, 'Lambda-Extension-Function-Error-Type');
    if (!errorType)
      return sendError(
        res,
        403,
        'Extension.MissingHeader',
        'Missing Lambda-Extension-Function-Error-Type header',
      );
    if (extension.errored)
      return sendError(
        res,
        403,
        'Extension.InvalidExtensionState',
        `extension ${extension.name} already reported an error`,
      );
    if (kind === 'init' && this.stateValue !== 'initializing')
      return sendError(
        res,
        403,
        'Extension.InvalidExtensionState',
        'init/error is only accepted during init',
      );
    extension.errored = true;
    const document = body.ok ? (parseJson(body.body) as { errorMessage?: unknown } | undefined) : undefined;
    const message = typeof document?.errorMessage === 'string' ? document.errorMessage : `${kind} error`;
    sendJson(res, 202, ACCEPTED);
    if (this.stateValue !== 'shutting-down')
      this.setFatal(errorType, `extension ${extension.name}: ${message}`);
  }

  private async telemetrySubscribe(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, MAX_CONTROL_BODY_BYTES);
    const extension = this.identify(req, res);
    if (!extension) return;
    if (this.options.telemetry === 'not-supported')
      return sendError(
        res,
        202,
        'Telemetry.NotSupported',
        'Telemetry API is not supported in this environment',
      );
    if (!this.subscriptionOpen)
      return sendError(
        res,
        403,
        'Telemetry.SubscriptionClosed',
        'subscriptions are only accepted during init',
      );
    if (!body.ok) return sendError(res, 400, 'ValidationError', 'request body too large');
    const parsed = parseSubscription(extension.name, parseJson(body.body));
    if (!parsed.ok) return sendError(res, 400, 'ValidationError', parsed.message);
    this.dispatchers.get(extension.id)?.close();
    this.dispatchers.set(extension.id, new TelemetryDispatcher(parsed.subscription));
    sendJson(res, 200, 'OK');
  }
}

/** Starts the emulator and runs the init phase. Throws (after cleaning up) if init fails. */
export async function startSandbox(options: SandboxOptions): Promise<LambdaEmulator> {
  const emulator = new LambdaEmulator(options);
  await emulator.start();
  const init = await emulator.init();
  if (!init.ok) {
    await emulator.close();
    throw new SandboxInitError(init);
  }
  return emulator;
}

export class SandboxInitError extends Error {
  override readonly name = 'SandboxInitError';
  constructor(readonly init: InitResult) {
    super(`sandbox init failed: ${init.errorType}: ${init.errorMessage}`);
  }
}
