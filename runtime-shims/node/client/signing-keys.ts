// The control API's signing keys (`GET /v1/keys`), for a workload given no BULKHEAD_TRUSTED_KEYS.
// Keys taken from the same server as the bundles only prove what the channel to it proves, so they
// are taken only over a channel that authenticates the server: https, or loopback (no network to
// cross). Anywhere else the keys must be pinned (BULKHEAD_TRUSTED_KEYS).
import http from 'node:http';
import https from 'node:https';
import { normalizeIp } from '../../../policy/cidr.js';
import { readBody } from './read-body.js';

/** May the keys be taken from the control API at `url` itself? */
export function keysDiscoverable(url: URL): boolean {
  if (url.protocol === 'https:') return true;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const ip = normalizeIp(host);
  return host === 'localhost' || (ip !== undefined && (ip.startsWith('127.') || ip === '::1'));
}

/** The public keys (PEM) `GET /v1/keys` lists, or what went wrong. Never throws; the token is never in a message. */
export function listSigningKeys(
  controlUrl: string,
  token: string,
  timeoutMs: number,
): Promise<{ keys: string[] } | { problem: string }> {
  return new Promise((resolve) => {
    let url: URL;
    try {
      url = new URL('v1/keys', controlUrl.endsWith('/') ? controlUrl : `${controlUrl}/`);
    } catch {
      resolve({ problem: 'the control URL is not a URL' });
      return;
    }
    const transport = url.protocol === 'https:' ? https : http;
    const request = transport.get(
      url,
      { headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, timeout: timeoutMs },
      (response) => {
        void readBody(response, 1024 * 1024).then((read) => {
          if (!read.ok) return resolve({ problem: `GET /v1/keys: ${read.reason}` });
          if (response.statusCode !== 200)
            return resolve({ problem: `GET /v1/keys answered ${response.statusCode}` });
          try {
            const body = JSON.parse(read.body.toString('utf8')) as { keys?: { publicKey?: unknown }[] };
            const keys = (Array.isArray(body.keys) ? body.keys : [])
              .map((k) => k?.publicKey)
              .filter((k): k is string => typeof k === 'string');
            resolve(keys.length > 0 ? { keys } : { problem: 'GET /v1/keys listed no key' });
          } catch {
            resolve({ problem: 'GET /v1/keys: not JSON' });
          }
        });
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    request.on('error', (error) => resolve({ problem: `GET /v1/keys: ${error.message}` }));
  });
}
