// The apply use case: check a policy set (parse and guardrails), diff it against the current
// revision, work out which workloads it changes, store it as the next revision and install it.
// The routes (PUT /v1/policy, POST /v1/revisions/{n}/restore) call it and only translate HTTP.
// Everything that grows with the size of the set runs on the policy thread, so an apply of
// 60,000 rules does not hold up bundle fetches or /healthz; applies on one replica run one at a time.
import type { FastifyBaseLogger } from 'fastify';
import type { PolicyError, WouldBreak } from '../policy/index.js';
import type { ControlMetrics } from './metrics.js';
import type { PolicyState } from './policy-state.js';
import { PolicyThreadError, type PolicyThreadReply } from './policy-worker.js';
import { readRecordTexts } from './store/read-records.js';
import type { ControlStore, PolicySource } from './store/types.js';

const MAX_AFFECTED_LISTED = 1000;
/** Most observe-mode records a dry run decides again (the newest); beyond, the answer says it was truncated. */
export const MAX_WOULD_BREAK_RECORDS = 100_000;
const DAY_MS = 86_400_000;

/** What a dry run would block of the traffic that went through when it was recorded (policy/would-break.ts). */
export interface WouldBreakOutcome extends WouldBreak {
  /** The window: records of the last `days` days. */
  days: number;
  truncated: boolean;
}

export interface ApplyOutcome {
  revision: number;
  previousRevision: number;
  dryRun: boolean;
  unchanged: boolean;
  restoredFrom?: number;
  /** Dry runs only. */
  wouldBreak?: WouldBreakOutcome;
  affectedWorkloads: { count: number; workloads: { key: string; identity: Record<string, string> }[] };
}

export type ApplyResult =
  /** `diffJson`: the diff against the previous revision as JSON text (never parsed on this thread). */
  | {
      ok: true;
      outcome: ApplyOutcome;
      diffJson: string;
      /** `{"before":…,"after":…}`: each SmartGroup's blast radius under the previous and this set, JSON text. */
      blastRadiusJson: string;
    }
  | { ok: false; error: 'invalid-policy' | 'guardrail-violation'; errors: PolicyError[] };

export interface ApplyOptions {
  dryRun: boolean;
  restoredFrom?: number | undefined;
  tokenId?: string | undefined;
  /** Dry runs: the window of observe-mode records decided again under the new set (default 7 days). */
  breakDays?: number | undefined;
}

export interface ApplyContext {
  store: ControlStore;
  state: PolicyState;
  metrics: ControlMetrics;
  flushSightings(): Promise<void>;
  log: FastifyBaseLogger;
}

/** Same files with the same texts, in order (plain comparison: a set can be megabytes). */
function sameSources(a: PolicySource[], b: PolicySource[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (a[i]?.file !== b[i]?.file || a[i]?.text !== b[i]?.text) return false;
  }
  return true;
}

