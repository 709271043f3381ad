// Local servers the compatibility scenarios talk to: one echo handler behind HTTP, HTTPS (+ HTTP/2),
// a Unix socket, WebSocket endpoints on each, a forward + CONNECT proxy, a fake S3 and a tiny DNS
// responder. Everything listens on loopback (or a Unix socket in a temp dir) on ephemeral ports;
// responses carry only facts that do not depend on ports or timing, so two runs answer the same.
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { mkdirSync } from 'node:fs';
import {
  createServer as createHttpServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createSecureServer, type Http2SecureServer, type Http2ServerRequest } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer } from 'ws';

/** The proxy connects onwards from this address, so the origin can tell proxied from direct traffic. */
export const PROXY_SOURCE = '127.0.0.2';

export interface CompatConfig {
  http: number;
  https: number;
  h2: number;
  proxy: number;
  s3: number;
  dns: number;
  unix: string;
  wsUnix: string;
  dir: string;
  ca: string;
}

export interface Servers {
  config: CompatConfig;
  /** Requests, WebSocket handshakes, proxy requests and raw connections that reached any server. */
  totals(): { requests: number; connections: number };
  close(): Promise<void>;
}

type AnyRequest = IncomingMessage | Http2ServerRequest;

/** Map a name the scenarios use to the loopback address the proxy and DNS responder give it. */
function loopbackFor(host: string): string {
  if (host === 'localhost' || host.endsWith('.compat.test')) return '127.0.0.1';
  return host;
}

