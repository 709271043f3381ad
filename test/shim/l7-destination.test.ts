// Which destination an HTTP request is decided as (README, "What an HTTP request is decided as"):
// the address its connection goes to and the names it carries. A CIDR rule allows its addresses
// whatever name a request carries (custom Host header, custom lookup), on a fresh socket and on a
// reused keep-alive socket alike; the proxy's address never allows what is sent through it; a deny
// record names the real address and port.

import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  evalAttempt,
  type Fixture,
  killAll,
  makeFixture,
  probe,
  type RecordingHttpServer,
  recordingHttpServer,
  spoolRecords,
} from './harness.js';

const DENIED = 'ERR_BULKHEAD_DENIED';
let web: RecordingHttpServer;
let proxy: Server;
let proxyPort = 0;
const proxySaw: string[] = [];
let fx: Fixture;

beforeAll(async () => {
  web = await recordingHttpServer();
  // A forward proxy (absolute-form requests) that also tunnels CONNECT; it records what it is asked.
  proxy = createServer((req, res) => {
    proxySaw.push(`${req.method} ${req.url}`);
    res.end('proxied');
  });
  proxy.on('connect', (req, socket) => {
    proxySaw.push(`CONNECT ${req.url}`);
    socket.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
  });
  await new Promise<void>((done) => proxy.listen(0, '127.0.0.1', done));
  proxyPort = (proxy.address() as { port: number }).port;
  fx = makeFixture({
    allow: [
      `{ to: { cidr: 127.0.0.1/32, port: ${web.port}, methods: [GET], paths: ["/allowed/**"] } }`,
      `{ to: { cidr: 127.0.0.1/32, port: ${proxyPort} } }`,
    ],
  });
});

beforeEach(() => writeFileSync(join(fx.dir, 'spool.ndjson'), ''));

afterAll(async () => {
  killAll();
  await web.close();
  proxy.closeAllConnections();
  await new Promise((done) => proxy.close(done));
  fx.cleanup();
});

const attempt = (code: string) => evalAttempt(code);

/** An http.get with the given options; answers ok:<status> or the error code. */
const get = (options: string) =>
  `new Promise((r) => require('http').get(${options}, (res) => { res.resume(); res.on('end', () => r('ok:' + res.statusCode)); }).on('error', (e) => r(String(e.code))))`;

describe('an HTTP request is decided as the address it goes to and the names it carries', () => {
  it('a CIDR rule allows its address whatever the name: custom Host header, custom lookup, fresh or reused', async () => {
    const port = () => web.port;
    const keepAlive = `const agent = new (require('http').Agent)({ keepAlive: true, maxSockets: 1 });`;
    const lookup = `lookup: (n, o, cb) => o.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)`;
    const { results } = await probe(
      [
        attempt(
          `return ${get(`{ host: '127.0.0.1', port: ${port()}, path: '/allowed/host', headers: { host: 'evil.test' } }`)};`,
        ),
        attempt(
          `return ${get(`{ host: 'svc.internal.test', port: ${port()}, path: '/allowed/lookup', ${lookup} }`)};`,
        ),
        attempt(
          `${keepAlive} const a = await ${get(`{ host: '127.0.0.1', port: ${port()}, path: '/allowed/1', agent, headers: { host: 'one.test' } }`)}; const b = await ${get(`{ host: '127.0.0.1', port: ${port()}, path: '/allowed/2', agent, headers: { host: 'two.test' } }`)}; agent.destroy(); return a + ',' + b;`,
        ),
      ],
      fx.env(),
    );
    expect(results).toEqual(['ok:200', 'ok:200', 'ok:200,ok:200']);
    expect(spoolRecords(fx)).toEqual([]);
  });

  it('what the rule does not allow is denied alike on a fresh and on a reused socket, and the record names the real address and port', async () => {
    const port = () => web.port;
    const keepAlive = `const agent = new (require('http').Agent)({ keepAlive: true, maxSockets: 1 });`;
    const { results } = await probe(
      [
        attempt(
          `return ${get(`{ host: '127.0.0.1', port: ${port()}, path: '/secret/fresh', headers: { host: 'evil.test' } }`)};`,
        ),
        attempt(
          `${keepAlive} const a = await ${get(`{ host: '127.0.0.1', port: ${port()}, path: '/allowed/first', agent }`)}; const b = await ${get(`{ host: '127.0.0.1', port: ${port()}, path: '/secret/reused', agent, headers: { host: 'evil.test' } }`)}; agent.destroy(); return a + ',' + b;`,
        ),
      ],
      fx.env(),
    );
    expect(results).toEqual([DENIED, `ok:200,${DENIED}`]);
    expect(web.requests.map((r) => r.url).filter((u) => u.startsWith('/secret'))).toEqual([]);
    const records = spoolRecords(fx).filter((r) => r.kind === 'http');
    expect(records.length).toBeGreaterThan(0);
    for (const record of records)
      expect(record.destination).toMatchObject({ host: 'evil.test', ip: '127.0.0.1', port: web.port });
  });

  it('two requests handed one connecting socket are both decided before it connects', async () => {
    const port = web.port;
    const code = `const sock = require('net').connect(${port}, '127.0.0.1'); const a = ${get(`{ host: '127.0.0.1', port: ${port}, path: '/secret/shared', headers: { host: 'evil.test' }, createConnection: () => sock }`)}; const b = ${get(`{ host: '127.0.0.1', port: ${port}, path: '/allowed/shared', headers: { host: 'ok.test' }, createConnection: () => sock }`)}; await Promise.race([Promise.all([a, b]), new Promise((r) => setTimeout(r, 1000))]); sock.destroy(); return 'done';`;
    await probe([attempt(code)], fx.env());
    // Two requests on one socket is unusual HTTP; what matters: the second was decided (and
    // refused) before the connection existed, so its bytes never reached the server.
    expect(web.requests.map((r) => r.url)).not.toContain('/secret/shared');
    expect(spoolRecords(fx).map((r) => (r.destination as { path?: string }).path)).toContain(
      '/secret/shared',
    );
  });

  it("a proxy's address does not allow what is sent through it", async () => {
    const { results } = await probe(
      [
        // Absolute form to a forward proxy: the destination is the URL's.
        attempt(
          `return ${get(`{ host: '127.0.0.1', port: ${proxyPort}, path: 'http://evil.test/allowed/x' }`)};`,
        ),
        // CONNECT: the destination is the tunnel's target.
        attempt(
          `return new Promise((r) => require('http').request({ host: '127.0.0.1', port: ${proxyPort}, method: 'CONNECT', path: 'evil.test:443' }).on('connect', (res) => r('ok:' + res.statusCode)).on('error', (e) => r(String(e.code))).end());`,
        ),
        // The proxy itself, asked for an allowed destination's path, is reachable.
        attempt(`return ${get(`{ host: '127.0.0.1', port: ${proxyPort}, path: '/plain' }`)};`),
      ],
      fx.env(),
    );
    expect(results).toEqual([DENIED, DENIED, 'ok:200']);
    expect(proxySaw).toEqual(['GET /plain']);
    const hosts = spoolRecords(fx).map((r) => (r.destination as { host?: string }).host);
    expect(hosts).toContain('evil.test');
  });
});
