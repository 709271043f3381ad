// One replica's view of its store: whether start-up has finished, whether the database answers,
// and how recently the head revision was confirmed. It finishes start-up whenever the database
// arrives (a replica starts while the database is down and /healthz says 503 until then), and
// afterwards checks the head revision every HEAD_CHECK_INTERVAL_MS: the backstop for an
// announcement lost while a LISTEN connection was down. That check bounds how far behind a
// replica can be: one interval plus one read of the new revision (docs/control-api.md).
import type { FastifyBaseLogger } from 'fastify';
import type { PolicyState } from './policy-state.js';
import type { ControlStore } from './store/types.js';

/** How often the head revision is read from the store (and reachability checked). */
export const HEAD_CHECK_INTERVAL_MS = 1000;
/** Start-up retry backoff while the database is away. */
const STARTUP_RETRY_FIRST_MS = 250;
const STARTUP_RETRY_MAX_MS = 1000;

export interface StoreHealth {
  /** Start-up (migrations, signing key, first revision) has completed. */
  ready: boolean;
  /** The last store call succeeded. */
  reachable: boolean;
  /** When the store stopped answering (ms since epoch), while it is unreachable. */
  downSinceMs: number | undefined;
  /** Why it stopped answering, or why start-up is still waiting. */
  reason: string | undefined;
  /** When the head revision was last read from the store (ms since epoch); 0 before. */
  headConfirmedMs: number;
}

export class StoreWatch {
  private startupDone = false;
  private reachable = true;
  private downSinceMs: number | undefined;
  private reason: string | undefined;
  private headConfirmedMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private checking = false;

  constructor(
    private readonly store: ControlStore,
    private readonly state: PolicyState,
    private readonly log: FastifyBaseLogger,
    /** Migrations, the signing key's row and the first revision: what must succeed before serving. */
    private readonly startup: () => Promise<void>,
  ) {}

  get ready(): boolean {
    return this.startupDone;
  }

  health(): StoreHealth {
    return {
      ready: this.startupDone,
      reachable: this.reachable,
      downSinceMs: this.downSinceMs,
      reason: this.reason,
      headConfirmedMs: this.headConfirmedMs,
    };
  }

  /**
   * Tries start-up once and returns: on success the replica serves at once; otherwise start-up
   * is retried in the background with backoff, and the head check starts when it succeeds.
   */
  async start(): Promise<void> {
    if (await this.tryStartup()) return;
    let delay = STARTUP_RETRY_FIRST_MS;
    const retry = () => {
      if (this.stopped) return;
      this.timer = setTimeout(async () => {
        if (this.stopped || (await this.tryStartup())) return;
        delay = Math.min(STARTUP_RETRY_MAX_MS, delay * 2);
        retry();
      }, delay);
      this.timer.unref();
    };
    retry();
  }

  private async tryStartup(): Promise<boolean> {
    try {
      await this.startup();
    } catch (error) {
      this.failed(error, 'waiting for the database to finish start-up');
      return false;
    }
    if (this.stopped) return false;
    this.startupDone = true;
    this.succeeded();
    this.headConfirmedMs = Date.now();
    this.log.info({ revision: this.state.revision }, 'store ready');
    this.scheduleHeadCheck();
    return true;
  }

  private scheduleHeadCheck(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.checkHead().finally(() => this.scheduleHeadCheck());
    }, HEAD_CHECK_INTERVAL_MS);
    this.timer.unref();
  }

  /** Reads the head revision (or, for a store no other process writes, checks it answers). */
  async checkHead(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      if (this.store.headRevision) {
        const head = await this.store.headRevision();
        this.headConfirmedMs = Date.now();
        this.succeeded();
        if (head > this.state.revision) await this.state.advance(head);
      } else {
        await this.store.schemaVersion();
        this.headConfirmedMs = Date.now();
        this.succeeded();
      }
    } catch (error) {
      this.failed(error, 'store unreachable');
    } finally {
      this.checking = false;
    }
  }

  /** A request or a background job saw the store fail: logged once per outage, not per call. */
  failed(error: unknown, context = 'store unreachable'): void {
    const reason = (error as Error)?.message ?? String(error);
    this.reason = reason;
    if (!this.reachable) return;
    this.reachable = false;
    this.downSinceMs = Date.now();
    this.log.warn({ reason }, context);
  }

  /** A store call succeeded: ends an outage. */
  succeeded(): void {
    if (this.reachable) return;
    const downMs = Date.now() - (this.downSinceMs ?? Date.now());
    this.reachable = true;
    this.downSinceMs = undefined;
    this.reason = undefined;
    this.log.info({ downMs }, 'store reachable again');
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
