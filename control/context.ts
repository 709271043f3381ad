// What the route modules share: the store, this replica's policy state, limits and counters.
// Its own file so that routes and the server that registers them do not import each other.
import type { AttestationConfig } from './attest/types.js';
import type { TokenGrant, TokenVerifier } from './auth.js';
import type { LongPollHub } from './long-poll.js';
import type { ControlMetrics } from './metrics.js';
import type { PolicyState, SigningKey } from './policy-state.js';
import type { RateLimit } from './rate-limit.js';
import type { ControlStore, TokenScope, WorkloadSighting } from './store/types.js';

export interface ControlLimits {
  /** Largest `PUT /v1/policy` body, bytes. */
  policyBodyBytes: number;
  /** Largest `POST /v1/reports` body, bytes. */
  reportBodyBytes: number;
  /** Most records in one report batch. */
  reportRecords: number;
  /** Largest body of any other route, bytes. */
  bodyBytes: number;
  /**
   * Concurrent long-polls held by this replica; beyond it `wait` is refused with 429. Lowered to
   * what the file-descriptor limit allows (control/connection-guard.ts).
   */
  longPolls: number;
  /** Open connections; default (and upper bound): derived from the file-descriptor limit. */
  connections?: number | undefined;
  /** A connection must finish sending its request headers within this time (else 408). */
  headersTimeoutMs: number;
  /** Longest `?wait=` in seconds. */
  maxWaitSeconds: number;
  rateLimit: Record<TokenScope, RateLimit>;
  /** Identities not yet in the inventory that one workload token (with its sessions) may introduce. */
  newWorkloads: RateLimit;
  /** Attestations (each creates a session) per workload token. */
  attestations: RateLimit;
  /** Validity of a signed bundle. */
  bundleTtlSeconds: number;
}

/** Everything the route modules share. */
export interface ControlContext {
  store: ControlStore;
  state: PolicyState;
  key: SigningKey;
  limits: ControlLimits;
  metrics: ControlMetrics;
  longPolls: LongPollHub;
  /** Records that a workload was answered with / holds a revision; written in batches. */
  sawWorkload(key: string, identity: WorkloadSighting['identity'], revision: number, scope: string): void;
  flushSightings(): Promise<void>;
  /** When the current revision was first known to this replica (for propagation figures). */
  revisionSeenAtMs(): number;
  verifier: TokenVerifier;
  attestation: AttestationConfig | undefined;
  /** Takes from the token's budget of new identities unless `key` is already in the inventory. */
  admitsNewWorkload(grant: TokenGrant, key: string): { ok: true } | { ok: false; retryAfterSeconds: number };
  admitsAttestation(grant: TokenGrant): { ok: true } | { ok: false; retryAfterSeconds: number };
}
