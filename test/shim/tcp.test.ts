// TCP through every API, IP literal forms, IPv6 and IPv4-mapped, and the binding itself: allowed
// traffic arrives, denied traffic never reaches the server (byte counters on real loopback servers).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CountingServer,
  countingTcpServer,
  type Fixture,
  killAll,
  makeFixture,
  probe,
  spoolRecords,
} from './harness.js';

let allowed: CountingServer;
let denied: CountingServer;
let allowed6: CountingServer;
let denied6: CountingServer;
let fx: Fixture;

beforeAll(async () => {
  allowed = await countingTcpServer();
  denied = await countingTcpServer();
  allowed6 = await countingTcpServer('::1');
  denied6 = await countingTcpServer('::1');
  fx = makeFixture({
    allow: [
      `{ to: { cidr: 127.0.0.1/32, port: ${allowed.port} } }`,
      `{ to: { cidr: "::1/128", port: ${allowed6.port} } }`,
      `{ to: { host: localhost, port: ${allowed.port} } }`,
    ],
  });
});

afterAll(async () => {
  killAll();
  await Promise.all([allowed.close(), denied.close(), allowed6.close(), denied6.close()]);
  fx.cleanup();
});

describe('TCP through every API', { timeout: 120_000 }, () => {
  it('allows the allowed port and denies the other, through net, Socket#connect and the binding', async () => {
    const apis = ['net.connect', 'net.createConnection', 'socket.connect'];
    const attempts = [
      ...apis.map((kind) => ({ kind, host: '127.0.0.1', port: allowed.port })),
      ...apis.map((kind) => ({ kind, host: '127.0.0.1', port: denied.port })),
      { kind: 'binding.tcp', ip: '127.0.0.1', port: allowed.port },
      { kind: 'binding.tcp', ip: '127.0.0.1', port: denied.port },
    ];
    const before = denied.bytes();
    const { results } = await probe(attempts, fx.env());
    expect(results.slice(0, 3)).toEqual(['ok', 'ok', 'ok']);
    expect(results.slice(3, 6)).toEqual([
      'ERR_BULKHEAD_DENIED',
      'ERR_BULKHEAD_DENIED',
      'ERR_BULKHEAD_DENIED',
    ]);
    expect(results[6]).toBe('ok');
    // Direct binding use gets the denial as the binding's own error number.
    expect(results[7]).toBe('errno:-4242');
    expect(denied.bytes()).toBe(before);
    expect(denied.connections()).toBe(0);
    expect(allowed.bytes()).toBeGreaterThanOrEqual(20);
  });

  it('names the destination and the deciding rule in the error message', async () => {
    const script = [
      {
        kind: 'eval',
        code: `new Promise((r) => require('net').connect(${denied.port}, '127.0.0.1').on('error', (e) => r(e.message)))`,
      },
    ];
    const { results } = await probe(script, fx.env());
    expect(results[0]).toMatch(new RegExp(`127\\.0\\.0\\.1:${denied.port}.*rule default-deny.*revision 1`));
  });

  it('decides every IP literal form the URL parser and getaddrinfo accept', async () => {
    const forms = ['2130706433', '0x7f000001', '0177.0.0.1', '127.1', '0x7f.0.0.1', '127.000.000.001'];
    const attempts = [
      ...forms.map((host) => ({ kind: 'net.connect', host, port: denied.port })),
      ...forms.map((host) => ({ kind: 'net.connect', host, port: allowed.port })),
      { kind: 'http.get', url: `http://2130706433:${denied.port}/` },
      { kind: 'fetch', url: `http://0x7f000001:${denied.port}/` },
      { kind: 'fetch', url: `http://0177.0.0.1:${denied.port}/` },
    ];
    const { results } = await probe(attempts, fx.env());
    for (let i = 0; i < forms.length; i++) expect(results[i], forms[i]).toBe('ERR_BULKHEAD_DENIED');
    for (let i = forms.length; i < 2 * forms.length; i++)
      expect(results[i], forms[i - forms.length]).toBe('ok');
    expect(results.slice(-3)).toEqual(['ERR_BULKHEAD_DENIED', 'ERR_BULKHEAD_DENIED', 'ERR_BULKHEAD_DENIED']);
    expect(denied.connections()).toBe(0);
  });

  it('governs IPv6 and IPv4-mapped IPv6 (decided as the IPv4 address)', async () => {
    const attempts = [
      { kind: 'net.connect', host: '::1', port: allowed6.port },
      { kind: 'net.connect', host: '::1', port: denied6.port },
      { kind: 'net.connect', host: '::ffff:127.0.0.1', port: allowed.port },
      { kind: 'net.connect', host: '::ffff:127.0.0.1', port: denied.port },
      { kind: 'net.connect', host: '::ffff:7f00:1', port: denied.port },
      { kind: 'binding.tcp', ip: '::1', port: denied6.port },
      { kind: 'binding.tcp', ip: '::ffff:127.0.0.1', port: denied.port },
      { kind: 'fetch', url: `http://[::ffff:127.0.0.1]:${denied.port}/` },
      { kind: 'fetch', url: `http://[::1]:${denied6.port}/` },
      // The unspecified addresses reach loopback: decided as loopback.
      { kind: 'net.connect', host: '0.0.0.0', port: denied.port },
      { kind: 'net.connect', host: '0.0.0.0', port: allowed.port },
      { kind: 'net.connect', host: '::', port: denied6.port },
    ];
    const { results } = await probe(attempts, fx.env());
    expect(results[0]).toBe('ok');
    expect(results[1]).toBe('ERR_BULKHEAD_DENIED');
    expect(results[2]).toBe('ok');
    expect(results[3]).toBe('ERR_BULKHEAD_DENIED');
    expect(results[4]).toBe('ERR_BULKHEAD_DENIED');
    expect(results[5]).toBe('errno:-4242');
    expect(results[6]).toBe('errno:-4242');
    expect(results[7]).toBe('ERR_BULKHEAD_DENIED');
    expect(results[8]).toBe('ERR_BULKHEAD_DENIED');
    expect(results.slice(9)).toEqual(['ERR_BULKHEAD_DENIED', 'ok', 'ERR_BULKHEAD_DENIED']);
    expect(denied6.connections()).toBe(0);
    expect(denied.connections()).toBe(0);
  });

  it('decides a name by what this process resolved it to, not by what a custom lookup claims', async () => {
    const attempts = [
      { kind: 'net.connect', host: 'localhost', port: allowed.port },
      // An allowed name with a custom lookup returning an address the name never resolved to.
      { kind: 'net.connect.lookup', host: 'localhost', ip: '127.0.0.2', port: allowed.port },
      { kind: 'net.connect', host: 'localhost', port: denied.port },
    ];
    const { results } = await probe(attempts, fx.env());
    expect(results).toEqual(['ok', 'ERR_BULKHEAD_DENIED', 'ERR_BULKHEAD_DENIED']);
  });

  it('writes deny records with destination, rule, revision, origin and aggregated count', async () => {
    const code = `(async () => { const net = require('net'); for (let i = 0; i < 3; i++) await new Promise((r) => net.connect(${denied.port}, '127.0.0.1').on('error', r)); return 'done'; })()`;
    const { results } = await probe([{ kind: 'eval', code }], fx.env());
    expect(results[0]).toBe('done');
    const records = spoolRecords(fx).filter(
      (r) =>
        (r.destination as { port?: number }).port === denied.port &&
        r.kind === 'connect' &&
        (r.count as number) >= 3,
    );
    expect(records.length).toBeGreaterThan(0);
    const record = records[0] as Record<string, unknown>;
    expect(record).toMatchObject({
      decision: 'deny',
      mode: 'enforce',
      rule: 'default-deny',
      revision: 1,
      workload: { cloud: 'other', name: 'shim-test', 'tag.app': 'demo' },
      destination: { ip: '127.0.0.1', port: denied.port, protocol: 'tcp' },
    });
    expect(typeof record.id).toBe('string');
    expect(record.lastTime).toBeDefined();
  });
});
