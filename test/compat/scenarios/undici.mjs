// undici: request + fetch over plain HTTP, redirects, keep-alive, custom lookup, Unix socket,
// ProxyAgent through a CONNECT proxy, TLS with SNI, HTTP/2.
import { Agent, fetch, interceptors, ProxyAgent, request } from 'undici';
import { body, cfg, fakeLookup, pickHeaders, runCases, settle } from './lib.mjs';

const base = `http://127.0.0.1:${cfg.http}`;

async function viaRequest(url, options = {}) {
  const res = await request(url, options);
  const text = await res.body.text();
  return { status: res.statusCode, headers: pickHeaders(res.headers), body: body(text) };
}

async function viaFetch(url, options = {}) {
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
  'request GET': () => viaRequest(`${base}/echo?a=1`),
  'request POST body': () =>
    viaRequest(`${base}/echo`, { method: 'POST', body: 'ping', headers: { 'content-type': 'text/plain' } }),
  'request redirect chain': async () => {
    const dispatcher = new Agent().compose(interceptors.redirect({ maxRedirections: 5 }));
    try {
      return await viaRequest(`${base}/redirect/3`, { dispatcher });
    } finally {
      await dispatcher.close();
    }
  },
  'fetch GET': () => viaFetch(`${base}/echo`),
  'fetch POST body': () =>
    viaFetch(`${base}/echo`, {
      method: 'POST',
      body: JSON.stringify({ a: 1 }),
      headers: { 'content-type': 'application/json' },
    }),
  'fetch redirect chain': () => viaFetch(`${base}/redirect/3`),
  'fetch redirect manual': async () => {
    const res = await fetch(`${base}/redirect/1`, { redirect: 'manual' });
    await res.arrayBuffer();
    return { status: res.status, location: res.headers.get('location') };
  },
  'keep-alive reuse + custom Host': async () => {
    const agent = new Agent({ keepAliveTimeout: 10_000, connections: 1 });
    try {
      const out = [];
      const short = (r) => ({ status: r.status, seq: r.body.seq, host: r.body.host });
      for (let i = 0; i < 3; i++)
        out.push(await settle(async () => short(await viaRequest(`${base}/seq`, { dispatcher: agent }))));
      out.push(
        await settle(async () =>
          short(await viaRequest(`${base}/seq`, { dispatcher: agent, headers: { host: 'api.compat.test' } })),
        ),
      );
      out.push(await settle(async () => short(await viaFetch(`${base}/seq`, { dispatcher: agent }))));
      return out;
    } finally {
      await agent.close();
    }
  },
  'custom Host header': () => viaRequest(`${base}/echo`, { headers: { host: 'api.compat.test' } }),
  'connect.lookup fake name (request)': async () => {
    const agent = new Agent({ connect: { lookup: fakeLookup } });
    try {
      return await viaRequest(`http://api.compat.test:${cfg.http}/echo`, { dispatcher: agent });
    } finally {
      await agent.close();
    }
  },
  'connect.lookup fake name (fetch)': async () => {
    const agent = new Agent({ connect: { lookup: fakeLookup } });
    try {
      return await viaFetch(`http://api.compat.test:${cfg.http}/echo`, { dispatcher: agent });
    } finally {
      await agent.close();
    }
  },
  'socketPath (Unix socket) localhost': async () => {
    const agent = new Agent({ connect: { socketPath: cfg.unix } });
    try {
      return await viaRequest('http://localhost/echo', { dispatcher: agent });
    } finally {
      await agent.close();
    }
  },
  'socketPath (Unix socket) other name': async () => {
    const agent = new Agent({ connect: { socketPath: cfg.unix } });
    try {
      return await viaFetch('http://unix.compat.test/echo', { dispatcher: agent });
    } finally {
      await agent.close();
    }
  },
  'ProxyAgent CONNECT': async () => {
    const agent = new ProxyAgent(`http://127.0.0.1:${cfg.proxy}`);
    try {
      const a = await viaRequest(`http://localhost:${cfg.http}/echo`, { dispatcher: agent });
      const b = await viaFetch(`http://localhost:${cfg.http}/echo`, { dispatcher: agent });
      return [a, b];
    } finally {
      await agent.close();
    }
  },
  'ProxyAgent CONNECT to 127.0.0.1': async () => {
    const agent = new ProxyAgent(`http://127.0.0.1:${cfg.proxy}`);
    try {
      return await viaFetch(`http://127.0.0.1:${cfg.http}/echo`, { dispatcher: agent });
    } finally {
      await agent.close();
    }
  },
  'ProxyAgent CONNECT to fake name': async () => {
    const agent = new ProxyAgent(`http://127.0.0.1:${cfg.proxy}`);
    try {
      return await viaFetch(`http://proxied.compat.test:${cfg.http}/echo`, { dispatcher: agent });
    } finally {
      await agent.close();
    }
  },
  'TLS localhost with ca': async () => {
    const agent = new Agent({ connect: { ca: cfg.ca } });
    try {
      return await viaFetch(`https://localhost:${cfg.https}/echo`, { dispatcher: agent });
    } finally {
      await agent.close();
    }
  },
  'TLS IP URL with servername': async () => {
    const agent = new Agent({ connect: { ca: cfg.ca, servername: 'localhost' } });
    try {
      return await viaRequest(`https://127.0.0.1:${cfg.https}/echo`, { dispatcher: agent });
    } finally {
      await agent.close();
    }
  },
  'TLS fake name via lookup + servername': async () => {
    const agent = new Agent({ connect: { ca: cfg.ca, lookup: fakeLookup, servername: 'localhost' } });
    try {
      return await viaRequest(`https://tls.compat.test:${cfg.https}/echo`, { dispatcher: agent });
    } finally {
      await agent.close();
    }
  },
  'fetch with retry interceptor (defaults)': async () => {
    const dispatcher = new Agent().compose(interceptors.retry());
    try {
      return await viaFetch(`${base}/echo`, { dispatcher });
    } finally {
      await dispatcher.close();
    }
  },
  'http2 allowH2': async () => {
    const agent = new Agent({ allowH2: true, connect: { ca: cfg.ca } });
    try {
      const a = await viaRequest(`https://localhost:${cfg.h2}/echo`, { dispatcher: agent });
      const b = await viaFetch(`https://localhost:${cfg.h2}/echo`, {
        dispatcher: agent,
        method: 'POST',
        body: 'h2',
      });
      return [a, b];
    } finally {
      await agent.close();
    }
  },
});
