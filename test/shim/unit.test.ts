// In-process units of the shim: identity detection, configuration, the first decision's wait for the
// Lambda extension, the record queue, origin attribution, and the authority parser (property-tested:
// it reads outside input).

import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { DenyRecord } from '../../policy/types.js';
import { tokenCredentials } from '../../runtime-shims/node/client/credentials.js';
import { readConfig } from '../../runtime-shims/node/config.js';
import { ShimCore } from '../../runtime-shims/node/core.js';
import { reverseName } from '../../runtime-shims/node/hooks/dns.js';
import { parseAuthority } from '../../runtime-shims/node/hooks/http.js';
import { detectIdentity } from '../../runtime-shims/node/identity.js';
import { captureOrigin } from '../../runtime-shims/node/origin.js';
import { HttpSink, RecordQueue, type Sink, SpoolSink } from '../../runtime-shims/node/records.js';
import { countingTcpServer, type Fixture, killAll, makeFixture, probe, spoolRecords } from './harness.js';

const dirs: string[] = [];
const fixtures: Fixture[] = [];
afterAll(() => {
  killAll();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  for (const fx of fixtures) fx.cleanup();
});

describe('detectIdentity', { timeout: 120_000 }, () => {
  it('AWS: name, region, runtime from AWS_EXECUTION_ENV, tags; account left to the extension', () => {
    const id = detectIdentity({
      AWS_LAMBDA_FUNCTION_NAME: 'charge-card',
      AWS_REGION: 'eu-west-1',
      AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs20.x',
      BULKHEAD_TAGS: 'app=payments,env=prod',
      BULKHEAD_WORKLOAD: 'account=123456789012,name=spoofed',
    });
    expect(id).toEqual({
      cloud: 'aws',
      name: 'charge-card',
      region: 'eu-west-1',
      runtime: 'nodejs20.x',
      account: '123456789012',
      'tag.app': 'payments',
      'tag.env': 'prod',
    });
  });

  it('Azure: site name, region, subscription from WEBSITE_OWNER_NAME', () => {
    const id = detectIdentity({
      WEBSITE_SITE_NAME: 'orders-app',
      REGION_NAME: 'West Europe',
      WEBSITE_OWNER_NAME: 'a1b2c3d4-0000-1111-2222-333344445555+orders-rg-WestEuropewebspace',
    });
    expect(id).toMatchObject({
      cloud: 'azure',
      name: 'orders-app',
      region: 'West Europe',
      account: 'a1b2c3d4-0000-1111-2222-333344445555',
    });
  });

  it('GCP: service, revision, function target, project', () => {
    const id = detectIdentity({
      K_SERVICE: 'ledger',
      K_REVISION: 'ledger-00003',
      FUNCTION_TARGET: 'handle',
      GOOGLE_CLOUD_PROJECT: 'acme-prod',
      BULKHEAD_TAGS: 'team=core',
    });
    expect(id).toMatchObject({
      cloud: 'gcp',
      name: 'ledger',
      revision: 'ledger-00003',
      function: 'handle',
      account: 'acme-prod',
      'tag.team': 'core',
    });
  });

  it('elsewhere: BULKHEAD_WORKLOAD; malformed text never throws', () => {
    expect(detectIdentity({ BULKHEAD_WORKLOAD: 'name=batch,tag.app=demo' })).toEqual({
      cloud: 'other',
      name: 'batch',
      'tag.app': 'demo',
    });
    fc.assert(
      fc.property(fc.string(), fc.string(), (workload, tags) => {
        const id = detectIdentity({ BULKHEAD_WORKLOAD: workload, BULKHEAD_TAGS: tags });
        expect(typeof id.cloud).toBe('string');
      }),
    );
  });
});

