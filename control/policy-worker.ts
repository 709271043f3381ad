// The main thread's handle on the policy thread (control/policy-thread.ts): typed requests, one
// answer each, in order. If the thread dies it is started again; whatever was in flight fails
// (the caller answers 503, or retries the revision on the next head check).
import { Worker } from 'node:worker_threads';
import type {
  HitTotalInput,
  MergedSet,
  PolicyError,
  RuleUsage,
  Suggestion,
  WouldBreak,
} from '../policy/index.js';
import type { Mode, WorkloadIdentity } from '../policy/types.js';
import type { PolicySource } from './store/types.js';
import { workerProgram } from './worker-program.js';

export interface PolicyThreadData {
  privateKeyPem: string;
  bundleTtlMs: number;
  /** Most scopes signed while installing a revision (the rest are signed on first request). */
  signAtInstall: number;
  /** Passes of the warm-up at thread start (control/policy-warm-up.ts); 0: none. */
  warmUpPasses: number;
}

export interface ResolvedText {
  /** Canonical identity text: the inventory key. */
  key: string;
  scope: string;
  groups: string[];
}

export interface SignedScope {
  scope: string;
  epoch: number;
  groups: string[];
  /** The canonical envelope JSON. */
  body: Uint8Array;
}

export type PolicyThreadRequest =
  /** `token` (from `newToken()`) names the checked set for the requests that follow, which may be sent before the answer. */
  /** `forStore`: the set is to be stored (not a dry run): answer `sourcesJson` too. */
  | { op: 'check'; sources: PolicySource[]; token: number; forStore: boolean }
  | {
      op: 'affected';
      token: number;
      /** Canonical identity texts of the inventory (the thread parses them: cheaper than cloning objects). */
      keys: string[];
      limit: number;
    }
  | { op: 'discard'; token: number }
  /** The blast radius of the installed set, per SmartGroup and for each identity text given. */
  | { op: 'blast-radius'; keys: string[] }
  | {
      op: 'install';
      revision: number;
      createdMs: number;
      /** The token of a successful `check` (an apply): its set is installed; else `sources` are parsed. */
      candidate?: number;
      sources: PolicySource[];
      /**
       * Canonical identity texts the main thread has resolved for the current revision: every one
       * when `everyKey`, else one per scope (enough while the SmartGroups stay the same).
       */
      keys: string[];
      everyKey: boolean;
      /** Indexes into `keys` of parked long-polls: their scopes' bundles are signed before the swap. */
      parked: number[];
      epoch: number;
    }
  | { op: 'resolve'; revision: number; items: { key: string; identity: WorkloadIdentity }[] }
  | { op: 'sign'; revision: number; scope: string; identity: WorkloadIdentity; epoch: number }
  /** The hits of every rule of the current set (`sources` are parsed unless `revision` is installed). */
  | {
      op: 'rule-usage';
      revision: number;
      sources: PolicySource[];
      totals: HitTotalInput[];
      /** The sources of every other revision named in `totals`. */
      older: { revision: number; sources: PolicySource[] }[];
    }
  /** Stored deny records (JSON texts) decided again under the checked set `token`. */
  | { op: 'would-break'; token: number; records: string[] }
  | {
      op: 'suggest';
      /** The installed revision when it is this one; else `sources` are parsed. */
      revision: number;
      sources: PolicySource[];
      group: string;
      /** Stored deny records as JSON texts (the store's own form: no cloning of objects). */
      records: string[];
      /** Given: the whole set with the group's rules replaced (or merged) in this mode, as well. */
      mode?: Mode | undefined;
      merge?: boolean | undefined;
      owner?: string | undefined;
      window?: string | undefined;
    };

/** A suggestion for one SmartGroup: the rules, the policy alone, and (with a mode) the whole set. */
export interface SuggestAnswer {
  suggestion: Suggestion;
  policy: string;
  set?: MergedSet | undefined;
}

