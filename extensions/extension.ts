// The Bulkhead Lambda external extension. Order matters:
//  1. before Register: fetch + verify the workload's bundle (bounded), fall back to the last
//     good one in /tmp, then to the bundle baked into the layer, then to the fail mode; write it
//     atomically where the shim reads it, and publish the local endpoint's URL for the wrapper.
//     The runtime only starts once every extension registered, so the bundle is on disk first.
//  2. Register (file name, accountId feature), subscribe to platform telemetry, loop on next.
//  3. INVOKE: conditional refresh bounded well inside deadlineMs, release the shim's ready
//     check, forward spooled deny records, wait for platform.runtimeDone, forward again, next.
//  4. SHUTDOWN: flush within the budget and exit 0. No other exit: Lambda counts it a crash.

import { join } from 'node:path';
import { verifyBundle } from '../policy/bundle.js';
import { formatIdentity } from '../policy/identity.js';
import type { WorkloadIdentity } from '../policy/types.js';
import type { BundleClient } from '../runtime-shims/node/client/bundle-client.js';
import { createBundleClient } from '../runtime-shims/node/client/bundle-client.js';
import { ConfigError, type ExtensionConfig, loadExtensionConfig } from './config.js';
import { type ExtensionEvent, ExtensionsApi } from './extensions-api.js';
import { lambdaIdentity } from './identity.js';
import { LocalEndpoint } from './local-endpoint.js';
import { ReportForwarder } from './report-forwarder.js';
import {
  bundlePath,
  EXTENSION_URL_FILE,
  ensureStateDir,
  readTextIfExists,
  writeFileAtomic,
} from './state-files.js';
import { TelemetryListener } from './telemetry-listener.js';

export type BundleSource = 'control-api' | 'last-good' | 'layer' | 'none';

export interface ExtensionStatus {
  source: BundleSource;
  revision: number;
  failMode: 'closed' | 'observe';
  sandboxId: string;
  /** Milliseconds from the start of this module's work to Register's answer. */
  readyMs: number;
  /** Of which the bundle fetch before Register took this long. */
  fetchMs?: number;
  reason?: string;
}

export interface RunOptions {
  env: NodeJS.ProcessEnv;
  /** Folder of extension.cjs and config.json (`/opt/bulkhead`). */
  layerDir: string;
  log?: (message: string) => void;
}

/** Safety margin kept before a platform deadline. */
const DEADLINE_MARGIN_MS = 150;
const STATUS_FILE = 'extension-status.json';

function defaultLog(message: string): void {
  process.stderr.write(`[bulkhead-extension] ${message}\n`);
}

