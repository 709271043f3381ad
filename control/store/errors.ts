// Store failures the API answers without a 500. Both engines translate what they cannot do
// right now into a StoreUnavailableError; the server's error handler turns it into 503 (the
// database is away, a lock is held) or 507 (the disk is full), always with Retry-After, so
// forwarders keep their records and retry. Anything else is a bug and stays a 500.

export type StoreFailure = 'unavailable' | 'disk-full';

export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';

  constructor(
    readonly failure: StoreFailure,
    message: string,
    /** Seconds a client should wait before retrying. */
    readonly retryAfterSeconds = 1,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The HTTP status this failure is answered with. */
  get statusCode(): 503 | 507 {
    return this.failure === 'disk-full' ? 507 : 503;
  }
}

export function isStoreUnavailable(error: unknown): error is StoreUnavailableError {
  return error instanceof StoreUnavailableError;
}
