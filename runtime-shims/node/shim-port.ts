// What every wrapper needs from the shim core (`runtime-shims/node/index.ts`): the AWS handler
// wrapper, middy, and the Azure/GCP in-process controller. One narrow interface, so a wrapper can be
// exercised against the real core or, where a test has to observe call order, a recording adapter.

import type { AttestationProof } from '../../policy/attestation.js';
import type { ControlCredentials } from './client/credentials.js';

export interface ShimStatusLike {
  /** Revision of the bundle the shim enforces; absent or negative when it holds none. */
  readonly revision?: number | undefined;
  /** `control-api`: the preload's control link fetches bundles (see `handOverFetching`). */
  readonly bundleSource?: string | undefined;
}

export interface ShimPort {
  /** Idempotent: a no-op when the preload already installed enforcement. */
  install(): unknown;
  /**
   * Without an argument, re-read and verify the bundle file; with one, verify and enforce that
   * envelope. Either way the core keeps the last good bundle when it refuses one.
   */
  reload(envelopeText?: string): unknown;
  /** Reload only when the bundle file changed since it was last read (one stat otherwise). */
  refresh(): unknown;
  /** Deliver queued deny records; resolves when they reached the sink (or were given up on). */
  flush(): Promise<unknown> | unknown;
  /** Run `fn` with deny records tagged with `invocationId` (AsyncLocalStorage in the core). */
  runInInvocation<T>(invocationId: string, fn: () => T): T;
  /** Single-concurrency fallback for work that escapes the async context (timers created before). */
  setInvocationId(invocationId: string | undefined): void;
  /**
   * A wrapper that fetches bundles with its own client takes over from the preload's control link,
   * which stops fetching (and keeps delivering records at exit). A no-op without a link.
   */
  handOverFetching(): void;
  status(): ShimStatusLike;
  /** A proof of the platform identity, made where the hooks do not govern it (BULKHEAD_ATTEST). */
  proveIdentity?(timeoutMs: number): Promise<AttestationProof>;
  /** Deny records go with these credentials (the wrapper's attested session); first caller wins. */
  useCredentials?(credentials: ControlCredentials): boolean;
}
