// A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temp dir, a free
// loopback port, trust auth, no fsync. As root it runs as the `postgres` system user
// (initdb refuses root), creating that user when the machine has none.
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
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

async function freePort(): Promise<number> {
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

export interface PostgresCluster {
  port: number;
  /** Connection string of a database in the cluster. */
  url(database?: string): string;
  /** Creates an empty database and answers its connection string. */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startPostgresCluster(): Promise<PostgresCluster> {
  const binDir = findBinDir();
  const user = systemUser();
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const run = (file: string, args: string[]) => {
    const command = user ? 'runuser' : join(binDir, file);
    const commandArgs = user ? ['-u', user.name, '--', join(binDir, file), ...args] : args;
    const result = spawnSync(command, commandArgs, { encoding: 'utf8', cwd: dir });
    if (result.status !== 0) {
      throw new Error(`${file} failed (${result.status}): ${result.stderr || result.stdout}`);
    }
  };
  run('initdb', [
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
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      run('pg_ctl', [
        '-D',
        data,
        '-l',
        join(dir, 'server.log'),
        '-w',
        '-t',
        '60',
        '-o',
        `-p ${port} -h 127.0.0.1 -k ${dir} -F -c max_connections=200`,
        'start',
      ]);
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
  return {
    port,
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
    async stop() {
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
