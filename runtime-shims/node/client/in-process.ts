// The part of Azure and GCP support that is the same on both platforms: there is no extension, so
// the function process itself fetches and verifies its bundle, refreshes it before an invocation when
// it may be stale, long-polls while invocations are running (a change reaches a busy instance in well
// under a second), and delivers deny records before the platform can freeze or throttle the instance.
// Nothing here throws into the function: failures are logged and the invocation carries on under the
// last good bundle (or the shim's fail mode when it never had one).
import { loadTrustedKeys } from '../../../policy/keys.js';
import type { WorkloadIdentity } from '../../../policy/types.js';
import type { ShimPort } from '../shim-port.js';
import { controlCredentials } from './attest.js';
import { type BundleClient, createBundleClient, type FetchOutcome } from './bundle-client.js';

export interface InProcessOptions {
  /** Environment to configure from (default `process.env`). */
  env?: NodeJS.ProcessEnv | undefined;
  /**
   * Workload identity the bundle is asked for, or a function resolving it at start (after enforcement
   * is installed, so a lookup it makes — e.g. the GCP metadata server — is itself governed).
   */
  workload: WorkloadIdentity | (() => Promise<WorkloadIdentity>);
  /** Bound on the first bundle fetch at start (ms, default 3000). */
  startupTimeoutMs?: number | undefined;
  /** Bound on the conditional fetch before an invocation (ms, default 1000). */
  refreshTimeoutMs?: number | undefined;
  /** A bundle checked longer ago than this is refreshed before the next invocation (ms, default 1000). */
  maxStalenessMs?: number | undefined;
  /** Keep long-polling this long after the last running invocation ended (ms, default 30000). */
  idleLongPollMs?: number | undefined;
  /** Bound on delivering deny records after an invocation (ms, default 2000). */
  flushTimeoutMs?: number | undefined;
  /** Long-poll while invocations run (default true). */
  longPoll?: boolean | undefined;
  log?: ((message: string) => void) | undefined;
}

export interface InProcessStatus {
  /** Revision the shim enforces. */
  revision: number | undefined;
  /** Whether a control API is configured (BULKHEAD_CONTROL_URL + BULKHEAD_TOKEN + trusted keys). */
  controlled: boolean;
  running: number;
  longPolling: boolean;
  lastOutcome: FetchOutcome['kind'] | undefined;
}

export interface InProcessController {
  /** Install enforcement and fetch the first bundle (bounded). Idempotent; concurrent callers share it. */
  start(): Promise<void>;
  /** Before an invocation: start when needed, refresh when stale, keep the long-poll running. */
  beforeInvocation(): Promise<void>;
  /** After an invocation: deliver deny records (bounded); stop long-polling once idle for a while. */
  afterInvocation(): Promise<void>;
  runInInvocation<T>(invocationId: string, fn: () => T): T;
  /** Best-effort final delivery and stop (platform shutdown). */
  shutdown(): Promise<void>;
  status(): InProcessStatus;
  /** The bundle client once started, when a control API is configured. */
  client(): BundleClient | undefined;
  /** The identity bundles are fetched for (resolved at start). */
  workload(): WorkloadIdentity | undefined;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0 || value > 600_000) {
    throw new TypeError(`bulkhead: option ${name} must be a number of milliseconds from 0 to 600000`);
  }
  return value;
}

