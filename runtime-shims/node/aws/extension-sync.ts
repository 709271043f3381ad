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
// is exempted from policy for it. Each file holds one fixed-size record, `<requestId> <number>\n`
// padded with spaces, rewritten in place by one write on a kept descriptor (a truncating write costs
// ~0.2 ms here, this ~2 µs). A reader may catch a record half written: it takes only a whole line and
// re-reads at the next change. The number is advisory: the wrapper decides whether to reload by the
// bundle file's identity, the extension whether to forward by the spool itself, so a torn read can
// delay a wait but never change a decision.
import {
  closeSync,
  constants,
  type FSWatcher,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  watch,
  writeSync,
} from 'node:fs';
import { basename, dirname } from 'node:path';

/** Lambda request ids are UUIDs: printable ASCII up to 200 characters is written, anything else is not one. */
const SENDABLE_REQUEST_ID = /^[\x21-\x7e]{1,200}$/;
/** One record: the longest line (a 200-character id, a space, 16 digits, a newline) fits. */
const RECORD_BYTES = 256;
/** Ids are printable ASCII (Lambda's are UUIDs): one byte a character, no whitespace in the record. */
const LINE = /^([\x21-\x7e]{1,200}) (\d{1,16})\n *$/;

/** `<id> <number>` from a record, or undefined when the text is not one whole record line. */
export function parseLine(text: string): { id: string; value: number } | undefined {
  const match = LINE.exec(text);
  return match ? { id: match[1] as string, value: Number(match[2]) } : undefined;
}

/** A record file written in place (see the header). */
export class LineFile {
  readonly #record = Buffer.alloc(RECORD_BYTES);
  #fd: number | undefined;

  constructor(
    readonly path: string,
    private readonly mode: number,
  ) {}

  /**
   * Creates the file (and its folder: the runtime may set up its wrapper before the extension made the
   * state dir, as both start together) when missing; true when it was empty (no record written yet).
   */
  open(): boolean {
    if (this.#fd === undefined) {
      mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
      this.#fd = openSync(this.path, constants.O_WRONLY | constants.O_CREAT, this.mode);
    }
    return fstatSync(this.#fd).size === 0;
  }

  write(id: string, value: number): void {
    if (!SENDABLE_REQUEST_ID.test(id))
      throw new RangeError('not a request id (printable ASCII, at most 200)');
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError('not a record number');
    this.open();
    this.#record.fill(0x20);
    this.#record.write(`${id} ${value}\n`, 0, 'latin1');
    writeSync(this.#fd as number, this.#record, 0, RECORD_BYTES, 0);
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/** Backup poll while inotify watches (a missed event costs at most this); without inotify, the poll. */
const POLL_WITH_WATCH_MS = 50;
const POLL_WITHOUT_WATCH_MS = 1;

export class ExtensionSyncError extends Error {
  override readonly name = 'ExtensionSyncError';
}

export function isSendableRequestId(requestId: unknown): requestId is string {
  return typeof requestId === 'string' && SENDABLE_REQUEST_ID.test(requestId);
}

/** The number the record file holds for `requestId`, or undefined when it names another request (or none). */
export function readReady(file: string, requestId: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'latin1');
  } catch {
    return undefined;
  }
  const line = parseLine(text);
  return line?.id === requestId ? line.value : undefined;
}

/**
 * The reading side of a record file, for both directions (the wrapper waits for the ready record, the
 * extension for the done record): `wait` re-reads at every change inotify reports on the folder once
 * `watch()` was called, and polls as a backup (or alone, without a watch).
 */
export class RecordWatcher {
  #watcher: FSWatcher | undefined;
  #wake: (() => void) | undefined;

  constructor(readonly path: string) {}

  watch(): void {
    if (this.#watcher !== undefined) return;
    const name = basename(this.path);
    try {
      this.#watcher = watch(dirname(this.path), { persistent: false }, (_event, changed) => {
        if (changed === null || changed === name) this.#wake?.();
      });
      this.#watcher.on('error', () => {
        this.#watcher = undefined;
      });
    } catch {
      this.#watcher = undefined;
    }
  }

  /**
   * The number in the record for `requestId`; undefined when none came by `deadline` (epoch ms) or the
   * `backstop` settled first.
   */
  async wait(requestId: string, deadline: number, backstop?: Promise<void>): Promise<number | undefined> {
    let backstopped = false;
    void backstop?.then(() => {
      backstopped = true;
      this.#wake?.();
    });
    for (;;) {
      const value = readReady(this.path, requestId);
      if (value !== undefined || backstopped) return value;
      const remaining = deadline - Date.now();
      if (remaining <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(
          resolve,
          Math.min(remaining, this.#watcher ? POLL_WITH_WATCH_MS : POLL_WITHOUT_WATCH_MS),
        );
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}

/** Waits until the ready file names `requestId`; resolves its revision, rejects after `timeoutMs`. */
export async function waitForReady(file: string, requestId: string, timeoutMs: number): Promise<number> {
  const now = readReady(file, requestId);
  if (now !== undefined) return now;
  const records = new RecordWatcher(file);
  records.watch();
  try {
    const revision = await records.wait(requestId, Date.now() + timeoutMs);
    if (revision === undefined)
      throw new ExtensionSyncError(`the extension did not mark ${requestId} ready within ${timeoutMs} ms`);
    return revision;
  } finally {
    records.close();
  }
}
