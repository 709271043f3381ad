// The deny writer thread: inserts deny batches on its own connection and owns WAL checkpoints, so
// the event loop keeps parsing and validating the next batches (and answering long-polls)
// meanwhile. Same statements and transaction shape as the store's in-thread path; the 202 is sent
// only after this thread has committed. Slices of `slice` rows are separate transactions so the
// main connection's writes (revisions, sightings) can get in between.
//
// Built as its own entry (dist/sqlite-deny-writer.cjs, scripts/build.mjs) and started by
// control/store/sqlite-writer-thread.ts; from TypeScript sources (tests) that file compiles it
// with esbuild. The store imports only this file's types: importing a value would start a writer.
import { parentPort, workerData } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { countAnomalies, SandboxFold } from './sandbox-progress.js';
import {
  DENY_COLUMN_COUNT,
  DENY_VALUE_INDEX,
  type DenyValue,
  INSERT_DENY_SQL,
  SANDBOX_HIGH_MARK_SQL,
  UPSERT_SANDBOX_SQL,
} from './sqlite-columns.js';
import { sqliteCodeOf } from './sqlite-errors.js';
import { WalSpaceGuard } from './sqlite-wal.js';

export interface DenyWriterData {
  role: 'bulkhead-deny-writer';
  /**
   * Resolved path of better-sqlite3 (native, never bundled): the thread may run from a string
   * (eval), where a bare `require('better-sqlite3')` would not find the repository's node_modules.
   */
  driver: string;
  file: string;
  autocheckpointPages: number;
  walSizeLimit: number;
  checkpointRows: number;
  checkpointIntervalMs: number;
  /** After a space error, how often a recovery checkpoint is tried. */
  recoveryIntervalMs: number;
  slice: number;
  /** gate[0] = 1 while the main connection wants to write; gate[1] = 1 while this thread is in a slice. */
  gate: SharedArrayBuffer;
}

/** A batch: DENY_COLUMN_COUNT values per row (sqlite-columns.ts). */
export interface DenyWriterRequest {
  id: number;
  values: DenyValue[];
}

export type DenyWriterReply =
  | { id: number; stored: number; duplicate: number; seqAnomalies: number }
  /** `stored`: rows committed (by earlier slices) before the failure. `code`: SQLite's result code. */
  | { id: number; error: string; code: string | undefined; stored: number }
  /** Something for the operator (disk full, resumed, a failed checkpoint). */
  | { notice: string };

function run(data: DenyWriterData, port: NonNullable<typeof parentPort>): void {
  const Driver = require(data.driver) as typeof Database;
  const db = new Driver(data.file, { fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  db.pragma('synchronous = NORMAL');
  db.pragma('cache_size = -65536');
  db.pragma(`wal_autocheckpoint = ${data.autocheckpointPages}`);
  db.pragma(`journal_size_limit = ${data.walSizeLimit}`);
  const insertDeny = db.prepare(INSERT_DENY_SQL);
  const upsertSandbox = db.prepare(UPSERT_SANDBOX_SQL);
  const sandboxHighMark = db.prepare(SANDBOX_HIGH_MARK_SQL).pluck();
  const post = (reply: DenyWriterReply) => port.postMessage(reply);
  const space = new WalSpaceGuard(db, data.file, data.recoveryIntervalMs, (notice) => post({ notice }));

  const gate = new Int32Array(data.gate);
  const enterSlice = () => {
    for (;;) {
      while (Atomics.load(gate, 0) === 1) Atomics.wait(gate, 0, 1, 100);
      Atomics.store(gate, 1, 1);
      if (Atomics.load(gate, 0) === 0) return;
      Atomics.store(gate, 1, 0);
      Atomics.notify(gate, 1);
    }
  };
  const leaveSlice = () => {
    Atomics.store(gate, 1, 0);
    Atomics.notify(gate, 1);
  };

  const { workload: WORKLOAD, sandboxId: SANDBOX_ID, seq: SEQ } = DENY_VALUE_INDEX;
  const insertSlice = db.transaction(
    (values: DenyValue[], from: number, to: number): { stored: number; anomalies: number } => {
      const fold = new SandboxFold();
      let stored = 0;
      for (let at = from; at < to; at += DENY_COLUMN_COUNT) {
        const changes = insertDeny.run(values.slice(at, at + DENY_COLUMN_COUNT)).changes;
        if (changes !== 1) continue;
        stored++;
        const sandboxId = values[at + SANDBOX_ID];
        const seq = values[at + SEQ];
        if (typeof sandboxId !== 'string' || typeof seq !== 'number') continue;
        fold.add(sandboxId, String(values[at + WORKLOAD]), seq);
      }
      const now = new Date().toISOString();
      const progress = fold.progress((id) => sandboxHighMark.get(id) as number | undefined);
      for (const p of progress) upsertSandbox.run(p.id, p.workload, p.maxSeq, p.received, p.anomalies, now);
      return { stored, anomalies: countAnomalies(progress) };
    },
  );

  let rowsSinceCheckpoint = 0;
  const checkpoint = () => {
    rowsSinceCheckpoint = 0;
    space.checkpoint();
  };
  const timer = setInterval(checkpoint, data.checkpointIntervalMs);

  port.on('message', (message: DenyWriterRequest | 'close') => {
    if (message === 'close') {
      clearInterval(timer);
      db.close();
      port.close();
      return;
    }
    const { id, values } = message;
    const rows = values.length / DENY_COLUMN_COUNT;
    // After a space error nothing is written until a checkpoint has made room (sqlite-wal.ts).
    const paused = space.ready();
    if (paused) {
      post({ id, error: paused.message, code: paused.code, stored: 0 });
      return;
    }
    let stored = 0;
    let seqAnomalies = 0;
    try {
      const step = data.slice * DENY_COLUMN_COUNT;
      for (let start = 0; start < values.length; start += step) {
        enterSlice();
        try {
          const slice = insertSlice.immediate(values, start, Math.min(values.length, start + step));
          stored += slice.stored;
          seqAnomalies += slice.anomalies;
        } finally {
          leaveSlice();
        }
        rowsSinceCheckpoint += data.slice;
        if (rowsSinceCheckpoint >= data.checkpointRows) checkpoint();
      }
      post({ id, stored, duplicate: rows - stored, seqAnomalies });
    } catch (error) {
      space.noteError(error);
      const text = String((error as { message?: unknown } | null)?.message ?? error);
      post({ id, error: text, code: sqliteCodeOf(error), stored });
    }
  });
}

const data = workerData as Partial<DenyWriterData> | null;
if (parentPort && data?.role === 'bulkhead-deny-writer') run(data as DenyWriterData, parentPort);
