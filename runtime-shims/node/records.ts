// Deny records: merged, queued without blocking, bounded, delivered by a pluggable sink. A flood
// of distinct denies that overflows the queue is counted per destination pattern (aggregate
// records, contract §3) instead of being dropped.
// Nothing here throws into application code: every failure becomes a count or a log line.

import { randomUUID } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync, writeSync } from 'node:fs';
import type { DenyRecord } from '../../policy/types.js';
import type { ControlCredentials } from './client/credentials.js';
import { DistinctSet } from './distinct.js';
import type { HitCount, HitCounter } from './hits.js';
import { callOriginal } from './hooks/lock.js';
import { patternOf, patternText } from './pattern.js';

export interface Sink {
  readonly description: string;
  /**
   * Deliver a batch; reject when it did not reach the destination (the queue retries the records).
   * `hits`: rule hit counts riding along (contract §3); statistics, not retried.
   */
  deliver(records: readonly DenyRecord[], hits?: readonly HitCount[]): Promise<void>;
  /** Synchronous delivery, for process exit (sinks that can: the spool file). */
  deliverSync?(records: readonly DenyRecord[], hits?: readonly HitCount[]): void;
}

/** Contract §3: NDJSON, one `write` per line on an O_APPEND descriptor, file mode 0600. */
export class SpoolSink implements Sink {
  readonly description: string;
  #fd: number | undefined;
  constructor(readonly path: string) {
    this.description = `spool ${path}`;
  }
  async deliver(records: readonly DenyRecord[], hits?: readonly HitCount[]): Promise<void> {
    this.deliverSync(records, hits);
  }
  deliverSync(records: readonly DenyRecord[], hits: readonly HitCount[] = []): void {
    if (this.#fd === undefined)
      this.#fd = openSync(
        this.path,
        fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT,
        0o600,
      );
    for (const record of records) this.#writeLine(this.#fd, JSON.stringify(record));
    // A hit count is a line of its own, `{"hits": …}`: the extension tells it from a record by that key.
    for (const count of hits) this.#writeLine(this.#fd, JSON.stringify({ hits: count }));
  }
  #writeLine(fd: number, text: string): void {
    const line = Buffer.from(`${text}\n`, 'utf8');
    const written = writeSync(fd, line, 0, line.length);
    if (written !== line.length) throw new Error(`short write to ${this.path}`);
  }
  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

export type PostJson = (url: URL, body: string, headers: Record<string, string>) => Promise<number>;

