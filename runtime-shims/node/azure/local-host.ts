// `node dist/azure-local.mjs --app <file>`: runs an Azure Functions v4 app on loopback through the
// worker stand-in (local-worker.ts), with an HTTP front shaped like the Functions host's: HTTP
// triggers at `/api/<route or name>`, any function at `POST /admin/functions/<name>` with
// `{"input": "..."}` (the host's admin route for non-HTTP triggers). This is NOT the Functions host:
// no auth levels, no real bindings, no scale controller — it exists so Bulkhead's Azure wrapper and
// the demo run real `@azure/functions` code without Core Tools.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { readBody } from '../client/read-body.js';
import { installLocalWorker, type LocalAzureWorker, type RpcTypedData } from './local-worker.js';

const MAX_BODY_BYTES = 1024 * 1024;

export interface LocalHost {
  url: string;
  worker: LocalAzureWorker;
  close(): Promise<void>;
}

/** Load the app (after the stand-in is in place), run appStart, and serve it on 127.0.0.1. */
export async function startLocalHost(options: {
  appFile: string;
  port?: number;
  host?: string;
}): Promise<LocalHost> {
  const worker = installLocalWorker();
  await import(pathToFileURL(resolve(options.appFile)).href);
  await worker.start(resolve(options.appFile, '..'));
  const server = http.createServer((req, res) => {
    handle(worker, req, res).catch((error: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: error.message }));
    });
  });
  server.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  return {
    url: `http://${address.address}:${address.port}`,
    worker,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await worker.terminate();
    },
  };
}

/** The request body, up to MAX_BODY_BYTES; past it the connection is closed and the handler fails. */
async function readRequestBody(req: http.IncomingMessage): Promise<Buffer> {
  const read = await readBody(req, MAX_BODY_BYTES);
  if (read.ok) return read.body;
  throw read.reason === 'too-large'
    ? new Error(`request body larger than ${MAX_BODY_BYTES} bytes`)
    : read.error;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

async function handle(
  worker: LocalAzureWorker,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const body = await readRequestBody(req);
  const admin = /^\/admin\/functions\/([^/]+)$/.exec(url.pathname);
  if (admin && req.method === 'POST') {
    let name: string;
    try {
      name = decodeURIComponent(admin[1] as string);
    } catch {
      return sendJson(res, 400, { error: 'bad percent-encoding in the function name' });
    }
    if (!worker.functions.has(name)) return sendJson(res, 404, { error: `no function named "${name}"` });
    let input: unknown;
    try {
      input = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
    } catch {
      return sendJson(res, 400, { error: 'body must be JSON {"input": "..."}' });
    }
    const text =
      typeof (input as { input?: unknown }).input === 'string' ? (input as { input: string }).input : '';
    const triggerType = worker.triggerOf(name).binding.type;
    const triggerData: RpcTypedData =
      triggerType === 'timerTrigger' ? { json: text || '{"IsPastDue":false}' } : { string: text };
    const outcome = await worker.invoke(name, { triggerData });
    // The host answers 202 at once; here the answer waits for the invocation so callers see its result.
    return sendJson(res, outcome.error ? 500 : 202, {
      invocationId: outcome.invocationId,
      ...(outcome.error
        ? { error: outcome.error.message }
        : { returnValue: decodeTypedData(outcome.response?.returnValue) }),
    });
  }
  const route = /^\/api\/(.+)$/.exec(url.pathname)?.[1];
  const target = route === undefined ? undefined : findHttpFunction(worker, route, req.method ?? 'GET');
  if (!target) return sendJson(res, 404, { error: `no HTTP function for ${req.method} ${url.pathname}` });
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(req.headers)) {
    if (typeof value === 'string') headers[key] = value;
    else if (Array.isArray(value)) headers[key] = value.join(', ');
  }
  const outcome = await worker.invoke(target, {
    triggerData: {
      http: {
        method: req.method ?? 'GET',
        url: url.href,
        headers,
        query: Object.fromEntries(url.searchParams),
        params: {},
        body: { bytes: body },
      },
    },
  });
  if (outcome.error)
    return sendJson(res, 500, { error: outcome.error.message, invocationId: outcome.invocationId });
  const rpc = outcome.response?.returnValue?.http;
  if (!rpc) {
    res.writeHead(204).end();
    return;
  }
  res.writeHead(Number(rpc.statusCode ?? 200), {
    ...(rpc.headers ?? {}),
    'x-invocation-id': outcome.invocationId,
  });
  res.end(rpc.body?.bytes ? Buffer.from(rpc.body.bytes) : rpc.body?.string);
}

function decodeTypedData(data: RpcTypedData | null | undefined): unknown {
  if (!data) return undefined;
  if (data.json !== undefined) return JSON.parse(data.json);
  if (data.string !== undefined) return data.string;
  if (data.bytes !== undefined) return Buffer.from(data.bytes).toString('base64');
  return data.int ?? data.double;
}

function findHttpFunction(worker: LocalAzureWorker, route: string, method: string): string | undefined {
  for (const [name] of worker.functions) {
    const { binding } = worker.triggerOf(name);
    if (binding.type !== 'httpTrigger') continue;
    const declared = typeof binding.route === 'string' && binding.route !== '' ? binding.route : name;
    const methods = Array.isArray(binding.methods)
      ? binding.methods.map((m) => String(m).toUpperCase())
      : undefined;
    if (
      declared.toLowerCase() === route.toLowerCase() &&
      (!methods || methods.includes(method.toUpperCase()))
    ) {
      return name;
    }
  }
  return undefined;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { app: { type: 'string' }, port: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help || !values.app) {
    console.log(
      'usage: azure-local --app <app entry file> [--port N]\n' +
        'Runs an Azure Functions v4 app on 127.0.0.1 through a stand-in for the worker (not the Functions host).',
    );
    process.exit(values.help ? 0 : 2);
  }
  const port = values.port === undefined ? 0 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error('azure-local: --port must be 0-65535');
    process.exit(2);
  }
  const host = await startLocalHost({ appFile: values.app, port });
  console.log(
    `azure-local: listening on ${host.url} (functions: ${[...host.worker.functions.keys()].join(', ')})`,
  );
  const stop = () => {
    host.close().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

// Run as a program (dist/azure-local.mjs), not when imported by tests.
if (process.argv[1] && /azure-local\.(m?js|cjs)$/.test(process.argv[1])) {
  main().catch((error: Error) => {
    console.error(`azure-local: ${error.message}`);
    process.exit(1);
  });
}
