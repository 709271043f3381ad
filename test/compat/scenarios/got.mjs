// got 14: GET/JSON, dnsLookup, dnsCache (cacheable-lookup with a fake resolver and with a real
// resolver pointed at the local DNS responder), Unix socket, HTTP/2 over TLS, redirects, retries,
// keep-alive agent.
import { Resolver } from 'node:dns';
import { Agent } from 'node:http';
import CacheableLookup from 'cacheable-lookup';
import got from 'got';
import { cfg, fakeLookup, pickHeaders, runCases, settle } from './lib.mjs';

const base = `http://127.0.0.1:${cfg.http}`;
const client = got.extend({ retry: { limit: 0 }, throwHttpErrors: false, timeout: { request: 4000 } });

async function call(url, options = {}) {
  const res = await client(url, { responseType: 'json', ...options });
  return {
    status: res.statusCode,
    headers: pickHeaders(res.headers),
    body: res.body,
    redirects: res.redirectUrls.length,
  };
}

/** A cacheable-lookup resolver that answers .compat.test names itself (callback API, like dns.Resolver). */
const fakeResolver = {
  servers: ['127.0.0.1'],
  getServers: () => ['127.0.0.1'],
  setServers: () => undefined,
  resolve4: (name, _opts, cb) =>
    name.endsWith('.compat.test')
      ? process.nextTick(cb, null, [{ address: '127.0.0.1', ttl: 60 }])
      : process.nextTick(cb, Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' })),
  resolve6: (_name, _opts, cb) =>
    process.nextTick(cb, Object.assign(new Error('ENODATA'), { code: 'ENODATA' })),
};

await runCases({
  GET: () => call(`${base}/echo?x=1`),
  'GET JSON': () => call(`${base}/json`),
  'POST json': () => call(`${base}/echo`, { method: 'POST', json: { a: 1 } }),
  'dnsLookup custom (fake name)': () =>
    call(`http://api.compat.test:${cfg.http}/echo`, { dnsLookup: fakeLookup }),
  'dnsCache (fake resolver)': () =>
    call(`http://cache.compat.test:${cfg.http}/echo`, {
      dnsCache: new CacheableLookup({ resolver: fakeResolver, lookup: false, fallbackDuration: 0 }),
    }),
  'dnsCache (resolver on local DNS server)': () => {
    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([`127.0.0.1:${cfg.dns}`]);
    return call(`http://dns.compat.test:${cfg.http}/echo`, {
      dnsCache: new CacheableLookup({ resolver, lookup: false, fallbackDuration: 0 }),
    });
  },
  'dnsCache localhost (lookup fallback)': () =>
    call(`http://localhost:${cfg.http}/echo`, {
      dnsCache: new CacheableLookup({ resolver: fakeResolver, fallbackDuration: 0 }),
    }),
  'custom Host header': () => call(`${base}/echo`, { headers: { host: 'api.compat.test' } }),
  'unix socket': () => call(`http://unix:${cfg.unix}:/echo`, { enableUnixSockets: true }),
  'http2 over TLS': () =>
    call(`https://localhost:${cfg.h2}/echo`, { http2: true, https: { certificateAuthority: cfg.ca } }),
  'TLS https with ca': () =>
    call(`https://localhost:${cfg.https}/echo`, { https: { certificateAuthority: cfg.ca } }),
  'redirects followed': () => call(`${base}/redirect/3`),
  'redirects over maxRedirects': () => call(`${base}/redirect/3`, { maxRedirects: 1, throwHttpErrors: true }),
  'retry 503 then 200': async () => {
    const retries = [];
    const res = await call(`${base}/flaky/got-${process.pid}-${Date.now()}`, {
      retry: { limit: 2, statusCodes: [503], backoffLimit: 50 },
      hooks: { beforeRetry: [(error) => retries.push(error.response?.statusCode ?? error.code)] },
    });
    return { ...res, retries };
  },
  // got's own defaults (retry limit 2 on network errors for GET): denied runs count the attempts.
  'GET with default retry': async () => {
    const res = await got(`${base}/echo`, { responseType: 'json', timeout: { request: 15_000 } });
    return { status: res.statusCode, body: res.body, retryCount: res.retryCount };
  },
  'keep-alive agent reuse': async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const out = [];
      for (let i = 0; i < 3; i++)
        out.push(await settle(async () => (await call(`${base}/seq`, { agent: { http: agent } })).body.seq));
      return out;
    } finally {
      agent.destroy();
    }
  },
});