/** Batched `POST {records}` to the control API (or the extension), with credentials when configured. */
export class HttpSink implements Sink {
  readonly description: string;
  #credentials: ControlCredentials | undefined;
  constructor(
    readonly url: URL,
    credentials: ControlCredentials | undefined,
    private readonly post: PostJson,
  ) {
    this.description = `POST ${url.origin}${url.pathname}`;
    this.#credentials = credentials;
  }
  /** Sends with `credentials` from now on (a wrapper's attested session). */
  use(credentials: ControlCredentials): void {
    this.#credentials = credentials;
  }
  async deliver(records: readonly DenyRecord[], hits?: readonly HitCount[]): Promise<void> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const credentials = this.#credentials;
    const authorization = credentials && (credentials.current() ?? (await credentials.authorization()));
    if (authorization) headers.authorization = authorization;
    const body = hits && hits.length > 0 ? { records, hits } : { records };
    const status = await this.post(this.url, JSON.stringify(body), headers);
    if (status === 401 && authorization) credentials?.refused(authorization);
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
function isPermanentRejection(status: number): boolean {
  return (
    status >= 400 && status < 500 && status !== 401 && status !== 403 && status !== 408 && status !== 429
  );
}

/** What a hook knows about a deny; the queue adds id, times, count, identity and invocation. */
export type RecordInput = Omit<DenyRecord, 'id' | 'time' | 'lastTime' | 'count' | 'workload' | 'aggregate'>;

export interface QueueOptions {
  maxPending?: number;
  maxBatch?: number;
  /** Delay between an enqueue and the background delivery it schedules. */
  delayMs?: number;
  /** Longest wait between retries while the sink is unreachable (the wait doubles from 2 s up to this). */
  maxRetryDelayMs?: number;
  /** Patterns counted at once while flooding (beyond: one catch-all per rule; beyond that, dropped). */
  maxAggregates?: number;
  /** Distinct values remembered across all aggregates, to count them (beyond: `distinctCapped`). */
  maxDistinctTracked?: number;
  /** A pattern that overflowed stays aggregated until it has been quiet this long. */
  hotMs?: number;
  /**
   * Number records per process (`sandboxId`, `seq` from 1) so the control API can count records that never
   * arrived. For sinks that reach the control API directly; the Lambda extension numbers spooled records.
   * A record dropped here still uses its number, so the gap shows at the API.
   */
  numberRecords?: boolean;
  /** Longest a rule hit count waits when no record goes out (the heartbeat), ms. Default 60 s. */
  hitsIntervalMs?: number;
  log: (line: string) => void;
}

interface Pending {
  record: DenyRecord;
  key: string;
  /** Time of the last merged deny (epoch ms); `record.lastTime` is written from it when the record leaves. */
  lastMs: number;
}

/** Distinct denies of one (kind, decision, mode, rule, revision, protocol, invocation, pattern) while flooding. */
interface Aggregate {
  key: string;
  base: string;
  /** The deny that opened this window: its destination, origin, invocation, … */
  first: RecordInput;
  origin: DenyRecord['origin'];
  severity: DenyRecord['severity'];
  count: number;
  firstMs: number;
  lastMs: number;
  /** The one address seen, or null once a second one was (then the pattern is the prefix). */
  ip: string | null | undefined;
  minPort: number | undefined;
  maxPort: number | undefined;
  seen: DistinctSet;
  distinct: number;
  capped: boolean;
  sample: string[];
}

/** Distinct destinations an aggregate record lists. */
export const AGGREGATE_SAMPLE = 8;

export interface FlushResult {
  delivered: number;
  pending: number;
  dropped: number;
}

// The aggregation tables' methods, captured at load: a replaced Map method (which the shim refuses
// to decide through) must not also swallow the tamper record that reports it.
const mapGet = Map.prototype.get;
const mapSet = Map.prototype.set;
const mapHas = Map.prototype.has;
const mapDelete = Map.prototype.delete;
const mapClear = Map.prototype.clear;

// A record's key is built with one join over a reused array rather than a chain of concatenations:
// a flood builds one per deny. Absent fields are written as NUL, so an absent field and an empty one
// stay apart. Array#join as it was when the shim loaded.
const arrayJoin = Array.prototype.join;
const SEPARATOR = ['|'];
const ABSENT = '\u0000';

/** The fields of a deny that are not its destination, and their part of the key (one deny to the next, mostly the same). */
interface KeyContext {
  kind: string;
  decision: string;
  mode: string;
  rule: string;
  revision: number;
  invocationId: string | undefined;
  text: string;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export class RecordQueue {
  #pending: Pending[] = [];
  #byKey = new Map<string, Pending>();
  #aggregates = new Map<string, Aggregate>();
  #tracked = 0;
  /** Aggregates with a deny counted since their window opened (each becomes a record when delivered). */
  #openAggregates = 0;
  /** The record (or aggregate) the last `add` counted into, for `setOrigin`. */
  #target: { origin?: DenyRecord['origin'] } | undefined;
  #context: KeyContext = {
    kind: '',
    decision: '',
    mode: '',
    rule: '',
    revision: -1,
    invocationId: '',
    text: '',
  };
  readonly #keyParts: unknown[] = new Array(10).fill(ABSENT);
  #dropped = 0;
  #delivered = 0;
  #aggregated = 0;
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
  readonly #maxAggregates: number;
  readonly #maxTracked: number;
  readonly #hotMs: number;
  #hits: HitCounter | undefined;
  #hitsTimer: NodeJS.Timeout | undefined;

  constructor(
    private sink: Sink | undefined,
    private workload: () => DenyRecord['workload'],
    private readonly options: QueueOptions,
  ) {
    this.#maxPending = options.maxPending ?? 1000;
    this.#maxBatch = options.maxBatch ?? 200;
    this.#delayMs = options.delayMs ?? 200;
    this.#maxRetryDelayMs = options.maxRetryDelayMs ?? 60_000;
    this.#maxAggregates = options.maxAggregates ?? 256;
    this.#maxTracked = options.maxDistinctTracked ?? 50_000;
    this.#hotMs = options.hotMs ?? 5000;
  }

