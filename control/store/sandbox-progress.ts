// Per-sandbox progress of numbered deny records (contract §4: `seq` counts from 1 per `sandboxId`):
// the highest sequence number seen and how many records arrived, whose difference is the records
// that never did (`missingRecords`). Shared by both engines and the SQLite writer thread.
//
// A workload token can send any `seq`: one forged record with seq 9,007,199,254,740,990 for another
// sandbox would otherwise count that many missing records. A number more than MAX_SEQ_JUMP beyond
// the sandbox's highest plausible one (0 for a sandbox not seen yet) is therefore an anomaly: the
// record is stored (it is evidence), but it neither raises the high mark nor counts as received;
// it is counted in the sandbox's `seq_anomalies` instead.
import type { InsertDeniesResult } from './types.js';

/**
 * The largest step a sandbox's sequence may take between what the control API has seen and a new
 * record. A shim skips a number only for a record it had to drop (a full queue during a flood that
 * aggregation could not absorb, contract §3); 100,000 consecutive drops is beyond any real outage.
 */
export const MAX_SEQ_JUMP = 100_000;

export interface SandboxProgress {
  id: string;
  workload: string;
  /** The plausible high mark after this batch (at least the stored one). */
  maxSeq: number;
  /** Records of this batch that count as received. */
  received: number;
  /** Records of this batch whose seq jumped implausibly. */
  anomalies: number;
}

/** Collects the numbered records one batch stored, then folds them per sandbox against the stored high marks. */
export class SandboxFold {
  private readonly bySandbox = new Map<string, { workload: string; seqs: number[] }>();

  add(sandboxId: string, workload: string, seq: number): void {
    const entry = this.bySandbox.get(sandboxId);
    if (entry) entry.seqs.push(seq);
    else this.bySandbox.set(sandboxId, { workload, seqs: [seq] });
  }

  get sandboxIds(): string[] {
    return [...this.bySandbox.keys()];
  }

  /**
   * `storedMaxSeq(id)`: the sandbox's high mark before this batch (undefined: a new sandbox). A
   * batch's numbers are taken in ascending order, so the order records arrive in within a batch
   * does not matter.
   */
  progress(storedMaxSeq: (id: string) => number | undefined): SandboxProgress[] {
    const out: SandboxProgress[] = [];
    for (const [id, { workload, seqs }] of this.bySandbox) {
      seqs.sort((a, b) => a - b);
      let high = storedMaxSeq(id) ?? 0;
      let received = 0;
      let anomalies = 0;
      for (const seq of seqs) {
        if (seq > high + MAX_SEQ_JUMP) anomalies++;
        else {
          received++;
          if (seq > high) high = seq;
        }
      }
      out.push({ id, workload, maxSeq: high, received, anomalies });
    }
    return out;
  }
}

/** A batch's result as the store interface has it: `seqAnomalies` only when there were any. */
export function insertResult(stored: number, duplicate: number, seqAnomalies: number): InsertDeniesResult {
  return seqAnomalies > 0 ? { stored, duplicate, seqAnomalies } : { stored, duplicate };
}

export function countAnomalies(progress: readonly SandboxProgress[]): number {
  let total = 0;
  for (const p of progress) total += p.anomalies;
  return total;
}
