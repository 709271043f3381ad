// The extension as Lambda runs it: launched from the layer by the emulator, talking to a real
// control API. The function writes spool records itself (as the shim does), so these tests
// pin the extension's behaviour whatever the shim does; e2e.test.ts covers the whole chain.
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LambdaEmulator } from '../../emulator/index.js';
import { verifyBundle } from '../../policy/bundle.js';
import { loadTrustedKeys } from '../../policy/keys.js';
import {
  buildLayerDir,
  type ControlHarness,
  cardsPolicy,
  createSandbox,
  FIXTURES,
  type LayerHarness,
  startControl,
  TamperingProxy,
} from './harness.js';

interface WriterResult {
  requestId: string;
  ids: string[];
  revision: number | null;
  env: Record<string, string | null>;
}

let control: ControlHarness;
const layers: LayerHarness[] = [];
const sandboxes: LambdaEmulator[] = [];
const temps: string[] = [];

function layer(options: Parameters<typeof buildLayerDir>[0]): LayerHarness {
  const built = buildLayerDir(options);
  layers.push(built);
  return built;
}

function sandbox(attached: LayerHarness, env: Record<string, string> = {}): LambdaEmulator {
  const instance = createSandbox({ layer: attached, control, fn: 'spool-writer', env, timeoutMs: 10_000 });
  sandboxes.push(instance);
  return instance;
}

function stateFile(emulator: LambdaEmulator, name: string): string {
  return readFileSync(join(emulator.stateDir, name), 'utf8');
}

function status(emulator: LambdaEmulator): Record<string, unknown> {
  return JSON.parse(stateFile(emulator, 'extension-status.json')) as Record<string, unknown>;
}

async function storedIds(requestId: string): Promise<string[]> {
  return (await control.denies('limit=1000'))
    .filter((r) => r.invocationId === requestId)
    .map((r) => r.id as string)
    .sort();
}

beforeAll(async () => {
  control = await startControl();
  await control.apply(cardsPolicy([443], 'enforce', 'api.example.com'));
});

afterAll(async () => {
  await Promise.all(sandboxes.map((s) => s.close()));
  for (const l of layers) l.cleanup();
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
  await control.close();
});

