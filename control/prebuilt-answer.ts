// One 200 answer (status line, headers, body) written to many responses: every workload of a
// scope gets the same bytes, and a new revision wakes thousands of parked long-polls at once.
//
// Cost model: ServerResponse.writeHead + end(Buffer) builds and validates the header block for
// each response and writes header and body as two chunks (a corked writev); that is ~25 µs per
// response here, of which the loopback write itself is ~11 µs. Handing Node the whole answer as
// the response's header block (`_header`, which `end()` writes in one piece and then finishes the
// response as usual: 'finish', keep-alive, the next pipelined request) costs ~16 µs. The answer
// text is rebuilt once per second (the Date header) per server keep-alive setting.
//
// `_header` is Node's internal field, read by OutgoingMessage.end/_send since Node 0.x. The fast
// path is taken only when the response is in the exact state that field implies (nothing set on
// it, keep-alive, a body allowed, Date on) and otherwise falls back to writeHead/end, so a Node
// that changed the field's meaning costs speed, not correctness: test/control/prebuilt-answer.test.ts
// checks the bytes on the wire against the public path.
import type { ServerResponse } from 'node:http';

/** The fields of Node's OutgoingMessage/ServerResponse that its own header writer reads. */
interface ResponseInternals {
  _header: string | null;
  _headerSent: boolean;
  _hasBody: boolean;
  _keepAliveTimeout: number;
  _defaultKeepAlive: boolean;
  _maxRequestsPerSocket: number | undefined;
  maxRequestsOnConnectionReached: boolean;
  shouldKeepAlive: boolean;
  sendDate: boolean;
  statusCode: number;
}

export class PrebuiltAnswer {
  /** Header lines without Date and Connection, each ending in CRLF. */
  private readonly lines: string;
  /** The body's bytes as a latin1 string: written with the head in one string write. */
  private readonly bodyText: string;
  private cachedSecond = -1;
  private cachedKeepAliveMs = -1;
  private cachedText = '';

  constructor(
    private readonly headers: readonly string[],
    private readonly body: Buffer,
  ) {
    let lines = '';
    for (let i = 0; i < headers.length; i += 2) lines += `${headers[i]}: ${headers[i + 1]}\r\n`;
    this.lines = lines;
    this.bodyText = body.toString('latin1');
  }

  /** Ends `response` with this answer (status 200); true when the prebuilt text was written. */
  write(response: ServerResponse): boolean {
    const internals = response as unknown as ResponseInternals;
    if (
      internals._header === null &&
      !internals._headerSent &&
      internals._hasBody &&
      internals.shouldKeepAlive &&
      !internals.maxRequestsOnConnectionReached &&
      !((internals._maxRequestsPerSocket ?? 0) > 0) &&
      internals.sendDate &&
      internals._defaultKeepAlive &&
      typeof internals._keepAliveTimeout === 'number' &&
      internals.statusCode === 200 &&
      response.getHeaderNames().length === 0
    ) {
      internals._header = this.text(internals._keepAliveTimeout);
      response.end();
      return true;
    }
    response.writeHead(200, this.headers as string[]);
    response.end(this.body);
    return false;
  }

  private text(keepAliveMs: number): string {
    const now = Date.now();
    const second = Math.floor(now / 1000);
    if (second !== this.cachedSecond || keepAliveMs !== this.cachedKeepAliveMs) {
      const keepAlive = keepAliveMs > 0 ? `Keep-Alive: timeout=${Math.floor(keepAliveMs / 1000)}\r\n` : '';
      this.cachedText =
        `HTTP/1.1 200 OK\r\n${this.lines}Date: ${new Date(second * 1000).toUTCString()}\r\n` +
        `Connection: keep-alive\r\n${keepAlive}\r\n${this.bodyText}`;
      // A flat string: V8 would otherwise flatten the concatenation on every write.
      this.cachedText = Buffer.from(this.cachedText, 'latin1').toString('latin1');
      this.cachedSecond = second;
      this.cachedKeepAliveMs = keepAliveMs;
    }
    return this.cachedText;
  }
}
