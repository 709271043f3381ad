// One HTTP request settled within a time bound (connect, headers and body together), its answer's
// body capped: what the workload side sends to a platform identity endpoint, an AWS service or
// POST /v1/attest. It never rejects: each caller words the failure for its own log. node:http(s) is
// required at the first request, not at load: the preload bundles the callers, and a process that
// never makes one must not pay for loading them.
import { createRequire } from 'node:module';
import { readBody } from './read-body.js';

const requireBuiltin = createRequire(import.meta.url);

export interface BoundedRequest {
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string | undefined;
}

export type BoundedAnswer =
  | { ok: true; status: number; body: Buffer }
  | {
      ok: false;
      /**
       * `invalid`: Node refused the request before sending a byte (a header value or URL it cannot
       * send); `timeout`: no complete answer in time; `network`: the connection failed; `too-large`:
       * the body passed the cap; `broken`: the answer ended before its body did.
       */
      cause: 'invalid' | 'timeout' | 'network' | 'too-large' | 'broken';
      /** The error's code (ECONNREFUSED, ERR_INVALID_CHAR), when it has one. */
      code: string | undefined;
      /** The error's name, for errors without a code. */
      name: string | undefined;
    };

export function boundedRequest(
  url: URL,
  init: BoundedRequest,
  timeoutMs: number,
  maxBytes: number,
): Promise<BoundedAnswer> {
  return new Promise((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = (answer: BoundedAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(answer);
    };
    const fail = (cause: Extract<BoundedAnswer, { ok: false }>['cause'], error?: NodeJS.ErrnoException) =>
      settle({ ok: false, cause, code: error?.code, name: error?.name });
    let request: import('node:http').ClientRequest;
    try {
      const client = requireBuiltin(
        url.protocol === 'https:' ? 'node:https' : 'node:http',
      ) as typeof import('node:http');
      const headers =
        init.body === undefined
          ? init.headers
          : { ...init.headers, 'content-length': String(Buffer.byteLength(init.body)) };
      request = client.request(url, { method: init.method, headers, agent: false }, (response) => {
        void readBody(response, maxBytes).then((read) => {
          if (read.ok) return settle({ ok: true, status: response.statusCode ?? 0, body: read.body });
          fail(read.reason === 'too-large' ? 'too-large' : 'broken');
        });
      });
    } catch (error) {
      return fail('invalid', error as NodeJS.ErrnoException);
    }
    timer = setTimeout(() => {
      fail('timeout');
      request.destroy();
    }, timeoutMs);
    timer.unref();
    request.on('error', (error: NodeJS.ErrnoException) => fail('network', error));
    request.end(init.body);
  });
}
