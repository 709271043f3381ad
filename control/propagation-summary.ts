// The propagation summary of GET /v1/workloads: per SmartGroup, how many workloads hold the
// current revision and how many an older one. Nothing here resolves identities: the store counts
// workloads per stored scope (one row per scope, from the (scope, revision) index) and each scope
// names its SmartGroups (a scope id is a hash of them; store table workload_scopes). A workload
// counts in the groups of the bundle it holds — for a current one, its groups under the current
// revision; for one behind, those of the bundle it last fetched, until it fetches the new one.
// Computed at most once per revision and second, however many pages are asked for meanwhile.
import type { ControlStore } from './store/types.js';

export interface GroupPropagation {
  name: string;
  workloads: number;
  current: number;
  behind: number;
}

export interface PropagationSummary {
  revision: number;
  /** When the counts were taken (ISO-8601): at most SUMMARY_MAX_AGE_MS before the answer. */
  countedAt: string;
  groups: GroupPropagation[];
}

/** How long a summary is answered again for the same revision. */
export const SUMMARY_MAX_AGE_MS = 1000;

export class PropagationSummaries {
  private cached: { summary: PropagationSummary; atMs: number } | undefined;
  private pending: { revision: number; summary: Promise<PropagationSummary> } | undefined;

  constructor(
    private readonly store: ControlStore,
    private readonly maxAgeMs = SUMMARY_MAX_AGE_MS,
  ) {}

  get(revision: number, nowMs = Date.now()): Promise<PropagationSummary> {
    const cached = this.cached;
    if (cached && cached.summary.revision === revision && nowMs - cached.atMs < this.maxAgeMs)
      return Promise.resolve(cached.summary);
    if (this.pending?.revision === revision) return this.pending.summary;
    const summary = this.count(revision, nowMs);
    const pending = { revision, summary };
    this.pending = pending;
    summary.then(
      (result) => {
        if (this.pending === pending) this.pending = undefined;
        this.cached = { summary: result, atMs: nowMs };
      },
      () => {
        if (this.pending === pending) this.pending = undefined;
      },
    );
    return summary;
  }

  private async count(revision: number, nowMs: number): Promise<PropagationSummary> {
    const byGroup = new Map<string, GroupPropagation>();
    for (const { groups, current, behind } of await this.store.scopeCounts(revision)) {
      for (const name of groups ?? []) {
        let group = byGroup.get(name);
        if (!group) {
          group = { name, workloads: 0, current: 0, behind: 0 };
          byGroup.set(name, group);
        }
        group.workloads += current + behind;
        group.current += current;
        group.behind += behind;
      }
    }
    return {
      revision,
      countedAt: new Date(nowMs).toISOString(),
      groups: [...byGroup.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    };
  }
}
