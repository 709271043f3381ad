// Parked bundle requests waiting for a newer revision. Waking is a plain callback, so an
// apply on this replica (or a NOTIFY from another) answers every waiter in the same tick.

export type WakeReason = 'revision' | 'timeout' | 'closed' | 'shutdown';

export class LongPollHub {
  private readonly waiters = new Set<(reason: WakeReason) => void>();
  private shuttingDown = false;

  constructor(private readonly capacity: number) {}

  get open(): number {
    return this.waiters.size;
  }

  hasRoom(): boolean {
    return !this.shuttingDown && this.waiters.size < this.capacity;
  }

  /** Resolves on the next revision, after `timeoutMs`, when `onAbort` fires, or at shutdown. */
  wait(timeoutMs: number, registerAbort: (abort: () => void) => void): Promise<WakeReason> {
    if (this.shuttingDown) return Promise.resolve('shutdown');
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (reason: WakeReason) => {
        if (!this.waiters.delete(finish)) return;
        if (timer) clearTimeout(timer);
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

  shutdown(): void {
    this.shuttingDown = true;
    this.wakeAll('shutdown');
  }
}
