// Shared by the Azure, GCP and cross-cloud tests: a real control API in this process, loopback
// destination servers that count what reaches them, a policy built for their ports, and function
// processes started as children (own process group, killed in `close()`).
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IssueOptions } from '../../control/auth.js';
import {
  type RunningControlServer,
  type StartControlServerOptions,
  startControlServer,
} from '../../control/server.js';
import type { DenyRecord } from '../../policy/types.js';

export const ROOT = join(import.meta.dirname, '../..');

export interface Destination {
  port: number;
  url: string;
  requests: number;
  bytes: number;
}

export interface FunctionProcess {
  child: ChildProcess;
  output: string[];
}

export class CrossCloudHarness {
  control!: RunningControlServer;
  adminToken = '';
  workloadToken = '';
  dir = '';
  publicKeyFile = '';
  readonly destinations: Record<string, Destination> = {};
  private servers: http.Server[] = [];
  private children: FunctionProcess[] = [];

  async start(
    destinationNames: string[],
    control: StartControlServerOptions = {},
    workloadToken: IssueOptions = {},
  ): Promise<void> {
    this.dir = mkdtempSync(join(tmpdir(), 'bulkhead-xc-'));
    this.control = await startControlServer(control);
    this.adminToken = (await this.control.issueToken('admin')).token;
    this.workloadToken = (await this.control.issueToken('workload', 'functions', workloadToken)).token;
    this.publicKeyFile = join(this.dir, 'control.pub');
    writeFileSync(this.publicKeyFile, this.control.key.publicKeyPem);
    for (const name of destinationNames) this.destinations[name] = await this.startDestination();
  }

  private async startDestination(): Promise<Destination> {
    const destination: Destination = { port: 0, url: '', requests: 0, bytes: 0 };
    const server = http.createServer((req, res) => {
      destination.requests++;
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
    });
    server.on('connection', (socket) =>
      socket.on('data', (chunk: Buffer) => {
        destination.bytes += chunk.length;
      }),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    destination.port = (server.address() as AddressInfo).port;
    destination.url = `http://localhost:${destination.port}`;
    this.servers.push(server);
    return destination;
  }

  /** Apply YAML; returns the new revision. */
  async apply(yaml: string): Promise<number> {
    const response = await fetch(`${this.control.url}/v1/policy?file=test.yaml`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${this.adminToken}`, 'content-type': 'application/yaml' },
      body: yaml,
    });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`apply failed ${response.status}: ${text}`);
    return (JSON.parse(text) as { revision: number }).revision;
  }

  async denies(): Promise<DenyRecord[]> {
    const response = await fetch(`${this.control.url}/v1/denies?limit=500&order=asc`, {
      headers: { authorization: `Bearer ${this.adminToken}` },
    });
    if (response.status !== 200) throw new Error(`GET /v1/denies answered ${response.status}`);
    return ((await response.json()) as { records: DenyRecord[] }).records;
  }

  async workloads(): Promise<{ identity: Record<string, string>; revision?: number }[]> {
    const response = await fetch(`${this.control.url}/v1/workloads`, {
      headers: { authorization: `Bearer ${this.adminToken}` },
    });
    return (
      (await response.json()) as { workloads: { identity: Record<string, string>; revision?: number }[] }
    ).workloads;
  }

  /** Environment every function process gets: control API, token, key, report sink, tags. */
  functionEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'production',
      BULKHEAD_CONTROL_URL: this.control.url,
      BULKHEAD_TOKEN: this.workloadToken,
      BULKHEAD_TRUSTED_KEYS: this.publicKeyFile,
      BULKHEAD_REPORT: `${this.control.url}/v1/reports`,
      ...extra,
    };
    for (const [name, destination] of Object.entries(this.destinations)) {
      env[`DEST_${name.toUpperCase()}_URL`] = destination.url;
    }
    return env;
  }

  spawnFunction(command: string, args: string[], env: NodeJS.ProcessEnv): FunctionProcess {
    const child = spawn(command, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const fn: FunctionProcess = { child, output: [] };
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') fn.output.push(line);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.children.push(fn);
    return fn;
  }

  async waitForOutput(fn: FunctionProcess, pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const line of fn.output) {
        const match = pattern.exec(line);
        if (match) return match;
      }
      if (fn.child.exitCode !== null) throw new Error(`process exited: ${fn.output.slice(-20).join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`no line matching ${pattern} within ${timeoutMs} ms: ${fn.output.slice(-20).join('\n')}`);
  }

  async waitForPort(fn: FunctionProcess, port: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (fn.child.exitCode !== null) throw new Error(`process exited: ${fn.output.slice(-20).join('\n')}`);
      const open = await new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      });
      if (open) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`port ${port} not open within ${timeoutMs} ms: ${fn.output.slice(-20).join('\n')}`);
  }

  /** Poll until `check` holds (records travel asynchronously). */
  async eventually<T>(
    what: string,
    probe: () => Promise<T>,
    check: (value: T) => boolean,
    timeoutMs = 10_000,
  ) {
    const deadline = Date.now() + timeoutMs;
    let last = await probe();
    while (!check(last)) {
      if (Date.now() > deadline) throw new Error(`${what}: condition not met within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 25));
      last = await probe();
    }
    return last;
  }

  async close(): Promise<void> {
    for (const fn of this.children.splice(0)) {
      if (fn.child.exitCode !== null || fn.child.signalCode !== null || fn.child.pid === undefined) continue;
      const exited = once(fn.child, 'exit');
      try {
        process.kill(-fn.child.pid, 'SIGKILL');
      } catch {
        continue;
      }
      await exited;
    }
    for (const server of this.servers.splice(0)) {
      server.closeAllConnections();
      server.close();
    }
    await this.control?.close();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A free loopback port for servers that cannot report theirs (functions-framework prints the one it was given). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** The payments SmartGroup + an enforce policy allowing only `allowedPort` on localhost. */
export function paymentsPolicy(allowedPorts: number[], extra = ''): string {
  const allows = allowedPorts.map((port) => `    - to: { host: localhost, port: ${port} }`).join('\n');
  return `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: payments }
spec:
  match:
    tags: { app: payments }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: payments-egress }
spec:
  appliesTo: [payments]
  mode: enforce
  owner: payments-team@example.com
  allow:
${allows}
${extra}`;
}
