// The layer on a Python function, end to end on loopback: the control API (in process, SQLite), the
// layer built from dist/ with the vendored cryptography for this machine's architecture, the Python
// extension (the runtime has no node), and the function under the real `awslambdaric` runtime client,
// frozen between invocations.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPythonRuntime, type LambdaEmulator } from '../../emulator/index.js';
import { packageRoot } from '../../layers/build.js';
import {
  buildLayerDir,
  type ControlHarness,
  cardsPolicy,
  createSandbox,
  Destination,
  FIXTURES,
  type LayerHarness,
  startControl,
} from './harness.js';

const python = findPythonRuntime();
const SITE = join(packageRoot(), 'runtime-shims', 'python', 'tests', 'fixtures', 'site-packages');

interface Outcome {
  outcome: 'allowed' | 'denied' | 'failed';
  code?: string | null;
  message?: string;
  status?: number;
}
interface Answer {
  requestId: string;
  allowed?: Outcome;
  forbidden?: Outcome;
  track?: Outcome;
  shim?: { revision: number; mode: string };
  pythonpath?: string;
}

async function eventually<T>(read: () => Promise<T>, ok: (value: T) => boolean, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  let value = await read();
  while (!ok(value) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    value = await read();
  }
  return value;
}

describe.skipIf(!python.python)(
  `the layer on a Python function (${python.python ? `python${python.version}` : python.reason})`,
  () => {
    let control: ControlHarness;
    let layer: LayerHarness;
    let taskRoot: string;
    const allowed = new Destination();
    const forbidden = new Destination();
    const sandboxes: LambdaEmulator[] = [];

    beforeAll(async () => {
      control = await startControl();
      await Promise.all([allowed.start(), forbidden.start()]);
      await control.apply(cardsPolicy([allowed.port]));
      layer = buildLayerDir({
        controlUrl: control.url,
        trustedKeys: [control.publicKeyPem],
        pythonDeps: true,
      });
      // The deployment package: the handler and its (compromised) dependency, as `pip install -t .` leaves them.
      taskRoot = mkdtempSync(join(tmpdir(), 'bulkhead-py-task-'));
      cpSync(join(FIXTURES, 'python-functions', 'net'), taskRoot, { recursive: true });
      cpSync(SITE, taskRoot, { recursive: true });
    }, 180_000);

    afterAll(async () => {
      for (const sandbox of sandboxes) await sandbox.close();
      await Promise.all([allowed.stop(), forbidden.stop()]);
      await control?.close();
      layer?.cleanup();
      rmSync(taskRoot, { recursive: true, force: true });
    });

    function sandbox(env: Record<string, string> = {}): LambdaEmulator {
      const made = createSandbox({
        layer,
        control,
        taskRoot,
        handler: 'app.handler',
        runtimeName: `python${python.version}` as 'python3.12',
        ...(python.python ? { pythonPath: python.python } : {}),
        // This machine has node and python3 side by side; Lambda's Python runtimes have no node.
        env: { BULKHEAD_EXTENSION_RUNTIME: 'python', ...env },
      });
      sandboxes.push(made);
      return made;
    }

    it('governs the function from its first line, with the bundle fetched and verified by the Python extension', async () => {
      const box = sandbox();
      const result = await box.invoke({
        allowed: allowed.url,
        forbidden: forbidden.url,
        track: ['127.0.0.7', 9],
        status: true,
      });
      expect(result.init?.ok, box.logText()).toBe(true);
      const answer = result.json<Answer>();
      expect(answer.allowed).toMatchObject({ outcome: 'allowed', status: 200 });
      expect(answer.forbidden).toMatchObject({ outcome: 'denied', code: 'ERR_BULKHEAD_DENIED' });
      expect(answer.track?.outcome).toBe('denied');
      expect(forbidden.hits).toBe(0);
      expect(answer.shim?.revision).toBe(1);
      expect(answer.shim?.mode).toBe('enforce');
      expect(answer.pythonpath?.split(':')[0]).toBe(join(layer.dir, 'bulkhead', 'python'));
      const status = JSON.parse(readFileSync(join(box.stateDir, 'extension-status.json'), 'utf8'));
      expect(status).toMatchObject({ source: 'control-api', revision: 1, runtimeFamily: 'python' });
      expect(box.logText()).not.toContain(control.workloadToken);
    });

    it('sends deny records with package attribution while the sandbox runs, adding no wait to the invocation', async () => {
      const box = sandbox();
      const result = await box.invoke({ track: ['127.0.0.7', 9] });
      expect(result.json<Answer>().track?.outcome).toBe('denied');
      // A second, clean invocation thaws the sandbox: the spool watch has sent the record by then at the latest.
      const clean = await box.invoke({ allowed: allowed.url });
      expect(clean.json<Answer>().allowed?.outcome).toBe('allowed');
      const tracked = (d: Record<string, unknown>) =>
        (d.origin as { package?: string } | undefined)?.package === 'analytics-lite@2.4.1';
      const denies = await eventually(
        () => control.denies('limit=100'),
        (list) => list.some(tracked),
      );
      const record = denies.find(tracked);
      expect(record).toMatchObject({
        kind: 'connect',
        destination: { ip: '127.0.0.7', port: 9 },
        workload: { cloud: 'aws', name: 'charge-card', runtime: `python${python.version}` },
      });
      expect(record?.sandboxId).toEqual(expect.any(String));
      expect(record?.seq).toEqual(expect.any(Number));
    });

    it('sends what is left in the spool at SHUTDOWN', async () => {
      const box = sandbox();
      const result = await box.invoke({ track: ['127.0.0.8', 9] });
      expect(result.json<Answer>().track?.outcome).toBe('denied');
      await box.shutdown('spindown');
      const denies = await control.denies('limit=100');
      expect(denies.some((d) => (d.destination as { ip?: string }).ip === '127.0.0.8')).toBe(true);
      expect(box.logText()).toMatch(/shutdown \(spindown\): forwarded \d+ records/);
    });

    it('fails closed, visibly, when no bundle can be had at a cold start', async () => {
      const box = sandbox({ BULKHEAD_CONTROL_URL: 'http://127.0.0.1:9', BULKHEAD_FETCH_TIMEOUT_MS: '300' });
      const result = await box.invoke({ allowed: allowed.url, status: true });
      expect(result.status).toBe('success');
      const answer = result.json<Answer>();
      expect(answer.allowed).toMatchObject({ outcome: 'denied', code: 'ERR_BULKHEAD_DENIED' });
      expect(answer.allowed?.message).toContain('fail-closed');
      const status = JSON.parse(readFileSync(join(box.stateDir, 'extension-status.json'), 'utf8'));
      expect(status).toMatchObject({ source: 'none', revision: 0 });
      expect(box.logText()).toContain('no verified bundle: the shim applies fail mode closed');
    });

    it('refuses to start with an invalid configuration (Extension.ConfigInvalid)', async () => {
      const box = sandbox({ BULKHEAD_FAIL_MODE: 'sometimes' });
      await box.start();
      const init = await box.init();
      expect(init).toMatchObject({ ok: false, errorType: 'Extension.ConfigInvalid' });
      expect(init.errorMessage).toContain('BULKHEAD_FAIL_MODE must be closed or observe');
    });

    it('governs the first invocation after an apply by the new revision from its first connection', async () => {
      const box = sandbox();
      const first = await box.invoke({ forbidden: forbidden.url, status: true });
      expect(first.json<Answer>().forbidden?.outcome).toBe('denied');
      const revision = await control.apply(cardsPolicy([allowed.port, forbidden.port]));
      try {
        // The sandbox is frozen now. The control API answers its parked long-poll at once; at the thaw
        // the extension sees that answer waiting, makes the bundle on disk the newest and says so for
        // this request id; the shim's first decision in the invocation waits for that word.
        const answer = (await box.invoke({ forbidden: forbidden.url, status: true })).json<Answer>();
        expect(answer.forbidden).toMatchObject({ outcome: 'allowed', status: 200 });
        expect(answer.shim?.revision).toBe(revision);
      } finally {
        await control.apply(cardsPolicy([allowed.port]));
      }
      // And back: the revision after that governs the next invocation just the same.
      const again = (await box.invoke({ forbidden: forbidden.url, status: true })).json<Answer>();
      expect(again.forbidden?.outcome).toBe('denied');
    });

    it('tags records with the request id and writes them before the sandbox freezes', async () => {
      const box = sandbox();
      const result = await box.invoke({ track: ['127.0.0.7', 9] });
      const { requestId } = result.json<Answer>();
      // The handler redirect flushed the spool before the runtime answered: the record is on disk.
      const spool = readFileSync(join(box.stateDir, 'spool.ndjson'), 'utf8');
      expect(spool).toContain(`"invocationId":"${requestId}"`);
    });

    it('spools the rule hit counts as an invocation ends; the extension forwards them, neither records nor malformed', async () => {
      const box = sandbox();
      let revision = 0;
      for (let i = 0; i < 2; i++) {
        const answer = (await box.invoke({ allowed: allowed.url, status: true })).json<Answer>();
        expect(answer.allowed?.outcome).toBe('allowed');
        revision = answer.shim?.revision ?? 0;
      }
      // Written by the handler redirect before the freeze (a frozen sandbox runs no heartbeat); at most one
      // line a second, so the second invocation's counts may wait for a later one.
      const spoolFile = join(box.stateDir, 'spool.ndjson');
      const lines = readFileSync(spoolFile, 'utf8')
        .split('\n')
        .filter((line) => line.trim())
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      const hits = lines
        .filter((line) => 'hits' in line && !('id' in line))
        .map((line) => line.hits as { revision: number; rules: Record<string, number>; workload: unknown });
      expect(hits.length).toBeGreaterThanOrEqual(1);
      for (const count of hits) {
        expect(count.revision).toBe(revision);
        expect(count.workload).toMatchObject({ cloud: 'aws', name: 'charge-card' });
      }
      // Each request to the allowed destination is at least one allow decision (name, connect, request).
      const allowed0 = hits.reduce((n, count) => n + (count.rules['cards-egress/allow[0]'] ?? 0), 0);
      expect(allowed0).toBeGreaterThanOrEqual(1);
      await box.shutdown('spindown');
      // Hit counts alone wait (never sent at INVOKE); SHUTDOWN sends them, to the end of the spool: the
      // hit-count lines consumed like records, never numbered.
      const cursor = JSON.parse(readFileSync(join(box.stateDir, 'spool.cursor.json'), 'utf8'));
      expect(cursor.offset).toBe(readFileSync(spoolFile).length);
      const records = lines.filter((line) => 'id' in line).length;
      expect(cursor.nextSeq).toBe(1 + records);
    });
  },
);