/** Runs until SHUTDOWN; resolves with the process exit code. */
export async function runExtension(options: RunOptions): Promise<number> {
  const startedAt = Date.now();
  const log = options.log ?? defaultLog;
  const env = options.env;
  const runtimeApi = env.AWS_LAMBDA_RUNTIME_API;
  if (!runtimeApi) {
    log('AWS_LAMBDA_RUNTIME_API is not set: not running inside Lambda');
    return 1;
  }
  const api = new ExtensionsApi(runtimeApi);

  let config: ExtensionConfig | undefined;
  let initProblem: { type: string; message: string } | undefined;
  try {
    config = loadExtensionConfig(env, options.layerDir);
    ensureStateDir(config.stateDir);
  } catch (error) {
    const message = error instanceof ConfigError ? error.message : `state dir: ${(error as Error).message}`;
    initProblem = { type: 'Extension.ConfigInvalid', message };
  }

  let session: Session | undefined;
  if (config && !initProblem) {
    try {
      session = new Session(config, env, log);
      await session.prepare();
    } catch (error) {
      const type = error instanceof ConfigError ? 'Extension.ConfigInvalid' : 'Extension.InitFailed';
      initProblem = { type, message: (error as Error).message };
    }
  }

  const registered = await api.register(config?.extensionName ?? env.BULKHEAD_EXTENSION_NAME ?? 'bulkhead', [
    'INVOKE',
    'SHUTDOWN',
  ]);
  if (initProblem || !session) {
    const problem = initProblem ?? { type: 'Extension.InitFailed', message: 'not initialised' };
    log(`init failed: ${problem.message}`);
    await api.initError(problem.type, problem.message).catch(() => undefined);
    // After init/error no API call succeeds; the platform tears the sandbox down.
    return 1;
  }
  // Ready = fetched, verified and registered: the runtime may start from here on.
  const readyMs = Date.now() - startedAt;
  try {
    await session.afterRegister(registered.accountId, readyMs);
  } catch (error) {
    // Registered now: exiting would be a crash. Keep serving what is held.
    log(`after-register work failed: ${(error as Error).message}`);
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
  private identity: WorkloadIdentity;
  private readonly forwarder: ReportForwarder;
  private readonly endpoint: LocalEndpoint;
  private readonly telemetry = new TelemetryListener();
  private telemetryActive = false;
  private revision = 0;
  private source: BundleSource = 'none';
  private lastCheckAt = 0;
  private reason: string | undefined;
  /** Duration of the fetch before Register (the control API's answer time, mostly). */
  private fetchMs: number | undefined;

  constructor(
    private readonly config: ExtensionConfig,
    private readonly env: NodeJS.ProcessEnv,
    private readonly log: (message: string) => void,
  ) {
    this.identity = lambdaIdentity(env, { workloadText: config.workloadText });
    this.forwarder = new ReportForwarder({
      stateDir: config.stateDir,
      controlUrl: config.controlUrl,
      token: config.token,
      log,
    });
    this.endpoint = new LocalEndpoint(() => ({ revision: this.revision, bundleFile: this.bundleFile }));
  }

  private get bundleFile(): string {
    return bundlePath(this.config.stateDir);
  }

  /** Everything that must be done before Register. The fetch runs while the local endpoint starts. */
  async prepare(): Promise<void> {
    const { config } = this;
    if (config.trustedKeys.length === 0) {
      const message =
        'no trusted keys (BULKHEAD_TRUSTED_KEYS or the layer config.json): no bundle can be verified';
      if (config.failMode === 'closed') throw new ConfigError(message);
      this.log(`${message}; fail mode observe`);
    }
    const lastGood = this.pickLastGood();
    let fetching: Promise<void> = Promise.resolve();
    if (config.controlUrl && config.token && config.trustedKeys.length > 0) {
      this.client = createBundleClient({
        controlUrl: config.controlUrl,
        token: config.token,
        workload: this.identity,
        trustedKeys: config.trustedKeys,
        lastGood: lastGood?.text,
        timeoutMs: Math.max(1, config.fetchTimeoutMs),
        log: (level, message) => {
          if (level !== 'debug') this.log(message);
        },
      });
      const fetchStartedAt = Date.now();
      fetching = this.refresh(config.fetchTimeoutMs, lastGood?.source).then(() => {
        this.fetchMs = Date.now() - fetchStartedAt;
      });
    } else if (lastGood) {
      this.hold(lastGood.text, lastGood.revision, lastGood.source);
      this.reason = 'no control API or token configured';
    } else {
      this.reason = 'no control API configured and no bundle in the layer';
    }
    try {
      this.forwarder.compact();
      const url = await this.endpoint.listen(config.port);
      writeFileAtomic(join(config.stateDir, EXTENSION_URL_FILE), url, 0o644);
    } finally {
      await fetching;
    }
    if (this.source === 'none')
      this.log(
        `no verified bundle: the shim applies fail mode ${config.failMode} (${this.reason ?? 'unknown'})`,
      );
  }

  /** The account id arrives with Register; if it changes the identity, fetch for the full one. */
  async afterRegister(accountId: string | undefined, readyMs: number): Promise<void> {
    if (accountId && this.identity.account !== accountId) {
      this.identity = lambdaIdentity(this.env, { accountId, workloadText: this.config.workloadText });
      if (this.client && this.config.controlUrl && this.config.token) {
        this.client.stop();
        const current = this.client.current();
        this.client = createBundleClient({
          controlUrl: this.config.controlUrl,
          token: this.config.token,
          workload: this.identity,
          trustedKeys: this.config.trustedKeys,
          lastGood: current?.envelopeText,
          timeoutMs: Math.max(1, this.config.fetchTimeoutMs),
          log: (level, message) => {
            if (level !== 'debug') this.log(message);
          },
        });
        // Runs while the runtime initialises; the shim's ready check picks a change up.
        await this.refresh(this.config.fetchTimeoutMs, this.source === 'none' ? undefined : this.source);
      }
    }
    this.writeStatus(readyMs);
    this.log(
      `ready: bundle revision ${this.revision} from ${this.source} for ${formatIdentity(this.identity)} in ${
        readyMs
      } ms`,
    );
  }

  async subscribeTelemetry(api: ExtensionsApi): Promise<void> {
    if (!this.config.waitForRuntimeDone) return;
    try {
      const port = await this.telemetry.listen();
      this.telemetryActive = await api.subscribeTelemetry(port);
      if (!this.telemetryActive)
        this.log('telemetry API not supported here: records go out on the next event');
    } catch (error) {
      this.log(`telemetry subscription failed: ${(error as Error).message}`);
    }
  }

  async invoke(requestId: string, deadlineMs: number): Promise<void> {
    const now = Date.now();
    // Bounded well inside the deadline: at most a quarter of what is left.
    const budget = Math.max(25, Math.min(this.config.fetchTimeoutMs, Math.floor((deadlineMs - now) / 4)));
    if (this.client && now - this.lastCheckAt >= this.config.refreshIntervalMs) {
      await this.refresh(budget, undefined);
    }
    this.endpoint.markReady(requestId);
    await this.forward(deadlineMs);
    if (this.telemetryActive) {
      await this.telemetry.waitRuntimeDone(requestId, deadlineMs - DEADLINE_MARGIN_MS * 2);
      await this.forward(deadlineMs);
    }
  }

  async shutdown(deadlineMs: number, reason: string): Promise<void> {
    const result = await this.forwarder.forward(deadlineMs - DEADLINE_MARGIN_MS);
    this.log(
      `shutdown (${reason}): forwarded ${result.sent} records${result.pending ? `, some left in the spool: ${result.error ?? 'deadline'}` : ''}`,
    );
    this.client?.stop();
    this.forwarder.close();
    this.endpoint.close();
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
    // When the question was asked, not answered: an apply during the request may not be in the answer.
    const askedAt = Date.now();
    const outcome = await client.fetchOnce({ timeoutMs: Math.max(1, timeoutMs) });
    if (outcome.kind === 'updated' || outcome.kind === 'not-modified') this.lastCheckAt = askedAt;
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

  private writeStatus(readyMs: number): void {
    const status: ExtensionStatus = {
      source: this.source,
      revision: this.revision,
      failMode: this.config.failMode,
      sandboxId: this.forwarder.sandboxId,
      readyMs,
      ...(this.fetchMs !== undefined ? { fetchMs: this.fetchMs } : {}),
      ...(this.reason ? { reason: this.reason } : {}),
    };
    writeFileAtomic(join(this.config.stateDir, STATUS_FILE), JSON.stringify(status), 0o644);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
