// The Bulkhead Lambda external extension. Order matters, and every step is timed against the bill:
//  1. Register first. The layer's launcher (bash) usually registered already and hands the identifier
//     over (BULKHEAD_EXTENSION_ID); otherwise Register is this process's first call. The runtime's init
//     starts once every extension registered, so nothing else may come before it.
//  2. Beside the runtime's init: fetch + verify the workload's bundle (bounded), else the last good one
//     in /tmp, else the layer's, else the fail mode; write it where the shim reads it, then
//     `extension-status.json`. The shim's first decision waits (bounded) for that file, so nothing
//     connects before the bundle is verified. Then keep a long-poll parked at the control API.
//  3. INVOKE: refresh only when the long-poll is not parked (a parked one means nothing changed), write
//     `invocation-ready` (`<requestId> <revision>`), which the shim waits for before the handler. When a
//     shim is attached, wait for its `invocation-done` (`<requestId> <queued>`, written as the handler
//     returns); forward the spool only if records were queued, then next. No deny, no wait.
//  4. SHUTDOWN: flush within the budget and exit 0. No other exit: Lambda counts it a crash.
// Files and formats: docs/contracts.md §6.

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { verifyBundle } from '../policy/bundle.js';
import { formatIdentity } from '../policy/identity.js';
import type { WorkloadIdentity } from '../policy/types.js';
import { LineFile } from '../runtime-shims/node/aws/extension-sync.js';
import { fetchTokenFromSecret } from '../runtime-shims/node/aws/secret-token.js';
import { controlCredentials } from '../runtime-shims/node/client/attest.js';
import type { BundleClient } from '../runtime-shims/node/client/bundle-client.js';
import { createBundleClient } from '../runtime-shims/node/client/bundle-client.js';
import { ConfigError, type ExtensionConfig, loadExtensionConfig } from './config.js';
import { DoneWatcher } from './done-watcher.js';
import { type ExtensionEvent, ExtensionsApi } from './extensions-api.js';
import { lambdaIdentity } from './identity.js';
import { ReportForwarder } from './report-forwarder.js';
import {
  bundlePath,
  DONE_FILE,
  ensureStateDir,
  READY_FILE,
  readTextIfExists,
  STATUS_FILE,
  writeFileAtomic,
} from './state-files.js';
import { TelemetryListener } from './telemetry-listener.js';

export type BundleSource = 'control-api' | 'last-good' | 'layer' | 'none';

export interface ExtensionStatus {
  source: BundleSource;
  revision: number;
  failMode: 'closed' | 'observe';
  sandboxId: string;
  /** Milliseconds from this process's start to this status (Register, fetch, verify, files written). */
  readyMs: number;
  /** Of which the first bundle fetch (control API answer + verify) took this long. */
  fetchMs?: number;
  /** True when the launcher registered before this process started (the fast path). */
  registeredByLauncher: boolean;
  reason?: string;
}

export interface RunOptions {
  env: NodeJS.ProcessEnv;
  /** Folder of extension.cjs and config.json (`/opt/bulkhead`). */
  layerDir: string;
  log?: (message: string) => void;
}

/** First wait before fetching a token secret again after a failure; doubles up to the maximum. */
const SECRET_RETRY_MIN_MS = 2_000;
const SECRET_RETRY_MAX_MS = 60_000;
/** Safety margin kept before a platform deadline. */
const DEADLINE_MARGIN_MS = 150;
/** Lambda extension identifiers are UUIDs; the launcher checked the shape already. */
const EXTENSION_ID = /^[A-Za-z0-9-]{1,128}$/;

function defaultLog(message: string): void {
  process.stderr.write(`[bulkhead-extension] ${message}\n`);
}

