// The in-process bundle client: fetches the signed bundle for one workload from the control API
// (conditional GET with ETag, optional long-poll), verifies it, and keeps the last good one.
// Used by the Azure and GCP wrappers and by the Lambda extension, so it depends on node:http(s)
// and the kernel's verification only — no npm packages, no YAML parser.
import http from 'node:http';
import https from 'node:https';
import { verifyBundle } from '../../../policy/bundle.js';
import { formatIdentity } from '../../../policy/identity.js';
import type { WorkloadIdentity } from '../../../policy/types.js';
import { type ControlCredentials, tokenCredentials } from './credentials.js';
import { readBody } from './read-body.js';

type VerifyOptions = Parameters<typeof verifyBundle>[1];
type VerifyResult = ReturnType<typeof verifyBundle>;
/** The verified bundle payload, as the kernel's `verifyBundle` returns it. */
export type VerifiedPayload = Extract<VerifyResult, { ok: true }>['payload'];
/** Why a bundle was refused (`bad-signature`, `unknown-key`, `unsigned`, `expired`, `rollback`, `wrong-scope`, `malformed`). */
export type RejectionReason = Extract<VerifyResult, { ok: false }>['reason'];
export type TrustedKeys = VerifyOptions['trustedKeys'];

export type BundleClientLogLevel = 'debug' | 'info' | 'warn';
export type BundleClientLogger = (level: BundleClientLogLevel, message: string) => void;

/** A bundle this client has verified and currently holds. */
export interface HeldBundle {
  envelopeText: string;
  payload: VerifiedPayload;
  revision: number;
  /** The control API's ETag for it (absent for a `lastGood` bundle given at creation). */
  etag: string | undefined;
}

export type FetchErrorCause = 'network' | 'timeout' | 'http' | 'too-large';

export type FetchOutcome =
  /** A newer (or first) verified bundle; it is now `current()`. */
  | {
      kind: 'updated';
      envelopeText: string;
      payload: VerifiedPayload;
      revision: number;
      etag: string | undefined;
    }
  /** The control API has nothing newer than what this client holds. */
  | { kind: 'not-modified'; revision: number | undefined }
  /** The control API answered with a bundle that failed verification; the last good one is kept. */
  | { kind: 'rejected'; reason: RejectionReason; message: string; revision: number | undefined }
  /** No answer that could be used (network, timeout, non-2xx status, oversized body). */
  | { kind: 'error'; cause: FetchErrorCause; message: string; status?: number | undefined };

export interface BundleClientOptions {
  /** Base URL of the control API (`http(s)://host:port[/prefix]`). */
  controlUrl: string;
  /** Workload-scoped bearer token. Sent only in the Authorization header, never logged. */
  token?: string | undefined;
  /** Instead of `token`: credentials that may attest (control-credentials.ts); bundles are then checked against their identity. */
  credentials?: ControlCredentials | undefined;
  workload: WorkloadIdentity;
  trustedKeys: TrustedKeys;
  /** A previously verified envelope (layer-baked or cached on disk); verified again before it is held. */
  lastGood?: string | undefined;
  /** Bound on a plain (non-long-poll) fetch, milliseconds. */
  timeoutMs: number;
  log?: BundleClientLogger | undefined;
  /** Largest accepted response body (bytes). Default 16 MiB. */
  maxBytes?: number | undefined;
  /** Long-poll wait the client asks for (seconds, the control API caps it at 60). Default 25. */
  longPollSeconds?: number | undefined;
  /** Clock for verification (expiry); tests pass a fixed one. */
  now?: (() => Date) | undefined;
}

export interface FetchOnceOptions {
  /** Ask the control API to hold the request up to this many seconds until a newer revision exists. */
  waitSeconds?: number | undefined;
  /** Override the client's timeout; for long-polls the wait is added to it. */
  timeoutMs?: number | undefined;
}

export interface BundleClientState {
  revision: number | undefined;
  etag: string | undefined;
  /** Epoch ms of the last answer from the control API (any status), or undefined. */
  lastAnswerAt: number | undefined;
  /** Epoch ms of the last successful check (updated or not-modified). */
  lastCheckAt: number | undefined;
  lastOutcome: FetchOutcome['kind'] | undefined;
  consecutiveFailures: number;
  longPolling: boolean;
}

