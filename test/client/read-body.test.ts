// The capped HTTP body reader (runtime-shims/node/client/read-body.ts): real requests and responses
// on loopback (under, at and over the cap, an aborting peer, an empty body, a server answering 413
// on the same keep-alive connection), and the accumulation over random chunkings.
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type ReadBodyOptions,
  type ReadBodyResult,
  readBody,
} from '../../runtime-shims/node/client/read-body.js';

const CAP = 64 * 1024;

/** A server that reads every request body with `readBody` and reports the result. */
class ReadingServer {
  options: ReadBodyOptions = {};
  /** What the server answers once the body is read (default 200, or 413 when it was too large). */
  results: ReadBodyResult[] = [];
  private waiting: ((result: ReadBodyResult) => void)[] = [];
  private readonly server = http.createServer((req, res) => {
    void readBody(req, CAP, this.options).then((result) => {
      this.results.push(result);
      this.waiting.shift()?.(result);
      if (res.destroyed) return;
      if (result.ok) res.writeHead(200).end(String(result.body.length));
      else res.writeHead(result.reason === 'too-large' ? 413 : 400).end(result.reason);
    });
  });
  port = 0;

  async start(): Promise<void> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
  }

  nextResult(): Promise<ReadBodyResult> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
  }
}

interface Answer {
  status: number;
  text: string;
  reusedSocket: boolean;
}

/** POST `body` (in `parts`, without Content-Length when `chunked`); resolves the answer or the client error. */
function post(
  port: number,
  body: Buffer,
  options: { chunked?: boolean; agent?: http.Agent; method?: string } = {},
): Promise<Answer | Error> {
  return new Promise((resolve) => {
    const headers: http.OutgoingHttpHeaders = options.chunked ? {} : { 'content-length': body.length };
    const req = http.request(
      { host: '127.0.0.1', port, method: options.method ?? 'POST', path: '/', headers, agent: options.agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            text: Buffer.concat(chunks).toString('utf8'),
            reusedSocket: req.reusedSocket,
          }),
        );
        res.on('error', resolve);
      },
    );
    req.on('error', resolve);
    if (options.chunked) {
      // Several writes, so the server sees the body in pieces.
      for (let offset = 0; offset < body.length; offset += 16 * 1024)
        req.write(body.subarray(offset, offset + 16 * 1024));
      req.end();
    } else {
      req.end(body);
    }
  });
}

function bytes(length: number, fill = 0x61): Buffer {
  return Buffer.alloc(length, fill);
}

describe('readBody on a server request', () => {
  const server = new ReadingServer();
  beforeAll(() => server.start());
  afterAll(() => server.stop());
  afterEach(() => {
    server.options = {};
    server.results = [];
  });

  it('returns a body under the cap and one exactly at it, byte for byte', async () => {
    const under = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
    expect(await post(server.port, under)).toMatchObject({ status: 200, text: '1000' });
    expect(server.results[0]).toEqual({ ok: true, body: under });

    const at = bytes(CAP, 0x62);
    expect(await post(server.port, at, { chunked: true })).toMatchObject({ status: 200, text: String(CAP) });
    const result = server.results[1];
    expect(result?.ok && result.body.equals(at)).toBe(true);
  });

  it('returns an empty body for a request without one', async () => {
    expect(await post(server.port, Buffer.alloc(0), { method: 'GET' })).toMatchObject({
      status: 200,
      text: '0',
    });
    expect(server.results[0]).toEqual({ ok: true, body: Buffer.alloc(0) });
  });

  it('refuses a body over the cap from its Content-Length without reading it, and closes the connection', async () => {
    const next = server.nextResult();
    const answer = await post(server.port, bytes(CAP + 1));
    expect(await next).toEqual({ ok: false, reason: 'too-large', received: 0, declared: CAP + 1 });
    // The connection is gone: either no answer at all, or a 413 written before the reset won the race.
    if (!(answer instanceof Error)) expect(answer.status).toBe(413);
  });

  it('stops reading a chunked body at the first chunk past the cap', async () => {
    const next = server.nextResult();
    await post(server.port, bytes(4 * CAP), { chunked: true });
    const result = await next;
    expect(result).toMatchObject({ ok: false, reason: 'too-large', declared: undefined });
    if (result.ok || result.reason !== 'too-large') throw new Error('unreachable');
    // Counted up to the chunk that crossed the cap, never the whole body.
    expect(result.received).toBeGreaterThan(CAP);
    expect(result.received).toBeLessThan(4 * CAP);
  });

  it("in 'drain' mode reads past the cap without keeping it, so the server answers 413 on a live keep-alive connection", async () => {
    server.options = { overLimit: 'drain' };
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      expect(await post(server.port, bytes(2 * CAP), { chunked: true, agent })).toMatchObject({
        status: 413,
        text: 'too-large',
      });
      expect(server.results[0]).toEqual({
        ok: false,
        reason: 'too-large',
        received: 2 * CAP,
        declared: undefined,
      });
      expect(await post(server.port, bytes(3 * CAP), { agent })).toMatchObject({
        status: 413,
        reusedSocket: true,
      });
      expect(server.results[1]).toEqual({
        ok: false,
        reason: 'too-large',
        received: 3 * CAP,
        declared: 3 * CAP,
      });
      expect(await post(server.port, bytes(10), { agent })).toMatchObject({
        status: 200,
        text: '10',
        reusedSocket: true,
      });
    } finally {
      agent.destroy();
    }
  });

  it('settles as aborted when the client goes away mid-body', async () => {
    const next = server.nextResult();
    const req = http.request({
      host: '127.0.0.1',
      port: server.port,
      method: 'POST',
      headers: { 'content-length': 1000 },
    });
    req.on('error', () => {});
    req.write(bytes(100));
    await new Promise((resolve) => setTimeout(resolve, 50));
    req.destroy();
    const result = await next;
    expect(result).toMatchObject({ ok: false, reason: 'aborted' });
    if (!result.ok && result.reason === 'aborted') {
      expect(result.error.message).toBe('aborted');
      expect((result.error as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    }
  });
});

describe('readBody on a client response', () => {
  let behave: (res: http.ServerResponse) => void = () => {};
  const server = http.createServer((req, res) => {
    req.resume();
    behave(res);
  });
  let port = 0;
  beforeAll(async () => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  function get(options: ReadBodyOptions = {}): Promise<ReadBodyResult> {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/' }, (res) => {
        readBody(res, CAP, options).then(resolve, reject);
      });
      req.on('error', reject);
    });
  }

  it('reads an answer under the cap, and refuses a larger one by its length or by its chunks', async () => {
    behave = (res) => res.writeHead(200).end('{"revision":3}');
    expect(await get()).toEqual({ ok: true, body: Buffer.from('{"revision":3}') });

    behave = (res) => res.writeHead(200, { 'content-length': CAP + 1 }).end(bytes(CAP + 1));
    expect(await get()).toEqual({ ok: false, reason: 'too-large', received: 0, declared: CAP + 1 });

    behave = (res) => {
      res.writeHead(200);
      res.write(bytes(CAP));
      res.end(bytes(CAP));
    };
    expect(await get()).toMatchObject({ ok: false, reason: 'too-large', declared: undefined });
  });

  it('settles as aborted when the server goes away mid-answer', async () => {
    behave = (res) => {
      res.writeHead(200, { 'content-length': 1000 });
      res.write(bytes(100));
      setTimeout(() => res.destroy(), 30);
    };
    expect(await get()).toMatchObject({ ok: false, reason: 'aborted', error: { message: 'aborted' } });
  });
});

