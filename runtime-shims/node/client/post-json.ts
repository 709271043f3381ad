// One JSON POST (the deny-record sinks: the core's HTTP sink and the control link's exit flush).
// node:http(s) is required at the first call, not at load: a process that never reports pays nothing.
import { createRequire } from 'node:module';

const requireBuiltin = createRequire(import.meta.url);

/** POST `body`; resolves with the status once the answer was read, rejects on a network error or timeout. */
export function postJson(
  url: URL,
  body: string,
  headers: Record<string, string>,
  timeoutMs = 5000,
): Promise<number> {
  return new Promise((resolve, reject) => {
    try {
      const client = requireBuiltin(
        url.protocol === 'https:' ? 'node:https' : 'node:http',
      ) as typeof import('node:http');
      const request = client.request(
        url,
        {
          method: 'POST',
          headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
          timeout: timeoutMs,
        },
        (response) => {
          response.resume();
          response.on('end', () => resolve(response.statusCode ?? 0));
          response.on('error', reject);
        },
      );
      request.on('timeout', () => request.destroy(new Error('timed out')));
      request.on('error', reject);
      request.end(body);
    } catch (error) {
      reject(error);
    }
  });
}
