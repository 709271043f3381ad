// Rule hit counts (docs/contracts.md §3): every allow decision counted per rule id, under the
// revision that made it — a counter, no record — and handed over with the records (records.ts) or
// by a heartbeat. `bulkhead policy unused` reads them at the control API.
//
// Cost on the hot path: one comparison of the revision, one Map lookup by the decision object (the
// engine hands out one frozen Decision per rule and revision, so identity hashing, no string hashing)
// and one increment. Map.prototype.get/set are watched builtins: a decision is refused before it
// gets here when one was replaced (harden.ts). Measured by test/bench/shim-decide.bench.ts.
import type { Decision, WorkloadIdentity } from '../../policy/types.js';

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
  /** Per decision object: its rule and a count cell (incremented in place: one lookup per decision). */
  #counts = new Map<Decision, { rule: string; n: number }>();
  #any = false;
  #revision = -1;
  #sinceMs = 0;
  #closed: HitCount[] = [];

  constructor(
    private readonly workload: () => WorkloadIdentity,
    /** Called when a count starts after the last hand-over: time to schedule one (the heartbeat). */
    private readonly onCounting: () => void,
  ) {}

  /** One allow decision under `revision` (≥ 0: decisions of the fail mode are not a rule's). */
  count(decision: Decision, revision: number): void {
    if (revision !== this.#revision) this.#switchTo(revision);
    if (!this.#any) {
      this.#any = true;
      this.#sinceMs = Date.now();
      // Only the first count since the last hand-over (closed counts of a revision wait with it).
      if (this.#closed.length === 0) this.onCounting();
    }
    const cell = this.#counts.get(decision);
    if (cell !== undefined) cell.n++;
    else this.#counts.set(decision, { rule: decision.rule, n: 1 });
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

  /** The counts summed per rule id (several decision objects may carry one rule: by name, by address). */
  #byRule(): Record<string, number> {
    const rules = Object.create(null) as Record<string, number>;
    for (const { rule, n } of this.#counts.values()) rules[rule] = (rules[rule] ?? 0) + n;
    return { ...rules };
  }

  #close(): HitCount | undefined {
    if (!this.#any) return undefined;
    const count: HitCount = {
      workload: this.workload(),
      revision: this.#revision,
      since: new Date(this.#sinceMs).toISOString(),
      until: new Date().toISOString(),
      rules: this.#byRule(),
    };
    this.#counts = new Map();
    this.#any = false;
    return count;
  }
}