describe('readBody on any readable', () => {
  it('settles once, destroys the stream past the cap, and swallows errors that follow its answer', async () => {
    const stream = Readable.from([bytes(10), bytes(10), bytes(10)]);
    expect(await readBody(stream, 15)).toEqual({
      ok: false,
      reason: 'too-large',
      received: 20,
      declared: undefined,
    });
    expect(stream.destroyed).toBe(true);
    // A late error on a stream nobody else listens to would otherwise be thrown.
    stream.emit('error', new Error('late failure'));

    const failing = new Readable({ read() {} });
    const pending = readBody(failing, 100);
    failing.push('abc');
    failing.destroy(new Error('disk on fire'));
    expect(await pending).toMatchObject({ ok: false, reason: 'error', error: { message: 'disk on fire' } });
    failing.emit('error', new Error('a second error'));
  });

  it('reads a paused stream, text chunks, and answers at once for a destroyed one', async () => {
    const paused = Readable.from([Buffer.from('ab'), Buffer.from('cd')]);
    paused.pause();
    expect(await readBody(paused, 4)).toEqual({ ok: true, body: Buffer.from('abcd') });
    // Multi-byte text counts in bytes: 'é' is two.
    expect(await readBody(Readable.from(['é', 'x']), 3)).toEqual({ ok: true, body: Buffer.from('éx') });
    expect(await readBody(Readable.from(['é', 'x']), 2)).toMatchObject({ ok: false, reason: 'too-large' });

    const gone = new Readable({ read() {} });
    gone.destroy();
    await once(gone, 'close');
    expect(await readBody(gone, 10)).toMatchObject({ ok: false, reason: 'aborted' });

    const closed = new Readable({ read() {} });
    const pending = readBody(closed, 10);
    closed.push('half');
    closed.destroy();
    expect(await pending).toMatchObject({ ok: false, reason: 'aborted' });
  });

  it('rejects a cap that is not a non-negative integer', () => {
    expect(() => readBody(Readable.from([]), -1)).toThrow(RangeError);
    expect(() => readBody(Readable.from([]), 1.5)).toThrow(RangeError);
  });

  it('reassembles any chunking of a body within the cap, and refuses any chunking of a larger one', async () => {
    const chunked = fc
      .uint8Array({ maxLength: 2048 })
      .chain((body) =>
        fc
          .uniqueArray(fc.integer({ min: 0, max: body.length }), { maxLength: 12 })
          .map((cuts) => ({ body: Buffer.from(body), cuts: [...cuts].sort((a, b) => a - b) })),
      );
    await fc.assert(
      fc.asyncProperty(
        chunked,
        fc.integer({ min: 0, max: 2100 }),
        fc.constantFrom<ReadBodyOptions['overLimit']>('destroy', 'drain'),
        async ({ body, cuts }, cap, overLimit) => {
          const chunks: Buffer[] = [];
          let start = 0;
          for (const cut of [...cuts, body.length]) {
            chunks.push(body.subarray(start, cut));
            start = cut;
          }
          const result = await readBody(Readable.from(chunks), cap, { overLimit });
          if (body.length <= cap) {
            expect(result.ok).toBe(true);
            if (result.ok) expect(result.body.equals(body)).toBe(true);
            return;
          }
          expect(result).toMatchObject({ ok: false, reason: 'too-large', declared: undefined });
          if (result.ok || result.reason !== 'too-large') return;
          if (overLimit === 'drain') {
            expect(result.received).toBe(body.length);
          } else {
            // Destroyed at the first chunk that crossed the cap.
            let sum = 0;
            for (const chunk of chunks) {
              sum += chunk.length;
              if (sum > cap) break;
            }
            expect(result.received).toBe(sum);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
