// Deny records of a process governed through the control API: batches go to `POST /v1/reports` as
// they come; at exit, what is still queued goes through the control link (bounded wait) or, when
// that fails, into the spool, which the next process started with the same spool sends. A record
// is never dropped silently: it is delivered, spooled, or counted and logged.
import { lstatSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DenyRecord } from '../../../policy/types.js';
import type { HitCount } from '../hits.js';
import { type HttpSink, type Sink, SpoolSink } from '../records.js';
import type { ControlLink } from './control-link.js';

export interface ControlSinkOptions {
  http: HttpSink;
  link: () => ControlLink | undefined;
  spool: string;
  /** The spool path was chosen by the shim (a folder it creates and must own), not by the operator. */
  defaultSpool: boolean;
  exitFlushMs: number;
  log: (line: string) => void;
}

export class ControlSink implements Sink {
  readonly description: string;
  constructor(private readonly options: ControlSinkOptions) {
    this.description = `${options.http.description} (spool ${options.spool} at exit)`;
  }

  deliver(records: readonly DenyRecord[], hits?: readonly HitCount[]): Promise<void> {
    return this.options.http.deliver(records, hits);
  }

  deliverSync(records: readonly DenyRecord[], hits?: readonly HitCount[]): void {
    const { spool, exitFlushMs, log } = this.options;
    const link = this.options.link();
    if (link?.deliverSync(records, exitFlushMs, hits)) return;
    // Hit counts are not spooled here (statistics; the next process replays records only).
    if (records.length === 0) return;
    try {
      this.#prepareFolder();
      const sink = new SpoolSink(spool);
      try {
        sink.deliverSync(records);
      } finally {
        sink.close();
      }
      log(
        `${records.length} deny records not delivered before exit${link ? ` (${exitFlushMs} ms)` : ''}: spooled to ${spool}; the next process started with the preload and BULKHEAD_SPOOL=${spool} sends them`,
      );
    } catch (error) {
      log(
        `${records.length} deny records LOST at exit: not delivered and not spooled to ${spool} (${error instanceof Error ? error.message : String(error)})`,
      );
      throw error;
    }
  }

  #prepareFolder(): void {
    const folder = dirname(this.options.spool);
    mkdirSync(folder, { recursive: true, mode: 0o700 });
    if (!this.options.defaultSpool) return;
    // A folder in a shared temp directory: another user could have made it (or a link) first.
    const info = lstatSync(folder);
    const uid = process.getuid?.();
    if (!info.isDirectory() || (uid !== undefined && info.uid !== uid) || (info.mode & 0o077) !== 0)
      throw new Error(`${folder} is not a private folder of this user`);
  }
}
