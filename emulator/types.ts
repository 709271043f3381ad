// The emulator's data shapes. The public ones (options, results, states) are re-exported by index.ts;
// the internal records below them are shared by the lifecycle (sandbox.ts) and the API handlers
// (runtime-api.ts, extensions-api.ts, telemetry-api.ts) and are not part of the public surface.
import type { ServerResponse } from 'node:http';
import type { ExitInfo, LogLine, SandboxProcess } from './processes.js';

// ───────────────────────────── public ─────────────────────────────

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
   * `runtimeCommand` in launch.ts). Default `nodejs<major>.x` of the running Node.
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

// ───────────────────────────── internal ─────────────────────────────

/** What ends an init or an invoke phase with an error (and resets the sandbox). */
export interface Fatal {
  errorType: string;
  errorMessage: string;
}

export type ExtensionEventType = 'INVOKE' | 'SHUTDOWN';

/** A file of the extensions folder, started in init. */
export interface LaunchedExtension {
  name: string;
  file: string;
  launchedAt: number;
  registeredAt?: number;
  process: SandboxProcess;
  registration?: RegisteredExtension;
}

/** An extension after Register: external (launched from the folder) or internal (in the runtime). */
export interface RegisteredExtension {
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

/** The runtime process and its Runtime API long-poll. */
export interface RuntimeState {
  process: SandboxProcess;
  pendingNext?: ServerResponse;
  /** The request handed out by the last `next`, until its response or error. */
  busyWith?: string;
  calledNext: boolean;
}

/** The invocation in flight. */
export interface Invocation {
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

/** A Python runtime's interpreter and the folder `awslambdaric` lives in (`LAMBDA_RUNTIME_DIR`). */
export interface ResolvedPython {
  path: string;
  runtimeDir: string;
}
