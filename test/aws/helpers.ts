import { AsyncLocalStorage } from 'node:async_hooks';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ShimPort } from '../../runtime-shims/node/aws/shim-port.js';

/**
 * A shim port that records what the wrappers ask of the core, with the core's semantics where the
 * wrappers depend on them (invocation id visible through AsyncLocalStorage, revision moved by reload).
 * Used to check call order; the real core is exercised in the integration tests.
 */
export class RecordingShim implements ShimPort {
  readonly calls: string[] = [];
  readonly storage = new AsyncLocalStorage<string>();
  revision = 1;
  /** Revision the next reload() adopts (what the extension wrote to disk). */
  revisionOnDisk = 1;
  flushImpl: () => Promise<void> = async () => undefined;
  installImpl: () => void = () => undefined;
  currentInvocationId: string | undefined;

  install(): void {
    this.calls.push('install');
    this.installImpl();
  }
  reload(): void {
    this.calls.push(`reload:${this.revisionOnDisk}`);
    this.revision = this.revisionOnDisk;
  }
  async flush(): Promise<void> {
    this.calls.push('flush:start');
    await this.flushImpl();
    this.calls.push('flush:end');
  }
  runInInvocation<T>(invocationId: string, fn: () => T): T {
    this.calls.push(`run:${invocationId}`);
    return this.storage.run(invocationId, fn);
  }
  setInvocationId(invocationId: string | undefined): void {
    this.currentInvocationId = invocationId;
    this.calls.push(`set:${invocationId ?? '-'}`);
  }
  status(): { revision: number } {
    return { revision: this.revision };
  }
}

export function fakeContext(requestId: string, remainingMs = 30_000) {
  const deadline = Date.now() + remainingMs;
  return {
    awsRequestId: requestId,
    functionName: 'test-fn',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:test-fn',
    memoryLimitInMB: '128',
    logGroupName: '/aws/lambda/test-fn',
    logStreamName: 'stream',
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => deadline - Date.now(),
  };
}

export interface FakeExtension {
  url: string;
  /** Request ids asked for, in order. */
  asked: string[];
  /** How to answer: a revision, or a custom responder. */
  respond: (req: IncomingMessage, res: ServerResponse, requestId: string) => void;
  close(): Promise<void>;
}

/** A loopback HTTP server speaking the extension's local endpoint (docs/contracts.md §6). */
export async function startFakeExtension(revision = 1): Promise<FakeExtension> {
  const hanging = new Set<ServerResponse>();
  const state: FakeExtension = {
    url: '',
    asked: [],
    respond: (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ revision, bundleFile: '/tmp/bulkhead/bundle.json' }));
    },
    close: async () => undefined,
  };
  const server: Server = createServer((req, res) => {
    const match = /^\/v1\/invocations\/([^/]+)\/ready$/.exec(req.url ?? '');
    if (!match || req.method !== 'GET') {
      res.writeHead(404).end();
      return;
    }
    const requestId = decodeURIComponent(match[1] ?? '');
    state.asked.push(requestId);
    hanging.add(res);
    res.on('close', () => hanging.delete(res));
    state.respond(req, res, requestId);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = async () => {
    for (const res of hanging) res.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return state;
}