export async function startServers(dir: string, tls: { key: string; cert: string }): Promise<Servers> {
  let requests = 0;
  let connections = 0;
  const perConnection = new WeakMap<object, number>();
  const flaky = new Map<string, number>();
  const s3Objects = new Map<string, string>();
  const closers: (() => Promise<void>)[] = [];

  const readBody = (req: AnyRequest): Promise<string> =>
    new Promise((done) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
      req.on('end', () => done(Buffer.concat(chunks).toString('utf8')));
      req.on('error', () => done(''));
    });

  const echo = async (req: AnyRequest, res: ServerResponse | import('node:http2').Http2ServerResponse) => {
    requests++;
    const h2 = 'stream' in req && req.stream !== undefined;
    const key: object = h2 ? ((req as Http2ServerRequest).stream.session ?? req.socket) : req.socket;
    const seq = (perConnection.get(key) ?? 0) + 1;
    perConnection.set(key, seq);
    const body = await readBody(req);
    const url = new URL(req.url ?? '/', 'http://x');
    const socket = req.socket as Socket & Partial<TLSSocket>;
    const send = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
      const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
      const contentType = typeof payload === 'string' ? 'text/plain' : 'application/json';
      res.writeHead(status, {
        'content-type': contentType,
        'x-compat': 'yes',
        'x-seq': String(seq),
        ...headers,
      });
      res.end(text);
    };
    const parts = url.pathname.split('/').filter(Boolean);
    if (parts[0] === 'redirect') {
      const left = Number(parts[1] ?? 0);
      if (left > 0) {
        res.writeHead(302, { location: `/redirect/${left - 1}` });
        res.end();
        return;
      }
      send(200, { redirected: true, path: url.pathname });
      return;
    }
    if (parts[0] === 'flaky') {
      const id = parts[1] ?? '';
      const count = (flaky.get(id) ?? 0) + 1;
      flaky.set(id, count);
      if (count === 1) {
        send(503, 'busy');
        return;
      }
      send(200, { attempts: count });
      return;
    }
    if (parts[0] === 'status') {
      send(Number(parts[1] ?? 500), `status ${parts[1]}`);
      return;
    }
    if (parts[0] === 'json') {
      send(200, { hello: 'world', list: [1, 2, 3] });
      return;
    }
    send(200, {
      method: req.method,
      path: url.pathname,
      query: url.search,
      host: req.headers.host ?? req.headers[':authority'] ?? null,
      body,
      // Requests served on this connection so far: only /seq asks (the global pools' reuse is timing).
      ...(parts[0] === 'seq' ? { seq } : {}),
      httpVersion: req.httpVersion,
      via: socket.remoteAddress === PROXY_SOURCE ? 'proxy' : socket.remoteAddress ? 'direct' : 'unix',
      sni: socket.servername || null,
      alpn: socket.alpnProtocol || null,
      contentType: req.headers['content-type'] ?? null,
      proxyHeader: req.headers['x-forwarded-by'] ?? null,
    });
  };

  const handler = (req: AnyRequest, res: ServerResponse) => {
    void echo(req, res);
  };

  // WebSocket: /plain never negotiates permessage-deflate, /deflate does.
  const wssPlain = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const wssDeflate = new WebSocketServer({ noServer: true, perMessageDeflate: true });
  for (const wss of [wssPlain, wssDeflate]) {
    wss.on('connection', (ws, req) => {
      const socket = req.socket as Socket & Partial<TLSSocket>;
      ws.send(
        JSON.stringify({
          hello: true,
          path: req.url,
          host: req.headers.host ?? null,
          extensions: req.headers['sec-websocket-extensions'] ? 'offered' : 'none',
          negotiated: ws.extensions || 'none',
          sni: socket.servername || null,
        }),
      );
      ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo:${data.toString()}`));
    });
  }
  const upgrade = (req: IncomingMessage, socket: import('node:stream').Duplex, head: Buffer) => {
    requests++;
    const wss = (req.url ?? '').startsWith('/deflate') ? wssDeflate : wssPlain;
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  };

  const track = (server: Server | Http2SecureServer | import('node:https').Server) => {
    server.on('connection', () => connections++);
    server.on('secureConnection', () => undefined);
  };

  const listen = async (server: Server, where: number | string): Promise<number> => {
    await new Promise<void>((done, fail) => {
      server.once('error', fail);
      if (typeof where === 'string') server.listen(where, done);
      else server.listen(0, '127.0.0.1', done);
    });
    closers.push(
      () =>
        new Promise((done) => {
          server.closeAllConnections?.();
          server.close(() => done());
        }),
    );
    const address = server.address();
    return typeof address === 'object' && address ? address.port : 0;
  };

  const http = createHttpServer(handler);
  http.on('upgrade', upgrade);
  track(http);
  const https = createHttpsServer({ key: tls.key, cert: tls.cert }, handler);
  https.on('upgrade', upgrade);
  track(https);
  const h2 = createSecureServer({ key: tls.key, cert: tls.cert, allowHTTP1: true }, handler as never);
  track(h2);
  const h2Sessions = new Set<import('node:http2').ServerHttp2Session>();
  h2.on('session', (s) => {
    h2Sessions.add(s);
    s.on('close', () => h2Sessions.delete(s));
  });
  const unix = createHttpServer(handler);
  unix.on('upgrade', upgrade);
  track(unix);
  const wsUnixServer = createHttpServer((_req, res) => {
    res.writeHead(426);
    res.end();
  });
  wsUnixServer.on('upgrade', upgrade);
  track(wsUnixServer);

  // Forward proxy (absolute-form requests) and CONNECT tunnels; onward connections leave from
  // PROXY_SOURCE so the echo answers via: 'proxy'.
  const proxy = createHttpServer((req, res) => {
    requests++;
    let target: URL;
    try {
      target = new URL(req.url ?? '');
    } catch {
      res.writeHead(400);
      res.end('absolute-form only');
      return;
    }
    const onward = httpRequest(
      {
        host: loopbackFor(target.hostname),
        port: Number(target.port || 80),
        path: `${target.pathname}${target.search}`,
        method: req.method,
        headers: { ...req.headers, 'x-forwarded-by': 'compat-proxy' },
        localAddress: PROXY_SOURCE,
        agent: false,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, { ...answer.headers, 'x-via-proxy': 'forward' });
        answer.pipe(res);
      },
    );
    onward.on('error', () => {
      res.writeHead(502);
      res.end('bad gateway');
    });
    req.pipe(onward);
  });
  proxy.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    requests++;
    const [host = '', port = '443'] = (req.url ?? '').split(/:(?=\d+$)/);
    const upstream = netConnect(
      { host: loopbackFor(host), port: Number(port), localAddress: PROXY_SOURCE },
      () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length) upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      },
    );
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  track(proxy);

  // Fake S3: path-style PutObject / GetObject / ListObjectsV2 / HeadBucket, enough for the SDK.
  const s3 = createHttpServer((req, res) => {
    requests++;
    void (async () => {
      let body = await readBody(req);
      const url = new URL(req.url ?? '/', 'http://x');
      const [bucket = '', ...rest] = url.pathname.split('/').filter(Boolean);
      const key = rest.map(decodeURIComponent).join('/');
      const common = { 'x-amz-request-id': 'compat', server: 'compat-s3' };
      if ((req.headers['content-encoding'] ?? '').includes('aws-chunked')) body = decodeAwsChunked(body);
      if (req.method === 'PUT' && key) {
        s3Objects.set(`${bucket}/${key}`, body);
        res.writeHead(200, { ...common, etag: '"compat-etag"' });
        res.end();
        return;
      }
      if (req.method === 'GET' && key) {
        const value = s3Objects.get(`${bucket}/${key}`);
        if (value === undefined) {
          res.writeHead(404, { ...common, 'content-type': 'application/xml' });
          res.end(
            '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>no</Message></Error>',
          );
          return;
        }
        res.writeHead(200, { ...common, 'content-type': 'text/plain', etag: '"compat-etag"' });
        res.end(value);
        return;
      }
      if (req.method === 'GET' && url.searchParams.get('list-type') === '2') {
        const prefix = url.searchParams.get('prefix') ?? '';
        const keys = [...s3Objects.keys()]
          .filter((k) => k.startsWith(`${bucket}/${prefix}`))
          .map((k) => k.slice(bucket.length + 1))
          .sort();
        const contents = keys
          .map(
            (k) =>
              `<Contents><Key>${k}</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>"compat-etag"</ETag><Size>${s3Objects.get(`${bucket}/${k}`)?.length ?? 0}</Size><StorageClass>STANDARD</StorageClass></Contents>`,
          )
          .join('');
        res.writeHead(200, { ...common, 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${bucket}</Name><Prefix>${prefix}</Prefix><KeyCount>${keys.length}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>${contents}</ListBucketResult>`,
        );
        return;
      }
      res.writeHead(400, { ...common, 'content-type': 'application/xml' });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>BadRequest</Code><Message>no</Message></Error>',
      );
    })();
  });
  track(s3);

  const unixPath = join(dir, 'http.sock');
  const wsUnixPath = join(dir, 'ws.sock');
  mkdirSync(dir, { recursive: true });
  const ports = {
    http: await listen(http, 0),
    https: await listen(https as unknown as Server, 0),
    h2: await listen(h2 as unknown as Server, 0),
    proxy: await listen(proxy, 0),
    s3: await listen(s3, 0),
  };
  await listen(unix, unixPath);
  await listen(wsUnixServer, wsUnixPath);
  closers.push(async () => {
    for (const s of h2Sessions) s.destroy();
    for (const wss of [wssPlain, wssDeflate]) for (const c of wss.clients) c.terminate();
  });

  const dns = await startDnsResponder(() => {
    requests++;
  });
  closers.push(() => new Promise((done) => dns.socket.close(() => done())));

  return {
    config: { ...ports, dns: dns.port, unix: unixPath, wsUnix: wsUnixPath, dir, ca: tls.cert },
    totals: () => ({ requests, connections }),
    async close() {
      // Reverse order: sessions and sockets first, then the listeners.
      await Promise.all(closers.reverse().map((c) => c().catch(() => undefined)));
    },
  };
}

