// Shared set-up for the Lambda end-to-end tests and benchmarks: a control API in this process
// (SQLite in memory), an unpacked layer built from dist/, and emulated sandboxes running it.
// No test-framework imports: benchmarks use it too.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IssueOptions } from '../../control/auth.js';
import {
  type RunningControlServer,
  type StartControlServerOptions,
  startControlServer,
} from '../../control/server.js';
import { LambdaEmulator, type SandboxOptions } from '../../emulator/index.js';
import { type AssembleOptions, assembleLayer, packageRoot } from '../../layers/build.js';

// From the package root, so bundled benchmarks find them too.
export const FIXTURES = join(packageRoot(), 'test', 'lambda', 'fixtures');

export interface ControlHarness {
  server: RunningControlServer;
  url: string;
  adminToken: string;
  workloadToken: string;
  publicKeyPem: string;
  /** PUT /v1/policy; returns the new revision. */
  apply(yaml: string): Promise<number>;
  denies(query?: string): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

export async function startControl(
  options: StartControlServerOptions = {},
  workloadToken: IssueOptions = {},
): Promise<ControlHarness> {
  const server = await startControlServer(options);
  const admin = await server.issueToken('admin', 'e2e-admin');
  const workload = await server.issueToken('workload', 'e2e-workload', workloadToken);
  const call = async (method: string, path: string, body?: string, contentType?: string) => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${admin.token}`,
        ...(contentType ? { 'content-type': contentType } : {}),
      },
      ...(body !== undefined ? { body } : {}),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text) as Record<string, unknown>;
  };
  return {
    server,
    url: server.url,
    adminToken: admin.token,
    workloadToken: workload.token,
    publicKeyPem: server.key.publicKeyPem,
    async apply(yaml) {
      const answer = await call('PUT', '/v1/policy', yaml, 'application/yaml');
      return Number(answer.revision);
    },
    async denies(query = '') {
      const answer = await call('GET', `/v1/denies${query ? `?${query}` : ''}`);
      const list = (answer.records ?? answer.denies ?? answer.items) as Record<string, unknown>[] | undefined;
      return list ?? [];
    },
    close: () => server.close(),
  };
}

/** A destination on 127.0.0.1 that answers `ok` to every request: the function's one allowed call. */
export async function startDestination(): Promise<{ port: number; close(): void }> {
  const server = createServer((req, res) => {
    req.resume();
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}

export interface LayerHarness {
  dir: string;
  cleanup(): void;
}

/**
 * Assembles the layer from dist/ into a temp folder (the emulator's /opt). Without the vendored Python
 * wheels unless asked (`pythonDeps: true`): Node functions do not load them.
 */
export function buildLayerDir(options: AssembleOptions = {}): LayerHarness {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-opt-'));
  assembleLayer(dir, { pythonDeps: false, ...options });
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function distFile(name: string): string {
  return join(packageRoot(), 'dist', name);
}

export interface SandboxHarnessOptions extends Partial<SandboxOptions> {
  layer?: LayerHarness | undefined;
  control?: ControlHarness | undefined;
  /** Function folder under fixtures/functions. */
  fn?: string;
  /** Attach the layer the documented way (exec wrapper + token); default true when a layer is given. */
  wrapper?: boolean;
}

/** A sandbox running `fixtures/functions/<fn>` with the layer attached. Not started. */
export function createSandbox(options: SandboxHarnessOptions): LambdaEmulator {
  const { layer, control, fn = 'cjs', wrapper = layer !== undefined, env = {}, ...rest } = options;
  return new LambdaEmulator({
    taskRoot: join(FIXTURES, 'functions', fn),
    handler: 'index.handler',
    functionName: 'charge-card',
    ...(layer ? { optDir: layer.dir } : {}),
    ...rest,
    env: {
      ...(wrapper && layer ? { AWS_LAMBDA_EXEC_WRAPPER: join(layer.dir, 'bulkhead-wrapper') } : {}),
      ...(control ? { BULKHEAD_TOKEN: control.workloadToken } : {}),
      ...env,
    },
  });
}

/**
 * A pass-through proxy in front of the control API that can tamper with bundle answers
 * (changes the signed payload, keeps the signature), as a hostile CDN or cache would.
 */
export class TamperingProxy {
  server!: Server;
  url = '';
  tamper = false;
  down = false;
  hang = false;
  /** Bundle requests that were not long-polls (a conditional check at INVOKE). */
  plainBundleRequests = 0;
  constructor(private readonly target: string) {}
  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      if (this.down) {
        req.socket.destroy();
        return;
      }
      if (req.url?.startsWith('/v1/bundle') && !/[?&]wait=/.test(req.url)) this.plainBundleRequests++;
      // A black hole: the request is read and never answered.
      if (this.hang) return;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const headers = { ...req.headers };
        delete headers.host;
        if (this.tamper) delete headers['if-none-match'];
        const upstream = request(`${this.target}${req.url}`, { method: req.method, headers }, (answer) => {
          const body: Buffer[] = [];
          answer.on('data', (c: Buffer) => body.push(c));
          answer.on('end', () => {
            let text = Buffer.concat(body);
            const outHeaders = { ...answer.headers };
            if (this.tamper && req.url?.startsWith('/v1/bundle') && answer.statusCode === 200) {
              const envelope = JSON.parse(text.toString('utf8')) as { payload: string };
              const payload = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8'));
              payload.revision += 1000;
              envelope.payload = Buffer.from(JSON.stringify(payload)).toString('base64');
              text = Buffer.from(JSON.stringify(envelope));
              outHeaders['content-length'] = String(text.length);
            }
            res.writeHead(answer.statusCode ?? 502, outHeaders);
            res.end(text);
          });
        });
        upstream.on('error', () => res.writeHead(502).end());
        upstream.end(Buffer.concat(chunks));
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * The policy the Lambda tests and benchmarks apply: SmartGroup `cards` selects the `charge-card` function,
 * whose egress policy allows `port` on `host` for each of `ports` (every other destination is denied).
 */
export function cardsPolicy(
  ports: number[],
  mode: 'enforce' | 'observe' = 'enforce',
  host = 'localhost',
): string {
  return `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: cards }
spec:
  match: { cloud: aws, name: charge-card }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: cards-egress }
spec:
  appliesTo: [cards]
  mode: ${mode}
  owner: team-cards
  allow:
${ports.map((port) => `    - to: { host: ${host}, port: ${port} }`).join('\n')}
`;
}

/** An HTTP destination on 127.0.0.1 that counts what reaches it (`url` names it as `localhost`). */
export class Destination {
  server!: Server;
  hits = 0;
  port = 0;
  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      this.hits++;
      req.resume();
      res.end('ok');
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }
  get url(): string {
    return `http://localhost:${this.port}/`;
  }
  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