describe('cold start', () => {
  it('registers first, by file name, then writes the verified bundle and its status for the shim', async () => {
    const attached = layer({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] });
    const emulator = sandbox(attached);
    const result = await emulator.invoke({});
    expect(result.status, emulator.logText()).toBe('success');
    const body = result.json<WriterResult>();
    const envelope = stateFile(emulator, 'bundle.json');
    const verified = verifyBundle(envelope, { trustedKeys: loadTrustedKeys([control.publicKeyPem]) });
    expect(verified.ok).toBe(true);
    const revision = verified.ok ? verified.payload.revision : -1;
    expect(status(emulator)).toMatchObject({ source: 'control-api', revision, failMode: 'closed' });
    expect(body.revision).toBe(revision);
    // The wrapper handed the runtime the state files.
    expect(body.env).toEqual({
      BULKHEAD_EXTENSION_STATUS: join(emulator.stateDir, 'extension-status.json'),
      BULKHEAD_READY_FILE: join(emulator.stateDir, 'invocation-ready'),
      BULKHEAD_DONE_FILE: join(emulator.stateDir, 'invocation-done'),
      BULKHEAD_BUNDLE_FILE: join(emulator.stateDir, 'bundle.json'),
      BULKHEAD_REPORT: join(emulator.stateDir, 'spool.ndjson'),
    });
    expect(emulator.extensionTimings().map((t) => t.name)).toEqual(['bulkhead']);
    // The launcher registered (bash), before node started.
    expect(status(emulator)).toMatchObject({ registeredByLauncher: true });
    expect(emulator.logText('extension:bulkhead')).toMatch(/ready: bundle revision \d+ from control-api/);
    // The token never reaches the logs.
    expect(emulator.logText()).not.toContain(control.workloadToken);
  });

  it('keeps the function NODE_OPTIONS (and so any preload) out of the extension process', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'marker-'));
    temps.push(dir);
    const marker = join(dir, 'loaded-by');
    const emulator = sandbox(layer({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] }), {
      NODE_OPTIONS: `--require ${join(FIXTURES, 'preload-marker.cjs')}`,
      MARKER_FILE: marker,
    });
    expect((await emulator.invoke({})).status).toBe('success');
    const loaders = readFileSync(marker, 'utf8').trim().split('\n');
    expect(loaders).toHaveLength(1);
    expect(loaders[0]).toMatch(/aws-lambda-ric[/\\]index\.mjs$/);
  });

  it('reports an unusable configuration through /extension/init/error: the function does not start', async () => {
    const noKeys = layer({ controlUrl: control.url });
    const emulator = sandbox(noKeys);
    await emulator.start();
    const init = await emulator.init();
    expect(init).toMatchObject({ ok: false, errorType: 'Extension.ConfigInvalid' });
    expect(init.errorMessage).toMatch(/no trusted keys/);
  });

  it('fails init visibly when /tmp is full: no bundle can be written, so the function does not start', async () => {
    // A real ENOSPC: a 64 KiB tmpfs, filled, stands in for Lambda's /tmp (root only, as in CI).
    const full = mkdtempSync(join(tmpdir(), 'tmp-full-'));
    temps.push(full);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', full]);
    try {
      expect(() => writeFileSync(join(full, 'filler'), Buffer.alloc(1024 * 1024))).toThrow(/ENOSPC/);
      const emulator = sandbox(layer({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] }), {
        BULKHEAD_STATE_DIR: join(full, 'bulkhead'),
      });
      await emulator.start();
      const init = await emulator.init();
      expect(init).toMatchObject({ ok: false, errorType: 'Extension.InitFailed' });
      expect(init.errorMessage).toMatch(/ENOSPC/);
      await emulator.close();
    } finally {
      execFileSync('umount', ['-l', full]);
    }
  });

  it('falls back to the layer bundle, then to the fail mode, when the control API is down', async () => {
    const answer = await fetch(`${control.url}/v1/bundle?workload=cloud%3Daws%2Cname%3Dcharge-card`, {
      headers: { authorization: `Bearer ${control.workloadToken}` },
    });
    const dir = mkdtempSync(join(tmpdir(), 'fallback-'));
    temps.push(dir);
    const fallback = join(dir, 'bundle.json');
    writeFileSync(fallback, await answer.text());
    const dead = 'http://127.0.0.1:9';

    const baked = sandbox(
      layer({ controlUrl: dead, trustedKeys: [control.publicKeyPem], fallbackBundle: fallback }),
      {
        BULKHEAD_FETCH_TIMEOUT_MS: '300',
      },
    );
    const first = await baked.invoke({});
    expect(first.status).toBe('success');
    expect(status(baked)).toMatchObject({ source: 'layer' });
    expect(stateFile(baked, 'bundle.json')).toBe(readFileSync(fallback, 'utf8'));

    const bare = sandbox(
      layer({ controlUrl: dead, trustedKeys: [control.publicKeyPem], failMode: 'observe' }),
      {
        BULKHEAD_FETCH_TIMEOUT_MS: '300',
      },
    );
    const second = await bare.invoke({});
    expect(second.status).toBe('success');
    expect(status(bare)).toMatchObject({ source: 'none', failMode: 'observe', revision: 0 });
    expect(second.json<WriterResult>().revision).toBe(0);
  });

  it('keeps the last good bundle of the sandbox across a reset when the control API is down', async () => {
    const proxy = new TamperingProxy(control.url);
    await proxy.start();
    try {
      const emulator = sandbox(layer({ controlUrl: proxy.url, trustedKeys: [control.publicKeyPem] }), {
        BULKHEAD_FETCH_TIMEOUT_MS: '300',
      });
      await emulator.invoke({});
      const good = stateFile(emulator, 'bundle.json');
      proxy.down = true;
      await emulator.shutdown('failure');
      await emulator.invoke({});
      expect(status(emulator)).toMatchObject({ source: 'last-good' });
      expect(stateFile(emulator, 'bundle.json')).toBe(good);
    } finally {
      await proxy.stop();
    }
  });
});

