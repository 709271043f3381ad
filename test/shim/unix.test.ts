// Unix-domain sockets through every Node route: net (options, string, Socket#connect), http's
// socketPath, undici's connect.socketPath, abstract names and the pipe binding itself. Real
// servers on real socket files and abstract names; denied connects never reach them.
import { mkdirSync, symlinkSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evalAttempt, type Fixture, killAll, makeFixture, probe, ROOT, spoolRecords } from './harness.js';

interface UnixServer {
  path: string;
  connections(): number;
  close(): Promise<void>;
}

/** A server on a socket path or an abstract name ("\0name") that answers "ok" and counts connections. */
async function unixServer(path: string): Promise<UnixServer> {
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections++;
    socket.on('data', () => socket.write('ok'));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((done) => server.listen(path, done));
  return {
    path,
    connections: () => connections,
    close: () => new Promise((done) => server.close(() => done())),
  };
}

async function unixHttpServer(path: string): Promise<{ requests(): number; close(): Promise<void> }> {
  let requests = 0;
  const server: HttpServer = createHttpServer((req, res) => {
    requests++;
    req.resume();
    res.end('hello');
  });
  await new Promise<void>((done) => server.listen(path, done));
  return {
    requests: () => requests,
    close: () =>
      new Promise((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

const UNDICI = join(ROOT, 'node_modules/undici/index.js');
const tag = `${process.pid}-${Date.now().toString(36)}`;
let fx: Fixture;
let observeFx: Fixture;
let dir: string;
let allowed: UnixServer;
let denied: UnixServer;
let allowedAbstract: UnixServer;
let deniedAbstract: UnixServer;
let allowedHttp: Awaited<ReturnType<typeof unixHttpServer>>;
let deniedHttp: Awaited<ReturnType<typeof unixHttpServer>>;

beforeAll(async () => {
  fx = makeFixture({ allow: [] });
  dir = join(fx.dir, 'run');
  mkdirSync(join(dir, 'ok'), { recursive: true });
  allowed = await unixServer(join(dir, 'ok', 'app.sock'));
  denied = await unixServer(join(dir, 'secret.sock'));
  allowedAbstract = await unixServer(`\0bh-ok-${tag}`);
  deniedAbstract = await unixServer(`\0bh-no-${tag}`);
  allowedHttp = await unixHttpServer(join(dir, 'ok', 'http.sock'));
  deniedHttp = await unixHttpServer(join(dir, 'docker.sock'));
  // A link in the allowed folder that leads to the denied socket.
  symlinkSync(denied.path, join(dir, 'ok', 'link.sock'));
  const policy = {
    allow: [`{ to: { unix: "${dir}/ok/**" } }`, `{ to: { unix: "@bh-ok-*" } }`],
    deny: [`{ to: { unix: "${dir}/docker.sock" } }`],
  };
  fx.write(policy, 2);
  observeFx = makeFixture({ ...policy, mode: 'observe' });
});

afterAll(async () => {
  killAll();
  await Promise.all(
    [allowed, denied, allowedAbstract, deniedAbstract, allowedHttp, deniedHttp].map((s) => s.close()),
  );
  fx.cleanup();
  observeFx.cleanup();
});

const NET_ROUTES = ['unix.net', 'unix.createConnection', 'unix.socket.connect'];

describe('Unix-domain sockets under an enforce policy', { timeout: 120_000 }, () => {
  it('allows the allowed socket and denies the others through net and the pipe binding', async () => {
    const attempts = [
      ...NET_ROUTES.map((kind) => ({ kind, path: allowed.path })),
      { kind: 'binding.pipe', path: allowed.path },
      ...NET_ROUTES.map((kind) => ({ kind, path: denied.path })),
      { kind: 'binding.pipe', path: denied.path },
    ];
    const before = denied.connections();
    const { results } = await probe(attempts, fx.env());
    expect(results).toEqual([
      'ok',
      'ok',
      'ok',
      'ok',
      'ERR_BULKHEAD_DENIED',
      'ERR_BULKHEAD_DENIED',
      'ERR_BULKHEAD_DENIED',
      // The binding used directly gets the denial as its own error number.
      'errno:-4242',
    ]);
    expect(denied.connections()).toBe(before);
    const records = spoolRecords(fx).filter((r) => r.kind === 'unix');
    expect(records.length).toBeGreaterThan(0);
    const record = records[0] as { destination: unknown; origin?: { file?: string } };
    expect(record.destination).toEqual({ socket: denied.path });
    expect(record).toMatchObject({ decision: 'deny', mode: 'enforce', rule: 'default-deny' });
    // The record names the application frame that connected (the probe script), not the shim.
    expect(record.origin?.file).toMatch(/probe\.cjs$/);
  });

  it('decides abstract names by their name, never as paths', async () => {
    const before = deniedAbstract.connections();
    const { results } = await probe(
      [
        { kind: 'unix.net', path: allowedAbstract.path },
        { kind: 'binding.pipe', path: allowedAbstract.path },
        { kind: 'unix.net', path: deniedAbstract.path },
        { kind: 'binding.pipe', path: deniedAbstract.path },
      ],
      fx.env(),
    );
    expect(results).toEqual(['ok', 'ok', 'ERR_BULKHEAD_DENIED', 'errno:-4242']);
    expect(deniedAbstract.connections()).toBe(before);
    const sockets = spoolRecords(fx)
      .filter((r) => r.kind === 'unix')
      .map((r) => (r.destination as { socket: string }).socket);
    expect(sockets).toContain(`@bh-no-${tag}`);
  });

  it('decides HTTP over a socket (http socketPath, undici connect.socketPath) at the connect', async () => {
    const before = deniedHttp.requests();
    const { results } = await probe(
      [
        { kind: 'unix.http', path: join(dir, 'ok', 'http.sock') },
        { kind: 'unix.undici', path: join(dir, 'ok', 'http.sock'), undiciPath: UNDICI },
        { kind: 'unix.http', path: join(dir, 'docker.sock'), urlPath: '/containers/json' },
        { kind: 'unix.undici', path: join(dir, 'docker.sock'), undiciPath: UNDICI },
      ],
      fx.env(),
    );
    expect(results).toEqual(['ok:200', 'ok:200', 'ERR_BULKHEAD_DENIED', 'ERR_BULKHEAD_DENIED']);
    expect(deniedHttp.requests()).toBe(before);
    const docker = spoolRecords(fx).find(
      (r) => (r.destination as { socket?: string }).socket === join(dir, 'docker.sock'),
    );
    // The explicit deny rule decides (an enforcing deny, not only the default).
    expect(docker).toMatchObject({ kind: 'unix', rule: 'shim/deny[0]' });
  });

  it('follows links out of an allowed folder and resolves relative paths and ".." first', async () => {
    const before = denied.connections();
    const { results } = await probe(
      [
        { kind: 'unix.net', path: join(dir, 'ok', 'link.sock') },
        { kind: 'binding.pipe', path: join(dir, 'ok', 'link.sock') },
        // `..` climbs out of the allowed folder: decided as the path it names.
        { kind: 'unix.net', path: `${dir}/ok/../secret.sock` },
        { kind: 'unix.net', path: 'ok/app.sock', cwd: dir },
        { kind: 'unix.net', path: 'secret.sock', cwd: dir },
      ],
      fx.env(),
    );
    expect(results).toEqual([
      'ERR_BULKHEAD_DENIED',
      'errno:-4242',
      'ERR_BULKHEAD_DENIED',
      'ok',
      'ERR_BULKHEAD_DENIED',
    ]);
    expect(denied.connections()).toBe(before);
    const sockets = spoolRecords(fx)
      .filter((r) => r.kind === 'unix')
      .map((r) => (r.destination as { socket: string }).socket);
    // The link is recorded as where it leads (the path that refused).
    expect(sockets).toContain(denied.path);
    expect(sockets).not.toContain(join(dir, 'ok', 'link.sock'));
  });

  it('refuses unreadable addresses (a NUL byte inside a path)', async () => {
    const { results } = await probe([{ kind: 'binding.pipe', path: `${allowed.path}\0x` }], fx.env());
    expect(results).toEqual(['errno:-4242']);
  });

  it('reports the pipe binding hook live in coverage', async () => {
    const run = await probe(
      [evalAttempt('return require(process.env.PROBE_SHIM_API).coverage().hooks.unix;')],
      fx.env(),
    );
    expect(run.results).toEqual(['true']);
  });
});

describe('Unix-domain sockets under an observe policy', { timeout: 60_000 }, () => {
  it('lets every connect through and records the would-deny with the socket', async () => {
    const before = denied.connections();
    const { results } = await probe(
      [
        { kind: 'unix.net', path: denied.path },
        { kind: 'unix.net', path: deniedAbstract.path },
        { kind: 'unix.http', path: join(dir, 'docker.sock') },
      ],
      observeFx.env(),
    );
    expect(results).toEqual(['ok', 'ok', 'ok:200']);
    expect(denied.connections()).toBe(before + 1);
    const records = spoolRecords(observeFx).filter((r) => r.kind === 'unix');
    expect(records.map((r) => (r.destination as { socket: string }).socket).sort()).toEqual(
      [`@bh-no-${tag}`, denied.path, join(dir, 'docker.sock')].sort(),
    );
    for (const record of records) expect(record).toMatchObject({ decision: 'deny', mode: 'observe' });
  });
});
