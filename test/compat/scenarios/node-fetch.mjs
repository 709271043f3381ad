// node-fetch 3 (ESM): GET, custom Host header, redirects, keep-alive agent, agent with a custom lookup.
import { Agent } from 'node:http';
import fetch from 'node-fetch';
import { body, cfg, fakeLookup, pickHeaders, runCases, settle } from './lib.mjs';

const base = `http://127.0.0.1:${cfg.http}`;

async function get(url, options = {}) {
  const res = await fetch(url, options);
  const text = await res.text();
  return {
    status: res.status,
    redirected: res.redirected,
    headers: pickHeaders(res.headers),
    body: body(text),
  };
}

await runCases({
  GET: () => get(`${base}/echo?x=1`),
  'POST body': () =>
    get(`${base}/echo`, { method: 'POST', body: 'ping', headers: { 'content-type': 'text/plain' } }),
  'custom Host header': () => get(`${base}/echo`, { headers: { Host: 'api.compat.test' } }),
  'redirect chain': () => get(`${base}/redirect/3`),
  'redirect manual': async () => {
    const res = await fetch(`${base}/redirect/2`, { redirect: 'manual' });
    await res.arrayBuffer();
    return { status: res.status, location: res.headers.get('location') };
  },
  'redirect over limit': () => get(`${base}/redirect/3`, { follow: 1 }),
  'agent keep-alive reuse': async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const out = [];
      for (let i = 0; i < 3; i++) {
        out.push(await settle(async () => (await get(`${base}/seq`, { agent })).body.seq));
      }
      return out;
    } finally {
      agent.destroy();
    }
  },
  'agent with lookup (fake name)': async () => {
    const agent = new Agent({ lookup: fakeLookup });
    try {
      return await get(`http://api.compat.test:${cfg.http}/echo`, { agent });
    } finally {
      agent.destroy();
    }
  },
  'agent function + TLS ca': async () => {
    const { Agent: HttpsAgent } = await import('node:https');
    const agent = new HttpsAgent({ ca: cfg.ca });
    try {
      return await get(`https://localhost:${cfg.https}/echo`, { agent: () => agent });
    } finally {
      agent.destroy();
    }
  },
});