describe('the exec wrapper refuses a runtime it cannot govern', () => {
  const layerDir = join(packageRoot(), 'layers', 'files');
  for (const runtime of ['python3.11', 'java21', 'ruby3.3']) {
    it(runtime, () => {
      const done = spawnSync(join(layerDir, 'bulkhead-wrapper'), ['/bin/echo', 'the runtime started'], {
        env: { PATH: process.env.PATH ?? '', AWS_EXECUTION_ENV: `AWS_Lambda_${runtime}` },
        encoding: 'utf8',
      });
      expect(done.status).toBe(1);
      expect(done.stdout).toBe('');
      expect(done.stderr).toContain(`bulkhead: ${runtime} is not governed by this layer`);
      expect(done.stderr).toContain('refusing to start the function ungoverned');
    });
  }

  it('puts the shim first on PYTHONPATH for python3.12, keeping what was there', () => {
    const done = spawnSync(
      join(layerDir, 'bulkhead-wrapper'),
      ['/bin/sh', '-c', 'echo "$PYTHONPATH|$BULKHEAD_PYTHON_DEPS"'],
      {
        env: {
          PATH: process.env.PATH ?? '',
          AWS_EXECUTION_ENV: 'AWS_Lambda_python3.12',
          PYTHONPATH: '/var/task/lib',
        },
        encoding: 'utf8',
      },
    );
    expect(done.status).toBe(0);
    expect(done.stdout.trim()).toBe(
      `${layerDir}/bulkhead/python:/var/task/lib|${layerDir}/bulkhead/python-deps`,
    );
  });
});