/** Runs until SHUTDOWN; resolves with the process exit code. */
export async function runExtension(options: RunOptions): Promise<number> {
  const startedAt = Date.now() - Math.round(process.uptime() * 1000);
  const log = options.log ?? defaultLog;
  const env = options.env;
  const runtimeApi = env.AWS_LAMBDA_RUNTIME_API;
  if (!runtimeApi) {
    log('AWS_LAMBDA_RUNTIME_API is not set: not running inside Lambda');
    return 1;
  }

  // 1. Register: done by the launcher (its identifier and the account id come in the environment), or now.
  const handedOver = env.BULKHEAD_EXTENSION_ID;
  const registeredByLauncher = handedOver !== undefined && EXTENSION_ID.test(handedOver);
  let api: ExtensionsApi;
  let accountId: string | undefined;
  if (registeredByLauncher) {
    api = new ExtensionsApi(runtimeApi, handedOver);
    accountId = /^\d{1,20}$/.test(env.BULKHEAD_ACCOUNT_ID ?? '') ? env.BULKHEAD_ACCOUNT_ID : undefined;
  } else {
    api = new ExtensionsApi(runtimeApi);
    try {
      const registered = await api.register(env.BULKHEAD_EXTENSION_NAME || 'bulkhead', [
        'INVOKE',
        'SHUTDOWN',
      ]);
      accountId = registered.accountId;
    } catch (error) {
      // Unregistered, nothing can be reported to the platform: exit, and init fails loudly.
      log(`register failed: ${(error as Error).message}`);
      return 1;
    }
  }

  // 2. Configuration, bundle and files, while the runtime initialises.
  let session: Session;
  try {
    const config = loadExtensionConfig(env, options.layerDir);
    ensureStateDir(config.stateDir);
    session = new Session(config, env, accountId, log);
    await session.prepare();
    session.start(Date.now() - startedAt, registeredByLauncher);
  } catch (error) {
    const type = error instanceof ConfigError ? 'Extension.ConfigInvalid' : 'Extension.InitFailed';
    const message = (error as Error).message;
    log(`init failed: ${message}`);
    await api.initError(type, message).catch(() => undefined);
    // After init/error no API call succeeds; the platform tears the sandbox down.
    return 1;
  }
  await session.subscribeTelemetry(api);

  let failures = 0;
  for (;;) {
    let event: ExtensionEvent;
    try {
      event = await api.next();
      failures = 0;
    } catch (error) {
      // Never exit on our own: back off and ask again.
      failures++;
      log(`event/next failed: ${(error as Error).message}`);
      await sleep(Math.min(1_000, 50 * 2 ** Math.min(failures, 5)));
      continue;
    }
    if (event.eventType === 'SHUTDOWN') {
      await session.shutdown(event.deadlineMs, event.shutdownReason);
      api.close();
      return 0;
    }
    try {
      await session.invoke(event.requestId, event.deadlineMs);
    } catch (error) {
      log(`invoke handling failed: ${(error as Error).message}`);
    }
  }
}

class Session {
  private client: BundleClient | undefined;
  private readonly identity: WorkloadIdentity;
  private readonly forwarder: ReportForwarder;
  private readonly telemetry = new TelemetryListener();
  private readonly done: DoneWatcher;
  private telemetryActive = false;
  private revision = 0;
  private source: BundleSource = 'none';
  private reason: string | undefined;
  /** Duration of the first fetch (the control API's answer time, mostly). */
  private fetchMs: number | undefined;
  private readonly statusFile: string;
  /** `invocation-ready`, kept open: one write per INVOKE. */
  private readonly ready: LineFile;
  /** With BULKHEAD_TOKEN_SECRET and no token yet: when to ask again, and how long the next wait is. */
  private secretRetryAt = 0;
  private secretRetryMs = SECRET_RETRY_MIN_MS;

  constructor(
    private readonly config: ExtensionConfig,
    private readonly env: NodeJS.ProcessEnv,
    accountId: string | undefined,
    private readonly log: (message: string) => void,
  ) {
    this.identity = lambdaIdentity(env, { accountId, workloadText: config.workloadText });
    this.forwarder = new ReportForwarder({
      stateDir: config.stateDir,
      controlUrl: config.controlUrl,
      token: config.token,
      log,
    });
    this.statusFile = join(config.stateDir, STATUS_FILE);
    this.ready = new LineFile(join(config.stateDir, READY_FILE), 0o644);
    this.done = new DoneWatcher(join(config.stateDir, DONE_FILE));
  }

  private get bundleFile(): string {
    return bundlePath(this.config.stateDir);
  }

  /** Everything before the status file: the runtime is starting meanwhile, the shim waits for the file. */
  async prepare(): Promise<void> {
    const { config } = this;
    // A status file from an earlier incarnation of this sandbox (a reset) must not release the shim.
    rmSync(this.statusFile, { force: true });
    if (config.trustedKeys.length === 0) {
      const message =
        'no trusted keys (BULKHEAD_TRUSTED_KEYS or the layer config.json): no bundle can be verified';
      if (config.failMode === 'closed') throw new ConfigError(message);
      this.log(`${message}; fail mode observe`);
    }
    const lastGood = this.pickLastGood();
    let token = config.token;
    if (token === undefined && this.secretUsable())
      token = await this.fetchSecretToken(config.fetchTimeoutMs);
    if (config.controlUrl && token && config.trustedKeys.length > 0) {
      this.createClient(config.controlUrl, token, lastGood?.text);
      const fetchStartedAt = Date.now();
      await this.refresh(config.fetchTimeoutMs, lastGood?.source);
      this.fetchMs = Date.now() - fetchStartedAt;
    } else if (lastGood) {
      // A token secret that could not be read falls back like an unreachable control API.
      this.hold(lastGood.text, lastGood.revision, lastGood.source);
      this.reason ??= 'no control API or token configured';
    } else {
      this.reason ??= 'no control API configured and no bundle in the layer';
    }
    if (this.source === 'none')
      this.log(
        `no verified bundle: the shim applies fail mode ${config.failMode} (${this.reason ?? 'unknown'})`,
      );
  }

