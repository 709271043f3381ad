// Recovery from a full disk in WAL mode, used by the deny writer thread and, when that thread is
// gone, by the store's own connection.
//
// Why writes pause: in WAL mode a commit only appends to the -wal file; the pages reach the
// database file at the next checkpoint, which has to grow the database file first and can only
// then restart the WAL from its beginning. When the disk fills, checkpoints fail (no room to grow
// the database file) while commits of small slices may still fit in the WAL, so the WAL keeps
// swallowing whatever space is freed and the checkpoint that would release it never gets the room
// it needs: ingestion then failed until the file system grew. So after any space error, deny
// batches are refused (507) until a complete checkpoint succeeds (TRUNCATE: the WAL file is also
// cut to zero bytes, returning its space), tried at most once per `retryMs`. Recovery needs as
// much free space as the WAL holds uncheckpointed at the failure (a few batches: the writer
// thread checkpoints every 200 ms and every 16,000 rows). Only deny batches pause: the main
// connection's few small writes (sightings, revisions, tokens) go ahead and answer 507 themselves
// when they do not fit.
import type Database from 'better-sqlite3';
import { classifySqliteCode, sqliteCodeOf } from './sqlite-errors.js';

export interface SqliteFailureReport {
  code: string | undefined;
  message: string;
}

function messageOf(error: unknown): string {
  return String((error as { message?: unknown } | null)?.message ?? error);
}

export class WalSpaceGuard {
  private owed = false;
  private lastAttemptMs = 0;
  private lastFailure: SqliteFailureReport = { code: 'SQLITE_FULL', message: 'database or disk is full' };
  private lastWarning = '';

  constructor(
    private readonly db: Database.Database,
    private readonly file: string,
    private readonly retryMs: number,
    private readonly notify: (message: string) => void,
  ) {}

  /** True while deny writes wait for a checkpoint after a space error. */
  get paused(): boolean {
    return this.owed;
  }

  private isDiskFull(error: unknown): boolean {
    return classifySqliteCode(sqliteCodeOf(error), this.file) === 'disk-full';
  }

  /**
   * Called with every write or checkpoint error: a disk-full one pauses writes. While paused the
   * answer is SQLITE_FULL whatever the original code (an SQLITE_IOERR_* of ENOSPC is classified
   * by free space, which may be back before the checkpoint that ends the pause).
   */
  noteError(error: unknown): void {
    if (!this.isDiskFull(error)) return;
    const code = sqliteCodeOf(error);
    this.lastFailure = { code: 'SQLITE_FULL', message: `${code}: ${messageOf(error)}` };
    if (this.owed) return;
    this.owed = true;
    this.lastAttemptMs = Date.now();
    this.notify(
      `database disk full (${code}): deny records are refused with 507 until a WAL checkpoint succeeds`,
    );
  }

  /**
   * Undefined when writes may go ahead; otherwise why not. While paused, tries the checkpoint
   * (at most once per retryMs) and resumes when it completes.
   */
  ready(): SqliteFailureReport | undefined {
    if (!this.owed) return undefined;
    const now = Date.now();
    if (now - this.lastAttemptMs < this.retryMs) return this.lastFailure;
    this.lastAttemptMs = now;
    try {
      const [result] = this.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
      // busy: a reader or writer kept it from completing; the next attempt finishes the job.
      if (result && result.busy !== 0) return this.lastFailure;
    } catch (error) {
      if (!this.isDiskFull(error)) return { code: sqliteCodeOf(error), message: messageOf(error) };
      this.lastFailure = { code: 'SQLITE_FULL', message: `${sqliteCodeOf(error)}: ${messageOf(error)}` };
      return this.lastFailure;
    }
    this.owed = false;
    this.notify('database disk has room again: WAL checkpointed, deny records are accepted');
    return undefined;
  }

  /** The periodic checkpoint: PASSIVE normally, the recovery attempt while paused. */
  checkpoint(): void {
    if (this.owed) {
      this.ready();
      return;
    }
    try {
      this.db.pragma('wal_checkpoint(PASSIVE)');
      this.lastWarning = '';
    } catch (error) {
      // A checkpoint that cannot grow the database file pauses writes before the WAL takes the rest.
      this.noteError(error);
      const warning = `checkpoint failed: ${messageOf(error)}`;
      if (!this.owed && warning !== this.lastWarning) this.notify(warning);
      this.lastWarning = warning;
    }
  }
}
