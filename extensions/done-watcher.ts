// The shim's end-of-invocation signal (docs/contracts.md §6): `invocation-done` holds the record
// `<requestId> <queued>` (runtime-shims/node/aws/extension-sync.ts), written by the shim as the handler
// returns, after its records reached the spool. The extension waits for it instead of the platform's `runtimeDone` (buffered ≥ 25 ms): with
// nothing queued it calls next at once, so an invocation without a deny costs no billed time here.
// The shim creates the file when it is set up, so its existence says a shim will answer.
import { existsSync } from 'node:fs';
import { RecordWatcher } from '../runtime-shims/node/aws/extension-sync.js';

export class DoneWatcher {
  readonly #records: RecordWatcher;
  #attached = false;

  constructor(private readonly file: string) {
    this.#records = new RecordWatcher(file);
  }

  start(): void {
    this.#records.watch();
  }

  /** A shim set itself up in this sandbox (sticky once seen). */
  attached(): boolean {
    if (!this.#attached) this.#attached = existsSync(this.file);
    return this.#attached;
  }

  /**
   * The number of records the shim queued in `requestId`; undefined when it did not say by `deadline`
   * (epoch ms) or the `backstop` (the platform's runtimeDone) settled first.
   */
  wait(requestId: string, deadline: number, backstop?: Promise<void>): Promise<number | undefined> {
    return this.#records.wait(requestId, deadline, backstop);
  }

  close(): void {
    this.#records.close();
  }
}
