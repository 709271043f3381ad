// Client of the Bulkhead extension's local endpoint (docs/contracts.md §6):
// `GET /v1/invocations/{requestId}/ready` answers once the extension has finished its INVOKE refresh,
// so a policy applied before the INVOKE governs this invocation's connections.
import { Agent, request } from 'node:http';
import { readBody } from '../client/read-body.js';

export interface ReadyAnswer {
  revision: number;
  bundleFile?: string | undefined;
}

/** Largest answer we read; the real one is a few dozen bytes. */
const MAX_ANSWER_BYTES = 16 * 1024;
/** Lambda request ids are UUIDs; anything far longer is not one and is not sent. */
const MAX_REQUEST_ID_LENGTH = 200;

// Keep-alive: the extension lives in the same sandbox, so the connection survives freezes (both ends
// are frozen together) and saves a handshake per invocation. More than one socket only matters when
// several invocations share the process (Managed Instances), where ready waits must not queue.
const agent = new Agent({ keepAlive: true, maxSockets: 8, maxFreeSockets: 1 });

export class ExtensionSyncError extends Error {
  override readonly name = 'ExtensionSyncError';
}

/**
 * Parse and check an extension URL: http on a loopback address only (the extension binds 127.0.0.1,
 * and anything else would send request ids off the machine). Returns the origin, or an error message.
 */
export function parseExtensionUrl(text: string): { ok: true; origin: URL } | { ok: false; message: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { ok: false, message: `extension URL is not a URL: ${JSON.stringify(text.slice(0, 100))}` };
  }
  if (url.protocol !== 'http:')
    return { ok: false, message: `extension URL must be http://, got ${url.protocol}` };
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname))
    return { ok: false, message: `extension URL must be on loopback (127.0.0.1), got ${url.hostname}` };
  if (url.username || url.password) return { ok: false, message: 'extension URL must not carry credentials' };
  return { ok: true, origin: new URL(url.origin) };
}

export function isSendableRequestId(requestId: unknown): requestId is string {
  return typeof requestId === 'string' && requestId.length > 0 && requestId.length <= MAX_REQUEST_ID_LENGTH;
}

/** Validate the body of a ready answer; throws ExtensionSyncError with a clear message. */
export function parseReadyAnswer(body: string): ReadyAnswer {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new ExtensionSyncError('extension answered with a body that is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new ExtensionSyncError('extension answer is not a JSON object');
  const { revision, bundleFile } = parsed as Record<string, unknown>;
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 0)
    throw new ExtensionSyncError('extension answer has no valid "revision" (non-negative integer)');
  if (bundleFile !== undefined && typeof bundleFile !== 'string')
    throw new ExtensionSyncError('extension answer "bundleFile" is not a string');
  return { revision, bundleFile };
}

/** Ask the extension whether it is ready for `requestId`; rejects after `timeoutMs`. */
export function waitForExtensionReady(
  origin: URL,
  requestId: string,
  timeoutMs: number,
): Promise<ReadyAnswer> {
  return new Promise((resolve, reject) => {
    const path = `/v1/invocations/${encodeURIComponent(requestId)}/ready`;
    let settled = false;
    const finish = (error: Error | undefined, answer?: ReadyAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(answer as ReadyAnswer);
    };
    const req = request(
      {
        host: origin.hostname.replace(/^\[|\]$/g, ''),
        port: origin.port || 80,
        path,
        method: 'GET',
        agent,
        headers: { accept: 'application/json' },
      },
      (res) => {
        void readBody(res, MAX_ANSWER_BYTES).then((read) => {
          if (!read.ok) {
            finish(
              read.reason === 'too-large'
                ? new ExtensionSyncError(`extension answer larger than ${MAX_ANSWER_BYTES} bytes`)
                : read.error,
            );
            return;
          }
          if (res.statusCode !== 200) {
            finish(new ExtensionSyncError(`extension answered HTTP ${res.statusCode} for ${path}`));
            return;
          }
          try {
            finish(undefined, parseReadyAnswer(read.body.toString('utf8')));
          } catch (error) {
            finish(error as Error);
          }
        });
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      finish(new ExtensionSyncError(`extension did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    req.on('error', (error) => finish(new ExtensionSyncError(`extension unreachable: ${error.message}`)));
    req.end();
  });
}
