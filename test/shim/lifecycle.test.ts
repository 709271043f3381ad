// The bundle lifecycle, fail modes, observe mode, loading through --import and NODE_OPTIONS, the
// programmatic API (invocation tags, HTTP report sink, coverage), and tamper resistance.

import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CountingServer,
  countingTcpServer,
  type Fixture,
  killAll,
  makeFixture,
  probe,
  ROOT,
  runNode,
  SHIM_CJS,
  signedEnvelope,
  spoolRecords,
} from './harness.js';

const DENIED = 'ERR_BULKHEAD_DENIED';
let target: CountingServer;
let other: CountingServer;
let fx: Fixture;

beforeAll(async () => {
  target = await countingTcpServer();
  other = await countingTcpServer();
  fx = makeFixture({ allow: [`{ to: { cidr: 127.0.0.1/32, port: ${other.port} } }`] });
});

afterAll(async () => {
  killAll();
  await Promise.all([target.close(), other.close()]);
  fx.cleanup();
});

describe('bundle lifecycle', { timeout: 120_000 }, () => {
  it('picks up a changed file, refuses rollback and bad signatures keeping the last good, reloads from text', async () => {
    const fx = makeFixture({ allow: [] });
    const allowTarget = { allow: [`{ to: { cidr: 127.0.0.1/32, port: ${target.port} } }`] };
    const file = (name: string, text: string) => {
      const path = join(fx.dir, name);
      writeFileSync(path, text);
      return path;
    };
    const rev5 = file('rev5.json', signedEnvelope(allowTarget, 5, fx.privateKey));
    const rev3 = file('rev3.json', signedEnvelope(allowTarget, 3, fx.privateKey));
    const forged = JSON.parse(signedEnvelope({ allow: [] }, 9, fx.privateKey));
    forged.payload = Buffer.from(
      Buffer.from(forged.payload, 'base64').toString('utf8').replace('"revision":9', '"revision":10'),
    ).toString('base64');
    const bad = file('bad.json', JSON.stringify(forged));
    const rev7 = file('rev7.json', signedEnvelope({ allow: [] }, 7, fx.privateKey));
    const steps = [
      {},
      { install: rev5, expectRevision: 5 },
      { install: rev3 },
      { install: bad },
      { reloadText: rev7 },
    ];
    const run = await runNode(
      '',
      { ...fx.env(), PROBE_SHIM_API: SHIM_CJS },
      {
        args: [join(ROOT, 'test/shim/fixtures/reload.cjs')],
        input: JSON.stringify({ bundleFile: fx.bundleFile, port: target.port, steps }),
      },
    );
    const out = run.json.results as unknown[];
    expect(out[0]).toMatchObject({ revision: 1, connect: DENIED });
    expect(out[1]).toMatchObject({ revision: 5, connect: 'ok' });
    expect(out[2]).toMatchObject({ revision: 5, connect: 'ok' });
    expect((out[2] as { error: string }).error).toMatch(/^rollback/);
    expect(out[3]).toMatchObject({ revision: 5, connect: 'ok' });
    expect((out[3] as { error: string }).error).toMatch(/^bad-signature/);
    expect(out[4]).toBe(true);
    expect(out[5]).toMatchObject({ revision: 7, connect: DENIED });
    fx.cleanup();
  });
});