/** aws-chunked bodies (`<hex>;chunk-signature=…\r\n<data>\r\n…0\r\n<trailers>`) → the data. */
function decodeAwsChunked(text: string): string {
  let out = '';
  let rest = text;
  for (;;) {
    const eol = rest.indexOf('\r\n');
    if (eol < 0) break;
    const size = Number.parseInt(rest.slice(0, eol).split(';')[0] ?? '0', 16);
    if (!size) break;
    out += rest.slice(eol + 2, eol + 2 + size);
    rest = rest.slice(eol + 2 + size + 2);
  }
  return out;
}

/** A DNS responder on 127.0.0.1/udp: A records 127.0.0.1 for *.compat.test, empty answers otherwise. */
async function startDnsResponder(onQuery: () => void): Promise<{ port: number; socket: UdpSocket }> {
  const socket = createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    onQuery();
    if (msg.length < 12) return;
    // Question: labels from offset 12, then QTYPE, QCLASS.
    let offset = 12;
    const labels: string[] = [];
    while (offset < msg.length && msg[offset] !== 0) {
      const len = msg[offset] ?? 0;
      labels.push(msg.subarray(offset + 1, offset + 1 + len).toString('latin1'));
      offset += len + 1;
    }
    offset += 1;
    const qtype = msg.readUInt16BE(offset);
    const question = msg.subarray(12, offset + 4);
    const name = labels.join('.').toLowerCase();
    const known = name.endsWith('.compat.test');
    const answers: Buffer[] = [];
    if (known && qtype === 1) {
      const rr = Buffer.alloc(16);
      rr.writeUInt16BE(0xc00c, 0); // pointer to the question name
      rr.writeUInt16BE(1, 2); // A
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(60, 6); // TTL
      rr.writeUInt16BE(4, 10);
      Buffer.from([127, 0, 0, 1]).copy(rr, 12);
      answers.push(rr);
    }
    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0); // id
    header.writeUInt16BE(known ? 0x8580 : 0x8583, 2); // response, AA, RD, RA; NXDOMAIN when unknown
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    socket.send(Buffer.concat([header, question, ...answers]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((done) => socket.bind(0, '127.0.0.1', done));
  return { port: socket.address().port, socket };
}
