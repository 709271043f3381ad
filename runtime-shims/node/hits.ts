// Rule hit counts (docs/contracts.md §3): every allow decision counted per rule id, under the
// revision that made it — a counter, no record — and handed over with the records (records.ts) or
// by a heartbeat. `bulkhead policy unused` reads them at the control API.
//
// Cost on the hot path: one comparison of the revision and one property increment on an object
// with no prototype (nothing a program could have replaced on Object.prototype or Map.prototype is
// involved). Measured by test/bench/shim-decide.bench.ts ("hit counting").
import type { WorkloadIdentity } from '../../policy/types.js';

/** What a shim hands over: the allow decisions of one revision's rules over a window. */
export interface HitCount {
  workload: WorkloadIdentity;
  revision: number;
  since: string;
  until: string;
  rules: Record<string, number>;
}

/** Counts kept per closed revision while nothing takes them (a revision changing again and again). */
const MAX_CLOSED = 16;

export class HitCounter {
  #counts: Record<string, number> = Object.create(null) as Record<string, number>;
  #any = false;
  #revision = -1;
  #sinceMs = 0;
  #closed: HitCount[] = [];

  constructor(
    private readonly workload: () => WorkloadIdentity,
    /** Called when a count starts after the last hand-over: time to schedule one (the heartbeat). */
    private readonly onCounting: () => void,
  ) {}

  /** One allow decision of `rule` under `revision` (≥ 0: decisions of the fail mode are not a rule's). */
  count(rule: string, revision: number): void {
    if (revision !== this.#revision) this.#switchTo(revision);
    if (!this.#any) {
      this.#any = true;
      this.#sinceMs = Date.now();
      // Only the first count since the last hand-over (closed counts of a revision wait with it).
      if (this.#closed.length === 0) this.onCounting();
    }
    const counts = this.#counts;
    counts[rule] = (counts[rule] ?? 0) + 1;
  }

  get pending(): boolean {
    return this.#any || this.#closed.length > 0;
  }

  /** Everything counted since the last call, as hit counts (oldest revision first); counting starts again. */
  take(): HitCount[] {
    const out = this.#closed;
    this.#closed = [];
    const open = this.#close();
    if (open) out.push(open);
    return out;
  }

  #switchTo(revision: number): void {
    const open = this.#close();
    if (open) {
      if (this.#closed.length >= MAX_CLOSED) this.#closed.shift();
      this.#closed.push(open);
    }
    this.#revision = revision;
  }

  #close(): HitCount | undefined {
    if (!this.#any) return undefined;
    const count: HitCount = {
      workload: this.workload(),
      revision: this.#revision,
      since: new Date(this.#sinceMs).toISOString(),
      until: new Date().toISOString(),
      rules: { ...this.#counts },
    };
    this.#counts = Object.create(null) as Record<string, number>;
    this.#any = false;
    return count;
  }
}