describe('readConfig', { timeout: 120_000 }, () => {
  it('exempts exactly the Runtime API, the report URL and the control API (the extension serves no endpoint)', () => {
    const config = readConfig({
      AWS_LAMBDA_RUNTIME_API: '127.0.0.1:9001',
      // A leftover from the local endpoint: no longer an exemption.
      BULKHEAD_EXTENSION_URL: 'http://127.0.0.1:2772',
      BULKHEAD_REPORT: 'https://reports.example.com/v1/reports',
      BULKHEAD_CONTROL_URL: 'https://Control.Example.com:8443/base',
    });
    expect(config.exempt).toEqual([
      { host: '127.0.0.1', port: 9001 },
      { host: 'control.example.com', port: 8443 },
      { host: 'reports.example.com', port: 443 },
    ]);
    expect(config.failMode).toBe('closed');
  });

  it('propagates the extension status file and its wait to children, not the old endpoint', () => {
    const config = readConfig({
      BULKHEAD_EXTENSION_STATUS: '/tmp/bulkhead/extension-status.json',
      BULKHEAD_EXTENSION_WAIT_MS: '250',
      BULKHEAD_EXTENSION_URL: 'http://127.0.0.1:2772',
      BULKHEAD_STATE_DIR: '/tmp/bulkhead',
    });
    expect(config.propagate).toEqual({
      BULKHEAD_EXTENSION_STATUS: '/tmp/bulkhead/extension-status.json',
      BULKHEAD_EXTENSION_WAIT_MS: '250',
      BULKHEAD_STATE_DIR: '/tmp/bulkhead',
    });
    expect(config.extensionStatus).toBe('/tmp/bulkhead/extension-status.json');
    expect(config.extensionWaitMs).toBe(250);
    expect(config.problems).toEqual([]);
  });

  it('reads the extension wait: 3000 ms by default, whole milliseconds from 0 accepted, anything else a problem', () => {
    expect(readConfig({}).extensionStatus).toBeUndefined();
    expect(readConfig({}).extensionWaitMs).toBe(3000);
    expect(readConfig({ BULKHEAD_EXTENSION_STATUS: '  ' }).extensionStatus).toBeUndefined();
    for (const [text, wait] of [
      ['0', 0],
      [' 40 ', 40],
      ['5000', 5000],
    ] as const) {
      const config = readConfig({ BULKHEAD_EXTENSION_WAIT_MS: text });
      expect(config.extensionWaitMs).toBe(wait);
      expect(config.problems).toEqual([]);
    }
    for (const text of ['-1', '1.5', 'soon', '1e3x', '86400000']) {
      const config = readConfig({ BULKHEAD_EXTENSION_WAIT_MS: text });
      expect(config.extensionWaitMs).toBe(3000);
      expect(config.problems).toEqual([expect.stringContaining('BULKHEAD_EXTENSION_WAIT_MS')]);
    }
  });

  it('reports bad values as problems and stays closed', () => {
    const config = readConfig({
      AWS_LAMBDA_RUNTIME_API: 'nonsense',
      BULKHEAD_FAIL_MODE: 'maybe',
      BULKHEAD_REPORT: 'ftp://x',
    });
    expect(config.failMode).toBe('closed');
    expect(config.problems.length).toBe(2);
    expect(config.report).toEqual({ kind: 'spool', path: 'ftp://x' });
  });

  it('never throws on hostile environment values', () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.constantFrom(
            'AWS_LAMBDA_RUNTIME_API',
            'BULKHEAD_EXTENSION_STATUS',
            'BULKHEAD_EXTENSION_WAIT_MS',
            'BULKHEAD_REPORT',
            'BULKHEAD_CONTROL_URL',
            'BULKHEAD_FAIL_MODE',
            'BULKHEAD_TRUSTED_KEYS',
          ),
          fc.string(),
        ),
        (env) => {
          const config = readConfig(env);
          expect(Array.isArray(config.exempt)).toBe(true);
          expect(Number.isInteger(config.extensionWaitMs)).toBe(true);
          expect(config.extensionWaitMs >= 0 && config.extensionWaitMs <= 30_000).toBe(true);
        },
      ),
    );
  });
});

/** A started core (not installed: no hooks), its log lines collected. */
function core(env: Record<string, string>) {
  const logs: string[] = [];
  const shim = new ShimCore({
    env,
    log: (line) => logs.push(line),
    registerPath: undefined,
    isOwnFile: () => false,
    post: async () => 202,
  });
  shim.start();
  return { shim, logs };
}

