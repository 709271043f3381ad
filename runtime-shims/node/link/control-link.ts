// The main thread's side of the control link (link-thread.ts): starts the thread, waits (bounded,
// synchronously) for its first answer when a decision needs the bundle, hands bundles to the core,
// and delivers deny records through it at exit, when the main thread can no longer do I/O itself.

import * as workerThreads from 'node:worker_threads';
import type { DenyRecord } from '../../../policy/types.js';
import type { HitCount } from '../hits.js';
import { type LinkData, SLOT_DELIVERED, SLOT_FIRST_ANSWER, STATE_SLOTS, type ToMain } from './protocol.js';

// Captured at load, before the worker hook replaces the class (the link runs without the preload).
const OriginalWorker = workerThreads.Worker;
const { MessageChannel, receiveMessageOnPort } = workerThreads;

export interface ControlLinkOptions {
  /** dist/control-link.cjs */
  file: string;
  data: Omit<LinkData, 'port' | 'state'>;
  log: (line: string) => void;
  /** A verified bundle from the control API (the core verifies it again before enforcing it). */
  onBundle: (envelopeText: string) => void;
  /** The signing keys listed by the control API, when none were configured. */
  onKeys: (keys: string[]) => void;
}

export class ControlLink {
  readonly #state: Int32Array;
  readonly #port: workerThreads.MessagePort;
  readonly #worker: workerThreads.Worker;
  readonly #log: (line: string) => void;
  readonly #onBundle: (envelopeText: string) => void;
  readonly #onKeys: (keys: string[]) => void;
  #alive = true;
  #deliveries = 0;
  #firstOutcome: string | undefined;

  constructor(options: ControlLinkOptions) {
    const shared = new SharedArrayBuffer(STATE_SLOTS * 4);
    this.#state = new Int32Array(shared);
    this.#log = options.log;
    this.#onBundle = options.onBundle;
    this.#onKeys = options.onKeys;
    const { port1, port2 } = new MessageChannel();
    this.#port = port1;
    const workerData: LinkData = { ...options.data, port: port2, state: shared };
    this.#worker = new OriginalWorker(options.file, {
      workerData,
      transferList: [port2],
      // Not the application's flags (a --require of the preload, an inspector), not its stdin.
      execArgv: [],
      stdin: false,
      env: workerThreads.SHARE_ENV,
    });
    port1.on('message', (message: ToMain) => this.#handle(message));
    // Neither keeps the process alive: a script that is done exits as it would without the shim.
    // (After the listener: adding a 'message' listener refs the port again.)
    this.#worker.unref();
    port1.unref();
    this.#worker.on('error', (error) => {
      this.#alive = false;
      this.#log(`control link stopped: ${error.message}`);
    });
    this.#worker.on('exit', () => {
      this.#alive = false;
    });
  }

  /** The first fetch's outcome once known (`updated`, `not-modified`, `rejected`, `error`). */
  get firstOutcome(): string | undefined {
    return this.#firstOutcome;
  }

  /**
   * Block this thread until the link's first answer is in (true), at most `ms` (false), then take
   * what it sent. Only the first decision of a process that reached out during start-up ever waits.
   */
  awaitFirstAnswer(ms: number): boolean {
    if (Atomics.load(this.#state, SLOT_FIRST_ANSWER) === 0 && this.#alive)
      Atomics.wait(this.#state, SLOT_FIRST_ANSWER, 0, ms);
    this.drain();
    return Atomics.load(this.#state, SLOT_FIRST_ANSWER) === 1;
  }

  /** Handle every message the thread has sent, now (not at the next event-loop turn). */
  drain(): void {
    for (;;) {
      const received = receiveMessageOnPort(this.#port);
      if (received === undefined) return;
      this.#handle(received.message as ToMain);
    }
  }

  /**
   * At exit: have the thread POST these records, waiting at most `ms`. True when the control API took
   * them; false (nothing known) on a timeout, a refusal or a link that is gone.
   */
  deliverSync(records: readonly DenyRecord[], ms: number, hits: readonly HitCount[] = []): boolean {
    if (!this.#alive) return false;
    const id = ++this.#deliveries;
    try {
      this.#port.postMessage({ type: 'deliver', id, records, hits });
    } catch {
      return false;
    }
    const deadline = Date.now() + ms;
    for (;;) {
      const seen = Atomics.load(this.#state, SLOT_DELIVERED);
      if (seen === id) return true;
      if (seen === -id) return false;
      const left = deadline - Date.now();
      if (left <= 0 || !this.#alive) return false;
      Atomics.wait(this.#state, SLOT_DELIVERED, seen, left);
    }
  }

  /** A platform wrapper fetches from now on: the thread stops fetching and keeps delivering records. */
  stopFetching(): void {
    if (!this.#alive) return;
    try {
      this.#port.postMessage({ type: 'stop-fetching' });
    } catch {
      // The thread is gone: nothing to stop.
    }
  }

  #handle(message: ToMain): void {
    if (message.type === 'bundle') this.#onBundle(message.envelopeText);
    else if (message.type === 'keys') this.#onKeys(message.keys);
    else if (message.type === 'answer') this.#firstOutcome = message.outcome;
    else if (message.type === 'log') this.#log(message.line);
  }
}
