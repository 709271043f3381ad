import { openPostgresStore } from './postgres.js';
import { openSqliteStore } from './sqlite.js';
import type { ControlStore } from './types.js';

export { openPostgresStore, PostgresStore } from './postgres.js';
export { openSqliteStore, SqliteStore } from './sqlite.js';
export type * from './types.js';

export interface StoreLocation {
  /** SQLite file (`:memory:` for a throwaway store). */
  db?: string | undefined;
  /** PostgreSQL connection string; wins over `db`. */
  databaseUrl?: string | undefined;
  onError?: (error: Error) => void;
}

export async function openStore(location: StoreLocation): Promise<ControlStore> {
  if (location.databaseUrl) {
    return openPostgresStore({
      connectionString: location.databaseUrl,
      ...(location.onError ? { onError: location.onError } : {}),
    });
  }
  return openSqliteStore(location.db ?? './bulkhead.db');
}
