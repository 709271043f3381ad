import { openPostgresStore, PostgresStore } from './postgres.js';
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
  /**
   * PostgreSQL only: return at once without connecting. The control server finishes start-up
   * (migrations, LISTEN) when the database arrives; one-shot commands want the error instead.
   */
  lazy?: boolean | undefined;
}

export async function openStore(location: StoreLocation): Promise<ControlStore> {
  if (location.databaseUrl) {
    const options = {
      connectionString: location.databaseUrl,
      ...(location.onError ? { onError: location.onError } : {}),
    };
    return location.lazy ? new PostgresStore(options) : openPostgresStore(options);
  }
  return openSqliteStore(location.db ?? './bulkhead.db');
}