  /** Publishes the first answer to the shim and parks a long-poll for every later revision. */
  start(readyMs: number, registeredByLauncher: boolean): void {
    const status: ExtensionStatus = {
      source: this.source,
      revision: this.revision,
      failMode: this.config.failMode,
      sandboxId: this.forwarder.sandboxId,
      readyMs,
      registeredByLauncher,
      ...(this.fetchMs !== undefined ? { fetchMs: this.fetchMs } : {}),
      ...(this.reason ? { reason: this.reason } : {}),
    };
    writeFileAtomic(this.statusFile, JSON.stringify(status), 0o644);
    this.log(
      `ready: bundle revision ${this.revision} from ${this.source} for ${formatIdentity(this.identity)} in ${readyMs} ms`,
    );
    // The control API answers a parked long-poll the moment a policy applies, even to a frozen sandbox:
    // the answer waits in the socket, and the next INVOKE sees it (see `invoke`).
    this.startLongPoll();
    this.done.start();
  }

  private createClient(controlUrl: string, token: string, lastGood: string | undefined): void {
    // One set of credentials for bundles and records: with BULKHEAD_ATTEST=aws, a session for a
    // signed sts:GetCallerIdentity of the function's role (docs/identity.md).
    const credentials = controlCredentials({
      env: this.env,
      controlUrl,
      token,
      workload: this.identity,
      timeoutMs: Math.max(1, this.config.fetchTimeoutMs),
      log: (_level, message) => this.log(message),
    });
    this.client = createBundleClient({
      controlUrl,
      credentials,
      workload: this.identity,
      trustedKeys: this.config.trustedKeys,
      lastGood,
      timeoutMs: Math.max(1, this.config.fetchTimeoutMs),
      log: (level, message) => {
        if (level !== 'debug') this.log(message);
      },
    });
    this.forwarder.setCredentials(credentials);
  }

  private startLongPoll(): void {
    this.client?.startLongPoll((outcome) => this.hold(outcome.envelopeText, outcome.revision, 'control-api'));
  }

  /** A token secret is configured and could give the client everything else it needs. */
  private secretUsable(): boolean {
    const { config } = this;
    return config.tokenSecret !== undefined && !!config.controlUrl && config.trustedKeys.length > 0;
  }

  /** The token from BULKHEAD_TOKEN_SECRET, or undefined (logged, the reason kept) when it cannot be had. */
  private async fetchSecretToken(timeoutMs: number): Promise<string | undefined> {
    const arn = this.config.tokenSecret as string;
    try {
      const token = await fetchTokenFromSecret(arn, { env: this.env, timeoutMs: Math.max(1, timeoutMs) });
      this.log(`workload token read from ${arn}`);
      return token;
    } catch (error) {
      // The messages name the ARN and AWS's answer, never a value.
      this.reason = `token secret: ${(error as Error).message}`;
      this.log(`cannot read the workload token: ${(error as Error).message}`);
      this.secretRetryAt = Date.now() + this.secretRetryMs;
      this.secretRetryMs = Math.min(SECRET_RETRY_MAX_MS, this.secretRetryMs * 2);
      return undefined;
    }
  }

  /** At INVOKE, while the token secret has not been read: try again when due, and fetch the bundle with it. */
  private async retrySecret(budgetMs: number): Promise<void> {
    if (this.client || !this.secretUsable() || Date.now() < this.secretRetryAt) return;
    const startedAt = Date.now();
    const token = await this.fetchSecretToken(budgetMs);
    if (token === undefined) return;
    const held = readTextIfExists(this.bundleFile);
    this.createClient(this.config.controlUrl as string, token, this.revision > 0 ? held : undefined);
    await this.refresh(Math.max(25, budgetMs - (Date.now() - startedAt)), undefined);
    this.startLongPoll();
  }

  /** The platform's `runtimeDone` is the backstop for a shim that never says done (a crashed runtime). */
  async subscribeTelemetry(api: ExtensionsApi): Promise<void> {
    if (!this.config.waitForRuntimeDone) return;
    try {
      const port = await this.telemetry.listen();
      this.telemetryActive = await api.subscribeTelemetry(port);
    } catch (error) {
      this.log(`telemetry subscription failed: ${(error as Error).message}`);
    }
  }

