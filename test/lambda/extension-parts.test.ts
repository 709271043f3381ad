// The extension's parts on their own: spool forwarding against a real HTTP server, the
// configuration rules, the local ready endpoint, and the emulator's telemetry validation.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseSubscription } from '../../emulator/telemetry.js';
import { ConfigError, loadExtensionConfig } from '../../extensions/config.js';
import { LocalEndpoint } from '../../extensions/local-endpoint.js';
import { ReportForwarder } from '../../extensions/report-forwarder.js';
import { readCursor, spoolPath } from '../../extensions/state-files.js';
import { generateKeyPair } from '../../policy/keys.js';
import type { DenyRecord } from '../../policy/types.js';

const temps: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ext-parts-'));
  temps.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

function record(n: number): DenyRecord {
  return {
    id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    time: '2026-11-28T00:00:00.000Z',
    count: 1,
    workload: { cloud: 'aws', name: 'fn' },
    kind: 'connect',
    destination: { host: `h${n}.test`, port: 443 },
    decision: 'deny',
    mode: 'enforce',
    rule: 'default-deny',
    revision: 1,
  };
}

/** A stand-in for POST /v1/reports that stores by id (idempotent) and can be told to fail. */
class ReportSink {
  server!: Server;
  url = '';
  stored = new Map<string, DenyRecord>();
  received: DenyRecord[] = [];
  status = 202;
  authorizations: string[] = [];

