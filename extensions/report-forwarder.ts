// Forwards the shim's spooled deny records (docs/contracts.md §3) to the control API:
// reads from a persisted cursor, numbers each record per sandbox (`sandboxId`, `seq`), POSTs
// batches to /v1/reports and advances the cursor only on acceptance, so delivery is
// at least once and the control API deduplicates by record id.
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { DenyRecord } from '../policy/types.js';
import { type ControlCredentials, tokenCredentials } from '../runtime-shims/node/client/credentials.js';
import { readBody } from '../runtime-shims/node/client/read-body.js';
import { readCursor, type SpoolCursor, spoolPath, writeCursor } from './state-files.js';

export interface ForwarderOptions {
  stateDir: string;
  controlUrl: string | undefined;
  /** Secret: only sent in the Authorization header. */
  token: string | undefined;
  log: (message: string) => void;
  /** Records per POST. */
  batchSize?: number;
}

export interface ForwardResult {
  sent: number;
  /** Records the control API reported as already stored. */
  duplicate: number;
  /** Records the control API refused as invalid (they are not retried). */
  rejected: number;
  /** Lines that were not JSON objects (skipped). */
  malformed: number;
  /** Records still in the spool after this call. */
  pending: boolean;
  error?: string;
}

const MAX_READ_BYTES = 1024 * 1024;
/** Largest answer kept: a few hundred bytes, plus at most 100 listed errors. */
const MAX_ANSWER_BYTES = 1024 * 1024;
const DEFAULT_BATCH = 200;

export class ReportForwarder {
  private cursor: SpoolCursor;
  private transport: typeof http | typeof https | undefined;
  private reportsUrl: URL | undefined;
  private agent: http.Agent | undefined;
  /** Secret: only sent in the Authorization header. */
  private credentials: ControlCredentials | undefined;
  private running: Promise<ForwardResult> | undefined;
  totalSent = 0;

  constructor(private readonly options: ForwarderOptions) {
    const saved = readCursor(options.stateDir);
    this.cursor = saved ?? {
      sandboxId: randomUUID(),
      offset: 0,
      // The control API counts gaps from 1.
      nextSeq: 1,
      inode: 0,
    };
    // Persisted at once: a reset re-launches the extension, and the sandbox keeps its id.
    if (!saved) {
      try {
        writeCursor(options.stateDir, this.cursor);
      } catch (error) {
        options.log(`reports: cannot write the spool cursor (${(error as NodeJS.ErrnoException).code})`);
      }
    }
    if (options.token) this.setCredentials(tokenCredentials(options.token, {}));
  }

  /**
   * What to send as Authorization: the bundle client's credentials (an attested session, or the
   * workload token, which may come after construction from BULKHEAD_TOKEN_SECRET).
   */
  setCredentials(credentials: ControlCredentials): void {
    this.credentials = credentials;
    if (this.reportsUrl || !this.options.controlUrl) return;
    const base = new URL(this.options.controlUrl);
    if (!base.pathname.endsWith('/')) base.pathname = `${base.pathname}/`;
    this.reportsUrl = new URL('v1/reports', base);
    this.transport = this.reportsUrl.protocol === 'https:' ? https : http;
    this.agent = new this.transport.Agent({ keepAlive: true, maxSockets: 2 });
  }

  get sandboxId(): string {
    return this.cursor.sandboxId;
  }

  /** The spool holds records past the cursor (one stat; no read). */
  hasPending(): boolean {
    try {
      const info = statSync(spoolPath(this.options.stateDir));
      return info.ino === this.cursor.inode ? info.size > this.cursor.offset : info.size > 0;
    } catch {
      return false;
    }
  }

