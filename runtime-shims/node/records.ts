// Deny records: aggregated, queued without blocking, bounded, delivered by a pluggable sink.
// Nothing here throws into application code: every failure becomes a count or a log line.
import { randomUUID } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync, writeSync } from 'node:fs';
import type { DenyRecord } from '../../policy/types.js';
import { callOriginal } from './hooks/lock.js';

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
    if (status < 200 || status > 299)
      throw new DeliveryError(`${this.description} answered ${status}`, isPermanentRejection(status));
  }
}

/** A sink's refusal. `permanent`: retrying the same batch cannot succeed (the receiver judged it). */
export class DeliveryError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
  ) {
    super(message);
  }
}

/** 4xx but timeouts and throttling: the receiver read the batch and refused it. 401/403 are a
 *  configuration error that an operator fixes, so those batches are kept and retried. */
export function isPermanentRejection(status: number): boolean {
  return (
    status >= 400 && status < 500 && status !== 401 && status !== 403 && status !== 408 && status !== 429
  );
}

/** What a hook knows about a deny; the queue adds id, times, count, identity and invocation. */
export type RecordInput = Omit<DenyRecord, 'id' | 'time' | 'lastTime' | 'count' | 'workload'>;

export interface QueueOptions {
  maxPending?: number;
  maxBatch?: number;
  /** Delay between an enqueue and the background delivery it schedules. */
  delayMs?: number;
  /** Longest wait between retries while the sink is unreachable (the wait doubles from 2 s up to this). */
  maxRetryDelayMs?: number;
  /**
   * Number records per process (`sandboxId`, `seq` from 1) so the control API can count records that never
   * arrived. For sinks that reach the control API directly; the Lambda extension numbers spooled records.
   * A record dropped here still uses its number, so the gap shows at the API.
   */
  numberRecords?: boolean;
  log: (line: string) => void;
}

interface Pending {
  record: DenyRecord;
  key: string;
}

export interface FlushResult {
  delivered: number;
  pending: number;
  dropped: number;
}

// The aggregation table's methods, captured at load: a replaced Map method (which the shim refuses
// to decide through) must not also swallow the tamper record that reports it.
const mapGet = Map.prototype.get;
const mapSet = Map.prototype.set;
const mapHas = Map.prototype.has;
const mapDelete = Map.prototype.delete;
const mapClear = Map.prototype.clear;

export class RecordQueue {
  #pending: Pending[] = [];
  #byKey = new Map<string, Pending>();
  #dropped = 0;
  #delivered = 0;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<FlushResult> | undefined;
  #lastError: string | undefined;
  #seq = 0;
  #sandboxId: string | undefined;
  #retryDelayMs = 0;
  readonly #maxPending: number;
  readonly #maxBatch: number;
  readonly #delayMs: number;
  readonly #maxRetryDelayMs: number;

  constructor(
    private sink: Sink | undefined,
    private workload: () => DenyRecord['workload'],
    private readonly options: QueueOptions,
  ) {
    this.#maxPending = options.maxPending ?? 1000;
    this.#maxBatch = options.maxBatch ?? 200;
    this.#delayMs = options.delayMs ?? 200;
    this.#maxRetryDelayMs = options.maxRetryDelayMs ?? 60_000;
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
      const key = `${input.kind}|${input.decision}|${input.mode}|${input.rule}|${input.revision}|${d.host}|${d.ip}|${d.port}|${d.protocol}|${d.sni}|${d.method}|${d.path}|${d.command}|${d.socket}|${input.invocationId}`;
      const now = new Date().toISOString();
      const existing = callOriginal(mapGet, this.#byKey, [key]) as Pending | undefined;
      if (existing) {
        existing.record.count++;
        existing.record.lastTime = now;
        return;
      }
      const seq = this.options.numberRecords ? ++this.#seq : undefined;
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
      if (seq !== undefined) {
        this.#sandboxId ??= randomUUID();
        record.sandboxId = this.#sandboxId;
        record.seq = seq;
      }
      const pending = { record, key };
      this.#pending.push(pending);
      callOriginal(mapSet, this.#byKey, [key, pending]);
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
        for (const p of batch) callOriginal(mapDelete, this.#byKey, [p.key]);
        try {
          await sink.deliver(batch.map((p) => p.record));
          this.#pending.splice(0, batch.length);
          delivered += batch.length;
          this.#delivered += batch.length;
          this.#retryDelayMs = 0;
        } catch (error) {
          this.#lastError = error instanceof Error ? error.message : String(error);
          if (error instanceof DeliveryError && error.permanent) {
            // The receiver read the batch and refused it: retrying cannot help. Counted, never silent.
            this.#pending.splice(0, batch.length);
            this.#dropped += batch.length;
            this.options.log(
              `report delivery to ${sink.description} refused (${this.#lastError}); ${batch.length} records dropped`,
            );
            continue;
          }
          // Unreachable or throttled: keep everything (the queue bound is the only limit) and retry later.
          for (const p of batch)
            if (!callOriginal(mapHas, this.#byKey, [p.key])) callOriginal(mapSet, this.#byKey, [p.key, p]);
          this.options.log(
            `report delivery to ${sink.description} failed (${this.#lastError}); ${this.#pending.length} records kept for retry`,
          );
          this.#scheduleRetry();
          break;
        }
      }
    }
    return { delivered, pending: this.#pending.length, dropped: this.#dropped };
  }

  #scheduleRetry(): void {
    if (this.#timer) return;
    this.#retryDelayMs = Math.min(
      this.#maxRetryDelayMs,
      this.#retryDelayMs === 0 ? 2000 : this.#retryDelayMs * 2,
    );
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.#retryDelayMs);
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
      callOriginal(mapClear, this.#byKey, []);
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
