// The bundle in force and how it arrives: read from BULKHEAD_BUNDLE_FILE at first use and watched,
// waited for from the Lambda extension, or fetched by the control link; verified (signature, expiry,
// scope, rollback) before it replaces the one held, and the fail mode's decider until one is. The core
// decides with `decider` and asks nothing else of it; nothing here decides or records.

import { existsSync, type FSWatcher, readFileSync, statSync, watch, watchFile } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ATTESTED_ONLY_ATTRIBUTES } from '../../policy/attestation.js';
import { scopeMismatch, verifyBundle } from '../../policy/bundle.js';
import { createDecider } from '../../policy/decide.js';
import { classifyHost } from '../../policy/host.js';
import { loadTrustedKeys, type TrustedKey } from '../../policy/keys.js';
import type { Decider, Decision, Mode } from '../../policy/types.js';
import type { ControlConfig, FailMode, ShimConfig } from './config.js';
import { prototypePolluted } from './harden.js';
import { ControlLink } from './link/control-link.js';

export type ReloadResult =
  | { ok: true; revision: number; changed: boolean }
  | { ok: false; reason: string; message: string; revision: number };

export interface BundleHolderOptions {
  config: ShimConfig;
  log: (line: string) => void;
  /** The standalone preload: the control link thread (control-link.cjs) is found beside it. */
  registerPath: string | undefined;
  /** Report builtins found replaced while a bundle was being read. */
  tamper: (what: string) => void;
}

/** A decider for when no valid bundle is held: everything but the exempt endpoints is denied (or would be). */
function failDecider(failMode: FailMode): Decider {
  const mode: Mode = failMode === 'closed' ? 'enforce' : 'observe';
  const deny: Decision = Object.freeze({
    decision: 'deny',
    mode,
    blocked: failMode === 'closed',
    rule: failMode === 'closed' ? 'fail-closed' : 'fail-observe',
  });
  const literal: Decision = Object.freeze({ decision: 'allow', mode, blocked: false, rule: 'ip-literal' });
  return {
    revision: -1,
    mode,
    allowsAddresses: false,
    decide: () => deny,
    decideName: (host: string) => {
      const kind = classifyHost(host);
      return kind && 'ip' in kind ? literal : deny;
    },
    decideExec: () => deny,
    decideAddon: () => deny,
    decideUnix: () => deny,
  };
}

/** The file's identity for `refresh`: a replaced (renamed-in) or rewritten file has another. */
function fileStamp(file: string): string | undefined {
  try {
    const info = statSync(file, { bigint: true });
    return `${info.ino}:${info.mtimeNs}:${info.size}`;
  } catch {
    return undefined;
  }
}

export class BundleHolder {
  /** What decides now: the held bundle's engine, or the fail mode's. */
  decider: Decider;
  readonly #config: ShimConfig;
  readonly #log: (line: string) => void;
  readonly #registerPath: string | undefined;
  readonly #tamper: (what: string) => void;
  /** Identity keys the workload cannot tell about itself: a scope's selector on them is not held against it. */
  readonly #unknowable: ReadonlySet<string>;
  #trustedKeys: TrustedKey[] = [];
  #revision = -1;
  #expiresAt: string | undefined;
  #lastReloadError: string | undefined;
  #watcher: FSWatcher | undefined;
  #reloadTimer: NodeJS.Timeout | undefined;
  #allowsUnixSockets = false;