export interface BundleClient {
  /** One GET of the bundle (conditional when a bundle is held). Never throws. */
  fetchOnce(options?: FetchOnceOptions): Promise<FetchOutcome>;
  /** The bundle held now (verified), if any. */
  current(): HeldBundle | undefined;
  state(): BundleClientState;
  /** Loops on long-polls until `stop()`; `onUpdate` is called for every newly held bundle. */
  startLongPoll(
    onUpdate: (outcome: Extract<FetchOutcome, { kind: 'updated' }>) => void | Promise<void>,
  ): void;
  /**
   * True when a long-poll is parked at the control API with no answer: nothing changed since it was
   * asked, so a conditional fetch would only say 304. Resolves after one event-loop turn, so an answer
   * that arrived while the sandbox was frozen (it waits in the socket) is read first.
   */
  parked(): Promise<boolean>;
  /** Stops the long-poll loop and aborts requests in flight. */
  stop(): void;
}

const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;
const DEFAULT_LONG_POLL_SECONDS = 25;
const MAX_LONG_POLL_SECONDS = 60;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30_000;
/** Pause after a long-poll answered much earlier than asked, so a server ignoring `wait` is not hammered. */
const EARLY_ANSWER_PAUSE_MS = 1_000;

export function createBundleClient(options: BundleClientOptions): BundleClient {
  const base = parseControlUrl(options.controlUrl);
  if (
    options.credentials === undefined &&
    (typeof options.token !== 'string' || options.token.length === 0 || /[\r\n]/.test(options.token))
  ) {
    throw new TypeError('bundle client: token must be a non-empty single-line string');
  }
  const credentials = options.credentials ?? tokenCredentials(options.token as string, options.workload);
  if (!Number.isFinite(options.timeoutMs) || options.timeoutMs <= 0) {
    throw new TypeError('bundle client: timeoutMs must be a positive number');
  }
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const longPollSeconds = Math.min(
    MAX_LONG_POLL_SECONDS,
    Math.max(1, Math.floor(options.longPollSeconds ?? DEFAULT_LONG_POLL_SECONDS)),
  );
  const log: BundleClientLogger = options.log ?? (() => {});
  const now = options.now ?? (() => new Date());
  const workloadParam = formatIdentity(options.workload);
  const transport = base.protocol === 'https:' ? https : http;
  // Keep-alive: the conditional fetch before an invocation should not pay a TCP handshake.
  const agent = new transport.Agent({ keepAlive: true, maxSockets: 4 });

  let held: HeldBundle | undefined;
  const state: BundleClientState = {
    revision: undefined,
    etag: undefined,
    lastAnswerAt: undefined,
    lastCheckAt: undefined,
    lastOutcome: undefined,
    consecutiveFailures: 0,
    longPolling: false,
  };
  const inFlight = new Set<http.ClientRequest>();
  let plainFetch: Promise<FetchOutcome> | undefined;
  let pollGeneration = 0;
  let pollTimer: NodeJS.Timeout | undefined;
  /** The long-poll in flight; `answered` once its response headers arrived. */
  let openPoll: { answered: boolean } | undefined;

  if (options.lastGood !== undefined) {
    const verified = verifyBundle(options.lastGood, {
      trustedKeys: options.trustedKeys,
      workload: options.workload,
      now: now(),
    });
    if (verified.ok) {
      held = hold(options.lastGood, verified.payload, undefined);
      log('info', `bundle client: holding last good bundle revision ${held.revision}`);
    } else {
      log('warn', `bundle client: last good bundle refused (${verified.reason}): ${verified.message}`);
    }
  }

  function hold(envelopeText: string, payload: VerifiedPayload, etag: string | undefined): HeldBundle {
    const bundle: HeldBundle = { envelopeText, payload, revision: payload.revision, etag };
    state.revision = bundle.revision;
    state.etag = etag;
    return bundle;
  }

  function record(outcome: FetchOutcome): FetchOutcome {
    state.lastOutcome = outcome.kind;
    if (outcome.kind === 'updated' || outcome.kind === 'not-modified') {
      state.lastCheckAt = Date.now();
      state.consecutiveFailures = 0;
    } else {
      state.consecutiveFailures++;
    }
    return outcome;
  }

  async function fetchBundle(waitSeconds: number | undefined, timeoutMs: number): Promise<FetchOutcome> {
    const url = new URL(base.href);
    url.pathname = `${base.pathname}v1/bundle`;
    url.searchParams.set('workload', workloadParam);
    if (waitSeconds !== undefined && waitSeconds > 0) {
      url.searchParams.set('wait', String(Math.min(MAX_LONG_POLL_SECONDS, Math.floor(waitSeconds))));
    }
    const startedMs = Date.now();
    const generation = pollGeneration;
    const authorization = credentials.current() ?? (await credentials.authorization(timeoutMs));
    // A long-poll whose loop was stopped while it attested is not sent.
    if (waitSeconds !== undefined && generation !== pollGeneration)
      return { kind: 'error', cause: 'network', message: 'bundle client stopped' };
    const headers: Record<string, string> = { authorization, accept: 'application/json' };
    if (held?.etag !== undefined) headers['if-none-match'] = held.etag;
    const answer = await request(url, headers, Math.max(1, timeoutMs - (Date.now() - startedMs)));
    if (answer.kind === 'failure') return record(answer.outcome);
    state.lastAnswerAt = Date.now();
    const { status, body, etag, revisionHeader } = answer;
    if (status === 401) credentials.refused(authorization);
    if (status === 304) {
      return record({ kind: 'not-modified', revision: held?.revision ?? revisionHeader });
    }
    if (status !== 200) {
      return record({
        kind: 'error',
        cause: 'http',
        status,
        message: `control API answered ${status}${describeErrorBody(body)}`,
      });
    }
    const envelopeText = body.toString('utf8');
    const verified = verifyBundle(envelopeText, {
      trustedKeys: options.trustedKeys,
      workload: credentials.identity(),
      now: now(),
      ...(held === undefined ? {} : { minRevision: held.revision }),
    });
    if (!verified.ok) {
      log(
        'warn',
        `bundle client: refused bundle from control API (${verified.reason}): ${verified.message}; keeping ${
          held === undefined ? 'no bundle' : `revision ${held.revision}`
        }`,
      );
      return record({
        kind: 'rejected',
        reason: verified.reason,
        message: verified.message,
        revision: held?.revision,
      });
    }
    if (held !== undefined && verified.payload.revision === held.revision) {
      // Same revision under a new ETag (e.g. the server re-signed): nothing changes for the shim.
      held = hold(held.envelopeText, held.payload, etag);
      return record({ kind: 'not-modified', revision: held.revision });
    }
    held = hold(envelopeText, verified.payload, etag);
    log('info', `bundle client: now holding revision ${held.revision}`);
    return record({
      kind: 'updated',
      envelopeText,
      payload: verified.payload,
      revision: held.revision,
      etag,
    });
  }

  type RawAnswer =
    | {
        kind: 'response';
        status: number;
        body: Buffer;
        etag: string | undefined;
        revisionHeader: number | undefined;
      }
    | { kind: 'failure'; outcome: Extract<FetchOutcome, { kind: 'error' }> };

  function request(url: URL, headers: Record<string, string>, timeoutMs: number): Promise<RawAnswer> {
    return new Promise((resolve) => {
      let settled = false;
      const finish = (answer: RawAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        inFlight.delete(req);
        if (poll && openPoll === poll) openPoll = undefined;
        resolve(answer);
      };
      const fail = (cause: FetchErrorCause, message: string, status?: number) =>
        finish({ kind: 'failure', outcome: { kind: 'error', cause, message, status } });
      const poll = url.searchParams.has('wait') ? { answered: false } : undefined;
      if (poll) openPoll = poll;
      const req = transport.request(url, { method: 'GET', headers, agent }, (res) => {
        const status = res.statusCode ?? 0;
        if (poll) poll.answered = true;
        void readBody(res, maxBytes).then((read) => {
          if (read.ok)
            return finish({
              kind: 'response',
              status,
              body: read.body,
              etag: singleHeader(res.headers.etag),
              revisionHeader: parseRevisionHeader(res.headers['x-bulkhead-revision']),
            });
          if (read.reason === 'aborted') return fail('network', 'bundle response aborted', status);
          if (read.reason === 'error')
            return fail('network', `bundle response interrupted: ${read.error.message}`, status);
          fail(
            'too-large',
            read.declared === undefined
              ? `bundle response exceeds the ${maxBytes}-byte limit`
              : `bundle response of ${read.declared} bytes exceeds the ${maxBytes}-byte limit`,
            status,
          );
        });
      });
      inFlight.add(req);
      const timer = setTimeout(() => {
        fail('timeout', `no complete answer from the control API within ${timeoutMs} ms`);
        req.destroy();
      }, timeoutMs);
      timer.unref();
      req.on('socket', (socket) => {
        // A long-poll in flight must not keep an otherwise finished process alive; keep-alive
        // sockets are shared, so a plain fetch takes its socket back into the ref'd set.
        if (url.searchParams.has('wait')) socket.unref();
        else socket.ref();
      });
      req.on('error', (error: NodeJS.ErrnoException) =>
        fail('network', `control API unreachable: ${error.code ?? error.message}`),
      );
      req.end();
    });
  }

  function fetchOnce(fetchOptions: FetchOnceOptions = {}): Promise<FetchOutcome> {
    const waitSeconds = fetchOptions.waitSeconds;
    const baseTimeout = fetchOptions.timeoutMs ?? options.timeoutMs;
    if (waitSeconds !== undefined && waitSeconds > 0) {
      const capped = Math.min(MAX_LONG_POLL_SECONDS, Math.floor(waitSeconds));
      return fetchBundle(capped, baseTimeout + capped * 1000);
    }
    // Concurrent invocations asking at once share one request.
    if (plainFetch === undefined) {
      plainFetch = fetchBundle(undefined, baseTimeout).finally(() => {
        plainFetch = undefined;
      });
    }
    return plainFetch;
  }

  function startLongPoll(onUpdate: Parameters<BundleClient['startLongPoll']>[0]): void {
    if (state.longPolling) return;
    state.longPolling = true;
    const generation = ++pollGeneration;
    let retryDelay = RETRY_MIN_MS;
    const loop = async (): Promise<void> => {
      if (generation !== pollGeneration) return;
      const startedAt = Date.now();
      const outcome = await fetchOnce({ waitSeconds: longPollSeconds });
      if (generation !== pollGeneration) return;
      let delay = 0;
      if (outcome.kind === 'updated') {
        retryDelay = RETRY_MIN_MS;
        try {
          await onUpdate(outcome);
        } catch (error) {
          log('warn', `bundle client: update handler failed: ${(error as Error).message}`);
        }
      } else if (outcome.kind === 'not-modified') {
        retryDelay = RETRY_MIN_MS;
        if (Date.now() - startedAt < (longPollSeconds * 1000) / 2) delay = EARLY_ANSWER_PAUSE_MS;
      } else {
        // Errors and refused bundles: back off (a bad bundle would otherwise come back at once).
        delay = retryDelay + Math.floor(Math.random() * (retryDelay / 2));
        retryDelay = Math.min(RETRY_MAX_MS, retryDelay * 2);
        if (outcome.kind === 'error') log('debug', `bundle client: long-poll failed: ${outcome.message}`);
      }
      if (generation !== pollGeneration) return;
      pollTimer = setTimeout(() => {
        pollTimer = undefined;
        void loop();
      }, delay);
      pollTimer.unref();
    };
    void loop();
  }

  function stop(): void {
    pollGeneration++;
    state.longPolling = false;
    if (pollTimer !== undefined) clearTimeout(pollTimer);
    pollTimer = undefined;
    for (const req of inFlight) req.destroy();
    inFlight.clear();
    agent.destroy();
  }

  async function parked(): Promise<boolean> {
    await new Promise((resolve) => setImmediate(resolve));
    return state.longPolling && openPoll !== undefined && !openPoll.answered;
  }

  return {
    fetchOnce,
    current: () => held,
    state: () => ({ ...state }),
    startLongPoll,
    parked,
    stop,
  };
}

function parseControlUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError(
      `bundle client: controlUrl is not a URL: ${JSON.stringify(String(text).slice(0, 200))}`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`bundle client: controlUrl must be http or https, got ${url.protocol}`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new TypeError('bundle client: controlUrl must not carry credentials; pass the token separately');
  }
  url.search = '';
  url.hash = '';
  if (!url.pathname.endsWith('/')) url.pathname = `${url.pathname}/`;
  return url;
}

function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function parseRevisionHeader(value: string | string[] | undefined): number | undefined {
  const text = singleHeader(value);
  if (text === undefined || !/^\d{1,15}$/.test(text)) return undefined;
  return Number(text);
}

/** A short, printable excerpt of an error body (the control API answers JSON `{error}`); never the request. */
function describeErrorBody(body: Buffer): string {
  if (body.length === 0) return '';
  const text = body
    .subarray(0, 200)
    .toString('utf8')
    .replace(/[^\x20-\x7e]/g, '?');
  return `: ${text}`;
}