export interface InstallResult {
  revision: number;
  /**
   * True when the SmartGroups are those of the previous revision: every key keeps its scope and
   * groups. Otherwise `scopeOfKey[i]` indexes `scopes` for `keys[i]` (-1: the key no longer parses).
   */
  sameScopes: boolean;
  /** The SmartGroups changed and `keys` held one text per scope: nothing was installed; send every key. */
  needsEveryKey?: boolean;
  scopeOfKey?: Int32Array;
  scopes?: { scope: string; groups: string[] }[];
  signed: SignedScope[];
}

export type PolicyThreadReply =
  | {
      ok: true;
      /** The diff against the installed set, as JSON text. */
      diffJson?: string;
      /**
       * `check`: `{"before":…,"after":…}` blast-radius reports (per SmartGroup) of the installed and
       * the checked set; `blast-radius`: the installed set's report. JSON text, as `diffJson`.
       */
      blastRadiusJson?: string;
      /** `check` with `forStore`: the sources as the store keeps them (JSON text): a set can be megabytes, serialised here rather than on the event loop. */
      sourcesJson?: string;
      /** `blast-radius`: the revision the report is of (0: none installed yet). */
      revision?: number;
      affected?: { count: number; workloads: { key: string; identity: WorkloadIdentity }[] };
      installed?: InstallResult;
      resolvedMany?: ResolvedText[];
      signedOne?: SignedScope;
      suggested?: SuggestAnswer;
      wouldBreak?: WouldBreak;
      usage?: RuleUsage[];
      /** The thread has moved to another revision: ask again. */
      stale?: boolean;
    }
  | { ok: false; error: 'invalid-policy' | 'guardrail-violation'; errors: PolicyError[] }
  /** The request names something the set does not have (a SmartGroup). */
  | { ok: false; error: 'not-found'; message: string }
  | { ok: false; error: 'internal'; message: string };

export class PolicyThreadError extends Error {}

export class PolicyWorker {
  private worker: Worker | undefined;
  private readonly pending = new Map<
    number,
    { resolve: (reply: PolicyThreadReply) => void; reject: (error: Error) => void }
  >();
  private nextId = 1;
  private nextToken = 1;
  private closed = false;

  constructor(
    private readonly data: PolicyThreadData,
    /** Told when the thread died and was replaced (its installed revision is gone). */
    private readonly onRestart: (reason: string) => void,
  ) {
    this.worker = this.start();
  }

  private start(): Worker {
    const program = workerProgram(import.meta.url, 'policy-thread', 'control/policy-thread.ts');
    const worker = new Worker(program.filename, { eval: program.eval, workerData: this.data });
    worker.unref();
    worker.on('message', (message: { id: number; reply: PolicyThreadReply }) => {
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      waiter.resolve(message.reply);
    });
    const failed = (reason: string) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      for (const waiter of this.pending.values())
        waiter.reject(new PolicyThreadError(`policy thread: ${reason}`));
      this.pending.clear();
      if (this.closed) return;
      this.worker = this.start();
      this.onRestart(reason);
    };
    worker.on('error', (error) => failed(error.message));
    worker.on('exit', (code) => failed(`exited with code ${code}`));
    return worker;
  }

  /** A name for the set of the next `check`. */
  newToken(): number {
    return this.nextToken++;
  }

  request(request: PolicyThreadRequest): Promise<PolicyThreadReply> {
    const worker = this.worker;
    if (!worker) return Promise.reject(new PolicyThreadError('policy thread closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, request });
    });
  }

  /** A request whose answer must be a success; `internal` failures become PolicyThreadError. */
  async ask(request: PolicyThreadRequest): Promise<Extract<PolicyThreadReply, { ok: true }>> {
    const reply = await this.request(request);
    if (!reply.ok) {
      throw new PolicyThreadError(
        'message' in reply ? reply.message : `${reply.error}: ${reply.errors.length} errors`,
      );
    }
    return reply;
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = undefined;
    for (const waiter of this.pending.values()) waiter.reject(new PolicyThreadError('policy thread closed'));
    this.pending.clear();
    await worker?.terminate();
  }
}
