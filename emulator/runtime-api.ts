// The Runtime API (2018-06-01) the runtime client talks to: `invocation/next` (the long-poll that
// hands out the next event), `invocation/<id>/response` and `/error` (buffered or streamed, errors in
// headers or trailers), and `init/error`. Status codes and error types follow RIE.
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  ACCEPTED,
  headerValue,
  MAX_CONTROL_BODY_BYTES,
  MAX_RESPONSE_PAYLOAD_BYTES,
  MAX_STREAMED_PAYLOAD_BYTES,
  parseJson,
  readBody,
  sendError,
  sendJson,
} from './http.js';
import type { Invocation, InvokeStatus, RuntimeState, SandboxState } from './types.js';

/** What the Runtime API handlers see of the sandbox: live views, not copies. */
export interface RuntimeApiHost {
  readonly state: SandboxState;
  readonly runtime: RuntimeState | undefined;
  /** The invocation in flight. */
  readonly current: Invocation | undefined;
  /** Ends Register for internal extensions (at the runtime's first `next`). */
  closeRegistration(): void;
  emitTelemetry(type: string, record: unknown): void;
  /** `platform.runtimeDone` for an invocation, once. */
  emitRuntimeDone(invocation: Invocation, status: InvokeStatus): void;
  /** Wakes whatever waits on the sandbox's state (init, the invoke phase). */
  notify(): void;
  /** Ends the current phase with an error. */
  setFatal(errorType: string, errorMessage: string): void;
}

/** `GET invocation/next`: waits for the next event (the runtime's first call ends its init). */
export function runtimeNext(host: RuntimeApiHost, res: ServerResponse): void {
  const runtime = host.runtime;
  if (!runtime || runtime.pendingNext || runtime.busyWith || host.state === 'shutting-down') {
    sendError(res, 403, 'InvalidStateTransition', 'State transition from Ready to Ready failed');
    return;
  }
  if (!runtime.calledNext) {
    runtime.calledNext = true;
    // Internal extensions must have registered before the runtime's first `next`.
    host.closeRegistration();
    host.emitTelemetry('platform.initRuntimeDone', {
      initializationType: 'on-demand',
      phase: 'init',
      status: 'success',
    });
  }
  runtime.pendingNext = res;
  res.on('close', () => {
    if (runtime.pendingNext === res && !res.writableEnded) runtime.pendingNext = undefined;
  });
  const invocation = host.current;
  if (invocation?.response && !invocation.runtimeDoneSent) {
    host.emitRuntimeDone(invocation, invocation.response.status === 'success' ? 'success' : 'error');
  }
  deliverToRuntime(host.runtime, host.current);
  host.notify();
}

/** `POST invocation/<id>/response` and `/error`: the function's answer. */
export async function runtimeResult(
  host: RuntimeApiHost,
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
  isError: boolean,
): Promise<void> {
  const runtime = host.runtime;
  const invocation = host.current;
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
  host.notify();
}

/** `POST init/error`: the runtime failed to initialise (only before its first `next`). */
export async function runtimeInitError(
  host: RuntimeApiHost,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const body = await readBody(req, MAX_CONTROL_BODY_BYTES);
  if (host.state !== 'initializing' || !host.runtime || host.runtime.calledNext) {
    return sendError(res, 403, 'InvalidStateTransition', 'State transition from Ready to InitError failed');
  }
  const document = body.ok ? (parseJson(body.body) as { errorMessage?: unknown } | undefined) : undefined;
  const errorType = headerValue(req, 'Lambda-Runtime-Function-Error-Type') ?? 'Runtime.Unknown';
  const message = typeof document?.errorMessage === 'string' ? document.errorMessage : 'runtime init error';
  sendJson(res, 202, ACCEPTED);
  host.setFatal(errorType, message);
}

/** Answers the runtime's pending `next` with the invocation, once. */
export function deliverToRuntime(
  runtime: RuntimeState | undefined,
  invocation: Invocation | undefined,
): void {
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