  async invoke(requestId: string, deadlineMs: number): Promise<void> {
    // The shim waits for the ready line: nothing comes before it but the check that the bundle is current.
    // Bounded well inside the deadline: at most a quarter of what is left.
    const budget = () =>
      Math.max(25, Math.min(this.config.fetchTimeoutMs, Math.floor((deadlineMs - Date.now()) / 4)));
    if (this.client && !(await this.client.parked())) await this.refresh(budget(), undefined);
    else if (!this.client) await this.retrySecret(budget());
    try {
      this.ready.write(requestId, this.revision);
    } catch (error) {
      this.log(
        `cannot write the ready file (${(error as NodeJS.ErrnoException).code}); the shim waits its bound`,
      );
    }
    // Records spooled by an earlier invocation that a freeze interrupted go out beside this one.
    const leftover = this.forwarder.hasPending() ? this.forward(deadlineMs) : undefined;
    if (this.done.attached()) {
      const runtimeDone = this.telemetryActive
        ? this.telemetry.waitRuntimeDone(requestId, deadlineMs - DEADLINE_MARGIN_MS * 2).then(() => undefined)
        : undefined;
      const queued = await this.done.wait(requestId, deadlineMs - DEADLINE_MARGIN_MS * 2, runtimeDone);
      if (leftover) await leftover;
      // Whatever reached the spool during the invocation (the shim's count, or one stat when it said 0:
      // records its background delivery wrote earlier); unknown (no done line): whatever is there.
      if (queued !== 0 || this.forwarder.hasPending()) await this.forward(deadlineMs);
    } else if (leftover) await leftover;
  }

  async shutdown(deadlineMs: number, reason: string): Promise<void> {
    const result = await this.forwarder.forward(deadlineMs - DEADLINE_MARGIN_MS);
    this.log(
      `shutdown (${reason}): forwarded ${result.sent} records${result.pending ? `, some left in the spool: ${result.error ?? 'deadline'}` : ''}`,
    );
    this.client?.stop();
    this.forwarder.close();
    this.ready.close();
    this.done.close();
    this.telemetry.close();
  }

  private async forward(deadlineMs: number): Promise<void> {
    const result = await this.forwarder.forward(deadlineMs - DEADLINE_MARGIN_MS);
    if (result.error && result.pending) this.log(`reports: ${result.error}; will retry on the next event`);
  }

  /** `fallbackSource`: where the client's held bundle came from, named when the control API cannot confirm it. */
  private async refresh(timeoutMs: number, fallbackSource: BundleSource | undefined): Promise<void> {
    const client = this.client;
    if (!client) return;
    const outcome = await client.fetchOnce({ timeoutMs: Math.max(1, timeoutMs) });
    if (outcome.kind === 'updated') {
      this.hold(outcome.envelopeText, outcome.revision, 'control-api');
      return;
    }
    const held = client.current();
    if (outcome.kind === 'not-modified') {
      // The control API confirmed what the client held (a last good or baked bundle).
      if (held && held.revision !== this.revision) this.hold(held.envelopeText, held.revision, 'control-api');
      else if (held) this.source = 'control-api';
      return;
    }
    this.reason = outcome.message;
    if (outcome.kind === 'rejected')
      this.log(`refused bundle from the control API (${outcome.reason}): ${outcome.message}`);
    else this.log(`bundle fetch failed (${outcome.cause}): ${outcome.message}`);
    if (held && held.revision !== this.revision)
      this.hold(held.envelopeText, held.revision, fallbackSource ?? 'last-good');
  }

  private hold(envelopeText: string, revision: number, source: BundleSource): void {
    // The long-poll and an INVOKE refresh may both deliver a revision: never step back.
    if (revision < this.revision) return;
    writeFileAtomic(this.bundleFile, envelopeText, 0o644);
    this.revision = revision;
    this.source = source;
  }

  /** The best verified bundle available without the network: this sandbox's last, else the layer's. */
  private pickLastGood(): { text: string; revision: number; source: BundleSource } | undefined {
    const candidates: { text: string | undefined; source: BundleSource }[] = [
      { text: readTextIfExists(this.bundleFile), source: 'last-good' },
      { text: this.config.fallbackEnvelope, source: 'layer' },
    ];
    for (const candidate of candidates) {
      if (candidate.text === undefined) continue;
      const verified = verifyBundle(candidate.text, {
        trustedKeys: this.config.trustedKeys,
        workload: this.identity,
      });
      if (verified.ok)
        return { text: candidate.text, revision: verified.payload.revision, source: candidate.source };
      this.log(`${candidate.source} bundle refused (${verified.reason}): ${verified.message}`);
    }
    return undefined;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
