// The shim's side of the Bulkhead extension's per-invocation files (docs/contracts.md §6), in the
// sandbox's state dir:
//  - `invocation-ready` (`<requestId> <revision>`), written by the extension at each INVOKE once the
//    bundle on disk is the newest: the wrapper waits for its request id before the handler runs, so a
//    policy applied before the INVOKE governs the invocation's first connection;
//  - `invocation-done` (`<requestId> <queued>`), written here as the handler returns, after its records
//    reached the spool: the extension forwards them before the sandbox freezes, and waits for nothing
//    when nothing was queued. The wrapper creates the file when it is set up: its existence tells the
//    extension that a shim will answer.
// Files, not a local HTTP endpoint: reading one costs microseconds, no port can collide, and nothing
// is exempted from policy for it.
import { type FSWatcher, readFileSync, watch, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';

/** Lambda request ids are UUIDs; anything far longer, or with whitespace, is not one and is not written. */
const SENDABLE_REQUEST_ID = /^[^\s]{1,200}$/;
/** A whole line only: the extension writes in place, so a read may catch it half written (and waits on). */
const READY_LINE = /^(\S{1,200}) (\d{1,15})\n$/;
/** Backup poll while inotify watches (a missed event costs at most this); without inotify, the poll. */
const POLL_WITH_WATCH_MS = 50;
const POLL_WITHOUT_WATCH_MS = 1;

export class ExtensionSyncError extends Error {
  override readonly name = 'ExtensionSyncError';
}

export function isSendableRequestId(requestId: unknown): requestId is string {
  return typeof requestId === 'string' && SENDABLE_REQUEST_ID.test(requestId);
}

/** The revision the ready file names for `requestId`, or undefined when it names another request (or none). */
export function readReady(file: string, requestId: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'latin1');
  } catch {
    return undefined;
  }
  const match = READY_LINE.exec(text);
  return match && match[1] === requestId ? Number(match[2]) : undefined;
}

/** Waits until the ready file names `requestId`; resolves its revision, rejects after `timeoutMs`. */
export function waitForReady(file: string, requestId: string, timeoutMs: number): Promise<number> {
  const now = readReady(file, requestId);
  if (now !== undefined) return Promise.resolve(now);
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    let watcher: FSWatcher | undefined;
    let timer: NodeJS.Timeout | undefined;
    const finish = (revision: number | undefined) => {
      watcher?.close();
      if (timer !== undefined) clearTimeout(timer);
      if (revision !== undefined) resolve(revision);
      else
        reject(
          new ExtensionSyncError(`the extension did not mark ${requestId} ready within ${timeoutMs} ms`),
        );
    };
    const check = () => {
      const revision = readReady(file, requestId);
      if (revision !== undefined) return finish(revision);
      const remaining = deadline - Date.now();
      if (remaining <= 0) return finish(undefined);
      if (timer !== undefined) clearTimeout(timer);
      timer = setTimeout(check, Math.min(remaining, watcher ? POLL_WITH_WATCH_MS : POLL_WITHOUT_WATCH_MS));
    };
    const name = basename(file);
    try {
      watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
        if (changed === null || changed === name) check();
      });
      watcher.on('error', () => {
        watcher = undefined;
      });
    } catch {
      watcher = undefined;
    }
    check();
  });
}

/**
 * The handler of `requestId` returned with `queued` records in the spool. In place, one write (no temp
 * file and rename: this runs on every invocation's path); the extension takes only a whole line.
 */
export function writeDone(file: string, requestId: string, queued: number): void {
  writeFileSync(file, `${requestId} ${queued}\n`, { mode: 0o600 });
}

/** A shim will say done for every invocation from now on (written once, when the wrapper is set up). */
export function announceShim(file: string): void {
  try {
    writeFileSync(file, '- 0\n', { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}