/** Resolves to the promise's value, or to `undefined` once `ms` passed (the work carries on). */
async function within<T>(work: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
    timer.unref();
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function createInProcessController(shim: ShimPort, options: InProcessOptions): InProcessController {
  const env = options.env ?? process.env;
  const startupTimeoutMs = positive('startupTimeoutMs', options.startupTimeoutMs, 3000);
  const refreshTimeoutMs = positive('refreshTimeoutMs', options.refreshTimeoutMs, 1000);
  const maxStalenessMs = positive('maxStalenessMs', options.maxStalenessMs, 1000);
  const idleLongPollMs = positive('idleLongPollMs', options.idleLongPollMs, 30_000);
  const flushTimeoutMs = positive('flushTimeoutMs', options.flushTimeoutMs, 2000);
  const longPoll = options.longPoll ?? true;
  const log = options.log ?? ((message: string) => console.error(`bulkhead: ${message}`));

  let client: BundleClient | undefined;
  let workload: WorkloadIdentity | undefined =
    typeof options.workload === 'function' ? undefined : options.workload;
  let started: Promise<void> | undefined;
  let running = 0;
  let idleTimer: NodeJS.Timeout | undefined;

  function enforce(envelopeText: string): void {
    try {
      shim.reload(envelopeText);
    } catch (error) {
      log(`could not load the fetched bundle: ${(error as Error).message}`);
    }
  }

  async function refresh(timeoutMs: number): Promise<void> {
    if (!client) return;
    const outcome = await client.fetchOnce({ timeoutMs });
    if (outcome.kind === 'updated') enforce(outcome.envelopeText);
    else if (outcome.kind === 'error') log(`bundle refresh failed (${outcome.cause}): ${outcome.message}`);
    // `rejected` is logged by the client, with the reason; the last good bundle stays.
  }

  function start(): Promise<void> {
    started ??= (async () => {
      try {
        shim.install();
      } catch (error) {
        log(`could not install enforcement: ${(error as Error).message}`);
      }
      if (workload === undefined) {
        try {
          workload = await (options.workload as () => Promise<WorkloadIdentity>)();
        } catch (error) {
          log(`could not resolve the workload identity: ${(error as Error).message}`);
          return;
        }
      }
      client = createClientFromEnv(shim, env, workload, Math.max(refreshTimeoutMs, 1), log);
      // This controller refreshes before invocations and long-polls while they run (tuned to the
      // platform's throttling): the preload's control link, if any, stops fetching.
      if (client) shim.handOverFetching();
      if (client) await refresh(startupTimeoutMs);
    })();
    return started;
  }

  function longPollHealthy(): boolean {
    if (!client) return false;
    const state = client.state();
    return state.longPolling && state.consecutiveFailures === 0 && state.lastCheckAt !== undefined;
  }

  async function beforeInvocation(): Promise<void> {
    running++;
    if (idleTimer !== undefined) {
      clearTimeout(idleTimer);
      idleTimer = undefined;
    }
    await start();
    if (!client) return;
    const lastCheckAt = client.state().lastCheckAt;
    const stale = lastCheckAt === undefined || Date.now() - lastCheckAt > maxStalenessMs;
    if (stale && !longPollHealthy()) await refresh(refreshTimeoutMs);
    if (longPoll && !client.state().longPolling) {
      client.startLongPoll((outcome) => enforce(outcome.envelopeText));
    }
  }

  async function afterInvocation(): Promise<void> {
    running = Math.max(0, running - 1);
    await deliver();
    const active = client;
    if (running === 0 && active && longPoll && idleTimer === undefined) {
      idleTimer = setTimeout(() => {
        idleTimer = undefined;
        if (running === 0) active.stop();
      }, idleLongPollMs);
      idleTimer.unref();
    }
  }

  async function deliver(): Promise<void> {
    try {
      const flushed = Promise.resolve(shim.flush()).then(
        () => true,
        (error: Error) => {
          log(`deny report delivery failed: ${error.message}`);
          return true;
        },
      );
      if ((await within(flushed, flushTimeoutMs)) === undefined) {
        log(`deny report delivery still running after ${flushTimeoutMs} ms; continuing`);
      }
    } catch (error) {
      log(`deny report delivery failed: ${(error as Error).message}`);
    }
  }

  async function shutdown(): Promise<void> {
    if (idleTimer !== undefined) clearTimeout(idleTimer);
    idleTimer = undefined;
    client?.stop();
    await deliver();
  }

  return {
    start,
    beforeInvocation,
    afterInvocation,
    runInInvocation: (invocationId, fn) => shim.runInInvocation(invocationId, fn),
    shutdown,
    status: () => ({
      revision: shim.status().revision,
      controlled: client !== undefined,
      running,
      longPolling: client?.state().longPolling ?? false,
      lastOutcome: client?.state().lastOutcome,
    }),
    client: () => client,
    workload: () => workload,
  };
}

/**
 * A bundle client from BULKHEAD_CONTROL_URL, BULKHEAD_TOKEN and BULKHEAD_TRUSTED_KEYS, or undefined
 * (with one log line saying what is missing) when the process is not configured for a control API.
 */
type ProveIdentity = NonNullable<ShimPort['proveIdentity']>;

function createClientFromEnv(
  shim: ShimPort,
  env: NodeJS.ProcessEnv,
  workload: WorkloadIdentity,
  timeoutMs: number,
  log: (message: string) => void,
): BundleClient | undefined {
  const controlUrl = env.BULKHEAD_CONTROL_URL;
  if (!controlUrl) return undefined;
  const token = env.BULKHEAD_TOKEN;
  const keySpecs = (env.BULKHEAD_TRUSTED_KEYS ?? '')
    .split(',')
    .map((spec) => spec.trim())
    .filter((spec) => spec !== '');
  if (!token || keySpecs.length === 0) {
    log(
      `BULKHEAD_CONTROL_URL is set but ${!token ? 'BULKHEAD_TOKEN' : 'BULKHEAD_TRUSTED_KEYS'} is not; bundles are not fetched`,
    );
    return undefined;
  }
  try {
    // One set of credentials for bundles and records. With BULKHEAD_ATTEST, GCP and Azure proofs are
    // made by the core, in a thread its hooks do not govern (the function's own requests to the
    // identity endpoint stay governed by the policy).
    const credentials = controlCredentials({
      env,
      controlUrl,
      token,
      workload,
      timeoutMs,
      log: (_level, message) => log(message),
      proof: shim.proveIdentity ? () => (shim.proveIdentity as ProveIdentity)(timeoutMs) : undefined,
    });
    shim.useCredentials?.(credentials);
    return createBundleClient({
      controlUrl,
      credentials,
      workload,
      trustedKeys: loadTrustedKeys(keySpecs),
      timeoutMs,
      log: (level, message) => {
        if (level !== 'debug') log(message);
      },
    });
  } catch (error) {
    log(`bundle client not started: ${(error as Error).message}`);
    return undefined;
  }
}
