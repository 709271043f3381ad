// Files the extension keeps in the sandbox's state dir (BULKHEAD_STATE_DIR, in Lambda's /tmp):
// the verified bundle the shim reads, the status and ready files the shim waits for, and the spool
// cursor (docs/contracts.md §6). Every write is atomic (temp file + rename) so a freeze or a kill never
// leaves a half-written file for the shim.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const BUNDLE_FILE = 'bundle.json';
export const SPOOL_FILE = 'spool.ndjson';
/** The extension's first bundle answer: the shim's first decision waits (bounded) until it exists. */
export const STATUS_FILE = 'extension-status.json';
/** `<requestId> <revision>`: written at each INVOKE once the bundle on disk is the newest. */
export const READY_FILE = 'invocation-ready';
/** `<requestId> <queued>`: written by the shim as each handler returns (see done-watcher.ts). */
export const DONE_FILE = 'invocation-done';
export const CURSOR_FILE = 'spool.cursor.json';

export function ensureStateDir(stateDir: string): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
}

export function writeFileAtomic(file: string, content: string, mode = 0o600): void {
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(temp, content, { mode });
    renameSync(temp, file);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
}

export function readTextIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

export function bundlePath(stateDir: string): string {
  return join(stateDir, BUNDLE_FILE);
}

export function spoolPath(stateDir: string): string {
  return join(stateDir, SPOOL_FILE);
}

/** Where the forwarder is in the spool, and the per-sandbox numbering of forwarded records. */
export interface SpoolCursor {
  sandboxId: string;
  /** Byte offset of the first record not yet acknowledged by the control API. */
  offset: number;
  /** Sequence number the record at `offset` gets. */
  nextSeq: number;
  /** Inode of the spool the offset belongs to; a different file starts from 0. */
  inode: number;
}

export function readCursor(stateDir: string): SpoolCursor | undefined {
  const text = readTextIfExists(join(stateDir, CURSOR_FILE));
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text) as Partial<SpoolCursor>;
    if (
      typeof value.sandboxId === 'string' &&
      /^[A-Za-z0-9-]{1,64}$/.test(value.sandboxId) &&
      Number.isSafeInteger(value.offset) &&
      Number.isSafeInteger(value.nextSeq) &&
      Number.isSafeInteger(value.inode) &&
      (value.offset ?? -1) >= 0 &&
      (value.nextSeq ?? -1) >= 1
    )
      return value as SpoolCursor;
  } catch {
    // A corrupt cursor is replaced below; records are re-sent and deduplicated by id.
  }
  return undefined;
}

export function writeCursor(stateDir: string, cursor: SpoolCursor): void {
  writeFileAtomic(join(stateDir, CURSOR_FILE), JSON.stringify(cursor));
}
