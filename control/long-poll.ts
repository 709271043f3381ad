// Parked bundle requests waiting for a newer revision. Waking is a plain callback, so an
// apply on this replica (or a NOTIFY from another) answers every waiter in the same tick.

export type WakeReason = 'revision' | 'timeout' | 'closed' | 'shutdown';

export class LongPollHub {
  private readonly waiters = new Set<(reason: WakeReason) => void>();
  private shuttingDown = false;
  private deferredWake = false;

  constructor(private readonly capacity: number) {}

  get open(): number {
    return this.waiters.size;
  }

  hasRoom(): boolean {
    return !this.shuttingDown && this.waiters.size < this.capacity;
  }

  /**
   * Resolves on the next revision, after `timeoutMs`, when `onAbort` fires, or at shutdown.
   * `atRevision` runs synchronously as the revision wakes this waiter: an answer written there
   * goes out in the waking turn, back to back with the others, before any waiter's continuation.
   */
  wait(
    timeoutMs: number,
    registerAbort: (abort: () => void) => void,
    atRevision?: () => unknown,
  ): Promise<WakeReason> {
    if (this.shuttingDown) return Promise.resolve('shutdown');
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (reason: WakeReason) => {
        if (!this.waiters.delete(finish)) return;
        if (timer) clearTimeout(timer);
        if (reason === 'revision' && atRevision) {
          try {
            atRevision();
          } catch {
            // The waiter's continuation answers instead.
          }
        }
        resolve(reason);
      };
      this.waiters.add(finish);
      timer = setTimeout(() => finish('timeout'), timeoutMs);
      registerAbort(() => finish('closed'));
    });
  }

  wakeAll(reason: WakeReason = 'revision'): void {
    for (const finish of [...this.waiters]) finish(reason);
  }

  /** Wakes the `count` longest-parked waiters (a Set keeps insertion order). */
  wakeOldest(count: number, reason: WakeReason = 'revision'): void {
    let woken = 0;
    for (const finish of this.waiters) {
      if (woken++ >= count) break;
      finish(reason);
    }
  }

  /**
   * A new revision: the `first` longest-parked waiters are answered now, the rest at
   * `flushDeferredWake()` (an apply calls it right behind its own answer) or on the next turn.
   */
  wakeForRevision(first: number): void {
    this.wakeOldest(first, 'revision');
    if (this.waiters.size === 0 || this.deferredWake) return;
    this.deferredWake = true;
    setImmediate(() => this.flushDeferredWake());
  }

  flushDeferredWake(): void {
    if (!this.deferredWake) return;
    this.deferredWake = false;
    this.wakeAll('revision');
  }

  shutdown(): void {
    this.shuttingDown = true;
    this.wakeAll('shutdown');
  }
}
