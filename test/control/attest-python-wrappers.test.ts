// The Python GCP and Azure wrappers attest against the REAL control API (--require-attested), end to end
// on loopback: the control API in this process with attestation for gcp and azure (the JWT stand-in's
// issuer and JWKS), a workload token limited to the functions' SmartGroup; the GCP function on the real
// Python functions framework (gunicorn, `bulkhead_shim.gcp`, the shim preloaded from PYTHONPATH) gets its
// identity token from the stand-in's metadata server (GCE_METADATA_HOST); the Azure app (Python v2
// model, `bulkhead_shim.azure`) under the worker stand-in (azure-local/worker_standin.py) gets its
// managed-identity token from the stand-in's identity endpoint (IDENTITY_ENDPOINT, IDENTITY_HEADER).
// Shown: the bundle is fetched although the workload token alone gets none, records are stored with the
// attested identity, and a token of another project or tenant is refused (the fail mode governs, the
// log says why). No log holds a token.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPythonRuntime } from '../../emulator/index.js';
import { packageRoot } from '../../layers/build.js';
import { type ControlHarness, startControl } from '../lambda/harness.js';
import {
  DEFAULT_MANAGED_IDENTITY,
  JwtStandin,
  type ManagedIdentity,
  METADATA_IDENTITY_PATH,
  STANDIN_GOOGLE_ISSUER,
} from '../support/jwt-standin.js';

const ROOT = packageRoot();
const PY = join(ROOT, 'runtime-shims', 'python');
const SRC = join(PY, 'src');
const SITE = join(PY, 'tests', 'fixtures', 'site-packages');
const GCP_APP = join(PY, 'tests', 'fixtures', 'gcp_app', 'main.py');
const AZURE_APP = join(PY, 'tests', 'fixtures', 'azure_app');
const AZURE_STANDIN = join(PY, 'azure-local', 'worker_standin.py');
const AUDIENCE = 'https://bulkhead.example.test';
const TENANT = DEFAULT_MANAGED_IDENTITY.tenant;
const SUBSCRIPTION = '6d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a';
const OTHER_TENANT: ManagedIdentity = {
  tenant: '0d9e8f7a-6b5c-4d3e-9f1a-2b3c4d5e6f70',
  objectId: '3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a99',
  clientId: '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d',
  resourceId: DEFAULT_MANAGED_IDENTITY.resourceId,
};

// The interpreter: a repository venv (`node scripts/python.mjs setup`) with functions-framework and
// azure-functions.
const found = findPythonRuntime();
const python = found.python;
const framework = python ? join(dirname(python), 'functions-framework') : undefined;
const missing = !python
  ? found.reason
  : !existsSync(framework as string)
    ? 'functions-framework is not installed'
    : spawnSync(python, ['-c', 'import azure.functions'], { encoding: 'utf8' }).status !== 0
      ? 'azure-functions is not installed'
      : undefined;

/** SmartGroup demo (tag app=demo): 127.0.0.9 allowed, everything else denied; ctypes for gunicorn. */
function policy(): string {
  return `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: demo }
spec:
  match: { tags: { app: demo } }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: py }
spec:
  appliesTo: [demo]
  mode: enforce
  owner: team@example.com
  allow:
    - { to: { cidr: 127.0.0.9/32 } }
  addons: { allow: ["_ctypes*"] }
`;
}

function freePort(): Promise<number> {
  const server = createServer();
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    }),
  );
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

async function eventually<T>(read: () => Promise<T>, ok: (value: T) => boolean, ms = 8_000): Promise<T> {
  const deadline = Date.now() + ms;
  let value = await read();
  while (!ok(value) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    value = await read();
  }
  return value;
}

/** A function process whose output (stdout and stderr) is kept. */
class Fn {
  output = '';
  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (chunk: Buffer) => {
      this.output += chunk.toString('utf8');
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.output += chunk.toString('utf8');
    });
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

async function get(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(20_000) });
  return { status: response.status, text: await response.text(), headers: response.headers };
}

