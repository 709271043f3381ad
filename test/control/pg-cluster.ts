// A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temp dir, a free
// loopback port, trust auth, no fsync. As root it runs as the `postgres` system user
// (initdb refuses root), creating that user when the machine has none.
//
// Fault controls (pg-faults.test.ts) act on the running cluster and keep its data dir:
// killAll, killPostmaster, stopFast and killBackend take the database away the ways production
// loses it, and start() brings it back on the same port.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

function findBinDir(): string {
  const onPath = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  if (onPath) return join(onPath, '..');
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
    for (const version of versions) {
      const dir = join(root, version, 'bin');
      if (existsSync(join(dir, 'initdb'))) return dir;
    }
  }
  throw new Error('PostgreSQL binaries (initdb, pg_ctl) not found: install the postgresql package');
}

/** Why a cluster cannot be started here (no binaries), or undefined when it can. */
export function postgresUnavailableReason(): string | undefined {
  try {
    findBinDir();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/** A TCP port free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function systemUser(): { uid: number; gid: number; name: string } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = () => spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  if (lookup().status !== 0) {
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
  }
  const uid = Number(lookup().stdout.trim());
  const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  return { uid, gid, name: 'postgres' };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Alive and not a zombie (a killed daemon's zombie lingers when PID 1 does not reap). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // pid (comm) STATE ...: comm may contain spaces and parentheses, the state follows the last ')'.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function childrenOf(pid: number): number[] {
  const result = spawnSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
  return result.stdout
    .split('\n')
    .map((line) => Number(line.trim()))
    .filter((child) => Number.isInteger(child) && child > 0);
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

async function waitForExit(pids: number[], timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const alive = pids.filter(processAlive);
    if (alive.length === 0) return;
    if (Date.now() > deadline)
      throw new Error(`${what}: still running after ${timeoutMs} ms: ${alive.join(', ')}`);
    await sleep(20);
  }
}

export interface PostgresCluster {
  port: number;
  /** The data directory (kept across faults and restarts; removed by `stop`). */
  dataDir: string;
  /** Connection string of a database in the cluster. */
  url(database?: string): string;
  /** Creates an empty database and answers its connection string. */
  createDatabase(name: string): Promise<string>;
  /** Stops the cluster however it is (running, killed, half-dead) and removes its files. */
  stop(): Promise<void>;

  /** The postmaster's pid while it runs (first line of postmaster.pid), else undefined. */
  postmasterPid(): number | undefined;
  /** Starts the cluster again on the same port and data dir; answers when it accepts connections. */
  start(): Promise<void>;
  /** SIGKILL to the postmaster and every process it started (backends and auxiliaries); answers when all are gone. */
  killAll(): Promise<void>;
  /**
   * SIGKILL to the postmaster only. Its orphaned backends exit when they notice; this answers
   * once they have (a restart is refused while they still hold the shared memory).
   */
  killPostmaster(): Promise<void>;
  /** `pg_ctl stop -m fast`: clients are disconnected, the cluster shuts down cleanly. */
  stopFast(): Promise<void>;
  /**
   * SIGKILL to one backend serving a client (of `database` when given); the postmaster then
   * restarts every backend by itself (crash recovery). Answers the killed pid at once; use
   * `waitUntilAccepting` to know when the cluster is back.
   */
  killBackend(database?: string): Promise<number>;
  /** Polls until a connection succeeds and answers a query (bounded by timeoutMs). */
  waitUntilAccepting(timeoutMs?: number): Promise<void>;
  /** The server log so far (for failure messages). */
  serverLog(): string;
}

export async function startPostgresCluster(): Promise<PostgresCluster> {
  const binDir = findBinDir();
  const user = systemUser();
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const command = (file: string, args: string[]): [string, string[]] =>
    user ? ['runuser', ['-u', user.name, '--', join(binDir, file), ...args]] : [join(binDir, file), args];
  const runSync = (file: string, args: string[]) => {
    const [cmd, cmdArgs] = command(file, args);
    const result = spawnSync(cmd, cmdArgs, { encoding: 'utf8', cwd: dir });
    if (result.status !== 0) {
      throw new Error(`${file} failed (${result.status}): ${result.stderr || result.stdout}`);
    }
  };
  // Asynchronous: a restart must not block the event loop of a test that is measuring things meanwhile.
  const run = (file: string, args: string[]) =>
    new Promise<void>((resolve, reject) => {
      const [cmd, cmdArgs] = command(file, args);
      const child = spawn(cmd, cmdArgs, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk) => (output += chunk));
      child.stderr.on('data', (chunk) => (output += chunk));
      child.on('error', reject);
      child.on('close', (code) =>
        code === 0 ? resolve() : reject(new Error(`${file} ${args.at(-1)} failed (${code}): ${output}`)),
      );
    });
  runSync('initdb', [
    '-D',
    data,
    '-A',
    'trust',
    '-U',
    'bulkhead',
    '-E',
    'UTF8',
    '--no-sync',
    '--no-instructions',
  ]);
  let port = 0;
  const pgCtlStart = () =>
    run('pg_ctl', [
      '-D',
      data,
      '-l',
      logFile,
      '-w',
      '-t',
      '60',
      '-o',
      `-p ${port} -h 127.0.0.1 -k ${dir} -F -c max_connections=200`,
      'start',
    ]);
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await pgCtlStart();
      break;
    } catch (error) {
      // Another process may have taken the port between our probe and the server's bind.
      if (attempt >= 3) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    }
  }
  const url = (database = 'postgres') => `postgres://bulkhead@127.0.0.1:${port}/${database}`;

  const pidFile = join(data, 'postmaster.pid');
  const recordedPid = (): number | undefined => {
    try {
      const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]?.trim());
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  const postmasterPid = () => {
    const pid = recordedPid();
    return pid !== undefined && processAlive(pid) ? pid : undefined;
  };
  /** Backends orphaned by killPostmaster: gone before any restart. */
  let orphans: number[] = [];
  const requirePostmaster = (what: string): number => {
    const pid = postmasterPid();
    if (pid === undefined) throw new Error(`${what}: the cluster is not running`);
    return pid;
  };

  const cluster: PostgresCluster = {
    port,
    dataDir: data,
    url,
    async createDatabase(name) {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`bad database name ${name}`);
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    postmasterPid,
    async start() {
      if (postmasterPid() !== undefined) throw new Error('start: the cluster is already running');
      await waitForExit(orphans, 10_000, 'orphaned backends');
      orphans = [];
      // A SIGKILLed postmaster leaves its lock files behind (the data dir's postmaster.pid and the
      // socket's .lock). PostgreSQL ignores stale ones, but not ones naming a zombie (a killed
      // daemon is never reaped when PID 1 does not reap) or a recycled pid: the postmaster is
      // known dead here, so they go.
      rmSync(pidFile, { force: true });
      rmSync(join(dir, `.s.PGSQL.${port}.lock`), { force: true });
      await pgCtlStart();
    },
    async killAll() {
      const pid = requirePostmaster('killAll');
      // Stopped, the postmaster cannot fork (or restart children) between our listing and the kill.
      killQuietly(pid, 'SIGSTOP');
      const children = childrenOf(pid);
      killQuietly(pid, 'SIGKILL');
      for (const child of children) killQuietly(child, 'SIGKILL');
      await waitForExit([pid, ...children], 10_000, 'killAll');
    },
    async killPostmaster() {
      const pid = requirePostmaster('killPostmaster');
      killQuietly(pid, 'SIGSTOP');
      const children = childrenOf(pid);
      killQuietly(pid, 'SIGKILL');
      orphans = children;
      await waitForExit([pid], 10_000, 'killPostmaster');
      // Backends notice the postmaster's death (its pipe closes) and exit by themselves.
      await waitForExit(children, 15_000, 'backends orphaned by killPostmaster');
      orphans = [];
    },
    async stopFast() {
      requirePostmaster('stopFast');
      await run('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
    },
    async killBackend(database) {
      requirePostmaster('killBackend');
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      let pid: number | undefined;
      try {
        const { rows } = await client.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
           WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND ($1::text IS NULL OR datname = $1)
           ORDER BY backend_start LIMIT 1`,
          [database ?? null],
        );
        pid = rows[0]?.pid;
      } finally {
        await client.end();
      }
      if (pid === undefined)
        throw new Error(`killBackend: no client backend${database ? ` on ${database}` : ''}`);
      process.kill(pid, 'SIGKILL');
      return pid;
    },
    async waitUntilAccepting(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const client = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 1000 });
        client.on('error', () => {});
        try {
          await client.connect();
          await client.query('SELECT 1');
          await client.end();
          return;
        } catch (error) {
          await client.end().catch(() => {});
          if (Date.now() > deadline) {
            throw new Error(
              `the cluster did not accept connections within ${timeoutMs} ms: ${(error as Error).message}`,
            );
          }
        }
        await sleep(50);
      }
    },
    serverLog() {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
    async stop() {
      try {
        const pid = postmasterPid();
        if (pid !== undefined) {
          const children = childrenOf(pid);
          try {
            await run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
          } catch (error) {
            killQuietly(pid, 'SIGKILL');
            for (const child of children) killQuietly(child, 'SIGKILL');
            throw error;
          }
        }
        for (const orphan of orphans) killQuietly(orphan, 'SIGKILL');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  return cluster;
}