describe('bundle expiry', { timeout: 120_000 }, () => {
  const allowTarget = () => ({ allow: [`{ to: { cidr: 127.0.0.1/32, port: ${target.port} } }`] });

  it('an expired bundle is refused at load: the fail mode governs, and says why', async () => {
    const now = Date.now();
    const text = signedEnvelope(allowTarget(), 4, fx.privateKey, {
      issuedAt: now - 48 * 3600_000,
      expiresAt: now - 24 * 3600_000,
    });
    const path = join(fx.dir, 'expired.json');
    writeFileSync(path, text);
    const { results, shim, stderr } = await probe(
      [{ kind: 'net.connect', host: '127.0.0.1', port: target.port }],
      fx.env({ BULKHEAD_BUNDLE_FILE: path, BULKHEAD_LOG: 'stderr' }),
    );
    expect(results).toEqual([DENIED]);
    expect(shim).toMatchObject({ revision: -1, failing: true, failMode: 'closed' });
    expect(stderr).toMatch(/refused bundle from .*: expired/);
  });

  it('a bundle that expires while held keeps governing until a newer one arrives (it is the newest policy known)', async () => {
    const now = Date.now();
    const text = signedEnvelope(allowTarget(), 4, fx.privateKey, {
      issuedAt: now - 1000,
      expiresAt: now + 1500,
    });
    const path = join(fx.dir, 'expiring.json');
    writeFileSync(path, text);
    const { results, shim } = await probe(
      [
        { kind: 'net.connect', host: '127.0.0.1', port: target.port },
        { kind: 'sleep', ms: 2500 },
        { kind: 'net.connect', host: '127.0.0.1', port: target.port },
        { kind: 'net.connect', host: '127.0.0.1', port: other.port },
      ],
      fx.env({ BULKHEAD_BUNDLE_FILE: path }),
    );
    expect(results).toEqual(['ok', 'slept', 'ok', DENIED]);
    expect(shim).toMatchObject({ revision: 4 });
  });
});

