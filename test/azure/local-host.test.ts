// dist/azure-local's HTTP front (runtime-shims/node/azure/local-host.ts), in process: routes like the
// Functions host, and hostile requests get a 4xx/5xx answer without taking the host down.
import http from 'node:http';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalHost, startLocalHost } from '../../runtime-shims/node/azure/local-host.js';

let host: LocalHost;

function request(method: string, path: string, body?: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(host.url);
    const req = http.request({ host: url.hostname, port: url.port, method, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('azure-local host', () => {
  beforeAll(async () => {
    host = await startLocalHost({ appFile: join(import.meta.dirname, 'fixtures/plain-app.cjs') });
  });
  afterAll(() => host.close());

  it('routes HTTP triggers by route and method, and other triggers through the admin route', async () => {
    const echo = await request('POST', '/api/echo/items', Buffer.from('hello'));
    expect(echo.status).toBe(200);
    expect(JSON.parse(echo.text)).toEqual({ method: 'POST', body: 'hello' });
    expect((await request('DELETE', '/api/echo/items')).status).toBe(404);
    expect((await request('GET', '/api/echo')).status).toBe(404);
    const tick = await request('POST', '/admin/functions/tick', Buffer.from('{"input":""}'));
    expect(tick.status).toBe(202);
    expect(JSON.parse(tick.text).returnValue).toEqual({ pastDue: false });
    expect((await request('POST', '/admin/functions/nope', Buffer.from('{}'))).status).toBe(404);
    expect((await request('POST', '/admin/functions/tick', Buffer.from('{not json'))).status).toBe(400);
  });

  it('answers hostile requests with an error status and stays up', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH'),
        fc.oneof(
          fc.constantFrom('/api/echo/items', '/admin/functions/tick', '/admin/functions/echo', '/api/', '/'),
          fc.webPath(),
          fc.string().map((s) => `/admin/functions/${encodeURIComponent(s)}`),
        ),
        fc.uint8Array({ maxLength: 2048 }),
        async (method, path, body) => {
          const answer = await request(method, path.startsWith('/') ? path : `/${path}`, Buffer.from(body));
          expect(answer.status).toBeGreaterThanOrEqual(200);
          expect(answer.status).toBeLessThan(600);
        },
      ),
      { numRuns: 200 },
    );
    expect((await request('POST', '/api/echo/items', Buffer.from('still here'))).status).toBe(200);
  });

  it('refuses bodies over 1 MiB', async () => {
    const answer = await request('POST', '/api/echo/items', Buffer.alloc(1024 * 1024 + 1, 0x61)).catch(
      () => ({
        status: 0,
        text: '',
      }),
    );
    // Either an answer naming the limit or a reset connection; never a handler run with the whole body.
    expect(answer.status === 0 || answer.text.includes('larger than')).toBe(true);
  });
});
