// Plain node:http / node:https: createConnection, socketPath, servername, custom Host, lookup.
import { request as httpRequest } from 'node:http';
import { connect as http2Connect } from 'node:http2';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { body, cfg, fakeLookup, pickHeaders, runCases } from './lib.mjs';

function send(fn, options, payload) {
  return new Promise((resolve, reject) => {
    const req = fn(options, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode,
          headers: pickHeaders(res.headers),
          body: body(Buffer.concat(chunks).toString()),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

await runCases({
  'http.request GET': () => send(httpRequest, { host: '127.0.0.1', port: cfg.http, path: '/echo' }),
  'http.request POST': () =>
    send(
      httpRequest,
      {
        host: '127.0.0.1',
        port: cfg.http,
        path: '/echo',
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
      },
      'data',
    ),
  'http.request localhost': () => send(httpRequest, { host: 'localhost', port: cfg.http, path: '/echo' }),
  'http.request custom Host header': () =>
    send(httpRequest, {
      host: '127.0.0.1',
      port: cfg.http,
      path: '/echo',
      headers: { host: 'api.compat.test' },
    }),
  'http.request lookup (fake name)': () =>
    send(httpRequest, { host: 'api.compat.test', port: cfg.http, path: '/echo', lookup: fakeLookup }),
  'http.request createConnection': () =>
    send(httpRequest, {
      host: 'created.compat.test',
      port: cfg.http,
      path: '/echo',
      createConnection: (opts, cb) => {
        const socket = netConnect({ port: opts.port, host: '127.0.0.1' });
        socket.once('connect', () => cb?.(null, socket));
        return socket;
      },
    }),
  'http.request socketPath': () => send(httpRequest, { socketPath: cfg.unix, path: '/echo' }),
  'http.request socketPath + Host': () =>
    send(httpRequest, { socketPath: cfg.unix, path: '/echo', headers: { host: 'unix.compat.test' } }),
  'https.request servername': () =>
    send(httpsRequest, {
      host: '127.0.0.1',
      port: cfg.https,
      path: '/echo',
      servername: 'localhost',
      ca: cfg.ca,
      agent: false,
    }),
  'https.request localhost + ca': () =>
    send(httpsRequest, { host: 'localhost', port: cfg.https, path: '/echo', ca: cfg.ca, agent: false }),
  'https.request keep-alive agent': async () => {
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: cfg.ca });
    try {
      const out = [];
      for (let i = 0; i < 3; i++)
        out.push(
          (await send(httpsRequest, { host: 'localhost', port: cfg.https, path: '/seq', agent })).body.seq,
        );
      return out;
    } finally {
      agent.destroy();
    }
  },
  'http2 session, custom :authority': async () => {
    const session = http2Connect(`https://127.0.0.1:${cfg.h2}`, { ca: cfg.ca, servername: 'localhost' });
    // Connected first: the request below then goes over a socket whose address is known.
    await new Promise((resolve, reject) => session.once('connect', resolve).once('error', reject));
    try {
      return await new Promise((resolve, reject) => {
        const stream = session.request({ ':path': '/echo', ':authority': 'h2.compat.test' });
        const chunks = [];
        let status;
        stream.on('response', (headers) => {
          status = headers[':status'];
        });
        stream.on('data', (c) => chunks.push(c));
        stream.on('end', () => resolve({ status, body: body(Buffer.concat(chunks).toString()) }));
        stream.on('error', reject);
        stream.end();
      });
    } finally {
      session.close();
    }
  },
  'global fetch (Node bundled undici) GET, redirect, repeated': async () => {
    const out = [];
    for (const path of ['/echo?x=1', '/redirect/2', '/echo', '/echo']) {
      const res = await globalThis.fetch(`http://127.0.0.1:${cfg.http}${path}`);
      out.push({ status: res.status, redirected: res.redirected, body: body(await res.text()) });
    }
    return out;
  },
  'https.request createConnection (tls)': () =>
    send(httpsRequest, {
      host: 'tls.compat.test',
      port: cfg.https,
      path: '/echo',
      createConnection: (opts) =>
        tlsConnect({ port: opts.port, host: '127.0.0.1', servername: 'localhost', ca: cfg.ca }),
    }),
});