describe('fail modes and observe', { timeout: 120_000 }, () => {
  it('fails closed without a valid bundle, but never blocks the exempt endpoints', async () => {
    const exempt = await countingTcpServer();
    try {
      const env = fx.env({
        BULKHEAD_BUNDLE_FILE: join(fx.dir, 'missing.json'),
        AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${exempt.port}`,
      });
      const { results, shim } = await probe(
        [
          { kind: 'net.connect', host: '127.0.0.1', port: target.port },
          { kind: 'net.connect', host: '127.0.0.1', port: exempt.port },
          { kind: 'dns.lookup', name: 'localhost' },
        ],
        env,
      );
      expect(results).toEqual([DENIED, 'ok', DENIED]);
      expect(shim).toMatchObject({ revision: -1, failing: true, failMode: 'closed' });
      expect(exempt.bytes()).toBe(5);
    } finally {
      await exempt.close();
    }
  });

  it('BULKHEAD_FAIL_MODE=observe lets traffic through and records would-deny', async () => {
    const before = target.bytes();
    const env = fx.env({ BULKHEAD_BUNDLE_FILE: join(fx.dir, 'missing.json'), BULKHEAD_FAIL_MODE: 'observe' });
    const { results } = await probe([{ kind: 'net.connect', host: '127.0.0.1', port: target.port }], env);
    expect(results).toEqual(['ok']);
    expect(target.bytes()).toBe(before + 5);
  });

  it('an observe-mode policy proceeds and writes would-deny records', async () => {
    const observe = makeFixture({ mode: 'observe', allow: ['{ to: { host: localhost, port: 1 } }'] });
    try {
      const before = target.bytes();
      const { results } = await probe(
        [{ kind: 'net.connect', host: '127.0.0.1', port: target.port }],
        observe.env(),
      );
      expect(results).toEqual(['ok']);
      expect(target.bytes()).toBe(before + 5);
      const records = spoolRecords(observe);
      expect(records[0]).toMatchObject({
        decision: 'deny',
        mode: 'observe',
        kind: 'connect',
        rule: 'default-deny',
      });
    } finally {
      observe.cleanup();
    }
  });
});

describe('loading', { timeout: 120_000 }, () => {
  for (const via of ['import', 'NODE_OPTIONS'] as const) {
    it(`enforces when loaded with ${via === 'import' ? '--import register.mjs' : 'NODE_OPTIONS=--require'}`, async () => {
      const { results } = await probe(
        [
          { kind: 'net.connect', host: '127.0.0.1', port: target.port },
          { kind: 'net.connect', host: '127.0.0.1', port: other.port },
        ],
        fx.env(),
        via,
      );
      expect(results).toEqual([DENIED, 'ok']);
    });
  }

  it('an ESM application importing the shim API shares the preload installation', async () => {
    const code = `import { status, install } from ${JSON.stringify(join(ROOT, 'dist/shim.mjs'))}; const before = status(); install(); console.log(JSON.stringify({ same: before.installed && status().revision === before.revision, revision: status().revision }));`;
    const run = await runNode('', fx.env(), { args: ['--input-type=module', '-e', code] });
    expect(run.json).toEqual({ same: true, revision: 1 });
  });
});

describe('programmatic API', { timeout: 120_000 }, () => {
  let sink: Server;
  let sinkPort = 0;
  const posts: { auth: string | undefined; body: { records: Record<string, unknown>[] } }[] = [];

  beforeAll(async () => {
    sink = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        posts.push({ auth: req.headers.authorization, body: JSON.parse(body) });
        res.writeHead(202, { 'content-type': 'application/json' });
        res.end('{"stored":1,"duplicate":0,"rejected":0}');
      });
    });
    await new Promise<void>((done) => sink.listen(0, '127.0.0.1', done));
    sinkPort = (sink.address() as { port: number }).port;
  });

  afterAll(async () => {
    await new Promise((done) => sink.close(done));
  });

  it('tags records with the invocation id and delivers them by POST with the bearer token', async () => {
    const code = `(async () => {
      const shim = require(${JSON.stringify(SHIM_CJS)});
      const attempt = () => new Promise((r) => require('net').connect(${target.port}, '127.0.0.1').on('error', r));
      await shim.runInInvocation('req-123', async () => { await new Promise((r) => setTimeout(r, 5)); await attempt(); });
      shim.setInvocationId('req-456');
      await attempt();
      const flushed = await shim.flush();
      return JSON.stringify({ flushed, coverage: shim.coverage() });
    })()`;
    const env = fx.env({
      BULKHEAD_REPORT: `http://127.0.0.1:${sinkPort}/v1/reports`,
      BULKHEAD_TOKEN: 'secret-token',
    });
    const { results } = await probe([{ kind: 'eval', code }], env);
    const out = JSON.parse(results[0] as string);
    expect(out.flushed.delivered).toBeGreaterThanOrEqual(2);
    const hooks = out.coverage.hooks as Record<string, boolean>;
    for (const name of [
      'tcp',
      'tlsSni',
      'dnsLookup',
      'dnsQuery',
      'udp',
      'childProcess',
      'spawnSync',
      'dlopen',
      'workerThreads',
      'http',
      'http2',
      'undici',
      'errorCode',
    ])
      expect(hooks[name], name).toBe(true);
    expect(out.coverage.notGoverned.length).toBeGreaterThan(0);
    const records = posts.flatMap((p) => p.body.records);
    expect(posts.every((p) => p.auth === 'Bearer secret-token')).toBe(true);
    const ids = records
      .filter((r) => (r.destination as { port: number }).port === target.port)
      .map((r) => r.invocationId);
    expect(ids).toContain('req-123');
    expect(ids).toContain('req-456');
  });
});

describe('tamper resistance', { timeout: 120_000 }, () => {
  it('restoring prototypes, re-requiring and clearing the cache leave enforcement in place and are reported', async () => {
    const code = `(async () => {
      const tcp = process.binding('tcp_wrap').TCP.prototype;
      const saved = tcp.connect;
      tcp.connect = function () { return 0; };
      try { Object.defineProperty(tcp, 'connect', { value: () => 0 }); } catch {}
      for (const key of Object.keys(require.cache)) delete require.cache[key];
      require(${JSON.stringify(join(ROOT, 'dist/register.cjs'))});
      const net = require('net');
      const result = await new Promise((r) => net.connect(${target.port}, '127.0.0.1').on('error', (e) => r(e.code)).on('connect', () => r('connected')));
      return JSON.stringify({ result, same: tcp.connect === saved });
    })()`;
    const { results } = await probe([{ kind: 'eval', code }], fx.env());
    expect(JSON.parse(results[0] as string)).toEqual({ result: DENIED, same: true });
    const tampers = spoolRecords(fx).filter((r) => r.kind === 'tamper');
    expect(tampers[0]).toMatchObject({ severity: 'high', decision: 'deny' });
  });
});