describe('invocations', () => {
  it('forwards the records of an invocation before the sandbox freezes, numbered per sandbox', async () => {
    const emulator = sandbox(layer({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] }));
    const first = (await emulator.invoke({ records: 3 })).json<WriterResult>();
    // No polling: invoke() resolved after the invoke phase, when the sandbox froze.
    expect(await storedIds(first.requestId)).toEqual([...first.ids].sort());
    const second = (await emulator.invoke({ records: 2 })).json<WriterResult>();
    expect(await storedIds(second.requestId)).toEqual([...second.ids].sort());
    const records = (await control.denies('limit=1000')).filter(
      (r) => r.invocationId === first.requestId || r.invocationId === second.requestId,
    );
    const sandboxId = status(emulator).sandboxId;
    expect(new Set(records.map((r) => r.sandboxId))).toEqual(new Set([sandboxId]));
    expect(records.map((r) => r.seq).sort((a, b) => (a as number) - (b as number))).toEqual([1, 2, 3, 4, 5]);
  });

  it('gives a policy applied between two invocations to the second one', async () => {
    const emulator = sandbox(layer({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] }));
    const before = (await emulator.invoke({})).json<WriterResult>().revision;
    const applied = await control.apply(cardsPolicy([8443], 'enforce', 'api.example.com'));
    const after = (await emulator.invoke({})).json<WriterResult>().revision;
    expect(after).toBe(applied);
    expect(after).not.toBe(before);
  });

  it('asks the control API nothing at INVOKE while its long-poll is parked, and adopts an apply at once', async () => {
    const proxy = new TamperingProxy(control.url);
    await proxy.start();
    try {
      const emulator = sandbox(layer({ controlUrl: proxy.url, trustedKeys: [control.publicKeyPem] }));
      await emulator.invoke({});
      const afterColdStart = proxy.plainBundleRequests;
      for (let i = 0; i < 5; i++) await emulator.invoke({});
      expect(proxy.plainBundleRequests).toBe(afterColdStart);
      // The control API answers the parked long-poll while the sandbox is frozen; the next INVOKE sees it.
      const applied = await control.apply(cardsPolicy([6443], 'enforce', 'api.example.com'));
      expect((await emulator.invoke({})).json<WriterResult>().revision).toBe(applied);
    } finally {
      await proxy.stop();
    }
  });

  it('refuses a tampered bundle and keeps the last good one', async () => {
    const proxy = new TamperingProxy(control.url);
    await proxy.start();
    try {
      const emulator = sandbox(layer({ controlUrl: proxy.url, trustedKeys: [control.publicKeyPem] }));
      const good = (await emulator.invoke({})).json<WriterResult>().revision;
      const goodBundle = stateFile(emulator, 'bundle.json');
      proxy.tamper = true;
      await control.apply(cardsPolicy([9443], 'enforce', 'api.example.com'));
      const after = (await emulator.invoke({})).json<WriterResult>().revision;
      expect(after).toBe(good);
      expect(stateFile(emulator, 'bundle.json')).toBe(goodBundle);
      expect(emulator.logText('extension:bulkhead')).toMatch(
        /refused bundle from the control API \(bad-signature\)/,
      );
    } finally {
      await proxy.stop();
    }
  });

  it('keeps records while the report endpoint is down and delivers them later, none lost', async () => {
    const proxy = new TamperingProxy(control.url);
    await proxy.start();
    try {
      const emulator = sandbox(layer({ controlUrl: proxy.url, trustedKeys: [control.publicKeyPem] }));
      await emulator.invoke({});
      proxy.down = true;
      const during = (await emulator.invoke({ records: 4 })).json<WriterResult>();
      expect(await storedIds(during.requestId)).toEqual([]);
      proxy.down = false;
      await emulator.invoke({});
      expect(await storedIds(during.requestId)).toEqual([...during.ids].sort());
    } finally {
      await proxy.stop();
    }
  });
});

describe('shutdown', () => {
  it('flushes queued records within the SHUTDOWN budget and exits 0', async () => {
    const emulator = sandbox(layer({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] }));
    const result = (await emulator.invoke({})).json<WriterResult>();
    // Records the shim wrote just before the freeze, after the extension's last forward.
    const ids = Array.from(
      { length: 40 },
      (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    );
    const lines = ids.map((id) =>
      JSON.stringify({
        id,
        time: new Date().toISOString(),
        count: 1,
        workload: { cloud: 'aws', name: 'charge-card' },
        kind: 'connect',
        destination: { host: 'late.attacker.test', port: 443 },
        decision: 'deny',
        mode: 'enforce',
        rule: 'default-deny',
        revision: 1,
        invocationId: result.requestId,
      }),
    );
    appendFileSync(join(emulator.stateDir, 'spool.ndjson'), `${lines.join('\n')}\n`);
    expect(await storedIds(result.requestId)).toEqual([]);
    const shutdown = await emulator.shutdown();
    expect(shutdown.extensions).toEqual([
      expect.objectContaining({ name: 'bulkhead', exitedInTime: true, exit: { code: 0, signal: null } }),
    ]);
    expect(await storedIds(result.requestId)).toEqual(ids);
  });

  it('exits within the budget when the control API does not answer, keeping the records for later', async () => {
    const proxy = new TamperingProxy(control.url);
    await proxy.start();
    try {
      const emulator = sandbox(layer({ controlUrl: proxy.url, trustedKeys: [control.publicKeyPem] }));
      const result = (await emulator.invoke({})).json<WriterResult>();
      appendFileSync(
        join(emulator.stateDir, 'spool.ndjson'),
        `${JSON.stringify({
          id: '00000000-0000-4000-8000-00000000beef',
          time: new Date().toISOString(),
          count: 1,
          workload: { cloud: 'aws', name: 'charge-card' },
          kind: 'connect',
          destination: { host: 'late.attacker.test', port: 443 },
          decision: 'deny',
          mode: 'enforce',
          rule: 'default-deny',
          revision: 1,
          invocationId: result.requestId,
        })}\n`,
      );
      proxy.hang = true;
      const shutdown = await emulator.shutdown();
      expect(shutdown.extensions).toEqual([
        expect.objectContaining({ name: 'bulkhead', exitedInTime: true, exit: { code: 0, signal: null } }),
      ]);
      expect(emulator.logText('extension:bulkhead')).toMatch(/some left in the spool/);
      // Still in the spool, behind the cursor, for the next start of this sandbox.
      const cursor = JSON.parse(stateFile(emulator, 'spool.cursor.json')) as { offset: number };
      expect(stateFile(emulator, 'spool.ndjson').length).toBeGreaterThan(cursor.offset);
    } finally {
      await proxy.stop();
    }
  });
});
