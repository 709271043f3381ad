// One loopback port serves the three APIs, as `AWS_LAMBDA_RUNTIME_API` does on Lambda: this picks the
// handler for a request (runtime-api.ts, extensions-api.ts, telemetry-api.ts), answers wrong methods
// with 405 and unknown paths with 404, and answers the Logs API, which is not emulated.
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type ExtensionsApiHost,
  extensionError,
  extensionNext,
  extensionRegister,
} from './extensions-api.js';
import { drainBody, sendError } from './http.js';
import { type RuntimeApiHost, runtimeInitError, runtimeNext, runtimeResult } from './runtime-api.js';
import { type TelemetryApiHost, telemetrySubscribe } from './telemetry-api.js';

/** Everything the API handlers see of the sandbox. */
export type ApiHost = RuntimeApiHost & ExtensionsApiHost & TelemetryApiHost;

/** Routes one request of the sandbox's API server. */
export async function route(host: ApiHost, req: IncomingMessage, res: ServerResponse): Promise<void> {
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
    if (method !== 'GET') return methodNotAllowed(req, res);
    return runtimeNext(host, res);
  }
  if (invocationMatch) {
    if (method !== 'POST') return methodNotAllowed(req, res);
    let requestId: string;
    try {
      requestId = decodeURIComponent(invocationMatch[1] ?? '');
    } catch {
      req.resume();
      sendError(res, 400, 'InvalidRequestID', 'Invalid request ID');
      return;
    }
    return runtimeResult(host, req, res, requestId, invocationMatch[2] === 'error');
  }
  if (path === '/2018-06-01/runtime/init/error') {
    if (method !== 'POST') return methodNotAllowed(req, res);
    return runtimeInitError(host, req, res);
  }
  if (path === '/2020-01-01/extension/register') {
    if (method !== 'POST') return methodNotAllowed(req, res);
    return extensionRegister(host, req, res);
  }
  if (path === '/2020-01-01/extension/event/next') {
    if (method !== 'GET') return methodNotAllowed(req, res);
    return extensionNext(host, req, res);
  }
  if (path === '/2020-01-01/extension/init/error' || path === '/2020-01-01/extension/exit/error') {
    if (method !== 'POST') return methodNotAllowed(req, res);
    return extensionError(host, req, res, path.endsWith('/init/error') ? 'init' : 'exit');
  }
  if (path === '/2022-07-01/telemetry' || path === '/2022-07-01/telemetry/') {
    if (method !== 'PUT') return methodNotAllowed(req, res);
    return telemetrySubscribe(host, req, res);
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

function methodNotAllowed(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  sendError(res, 405, 'MethodNotAllowed', `${req.method} is not allowed on ${req.url}`);
}
