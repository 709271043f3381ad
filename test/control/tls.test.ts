// `control serve` on the network: loopback unless --host, HTTPS with --tls-cert/--tls-key (a private
// CA made with openssl here), and every Node client trusting that CA through NODE_EXTRA_CA_CERTS:
// the CLI, the bundle client (bundle fetch) and the report sink (postJson). Real child processes
// (dist/cli.mjs); `bulkhead keys public` against the same server.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLoopbackHost } from '../../cli/commands/control.js';
import { ConnectionGuard } from '../../control/connection-guard.js';
import { CLI, runCli } from './clients.js';
import { cliUnavailableReason } from './replica-process.js';

const ROOT = join(import.meta.dirname, '../..');
const PAYMENTS_V1 = readFileSync(join(ROOT, 'examples/policy/demo/payments-v1.yaml'), 'utf8');
const WORKLOAD = 'cloud=gcp,name=charge-card,account=demo-project,tag.app=payments';

function opensslUnavailableReason(): string | undefined {
  return spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0
    ? undefined
    : 'needs the openssl command to make a test CA';
}
const SKIP_REASON = cliUnavailableReason() ?? opensslUnavailableReason();

function openssl(args: string[], cwd: string): void {
  const run = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${run.stderr}`);
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A throwaway CA (ca.pem), with the key usages strict verifiers (Python 3.13) insist on. */
function makeCa(dir: string): { ca: string } {
  const extensions = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'];
  openssl(
    [
      ...[
        'req',
        '-x509',
        ...EC,
        '-keyout',
        'ca.key',
        '-out',
        'ca.pem',
        '-days',
        '2',
        '-subj',
        '/CN=Bulkhead test CA',
      ],
      ...extensions.flatMap((extension) => ['-addext', extension]),
    ],
    dir,
  );
  return { ca: join(dir, 'ca.pem') };
}

/** A server certificate (CN `name`) from the CA in `dir` for localhost and 127.0.0.1: `${name}.pem`, `${name}.key` (0600). */
function issue(dir: string, name: string): { cert: string; key: string } {
  openssl(['req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
  writeFileSync(
    join(dir, `${name}.ext`),
    [
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      'subjectKeyIdentifier=hash',
      'authorityKeyIdentifier=keyid',
      '',
    ].join('\n'),
  );
  openssl(
    [
      ...['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial'],
      ...['-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`],
    ],
    dir,
  );
  chmodSync(join(dir, `${name}.key`), 0o600);
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

interface Served {
  child: ChildProcess;
  url: string;
  port: number;
  output(): string;
  stop(): Promise<void>;
}

const running: Served[] = [];

/** `bulkhead control serve ARGS --port 0`, once it logged where it listens. */
function serve(args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [CLI, 'control', 'serve', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BULKHEAD_LOG_LEVEL: 'info' },
  });
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const match = /"url":"(https?:\/\/[^"]+:(\d+))"/.exec(output);
      if (match?.[1] && match[2]) {
        const served: Served = {
          child,
          url: match[1],
          port: Number(match[2]),
          output: () => output,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            await exited;
          },
        };
        running.push(served);
        resolve(served);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`control serve exited ${code}: ${output}`)));
  });
}

