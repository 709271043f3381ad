// Per-token token buckets, kept in memory per replica.

export interface RateLimit {
  /** Sustained requests per second. */
  perSecond: number;
  /** Requests allowed in a burst above the sustained rate. */
  burst: number;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
}

const BUCKET_LIMIT = 100_000;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  /** Takes one request from the bucket; answers how many seconds to wait when empty. */
  take(
    key: string,
    limit: RateLimit,
    nowMs = Date.now(),
  ): { ok: true } | { ok: false; retryAfterSeconds: number } {
    let bucket = this.buckets.get(key);
    if (!bucket) {
      if (this.buckets.size >= BUCKET_LIMIT) this.buckets.clear();
      bucket = { tokens: limit.burst, updatedMs: nowMs };
      this.buckets.set(key, bucket);
    } else {
      const elapsedSeconds = Math.max(0, nowMs - bucket.updatedMs) / 1000;
      bucket.tokens = Math.min(limit.burst, bucket.tokens + elapsedSeconds * limit.perSecond);
      bucket.updatedMs = nowMs;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / limit.perSecond)) };
  }
}
