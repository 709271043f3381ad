// Receives Telemetry API batches and tells the INVOKE loop when the runtime finished a request
// (`platform.runtimeDone`): the backstop for a shim that never wrote its done line (a crashed runtime).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readBody } from '../runtime-shims/node/client/read-body.js';

const MAX_BATCH_BYTES = 4 * 1024 * 1024;
const MAX_REMEMBERED = 64;

export class TelemetryListener {
  private server: Server | undefined;
  private readonly finished: string[] = [];
  private readonly waiters = new Map<string, () => void>();

  async listen(): Promise<number> {
    const server = createServer((req, res) => {
      void readBody(req, MAX_BATCH_BYTES, { overLimit: 'drain' }).then((read) => {
        if (read.ok || read.reason === 'too-large') res.writeHead(200).end();
        if (read.ok) this.receive(read.body.toString('utf8'));
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.server = server;
    return (server.address() as AddressInfo).port;
  }

  /** Resolves true once the runtime is done with `requestId`, false at `deadline` (epoch ms). */
  waitRuntimeDone(requestId: string, deadline: number): Promise<boolean> {
    if (this.finished.includes(requestId)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          this.waiters.delete(requestId);
          resolve(false);
        },
        Math.max(0, deadline - Date.now()),
      );
      this.waiters.set(requestId, () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  close(): void {
    this.server?.closeAllConnections();
    this.server?.close();
  }

  private receive(text: string): void {
    let events: unknown;
    try {
      events = JSON.parse(text);
    } catch {
      return;
    }
    if (!Array.isArray(events)) return;
    for (const event of events) {
      if (typeof event !== 'object' || event === null) continue;
      const { type, record } = event as { type?: unknown; record?: { requestId?: unknown } };
      if (type !== 'platform.runtimeDone' || typeof record?.requestId !== 'string') continue;
      this.finished.push(record.requestId);
      if (this.finished.length > MAX_REMEMBERED) this.finished.shift();
      const waiter = this.waiters.get(record.requestId);
      this.waiters.delete(record.requestId);
      waiter?.();
    }
  }
}
