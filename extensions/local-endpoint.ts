// The extension's endpoint for the runtime (docs/contracts.md §6), on 127.0.0.1 only:
// `GET /v1/invocations/{requestId}/ready` answers once this extension finished the INVOKE
// refresh for that request, so a policy applied before the INVOKE governs the invocation.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReadyState {
  revision: number;
  bundleFile: string;
}

interface Waiter {
  res: ServerResponse;
  timer: NodeJS.Timeout;
}

/** How long the endpoint holds a request for an INVOKE it has not seen yet. */
const DEFAULT_MAX_WAIT_MS = 2_000;
const MAX_REMEMBERED = 64;
const REQUEST_ID = /^\/v1\/invocations\/([^/]{1,200})\/ready$/;

export class LocalEndpoint {
  private server: Server | undefined;
  private readonly done = new Set<string>();
  private readonly doneOrder: string[] = [];
  private readonly waiters = new Map<string, Waiter[]>();

  constructor(
    private readonly state: () => ReadyState,
    private readonly maxWaitMs = DEFAULT_MAX_WAIT_MS,
  ) {}

  async listen(port: number): Promise<string> {
    const server = createServer((req, res) => {
      req.resume();
      const match = req.method === 'GET' ? REQUEST_ID.exec(req.url ?? '') : null;
      if (req.url === '/healthz') return this.answer(res, 200);
      if (!match) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
        return;
      }
      let requestId: string;
      try {
        requestId = decodeURIComponent(match[1] ?? '');
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"bad request id"}');
        return;
      }
      if (this.done.has(requestId)) return this.answer(res, 200);
      this.hold(requestId, res);
    });
    server.keepAliveTimeout = 0;
    server.requestTimeout = 0;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.server = server;
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** The INVOKE refresh for `requestId` is finished: release whoever waits for it. */
  markReady(requestId: string): void {
    this.done.add(requestId);
    this.doneOrder.push(requestId);
    while (this.doneOrder.length > MAX_REMEMBERED) {
      const old = this.doneOrder.shift();
      if (old !== undefined) this.done.delete(old);
    }
    const waiting = this.waiters.get(requestId);
    this.waiters.delete(requestId);
    for (const waiter of waiting ?? []) {
      clearTimeout(waiter.timer);
      this.answer(waiter.res, 200);
    }
  }

  close(): void {
    for (const list of this.waiters.values()) for (const w of list) clearTimeout(w.timer);
    this.waiters.clear();
    this.server?.closeAllConnections();
    this.server?.close();
  }

  private hold(requestId: string, res: ServerResponse): void {
    if (this.waiters.size > 256) {
      this.answer(res, 200);
      return;
    }
    // Past the bound, answer with what is held: the shim must not stall the invocation.
    const timer = setTimeout(() => {
      const list = this.waiters.get(requestId)?.filter((w) => w.res !== res) ?? [];
      if (list.length === 0) this.waiters.delete(requestId);
      else this.waiters.set(requestId, list);
      this.answer(res, 200);
    }, this.maxWaitMs);
    const list = this.waiters.get(requestId) ?? [];
    list.push({ res, timer });
    this.waiters.set(requestId, list);
    res.on('close', () => clearTimeout(timer));
  }

  private answer(res: ServerResponse, status: number): void {
    if (res.writableEnded || res.destroyed) return;
    const body = JSON.stringify(this.state());
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }
}