  /** The rule hit counter whose counts ride along with the records (contract §3). */
  attachHits(hits: HitCounter): void {
    this.#hits = hits;
  }

  /** A count started since the last hand-over: hand it over within the heartbeat interval at the latest. */
  hitsPending(): void {
    if (this.#hitsTimer || !this.sink) return;
    this.#hitsTimer = setTimeout(() => {
      this.#hitsTimer = undefined;
      void this.flush();
    }, this.options.hitsIntervalMs ?? 60_000);
    this.#hitsTimer.unref?.();
  }

  #takeHits(): HitCount[] {
    return this.#hits?.pending ? this.#hits.take() : [];
  }

  get dropped(): number {
    return this.#dropped;
  }
  /** Records waiting: queued ones, and aggregates with denies counted since their last delivery. */
  get queued(): number {
    return this.#pending.length + this.#openAggregates;
  }
  get delivered(): number {
    return this.#delivered;
  }
  /** Denies counted into aggregates so far (each also in an aggregate record's `count`). */
  get aggregated(): number {
    return this.#aggregated;
  }
  get lastError(): string | undefined {
    return this.#lastError;
  }
  get sinkDescription(): string | undefined {
    return this.sink?.description;
  }

  /**
   * O(1), never blocks, never throws: a repeat of a pending record only bumps its count; a distinct deny
   * that finds the queue full (or its pattern still flooding) is counted into its pattern's aggregate.
   * Returns true when the record it went to has no origin yet: the caller then finds one (a stack walk,
   * once per record rather than once per deny) and hands it to `setOrigin`.
   */
  add(input: RecordInput): boolean {
    this.#target = undefined;
    try {
      const d = input.destination;
      const parts = this.#keyParts;
      const context = this.#contextOf(input);
      parts[0] = context;
      parts[1] = d.host ?? ABSENT;
      parts[2] = d.ip ?? ABSENT;
      parts[3] = d.port ?? ABSENT;
      parts[4] = d.protocol ?? ABSENT;
      parts[5] = d.sni ?? ABSENT;
      parts[6] = d.method ?? ABSENT;
      parts[7] = d.path ?? ABSENT;
      parts[8] = d.command ?? ABSENT;
      parts[9] = d.socket ?? ABSENT;
      const key = callOriginal(arrayJoin, parts, SEPARATOR) as string;
      const now = Date.now();
      const existing = callOriginal(mapGet, this.#byKey, [key]) as Pending | undefined;
      if (existing) {
        existing.record.count++;
        existing.lastMs = now;
        if (input.severity === 'high') existing.record.severity = 'high';
        return this.#wantsOrigin(existing.record, input);
      }
      if (this.#pending.length >= this.#maxPending || this.#aggregates.size > 0) {
        // Flooding: a full queue, or a pattern that overflowed and has not calmed down.
        if (this.#aggregate(input, context, now, this.#pending.length >= this.#maxPending)) {
          this.#schedule();
          return this.#target !== undefined;
        }
        if (this.#pending.length >= this.#maxPending) {
          if (this.options.numberRecords) ++this.#seq;
          this.#dropped++;
          return false;
        }
      }
      const record: DenyRecord = {
        id: randomUUID(),
        time: iso(now),
        count: 1,
        workload: this.workload(),
        ...input,
      };
      if (this.options.numberRecords) {
        this.#sandboxId ??= randomUUID();
        record.sandboxId = this.#sandboxId;
        record.seq = ++this.#seq;
      }
      const pending = { record, key, lastMs: now };
      this.#pending.push(pending);
      callOriginal(mapSet, this.#byKey, [key, pending]);
      this.#schedule();
      return this.#wantsOrigin(record, input);
    } catch {
      this.#dropped++;
      return false;
    }
  }

  /** The key's part for the deny's kind, decision, mode, rule, revision and invocation (remembered while they stay the same). */
  #contextOf(input: RecordInput): string {
    const c = this.#context;
    if (
      c.kind !== input.kind ||
      c.decision !== input.decision ||
      c.mode !== input.mode ||
      c.rule !== input.rule ||
      c.revision !== input.revision ||
      c.invocationId !== input.invocationId
    ) {
      c.kind = input.kind;
      c.decision = input.decision;
      c.mode = input.mode;
      c.rule = input.rule;
      c.revision = input.revision;
      c.invocationId = input.invocationId;
      c.text = callOriginal(
        arrayJoin,
        [input.kind, input.decision, input.mode, input.rule, input.revision, input.invocationId ?? ABSENT],
        SEPARATOR,
      ) as string;
    }
    return c.text;
  }

  #wantsOrigin(record: { origin?: DenyRecord['origin'] }, input: RecordInput): boolean {
    if (record.origin !== undefined) return false;
    if (input.origin !== undefined) {
      record.origin = input.origin;
      return false;
    }
    this.#target = record;
    return true;
  }

  /** The origin of the deny just added, for a record that had none (merged records keep the first found). */
  setOrigin(origin: DenyRecord['origin']): void {
    const target = this.#target;
    this.#target = undefined;
    if (target && target.origin === undefined && origin !== undefined) target.origin = origin;
  }

  /**
   * Count a deny into its pattern's aggregate. `open`: may open a new aggregate (the queue is full);
   * otherwise only an aggregate still open takes it. `context`: the deny's #contextOf, already read by
   * `add`. false: not aggregated (the caller queues or drops it).
   */
  #aggregate(input: RecordInput, context: string, now: number, open: boolean): boolean {
    const d = input.destination;
    const where = patternOf(d);
    const head = `${context}|${d.protocol ?? ABSENT}|`;
    let key = head + where.base;
    let aggregate = callOriginal(mapGet, this.#aggregates, [key]) as Aggregate | undefined;
    if (aggregate === undefined) {
      if (!open) return false;
      if (this.#aggregates.size >= this.#maxAggregates) {
        // Too many patterns at once: one catch-all per rule (and kind, …) takes the rest.
        key = `${head}*`;
        aggregate = callOriginal(mapGet, this.#aggregates, [key]) as Aggregate | undefined;
        if (aggregate === undefined && this.#aggregates.size >= this.#maxAggregates * 2) return false;
      }
      if (aggregate === undefined) {
        const base = key.endsWith('|*') && where.base !== '*' ? '*' : where.base;
        aggregate = {
          key,
          base,
          first: input,
          origin: input.origin,
          severity: input.severity,
          count: 0,
          firstMs: now,
          lastMs: now,
          ip: undefined,
          minPort: undefined,
          maxPort: undefined,
          seen: new DistinctSet(),
          distinct: 0,
          capped: false,
          sample: [],
        };
        callOriginal(mapSet, this.#aggregates, [key, aggregate]);
      }
    }
    if (aggregate.count === 0) {
      // A window (re)opened: it starts from this deny.
      this.#openAggregates++;
      aggregate.first = input;
      aggregate.origin = input.origin;
      aggregate.severity = input.severity;
      aggregate.firstMs = now;
    }
    aggregate.count++;
    this.#aggregated++;
    aggregate.lastMs = now;
    if (input.severity === 'high') aggregate.severity = 'high';
    if (aggregate.base !== '*' && where.ip !== undefined) {
      if (aggregate.ip === undefined) aggregate.ip = where.ip;
      else if (aggregate.ip !== null && aggregate.ip !== where.ip) aggregate.ip = null;
    }
    const port = d.port;
    if (port !== undefined) {
      if (aggregate.minPort === undefined || port < aggregate.minPort) aggregate.minPort = port;
      if (aggregate.maxPort === undefined || port > aggregate.maxPort) aggregate.maxPort = port;
    }
    if (!aggregate.capped) {
      const value = where.value;
      if (this.#tracked >= this.#maxTracked) aggregate.capped = true;
      else if (aggregate.seen.add(value)) {
        this.#tracked++;
        aggregate.distinct++;
        if (aggregate.sample.length < AGGREGATE_SAMPLE) aggregate.sample.push(value);
      }
    }
    if (aggregate.origin === undefined) {
      if (input.origin !== undefined) aggregate.origin = input.origin;
      else this.#target = aggregate;
    }
    return true;
  }

  /** The record an aggregate reports now (its window so far). */
  #aggregateRecord(aggregate: Aggregate): DenyRecord {
    const record: DenyRecord = {
      id: randomUUID(),
      time: iso(aggregate.firstMs),
      count: aggregate.count,
      workload: this.workload(),
      ...aggregate.first,
      aggregate: {
        pattern: patternText(aggregate.base, aggregate.ip ?? undefined, aggregate.minPort, aggregate.maxPort),
        distinct: aggregate.distinct,
        sample: [...aggregate.sample],
      },
    };
    if (aggregate.capped && record.aggregate) record.aggregate.distinctCapped = true;
    if (aggregate.count > 1) record.lastTime = iso(aggregate.lastMs);
    if (aggregate.origin !== undefined) record.origin = aggregate.origin;
    else delete record.origin;
    if (aggregate.severity !== undefined) record.severity = aggregate.severity;
    return record;
  }

  /**
   * Close every aggregate's window into a pending record (they go after the records queued before
   * them). An aggregate stays open, empty, while its pattern is still flooding (its last deny within
   * `hotMs`), so the flood's next denies keep being counted rather than each queued.
   */
  #closeAggregates(now: number): void {
    if (this.#aggregates.size === 0) return;
    for (const aggregate of [...this.#aggregates.values()]) {
      if (aggregate.count > 0) {
        const record = this.#aggregateRecord(aggregate);
        if (this.options.numberRecords) {
          this.#sandboxId ??= randomUUID();
          record.sandboxId = this.#sandboxId;
          record.seq = ++this.#seq;
        }
        // Its own key: a later deny never merges into a closed aggregate.
        this.#pending.push({ record, key: `aggregate|${record.id}`, lastMs: aggregate.lastMs });
        this.#tracked -= aggregate.seen.size;
        aggregate.seen.clear();
        aggregate.count = 0;
        aggregate.distinct = 0;
        aggregate.capped = false;
        aggregate.sample = [];
        aggregate.ip = undefined;
        aggregate.minPort = undefined;
        aggregate.maxPort = undefined;
        aggregate.origin = undefined;
        this.#openAggregates--;
      } else if (now - aggregate.lastMs >= this.#hotMs) {
        callOriginal(mapDelete, this.#aggregates, [aggregate.key]);
      }
    }
  }

  /** A pending record as it leaves: its last time written from the last merged deny. */
  static #out(p: Pending): DenyRecord {
    if (p.record.count > 1) p.record.lastTime = iso(p.lastMs);
    return p.record;
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
      // Aggregates go after the records queued before them; a flood that goes on opens new windows.
      this.#closeAggregates(Date.now());
      // Hit counts go with the first batch (or alone); a batch that fails loses them (statistics).
      let hits = this.#takeHits();
      while (this.#pending.length > 0) {
        const batch = this.#pending.slice(0, this.#maxBatch);
        // Records in flight are not aggregated into any more: a repeat starts a new record.
        for (const p of batch) callOriginal(mapDelete, this.#byKey, [p.key]);
        try {
          const riding = hits;
          hits = [];
          await sink.deliver(batch.map(RecordQueue.#out), riding);
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
      if (hits.length > 0) {
        try {
          await sink.deliver([], hits);
        } catch (error) {
          this.#lastError = error instanceof Error ? error.message : String(error);
        }
      }
    }
    return { delivered, pending: this.queued, dropped: this.#dropped };
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
    if (!sink?.deliverSync) return;
    this.#closeAggregates(Date.now());
    const hits = this.#takeHits();
    if (this.#pending.length === 0 && hits.length === 0) return;
    try {
      sink.deliverSync(this.#pending.map(RecordQueue.#out), hits);
      this.#delivered += this.#pending.length;
      this.#pending = [];
      callOriginal(mapClear, this.#byKey, []);
    } catch {
      // Exiting anyway: the records are lost and counted.
      this.#dropped += this.#pending.length;
    }
  }

  /** Records waiting for delivery (copies), open aggregates' windows last, for tests and wrappers without a sink. */
  peek(): DenyRecord[] {
    const records = this.#pending.map((p) => ({ ...RecordQueue.#out(p) }));
    for (const aggregate of this.#aggregates.values())
      if (aggregate.count > 0) records.push(this.#aggregateRecord(aggregate));
    return records;
  }

  setSink(sink: Sink | undefined): void {
    this.sink = sink;
    if (this.#pending.length > 0 || this.#aggregates.size > 0) this.#schedule();
  }
}
