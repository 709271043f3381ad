// A plain `node --require` process governed through the control API alone (BULKHEAD_CONTROL_URL,
// BULKHEAD_TOKEN, BULKHEAD_WORKLOAD): the bundle is fetched and verified before the first decision,
// a new revision arrives over long-poll, records reach the API, and records queued at exit are
// delivered or spooled for the next process. The real control API (SQLite in memory) on loopback.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { openSqliteStore } from '../../control/store/sqlite.js';
import { generateKeyPair } from '../../policy/keys.js';
import { applyPolicy } from '../control/clients.js';
import {
  type CountingServer,
  countingTcpServer,
  policyYaml,
  REGISTER_CJS,
  SHIM_CJS,
  WORKLOAD,
} from './harness.js';

let control: RunningControlServer;
let admin: string;
let workloadToken: string;
let allowed: CountingServer;
let later: CountingServer;
let dir: string;
const store = openSqliteStore(':memory:');
const signingKey = generateKeyPair().privateKeyPem;
const children = new Set<ChildProcess>();

function apply(allowPorts: number[]): Promise<number> {
  const allow = allowPorts.map((port) => `{ to: { cidr: 127.0.0.1/32, port: ${port} } }`);
  return applyPolicy(control.url, admin, policyYaml({ allow }), 'shim.yaml');
}

async function storedDenies(): Promise<{ id: string; destination: { port?: number }; rule: string }[]> {
  const response = await fetch(`${control.url}/v1/denies?limit=500`, {
    headers: { authorization: `Bearer ${admin}` },
  });
  return (
    (await response.json()) as { records: { id: string; destination: { port?: number }; rule: string }[] }
  ).records;
}

/** The only configuration a user gives: where the control API is, a token, and who this is. */
function threeVariables(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    BULKHEAD_CONTROL_URL: control.url,
    BULKHEAD_TOKEN: workloadToken,
    BULKHEAD_WORKLOAD: WORKLOAD,
    ...extra,
  };
}

