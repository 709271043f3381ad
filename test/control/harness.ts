// Shared test fixtures: the same suites run against SQLite and PostgreSQL stores.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ControlLimits, type RunningControlServer, startControlServer } from '../../control/server.js';
import { openPostgresStore } from '../../control/store/postgres.js';
import { openSqliteStore } from '../../control/store/sqlite.js';
import type { ControlStore } from '../../control/store/types.js';
import { generateKeyPair } from '../../policy/index.js';
import { type PostgresCluster, startPostgresCluster } from './pg-cluster.js';

export type Engine = 'sqlite' | 'postgres';
export const ENGINES: readonly Engine[] = ['sqlite', 'postgres'];

export interface StoreFactory {
  engine: Engine;
  /** A fresh, empty store (its own SQLite file or PostgreSQL database). */
  open(): Promise<ControlStore>;
  /** Another store on the same data as the last `open()` (a second replica). */
  openReplica(): Promise<ControlStore>;
  /** Where the last `open()` keeps its data: a file path or a connection string. */
  location(): string;
  cleanup(): Promise<void>;
}

export async function storeFactory(engine: Engine): Promise<StoreFactory> {
  const opened: ControlStore[] = [];
  const track = <T extends ControlStore>(store: T): T => {
    opened.push(store);
    return store;
  };
  if (engine === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'bulkhead-control-'));
    let counter = 0;
    let last = '';
    return {
      engine,
      async open() {
        last = join(dir, `store-${++counter}.db`);
        return track(openSqliteStore(last));
      },
      async openReplica() {
        return track(openSqliteStore(last));
      },
      location: () => last,
      async cleanup() {
        for (const store of opened) await store.close().catch(() => {});
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const cluster: PostgresCluster = await startPostgresCluster();
  let counter = 0;
  let last = '';
  return {
    engine,
    async open() {
      last = await cluster.createDatabase(`store_${++counter}`);
      return track(await openPostgresStore({ connectionString: last }));
    },
    async openReplica() {
      return track(await openPostgresStore({ connectionString: last }));
    },
    location: () => last,
    async cleanup() {
      for (const store of opened) await store.close().catch(() => {});
      await cluster.stop();
    },
  };
}

export interface Api {
  server: RunningControlServer;
  admin: string;
  workload: string;
  call(path: string, init?: RequestInit & { token?: string | null }): Promise<Response>;
}

/** A server on a fresh store with one admin and one workload token. */
export async function startApi(factory: StoreFactory, limits: Partial<ControlLimits> = {}): Promise<Api> {
  const store = await factory.open();
  const server = await startControlServer({ store, signingKey: generateKeyPair(), limits });
  const admin = (await server.issueToken('admin')).token;
  const workload = (await server.issueToken('workload')).token;
  return {
    server,
    admin,
    workload,
    call(path, init = {}) {
      const { token = admin, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (token !== null) headers.set('authorization', `Bearer ${token}`);
      return fetch(`${server.url}${path}`, { ...rest, headers });
    },
  };
}

/** Polls /metrics until `count` long-polls are parked (requests are in flight, so no fixed sleep). */
export async function waitForParkedLongPolls(api: Api, count: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const metrics = await (await api.call('/metrics')).text();
    const open = /^bulkhead_longpolls_open (\d+)$/m.exec(metrics);
    if (open && Number(open[1]) >= count) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`long-polls never reached ${count}`);
}
