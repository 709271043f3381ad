// child_process, worker_threads and native addons: Node children and workers keep enforcement
// whatever the caller strips; other executables and addons run only when the policy lists them.
import { copyFileSync, symlinkSync } from 'node:fs';
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
} from './harness.js';

const DENIED = 'ERR_BULKHEAD_DENIED';
const CHILD = join(ROOT, 'test/shim/fixtures/child-connect.cjs');
let denied: CountingServer;
let fx: Fixture;

beforeAll(async () => {
  denied = await countingTcpServer();
  fx = makeFixture({ allow: ['{ to: { host: localhost, port: 1 } }'], extra: ['  exec: { allow: [echo] }'] });
});

afterAll(async () => {
  killAll();
  await denied.close();
  fx.cleanup();
});

describe('child processes', { timeout: 120_000 }, () => {
  it('Node children stay enforced with NODE_OPTIONS, execArgv and the environment stripped', async () => {
    const connect = `require('net').connect(${denied.port}, '127.0.0.1').on('error', (e) => process.stdout.write(String(e.code))).on('connect', () => process.stdout.write('connected'))`;
    const linkDir = fx.dir;
    symlinkSync(process.execPath, join(linkDir, 'python3'));
    const attempts = [
      { kind: 'spawn', file: process.execPath, args: ['-e', connect], env: {} },
      { kind: 'spawn', file: 'node', args: ['-e', connect], env: { PATH: process.env.PATH } },
      { kind: 'spawnSync', file: process.execPath, args: ['-e', connect], env: {} },
      { kind: 'fork', module: CHILD, args: [String(denied.port)], env: {}, execArgv: [] },
      {
        kind: 'spawn',
        file: process.execPath,
        args: ['-e', connect],
        env: { BULKHEAD_FAIL_MODE: 'observe', BULKHEAD_BUNDLE_FILE: '/nonexistent', NODE_OPTIONS: '' },
      },
      { kind: 'spawn', file: join(linkDir, 'python3'), args: ['-e', connect], env: {} },
    ];
    const { results } = await probe(attempts, fx.env());
    for (const [i, r] of results.entries()) expect(r, `attempt ${i}`).toBe(`exit:0:${DENIED}`);
    expect(denied.connections()).toBe(0);
  });

  it('denies executables the policy does not list, through spawn, exec, execSync and spawnSync', async () => {
    const copy = join(fx.dir, 'not-node');
    copyFileSync(process.execPath, copy);
    const attempts = [
      { kind: 'spawn', file: 'echo', args: ['hi'], env: { PATH: process.env.PATH } },
      { kind: 'spawn', file: 'cat', args: ['/etc/hostname'], env: { PATH: process.env.PATH } },
      { kind: 'spawnSync', file: 'cat', args: ['/etc/hostname'] },
      { kind: 'execSync', command: 'echo hi' },
      { kind: 'exec', command: 'echo hi' },
      { kind: 'spawn', file: copy, args: ['-e', '1'], env: {} },
      { kind: 'spawn', file: '/bin/sh', args: ['-c', 'echo hi'] },
    ];
    const { results } = await probe(attempts, fx.env());
    expect(results[0]).toBe('exit:0:hi');
    expect(results.slice(1)).toEqual(new Array(6).fill(DENIED));
  });
});

describe('worker threads', { timeout: 120_000 }, () => {
  it('every worker is enforced whatever execArgv, env or eval the caller passes', async () => {
    const code = `const { parentPort } = require('worker_threads'); require('net').connect(${denied.port}, '127.0.0.1').on('error', (e) => parentPort.postMessage(String(e.code))).on('connect', () => parentPort.postMessage('connected'))`;
    const attempts = [
      { kind: 'worker', code },
      { kind: 'worker', code, execArgv: [] },
      { kind: 'worker', code, execArgv: [], env: {} },
      {
        kind: 'worker',
        code,
        execArgv: ['--no-warnings'],
        env: { BULKHEAD_FAIL_MODE: 'observe', BULKHEAD_TRUSTED_KEYS: '' },
      },
      {
        kind: 'eval',
        code: `new Promise((resolve) => { const wt = require('worker_threads'); const w = new wt.Worker(${JSON.stringify(code)}, { eval: true, execArgv: [], env: wt.SHARE_ENV }); w.on('message', resolve); w.on('error', (e) => resolve('error:' + e.code)); })`,
      },
    ];
    const { results } = await probe(attempts, fx.env());
    expect(results.slice(0, 4)).toEqual(new Array(4).fill(`message:${DENIED}`));
    expect(results[4]).toBe(DENIED);
    expect(denied.connections()).toBe(0);
  });
});

describe('native addons', { timeout: 120_000 }, () => {
  const loadAddon = `(() => { try { const Database = require(${JSON.stringify(join(ROOT, 'node_modules/better-sqlite3'))}); new Database(':memory:').close(); return 'loaded'; } catch (e) { return e.code; } })()`;

  it('process.dlopen of an addon the policy does not list is denied', async () => {
    const { results } = await probe([{ kind: 'eval', code: loadAddon }], fx.env());
    expect(results[0]).toBe(DENIED);
  });

  it("on Lambda, the runtime's own native client (under LAMBDA_RUNTIME_DIR) is exempt; nothing else is", async () => {
    const runtimeDir = join(ROOT, 'node_modules/better-sqlite3/build');
    const env = fx.env({ AWS_LAMBDA_RUNTIME_API: '127.0.0.1:9', LAMBDA_RUNTIME_DIR: runtimeDir });
    const { results } = await probe([{ kind: 'eval', code: loadAddon }], env);
    expect(results[0]).toBe('loaded');
    const elsewhere = fx.env({
      AWS_LAMBDA_RUNTIME_API: '127.0.0.1:9',
      LAMBDA_RUNTIME_DIR: join(ROOT, 'dist'),
    });
    expect((await probe([{ kind: 'eval', code: loadAddon }], elsewhere)).results[0]).toBe(DENIED);
  });

  it('a listed addon loads', async () => {
    const listed = makeFixture({
      allow: ['{ to: { host: localhost, port: 1 } }'],
      extra: ['  addons: { allow: ["**/better_sqlite3.node"] }'],
    });
    try {
      const { results } = await probe([{ kind: 'eval', code: loadAddon }], listed.env());
      expect(results[0]).toBe('loaded');
    } finally {
      listed.cleanup();
    }
  });
});