  /** Forwards until the spool is drained, an error happens, or `deadline` (epoch ms) passes. */
  forward(deadline: number): Promise<ForwardResult> {
    // One pass at a time; a caller arriving meanwhile shares it.
    this.running ??= this.forwardNow(deadline).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async forwardNow(deadline: number): Promise<ForwardResult> {
    const result: ForwardResult = { sent: 0, duplicate: 0, rejected: 0, malformed: 0, pending: false };
    for (;;) {
      const chunk = this.readChunk();
      if (!chunk || (chunk.records.length === 0 && chunk.consumed === 0)) return result;
      result.malformed += chunk.malformed;
      if (chunk.records.length > 0 || chunk.hits.length > 0) {
        if (!this.reportsUrl) {
          result.pending = true;
          result.error = 'no control API configured; records stay in the spool';
          return result;
        }
        const remaining = deadline - Date.now();
        if (remaining <= 20) {
          result.pending = true;
          return result;
        }
        const timeoutMs = Math.min(remaining, 5_000);
        const authorization = await this.credentials?.authorization(timeoutMs);
        const answer = await this.post(chunk.records, chunk.hits, authorization ?? '', timeoutMs);
        if (!answer.ok && answer.status === 401 && authorization) this.credentials?.refused(authorization);
        if (!answer.ok) {
          result.pending = true;
          result.error = answer.message;
          if (!answer.permanent) return result;
          this.options.log(`reports: batch dropped (${answer.message})`);
        } else {
          result.sent += chunk.records.length;
          result.duplicate += answer.duplicate;
          result.rejected += answer.rejected;
          if (answer.rejected > 0)
            this.options.log(
              `reports: control API refused ${answer.rejected} records (${answer.firstReason ?? 'invalid'})`,
            );
          this.totalSent += chunk.records.length;
        }
      }
      this.cursor = {
        ...this.cursor,
        offset: this.cursor.offset + chunk.consumed,
        nextSeq: this.cursor.nextSeq + chunk.records.length,
        inode: chunk.inode,
      };
      writeCursor(this.options.stateDir, this.cursor);
      if (!chunk.more) return result;
    }
  }

  /** Reads whole lines from the cursor; numbers the records; leaves a partial last line. */
  private readChunk():
    | {
        records: DenyRecord[];
        /** Rule hit counts (`{"hits": …}` lines, contract §3): sent in the batch's `hits`, not numbered. */
        hits: unknown[];
        consumed: number;
        malformed: number;
        more: boolean;
        inode: number;
      }
    | undefined {
    const file = spoolPath(this.options.stateDir);
    let info: ReturnType<typeof statSync>;
    try {
      info = statSync(file);
    } catch {
      return undefined;
    }
    if (info.ino !== this.cursor.inode || info.size < this.cursor.offset) {
      // A new or truncated spool: start at its beginning, keep numbering.
      this.cursor = { ...this.cursor, offset: 0, inode: info.ino };
    }
    const available = info.size - this.cursor.offset;
    if (available <= 0) return undefined;
    const length = Math.min(available, MAX_READ_BYTES);
    const buffer = Buffer.allocUnsafe(length);
    const fd = openSync(file, 'r');
    let read: number;
    try {
      read = readSync(fd, buffer, 0, length, this.cursor.offset);
    } finally {
      closeSync(fd);
    }
    const batchSize = this.options.batchSize ?? DEFAULT_BATCH;
    const records: DenyRecord[] = [];
    const hits: unknown[] = [];
    let consumed = 0;
    let malformed = 0;
    let start = 0;
    while (records.length < batchSize && hits.length < MAX_HITS_PER_BATCH) {
      const newline = buffer.indexOf(10, start);
      if (newline === -1 || newline >= read) break;
      const line = buffer.toString('utf8', start, newline).trim();
      start = newline + 1;
      consumed = start;
      if (line === '') continue;
      const parsed = parseLine(line);
      if (!parsed) {
        malformed++;
        continue;
      }
      if ('hits' in parsed) {
        hits.push(parsed.hits);
        continue;
      }
      const record = parsed.record;
      records.push({
        ...record,
        sandboxId: this.cursor.sandboxId,
        seq: this.cursor.nextSeq + records.length,
      });
    }
    if (consumed === 0 && read === MAX_READ_BYTES) {
      // One line longer than the read window cannot be a record: skip it.
      const next = buffer.indexOf(10);
      consumed = next === -1 ? read : next + 1;
      malformed++;
    }
    const more = this.cursor.offset + consumed < info.size && consumed > 0;
    return { records, hits, consumed, malformed, more, inode: info.ino };
  }

  private post(
    records: DenyRecord[],
    hits: unknown[],
    authorization: string,
    timeoutMs: number,
  ): Promise<PostAnswer> {
    const url = this.reportsUrl;
    const transport = this.transport;
    if (!url || !transport)
      return Promise.resolve({ ok: false, permanent: false, message: 'no control API' });
    const body = JSON.stringify(hits.length > 0 ? { records, hits } : { records });
    return new Promise((resolve) => {
      let settled = false;
      const finish = (value: PostAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      };
      const req = transport.request(
        url,
        {
          method: 'POST',
          agent: this.agent,
          headers: {
            authorization,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          // Drained past the cap, so the keep-alive socket stays usable; only the counts are lost.
          void readBody(res, MAX_ANSWER_BYTES, { overLimit: 'drain' }).then((read) => {
            if (!read.ok && read.reason !== 'too-large') {
              finish({ ok: false, permanent: false, message: 'report response interrupted' });
              return;
            }
            const status = res.statusCode ?? 0;
            if (status === 200 || status === 202) {
              let duplicate = 0;
              let rejected = 0;
              let firstReason: string | undefined;
              // The records were accepted; the counts are informational (none from an oversized answer).
              try {
                const answer = (read.ok ? JSON.parse(read.body.toString('utf8')) : {}) as {
                  duplicate?: unknown;
                  rejected?: unknown;
                  errors?: { reason?: unknown }[];
                };
                if (typeof answer.duplicate === 'number') duplicate = answer.duplicate;
                if (typeof answer.rejected === 'number') rejected = answer.rejected;
                const reason = answer.errors?.[0]?.reason;
                if (typeof reason === 'string') firstReason = reason.slice(0, 200);
              } catch {
                // Not JSON: no counts.
              }
              finish({ ok: true, duplicate, rejected, firstReason });
              return;
            }
            // Auth, throttling and server errors are retried; other client errors mean the batch
            // itself is unacceptable and would block the spool forever.
            const retry =
              status === 401 || status === 403 || status === 408 || status === 429 || status >= 500;
            finish({ ok: false, permanent: !retry, message: `control API answered ${status}`, status });
          });
        },
      );
      const timer = setTimeout(() => {
        req.destroy();
        finish({ ok: false, permanent: false, message: `no answer within ${timeoutMs} ms` });
      }, timeoutMs);
      req.on('error', (error: NodeJS.ErrnoException) =>
        finish({
          ok: false,
          permanent: false,
          message: `control API unreachable: ${error.code ?? error.message}`,
        }),
      );
      req.end(body);
    });
  }

  close(): void {
    this.agent?.destroy();
  }
}

type PostAnswer =
  | { ok: true; duplicate: number; rejected: number; firstReason: string | undefined }
  | { ok: false; permanent: boolean; message: string; status?: number };

/** The control API's bound on hit counts per batch (contract §4). */
const MAX_HITS_PER_BATCH = 100;

/** A spool line: a deny record (it has an `id`), a rule hit count (`{"hits": …}`), or neither. */
function parseLine(line: string): { record: DenyRecord } | { hits: unknown } | undefined {
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
    const record = value as Partial<DenyRecord> & { hits?: unknown };
    if (typeof record.id === 'string' && record.id !== '') return { record: record as DenyRecord };
    if (typeof record.hits === 'object' && record.hits !== null && !Array.isArray(record.hits))
      return { hits: record.hits };
    return undefined;
  } catch {
    return undefined;
  }
}
