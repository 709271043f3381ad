// The prebuilt 200 answer against Node's own header writer, on a real loopback socket: the same
// bytes (Date aside), keep-alive and pipelining intact, and the public path wherever the
// response is not in the state the prebuilt text assumes (HEAD, Connection: close, HTTP/1.0,
// headers set on the response, a server without keep-alive timeout).
import { createServer, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PrebuiltAnswer } from '../../control/prebuilt-answer.js';

const BODY = Buffer.from(JSON.stringify({ payloadType: 'application/json', payload: 'é'.repeat(40) }));
const HEADERS = [
  'content-type',
  'application/json',
  'content-length',
  String(BODY.byteLength),
  'etag',
  '"r7-abc"',
  'cache-control',
  'no-cache',
];

let server: Server | undefined;
afterEach(async () => {
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

/** A server answering /prebuilt with the answer and /public with writeHead/end; `paths` records which path wrote. */
async function start(configure?: (s: Server) => void, before?: (res: ServerResponse) => void) {
  const answer = new PrebuiltAnswer(HEADERS, BODY);
  const paths: boolean[] = [];
  server = createServer((req, res) => {
    before?.(res);
    if (req.url === '/prebuilt') paths.push(answer.write(res));
    else {
      res.writeHead(200, HEADERS);
      res.end(BODY);
    }
  });
  configure?.(server);
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  return { port: address.port, paths };
}

/** Sends `text` on one connection and collects everything until the server closes it or `idleMs` passes. */
function exchange(port: number, text: string, idleMs = 300): Promise<{ bytes: Buffer; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(text));
    const chunks: Buffer[] = [];
    let timer = setTimeout(done, idleMs);
    function done(closed = false) {
      clearTimeout(timer);
      socket.destroy();
      resolve({ bytes: Buffer.concat(chunks), closed });
    }
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      clearTimeout(timer);
      timer = setTimeout(done, idleMs);
    });
    socket.on('end', () => done(true));
    socket.on('error', reject);
  });
}

const withoutDate = (bytes: Buffer) => bytes.toString('latin1').replace(/\r\nDate: [^\r]*/g, '\r\nDate: X');
const get = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;

describe('PrebuiltAnswer', () => {
  it('writes the bytes Node writes, and the connection keeps serving pipelined requests', async () => {
    const { port, paths } = await start();
    const { bytes, closed } = await exchange(port, get('/prebuilt') + get('/public') + get('/prebuilt'));
    const text = withoutDate(bytes);
    const responses = text.split(/(?=HTTP\/1\.1 )/);
    expect(responses).toHaveLength(3);
    expect(responses[0]).toBe(responses[1]);
    expect(responses[2]).toBe(responses[1]);
    expect(responses[0]).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(responses[0]).toContain('\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n');
    expect(Buffer.from(responses[0]?.split('\r\n\r\n')[1] ?? '', 'latin1').equals(BODY)).toBe(true);
    expect(closed).toBe(false);
    expect(paths).toEqual([true, true]);
  });

  it('carries the server keep-alive timeout it is written on', async () => {
    const { port } = await start((s) => {
      s.keepAliveTimeout = 72_000;
    });
    const { bytes } = await exchange(port, get('/prebuilt') + get('/public'));
    const [prebuilt, reference] = withoutDate(bytes).split(/(?=HTTP\/1\.1 )/);
    expect(prebuilt).toContain('Keep-Alive: timeout=72\r\n');
    expect(prebuilt).toBe(reference);
  });

  it.each([
    ['HEAD', 'HEAD /prebuilt HTTP/1.1\r\nHost: x\r\n\r\n', 'HEAD /public HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['Connection: close', get('/prebuilt', 'Connection: close\r\n'), get('/public', 'Connection: close\r\n')],
    ['HTTP/1.0', 'GET /prebuilt HTTP/1.0\r\n\r\n', 'GET /public HTTP/1.0\r\n\r\n'],
  ])(
    'falls back to Node’s writer for %s, with the same bytes',
    async (_name, prebuiltRequest, publicRequest) => {
      const { port, paths } = await start();
      const prebuilt = await exchange(port, prebuiltRequest);
      const reference = await exchange(port, publicRequest);
      expect(withoutDate(prebuilt.bytes)).toBe(withoutDate(reference.bytes));
      expect(prebuilt.closed).toBe(reference.closed);
      expect(paths).toEqual([false]);
    },
  );

  it('falls back when a header was set on the response, and keeps that header', async () => {
    const { port, paths } = await start(undefined, (res) => res.setHeader('x-request-id', 'abc'));
    const { bytes } = await exchange(port, get('/prebuilt'));
    expect(bytes.toString('latin1')).toContain('x-request-id: abc\r\n');
    expect(paths).toEqual([false]);
  });

  it('leaves Keep-Alive out on a server without keep-alive timeout, as Node does', async () => {
    const { port, paths } = await start((s) => {
      s.keepAliveTimeout = 0;
    });
    const { bytes } = await exchange(port, get('/prebuilt') + get('/public'));
    const [prebuilt, reference] = withoutDate(bytes).split(/(?=HTTP\/1\.1 )/);
    expect(prebuilt).toBe(reference);
    expect(paths).toEqual([true]);
  });
});
