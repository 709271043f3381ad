// Telemetry API 2022-07-01: subscription validation (the RIE JSON schema's limits) and
// batched delivery of platform events to each subscriber's listener on loopback.
import { request } from 'node:http';

export type TelemetryType = 'platform' | 'function' | 'extension';

export interface TelemetrySubscription {
  extensionName: string;
  types: Set<TelemetryType>;
  maxItems: number;
  maxBytes: number;
  timeoutMs: number;
  /** Loopback URL that `sandbox.localdomain` was mapped to. */
  url: URL;
}

export interface TelemetryEvent {
  time: string;
  type: string;
  record: unknown;
}

const SCHEMA_VERSIONS = new Set(['2022-07-01', '2022-12-13', '2025-01-29']);
const TYPES = new Set<string>(['platform', 'function', 'extension']);
const SANDBOX_HOSTS = new Set(['sandbox.localdomain', 'sandbox', '127.0.0.1', 'localhost']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function integerIn(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/** Validates a subscription body. Returns the subscription or a ValidationError message. */
export function parseSubscription(
  extensionName: string,
  body: unknown,
): { ok: true; subscription: TelemetrySubscription } | { ok: false; message: string } {
  if (!isRecord(body)) return { ok: false, message: 'request body must be a JSON object' };
  if (typeof body.schemaVersion !== 'string' || !SCHEMA_VERSIONS.has(body.schemaVersion))
    return { ok: false, message: `schemaVersion must be one of ${[...SCHEMA_VERSIONS].join(', ')}` };
  const types = body.types;
  if (
    !Array.isArray(types) ||
    types.length === 0 ||
    !types.every((t) => typeof t === 'string' && TYPES.has(t))
  )
    return { ok: false, message: 'types must be a non-empty array of platform, function, extension' };
  const buffering = body.buffering ?? {};
  if (!isRecord(buffering)) return { ok: false, message: 'buffering must be an object' };
  const maxItems = buffering.maxItems ?? 10_000;
  const maxBytes = buffering.maxBytes ?? 262_144;
  const timeoutMs = buffering.timeoutMs ?? 1_000;
  if (!integerIn(maxItems, 1_000, 10_000))
    return { ok: false, message: 'buffering.maxItems must be 1000-10000' };
  if (!integerIn(maxBytes, 262_144, 1_048_576))
    return { ok: false, message: 'buffering.maxBytes must be 262144-1048576' };
  if (!integerIn(timeoutMs, 25, 30_000))
    return { ok: false, message: 'buffering.timeoutMs must be 25-30000' };
  const destination = body.destination;
  if (!isRecord(destination) || destination.protocol !== 'HTTP' || typeof destination.URI !== 'string')
    return {
      ok: false,
      message: 'destination must be {"protocol":"HTTP","URI":"http://sandbox.localdomain:<port>/…"}',
    };
  let url: URL;
  try {
    url = new URL(destination.URI);
  } catch {
    return { ok: false, message: 'destination.URI is not a URL' };
  }
  if (url.protocol !== 'http:' || !SANDBOX_HOSTS.has(url.hostname) || url.port === '' || url.port === '9001')
    return {
      ok: false,
      message: 'destination.URI must be http://sandbox.localdomain:<port other than 9001>',
    };
  url.hostname = '127.0.0.1';
  return {
    ok: true,
    subscription: {
      extensionName,
      types: new Set(types as TelemetryType[]),
      maxItems,
      maxBytes,
      timeoutMs,
      url,
    },
  };
}

/**
 * One subscriber's buffer. Events are held while the sandbox is frozen (the listener cannot
 * answer) and delivered after `timeoutMs` or when `maxItems` is reached; failed deliveries are
 * retried with backoff until the dispatcher is closed.
 */
export class TelemetryDispatcher {
  private buffer: TelemetryEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending = false;
  private paused = false;
  private closed = false;
  private failures = 0;
  delivered = 0;

  constructor(readonly subscription: TelemetrySubscription) {}

  push(event: TelemetryEvent): void {
    if (this.closed) return;
    const category = event.type.split('.')[0] as TelemetryType;
    if (!this.subscription.types.has(category)) return;
    this.buffer.push(event);
    if (this.buffer.length >= this.subscription.maxItems) this.flushSoon(0);
    else this.flushSoon(this.subscription.timeoutMs);
  }

  pause(): void {
    this.paused = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  resume(): void {
    this.paused = false;
    if (this.buffer.length > 0) this.flushSoon(this.subscription.timeoutMs);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.buffer = [];
  }

  private flushSoon(delayMs: number): void {
    if (this.paused || this.closed || this.sending) return;
    if (this.timer && delayMs > 0) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delayMs);
  }

  private async flush(): Promise<void> {
    if (this.paused || this.closed || this.sending || this.buffer.length === 0) return;
    const batch = this.takeBatch();
    this.sending = true;
    const ok = await postJson(this.subscription.url, batch);
    this.sending = false;
    if (ok) {
      this.failures = 0;
      this.delivered += batch.length;
      if (this.buffer.length > 0) this.flushSoon(0);
      return;
    }
    if (this.closed) return;
    this.buffer.unshift(...batch);
    this.failures++;
    this.flushSoon(Math.min(1_000, 25 * 2 ** this.failures));
  }

  private takeBatch(): TelemetryEvent[] {
    let bytes = 0;
    let count = 0;
    for (const event of this.buffer) {
      bytes += JSON.stringify(event).length;
      if (count > 0 && (bytes > this.subscription.maxBytes || count >= this.subscription.maxItems)) break;
      count++;
    }
    return this.buffer.splice(0, count);
  }
}

function postJson(url: URL, body: unknown): Promise<boolean> {
  const text = JSON.stringify(body);
  return new Promise((resolve) => {
    const req = request(
      url,
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) },
        timeout: 2_000,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve((res.statusCode ?? 500) < 300));
        res.on('error', () => resolve(false));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end(text);
  });
}
