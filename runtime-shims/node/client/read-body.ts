// Reads an HTTP body (a server's IncomingMessage request, a client's response, or any byte stream)
// into one Buffer, up to a cap. Every peer of these bodies is either untrusted (the runtime, a
// function's caller) or able to misbehave (a proxy, a broken control API), and they all run inside
// a memory-limited function sandbox: without the cap one answer could take the process down, so
// nothing past `maxBytes` is ever kept. The promise never rejects and settles exactly once; the
// helper's own listeners stay attached after it settles, so a late 'error' is swallowed rather
// than thrown into the caller's process. No npm packages: the runtime shims and the Lambda
// extension both import it.
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';

export type ReadBodyResult =
  /** The whole body, `maxBytes` bytes at the most. */
  | { ok: true; body: Buffer }
  /**
   * The body is larger than `maxBytes`; none of it is returned. `received` counts what arrived (in
   * 'drain' mode, the whole body); `declared` is the Content-Length when that alone refused it.
   */
  | { ok: false; reason: 'too-large'; received: number; declared: number | undefined }
  /**
   * The body stopped before its end: the peer went away ('aborted', with Node's own
   * `aborted`/ECONNRESET error) or the stream failed ('error', with its error).
   */
  | { ok: false; reason: 'aborted'; error: Error }
  | { ok: false; reason: 'error'; error: Error };

export interface ReadBodyOptions {
  /**
   * What happens past the cap. 'destroy' (default): settle at once and destroy the stream (for a
   * client response or a server request, that closes the connection). 'drain': keep reading and
   * dropping the rest, and settle at its end, so the connection stays usable (a keep-alive socket
   * goes back to its agent; a server can still answer, e.g. 413).
   */
  overLimit?: 'destroy' | 'drain';
}

/** Read `stream` to its end, keeping at most `maxBytes` bytes. Never rejects (a bad cap throws at the call). */
export function readBody(
  stream: Readable,
  maxBytes: number,
  options: ReadBodyOptions = {},
): Promise<ReadBodyResult> {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0)
    throw new RangeError(`readBody: maxBytes must be a non-negative integer, got ${maxBytes}`);
  const drain = options.overLimit === 'drain';
  return new Promise((resolve) => {
    let chunks: Buffer[] = [];
    let size = 0;
    let declared: number | undefined;
    let refused = false;
    let settled = false;
    const settle = (result: ReadBodyResult) => {
      if (settled) return;
      settled = true;
      chunks = [];
      resolve(result);
    };
    const tooLarge = () => settle({ ok: false, reason: 'too-large', received: size, declared });
    const refuse = () => {
      refused = true;
      chunks = [];
      if (drain) return;
      tooLarge();
      stream.destroy();
    };

    stream.on('data', (chunk: Buffer | string) => {
      if (settled) return;
      const length = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      size += length;
      if (refused) return;
      if (size > maxBytes) return refuse();
      chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    });
    stream.on('end', () => {
      if (refused) return tooLarge();
      settle({ ok: true, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size) });
    });
    // IncomingMessage emits 'aborted' first, then (only when someone listens) 'error', then 'close'.
    stream.on('aborted', () => settle({ ok: false, reason: 'aborted', error: abortedError() }));
    stream.on('error', (error: Error) =>
      settle(
        (error as NodeJS.ErrnoException).code === 'ECONNRESET' && error.message === 'aborted'
          ? { ok: false, reason: 'aborted', error }
          : { ok: false, reason: 'error', error },
      ),
    );
    // A stream closed before 'end' (destroyed without an error) lost its peer.
    stream.on('close', () => settle({ ok: false, reason: 'aborted', error: abortedError() }));

    if (stream.errored) return settle({ ok: false, reason: 'error', error: stream.errored });
    if (stream.destroyed) return settle({ ok: false, reason: 'aborted', error: abortedError() });
    if (stream.readableEnded)
      return settle({ ok: false, reason: 'error', error: new Error('readBody: the body was already read') });

    // An HTTP message that announces more than the cap is refused before a byte of it is read.
    const length = (stream as Partial<IncomingMessage>).headers?.['content-length'];
    if (length !== undefined && /^\d{1,15}$/.test(length) && Number(length) > maxBytes) {
      declared = Number(length);
      refuse();
    }
    // A stream paused by its owner would never deliver 'data' otherwise.
    if (!settled) stream.resume();
  });
}

/** The error Node gives an IncomingMessage whose peer went away. */
function abortedError(): Error {
  return Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
}
