// What a SQLite error means for the API: the disk is full (507), the database is busy or locked
// (503), or anything else (a bug: left as is, answered 500). Classified by the driver's `code`
// (better-sqlite3 gives the extended result code name, e.g. SQLITE_IOERR_SHMSIZE), which the deny
// writer thread sends along with its errors.
import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { type StoreFailure, StoreUnavailableError } from './errors.js';

/** Seconds a client waits before retrying after each failure. */
const RETRY_AFTER_SECONDS: Record<StoreFailure, number> = { 'disk-full': 5, unavailable: 1 };

/**
 * An I/O error counts as disk-full when the database's file system has less than this free.
 * SQLite reports ENOSPC as SQLITE_FULL for ordinary writes, but as SQLITE_IOERR_* where it grows
 * the shared-memory index (SHMSIZE), truncates or syncs; the errno itself is not exposed by the
 * driver, so the free space decides.
 */
const NEARLY_FULL_BYTES = 1024 * 1024;

function volumeNearlyFull(file: string | undefined): boolean {
  if (!file || file === ':memory:') return false;
  try {
    const stats = statfsSync(dirname(file));
    return stats.bavail * stats.bsize < NEARLY_FULL_BYTES;
  } catch {
    return false;
  }
}

/** The failure a SQLite result code stands for, or undefined when it is not a transient one. */
export function classifySqliteCode(code: string | undefined, file?: string): StoreFailure | undefined {
  if (code === undefined) return undefined;
  if (code === 'SQLITE_FULL') return 'disk-full';
  if (code.startsWith('SQLITE_IOERR') && volumeNearlyFull(file)) return 'disk-full';
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return 'unavailable';
  return undefined;
}

export function sqliteCodeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * The StoreUnavailableError for a failure; `detail` is appended to the message (what of a batch
 * was stored before the failure).
 */
export function storeUnavailable(
  failure: StoreFailure,
  cause: string,
  detail = '',
  error?: unknown,
): StoreUnavailableError {
  const message =
    failure === 'disk-full'
      ? `the database disk is full: free space on the control API's database volume; records are kept by the forwarders and retried${detail}`
      : `the database is busy (${cause}); records are kept by the forwarders and retried${detail}`;
  return new StoreUnavailableError(
    failure,
    message,
    RETRY_AFTER_SECONDS[failure],
    error === undefined ? undefined : { cause: error },
  );
}

/** `error` as a StoreUnavailableError when SQLite failed for lack of space or a lock, else unchanged. */
export function translateSqliteError(error: unknown, file?: string, detail = ''): unknown {
  const code = sqliteCodeOf(error);
  const failure = classifySqliteCode(code, file);
  return failure === undefined ? error : storeUnavailable(failure, code ?? 'SQLITE', detail, error);
}