  constructor(options: BundleHolderOptions) {
    this.#config = options.config;
    this.#log = options.log;
    this.#registerPath = options.registerPath;
    this.#tamper = options.tamper;
    // What only the control API can know of this workload: the AWS account inside Lambda, and what
    // an attestation vouched for (the control API scoped the bundle by it).
    this.#unknowable = new Set([
      ...ATTESTED_ONLY_ATTRIBUTES,
      ...(options.config.workload.cloud === 'aws' ? ['account'] : []),
    ]);
    this.decider = failDecider(options.config.failMode);
  }

  /** Revision of the bundle in force; -1 while none is held (the fail mode governs). */
  get revision(): number {
    return this.#revision;
  }
  get expiresAt(): string | undefined {
    return this.#expiresAt;
  }
  get lastReloadError(): string | undefined {
    return this.#lastReloadError;
  }
  /** Does the bundle in force allow any Unix socket? (HTTP over one is decided at its connect.) */
  get allowsUnixSockets(): boolean {
    return this.#allowsUnixSockets;
  }
  /** Where bundles come from: the file, or the control API through the control link. */
  get source(): 'file' | 'control-api' | undefined {
    return this.#config.bundleFile ? 'file' : this.#link ? 'control-api' : undefined;
  }
  /** The control link, when it runs (deny records at exit go through it). */
  get link(): ControlLink | undefined {
    return this.#link;
  }

  /** A platform wrapper fetches bundles itself from now on: the control link stops (records still go through it). */
  handOverFetching(): void {
    this.#link?.stopFetching();
  }

  /** How bundles will arrive: the file (read at first use), the control link, or a platform wrapper. */
  start(options: { controlLink: boolean }): void {
    if (this.#config.control && options.controlLink) {
      // Fetched by the control link from now on, beside the application's start-up; the first
      // decision waits (bounded) for its first answer.
      this.#startLink(this.#config.control);
      this.#pendingLoad = this.#link !== undefined;
      return;
    }
    if (this.#config.control && !this.#config.bundleFile) {
      // A platform wrapper with its own bundle client installed enforcement: it delivers the bundle.
      this.#lastReloadError = 'no bundle yet: the platform wrapper fetches it';
      return;
    }
    const file = this.#config.bundleFile;
    if (!file) {
      this.#lastReloadError = 'BULKHEAD_BUNDLE_FILE is not set';
      this.#log(
        `no bundle configured (BULKHEAD_BUNDLE_FILE, or BULKHEAD_CONTROL_URL with BULKHEAD_TOKEN); fail mode ${this.#config.failMode} governs`,
      );
      return;
    }
    // Read, verified and watched at first use (the first hooked operation or API call), not here:
    // a process that never reaches out pays nothing for it, and nothing is decided before it.
    this.#pendingLoad = true;
  }

  #pendingLoad = false;
  /** Load the configured bundle now if that has not happened yet. One boolean test once done. */
  ensureLoaded(): void {
    if (!this.#pendingLoad) return;
    // Loading through tampered builtins could misread keys or the bundle: wait until they are
    // restored (every decision meanwhile is refused as tampering).
    if (prototypePolluted()) return;
    this.#pendingLoad = false;
    if (this.#link && this.#config.control) {
      const waitMs = this.#config.control.waitMs;
      if (!this.#link.awaitFirstAnswer(waitMs))
        this.#log(
          `no answer from the control API within ${waitMs} ms; fail mode ${this.#config.failMode} governs until the bundle arrives`,
        );
      return;
    }
    const file = this.#config.bundleFile;
    if (!file) return;
    this.#awaitExtension();
    this.reload();
    this.#watch(file);
  }

  /**
   * On Lambda the extension registers first and fetches while the runtime starts: the first decision
   * waits (bounded) for its first answer, so the bundle is verified before the function's first
   * connection. A synchronous wait, because decisions are synchronous; it only ever happens for a
   * connection made during init, in the first few dozen milliseconds of a cold start (an invocation's
   * wrapper waits for the ready file, written after the status). Past the bound the fail mode governs
   * until the bundle arrives (the watch picks it up).
   */
  #awaitExtension(): void {
    const status = this.#config.extensionStatus;
    if (status === undefined || existsSync(status)) return;
    const deadline = Date.now() + this.#config.extensionWaitMs;
    const slot = new Int32Array(new SharedArrayBuffer(4));
    while (Date.now() < deadline) {
      Atomics.wait(slot, 0, 0, 1);
      if (existsSync(status)) return;
    }
    this.#log(
      `the extension gave no bundle answer within ${this.#config.extensionWaitMs} ms; fail mode ${this.#config.failMode} governs until it does`,
    );
  }

  #link: ControlLink | undefined;

  #startLink(control: ControlConfig): void {
    const file = this.#registerPath ? join(dirname(this.#registerPath), 'control-link.cjs') : undefined;
    if (!file || !existsSync(file)) {
      this.#lastReloadError = 'control-link.cjs not found beside the preload';
      this.#log(
        `cannot fetch bundles from ${control.url.origin}: control-link.cjs is not beside the preload; fail mode ${this.#config.failMode} governs`,
      );
      return;
    }
    try {
      this.#link = new ControlLink({
        file,
        data: {
          controlUrl: control.url.href,
          reportsUrl: control.reportsUrl.href,
          token: control.token,
          workload: this.#config.workload,
          trustedKeys: this.#config.trustedKeys,
          spool: control.spool,
          timeoutMs: Math.max(1000, control.waitMs),
          longPollSeconds: 25,
        },
        log: (line) => this.#log(line),
        onBundle: (envelopeText) => {
          this.#lastResult = this.#reload(envelopeText, `the control API (${control.url.origin})`);
        },
        onKeys: (keys) => {
          if (this.#config.trustedKeys.length > 0) return;
          try {
            this.#trustedKeys = loadTrustedKeys(keys);
            this.#keysLoaded = true;
          } catch (error) {
            this.#log(
              `the control API's signing keys: ${error instanceof Error ? error.message : String(error)}`,
            );
          }
        },
      });
    } catch (error) {
      this.#log(
        `cannot start the control link: ${error instanceof Error ? error.message : String(error)}; fail mode ${this.#config.failMode} governs`,
      );
    }
  }

  #watch(file: string): void {
    const onChange = () => {
      if (this.#reloadTimer) return;
      // Writers replace the file (rename) or write it in several steps: settle first.
      this.#reloadTimer = setTimeout(() => {
        this.#reloadTimer = undefined;
        if (existsSync(file)) this.reload();
      }, 25);
      this.#reloadTimer.unref?.();
    };
    try {
      const name = basename(file);
      this.#watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
        if (changed === null || changed === name) onChange();
      });
      this.#watcher.on('error', () => undefined);
    } catch {
      // No inotify (or the folder does not exist yet): poll the file's stat once a second.
      watchFile(file, { persistent: false, interval: 1000 }, onChange);
    }
  }

  // ---- bundle ----------------------------------------------------------------------------------

  reload(envelopeText?: string): ReloadResult {
    // An explicit reload before first use: the file's bundle is the floor a given envelope must reach.
    if (this.#pendingLoad) {
      this.ensureLoaded();
      if (envelopeText === undefined) return this.#lastResult;
    }
    const result = this.#reload(envelopeText);
    this.#lastResult = result;
    return result;
  }

  /** Identity of the bundle file as last read (inode, mtime, size): `refresh` compares it with one stat. */
  #fileStamp: string | undefined;

  refresh(): ReloadResult {
    if (this.#pendingLoad) {
      this.ensureLoaded();
      return this.#lastResult;
    }
    const file = this.#config.bundleFile;
    if (!file || fileStamp(file) === this.#fileStamp) return this.#lastResult;
    return this.reload();
  }

  #lastResult: ReloadResult = {
    ok: false,
    reason: 'unconfigured',
    message: 'no bundle loaded yet',
    revision: -1,
  };

  #keysLoaded = false;
  #loadKeys(): void {
    if (this.#keysLoaded) return;
    this.#keysLoaded = true;
    if (this.#config.trustedKeys.length === 0) return;
    try {
      this.#trustedKeys = loadTrustedKeys(this.#config.trustedKeys);
    } catch (error) {
      this.#log(
        `configuration: BULKHEAD_TRUSTED_KEYS: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  #reload(envelopeText?: string, from?: string): ReloadResult {
    if (prototypePolluted()) {
      this.#tamper('builtins replaced before a bundle reload');
      return {
        ok: false,
        reason: 'malformed',
        message: 'builtins the verifier relies on were replaced',
        revision: this.#revision,
      };
    }
    this.#loadKeys();
    const source = from ?? (envelopeText === undefined ? this.#config.bundleFile : 'the given envelope');
    const refuse = (reason: string, message: string): ReloadResult => {
      this.#lastReloadError = `${reason}: ${message}`;
      const keeping =
        this.#revision >= 0
          ? `keeping revision ${this.#revision}`
          : `fail mode ${this.#config.failMode} governs`;
      this.#log(`refused bundle from ${source}: ${reason}: ${message}; ${keeping}`);
      return { ok: false, reason, message, revision: this.#revision };
    };
    try {
      let text = envelopeText;
      if (text === undefined) {
        if (!this.#config.bundleFile) return refuse('unconfigured', 'BULKHEAD_BUNDLE_FILE is not set');
        try {
          // Stamped before the read: a file replaced meanwhile differs from the stamp, so it is read again.
          this.#fileStamp = fileStamp(this.#config.bundleFile);
          text = readFileSync(this.#config.bundleFile, 'utf8');
        } catch (error) {
          return refuse('unreadable', (error as NodeJS.ErrnoException).code ?? String(error));
        }
      }
      if (this.#trustedKeys.length === 0)
        return refuse('unknown-key', 'no trusted keys (BULKHEAD_TRUSTED_KEYS)');
      if (prototypePolluted()) {
        this.#tamper('Object.prototype polluted before a bundle reload');
        return refuse('malformed', 'Object.prototype carries fields the bundle reader would inherit');
      }
      const verified = verifyBundle(text, {
        trustedKeys: this.#trustedKeys,
        minRevision: this.#revision >= 0 ? this.#revision : undefined,
      });
      if (!verified.ok) return refuse(verified.reason, verified.message);
      const payload = verified.payload;
      const scope = scopeMismatch(payload.scope, this.#config.workload, this.#unknowable);
      if (scope) return refuse('wrong-scope', scope);
      if (payload.revision === this.#revision) return { ok: true, revision: this.#revision, changed: false };
      const decider = createDecider(payload);
      this.decider = decider;
      this.#allowsUnixSockets = payload.policy.unix?.rules.some((rule) => rule.action === 'allow') === true;
      const previous = this.#revision;
      this.#revision = payload.revision;
      this.#expiresAt = payload.expiresAt;
      this.#lastReloadError = undefined;
      this.#log(
        `enforcing bundle revision ${payload.revision} (${decider.mode}${previous >= 0 ? `, was ${previous}` : ''})`,
      );
      return { ok: true, revision: payload.revision, changed: true };
    } catch (error) {
      return refuse('malformed', error instanceof Error ? error.message : String(error));
    }
  }
}
