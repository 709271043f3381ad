// Deny records: aggregated, queued without blocking, bounded, delivered by a pluggable sink.
// Nothing here throws into application code: every failure becomes a count or a log line.
import { randomUUID } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync, writeSync } from 'node:fs';
import type { DenyRecord } from '../policy/types.js';

export interface Sink {
  readonly description: string;
  /** Deliver a batch; reject when it did not reach the destination (the queue retries). */
  deliver(records: readonly DenyRecord[]): Promise<void>;
  /** Synchronous delivery, for process exit (sinks that can: the spool file). */
  deliverSync?(records: readonly DenyRecord[]): void;
}

/** Contract §3: NDJSON, one `write` per line on an O_APPEND descriptor, file mode 0600. */
export class SpoolSink implements Sink {
  readonly description: string;
  #fd: number | undefined;
  constructor(readonly path: string) {
    this.description = `spool ${path}`;
  }
  async deliver(records: readonly DenyRecord[]): Promise<void> {
    this.deliverSync(records);
  }
  deliverSync(records: readonly DenyRecord[]): void {
    if (this.#fd === undefined)
      this.#fd = openSync(
        this.path,
        fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT,
        0o600,
      );
    for (const record of records) {
      const line = Buffer.from(`${JSON.stringify(record)}\n`, 'utf8');
      const written = writeSync(this.#fd, line, 0, line.length);
      if (written !== line.length) throw new Error(`short write to ${this.path}`);
    }
  }
  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

export type PostJson = (url: URL, body: string, headers: Record<string, string>) => Promise<number>;

/** Batched `POST {records}` to the control API (or the extension), bearer token when configured. */
export class HttpSink implements Sink {
  readonly description: string;
  constructor(
    readonly url: URL,
    private readonly token: string | undefined,
    private readonly post: PostJson,
  ) {
    this.description = `POST ${url.origin}${url.pathname}`;
  }
  async deliver(records: readonly DenyRecord[]): Promise<void> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const status = await this.post(this.url, JSON.stringify({ records }), headers);
    if (status < 200 || status > 299) throw new Error(`${this.description} answered ${status}`);
  }
}

/** What a hook knows about a deny; the queue adds id, times, count, identity and invocation. */
export type RecordInput = Omit<DenyRecord, 'id' | 'time' | 'lastTime' | 'count' | 'workload'>;

export interface QueueOptions {
  maxPending?: number;
  maxBatch?: number;
  /** Attempts per record before it counts as dropped. */
  maxAttempts?: number;
  /** Delay between an enqueue and the background delivery it schedules. */
  delayMs?: number;
  log: (line: string) => void;
}

interface Pending {
  record: DenyRecord;
  key: string;
  attempts: number;
}

export interface FlushResult {
  delivered: number;
  pending: number;
  dropped: number;
}

export class RecordQueue {
  #pending: Pending[] = [];
  #byKey = new Map<string, Pending>();
  #dropped = 0;
  #delivered = 0;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<FlushResult> | undefined;
  #lastError: string | undefined;
  readonly #maxPending: number;
  readonly #maxBatch: number;
  readonly #maxAttempts: number;
  readonly #delayMs: number;

  constructor(
    private sink: Sink | undefined,
    private workload: () => DenyRecord['workload'],
    private readonly options: QueueOptions,
  ) {
    this.#maxPending = options.maxPending ?? 1000;
    this.#maxBatch = options.maxBatch ?? 200;
    this.#maxAttempts = options.maxAttempts ?? 5;
    this.#delayMs = options.delayMs ?? 200;
  }

  get dropped(): number {
    return this.#dropped;
  }
  get queued(): number {
    return this.#pending.length;
  }
  get delivered(): number {
    return this.#delivered;
  }
  get lastError(): string | undefined {
    return this.#lastError;
  }
  get sinkDescription(): string | undefined {
    return this.sink?.description;
  }

  /** O(1), never blocks, never throws: a repeat of a pending record only bumps its count. */
  add(input: RecordInput): void {
    try {
      const d = input.destination;
      const key = `${input.kind}|${input.decision}|${input.mode}|${input.rule}|${input.revision}|${d.host}|${d.ip}|${d.port}|${d.protocol}|${d.sni}|${d.method}|${d.path}|${d.command}|${input.invocationId}`;
      const now = new Date().toISOString();
      const existing = this.#byKey.get(key);
      if (existing) {
        existing.record.count++;
        existing.record.lastTime = now;
        return;
      }
      if (this.#pending.length >= this.#maxPending) {
        this.#dropped++;
        return;
      }
      const record: DenyRecord = {
        id: randomUUID(),
        time: now,
        count: 1,
        workload: this.workload(),
        ...input,
      };
      const pending = { record, key, attempts: 0 };
      this.#pending.push(pending);
      this.#byKey.set(key, pending);
      this.#schedule();
    } catch {
      this.#dropped++;
    }
  }

  #schedule(): void {
    if (this.#timer || !this.sink) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.#delayMs);
    this.#timer.unref?.();
  }

  /** Deliver everything pending now; resolves (never rejects) when the sink answered or gave up. */
  flush(): Promise<FlushResult> {
    if (this.#inFlight) return this.#inFlight.then(() => this.flush());
    const run = this.#deliverAll().finally(() => {
      this.#inFlight = undefined;
    });
    this.#inFlight = run;
    return run;
  }

  async #deliverAll(): Promise<FlushResult> {
    let delivered = 0;
    const sink = this.sink;
    if (sink) {
      while (this.#pending.length > 0) {
        const batch = this.#pending.slice(0, this.#maxBatch);
        // Records in flight are not aggregated into any more: a repeat starts a new record.
        for (const p of batch) this.#byKey.delete(p.key);
        try {
          await sink.deliver(batch.map((p) => p.record));
          this.#pending.splice(0, batch.length);
          delivered += batch.length;
          this.#delivered += batch.length;
        } catch (error) {
          this.#lastError = error instanceof Error ? error.message : String(error);
          let kept = 0;
          for (const p of batch) {
            p.attempts++;
            if (p.attempts >= this.#maxAttempts) this.#dropped++;
            else kept++;
          }
          const survivors = batch.filter((p) => p.attempts < this.#maxAttempts);
          this.#pending.splice(0, batch.length, ...survivors);
          this.options.log(
            `report delivery to ${sink.description} failed (${this.#lastError}); ${kept} kept for retry`,
          );
          if (kept > 0) this.#scheduleRetry();
          break;
        }
      }
    }
    return { delivered, pending: this.#pending.length, dropped: this.#dropped };
  }

  #scheduleRetry(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, 2000);
    this.#timer.unref?.();
  }

  /** At process exit: hand what is pending to a sink that can take it synchronously. Never throws. */
  drainSync(): void {
    const sink = this.sink;
    if (!sink?.deliverSync || this.#pending.length === 0) return;
    try {
      sink.deliverSync(this.#pending.map((p) => p.record));
      this.#delivered += this.#pending.length;
      this.#pending = [];
      this.#byKey.clear();
    } catch {
      // Exiting anyway: the records are lost and counted.
      this.#dropped += this.#pending.length;
    }
  }

  /** Records waiting for delivery (copies), for tests and for wrappers without a sink. */
  peek(): DenyRecord[] {
    return this.#pending.map((p) => ({ ...p.record }));
  }

  setSink(sink: Sink | undefined): void {
    this.sink = sink;
    if (this.#pending.length > 0) this.#schedule();
  }
}
