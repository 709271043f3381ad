import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { expect } from 'vitest';
import { LineFile } from '../../runtime-shims/node/aws/extension-sync.js';
import type { ShimPort } from '../../runtime-shims/node/shim-port.js';

/**
 * A shim port that records what the wrappers ask of the core, with the core's semantics where the
 * wrappers depend on them (invocation id visible through AsyncLocalStorage, revision moved by reload,
 * refresh re-reading only a bundle file that changed).
 * Used to check call order; the real core is exercised in the integration tests.
 */
export class RecordingShim implements ShimPort {
  readonly calls: string[] = [];
  readonly storage = new AsyncLocalStorage<string>();
  revision = 1;
  /** Revision of the bundle file on disk (what the extension wrote): reload() adopts it. */
  revisionOnDisk = 1;
  /** What flush() resolves: the core answers `{ delivered, pending, dropped }`. */
  flushImpl: () => Promise<unknown> = async () => undefined;
  installImpl: () => void = () => undefined;
  currentInvocationId: string | undefined;

  install(): void {
    this.calls.push('install');
    this.installImpl();
  }
  refreshImpl: () => void = () => undefined;

  handOverFetching(): void {
    this.calls.push('handOverFetching');
  }

  reload(): void {
    this.calls.push(`reload:${this.revisionOnDisk}`);
    this.revision = this.revisionOnDisk;
  }
  /** As the core: one stat, and a reload only when the file is not the one last read. */
  refresh(): void {
    this.calls.push('refresh');
    this.refreshImpl();
    if (this.revisionOnDisk !== this.revision) this.reload();
  }
  async flush(): Promise<unknown> {
    this.calls.push('flush:start');
    const outcome = await this.flushImpl();
    this.calls.push('flush:end');
    return outcome;
  }
  runInInvocation<T>(invocationId: string, fn: () => T): T {
    this.calls.push(`run:${invocationId}`);
    return this.storage.run(invocationId, fn);
  }
  setInvocationId(invocationId: string | undefined): void {
    this.currentInvocationId = invocationId;
    this.calls.push(`set:${invocationId ?? '-'}`);
  }
  status(): { revision: number } {
    return { revision: this.revision };
  }
}

export function fakeContext(requestId: string, remainingMs = 30_000) {
  const deadline = Date.now() + remainingMs;
  return {
    awsRequestId: requestId,
    functionName: 'test-fn',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:test-fn',
    memoryLimitInMB: '128',
    logGroupName: '/aws/lambda/test-fn',
    logStreamName: 'stream',
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => deadline - Date.now(),
  };
}

export interface DoneLine {
  requestId: string;
  queued: number;
}

/**
 * The extension's side of the per-invocation files (docs/contracts.md §6) in a temp state dir: it
 * writes `invocation-ready` records (`<requestId> <revision>`) as the extension does at each INVOKE (a
 * LineFile kept open, rewritten in place), and reads the `invocation-done` record
 * (`<requestId> <queued>`) the wrapper writes after the flush.
 */
export interface FakeExtension {
  dir: string;
  readyFile: string;
  doneFile: string;
  /** What the layer's exec wrapper sets for the runtime process. */
  env: { BULKHEAD_READY_FILE: string; BULKHEAD_DONE_FILE: string };
  /** Writes the ready record now. */
  ready(requestId: string, revision: number): void;
  /** Writes the ready record after `delayMs` (while the wrapper waits); resolves once it is written. */
  readyLater(requestId: string, revision: number, delayMs: number): Promise<void>;
  /** The done file's text, or undefined while it does not exist. */
  doneText(): string | undefined;
  /** The done record read as the extension reads it: a whole line, then only padding. */
  done(): DoneLine | undefined;
  /** Removes the done file (to see whether the next invocation writes one). */
  clearDone(): void;
  /** Cancels pending writes and removes the state dir. */
  close(): void;
}

/**
 * @param trace receives `ready:<requestId>` the moment each ready record is on disk (a RecordingShim's
 *   `calls`, to check the handler ran after it).
 */
export function fakeExtension(trace?: string[]): FakeExtension {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-ext-files-'));
  const readyFile = join(dir, 'invocation-ready');
  const doneFile = join(dir, 'invocation-done');
  const readyRecord = new LineFile(readyFile, 0o644);
  const timers = new Set<NodeJS.Timeout>();
  const ready = (requestId: string, revision: number) => {
    readyRecord.write(requestId, revision);
    trace?.push(`ready:${requestId}`);
  };
  const doneText = () => {
    try {
      return readFileSync(doneFile, 'utf8');
    } catch {
      return undefined;
    }
  };
  return {
    dir,
    readyFile,
    doneFile,
    env: { BULKHEAD_READY_FILE: readyFile, BULKHEAD_DONE_FILE: doneFile },
    ready,
    readyLater: (requestId, revision, delayMs) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => {
          timers.delete(timer);
          ready(requestId, revision);
          resolve();
        }, delayMs);
        timers.add(timer);
      }),
    doneText,
    done: () => {
      const match = /^(\S+) (\d+)\n *$/.exec(doneText() ?? '');
      return match ? { requestId: match[1] ?? '', queued: Number(match[2]) } : undefined;
    },
    clearDone: () => rmSync(doneFile, { force: true }),
    close: () => {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      readyRecord.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Request ids for the one-record state files: Lambda's UUIDs, and the short and longest ones. */
export const lineIds = fc.oneof(fc.uuid(), fc.constantFrom('req-1', 'a', '-', 'x'.repeat(200)));

/**
 * What may be in a one-record state file (`invocation-ready`, `invocation-done`: `<id> <number>\n` and
 * space padding): the record, near misses of it (other gaps, too many digits, no or a second line, other
 * padding) and garbage text or bytes.
 */
export function stateFileContents(maxDigits: number): fc.Arbitrary<string | Uint8Array> {
  const line = fc
    .tuple(
      fc.oneof(lineIds, fc.string({ maxLength: 12 })),
      fc.constantFrom(' ', '  ', '\t', ''),
      fc.oneof(fc.stringMatching(new RegExp(`^\\d{1,${maxDigits + 1}}$`)), fc.string({ maxLength: 5 })),
      fc.constantFrom('\n', '', '\n\n', '\r\n', ' ', '\nreq-1 1\n', `\n${' '.repeat(40)}`, '\n \t', '\n x'),
    )
    .map(([who, gap, number, end]) => `${who}${gap}${number}${end}`);
  return fc.oneof(
    line,
    fc.string({ maxLength: 300 }),
    fc.string({ unit: 'binary', maxLength: 60 }),
    fc.uint8Array({ maxLength: 80 }),
  );
}

/** A reader took `taken` for `asked` from `text`: only from the whole line `<asked> <digits>\n` (then padding). */
export function expectTakenFromWholeLine(
  text: string,
  asked: string,
  taken: number,
  maxDigits: number,
): void {
  expect(text.startsWith(`${asked} `)).toBe(true);
  const rest = text.slice(asked.length + 1);
  expect(rest).toMatch(new RegExp(`^\\d{1,${maxDigits}}\\n *$`));
  expect(taken).toBe(Number(rest.trim()));
  expect(Number.isSafeInteger(taken) && taken >= 0).toBe(true);
}
