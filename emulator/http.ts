// Small HTTP helpers shared by the emulator's API handlers. Error bodies follow RIE:
// always `{"errorMessage": string, "errorType": string}`.
import type { IncomingMessage, ServerResponse } from 'node:http';

/** RIE `interop.MaxPayloadSize`: 6 MiB plus 100 bytes of envelope. */
export const MAX_RESPONSE_PAYLOAD_BYTES = 6 * 1024 * 1024 + 100;
/** Streamed responses may be larger (20 MiB soft limit on Lambda). */
export const MAX_STREAMED_PAYLOAD_BYTES = 20 * 1024 * 1024;
/** Registration, error and subscription bodies are small; anything larger is hostile. */
export const MAX_CONTROL_BODY_BYTES = 256 * 1024;

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendError(
  res: ServerResponse,
  status: number,
  errorType: string,
  errorMessage: string,
): void {
  sendJson(res, status, { errorMessage, errorType });
}

export const ACCEPTED = { status: 'OK' } as const;

export type BodyResult =
  | { ok: true; body: Buffer; trailers: Record<string, string | undefined> }
  | { ok: false; reason: 'too-large' | 'aborted' };

/**
 * Reads a request body up to `limit` bytes. Past the limit the rest is drained and
 * discarded so the client still gets the 413 instead of a reset connection.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size > limit) {
        tooLarge = true;
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (tooLarge) resolve({ ok: false, reason: 'too-large' });
      else resolve({ ok: true, body: Buffer.concat(chunks), trailers: { ...req.trailers } });
    });
    req.on('aborted', () => resolve({ ok: false, reason: 'aborted' }));
    req.on('error', () => resolve({ ok: false, reason: 'aborted' }));
  });
}

/**
 * Reads and discards a body the route has no use for. Answering before the body is consumed
 * makes Node close the kept-alive connection under a client that is about to reuse it.
 */
export function drainBody(req: IncomingMessage, limit = MAX_CONTROL_BODY_BYTES): Promise<void> {
  if (req.complete) return Promise.resolve();
  return new Promise((resolve) => {
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) req.destroy();
    });
    req.on('end', () => resolve());
    req.on('close', () => resolve());
    req.on('error', () => resolve());
  });
}

/** Parses JSON without throwing; `undefined` means "not JSON". */
export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

export function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name.toLowerCase()];
  if (Array.isArray(value)) return value[0];
  return value;
}
