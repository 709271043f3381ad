// A local Lambda execution environment: the Runtime API (2018-06-01), the Extensions API
// (2020-01-01) and the Telemetry API (2022-07-01) on one loopback port, real extension and
// runtime processes, SIGSTOP/SIGCONT freezing between invocations, and the documented init,
// invoke, reset and shutdown rules. Behaviour follows /work/shared/reference/lambda-platform.md
// §1–§3 and §9; RIE (aws-lambda-runtime-interface-emulator) is the oracle for error codes.
//
// This file is the lifecycle: `LambdaEmulator` holds the sandbox's state and runs init, invoke,
// freeze/thaw, reset and shutdown. The APIs' handlers (router.ts, runtime-api.ts, extensions-api.ts,
// telemetry-api.ts) see that state through `ApiHost`; launch.ts builds the processes' environment
// and command lines; types.ts holds the shapes.
//
// No test framework imports here: the demo reuses this module.
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { deliverToExtension } from './extensions-api.js';
import { sendError } from './http.js';
import { extensionEnv, listExtensionFiles, runtimeCommand, runtimeEnv } from './launch.js';
import { type LogLine, SandboxProcess } from './processes.js';
import { findPythonRuntime, type PythonVersion, probePythonAsync, pythonVersionOf } from './python.js';
import { type ApiHost, route } from './router.js';
import { deliverToRuntime } from './runtime-api.js';
import type { TelemetryDispatcher, TelemetryEvent } from './telemetry.js';
import type {
  ExtensionShutdown,
  Fatal,
  InitResult,
  Invocation,
  InvokeOptions,
  InvokeResponse,
  InvokeResult,
  InvokeStatus,
  LaunchedExtension,
  PendingInvoke,
  RegisteredExtension,
  ResolvedPython,
  RuntimeName,
  RuntimeState,
  SandboxOptions,
  SandboxState,
  ShutdownReason,
  ShutdownResult,
} from './types.js';

interface Waiter {
  predicate: () => boolean;
  resolve: () => void;
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
  private readonly extensions = new Map<string, RegisteredExtension>();
  private runtime: RuntimeState | undefined;
  private registrationOpen = false;
  private subscriptionOpen = false;
  private readonly dispatchers = new Map<string, TelemetryDispatcher>();
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
  /** What the API handlers see of this sandbox (after `extensions` and `dispatchers`: it holds them). */
  private readonly api: ApiHost = this.apiHost();

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
      route(this.api, req, res).catch((error: unknown) => {
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

  private onLog = (line: LogLine): void => {
    this.logs.push(line);
    if (this.logs.length > 5_000) this.logs.splice(0, this.logs.length - 5_000);
    this.options.onLog?.(line);
  };

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
    for (const file of await listExtensionFiles(this.options)) {
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
          { cwd: dirname(dirname(file)), env: extensionEnv(this, this.python) },
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

    // 3. Start the runtime as the managed runtime's bootstrap does (see `runtimeCommand`).
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

  /** Starts the runtime process (its command line: `runtimeCommand`); its exit outside shutdown is fatal. */
  private async startRuntime(): Promise<Fatal | undefined> {
    const command = await runtimeCommand(this.options, this.python);
    if ('errorType' in command) return command;
    const { file, args } = command;
    const runtimeProcess = new SandboxProcess(
      'runtime',
      file,
      args,
      { cwd: this.options.taskRoot, env: runtimeEnv(this, this.python) },
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

    deliverToRuntime(this.runtime, this.current);
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
      deliverToExtension(extension);
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
      deliverToExtension(registration);
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

  // ───────────────────────────── telemetry ─────────────────────────────

  private emitTelemetry(type: string, record: unknown): void {
    const event: TelemetryEvent = { time: new Date().toISOString(), type, record };
    this.telemetryEvents.push(event);
    if (this.telemetryEvents.length > 10_000) this.telemetryEvents.splice(0, 1_000);
    for (const dispatcher of this.dispatchers.values()) dispatcher.push(event);
  }

  private emitRuntimeDone(invocation: Invocation, status: InvokeStatus): void {
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

  // ───────────────────────────── the APIs' view ─────────────────────────────

  /** Live views of this sandbox's state for the API handlers (router.ts): getters, not copies. */
  private apiHost(): ApiHost {
    const sandbox = this;
    return {
      get options() {
        return sandbox.options;
      },
      get functionName() {
        return sandbox.functionName;
      },
      get accountId() {
        return sandbox.accountId;
      },
      get state() {
        return sandbox.stateValue;
      },
      get runtime() {
        return sandbox.runtime;
      },
      get current() {
        return sandbox.current;
      },
      get launched() {
        return sandbox.launched;
      },
      get registrationOpen() {
        return sandbox.registrationOpen;
      },
      get subscriptionOpen() {
        return sandbox.subscriptionOpen;
      },
      extensions: sandbox.extensions,
      dispatchers: sandbox.dispatchers,
      closeRegistration: () => {
        sandbox.registrationOpen = false;
      },
      emitTelemetry: (type, record) => sandbox.emitTelemetry(type, record),
      emitRuntimeDone: (invocation, status) => sandbox.emitRuntimeDone(invocation, status),
      notify: () => sandbox.notify(),
      setFatal: (errorType, errorMessage) => sandbox.setFatal(errorType, errorMessage),
    };
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