describe.skipIf(missing !== undefined)(
  `the Python GCP and Azure wrappers attest against the control API (${missing ?? `python at ${python}`})`,
  () => {
    let standin: JwtStandin;
    let control: ControlHarness;
    let revision: number;
    let folder: string;
    let keys: string;
    /** A metadata server that answers for another project's service account (same issuer, same keys). */
    let otherMetadata: Server;
    let otherMetadataHost: string;
    const functions: Fn[] = [];

    beforeAll(async () => {
      standin = await JwtStandin.start({ userAssigned: [OTHER_TENANT] });
      control = await startControl(
        {
          attestation: {
            audience: AUDIENCE,
            gcp: {
              issuers: [STANDIN_GOOGLE_ISSUER],
              jwksUri: standin.googleJwksUri,
              projects: ['demo-project'],
            },
            azure: {
              tenants: [TENANT],
              issuers: [
                `https://sts.windows.net/${TENANT}/`,
                `https://login.microsoftonline.com/${TENANT}/v2.0`,
              ],
              jwksUri: standin.azureJwksUri,
            },
            require: true,
          },
        },
        { groups: ['demo'] },
      );
      revision = await control.apply(policy());
      folder = mkdtempSync(join(tmpdir(), 'bulkhead-py-attest-'));
      keys = join(folder, 'control.pub');
      writeFileSync(keys, control.publicKeyPem);
      otherMetadata = createServer((request, response) => {
        const url = new URL(request.url ?? '/', 'http://metadata');
        if (url.pathname !== METADATA_IDENTITY_PATH || request.headers['metadata-flavor'] !== 'Google') {
          response.writeHead(403).end();
          return;
        }
        void standin
          .mintGoogle({
            audience: url.searchParams.get('audience') ?? '',
            claims: { email: 'egress-fn@other-project.iam.gserviceaccount.com' },
          })
          .then((token) => response.writeHead(200, { 'metadata-flavor': 'Google' }).end(token));
      });
      await new Promise<void>((resolve) => otherMetadata.listen(0, '127.0.0.1', resolve));
      otherMetadataHost = `127.0.0.1:${(otherMetadata.address() as AddressInfo).port}`;
    }, 60_000);

    afterAll(async () => {
      await Promise.all(functions.map((fn) => fn.stop()));
      otherMetadata?.close();
      await standin?.close();
      await control?.close();
      if (folder) rmSync(folder, { recursive: true, force: true });
    });

    function baseEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
      const env: NodeJS.ProcessEnv = {};
      for (const [name, value] of Object.entries(process.env))
        if (!/^(BULKHEAD_|PYTHON|K_|AWS_|IDENTITY_|GCE_|WEBSITE_)/.test(name)) env[name] = value;
      return {
        ...env,
        PYTHONDONTWRITEBYTECODE: '1',
        BULKHEAD_CONTROL_URL: control.url,
        BULKHEAD_TOKEN: control.workloadToken,
        BULKHEAD_TRUSTED_KEYS: keys,
        BULKHEAD_TAGS: 'app=demo',
        BULKHEAD_ATTEST_AUDIENCE: AUDIENCE,
        ...extra,
      };
    }

    function expectNoSecrets(fn: Fn): void {
      expect(fn.output).not.toContain(control.workloadToken);
      expect(fn.output).not.toContain(standin.identityHeader);
      expect(fn.output).not.toMatch(/bhk_[0-9a-f]{16}_/);
      // No JWT (header.payload.signature, base64url JSON).
      expect(fn.output).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/);
    }

    async function gcpFunction(env: Record<string, string>): Promise<{ fn: Fn; url: string }> {
      const port = await freePort();
      const child = spawn(
        framework as string,
        ['--target', 'egress', '--source', GCP_APP, '--host', '127.0.0.1', '--port', String(port)],
        {
          cwd: folder,
          env: baseEnv({
            K_SERVICE: 'egress-svc',
            K_REVISION: 'egress-svc-00007-abc',
            FUNCTION_TARGET: 'egress',
            FUNCTION_REGION: 'europe-west1',
            PYTHONPATH: [SRC, SITE].join(':'),
            BULKHEAD_ATTEST: 'gcp',
            ...env,
          }),
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      const fn = new Fn(child);
      functions.push(fn);
      const deadline = Date.now() + 30_000;
      while (!(await canConnect(port))) {
        if (child.exitCode !== null || Date.now() > deadline)
          throw new Error(`functions-framework did not start:\n${fn.output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return { fn, url: `http://127.0.0.1:${port}/` };
    }

    async function azureApp(env: Record<string, string>): Promise<{ fn: Fn; url: string }> {
      // The package alone (a link, as pip would put a copy): no sitecustomize on the path.
      const packages = mkdtempSync(join(folder, 'packages-'));
      symlinkSync(join(SRC, 'bulkhead_shim'), join(packages, 'bulkhead_shim'));
      const child = spawn(python as string, [AZURE_STANDIN, '--app', AZURE_APP], {
        cwd: folder,
        env: baseEnv({
          PYTHONPATH: [packages, SITE].join(':'),
          WEBSITE_SITE_NAME: 'egress-app',
          REGION_NAME: 'westeurope',
          WEBSITE_OWNER_NAME: `${SUBSCRIPTION}+rg-egress-westeuropewebspace`,
          BULKHEAD_ATTEST: 'azure',
          IDENTITY_ENDPOINT: standin.identityEndpoint,
          IDENTITY_HEADER: standin.identityHeader,
          ...env,
        }),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const fn = new Fn(child);
      functions.push(fn);
      const deadline = Date.now() + 30_000;
      for (;;) {
        const line = fn.output.split('\n').find((l) => l.startsWith('{') && l.includes('"port"'));
        if (line) return { fn, url: `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}/api` };
        if (child.exitCode !== null || Date.now() > deadline)
          throw new Error(`the Azure worker stand-in did not start:\n${fn.output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }

    describe('GCP (functions-framework, BULKHEAD_ATTEST=gcp)', () => {
      it('attests with the metadata server token: bundle fetched, records stored as the service account', async () => {
        const { fn, url } = await gcpFunction({
          GOOGLE_CLOUD_PROJECT: 'demo-project',
          GCE_METADATA_HOST: standin.metadataHost,
        });
        const status = await get(`${url}?to=status`);
        expect(status.status, fn.output).toBe(200);
        const state = (JSON.parse(status.text) as { status: Record<string, unknown> }).status;
        expect(state, fn.output).toMatchObject({ revision, controlled: true });
        expect(fn.output).toContain(
          'attested (gcp) as egress-fn@demo-project.iam.gserviceaccount.com; session ',
        );
        expect(standin.seen.some((s) => s.path === METADATA_IDENTITY_PATH && s.status === 200)).toBe(true);

        const denied = await get(`${url}?to=tracker`, { 'Function-Execution-Id': 'exec-gcp-attested' });
        expect(denied.status).toBe(403);
        expect(denied.text).toContain(
          `Bulkhead denied connect to 127.0.0.7:9 (rule default-deny, revision ${revision})`,
        );
        const records = await eventually(
          async () =>
            (await control.denies('limit=1000')).filter((r) => r.invocationId === 'exec-gcp-attested'),
          (list) => list.length > 0,
        );
        expect(records).toHaveLength(1);
        expect(records[0]?.workload).toMatchObject({
          cloud: 'gcp',
          name: 'egress-svc',
          account: 'demo-project',
          serviceAccount: 'egress-fn@demo-project.iam.gserviceaccount.com',
          attested: 'gcp',
          'tag.app': 'demo',
        });
        expectNoSecrets(fn);
      });

      it("another project's service account is refused: no bundle, the fail mode governs, the log says why", async () => {
        const { fn, url } = await gcpFunction({
          GOOGLE_CLOUD_PROJECT: 'other-project',
          GCE_METADATA_HOST: otherMetadataHost,
        });
        const status = await get(`${url}?to=status`);
        expect(status.status, fn.output).toBe(200);
        const state = (JSON.parse(status.text) as { status: Record<string, unknown> }).status;
        expect(state.revision ?? null, fn.output).toBeNull();
        expect(fn.output).toContain('attestation (gcp) failed: the control API answered 403');
        expect(fn.output).toContain('project other-project is not allowed to attest');
        expect(fn.output).toContain('using the workload token');
        // The workload token alone: --require-attested refuses it.
        expect(fn.output).toContain('bundle refresh failed (http): control API answered 403');
        expect(fn.output).toContain('"error":"attestation-required"');
        const denied = await get(`${url}?url=http://127.0.0.9:9/`);
        expect(denied.status).toBe(403);
        expect(denied.text).toContain('fail-closed');
        expectNoSecrets(fn);
      });
    });

    describe('Azure (Python v2 model, BULKHEAD_ATTEST=azure)', () => {
      it('attests with the managed identity: bundle fetched, records stored with tenant, principal, subscription and site', async () => {
        const { fn, url } = await azureApp({});
        const whoami = await get(`${url}/whoami`);
        expect(whoami.status, fn.output).toBe(200);
        const state = (JSON.parse(whoami.text) as { status: Record<string, unknown> }).status;
        expect(state, fn.output).toMatchObject({ revision, controlled: true });
        expect(fn.output).toContain(`attested (azure) as ${DEFAULT_MANAGED_IDENTITY.objectId}; session `);
        const asked = standin.seen.filter((s) => s.path === '/msi/token').at(-1);
        expect(asked?.query.get('resource')).toBe(AUDIENCE);

        const denied = await get(`${url}/egress?to=tracker`);
        expect(denied.status).toBe(403);
        // The wrapper tags records `<function>/<invocation id>`.
        const invocationId = `egress/${denied.headers.get('x-invocation-id')}`;
        const records = await eventually(
          async () => (await control.denies('limit=1000')).filter((r) => r.invocationId === invocationId),
          (list) => list.length > 0,
        );
        expect(records).toHaveLength(1);
        expect(records[0]?.workload).toMatchObject({
          cloud: 'azure',
          name: 'egress-app',
          account: SUBSCRIPTION,
          tenant: TENANT,
          principal: DEFAULT_MANAGED_IDENTITY.objectId,
          attested: 'azure',
        });
        expectNoSecrets(fn);
      });

      it("another tenant's identity is refused: no bundle, the fail mode governs, the log says why", async () => {
        const { fn, url } = await azureApp({ BULKHEAD_AZURE_CLIENT_ID: OTHER_TENANT.clientId });
        const whoami = await get(`${url}/whoami`);
        expect(whoami.status, fn.output).toBe(200);
        const state = (JSON.parse(whoami.text) as { status: Record<string, unknown> }).status;
        expect(state.revision ?? null, fn.output).toBeNull();
        // The other tenant's issuer is not one the control API accepts.
        expect(fn.output).toContain('attestation (azure) failed: the control API answered 401');
        expect(fn.output).toContain('wrong issuer');
        expect(fn.output).toContain('"error":"attestation-required"');
        expect(fn.output).toContain('using the workload token');
        const denied = await get(`${url}/egress?url=http://127.0.0.9:9/`);
        expect(denied.status).toBe(403);
        expect(denied.text).toContain('fail-closed');
        expectNoSecrets(fn);
      });
    });
  },
);
