// The Telemetry API (2022-07-01) route: an extension's subscription (PUT), accepted during init only.
// Validating the subscription and delivering events to the subscriber are in telemetry.ts.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { identify } from './extensions-api.js';
import { MAX_CONTROL_BODY_BYTES, parseJson, readBody, sendError, sendJson } from './http.js';
import { parseSubscription, TelemetryDispatcher } from './telemetry.js';
import type { RegisteredExtension, SandboxOptions } from './types.js';

/** What the Telemetry API handler sees of the sandbox: live views, not copies. */
export interface TelemetryApiHost {
  readonly options: SandboxOptions;
  /** Subscriptions are accepted: during init. */
  readonly subscriptionOpen: boolean;
  /** Registered extensions by identifier. */
  readonly extensions: ReadonlyMap<string, RegisteredExtension>;
  /** Each subscriber's dispatcher, by extension identifier. */
  readonly dispatchers: Map<string, TelemetryDispatcher>;
}

/** `PUT /2022-07-01/telemetry`: subscribes the calling extension (a new subscription replaces its old one). */
export async function telemetrySubscribe(
  host: TelemetryApiHost,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const body = await readBody(req, MAX_CONTROL_BODY_BYTES);
  const extension = identify(host.extensions, req, res);
  if (!extension) return;
  if (host.options.telemetry === 'not-supported')
    return sendError(
      res,
      202,
      'Telemetry.NotSupported',
      'Telemetry API is not supported in this environment',
    );
  if (!host.subscriptionOpen)
    return sendError(res, 403, 'Telemetry.SubscriptionClosed', 'subscriptions are only accepted during init');
  if (!body.ok) return sendError(res, 400, 'ValidationError', 'request body too large');
  const parsed = parseSubscription(extension.name, parseJson(body.body));
  if (!parsed.ok) return sendError(res, 400, 'ValidationError', parsed.message);
  host.dispatchers.get(extension.id)?.close();
  host.dispatchers.set(extension.id, new TelemetryDispatcher(parsed.subscription));
  sendJson(res, 200, 'OK');
}
