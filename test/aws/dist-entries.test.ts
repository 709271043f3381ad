// The published entries (dist/aws.*, dist/middy.*) in fresh Node processes with the real shim core:
// ESM and CommonJS, with and without the preload, a real denied connection on loopback, and the
// deny record in the spool tagged with the invocation's request id. Needs `npm run build`.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
let work: string;
let server: Server;
let port = 0;
let connections = 0;

beforeAll(async () => {
  for (const file of ['aws.mjs', 'aws.cjs', 'middy.mjs', 'register.cjs'])
    if (!existsSync(join(root, 'dist', file)))
      throw new Error(`dist/${file} is missing: run \`npm run build\` first`);
  work = mkdtempSync(join(tmpdir(), 'bulkhead-dist-'));
  server = createServer((socket) => {
    connections++;
    socket.end('reached');
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  await new Promise<void>((done) => server.close(() => done()));
  rmSync(work, { recursive: true, force: true });
});

const CONNECT = `
  function connect(port) {
    return new Promise((done) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('data', () => { done('reached'); socket.destroy(); });
      socket.on('error', (error) => done(error.code));
    });
  }`;

function run(name: string, source: string, nodeArgs: string[] = []) {
  const file = join(work, name);
  writeFileSync(file, source);
  const spool = join(work, `${name}.spool.ndjson`);
  const result = spawnSync(process.execPath, [...nodeArgs, file], {
    cwd: root,
    encoding: 'utf8',
    timeout: 20_000,
    env: {
      PATH: process.env.PATH,
      BULKHEAD_FAIL_MODE: 'closed',
      BULKHEAD_REPORT: spool,
      BULKHEAD_WORKLOAD: 'cloud=aws,name=dist-test',
      TARGET_PORT: String(port),
    },
  });
  const records = existsSync(spool)
    ? readFileSync(spool, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { invocationId?: string; destination: { port?: number } })
    : [];
  return { ...result, records, output: JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}') };
}

describe('dist entries with the real shim core', () => {
  it('bulkhead/aws (ESM): installs, denies, tags and flushes before resolving', () => {
    const before = connections;
    const { output, records, status, stderr } = run(
      'aws-esm.mjs',
      `import net from 'node:net';
       import { withBulkhead } from '${join(root, 'dist/aws.mjs')}';
       ${CONNECT}
       const handler = withBulkhead(async () => ({ outcome: await connect(Number(process.env.TARGET_PORT)) }));
       const result = await handler({}, { awsRequestId: 'req-esm-1', getRemainingTimeInMillis: () => 10000 });
       console.log(JSON.stringify(result));`,
    );
    expect(status, stderr).toBe(0);
    expect(output).toEqual({ outcome: 'ERR_BULKHEAD_DENIED' });
    expect(connections).toBe(before);
    expect(records.filter((r) => r.invocationId === 'req-esm-1' && r.destination.port === port)).toHaveLength(
      1,
    );
  });

  it('bulkhead/aws (CommonJS) with the preload: one shared installation, still tagged', () => {
    const { output, records, status, stderr } = run(
      'aws-cjs.cjs',
      `const net = require('node:net');
       const { withBulkhead } = require('${join(root, 'dist/aws.cjs')}');
       ${CONNECT}
       const instances = Object.getOwnPropertySymbols(globalThis).filter((s) => String(s).includes('bulkhead.shim'));
       const handler = withBulkhead(async () => ({ outcome: await connect(Number(process.env.TARGET_PORT)), instances: instances.length }));
       handler({}, { awsRequestId: 'req-cjs-1' }).then((r) => console.log(JSON.stringify(r)));`,
      ['--require', join(root, 'dist/register.cjs')],
    );
    expect(status, stderr).toBe(0);
    expect(output).toEqual({ outcome: 'ERR_BULKHEAD_DENIED', instances: 1 });
    expect(stderr.match(/bulkhead: installed/g) ?? []).toHaveLength(1);
    expect(records.some((r) => r.invocationId === 'req-cjs-1')).toBe(true);
  });

  it('bulkhead/middy with @middy/core 6: denied connection recorded with the request id, flushed in after', () => {
    const middyCore = join(root, 'node_modules/@middy/core/index.js');
    const { output, records, status, stderr } = run(
      'middy.mjs',
      `import net from 'node:net';
       import middy from '${middyCore}';
       import { bulkheadMiddleware } from '${join(root, 'dist/middy.mjs')}';
       ${CONNECT}
       const handler = middy()
         .use(bulkheadMiddleware())
         .handler(async () => ({ outcome: await connect(Number(process.env.TARGET_PORT)) }));
       const result = await handler({}, { awsRequestId: 'req-middy-1', getRemainingTimeInMillis: () => 10000 });
       console.log(JSON.stringify(result));`,
    );
    expect(status, stderr).toBe(0);
    expect(output).toEqual({ outcome: 'ERR_BULKHEAD_DENIED' });
    expect(records.some((r) => r.invocationId === 'req-middy-1' && r.destination.port === port)).toBe(true);
  });
});