describe('ShimCore: the first decision waits for the extension status file', { timeout: 120_000 }, () => {
  const decide = (shim: ShimCore) => {
    const start = performance.now();
    const decision = shim.decideConnect('10.0.0.1', 443, 'tcp', undefined, undefined);
    return { decision, ms: performance.now() - start };
  };
  const noAnswer = (logs: string[]) => logs.filter((l) => l.includes('gave no bundle answer'));

  it('waits its bound when the status file never comes, then the fail mode governs (once)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulkhead-status-'));
    dirs.push(dir);
    const { shim, logs } = core({
      BULKHEAD_BUNDLE_FILE: join(dir, 'bundle.json'),
      BULKHEAD_EXTENSION_STATUS: join(dir, 'extension-status.json'),
      BULKHEAD_EXTENSION_WAIT_MS: '50',
      BULKHEAD_FAIL_MODE: 'closed',
    });
    const first = decide(shim);
    expect(first.ms).toBeGreaterThanOrEqual(49);
    expect(first.decision).toMatchObject({ decision: 'deny', blocked: true, rule: 'fail-closed' });
    expect(noAnswer(logs)).toEqual([
      'the extension gave no bundle answer within 50 ms; fail mode closed governs until it does',
    ]);
    // Only the first decision waits.
    expect(decide(shim).decision.rule).toBe('fail-closed');
    expect(noAnswer(logs)).toHaveLength(1);
  });

  it('does not wait when the status file is there, nor without BULKHEAD_EXTENSION_STATUS', () => {
    const fx = makeFixture({ allow: [] });
    fixtures.push(fx);
    const status = join(fx.dir, 'extension-status.json');
    writeFileSync(status, '{}');
    for (const env of [
      fx.env({ BULKHEAD_EXTENSION_STATUS: status, BULKHEAD_EXTENSION_WAIT_MS: '5000' }),
      fx.env({ BULKHEAD_EXTENSION_WAIT_MS: '5000' }),
    ]) {
      const { shim, logs } = core(env);
      const { decision, ms } = decide(shim);
      expect(ms).toBeLessThan(1000);
      expect(decision.rule).not.toMatch(/^fail-/);
      expect(shim.status().revision).toBe(1);
      expect(noAnswer(logs)).toEqual([]);
    }
  });

  it('returns as soon as the extension writes the status file, with the bundle verified', async () => {
    const fx = makeFixture({ allow: [] });
    fixtures.push(fx);
    const status = join(fx.dir, 'extension-status.json');
    // The extension, writing from another thread while this one is held in the synchronous wait.
    const extension = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const { writeFileSync } = require('node:fs');
       parentPort.once('message', () => setTimeout(() => writeFileSync(workerData, '{}'), 100));
       parentPort.postMessage('up');`,
      { eval: true, workerData: status },
    );
    try {
      await new Promise((resolve) => extension.once('message', resolve));
      const { shim, logs } = core(
        fx.env({ BULKHEAD_EXTENSION_STATUS: status, BULKHEAD_EXTENSION_WAIT_MS: '10000' }),
      );
      extension.postMessage('go');
      const { decision, ms } = decide(shim);
      expect(ms).toBeGreaterThanOrEqual(90);
      expect(ms).toBeLessThan(5000);
      expect(decision.rule).not.toMatch(/^fail-/);
      expect(shim.status().revision).toBe(1);
      expect(noAnswer(logs)).toEqual([]);
    } finally {
      await extension.terminate();
    }
  });
});

describe('ShimCore.refresh (the wrapper after each ready record)', { timeout: 120_000 }, () => {
  it('re-reads the bundle only when the file is not the one last read', () => {
    const fx = makeFixture({ allow: [] });
    fixtures.push(fx);
    const { shim, logs } = core(fx.env());
    const loads = () => logs.filter((l) => l.startsWith('enforcing bundle revision')).length;
    // Before first use: the first refresh is the first load.
    expect(shim.refresh().revision).toBe(1);
    expect(loads()).toBe(1);
    for (let i = 0; i < 3; i++) expect(shim.refresh()).toMatchObject({ ok: true, revision: 1 });
    expect(loads()).toBe(1);
    // The extension replaced the file (rename): read at once, whatever revision a ready record named.
    fx.write({ allow: [] }, 2);
    expect(shim.refresh()).toMatchObject({ ok: true, revision: 2 });
    expect(shim.status().revision).toBe(2);
    expect(loads()).toBe(2);
    expect(shim.refresh()).toMatchObject({ ok: true, revision: 2 });
    expect(loads()).toBe(2);
  });
});

describe('reverseName', { timeout: 120_000 }, () => {
  it('names the PTR query a reverse lookup sends', () => {
    expect(reverseName('10.83.69.67')).toBe('67.69.83.10.in-addr.arpa');
    expect(reverseName('::ffff:10.83.69.67')).toBe('67.69.83.10.in-addr.arpa');
    expect(reverseName('2001:db8::1')).toBe(`1.${'0.'.repeat(23)}8.b.d.0.1.0.0.2.ip6.arpa`);
    expect(reverseName('not-an-ip')).toBeUndefined();
  });
});

describe('parseAuthority', { timeout: 120_000 }, () => {
  it('reads host, port and bracketed IPv6', () => {
    expect(parseAuthority('api.example.com:8443')).toEqual({ host: 'api.example.com', port: 8443 });
    expect(parseAuthority('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(parseAuthority('example.com')).toEqual({ host: 'example.com', port: undefined });
    expect(parseAuthority('x:99999')).toBeUndefined();
  });

  it('never throws and never returns an out-of-range port', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        const parsed = parseAuthority(text);
        if (parsed?.port !== undefined) expect(parsed.port >= 1 && parsed.port <= 65535).toBe(true);
      }),
    );
  });
});

function recordInput(port: number) {
  return {
    kind: 'connect' as const,
    destination: { ip: '10.0.0.1', port, protocol: 'tcp' as const },
    decision: 'deny' as const,
    mode: 'enforce' as const,
    rule: 'default-deny',
    revision: 3,
  };
}

describe('RecordQueue', { timeout: 120_000 }, () => {
  it('merges repeats, bounds the queue (a distinct deny beyond it goes into an aggregate), and delivers in batches', async () => {
    const batches: DenyRecord[][] = [];
    const sink: Sink = { description: 'memory', deliver: async (r) => void batches.push([...r]) };
    const queue = new RecordQueue(sink, () => ({ cloud: 'other' }), {
      maxPending: 3,
      maxBatch: 2,
      log: () => undefined,
      delayMs: 60_000,
    });
    for (let i = 0; i < 5; i++) queue.add(recordInput(1));
    queue.add(recordInput(2));
    queue.add(recordInput(3));
    queue.add(recordInput(4));
    expect(queue.queued).toBe(4); // three records and one open aggregate
    expect(queue.dropped).toBe(0);
    const result = await queue.flush();
    expect(result).toEqual({ delivered: 4, pending: 0, dropped: 0 });
    expect(batches.map((b) => b.length)).toEqual([2, 2]);
    expect(batches[0]?.[0]).toMatchObject({ count: 5, workload: { cloud: 'other' } });
    expect(batches[1]?.[1]).toMatchObject({
      count: 1,
      destination: { port: 4 },
      aggregate: { pattern: '10.0.0.1:4', distinct: 1, sample: ['10.0.0.1:4'] },
    });
    expect(new Set(batches.flat().map((r) => r.id)).size).toBe(4);
  });

  it('loses nothing while the sink is unreachable: records wait, then arrive when it is back; never throws', async () => {
    let fail = true;
    const delivered: DenyRecord[] = [];
    const sink: Sink = {
      description: 'flaky',
      deliver: async (r) => {
        if (fail) throw new Error('connect ECONNREFUSED');
        delivered.push(...r);
      },
    };
    const lines: string[] = [];
    const queue = new RecordQueue(sink, () => ({}), { log: (l) => lines.push(l), delayMs: 60_000 });
    queue.add(recordInput(1));
    queue.add(recordInput(2));
    // An hour of failed deliveries is many attempts; none of them may cost a record.
    for (let attempt = 0; attempt < 50; attempt++) {
      expect(await queue.flush()).toEqual({ delivered: 0, pending: 2, dropped: 0 });
    }
    queue.add(recordInput(1)); // a repeat while waiting still aggregates
    fail = false;
    expect(await queue.flush()).toEqual({ delivered: 2, pending: 0, dropped: 0 });
    expect(delivered.map((r) => [r.destination.port, r.count])).toEqual([
      [1, 2],
      [2, 1],
    ]);
    expect(lines.some((l) => l.includes('flaky') && l.includes('kept for retry'))).toBe(true);
  });

  it('counts a batch the receiver refuses (4xx) as dropped instead of retrying it forever', async () => {
    const statuses = [400, 202];
    const posted: string[] = [];
    const sink = new HttpSink(new URL('http://127.0.0.1:1/v1/reports'), undefined, async (_url, body) => {
      posted.push(body);
      return statuses.shift() ?? 202;
    });
    const lines: string[] = [];
    const queue = new RecordQueue(sink, () => ({}), {
      log: (l) => lines.push(l),
      delayMs: 60_000,
      maxBatch: 1,
    });
    queue.add(recordInput(1));
    queue.add(recordInput(2));
    expect(await queue.flush()).toEqual({ delivered: 1, pending: 0, dropped: 1 });
    expect(posted).toHaveLength(2);
    expect(lines.some((l) => l.includes('answered 400') && l.includes('1 records dropped'))).toBe(true);
  });

  it('keeps retrying on 401/403/429/5xx, which an operator or time fixes', async () => {
    const statuses = [401, 403, 429, 503, 202];
    const sink = new HttpSink(
      new URL('http://127.0.0.1:1/v1/reports'),
      tokenCredentials('token', {}),
      async () => statuses.shift() ?? 202,
    );
    const queue = new RecordQueue(sink, () => ({}), { log: () => undefined, delayMs: 60_000 });
    queue.add(recordInput(1));
    for (let i = 0; i < 4; i++) expect((await queue.flush()).pending).toBe(1);
    expect(await queue.flush()).toEqual({ delivered: 1, pending: 0, dropped: 0 });
  });

  it('numbers records per sandbox when asked; one dropped for room still uses its number, so the API sees the gap', async () => {
    const batches: DenyRecord[][] = [];
    const sink: Sink = { description: 'memory', deliver: async (r) => void batches.push([...r]) };
    const queue = new RecordQueue(sink, () => ({}), {
      maxPending: 2,
      // No aggregates: a deny beyond the queue is dropped (counted).
      maxAggregates: 0,
      numberRecords: true,
      log: () => undefined,
      delayMs: 60_000,
    });
    queue.add(recordInput(1));
    queue.add(recordInput(2));
    queue.add(recordInput(3)); // no room: dropped, seq 3 never arrives
    await queue.flush();
    queue.add(recordInput(4));
    await queue.flush();
    const records = batches.flat();
    expect(records.map((r) => r.seq)).toEqual([1, 2, 4]);
    expect(new Set(records.map((r) => r.sandboxId)).size).toBe(1);
    expect(records[0]?.sandboxId).toMatch(/^[0-9a-f-]{36}$/);
    expect(queue.dropped).toBe(1);
  });

  it('leaves numbering to the forwarder by default (the Lambda extension numbers spooled records)', async () => {
    const batches: DenyRecord[][] = [];
    const sink: Sink = { description: 'memory', deliver: async (r) => void batches.push([...r]) };
    const queue = new RecordQueue(sink, () => ({}), { log: () => undefined, delayMs: 60_000 });
    queue.add(recordInput(1));
    await queue.flush();
    expect(batches[0]?.[0]?.seq).toBeUndefined();
    expect(batches[0]?.[0]?.sandboxId).toBeUndefined();
  });

  it('the spool sink appends one NDJSON line per record to a 0600 file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulkhead-spool-'));
    dirs.push(dir);
    const path = join(dir, 'spool.ndjson');
    const sink = new SpoolSink(path);
    const queue = new RecordQueue(sink, () => ({}), { log: () => undefined, delayMs: 60_000 });
    queue.add(recordInput(1));
    queue.add(recordInput(2));
    await queue.flush();
    sink.close();
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    expect(lines.map((l) => JSON.parse(l).destination.port)).toEqual([1, 2]);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });
});

describe('origin', { timeout: 120_000 }, () => {
  it('finds the nearest application frame and its npm package', () => {
    const origin = captureOrigin(() => false);
    expect(origin?.file).toMatch(/unit\.test\.ts$/);
    expect(origin?.line).toBeGreaterThan(0);
  });

  it('a deny record names the npm package and file:line that opened the connection', async () => {
    const server = await countingTcpServer();
    const dir = mkdtempSync(join(tmpdir(), 'bulkhead-origin-'));
    dirs.push(dir);
    const pkg = join(dir, 'node_modules', 'leaky-analytics');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'leaky-analytics', version: '6.6.6' }));
    writeFileSync(
      join(pkg, 'index.js'),
      `module.exports = () => new Promise((r) => {\n  require('net').connect(${server.port}, '127.0.0.1').on('error', r);\n});\n`,
    );
    const fx = makeFixture({ allow: [] });
    fixtures.push(fx);
    const { results } = await probe(
      [{ kind: 'eval', code: `require(${JSON.stringify(pkg)})().then(() => 'done')` }],
      fx.env(),
    );
    expect(results[0]).toBe('done');
    const record = spoolRecords(fx).find((r) => (r.destination as { port: number }).port === server.port);
    expect(record?.origin).toEqual({
      package: 'leaky-analytics@6.6.6',
      file: join(pkg, 'index.js'),
      line: 2,
    });
    await server.close();
  });
});
