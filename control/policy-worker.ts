// The main thread's handle on the policy thread (control/policy-thread.ts): typed requests, one
// answer each, in order. If the thread dies it is started again; whatever was in flight fails
// (the caller answers 503, or retries the revision on the next head check).
import { Worker } from 'node:worker_threads';
import type { PolicyError } from '../policy/index.js';
import type { WorkloadIdentity } from '../policy/types.js';
import type { PolicySource } from './store/types.js';
import { workerProgram } from './worker-program.js';

export interface PolicyThreadData {
  privateKeyPem: string;
  bundleTtlMs: number;
  /** Most scopes signed while installing a revision (the rest are signed on first request). */
  signAtInstall: number;
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

export interface IdentityItem {
  /** The `?workload=` text as received (the cache key of the main thread). */
  text: string;
  key: string;
  identity: WorkloadIdentity;
}

export type PolicyThreadRequest =
  | { op: 'check'; sources: PolicySource[] }
  | {
      op: 'affected';
      token: number;
      inventory: { key: string; identity: WorkloadIdentity }[];
      limit: number;
    }
  | { op: 'discard'; token: number }
  | {
      op: 'install';
      revision: number;
      createdMs: number;
      /** The token of a successful `check` (an apply): its set is installed; else `sources` are parsed. */
      candidate?: number;
      sources: PolicySource[];
      known: IdentityItem[];
      /** Indexes into `known` whose bundles are wanted now. */
      wanted: number[];
      epoch: number;
    }
  | { op: 'resolve'; revision: number; items: { key: string; identity: WorkloadIdentity }[] }
  | { op: 'sign'; revision: number; scope: string; identity: WorkloadIdentity; epoch: number };

export type PolicyThreadReply =
  | {
      ok: true;
      diff?: unknown;
      /** Names the checked set for `affected`, `install` and `discard`. */
      token?: number;
      affected?: { count: number; workloads: { key: string; identity: WorkloadIdentity }[] };
      installed?: { revision: number; resolved: [string, ResolvedText][]; signed: SignedScope[] };
      resolvedMany?: ResolvedText[];
      signedOne?: SignedScope;
      /** The thread has moved to another revision: ask again. */
      stale?: boolean;
    }
  | { ok: false; error: 'invalid-policy' | 'guardrail-violation'; errors: PolicyError[] }
  | { ok: false; error: 'internal'; message: string };

export class PolicyThreadError extends Error {}

export class PolicyWorker {
  private worker: Worker | undefined;
  private readonly pending = new Map<
    number,
    { resolve: (reply: PolicyThreadReply) => void; reject: (error: Error) => void }
  >();
  private nextId = 1;
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
        reply.error === 'internal' ? reply.message : `${reply.error}: ${reply.errors.length} errors`,
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
