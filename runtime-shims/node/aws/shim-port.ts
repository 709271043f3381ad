// What the AWS and middy wrappers need from the shim core (`runtime-shims/index.ts`). Kept as a
// narrow interface so the wrappers can be exercised against the real core or, where a test has to
// observe call order, a recording adapter around it.

export interface ShimStatusLike {
  /** Revision of the bundle the shim enforces; absent or negative when it holds none. */
  readonly revision?: number | undefined;
}

export interface ShimPort {
  /** Idempotent: a no-op when the preload already installed enforcement. */
  install(): unknown;
  /** Re-read and verify the bundle file; the core keeps the last good bundle on failure. */
  reload(): unknown;
  /** Reload only when the bundle file changed since it was last read (one stat otherwise). */
  refresh(): unknown;
  /** Deliver queued deny records; resolves when they reached the sink (or were given up on). */
  flush(): Promise<unknown> | unknown;
  /** Run `fn` with deny records tagged with `invocationId` (AsyncLocalStorage in the core). */
  runInInvocation<T>(invocationId: string, fn: () => T): T;
  /** Single-concurrency fallback for work that escapes the async context (timers created before). */
  setInvocationId(invocationId: string | undefined): void;
  status(): ShimStatusLike;
}
