// End to end on loopback: the control API (in process, SQLite), the layer built from dist/
// (extension, exec wrapper, shim preload, handler redirect), and sample functions running in the
// emulator under aws-lambda-ric, frozen between invocations.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LambdaEmulator } from '../../emulator/index.js';
import {
  buildLayerDir,
  type ControlHarness,
  cardsPolicy,
  createSandbox,
  Destination,
  type LayerHarness,
  startControl,
  TamperingProxy,
} from './harness.js';

interface CallOutcome {
  outcome: 'allowed' | 'denied' | 'failed';
  code?: string;
  status?: number;
}
interface NetResult {
  requestId: string;
  allowed?: CallOutcome;
  forbidden?: CallOutcome;
  many?: CallOutcome[];
  readyRevision?: number | null;
  format?: string;
}

let control: ControlHarness;
const allowed = new Destination();
const forbidden = new Destination();
const layers: LayerHarness[] = [];
const sandboxes: LambdaEmulator[] = [];

function sandbox(layer: LayerHarness, fn: string, env: Record<string, string> = {}): LambdaEmulator {
  const instance = createSandbox({ layer, control, fn, env, timeoutMs: 10_000 });
  sandboxes.push(instance);
  return instance;
}

function layer(options: Parameters<typeof buildLayerDir>[0]): LayerHarness {
  const built = buildLayerDir(options);
  layers.push(built);
  return built;
}

function status(emulator: LambdaEmulator): Record<string, unknown> {
  return JSON.parse(readFileSync(join(emulator.stateDir, 'extension-status.json'), 'utf8')) as Record<
    string,
    unknown
  >;
}

async function deniesFor(requestId: string): Promise<Record<string, unknown>[]> {
  return (await control.denies('limit=1000')).filter((r) => r.invocationId === requestId);
}

beforeAll(async () => {
  control = await startControl();
  await allowed.start();
  await forbidden.start();
  await control.apply(cardsPolicy([allowed.port]));
});

afterAll(async () => {
  await Promise.all(sandboxes.map((s) => s.close()));
  for (const l of layers) l.cleanup();
  await allowed.stop();
  await forbidden.stop();
  await control.close();
});

describe.each([
  ['CommonJS', 'net-cjs'],
  ['ES module', 'net-esm'],
])('%s handler with the layer attached', (_label, fn) => {
  it('allows the allowed call, denies the forbidden one, and the record reaches the control API', async () => {
    const attached = layer({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] });
    const emulator = sandbox(attached, fn);
    const hitsBefore = forbidden.hits;
    const result = await emulator.invoke({ allowed: allowed.url, forbidden: forbidden.url });
    expect(result.status, emulator.logText()).toBe('success');
    const body = result.json<NetResult>();
    expect(body.allowed).toMatchObject({ outcome: 'allowed', status: 200 });
    expect(body.forbidden).toMatchObject({ outcome: 'denied', code: 'ERR_BULKHEAD_DENIED' });
    expect(forbidden.hits).toBe(hitsBefore);

    // The extension waited for runtimeDone and forwarded before the freeze: no polling needed.
    const records = await deniesFor(result.requestId);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      invocationId: result.requestId,
      decision: 'deny',
      destination: expect.objectContaining({ port: forbidden.port }),
      origin: expect.objectContaining({ package: 'leaky-sdk@1.2.3' }),
      sandboxId: status(emulator).sandboxId,
      seq: expect.any(Number),
    });
    expect(status(emulator)).toMatchObject({ source: 'control-api' });
  });
});

describe('policy change between two invocations', () => {
  it('is enforced by the second invocation', async () => {
    const attached = layer({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] });
    const emulator = sandbox(attached, 'net-cjs');
    const first = (await emulator.invoke({ forbidden: forbidden.url, revision: true })).json<NetResult>();
    expect(first.forbidden?.outcome).toBe('denied');
    const revision = await control.apply(cardsPolicy([allowed.port, forbidden.port]));
    try {
      const second = (await emulator.invoke({ forbidden: forbidden.url, revision: true })).json<NetResult>();
      expect(second.readyRevision).toBe(revision);
      expect(second.forbidden).toMatchObject({ outcome: 'allowed', status: 200 });
    } finally {
      await control.apply(cardsPolicy([allowed.port]));
    }
  });
});

