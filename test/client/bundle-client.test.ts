// The in-process bundle client against a real HTTP server on loopback that plays the control
// API's bundle route (ETag, 304, long-poll), plus hostile answers.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signBundle } from '../../policy/bundle.js';
import type { CompiledPolicy } from '../../policy/compiled.js';
import { generateKeyPair, loadTrustedKeys } from '../../policy/keys.js';
import type { Envelope } from '../../policy/types.js';
import { type BundleClient, createBundleClient } from '../../runtime-shims/node/client/bundle-client.js';

const TOKEN = 'bh_wl_secret-token-value-0123456789';
const WORKLOAD = { cloud: 'gcp', name: 'charge-card', 'tag.app': 'payments' };

function compiledPolicy(scopeId: string): CompiledPolicy {
  return {
    format: 1,
    scope: { id: scopeId, groups: [{ name: 'payments', match: { 'tag.app': ['payments'] } }], excludes: [] },
    mode: 'enforce',
    fallback: 'deny',
    policies: [{ name: 'payments-egress', mode: 'enforce' }],
    rules: [
      { id: 'payments-egress/allow[0]', action: 'allow', mode: 'enforce', hosts: ['api.payments.test'] },
    ],
    exec: { allowNode: true, allow: [] },
    addons: { allow: [] },
  };
}

const keys = generateKeyPair();
const otherKeys = generateKeyPair();
const trustedKeys = loadTrustedKeys([keys.publicKeyPem]);

function envelopeFor(revision: number, privateKeyPem = keys.privateKeyPem): Envelope {
  return signBundle({ policy: compiledPolicy('scope-a'), revision }, privateKeyPem);
}

interface SeenRequest {
  url: URL;
  headers: http.IncomingHttpHeaders;
}

/** A stand-in for the control API's `GET /v1/bundle`: serves `published`, honours If-None-Match and `wait`. */
class BundleServer {
  published: { body: string; etag: string } | undefined;
  requests: SeenRequest[] = [];
  /** When set, answers every request with this instead of the bundle logic. */
  override: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  private waiting: (() => void)[] = [];
  private server = http.createServer((req, res) => this.handle(req, res));
  url = '';

  async start(): Promise<void> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  publish(envelope: Envelope | string, etag: string): void {
    const body = typeof envelope === 'string' ? envelope : JSON.stringify(envelope);
    this.published = { body, etag };
    for (const wake of this.waiting.splice(0)) wake();
  }

  async close(): Promise<void> {
    for (const wake of this.waiting.splice(0)) wake();
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    this.requests.push({ url, headers: req.headers });
    if (this.override) {
      this.override(req, res);
      return;
    }
    const answer = () => {
      if (res.headersSent || res.destroyed) return;
      const current = this.published;
      if (!current) return void res.writeHead(404).end('{"error":"no bundle"}');
      if (req.headers['if-none-match'] === current.etag) return void res.writeHead(304).end();
      res.writeHead(200, { 'content-type': 'application/json', etag: current.etag }).end(current.body);
    };
    const wait = Number(url.searchParams.get('wait') ?? '0');
    if (wait > 0 && this.published && req.headers['if-none-match'] === this.published.etag) {
      const timer = setTimeout(answer, wait * 1000);
      this.waiting.push(() => {
        clearTimeout(timer);
        answer();
      });
      return;
    }
    answer();
  }
}

