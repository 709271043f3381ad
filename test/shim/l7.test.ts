// L7: host + method + path decided before the request is sent, for http, https (over TLS),
// fetch, userland undici and http2; redirects hop by hop; Host header spoofing; TLS SNI.
import { createServer as createH2Server, type Http2Server } from 'node:http2';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CountingServer,
  countingTcpServer,
  type Fixture,
  killAll,
  makeFixture,
  probe,
  type RecordingHttpServer,
  ROOT,
  recordingHttpServer,
  selfSignedCert,
} from './harness.js';

const undiciPath = join(ROOT, 'node_modules/undici');
let web: RecordingHttpServer;
let other: CountingServer;
let tlsServer: HttpsServer;
let tlsPort = 0;
const tlsRequests: string[] = [];
let h2: Http2Server;
let h2Port = 0;
const h2Requests: string[] = [];
let fx: Fixture;

beforeAll(async () => {
  web = await recordingHttpServer();
  other = await countingTcpServer();
  fx = makeFixture({ allow: ['{ to: { host: localhost, port: 1 } }'] });
  const { key, cert } = selfSignedCert(fx.dir);
  tlsServer = createHttpsServer({ key, cert }, (req, res) => {
    tlsRequests.push(`${req.method} ${req.url}`);
    res.end('secure');
  });
  await new Promise<void>((done) => tlsServer.listen(0, '127.0.0.1', done));
  tlsPort = (tlsServer.address() as { port: number }).port;
  h2 = createH2Server();
  h2.on('stream', (stream, headers) => {
    h2Requests.push(`${headers[':method']} ${headers[':path']}`);
    stream.respond({ ':status': 200 });
    stream.end('h2');
  });
  await new Promise<void>((done) => h2.listen(0, '127.0.0.1', done));
  h2Port = (h2.address() as { port: number }).port;
  const l7 = (port: number) =>
    `{ to: { host: localhost, port: ${port}, methods: [GET], paths: ["/allowed/**", "/allowed"] } }`;
  fx.write({ allow: [l7(web.port), l7(tlsPort), l7(h2Port)] }, 2);
});

afterAll(async () => {
  killAll();
  await web.close();
  await other.close();
  tlsServer.closeAllConnections();
  await new Promise((done) => tlsServer.close(done));
  await new Promise((done) => h2.close(done));
  fx.cleanup();
});

const DENIED = 'ERR_BULKHEAD_DENIED';

describe('L7 decisions before the request is sent', { timeout: 120_000 }, () => {
  it('http: allowed path and method pass; another path or method never reaches the server', async () => {
    const base = `http://localhost:${web.port}`;
    const kinds = ['http.request', 'http.get', 'http.keepAlive', 'http.noAgent', 'http.createConnection'];
    const attempts = [
      ...kinds.map((kind) => ({ kind, url: `${base}/allowed/a?x=1` })),
      ...kinds.map((kind) => ({ kind, url: `${base}/secret/${kind}` })),
      { kind: 'http.request', url: `${base}/allowed/post`, method: 'POST' },
      { kind: 'http.request', url: `${base}/allowed/spoof`, headers: { host: 'evil.test' } },
    ];
    const { results } = await probe(attempts, fx.env());
    expect(results.slice(0, 5)).toEqual(['ok:200', 'ok:200', 'ok:200', 'ok:200', 'ok:200']);
    expect(results.slice(5)).toEqual(new Array(7).fill(DENIED));
    const seen = web.requests.map((r) => r.url);
    expect(seen.filter((u) => u.startsWith('/secret'))).toEqual([]);
    expect(seen).not.toContain('/allowed/post');
    expect(seen).not.toContain('/allowed/spoof');
  });

  it('fetch and userland undici: decided per request and per redirect hop', async () => {
    const base = `http://localhost:${web.port}`;
    const attempts = [
      { kind: 'fetch', url: `${base}/allowed/f` },
      { kind: 'fetch', url: `${base}/secret/f` },
      { kind: 'fetch', url: `${base}/allowed/f`, method: 'DELETE' },
      {
        kind: 'fetch',
        url: `${base}/allowed/redirect?to=${encodeURIComponent(`${base}/secret/after-redirect`)}`,
      },
      {
        kind: 'fetch',
        url: `${base}/allowed/redirect?to=${encodeURIComponent(`${base}/allowed/ok-after-redirect`)}`,
      },
      {
        kind: 'fetch',
        url: `${base}/allowed/redirect?to=${encodeURIComponent(`http://127.0.0.1:${other.port}/elsewhere`)}`,
      },
      { kind: 'undici.request', undiciPath, url: `${base}/allowed/u` },
      { kind: 'undici.request', undiciPath, url: `${base}/secret/u` },
      { kind: 'undici.fetch', undiciPath, url: `${base}/secret/uf` },
      { kind: 'undici.fetch', undiciPath, url: `${base}/allowed/uf` },
    ];
    const { results } = await probe(attempts, fx.env());
    expect(results).toEqual([
      'ok:200',
      DENIED,
      DENIED,
      DENIED,
      'ok:200',
      DENIED,
      'ok:200',
      DENIED,
      DENIED,
      'ok:200',
    ]);
    const seen = web.requests.map((r) => r.url);
    expect(seen).toContain('/allowed/ok-after-redirect');
    expect(seen.filter((u) => u.startsWith('/secret'))).toEqual([]);
    expect(other.connections()).toBe(0);
  });

  it('https: the request is decided before encryption; the server sees only the allowed one', async () => {
    const base = `https://localhost:${tlsPort}`;
    const attempts = [
      { kind: 'https.request', url: `${base}/allowed/s` },
      { kind: 'https.request', url: `${base}/secret/s` },
      { kind: 'https.request', url: `${base}/allowed/s`, method: 'PUT' },
      { kind: 'fetch', url: `${base}/secret/fetch` },
    ];
    const env = fx.env({ NODE_TLS_REJECT_UNAUTHORIZED: '0' });
    const { results } = await probe(attempts, env);
    expect(results.slice(0, 3)).toEqual(['ok:200', DENIED, DENIED]);
    expect(results[3]).toBe(DENIED);
    expect(tlsRequests).toEqual(['GET /allowed/s']);
  });

  it('TLS: a server name the policy does not allow is refused before the ClientHello', async () => {
    const attempts = [
      { kind: 'tls.connect', host: 'localhost', port: tlsPort, servername: 'localhost' },
      { kind: 'tls.connect', host: 'localhost', port: tlsPort, servername: 'evil.test' },
      { kind: 'tls.overSocket', host: 'localhost', port: tlsPort, servername: 'evil.test' },
      { kind: 'tls.connect', host: '127.0.0.1', port: tlsPort, servername: 'localhost' },
    ];
    const { results } = await probe(attempts, fx.env());
    // The allowed handshake completes (the server then waits for HTTP, so the probe times out or answers).
    expect(results[0]).not.toBe(DENIED);
    expect(results[1]).toBe(DENIED);
    expect(results[2]).toBe(DENIED);
    expect(results[3]).not.toBe(DENIED);
  });

  it('http2: :path and :method are decided before the stream is sent', async () => {
    const url = `http://localhost:${h2Port}`;
    const attempts = [
      { kind: 'http2', url, path: '/allowed/h2' },
      { kind: 'http2', url, path: '/secret/h2' },
      { kind: 'http2', url, path: '/allowed/h2', method: 'POST' },
    ];
    const { results } = await probe(attempts, fx.env());
    expect(results).toEqual(['ok:200', DENIED, DENIED]);
    expect(h2Requests).toEqual(['GET /allowed/h2']);
  });
});