/** A governed child running `script`; lines it prints arrive on `lines`, `send` writes to its stdin. */
function governed(script: string, env: Record<string, string>) {
  const child = spawn(process.execPath, ['--require', REGISTER_CJS, '-e', script], {
    env: { ...env, SHIM_API: SHIM_CJS },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.add(child);
  let stdout = '';
  let stderr = '';
  const waiters: { match: (line: string) => boolean; resolve: (line: string) => void }[] = [];
  // Lines no one waited for yet: a waiter registered later still finds its line.
  const unclaimed: string[] = [];
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
    const lines = stdout.split('\n');
    stdout = lines.pop() ?? '';
    for (const line of lines) {
      const waiter = waiters.find((w) => w.match(line));
      if (!waiter) {
        unclaimed.push(line);
        continue;
      }
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(line);
    }
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  return {
    line: (prefix: string, timeoutMs = 10_000) =>
      new Promise<string>((resolve, reject) => {
        const seen = unclaimed.findIndex((line) => line.startsWith(prefix));
        if (seen >= 0) {
          resolve(unclaimed.splice(seen, 1)[0] as string);
          return;
        }
        const timer = setTimeout(
          () => reject(new Error(`no "${prefix}" line within ${timeoutMs} ms; stderr:\n${stderr}`)),
          timeoutMs,
        );
        waiters.push({
          match: (line) => line.startsWith(prefix),
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      }),
    send: (text: string) => child.stdin.write(text),
    exited,
    stderr: () => stderr,
  };
}

// Connects at the very top of the program, before any I/O could have completed: only a bundle
// fetched and verified before the first decision can tell the allowed port from the denied one.
const CONNECT = `
const net = require('node:net');
const shim = require(process.env.SHIM_API);
const attempt = (port) => new Promise((resolve) => {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('connect', () => { socket.destroy(); resolve('ok'); });
  socket.on('error', (error) => resolve(error.code));
});
`;

beforeAll(async () => {
  control = await startControlServer({ store, signingKey });
  admin = (await control.issueToken('admin')).token;
  workloadToken = (await control.issueToken('workload')).token;
  allowed = await countingTcpServer();
  later = await countingTcpServer();
  dir = mkdtempSync(join(tmpdir(), 'bulkhead-link-'));
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all([allowed.close(), later.close(), control.close()]);
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the preload governed by the control API alone', { timeout: 60_000 }, () => {
  it('fetches the bundle before the first decision, follows a new revision over long-poll and reports', async () => {
    const first = await apply([allowed.port]);
    const child = governed(
      `${CONNECT}
Promise.all([attempt(${allowed.port}), attempt(${later.port})]).then(async (results) => {
  console.log('first ' + JSON.stringify({ results, status: shim.status() }));
  const revision = shim.status().revision;
  process.stdin.once('data', () => {
    const asked = Date.now();
    const timer = setInterval(() => {
      if (shim.status().revision === revision) return;
      clearInterval(timer);
      const ms = Date.now() - asked;
      attempt(${later.port}).then((after) => {
        console.log('updated ' + JSON.stringify({ ms, revision: shim.status().revision, after }));
        process.exit(0);
      });
    }, 5);
  });
  console.log('waiting');
});`,
      threeVariables(),
    );
    const firstLine = JSON.parse((await child.line('first ')).slice(6)) as {
      results: string[];
      status: { revision: number; bundleSource: string; sink: string };
    };
    expect(firstLine.results).toEqual(['ok', 'ERR_BULKHEAD_DENIED']);
    expect(firstLine.status.revision).toBe(first);
    expect(firstLine.status.bundleSource).toBe('control-api');
    await child.line('waiting');
    // Let the long-poll park at the control API, then apply: the process must see it within a second.
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.send('go\n');
    const second = await apply([allowed.port, later.port]);
    const updated = JSON.parse((await child.line('updated ')).slice(8)) as {
      ms: number;
      revision: number;
      after: string;
    };
    expect(updated.revision).toBe(second);
    expect(updated.after).toBe('ok');
    expect(updated.ms).toBeLessThan(1000);
    expect(await child.exited).toBe(0);
    // The deny of the first phase reached the control API (delivered at exit at the latest).
    const denies = await storedDenies();
    expect(denies.some((r) => r.destination.port === later.port)).toBe(true);
    // The token never reaches a log line.
    expect(child.stderr()).not.toContain(workloadToken);
    expect(child.stderr()).toMatch(/trusting the 1 signing key\(s\) the control API lists/);
  });

  it('stops fetching when a platform wrapper takes over with its own client', async () => {
    const first = await apply([allowed.port]);
    const child = governed(
      `${CONNECT}
attempt(${allowed.port}).then(() => {
  require(process.env.SHIM_API).handOverFetching();
  console.log('handed over ' + shim.status().revision);
  process.stdin.once('data', () => setTimeout(() => { console.log('after ' + shim.status().revision); process.exit(0); }, 1500));
});`,
      threeVariables(),
    );
    expect(await child.line('handed over ')).toBe(`handed over ${first}`);
    child.send('go\n');
    await apply([allowed.port, later.port]);
    // Nothing fetched the new revision: the wrapper's own client would have.
    expect(await child.line('after ')).toBe(`after ${first}`);
    expect(await child.exited).toBe(0);
  });

  it('lets a program that is done exit as it would without the shim, its records delivered', async () => {
    await apply([allowed.port]);
    const port = later.port;
    const before = (await storedDenies()).filter((r) => r.destination.port === port).length;
    const started = Date.now();
    // No process.exit: the program ends when its event loop is empty.
    const child = governed(
      `${CONNECT}\nattempt(${port}).then((result) => console.log('result ' + result));`,
      threeVariables(),
    );
    expect(await child.line('result ')).toBe('result ERR_BULKHEAD_DENIED');
    expect(await child.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
    const after = (await storedDenies()).filter((r) => r.destination.port === port).length;
    expect(after).toBe(before + 1);
  });

  it('delivers the records still queued when the program calls process.exit', async () => {
    await apply([allowed.port]);
    const port = later.port;
    const before = (await storedDenies()).filter((r) => r.destination.port === port).length;
    const child = governed(
      `${CONNECT}
attempt(${port}).then((result) => { console.log('result ' + result); process.exit(0); });`,
      threeVariables(),
    );
    expect(await child.line('result ')).toBe('result ERR_BULKHEAD_DENIED');
    expect(await child.exited).toBe(0);
    const after = (await storedDenies()).filter((r) => r.destination.port === port).length;
    expect(after).toBe(before + 1);
  });

  it('spools what the control API cannot take at exit, and the next process sends it', async () => {
    await apply([allowed.port]);
    const spool = join(dir, 'spool.ndjson');
    const env = threeVariables({ BULKHEAD_SPOOL: spool, BULKHEAD_EXIT_FLUSH_MS: '500' });
    const port = control.port;
    const child = governed(
      `${CONNECT}
attempt(${allowed.port}).then((result) => {
  console.log('ready ' + result);
  process.stdin.once('data', () => attempt(${later.port}).then(() => process.exit(0)));
});`,
      env,
    );
    expect(await child.line('ready ')).toBe('ready ok');
    // The control API goes away (its store stays): the record cannot be delivered at exit.
    await control.close();
    child.send('go\n');
    expect(await child.exited).toBe(0);
    expect(child.stderr()).toMatch(/spooled to/);
    const spooled = readFileSync(spool, 'utf8').trim().split('\n');
    expect(spooled).toHaveLength(1);
    const record = JSON.parse(spooled[0] as string) as { id: string; destination: { port: number } };
    expect(record.destination.port).toBe(later.port);
    expect(statSync(spool).mode & 0o777).toBe(0o600);

    // Back on the same port, same store: the next process started with that spool sends it.
    control = await startControlServer({ store, signingKey, port });
    const next = governed(
      `const shim = require(process.env.SHIM_API); shim.status();
const timer = setInterval(() => { if (!require('node:fs').existsSync(${JSON.stringify(spool)})) { clearInterval(timer); console.log('sent'); } }, 20);`,
      env,
    );
    await next.line('sent');
    next.send('');
    const stored = await storedDenies();
    expect(stored.map((r) => r.id)).toContain(record.id);
    expect(existsSync(spool)).toBe(false);
  });

  it('waits a bounded time for an API that does not answer, then the fail mode governs', async () => {
    // A listener that accepts and never answers.
    const sockets = new Set<Socket>();
    const silentServer = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((done) => silentServer.listen(0, '127.0.0.1', done));
    const silent = {
      port: (silentServer.address() as { port: number }).port,
      close: () =>
        new Promise<void>((done) => {
          for (const socket of sockets) socket.destroy();
          silentServer.close(() => done());
        }),
    };
    try {
      const child = governed(
        `${CONNECT}
const started = Date.now();
attempt(${allowed.port}).then((result) => { console.log('result ' + JSON.stringify({ result, ms: Date.now() - started, status: shim.status() })); process.exit(0); });`,
        threeVariables({
          BULKHEAD_CONTROL_URL: `http://127.0.0.1:${silent.port}`,
          BULKHEAD_TRUSTED_KEYS: control.key.publicKeyPem,
          BULKHEAD_CONTROL_WAIT_MS: '400',
          BULKHEAD_SPOOL: join(dir, 'silent.ndjson'),
        }),
      );
      const line = JSON.parse((await child.line('result ')).slice(7)) as {
        result: string;
        ms: number;
        status: { failing: boolean };
      };
      expect(line.result).toBe('ERR_BULKHEAD_DENIED');
      expect(line.status.failing).toBe(true);
      expect(line.ms).toBeGreaterThanOrEqual(350);
      expect(line.ms).toBeLessThan(5000);
      expect(child.stderr()).toMatch(
        /no answer from the control API within 400 ms; fail mode closed governs/,
      );
    } finally {
      await silent.close();
    }
  });

  it('refuses to trust keys from a control API reached over plain http off loopback, and says why', async () => {
    const child = governed(
      `${CONNECT}
attempt(${allowed.port}).then((result) => { console.log('result ' + JSON.stringify({ result, status: shim.status() })); process.exit(0); });`,
      threeVariables({
        // Not loopback and not https (nothing listens there: the keys are refused before any request).
        BULKHEAD_CONTROL_URL: 'http://192.0.2.1:9/',
        BULKHEAD_CONTROL_WAIT_MS: '2000',
        BULKHEAD_SPOOL: join(dir, 'plain-http.ndjson'),
      }),
    );
    const line = JSON.parse((await child.line('result ')).slice(7)) as {
      result: string;
      status: { revision: number; failing: boolean };
    };
    // Fail closed: no bundle, the fail mode governs.
    expect(line.result).toBe('ERR_BULKHEAD_DENIED');
    expect(line.status.failing).toBe(true);
    expect(child.stderr()).toMatch(
      /BULKHEAD_TRUSTED_KEYS is not set and the control API is neither https nor loopback/,
    );
  });
});
