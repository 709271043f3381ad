// The SQLite store on a real full file system (an 8 MiB tmpfs, so root on Linux) behind a real
// control server: reports are answered 202 or 507 + Retry-After (never 500), the process stays up,
// ingestion resumes by itself once space is freed, and every acknowledged record is stored exactly
// once. Also: a new database file (and its -wal, -shm) is private to its owner.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { isStoreUnavailable } from '../../control/store/errors.js';
import { openSqliteStore, type SqliteStore } from '../../control/store/sqlite.js';
import { generateKeyPair } from '../../policy/index.js';
import { denyRecord } from './fixtures.js';

const RULE = `payments-egress/deny[0]-${'x'.repeat(400)}`;
const PATH = `/${'p'.repeat(800)}`;

function record(id: string) {
  const base = denyRecord(id);
  return {
    ...base,
    destination: { ...base.destination, path: PATH },
    rule: RULE,
    sandboxId: 'sandbox-full',
    seq: Number(id.split('-')[1]),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const modeOf = (file: string) => statSync(file).mode & 0o777;

// Deny batches are written by the writer thread, or on the store's own connection when the thread is gone.
describe.each([
  { path: 'the writer thread', writerThread: true },
  { path: 'the in-thread path', writerThread: false },
])('SQLite store on a full disk, deny batches written by $path', ({ writerThread }) => {
  let dir = '';
  let skipReason: string | undefined;
  let mounted = false;
  let store: SqliteStore | undefined;
  let server: RunningControlServer | undefined;

  beforeAll(() => {
    if (process.platform !== 'linux' || process.getuid?.() !== 0) {
      skipReason = 'needs root on Linux to mount a small tmpfs';
      return;
    }
    dir = mkdtempSync(join(tmpdir(), 'bulkhead-diskfull-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', dir], { stdio: 'pipe' });
      mounted = true;
    } catch (error) {
      skipReason = `could not mount a tmpfs: ${String((error as { stderr?: unknown }).stderr ?? error).trim()}`;
    }
  });

  afterAll(async () => {
    await server?.close().catch(() => {});
    await store?.close().catch(() => {});
    if (mounted) {
      try {
        execFileSync('umount', [dir], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('answers 507 with Retry-After while full, resumes when space is freed, loses nothing acknowledged', async (context) => {
    context.skip(skipReason !== undefined, skipReason);
    // Freed once the disk is full. A WAL-mode database needs room to checkpoint its WAL into the
    // database file before it can take more (control/store/sqlite-wal.ts): the filler leaves that
    // room plus some for the batches sent after.
    const filler = join(dir, 'filler');
    writeFileSync(filler, Buffer.alloc(3 * 1024 * 1024, 1));
    store = openSqliteStore(join(dir, 'control.db'), { writerThread });
    server = await startControlServer({ store, signingKey: generateKeyPair() });
    const workload = (await server.issueToken('workload')).token;
    const url = server.url;
    const post = async (ids: string[]) => {
      const response = await fetch(`${url}/v1/reports`, {
        method: 'POST',
        headers: { authorization: `Bearer ${workload}`, 'content-type': 'application/json' },
        body: JSON.stringify({ records: ids.map(record) }),
      });
      const body = (await response.json()) as Record<string, unknown>;
      expect([202, 507], JSON.stringify(body)).toContain(response.status);
      if (response.status === 507) {
        expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
        expect(body).toMatchObject({ error: 'disk-full', message: expect.stringMatching(/disk is full/) });
      } else {
        expect((body.stored as number) + (body.duplicate as number)).toBe(ids.length);
      }
      return response.status;
    };

    const acknowledged: string[] = [];
    const refused: string[][] = [];
    let next = 0;
    const batch = () => Array.from({ length: 40 }, () => `fill-${++next}`);

    // Fill the disk. Paced like a fleet of forwarders rather than one tight loop, so the writer
    // thread's periodic checkpoints run between batches as they do in service.
    const deadline = Date.now() + 60_000;
    while (refused.length < 3 && Date.now() < deadline) {
      const ids = batch();
      if ((await post(ids)) === 202) {
        acknowledged.push(...ids);
        await sleep(20);
      } else {
        refused.push(ids);
      }
    }
    expect(refused.length, 'the disk never filled').toBe(3);
    expect(acknowledged.length).toBeGreaterThan(0);

    // Other writes (main connection) while full: done or a disk-full StoreUnavailableError, never a crash.
    await server.issueToken('workload').catch((error) => {
      expect(isStoreUnavailable(error) && error.failure).toBe('disk-full');
    });
    // Still up and reading.
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect(store.writerThreadAlive).toBe(writerThread);

    // Free space: the refused batches go through again (as forwarders resend them), without a restart.
    rmSync(filler);
    const first = refused[0]!;
    const resumeBy = Date.now() + 20_000;
    let status = await post(first);
    while (status !== 202 && Date.now() < resumeBy) {
      await sleep(250);
      status = await post(first);
    }
    expect(status, 'ingestion did not resume after space was freed').toBe(202);
    acknowledged.push(...first);
    for (const ids of refused.slice(1)) {
      expect(await post(ids)).toBe(202);
      acknowledged.push(...ids);
    }
    for (let i = 0; i < 2; i++) {
      const ids = batch();
      expect(await post(ids)).toBe(202);
      acknowledged.push(...ids);
    }
    expect(store.writerThreadAlive).toBe(writerThread);

    // Every acknowledged record is stored, exactly once.
    const stored = await store.queryDenies({ order: 'asc', limit: 1_000_000 });
    const counts = new Map<string, number>();
    for (const row of stored) {
      const id = (JSON.parse(row.record) as { id: string }).id;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect(acknowledged.filter((id) => counts.get(id) !== 1)).toEqual([]);
    expect(stored.length).toBe(counts.size);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });
});

describe('SQLite database file mode', () => {
  let dir = '';

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'bulkhead-mode-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a new database, its -wal and -shm readable by the owner only', async () => {
    const file = join(dir, 'new.db');
    const previous = process.umask(0o022);
    let store: SqliteStore;
    try {
      store = openSqliteStore(file);
    } finally {
      process.umask(previous);
    }
    await store.createToken({
      id: 'mode-1',
      hash: 'a'.repeat(64),
      scope: 'admin',
      name: null,
      createdAt: new Date().toISOString(),
    });
    expect(modeOf(file)).toBe(0o600);
    for (const suffix of ['-wal', '-shm']) {
      expect(existsSync(file + suffix), suffix).toBe(true);
      expect(modeOf(file + suffix), suffix).toBe(0o600);
    }
    await store.close();
  });

  it('leaves the mode of an existing database file as the operator set it', async () => {
    const file = join(dir, 'existing.db');
    writeFileSync(file, '');
    chmodSync(file, 0o640);
    const store = openSqliteStore(file);
    expect(modeOf(file)).toBe(0o640);
    await store.close();
  });
});
