// The shim's end-of-invocation signal (docs/contracts.md §6): `invocation-done` holds the record
// `<requestId> <queued>` (runtime-shims/node/aws/extension-sync.ts), written by the shim as the handler returns, after its records reached the
// spool. The extension waits for it instead of the platform's `runtimeDone` (buffered ≥ 25 ms): with
// nothing queued it calls next at once, so an invocation without a deny costs no billed time here.
// The shim creates the file when it is set up, so its existence says a shim will answer.
import { existsSync, type FSWatcher, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import { parseLine } from '../runtime-shims/node/aws/extension-sync.js';
import { readTextIfExists } from './state-files.js';

/** Backup poll while inotify watches (a missed event costs at most this); without inotify, the poll. */
const POLL_WITH_WATCH_MS = 50;
const POLL_WITHOUT_WATCH_MS = 2;

export class DoneWatcher {
  #watcher: FSWatcher | undefined;
  #attached = false;
  #wake: (() => void) | undefined;

  constructor(private readonly file: string) {}

  start(): void {
    const name = basename(this.file);
    try {
      this.#watcher = watch(dirname(this.file), { persistent: false }, (_event, changed) => {
        if (changed === null || changed === name) this.#wake?.();
      });
      this.#watcher.on('error', () => {
        this.#watcher = undefined;
      });
    } catch {
      this.#watcher = undefined;
    }
  }

  /** A shim set itself up in this sandbox (sticky once seen). */
  attached(): boolean {
    if (!this.#attached) this.#attached = existsSync(this.file);
    return this.#attached;
  }

  /**
   * The number of records the shim queued in `requestId`; undefined when it did not say by `deadline`
   * (epoch ms) or the `backstop` (the platform's runtimeDone) settled first.
   */
  async wait(requestId: string, deadline: number, backstop?: Promise<void>): Promise<number | undefined> {
    let backstopped = false;
    void backstop?.then(() => {
      backstopped = true;
      this.#wake?.();
    });
    for (;;) {
      const queued = this.#read(requestId);
      if (queued !== undefined || backstopped) return queued;
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

  #read(requestId: string): number | undefined {
    const line = parseLine(readTextIfExists(this.file) ?? '');
    return line?.id === requestId ? line.value : undefined;
  }
}
