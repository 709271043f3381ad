// The store's side of the deny writer thread (control/store/sqlite-deny-writer.ts): starts it,
// sends it batches, and turns its answers back into results or StoreUnavailableErrors.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { workerProgram } from '../worker-program.js';
import { insertResult } from './sandbox-progress.js';
import { flattenDenyRows } from './sqlite-columns.js';
import type { DenyWriterData, DenyWriterReply } from './sqlite-deny-writer.js';
import { classifySqliteCode, storeUnavailable } from './sqlite-errors.js';
import type { DenyRow, InsertDeniesResult } from './types.js';

export type DenyWriterSettings = Omit<DenyWriterData, 'role' | 'driver' | 'file' | 'gate'>;

/** Inserts deny batches on a worker thread; `alive` turns false for good if the thread fails. */
export class DenyWriter {
  alive = true;
  private closing = false;
  private readonly worker: Worker;
  private readonly exited: Promise<void>;
  private readonly pending = new Map<
    number,
    { rows: number; resolve: (result: InsertDeniesResult) => void; reject: (error: Error) => void }
  >();
  private nextId = 1;

  /**
   * Shared with the thread. Slices follow each other back to back, so a writer on the main
   * connection sleeping in SQLite's busy handler could miss every gap between them; instead it
   * raises gate[0], waits (at most one slice) for gate[1] to drop, and the thread holds off
   * until it lowers gate[0] again.
   */
  private readonly gate = new Int32Array(new SharedArrayBuffer(8));

  /** Throws when the thread cannot be started (the store then writes on its own connection). */
  constructor(
    private readonly file: string,
    settings: DenyWriterSettings,
    onError: (message: string) => void,
    onNotice: (message: string) => void,
  ) {
    // dist/sqlite-deny-writer.cjs beside the bundle, or compiled from sources (control/worker-program.ts).
    const program = workerProgram(
      import.meta.url,
      'sqlite-deny-writer',
      'control/store/sqlite-deny-writer.ts',
      ['better-sqlite3'],
    );
    const workerData: DenyWriterData = {
      ...settings,
      role: 'bulkhead-deny-writer',
      driver: createRequire(import.meta.url).resolve('better-sqlite3'),
      file,
      gate: this.gate.buffer as SharedArrayBuffer,
    };
    this.worker = new Worker(program.filename, { eval: program.eval, workerData });
    this.worker.on('message', (message: DenyWriterReply) => {
      if ('notice' in message) {
        onNotice(message.notice);
        return;
      }
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (this.pending.size === 0) this.worker.unref();
      if ('error' in message) waiter.reject(this.failure(message, waiter.rows));
      else waiter.resolve(insertResult(message.stored, message.duplicate, message.seqAnomalies));
    });
    const fail = (reason: string) => {
      const wasAlive = this.alive;
      this.alive = false;
      if (wasAlive && !this.closing) onError(reason);
      // Whether the thread committed these is unknown; a resend is safe (idempotent by id), so 503.
      for (const waiter of this.pending.values()) {
        waiter.reject(storeUnavailable('unavailable', `deny writer thread: ${reason}`));
      }
      this.pending.clear();
    };
    this.worker.on('error', (error) => fail(error.message));
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', (code) => {
        fail(`exited with code ${code}`);
        resolve();
      }),
    );
    this.worker.unref();
  }

  private failure(message: { error: string; code: string | undefined; stored: number }, rows: number): Error {
    const failure = classifySqliteCode(message.code, this.file);
    if (failure === undefined) {
      return Object.assign(new Error(`deny insert failed: ${message.error}`), { code: message.code });
    }
    // Nothing of the batch is acknowledged; what earlier slices committed counts as duplicate on resend.
    const detail =
      message.stored > 0
        ? ` (${message.stored} of the batch's ${rows} records were stored before the failure; resend the batch)`
        : '';
    return storeUnavailable(failure, message.code ?? 'SQLITE', detail, new Error(message.error));
  }

  /** Runs `write` on the main connection while the thread is between slices. */
  exclusive<T>(write: () => T): T {
    Atomics.store(this.gate, 0, 1);
    try {
      // Bounded waits: a thread that died mid-slice must not hang the event loop.
      for (let waited = 0; Atomics.load(this.gate, 1) === 1 && this.alive && waited < 50; waited++) {
        Atomics.wait(this.gate, 1, 1, 100);
      }
      return write();
    } finally {
      Atomics.store(this.gate, 0, 0);
      Atomics.notify(this.gate, 0);
    }
  }

  insert(rows: DenyRow[]): Promise<InsertDeniesResult> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      // Referenced while batches are in flight: a process with nothing else to do waits for their answer.
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { rows: rows.length, resolve, reject });
      // One flat array of column values: cloning it to the thread costs a fraction of cloning row objects.
      this.worker.postMessage({ id, values: flattenDenyRows(rows) });
    });
  }

  async close(): Promise<void> {
    // Queued after every batch already sent, so those are committed first.
    this.closing = true;
    // Held until it has exited: an unreferenced thread lets a short-lived process (the CLI) end
    // while its close is still awaited, and whatever follows the close never runs.
    this.worker.ref();
    this.worker.postMessage('close');
    await this.exited;
  }
}