describe('shutdown', () => {
  it('flushes records still queued in the spool at SHUTDOWN: none is lost', async () => {
    const attached = layer({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] });
    // Without the runtimeDone wait the extension calls next before the handler's records exist.
    const emulator = sandbox(attached, 'net-cjs', { BULKHEAD_WAIT_RUNTIME_DONE: '0' });
    const targets = Array.from({ length: 25 }, (_, i) => `http://localhost:${forbidden.port}/item/${i}`);
    const result = await emulator.invoke({ forbiddenMany: targets });
    const body = result.json<NetResult>();
    expect(body.many?.every((o) => o.outcome === 'denied')).toBe(true);
    const spooled = readFileSync(join(emulator.stateDir, 'spool.ndjson'), 'utf8').split('\n').filter(Boolean);
    // Deny records only: the spool also carries the shim's rule hit counts (`{"hits": …}` lines).
    const ids = new Set(
      spooled.map((line) => JSON.parse(line) as { id?: string }).flatMap((r) => (r.id ? [r.id] : [])),
    );
    expect(ids.size).toBeGreaterThan(0);
    const shutdown = await emulator.shutdown();
    expect(shutdown.extensions[0]).toMatchObject({ name: 'bulkhead', exitedInTime: true, exit: { code: 0 } });
    const stored = await deniesFor(result.requestId);
    expect(new Set(stored.map((r) => r.id))).toEqual(ids);
    const seqs = stored.map((r) => r.seq as number).sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => (seqs[0] as number) + i));
  });
});

describe('control API unreachable at cold start', () => {
  const dead = 'http://127.0.0.1:9';

  it('uses the bundle baked into the layer', async () => {
    const bundleRes = await fetch(`${control.url}/v1/bundle?workload=cloud%3Daws%2Cname%3Dcharge-card`, {
      headers: { authorization: `Bearer ${control.workloadToken}` },
    });
    expect(bundleRes.status).toBe(200);
    const fallbackFile = join(layer({}).dir, 'fallback.json');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(fallbackFile, await bundleRes.text());
    const baked = layer({
      controlUrl: dead,
      trustedKeys: [control.publicKeyPem],
      fallbackBundle: fallbackFile,
    });
    const emulator = sandbox(baked, 'net-cjs', { BULKHEAD_FETCH_TIMEOUT_MS: '300' });
    const body = (
      await emulator.invoke({ allowed: allowed.url, forbidden: forbidden.url })
    ).json<NetResult>();
    expect(status(emulator)).toMatchObject({ source: 'layer' });
    expect(body.allowed?.outcome).toBe('allowed');
    expect(body.forbidden?.code).toBe('ERR_BULKHEAD_DENIED');
  });

  it('fails closed without a baked bundle (default fail mode)', async () => {
    const bare = layer({ controlUrl: dead, trustedKeys: [control.publicKeyPem] });
    const emulator = sandbox(bare, 'net-cjs', { BULKHEAD_FETCH_TIMEOUT_MS: '300' });
    const result = await emulator.invoke({ allowed: allowed.url });
    expect(result.status, emulator.logText()).toBe('success');
    expect(status(emulator)).toMatchObject({ source: 'none', failMode: 'closed' });
    expect(result.json<NetResult>().allowed).toMatchObject({
      outcome: 'denied',
      code: 'ERR_BULKHEAD_DENIED',
    });
  });

  it('blocks nothing in fail mode observe', async () => {
    const bare = layer({ controlUrl: dead, trustedKeys: [control.publicKeyPem], failMode: 'observe' });
    const emulator = sandbox(bare, 'net-cjs', { BULKHEAD_FETCH_TIMEOUT_MS: '300' });
    const body = (await emulator.invoke({ forbidden: forbidden.url })).json<NetResult>();
    expect(status(emulator)).toMatchObject({ source: 'none', failMode: 'observe' });
    expect(body.forbidden?.outcome).toBe('allowed');
  });
});

describe('tampered bundle from the control API', () => {
  it('is refused and the last good bundle kept', async () => {
    const proxy = new TamperingProxy(control.url);
    await proxy.start();
    try {
      const attached = layer({ controlUrl: proxy.url, trustedKeys: [control.publicKeyPem] });
      const emulator = sandbox(attached, 'net-cjs');
      const first = await emulator.invoke({ forbidden: forbidden.url, revision: true });
      const goodRevision = first.json<NetResult>().readyRevision;
      const goodBundle = readFileSync(join(emulator.stateDir, 'bundle.json'), 'utf8');
      expect(first.json<NetResult>().forbidden?.outcome).toBe('denied');

      proxy.tamper = true;
      await control.apply(cardsPolicy([allowed.port, forbidden.port]));
      try {
        const second = (
          await emulator.invoke({ forbidden: forbidden.url, revision: true })
        ).json<NetResult>();
        expect(second.readyRevision).toBe(goodRevision);
        expect(second.forbidden?.outcome).toBe('denied');
        expect(readFileSync(join(emulator.stateDir, 'bundle.json'), 'utf8')).toBe(goodBundle);
        expect(emulator.logText('extension:bulkhead')).toMatch(
          /refused bundle from the control API \(bad-signature\)/,
        );
      } finally {
        await control.apply(cardsPolicy([allowed.port]));
      }
    } finally {
      await proxy.stop();
    }
  });
});
