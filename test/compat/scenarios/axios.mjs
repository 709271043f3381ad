// axios 1 (Node http adapter): GET/POST, custom lookup, custom Host, keep-alive agent, forward proxy,
// socketPath, redirects, TLS with a CA.
import { Agent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import axios from 'axios';
import { cfg, fakeLookup, pickHeaders, runCases, settle } from './lib.mjs';

const base = `http://127.0.0.1:${cfg.http}`;
// No proxy from the environment: every case says what it wants.
const client = axios.create({ proxy: false, validateStatus: () => true });

async function call(config) {
  const res = await client.request(config);
  return { status: res.status, headers: pickHeaders(res.headers), data: res.data };
}

await runCases({
  GET: () => call({ url: `${base}/echo?x=1` }),
  'GET JSON': () => call({ url: `${base}/json` }),
  'POST JSON': () => call({ url: `${base}/echo`, method: 'post', data: { a: 1 } }),
  'status 404': () => call({ url: `${base}/status/404` }),
  'lookup option (fake name)': () =>
    call({ url: `http://api.compat.test:${cfg.http}/echo`, lookup: fakeLookup }),
  'custom Host header': () => call({ url: `${base}/echo`, headers: { Host: 'api.compat.test' } }),
  'keep-alive httpAgent reuse': async () => {
    const httpAgent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const out = [];
      for (let i = 0; i < 3; i++)
        out.push(await settle(async () => (await call({ url: `${base}/seq`, httpAgent })).data.seq));
      return out;
    } finally {
      httpAgent.destroy();
    }
  },
  'proxy option (forward proxy)': () =>
    call({
      url: `http://localhost:${cfg.http}/echo`,
      proxy: { protocol: 'http', host: '127.0.0.1', port: cfg.proxy },
    }),
  'proxy option to 127.0.0.1': () =>
    call({
      url: `http://127.0.0.1:${cfg.http}/echo`,
      proxy: { protocol: 'http', host: '127.0.0.1', port: cfg.proxy },
    }),
  'proxy option to fake name': () =>
    call({
      url: `http://proxied.compat.test:${cfg.http}/echo`,
      proxy: { protocol: 'http', host: '127.0.0.1', port: cfg.proxy },
    }),
  socketPath: () => call({ url: 'http://localhost/echo', socketPath: cfg.unix }),
  'redirects (maxRedirects 5)': () => call({ url: `${base}/redirect/3`, maxRedirects: 5 }),
  'redirects over maxRedirects': () => call({ url: `${base}/redirect/3`, maxRedirects: 1 }),
  'redirects off (maxRedirects 0)': async () => {
    const res = await client.request({ url: `${base}/redirect/2`, maxRedirects: 0 });
    return { status: res.status, location: res.headers.location };
  },
  'TLS with ca': async () => {
    const httpsAgent = new HttpsAgent({ ca: cfg.ca });
    try {
      return await call({ url: `https://localhost:${cfg.https}/echo`, httpsAgent });
    } finally {
      httpsAgent.destroy();
    }
  },
  'TLS IP URL with servername': async () => {
    const httpsAgent = new HttpsAgent({ ca: cfg.ca, servername: 'localhost' });
    try {
      return await call({ url: `https://127.0.0.1:${cfg.https}/echo`, httpsAgent });
    } finally {
      httpsAgent.destroy();
    }
  },
});
