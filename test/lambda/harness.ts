// Shared set-up for the Lambda end-to-end tests and benchmarks: a control API in this process
// (SQLite in memory), an unpacked layer built from dist/, and emulated sandboxes running it.
// No test-framework imports: benchmarks use it too.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { type AssembleOptions, assembleLayer, packageRoot } from '../../layers/build.js';
import { LambdaEmulator, type SandboxOptions } from '../emulator/index.js';

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

export async function startControl(): Promise<ControlHarness> {
  const server = await startControlServer();
  const admin = await server.issueToken('admin', 'e2e-admin');
  const workload = await server.issueToken('workload', 'e2e-workload');
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

export interface LayerHarness {
  dir: string;
  cleanup(): void;
}

/** Assembles the layer from dist/ into a temp folder (the emulator's /opt). */
export function buildLayerDir(options: AssembleOptions = {}): LayerHarness {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-opt-'));
  assembleLayer(dir, options);
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