export class PolicyApplier {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly context: ApplyContext) {}

  /** The recorded would-deny traffic of the last `days` days that the checked set (`token`) blocks. */
  private async wouldBreak(token: number, days: number): Promise<WouldBreakOutcome> {
    const { store, state } = this.context;
    // The newest first: when there are more than the bound, the oldest are left out.
    const { records, truncated } = await readRecordTexts(
      store,
      { decision: 'deny', sinceMs: Date.now() - days * DAY_MS, order: 'desc' },
      MAX_WOULD_BREAK_RECORDS,
    );
    const reply = await state.worker.ask({ op: 'would-break', token, records });
    if (!reply.wouldBreak) throw new PolicyThreadError('the policy thread answered without a result');
    return { days, truncated, ...reply.wouldBreak };
  }

  /** Checks, diffs and (unless dryRun or unchanged) stores `sources` as the next revision. */
  apply(sources: PolicySource[], options: ApplyOptions): Promise<ApplyResult> {
    const run = this.queue.then(() => this.applyNow(sources, options));
    this.queue = run.catch(() => {});
    return run;
  }

  private async applyNow(sources: PolicySource[], options: ApplyOptions): Promise<ApplyResult> {
    const { store, state, metrics } = this.context;
    const token = state.worker.newToken();
    let installed = false;
    try {
      const checking = state.worker.request({ op: 'check', sources, token, forStore: !options.dryRun });
      // Which workloads the set changes is asked right behind the check (the thread answers in
      // order), from the inventory listed while the thread parses: an apply of a small set at
      // 10,000 workloads waits for one parse and one walk, not a round trip and a listing between.
      let affecting: Promise<Extract<PolicyThreadReply, { ok: true }>> | undefined;
      try {
        await this.context.flushSightings();
        affecting = state.worker.ask({
          op: 'affected',
          token,
          keys: await store.listWorkloadKeys(),
          limit: MAX_AFFECTED_LISTED,
        });
      } finally {
        // When the check fails, so does this; the check's answer is the one reported.
        void affecting?.catch(() => {});
        void checking.catch(() => {});
      }
      const checked = await checking;
      if (!checked.ok) {
        if (!('errors' in checked)) throw new PolicyThreadError(checked.message);
        metrics.applies.inc({ result: checked.error === 'invalid-policy' ? 'invalid' : 'guardrail' });
        return checked;
      }
      const { diffJson, blastRadiusJson, sourcesJson } = checked;
      if (diffJson === undefined || blastRadiusJson === undefined)
        throw new PolicyThreadError('check answered without a diff');
      const current = state.current;
      const previousRevision = current?.revision ?? 0;
      const outcome: ApplyOutcome = {
        revision: previousRevision,
        previousRevision,
        dryRun: options.dryRun,
        unchanged: current !== undefined && sameSources(current.sources, sources),
        affectedWorkloads: { count: 0, workloads: [] },
      };
      if (options.restoredFrom !== undefined) outcome.restoredFrom = options.restoredFrom;
      if (outcome.unchanged && !options.dryRun) {
        metrics.applies.inc({ result: 'unchanged' });
        return { ok: true, outcome, diffJson, blastRadiusJson };
      }
      // Worked out before storing, so that the answer is ready when the revision is installed
      // (installing wakes every parked long-poll).
      const affected = await affecting;
      outcome.affectedWorkloads = affected.affected ?? { count: 0, workloads: [] };
      if (options.dryRun) {
        outcome.wouldBreak = await this.wouldBreak(token, options.breakDays ?? 7);
        metrics.applies.inc({ result: 'dry-run' });
        return { ok: true, outcome, diffJson, blastRadiusJson };
      }
      const createdAt = new Date().toISOString();
      const files = sources.map((s) => s.file);
      // Who applied it, as `bulkhead revisions` shows: the token's id and the name it was created with.
      const appliedBy = options.tokenId ?? null;
      const appliedByName = appliedBy === null ? null : ((await store.findToken(appliedBy))?.name ?? null);
      const summaryJson = `{"diff":${diffJson},"files":${JSON.stringify(files)},"appliedBy":${JSON.stringify(appliedBy)},"appliedByName":${JSON.stringify(appliedByName)}}`;
      const restoredFrom = options.restoredFrom ?? null;
      const row = { createdAt, sources, restoredFrom, summary: null };
      const revision = await store.appendRevision({
        ...row,
        summaryJson,
        ...(sourcesJson === undefined ? {} : { sourcesJson }),
      });
      installed = true;
      await state.prepare({ ...row, revision }, token).catch((error: Error) => {
        // Stored but not installed here: the revision is reloaded from the store like any announced one.
        this.context.log.error({ err: error, revision }, 'could not install the revision just stored');
        void state.advance(revision);
      });
      metrics.applies.inc({ result: 'stored' });
      this.context.log.info(
        { revision, files, affected: outcome.affectedWorkloads.count },
        'policy revision stored',
      );
      outcome.revision = revision;
      return { ok: true, outcome, diffJson, blastRadiusJson };
    } finally {
      if (!installed) void state.worker.request({ op: 'discard', token }).catch(() => {});
    }
  }
}