describe('bundle client', () => {
  const server = new BundleServer();
  const logs: string[] = [];
  const clients: BundleClient[] = [];

  function client(extra: Partial<Parameters<typeof createBundleClient>[0]> = {}): BundleClient {
    const created = createBundleClient({
      controlUrl: server.url,
      token: TOKEN,
      workload: WORKLOAD,
      trustedKeys,
      timeoutMs: 2000,
      log: (level, message) => logs.push(`${level} ${message}`),
      ...extra,
    });
    clients.push(created);
    return created;
  }

  beforeAll(() => server.start());
  afterEach(() => {
    for (const c of clients.splice(0)) c.stop();
    server.override = undefined;
    server.published = undefined;
    server.requests = [];
  });
  afterAll(async () => {
    await server.close();
    // The token must never reach a log line, whatever path was taken above.
    for (const line of logs) expect(line).not.toContain(TOKEN);
  });

  it('fetches, verifies and holds a bundle, then asks conditionally', async () => {
    const envelope = envelopeFor(1);
    server.publish(envelope, '"r1"');
    const c = client();
    const first = await c.fetchOnce();
    expect(first.kind).toBe('updated');
    if (first.kind !== 'updated') return;
    expect(first.revision).toBe(1);
    expect(first.payload.revision).toBe(1);
    expect(JSON.parse(first.envelopeText)).toEqual(envelope);
    expect(c.current()?.revision).toBe(1);

    const seen = server.requests[0]!;
    expect(seen.url.pathname).toBe('/v1/bundle');
    expect(seen.url.searchParams.get('workload')).toBe('cloud=gcp,name=charge-card,tag.app=payments');
    expect(seen.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(seen.headers['if-none-match']).toBeUndefined();

    const second = await c.fetchOnce();
    expect(second).toEqual({ kind: 'not-modified', revision: 1 });
    expect(server.requests[1]!.headers['if-none-match']).toBe('"r1"');
    expect(c.state()).toMatchObject({ revision: 1, etag: '"r1"', lastOutcome: 'not-modified' });
  });

  it('takes a newer revision and refuses a rollback, keeping the last good bundle', async () => {
    server.publish(envelopeFor(2), '"r2"');
    const c = client();
    expect((await c.fetchOnce()).kind).toBe('updated');
    server.publish(envelopeFor(3), '"r3"');
    const newer = await c.fetchOnce();
    expect(newer).toMatchObject({ kind: 'updated', revision: 3 });
    server.publish(envelopeFor(2), '"r2-again"');
    const rollback = await c.fetchOnce();
    expect(rollback).toMatchObject({ kind: 'rejected', reason: 'rollback', revision: 3 });
    expect(c.current()?.revision).toBe(3);
  });

  it('refuses unsigned, forged and tampered bundles and keeps what it holds', async () => {
    server.publish(envelopeFor(1), '"r1"');
    const c = client();
    await c.fetchOnce();

    const forged = envelopeFor(5, otherKeys.privateKeyPem);
    server.publish(forged, '"forged"');
    expect(await c.fetchOnce()).toMatchObject({ kind: 'rejected', reason: 'unknown-key' });

    const unsigned = { ...envelopeFor(5), signatures: [] };
    server.publish(unsigned, '"unsigned"');
    expect(await c.fetchOnce()).toMatchObject({ kind: 'rejected', reason: 'unsigned' });

    const genuine = envelopeFor(5);
    const payload = JSON.parse(Buffer.from(genuine.payload, 'base64').toString('utf8'));
    payload.revision = 6;
    const tampered = { ...genuine, payload: Buffer.from(JSON.stringify(payload)).toString('base64') };
    server.publish(tampered, '"tampered"');
    expect(await c.fetchOnce()).toMatchObject({ kind: 'rejected', reason: 'bad-signature' });

    expect(c.current()?.revision).toBe(1);
    expect(c.state().consecutiveFailures).toBe(3);
  });

  it('refuses a bundle compiled for another scope than this workload', async () => {
    server.publish(envelopeFor(1), '"r1"');
    const billing = client({ workload: { cloud: 'gcp', name: 'invoice', 'tag.app': 'billing' } });
    expect(await billing.fetchOnce()).toMatchObject({ kind: 'rejected', reason: 'wrong-scope' });
    expect(billing.current()).toBeUndefined();
  });

  it('reports HTTP errors, refused connections, timeouts and oversized answers as errors', async () => {
    server.override = (_req, res) =>
      res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"down"}');
    const c = client({ timeoutMs: 300 });
    const unavailable = await c.fetchOnce();
    expect(unavailable).toMatchObject({ kind: 'error', cause: 'http', status: 503 });

    server.override = () => {}; // never answers
    expect(await c.fetchOnce()).toMatchObject({ kind: 'error', cause: 'timeout' });

    server.override = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(Buffer.alloc(64 * 1024, 0x20));
      res.end(Buffer.alloc(64 * 1024, 0x20));
    };
    const small = client({ maxBytes: 32 * 1024 });
    expect(await small.fetchOnce()).toMatchObject({ kind: 'error', cause: 'too-large' });

    const closed = http.createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    await once(closed, 'close');
    const refused = client({ controlUrl: `http://127.0.0.1:${port}` });
    expect(await refused.fetchOnce()).toMatchObject({ kind: 'error', cause: 'network' });
  });

  it('verifies a last good bundle given at creation and refuses a forged one', async () => {
    const good = client({ lastGood: JSON.stringify(envelopeFor(4)) });
    expect(good.current()?.revision).toBe(4);
    // A bundle from the control API older than the last good one is a rollback.
    server.publish(envelopeFor(3), '"r3"');
    expect(await good.fetchOnce()).toMatchObject({ kind: 'rejected', reason: 'rollback' });

    const forged = client({ lastGood: JSON.stringify(envelopeFor(9, otherKeys.privateKeyPem)) });
    expect(forged.current()).toBeUndefined();
    expect(logs.some((line) => line.includes('last good bundle refused (unknown-key)'))).toBe(true);
  });

  it('shares one request between concurrent plain fetches', async () => {
    server.publish(envelopeFor(1), '"r1"');
    const c = client();
    const outcomes = await Promise.all([c.fetchOnce(), c.fetchOnce(), c.fetchOnce()]);
    expect(outcomes.map((o) => o.kind)).toEqual(['updated', 'updated', 'updated']);
    expect(server.requests).toHaveLength(1);
  });

  it('long-polls: a publish wakes the held request and the update arrives through onUpdate', async () => {
    server.publish(envelopeFor(1), '"r1"');
    const c = client({ longPollSeconds: 20 });
    await c.fetchOnce();
    const updates: number[] = [];
    const arrived = new Promise<void>((resolve) => {
      c.startLongPoll((outcome) => {
        updates.push(outcome.revision);
        resolve();
      });
    });
    // Wait until the long-poll is parked on the server, then publish.
    while (!server.requests.some((r) => r.url.searchParams.get('wait') === '20')) {
      await new Promise((r) => setTimeout(r, 10));
    }
    server.publish(envelopeFor(2), '"r2"');
    await arrived;
    expect(updates).toEqual([2]);
    expect(c.current()?.revision).toBe(2);
    expect(c.state().longPolling).toBe(true);
    c.stop();
    expect(c.state().longPolling).toBe(false);
  });

  it('keeps working after stop(): the controller stops long-polls when idle and starts them again', async () => {
    server.publish(envelopeFor(1), '"r1"');
    const c = client({ longPollSeconds: 20 });
    await c.fetchOnce();
    c.startLongPoll(() => {});
    c.stop();
    server.publish(envelopeFor(2), '"r2"');
    expect(await c.fetchOnce()).toMatchObject({ kind: 'updated', revision: 2 });
    const parked = (): number =>
      server.requests.filter(
        (r) => r.url.searchParams.get('wait') === '20' && r.headers['if-none-match'] === '"r2"',
      ).length;
    const arrived = new Promise<number>((resolve) => c.startLongPoll((outcome) => resolve(outcome.revision)));
    while (parked() < 1) await new Promise((r) => setTimeout(r, 10));
    server.publish(envelopeFor(3), '"r3"');
    expect(await arrived).toBe(3);
  });

  it('rejects bad configuration with clear errors', () => {
    const base = { token: TOKEN, workload: WORKLOAD, trustedKeys, timeoutMs: 1000 };
    expect(() => createBundleClient({ ...base, controlUrl: 'not a url' })).toThrow(/not a URL/);
    expect(() => createBundleClient({ ...base, controlUrl: 'ftp://127.0.0.1/' })).toThrow(/http or https/);
    expect(() => createBundleClient({ ...base, controlUrl: 'http://u:p@127.0.0.1/' })).toThrow(/credentials/);
    expect(() => createBundleClient({ ...base, controlUrl: server.url, token: '' })).toThrow(/token/);
    expect(() => createBundleClient({ ...base, controlUrl: server.url, token: 'a\r\nX: y' })).toThrow(
      /token/,
    );
    expect(() => createBundleClient({ ...base, controlUrl: server.url, timeoutMs: 0 })).toThrow(/timeoutMs/);
  });

  it('never accepts an arbitrary answer body as a bundle, and never throws on one', async () => {
    let body = '';
    server.override = (_req, res) => res.writeHead(200, { etag: '"x"' }).end(body);
    const c = client();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string(),
          fc.json(),
          fc
            .record({
              payloadType: fc.string(),
              payload: fc.base64String(),
              signatures: fc.array(fc.anything()),
            })
            .map((v) => JSON.stringify(v)),
        ),
        async (text) => {
          body = text;
          const outcome = await c.fetchOnce();
          expect(outcome.kind).toBe('rejected');
          expect(c.current()).toBeUndefined();
        },
      ),
      { numRuns: 150 },
    );
  });
});
