// Parked bundle requests waiting for a newer revision. Waking is a plain callback, so an
// apply on this replica (or a NOTIFY from another) answers every waiter in the same tick.
//
// Cost model: a new revision wakes 10,000 waiters in one loop, each answered there (atRevision)
// before any continuation runs. Waking the whole set swaps it for an empty one instead of
// deleting waiters one by one; a waiter is a plain record, flagged when it is settled.

export type WakeReason = 'revision' | 'timeout' | 'closed' | 'shutdown';

/** Callbacks per segment of Node's `process.nextTick` queue (lib/internal/fixed_queue.js). */
const TICK_QUEUE_SEGMENT = 2048;
const noop = () => {};

/**
 * Waking thousands of polls queues a few ticks per answer in one turn: more than one segment of
 * Node's tick queue, which ordinary traffic never fills. The first time a process does, `nextTick`
 * and the tick loop run a branch they have no type feedback for, and V8 throws their compiled code
 * away in the middle of the burst (`--trace-deopt`). Queuing that many no-op ticks once at start
 * (~1 ms) takes that branch before any revision is waiting on it.
 */
export function primeTickQueue(): void {
  for (let i = 0; i < 2 * TICK_QUEUE_SEGMENT; i++) process.nextTick(noop);
}

interface Waiter {
  settled: boolean;
  timer: NodeJS.Timeout | undefined;
  atRevision: (() => unknown) | undefined;
  resolve: (reason: WakeReason) => void;
}

export class LongPollHub {
  private waiters = new Set<Waiter>();
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
      const waiter: Waiter = { settled: false, timer: undefined, atRevision, resolve };
      this.waiters.add(waiter);
      waiter.timer = setTimeout(() => this.leave(waiter, 'timeout'), timeoutMs);
      registerAbort(() => this.leave(waiter, 'closed'));
    });
  }

  wakeAll(reason: WakeReason = 'revision'): void {
    const all = this.waiters;
    this.waiters = new Set();
    for (const waiter of all) settle(waiter, reason);
  }

  /** Wakes the `count` longest-parked waiters (a Set keeps insertion order). */
  wakeOldest(count: number, reason: WakeReason = 'revision'): void {
    let woken = 0;
    for (const waiter of this.waiters) {
      if (woken++ >= count) break;
      this.leave(waiter, reason);
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

  private leave(waiter: Waiter, reason: WakeReason): void {
    if (waiter.settled) return;
    this.waiters.delete(waiter);
    settle(waiter, reason);
  }
}

function settle(waiter: Waiter, reason: WakeReason): void {
  if (waiter.settled) return;
  waiter.settled = true;
  if (waiter.timer) clearTimeout(waiter.timer);
  if (reason === 'revision' && waiter.atRevision) {
    try {
      waiter.atRevision();
    } catch {
      // The waiter's continuation answers instead.
    }
  }
  waiter.resolve(reason);
}