/** Does anything accept a TCP connection at host:port? */
function accepts(host: string, port: number): Promise<boolean | string> {
  return new Promise((resolve) => {
    const socket = netConnect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

describe('isLoopbackHost', () => {
  it('knows loopback addresses from the rest', () => {
    for (const host of ['127.0.0.1', '127.0.0.2', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1'])
      expect(isLoopbackHost(host), host).toBe(true);
    for (const host of ['0.0.0.0', '::', '10.0.0.5', 'api.example.com', '128.0.0.1'])
      expect(isLoopbackHost(host), host).toBe(false);
  });
});

describe.skipIf(SKIP_REASON !== undefined)('control serve on the network', { timeout: 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-tls-'));
  const db = join(dir, 'control.db');
  const keyFile = join(dir, 'signing.pem');
  let ca = '';
  let tls = { cert: '', key: '' };
  let server: Served;
  let admin = '';
  let workload = '';
  /** The CA, for a Node process started now. */
  let trustCa: Record<string, string> = {};

  beforeAll(async () => {
    ({ ca } = makeCa(dir));
    trustCa = { NODE_EXTRA_CA_CERTS: ca };
    tls = issue(dir, 'server');
    for (const scope of ['admin', 'workload'] as const) {
      const made = await runCli(['token', 'create', '--scope', scope, '--db', db, '--json']);
      expect(made.code, made.stderr).toBe(0);
      const token = (JSON.parse(made.stdout) as { token: string }).token;
      if (scope === 'admin') admin = token;
      else workload = token;
    }
    server = await serve(['--db', db, '--key', keyFile, '--tls-cert', tls.cert, '--tls-key', tls.key]);
  });

  afterAll(async () => {
    for (const served of running.splice(0)) await served.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('listens on 127.0.0.1 only when no --host is given, over https, without a clear-text warning', async () => {
    expect(server.url).toBe(`https://127.0.0.1:${server.port}`);
    expect(await accepts('127.0.0.1', server.port)).toBe(true);
    expect(await accepts('127.0.0.2', server.port)).toBe('ECONNREFUSED');
    expect(server.output()).toContain(`"msg":"control API listening on https://127.0.0.1:${server.port}"`);
    expect(server.output()).toMatch(/"tls":\{"subject":"CN=server","validTo":"[^"]+","fingerprint256":/);
    expect(server.output()).not.toContain('clear text');
    expect(server.output()).not.toContain('PRIVATE KEY');
  });

  it('the CLI trusts the private CA through NODE_EXTRA_CA_CERTS, and says what is missing without it', async () => {
    for (const url of [server.url, `https://localhost:${server.port}`]) {
      const run = await runCli(['workloads', '--control', url, '--token', admin], trustCa);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/current revision: 0/);
    }
    const untrusted = await runCli(['workloads', '--control', server.url, '--token', admin], {
      NODE_EXTRA_CA_CERTS: '',
    });
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE .*NODE_EXTRA_CA_CERTS=ca\.pem/);
    expect(untrusted.stderr).not.toContain(admin);
  });

  it('a plain-HTTP request to the TLS port gets no answer', async () => {
    await expect(
      fetch(`http://127.0.0.1:${server.port}/healthz`, { signal: AbortSignal.timeout(5000) }),
    ).rejects.toThrow();
    const run = await runCli(['workloads', '--control', `http://127.0.0.1:${server.port}`, '--token', admin]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/if the API serves HTTPS, use https:\/\//);
  });

  it('keys public gives the same key from the key file and from the API', async () => {
    const keyId = /"keyId":"([0-9a-f]{32})"/.exec(server.output())?.[1];
    expect(keyId).toBeDefined();
    const fromFile = await runCli(['keys', 'public', '--key', keyFile]);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    expect(fromFile.stdout).toMatch(/^-----BEGIN PUBLIC KEY-----\n[^\n]+\n-----END PUBLIC KEY-----\n$/);
    expect(fromFile.stderr.trim()).toBe(`key ${keyId}`);
    // The default file is ./bulkhead-signing.pem, as for control serve.
    copyFileSync(keyFile, join(dir, 'bulkhead-signing.pem'));
    const byDefault = await runCli(['keys', 'public', '--json'], {}, { cwd: dir });
    expect(JSON.parse(byDefault.stdout)).toEqual({ keyId, publicKey: fromFile.stdout });

    const fromApi = await runCli(['keys', 'public', '--control', server.url, '--token', workload], trustCa);
    expect(fromApi.code, fromApi.stderr).toBe(0);
    expect(fromApi.stdout).toBe(fromFile.stdout);
    const json = await runCli(['keys', 'public', '--control', server.url, '--json'], {
      ...trustCa,
      BULKHEAD_TOKEN: admin,
    });
    expect(JSON.parse(json.stdout)).toMatchObject({ keyId, publicKey: fromFile.stdout, active: true });
    const all = await runCli(['keys', 'public', '--control', server.url, '--all', '--json'], {
      ...trustCa,
      BULKHEAD_TOKEN: admin,
    });
    const listed = JSON.parse(all.stdout) as { keyId: string; active: boolean; firstUsed: string }[];
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ keyId, active: true });
    expect(Date.parse(listed[0]?.firstUsed ?? '')).not.toBeNaN();

    const untrusted = await runCli(['keys', 'public', '--control', server.url, '--token', admin], {
      NODE_EXTRA_CA_CERTS: '',
    });
    expect(untrusted.code).toBe(1);
    expect(untrusted.stdout).toBe('');
    expect((await runCli(['keys', 'public', '--key', keyFile, '--all'])).code).toBe(2);
    expect((await runCli(['keys', 'public', '--key', keyFile, '--control', server.url])).code).toBe(2);
    const missing = await runCli(['keys', 'public', '--key', join(dir, 'nope.pem')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/nope\.pem: no such file/);
    const notEd25519 = await runCli(['keys', 'public', '--key', tls.key]);
    expect(notEd25519.code).toBe(1);
    expect(notEd25519.stderr).toMatch(/expected an Ed25519 key, got ec/);
  });

  it('the Node bundle client fetches a bundle over https (bundle fetch, key pinned with keys public)', async () => {
    writeFileSync(join(dir, 'payments.yaml'), PAYMENTS_V1);
    const applied = await runCli(
      ['apply', join(dir, 'payments.yaml'), '--control', server.url, '--token', admin],
      trustCa,
    );
    expect(applied.code, applied.stderr).toBe(0);
    const pub = join(dir, 'signing.pub');
    const exported = await runCli(['keys', 'public', '--control', server.url, '--token', workload], trustCa);
    writeFileSync(pub, exported.stdout);
    const out = join(dir, 'bundle.json');
    const fetchArgs = ['bundle', 'fetch', '--out', out, '--workload', WORKLOAD, '--trusted', pub, '--json'];
    const env = { BULKHEAD_CONTROL_URL: server.url, BULKHEAD_TOKEN: workload };
    const fetched = await runCli(fetchArgs, { ...env, ...trustCa });
    expect(fetched.code, fetched.stderr).toBe(0);
    expect(JSON.parse(fetched.stdout)).toMatchObject({ outcome: 'written', revision: 1 });
    expect(JSON.parse(readFileSync(out, 'utf8')).payloadType).toBeDefined();

    const refused = await runCli(fetchArgs, { ...env, NODE_EXTRA_CA_CERTS: '' });
    expect(refused.code).toBe(1);
    expect(refused.stdout + refused.stderr).toMatch(/certificate|UNABLE_TO_VERIFY/i);
    expect(refused.stdout + refused.stderr).not.toContain(workload);
  });

  it('the report sink (postJson) posts over https', async () => {
    const driver = join(dir, 'post.mjs');
    await build({
      stdin: {
        contents: `import { postJson } from './runtime-shims/node/client/post-json.js';
const [url, token] = process.argv.slice(2);
postJson(new URL(url), JSON.stringify({ records: [] }), { 'content-type': 'application/json', authorization: 'Bearer ' + token })
  .then((status) => console.log(String(status)), (error) => console.log('error ' + (error.code ?? error.message)));`,
        resolveDir: ROOT,
        loader: 'ts',
      },
      bundle: true,
      platform: 'node',
      format: 'esm',
      outfile: driver,
      logLevel: 'silent',
    });
    const post = (env: Record<string, string>) =>
      new Promise<string>((resolve) => {
        const child = spawn(process.execPath, [driver, `${server.url}/v1/reports`, workload], {
          env: { ...process.env, ...env },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let text = '';
        child.stdout.on('data', (chunk) => {
          text += chunk;
        });
        child.on('close', () => resolve(text.trim()));
      });
    expect(await post(trustCa)).toMatch(/^20\d$/);
    expect(await post({ NODE_EXTRA_CA_CERTS: '' })).toBe('error UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  it('the connection guard counts TLS connections by their TCP socket: busy ones are not shed', async () => {
    // Limit 2: two requests in flight, then a third connection. Requests arrive on the TLSSocket the
    // server made over the TCP socket it announced; the guard must see them as one connection.
    const guard = new ConnectionGuard(2, 4);
    const https = createHttpsServer(
      { cert: readFileSync(tls.cert), key: readFileSync(tls.key) },
      (request, response) => {
        if (guard.refuses(request.socket)) {
          response.writeHead(503, { connection: 'close' }).end('overloaded');
          return;
        }
        setTimeout(() => response.end('done'), 400);
      },
    );
    guard.attach(https as unknown as Parameters<ConnectionGuard['attach']>[0]);
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
    const port = (https.address() as { port: number }).port;
    const get = () =>
      new Promise<string>((resolve) => {
        const request = httpsRequest(
          {
            host: '127.0.0.1',
            port,
            path: '/',
            ca: readFileSync(ca),
            servername: 'localhost',
            agent: new Agent(),
          },
          (response) => {
            let body = '';
            response.on('data', (chunk) => {
              body += chunk;
            });
            response.on('end', () => resolve(`${response.statusCode} ${body}`));
          },
        );
        request.on('error', (error: NodeJS.ErrnoException) =>
          resolve(`error ${error.code ?? error.message}`),
        );
        request.end();
      });
    try {
      const first = get();
      const second = get();
      await new Promise((resolve) => setTimeout(resolve, 150));
      const third = await get();
      expect(await first).toBe('200 done');
      expect(await second).toBe('200 done');
      expect(third).toBe('503 overloaded');
      expect(guard.stats()).toMatchObject({ shed: 0, refused: 1 });
    } finally {
      https.closeAllConnections();
      await new Promise((resolve) => https.close(resolve));
    }
  });

  it('SIGHUP reads the certificate and key again; a bad pair is logged and the old one kept', async () => {
    const peerName = () =>
      new Promise<string>((resolve, reject) => {
        const socket = tlsConnect(
          { host: '127.0.0.1', port: server.port, ca: readFileSync(ca), servername: 'localhost' },
          () => {
            const subject = socket.getPeerCertificate().subject as { CN?: string } | undefined;
            socket.destroy();
            resolve(subject?.CN ?? '');
          },
        );
        socket.once('error', reject);
      });
    const waitForLog = async (pattern: RegExp) => {
      const deadline = Date.now() + 5000;
      while (!pattern.test(server.output())) {
        if (Date.now() > deadline) throw new Error(`not logged: ${pattern}\n${server.output()}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    expect(await peerName()).toBe('server');
    const rotated = issue(dir, 'rotated');
    copyFileSync(rotated.cert, tls.cert);
    copyFileSync(rotated.key, tls.key);
    server.child.kill('SIGHUP');
    await waitForLog(/"msg":"SIGHUP: reloaded the TLS certificate"/);
    expect(await peerName()).toBe('rotated');

    chmodSync(tls.key, 0o644);
    server.child.kill('SIGHUP');
    await waitForLog(/mode 644 lets others read it.*still serving the previous one/);
    chmodSync(tls.key, 0o600);
    expect(server.child.exitCode).toBeNull();
    expect(await peerName()).toBe('rotated');
  });

  it('--host 127.0.0.2 listens there and only there', async () => {
    const other = await serve(['--db', join(dir, 'other.db'), '--key', keyFile, '--host', '127.0.0.2']);
    expect(other.url).toBe(`http://127.0.0.2:${other.port}`);
    expect((await fetch(`${other.url}/healthz`)).status).toBe(200);
    expect(await accepts('127.0.0.1', other.port)).toBe('ECONNREFUSED');
    // Loopback: no warning.
    expect(other.output()).not.toContain('clear text');
    await other.stop();
  });

  it('warns about clear-text tokens on a non-loopback address without TLS, not with it', async () => {
    const plain = await serve(['--db', join(dir, 'other.db'), '--key', keyFile, '--host', '0.0.0.0']);
    expect(plain.output()).toMatch(
      /"level":40,.*"host":"0\.0\.0\.0","msg":"listening on 0\.0\.0\.0 over plain HTTP: bearer tokens travel in clear text unless a TLS-terminating proxy or load balancer is in front/,
    );
    await plain.stop();
    const secure = await serve([
      ...['--db', join(dir, 'other.db'), '--key', keyFile, '--host', '0.0.0.0'],
      ...['--tls-cert', tls.cert, '--tls-key', tls.key],
    ]);
    expect(secure.url).toBe(`https://0.0.0.0:${secure.port}`);
    expect(secure.output()).not.toContain('clear text');
    await secure.stop();
  });

  it('refuses TLS options it cannot use, with the reason', async () => {
    const base = ['control', 'serve', '--db', join(dir, 'refused.db'), '--key', keyFile, '--port', '0'];
    const half = await runCli([...base, '--tls-cert', tls.cert]);
    expect(half.code).toBe(2);
    expect(half.stderr).toMatch(/--tls-cert and --tls-key go together/);
    const otherHalf = await runCli([...base, '--tls-key', tls.key]);
    expect(otherHalf.code).toBe(2);

    const open = join(dir, 'open.key');
    copyFileSync(tls.key, open);
    chmodSync(open, 0o640);
    const readable = await runCli([...base, '--tls-cert', tls.cert, '--tls-key', open]);
    expect(readable.code).toBe(1);
    expect(readable.stderr).toContain(`TLS key ${open}: mode 640 lets others read it; run chmod 600 ${open}`);
    expect(readable.stderr).not.toContain('PRIVATE KEY');

    const mismatched = await runCli([...base, '--tls-cert', join(dir, 'ca.pem'), '--tls-key', tls.key]);
    expect(mismatched.code).toBe(1);
    expect(mismatched.stderr).toMatch(/does not belong to the certificate/);
    const absent = await runCli([...base, '--tls-cert', join(dir, 'absent.pem'), '--tls-key', tls.key]);
    expect(absent.code).toBe(1);
    expect(absent.stderr).toMatch(/TLS certificate .*absent\.pem: no such file/);
    const notCert = await runCli([...base, '--tls-cert', tls.key, '--tls-key', tls.key]);
    expect(notCert.code).toBe(1);
    expect(notCert.stderr).toMatch(/not a PEM certificate/);
  });
});