  async start(): Promise<void> {
    this.server = createServer((req: IncomingMessage, res) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => {
        text += d;
      });
      req.on('end', () => {
        this.authorizations.push(req.headers.authorization ?? '');
        if (this.status !== 202) {
          res.writeHead(this.status).end('{}');
          return;
        }
        const { records } = JSON.parse(text) as { records: DenyRecord[] };
        let duplicate = 0;
        for (const r of records) {
          this.received.push(r);
          if (this.stored.has(r.id)) duplicate++;
          else this.stored.set(r.id, r);
        }
        res.writeHead(202, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ stored: records.length - duplicate, duplicate, rejected: 0 }));
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

describe('report forwarder', () => {
  const sink = new ReportSink();
  beforeAll(() => sink.start());
  afterAll(() => sink.stop());
  afterEach(() => {
    sink.stored.clear();
    sink.received = [];
    sink.status = 202;
  });

  function forwarder(stateDir: string, batchSize?: number): ReportForwarder {
    return new ReportForwarder({
      stateDir,
      controlUrl: sink.url,
      token: 'workload-token',
      log: () => {},
      ...(batchSize ? { batchSize } : {}),
    });
  }

  it('numbers records per sandbox from 1, leaves a partial line, skips garbage', async () => {
    const dir = tempDir();
    const spool = spoolPath(dir);
    appendFileSync(spool, `${JSON.stringify(record(1))}\nnot json\n${JSON.stringify(record(2))}\n{"id":`);
    const f = forwarder(dir);
    const result = await f.forward(Date.now() + 5_000);
    expect(result).toMatchObject({ sent: 2, malformed: 1, pending: false });
    expect(sink.received.map((r) => [r.id, r.seq, r.sandboxId])).toEqual([
      [record(1).id, 1, f.sandboxId],
      [record(2).id, 2, f.sandboxId],
    ]);
    expect(sink.authorizations.at(-1)).toBe('Bearer workload-token');
    // The writer finishes the line later: it goes out next time, numbered on.
    appendFileSync(spool, `${JSON.stringify(record(3)).slice(6)}\n`);
    await f.forward(Date.now() + 5_000);
    expect(sink.received.at(-1)).toMatchObject({ id: record(3).id, seq: 3 });
    expect(readCursor(dir)).toMatchObject({ offset: statSync(spool).size, nextSeq: 4 });
  });

  it('keeps records when the control API fails and resends them with the same ids and seqs', async () => {
    const dir = tempDir();
    appendFileSync(spoolPath(dir), `${JSON.stringify(record(1))}\n${JSON.stringify(record(2))}\n`);
    sink.status = 503;
    const first = forwarder(dir);
    const failed = await first.forward(Date.now() + 5_000);
    expect(failed).toMatchObject({ sent: 0, pending: true });
    sink.status = 202;
    // A new process (cold start after a reset) resumes from the persisted cursor.
    const second = forwarder(dir);
    expect(second.sandboxId).toBe(first.sandboxId);
    await second.forward(Date.now() + 5_000);
    expect(sink.received.map((r) => r.seq)).toEqual([1, 2]);
    expect(await second.forward(Date.now() + 5_000)).toMatchObject({ sent: 0, pending: false });
  });

  it('drops a batch the control API calls invalid instead of blocking the spool', async () => {
    const dir = tempDir();
    appendFileSync(spoolPath(dir), `${JSON.stringify(record(1))}\n`);
    sink.status = 400;
    const f = forwarder(dir);
    await f.forward(Date.now() + 5_000);
    sink.status = 202;
    appendFileSync(spoolPath(dir), `${JSON.stringify(record(2))}\n`);
    await f.forward(Date.now() + 5_000);
    expect(sink.received.map((r) => r.id)).toEqual([record(2).id]);
  });

  it('compacts a fully forwarded spool at start', async () => {
    const dir = tempDir();
    appendFileSync(spoolPath(dir), `${JSON.stringify(record(1))}\n`);
    await forwarder(dir).forward(Date.now() + 5_000);
    const restarted = forwarder(dir);
    restarted.compact();
    expect(statSync(spoolPath(dir)).size).toBe(0);
    appendFileSync(spoolPath(dir), `${JSON.stringify(record(2))}\n`);
    await restarted.forward(Date.now() + 5_000);
    expect(sink.received.map((r) => r.seq)).toEqual([1, 2]);
  });

  it('delivers every record exactly once in order however the writes are split (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 7 }),
        async (count, cuts, batchSize) => {
          sink.stored.clear();
          sink.received = [];
          const dir = tempDir();
          const text = Array.from({ length: count }, (_, i) => `${JSON.stringify(record(i + 1))}\n`).join('');
          const f = forwarder(dir, batchSize);
          let written = 0;
          for (const cut of cuts) {
            const end = Math.min(text.length, written + cut);
            appendFileSync(spoolPath(dir), text.slice(written, end));
            written = end;
            await f.forward(Date.now() + 5_000);
          }
          appendFileSync(spoolPath(dir), text.slice(written));
          await f.forward(Date.now() + 5_000);
          expect(sink.received.map((r) => r.id)).toEqual(
            Array.from({ length: count }, (_, i) => record(i + 1).id),
          );
          expect(sink.received.map((r) => r.seq)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('extension configuration', () => {
  it('takes the environment over the layer config and reads the baked fallback bundle', () => {
    const dir = tempDir();
    const keys = generateKeyPair();
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        controlUrl: 'http://baked.example:8080',
        trustedKeys: [keys.publicKeyPem],
        failMode: 'observe',
        fallbackBundle: 'fallback.json',
      }),
    );
    writeFileSync(join(dir, 'fallback.json'), '{"payloadType":"x"}');
    const baked = loadExtensionConfig({}, dir);
    expect(baked).toMatchObject({
      controlUrl: 'http://baked.example:8080',
      failMode: 'observe',
      fallbackEnvelope: '{"payloadType":"x"}',
      stateDir: '/tmp/bulkhead',
      extensionName: 'bulkhead',
      refreshIntervalMs: 0,
    });
    expect(baked.trustedKeys.map((k) => k.keyId)).toEqual([keys.keyId]);
    const overridden = loadExtensionConfig(
      { BULKHEAD_CONTROL_URL: 'https://env.example', BULKHEAD_FAIL_MODE: 'closed', BULKHEAD_STATE_DIR: dir },
      dir,
    );
    expect(overridden).toMatchObject({
      controlUrl: 'https://env.example',
      failMode: 'closed',
      stateDir: dir,
    });
  });

  it('refuses bad values with messages that carry no secret', () => {
    const dir = tempDir();
    expect(() => loadExtensionConfig({ BULKHEAD_FAIL_MODE: 'open' }, dir)).toThrow(ConfigError);
    expect(() => loadExtensionConfig({ BULKHEAD_CONTROL_URL: 'ftp://x' }, dir)).toThrow(/http/);
    expect(() => loadExtensionConfig({ BULKHEAD_CONTROL_URL: 'http://user:pw@x' }, dir)).toThrow(
      /credentials/,
    );
    expect(() => loadExtensionConfig({ BULKHEAD_TOKEN: 'a\nb' }, dir)).toThrow(/one line/);
    expect(() => loadExtensionConfig({ BULKHEAD_FETCH_TIMEOUT_MS: '99999999' }, dir)).toThrow(/between/);
    try {
      loadExtensionConfig(
        { BULKHEAD_TRUSTED_KEYS: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC1zZWNyZXQ=' },
        dir,
      );
    } catch (error) {
      expect((error as Error).message).not.toContain('c2VjcmV0');
    }
    writeFileSync(join(dir, 'config.json'), '[1,2]');
    expect(() => loadExtensionConfig({}, dir)).toThrow(/JSON object/);
  });
});

describe('local ready endpoint', () => {
  it('holds a ready check until the INVOKE refresh for that request is done', async () => {
    let revision = 3;
    const endpoint = new LocalEndpoint(() => ({ revision, bundleFile: '/tmp/x/bundle.json' }), 5_000);
    const url = await endpoint.listen(0);
    try {
      const pending = fetch(`${url}/v1/invocations/req-1/ready`).then((r) => r.json());
      let settled = false;
      void pending.then(() => {
        settled = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(settled).toBe(false);
      revision = 4;
      endpoint.markReady('req-1');
      expect(await pending).toEqual({ revision: 4, bundleFile: '/tmp/x/bundle.json' });
      // Already done: answered at once.
      expect(await (await fetch(`${url}/v1/invocations/req-1/ready`)).json()).toEqual({
        revision: 4,
        bundleFile: '/tmp/x/bundle.json',
      });
      expect((await fetch(`${url}/v1/other`)).status).toBe(404);
    } finally {
      endpoint.close();
    }
  });

  it('answers with what it holds once the bound passes', async () => {
    const endpoint = new LocalEndpoint(() => ({ revision: 1, bundleFile: 'b' }), 100);
    const url = await endpoint.listen(0);
    try {
      const answer = await fetch(`${url}/v1/invocations/never-invoked/ready`);
      expect(answer.status).toBe(200);
      expect(await answer.json()).toEqual({ revision: 1, bundleFile: 'b' });
    } finally {
      endpoint.close();
    }
  });
});

describe('local endpoint under hostile requests', () => {
  it('answers any request target with 200, 400 or 404 and keeps serving (property)', async () => {
    const endpoint = new LocalEndpoint(() => ({ revision: 2, bundleFile: 'b' }), 20);
    const url = await endpoint.listen(0);
    const { port } = new URL(url);
    const send = (path: string, method: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: Number(port), path, method, agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.webPath(),
            fc.string({ maxLength: 300 }).map((id) => `/v1/invocations/${encodeURIComponent(id)}/ready`),
            fc.constantFrom(
              '/v1/invocations/%E0%A4%A/ready',
              '/v1/invocations//ready',
              `/v1/invocations/${'x'.repeat(300)}/ready`,
            ),
          ),
          fc.constantFrom('GET', 'POST', 'DELETE'),
          async (path, method) => {
            const status = await send(path.startsWith('/') ? path : `/${path}`, method);
            expect([200, 400, 404]).toContain(status);
          },
        ),
        { numRuns: 120 },
      );
      expect(await send('/healthz', 'GET')).toBe(200);
    } finally {
      endpoint.close();
    }
  });
});

describe('emulator telemetry subscription validation', () => {
  it('never throws on arbitrary input (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const result = parseSubscription('x', value);
        expect(typeof result.ok).toBe('boolean');
      }),
      { numRuns: 500 },
    );
  });

  it('maps sandbox.localdomain to loopback and checks the documented limits', () => {
    const ok = parseSubscription('x', {
      schemaVersion: '2022-12-13',
      types: ['platform'],
      buffering: { maxItems: 1000, maxBytes: 262144, timeoutMs: 25 },
      destination: { protocol: 'HTTP', URI: 'http://sandbox.localdomain:4243/path' },
    });
    expect(ok.ok && ok.subscription.url.href).toBe('http://127.0.0.1:4243/path');
    for (const buffering of [
      { maxItems: 999 },
      { maxBytes: 100 },
      { timeoutMs: 24 },
      { timeoutMs: 30_001 },
    ]) {
      const bad = parseSubscription('x', {
        schemaVersion: '2022-12-13',
        types: ['platform'],
        buffering,
        destination: { protocol: 'HTTP', URI: 'http://sandbox.localdomain:4243/' },
      });
      expect(bad.ok).toBe(false);
    }
    expect(
      parseSubscription('x', {
        schemaVersion: '2022-12-13',
        types: ['platform'],
        destination: { protocol: 'HTTP', URI: 'http://sandbox.localdomain:9001/' },
      }).ok,
    ).toBe(false);
  });
});

it('reads back what it wrote (cursor file is JSON)', () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'spool.cursor.json'), 'garbage');
  expect(readCursor(dir)).toBeUndefined();
  expect(readFileSync(join(dir, 'spool.cursor.json'), 'utf8')).toBe('garbage');
});
