// What a correct program does must not change under the shim: the override pattern on builtins and
// on hooked prototypes (memoizers, mocks, npm itself), and child-process instrumentation of the kind
// nyc's process-on-spawn and APM agents install. Tampering with a network binding is still refused.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type CountingServer,
  countingTcpServer,
  evalAttempt,
  type Fixture,
  killAll,
  makeFixture,
  probe,
  ROOT,
  spoolRecords,
} from './harness.js';

let allowed: CountingServer;
let denied: CountingServer;
let fx: Fixture;

beforeAll(async () => {
  allowed = await countingTcpServer();
  denied = await countingTcpServer();
  fx = makeFixture({
    allow: [`{ to: { cidr: 127.0.0.1/32, port: ${allowed.port} } }`],
    extra: ['  exec: { allow: [echo] }'],
  });
});

// Each test reads the records its own run filed.
beforeEach(() => writeFileSync(join(fx.dir, 'spool.ndjson'), ''));

afterAll(async () => {
  killAll();
  await allowed.close();
  await denied.close();
  fx.cleanup();
});

const attempt = (code: string) => evalAttempt(code, true);

const hit = (port: () => number) =>
  `new Promise((r) => { const s = require('net').connect(${port()}, '127.0.0.1'); s.on('connect', () => { s.end(); r('connected'); }); s.on('error', (e) => r(String(e.code))); })`;

function tamperRecords(): Record<string, unknown>[] {
  return spoolRecords(fx).filter((r) => r.kind === 'tamper');
}

describe('the override pattern', () => {
  it('an instance may shadow any builtin method the decision path uses, in strict code', async () => {
    const code = `
      const m = new Map(); const calls = [];
      m.set = function (k, v) { calls.push('set'); return Map.prototype.set.call(this, k, v); };
      m.get = function (k) { calls.push('get'); return Map.prototype.get.call(this, k); };
      m.has = () => true;
      m.set('a', 1); m.get('a');
      const s = new Set(); s.add = function (v) { calls.push('add'); return Set.prototype.add.call(this, v); }; s.add(1);
      const wm = new WeakMap(); wm.get = () => 'mine';
      const memo = Object.create(String.prototype); memo.slice = () => 'sliced';
      const socket = new (require('net').Socket)(); socket.connect = function () { return 'mocked'; };
      const req = Object.create(require('http').ClientRequest.prototype); req.onSocket = () => 'mine';
      return [calls.join(','), m.has('zz'), s.has(1), wm.get({}), memo.slice(), socket.connect(), req.onSocket(), await ${hit(() => allowed.port)}].join('|');`;
    const { results } = await probe([attempt(code), attempt(`return ${hit(() => denied.port)};`)], fx.env());
    expect(results[0]).toBe('set,get,add|true|true|mine|sliced|mocked|mine|connected');
    expect(results[1]).toBe('ERR_BULKHEAD_DENIED');
    expect(tamperRecords()).toEqual([]);
    expect(denied.connections()).toBe(0);
  });

  it('replacing a builtin on its prototype makes every decision refuse, and is reported', async () => {
    const code = `Map.prototype.get = function () { return { has: () => true }; }; return ${hit(() => allowed.port)};`;
    const { results } = await probe([attempt(code), attempt(`return ${hit(() => denied.port)};`)], fx.env());
    expect(results).toEqual(['ERR_BULKHEAD_DENIED', 'ERR_BULKHEAD_DENIED']);
    expect(denied.connections()).toBe(0);
    expect(tamperRecords().length).toBeGreaterThan(0);
  });
});

describe('child-process instrumentation', () => {
  // What process-on-spawn and spawn-wrap do (nyc, APM agents): wrap the spawn binding and
  // ChildProcess#spawn, edit the child's environment, call what was there before.
  const instrument = `
    const cp = require('child_process');
    const binding = process.binding('spawn_sync');
    const wrap = (fn) => function (options) {
      options.envPairs = options.envPairs.filter((p) => !p.startsWith('NODE_OPTIONS=')).concat('INSTRUMENTED=yes');
      return fn.call(this, options);
    };
    binding.spawn = wrap(binding.spawn);
    cp.ChildProcess.prototype.spawn = wrap(cp.ChildProcess.prototype.spawn);`;
  const childCode = (port: () => number) =>
    `process.stdout.write(process.env.INSTRUMENTED + ':'); require('net').connect(${port()}, '127.0.0.1').on('connect', () => process.stdout.write('connected')).on('error', (e) => process.stdout.write(e.code))`;

  it('a wrapper above the spawn functions runs, and the policy still decides every child', async () => {
    const code = `${instrument}
      const sync = cp.spawnSync(process.execPath, ['-e', ${JSON.stringify(childCode(() => denied.port))}], { encoding: 'utf8' }).stdout;
      const async = await new Promise((r) => { let out = ''; const c = cp.spawn(process.execPath, ['-e', ${JSON.stringify(childCode(() => denied.port))}]); c.stdout.on('data', (d) => { out += d; }); c.on('close', () => r(out)); });
      const echo = cp.execFileSync('echo', ['hi'], { encoding: 'utf8' }).trim();
      let cat; try { cp.execFileSync('cat', ['/dev/null']); cat = 'ran'; } catch (e) { cat = e.code; }
      return [sync, async, echo, cat].join('|');`;
    const { results } = await probe([attempt(code)], fx.env());
    expect(results[0]).toBe('yes:ERR_BULKHEAD_DENIED|yes:ERR_BULKHEAD_DENIED|hi|ERR_BULKHEAD_DENIED');
    expect(denied.connections()).toBe(0);
    expect(tamperRecords()).toEqual([]);
  });

  it('the real process-on-spawn (nyc) works under the shim', async () => {
    const module = JSON.stringify(join(ROOT, 'node_modules/process-on-spawn'));
    const code = `
      const onSpawn = require(${module});
      onSpawn.addListener((opts) => { opts.env.INSTRUMENTED = 'nyc'; });
      const cp = require('child_process');
      const out = cp.spawnSync(process.execPath, ['-e', ${JSON.stringify(childCode(() => denied.port))}], { encoding: 'utf8' }).stdout;
      return out;`;
    const { results } = await probe([attempt(code)], fx.env());
    expect(results[0]).toBe('nyc:ERR_BULKHEAD_DENIED');
    expect(tamperRecords()).toEqual([]);
  });

  it('assigning over a network binding hook is still ignored and reported', async () => {
    const code = `const p = process.binding('tcp_wrap').TCP.prototype; p.connect = function () { return 0; }; return ${hit(() => denied.port)};`;
    const { results } = await probe([attempt(code)], fx.env());
    expect(results[0]).toBe('ERR_BULKHEAD_DENIED');
    expect(tamperRecords().map((r) => (r.destination as { command?: string }).command)).toContain(
      'assignment to TCP.prototype.connect',
    );
  });
});
