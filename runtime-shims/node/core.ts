// The process-wide enforcement core: decides every hook's question with the bundle holder's engine
// (bundle-holder.ts: how the bundle arrives and is verified), binds DNS answers to names, and queues
// deny records. One instance per
// process (per worker isolate), kept on a `Symbol.for` global so a second copy of this code (the
// ESM wrapper next to the CJS preload) finds and uses the first.

import { AsyncLocalStorage } from 'node:async_hooks';
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { AttestationProof } from '../../policy/attestation.js';
import { isCanonicalIpv4, normalizeIp } from '../../policy/cidr.js';
import { classifyHost } from '../../policy/host.js';
import type {
  Decider,
  Decision,
  DecisionRequest,
  DenyRecord,
  Mode,
  Protocol,
  WorkloadIdentity,
} from '../../policy/types.js';
import { BundleHolder, type ReloadResult } from './bundle-holder.js';
import { awsProof } from './client/attest-aws.js';
import { attestAudience, attestKind } from './client/attest-env.js';
import { type ControlCredentials, tokenCredentials } from './client/credentials.js';
import { type Endpoint, type FailMode, hostKey, readConfig, type ShimConfig } from './config.js';
import { prototypePolluted } from './harden.js';
import { HitCounter } from './hits.js';
import type { HookPort } from './hook-port.js';
import { ControlSink } from './link/control-sink.js';
import { proveInThread } from './link/prove-identity.js';
import { captureOrigin, originFromStack } from './origin.js';
import {
  type FlushResult,
  HttpSink,
  type PostJson,
  type RecordInput,
  RecordQueue,
  type Sink,
  SpoolSink,
} from './records.js';

export const INSTANCE_KEY = Symbol.for('bulkhead.shim.instance');
export const API_VERSION = 1;

export type { ReloadResult } from './bundle-holder.js';

export interface ShimStatus {
  installed: boolean;
  /** Revision of the bundle in force; -1 when none is held (the fail mode governs). */
  revision: number;
  /** Whether a deny blocks (`enforce`) or is only recorded (`observe`) under what governs now. */
  mode: Mode;
  failMode: FailMode;
  /** True when no valid bundle is held and the fail mode decides. */
  failing: boolean;
  bundleFile: string | undefined;
  /** Where bundles come from: the bundle file, or the control API through the control link. */
  bundleSource: 'file' | 'control-api' | undefined;
  expiresAt: string | undefined;
  workload: WorkloadIdentity;
  /** Records dropped because the queue was full or delivery kept failing. */
  dropped: number;
  queued: number;
  delivered: number;
  sink: string | undefined;
  lastReloadError: string | undefined;
  lastDeliveryError: string | undefined;
}

export interface CoverageManifest {
  /** Hook name → live (installed and verified in place). */
  hooks: Record<string, boolean>;
  /** Paths a JS shim cannot govern, and the policy setting that closes each where one exists. */
  notGoverned: { path: string; closedBy: string }[];
}

export interface ShimInstance {
  readonly apiVersion: number;
  status(): ShimStatus;
  reload(envelopeText?: string): ReloadResult;
  /** Reload only when the bundle file changed since it was last read (one stat). Optional: older copies lack it. */
  refresh?(): ReloadResult;
  flush(): Promise<FlushResult>;
  /** Stop the control link's fetching (a wrapper's own client takes over). Optional: older copies lack it. */
  handOverFetching?(): void;
  coverage(): CoverageManifest;
  runInInvocation<T>(invocationId: string, fn: () => T): T;
  setInvocationId(invocationId: string | undefined): void;
  /** Deny records not yet delivered (copies). */
  pendingRecords(): DenyRecord[];
  /** A proof of the platform identity for this control API (BULKHEAD_ATTEST). Optional: older copies lack it. */
  proveIdentity?(timeoutMs: number): Promise<AttestationProof>;
  /** Records go with these credentials from now on (first caller wins). Optional: older copies lack it. */
  useCredentials?(credentials: ControlCredentials): boolean;
}

export interface CoreOptions {
  env: Readonly<Record<string, string | undefined>>;
  log: (line: string) => void;
  /** Absolute path of the standalone preload (`dist/register.cjs`) injected into Node children and workers. */
  registerPath: string | undefined;
  /** Files of the shim itself (skipped when looking for the application frame). */
  isOwnFile: (file: string) => boolean;
  /** HTTP POST used by the report sink (goes through the hooks; its origin is exempt). */
  post: PostJson;
}

const EXEMPT: Decision = Object.freeze({
  decision: 'allow',
  mode: 'enforce',
  blocked: false,
  rule: 'exempt',
});
const POLLUTED: Decision = Object.freeze({
  decision: 'deny',
  mode: 'enforce',
  blocked: true,
  rule: 'tamper:prototype',
});

/**
 * Addresses that a name may never unlock on its own: cloud metadata and link-local. An allowed name
 * whose DNS answer is one of these (rebinding) is decided by address, so only a CIDR rule opens it.
 */
function isSensitiveAddress(ip: string): boolean {
  return (
    ip.startsWith('169.254.') || ip.startsWith('fe80:') || ip === 'fd00:ec2::254' || ip === '100.100.100.200'
  );
}

/** Deny lines logged per second without a sink; the rest go into one summary line a second. */
const LOG_BURST = 20;

function describeDestination(d: DenyRecord['destination']): string {
  if (d.command !== undefined) return d.command;
  if (d.socket !== undefined) return `unix:${d.socket}`;
  return `${d.host ?? d.ip ?? '?'}${d.port ? `:${d.port}` : ''}${d.path ?? ''}`;
}

export class ShimCore implements ShimInstance, HookPort {
  readonly apiVersion = API_VERSION;
  readonly config: ShimConfig;
  readonly log: (line: string) => void;
  readonly registerPath: string | undefined;
  readonly isOwnFile: (file: string) => boolean;
  readonly queue: RecordQueue;
  /** Allow decisions per rule (contract §3, rule hit counts), handed over by the queue. */
  readonly hits: HitCounter;
  /** Hook name → installed; filled by the installers, checked by `coverage()`. */
  readonly hooks: Record<string, boolean> = {};
  /** Checks that a hook is still the one in force (run by `coverage()`). */
  readonly hookChecks: Record<string, () => boolean> = {};
  readonly #bundle: BundleHolder;
  #exemptByPort = new Map<number, Set<string>>();
  #exemptNames = new Set<string>();
  /** IP → names it was resolved for in this process (Cilium-style FQDN binding). */
  #namesByIp = new Map<string, string[]>();
  #als: AsyncLocalStorage<string> | undefined;
  /** The record sink straight to the control API, when records go there from this thread. */
  #http: HttpSink | undefined;
  #credentialsSet = false;
  readonly #env: Readonly<Record<string, string | undefined>>;
  #invocationId: string | undefined;
  #execRealPath: string | undefined;
  // Every key an own property: an accessor planted on Object.prototype cannot answer for a missing one.
  readonly #scratch: DecisionRequest = {
    host: undefined,
    ip: undefined,
    port: 0,
    protocol: 'tcp',
    sni: undefined,
    method: undefined,
    path: undefined,
  };

  /** What decides now: the held bundle's engine, or the fail mode's. */
  get decider(): Decider {
    return this.#bundle.decider;
  }
  /** Revision of the bundle in force; -1 while none is held (the fail mode governs). */
  get revision(): number {
    return this.#bundle.revision;
  }
  /** Could a CIDR rule allow an address a request's names do not? */
  get allowsAddresses(): boolean {
    return this.#bundle.decider.allowsAddresses;
  }
  /** Does the bundle in force allow any Unix socket? (HTTP over one is decided at its connect.) */
  get allowsUnixSockets(): boolean {
    return this.#bundle.allowsUnixSockets;
  }

  constructor(options: CoreOptions) {
    this.log = options.log;
    this.registerPath = options.registerPath;
    this.isOwnFile = options.isOwnFile;
    this.config = readConfig(options.env);
    this.#env = options.env;
    for (const problem of this.config.problems) this.log(`configuration: ${problem}`);
    for (const endpoint of this.config.exempt) this.#addExempt(endpoint);
    this.#bundle = new BundleHolder({
      config: this.config,
      log: this.log,
      registerPath: this.registerPath,
      tamper: (what) => this.tamper(what),
    });
    let sink: Sink | undefined;
    const report = this.config.report;
    const control = this.config.control;
    if (report?.kind === 'spool') sink = new SpoolSink(report.path);
    else if (report?.kind === 'http') {
      const http = new HttpSink(
        report.url,
        this.config.token ? tokenCredentials(this.config.token, this.config.workload) : undefined,
        options.post,
      );
      this.#http = http;
      sink = control
        ? new ControlSink({
            http,
            link: () => this.#bundle.link,
            spool: control.spool,
            defaultSpool: control.defaultSpool,
            exitFlushMs: control.exitFlushMs,
            log: (line) => this.log(line),
          })
        : http;
    }
    this.queue = new RecordQueue(sink, () => this.config.workload, {
      log: (line) => this.log(line),
      // Straight to the control API: number the records so it can count the ones that never arrive.
      numberRecords: report?.kind === 'http',
      hitsIntervalMs: this.config.hitsIntervalMs,
    });
    this.hits = new HitCounter(
      () => this.config.workload,
      () => this.queue.hitsPending(),
    );
    this.queue.attachHits(this.hits);
  }

  /** Counts an allow decision for its rule (the fail mode's and exemptions are no rule's). */
  #counted(decision: Decision): Decision {
    if (decision.decision === 'allow' && decision !== EXEMPT) {
      const revision = this.#bundle.revision;
      if (revision >= 0) this.hits.count(decision, revision);
    }
    return decision;
  }

  #addExempt(endpoint: Endpoint): void {
    let set = this.#exemptByPort.get(endpoint.port);
    if (!set) {
      set = new Set();
      this.#exemptByPort.set(endpoint.port, set);
    }
    set.add(endpoint.host);
    if (!normalizeIp(endpoint.host)) this.#exemptNames.add(endpoint.host);
  }

  /** Load the configured bundle file (at install) and watch it for changes. */
  start(options: { controlLink: boolean } = { controlLink: true }): void {
    // Short-lived processes exit before the delivery timer: spool what is left, and give an HTTP
    // sink one flush when the event loop runs dry.
    process.on('exit', () => this.queue.drainSync());
    let exitFlush = true;
    process.on('beforeExit', () => {
      if (exitFlush && this.queue.queued > 0) {
        exitFlush = false;
        void this.flush();
      }
    });
    this.#bundle.start(options);
  }

  /** Load the configured bundle now if that has not happened yet. One boolean test once done. */
  ensureLoaded(): void {
    this.#bundle.ensureLoaded();
  }

  reload(envelopeText?: string): ReloadResult {
    return this.#bundle.reload(envelopeText);
  }

  refresh(): ReloadResult {
    return this.#bundle.refresh();
  }

  // ---- decisions -------------------------------------------------------------------------------

  isExempt(host: string, port: number): boolean {
    return this.#exemptByPort.get(port)?.has(host) === true;
  }

  isExemptName(host: string): boolean {
    return this.#exemptNames.has(host);
  }

  /** Remember that `host` resolved to these addresses (answers of a query this process made). */
  bindNames(host: string, addresses: readonly unknown[]): void {
    const name = host.toLowerCase().replace(/\.$/, '');
    const kind = classifyHost(name);
    if (!kind || 'ip' in kind) return;
    for (const entry of addresses) {
      const raw =
        typeof entry === 'string'
          ? entry
          : typeof entry === 'object' &&
              entry !== null &&
              typeof (entry as { address?: unknown }).address === 'string'
            ? (entry as { address: string }).address
            : undefined;
      if (!raw) continue;
      const ip = normalizeIp(raw);
      if (!ip) continue;
      const names = this.#namesByIp.get(ip);
      if (!names) {
        if (this.#namesByIp.size >= 50_000) this.#namesByIp.clear();
        this.#namesByIp.set(ip, [name]);
      } else if (!names.includes(name)) {
        if (names.length >= 32) names.shift();
        names.push(name);
      }
    }
  }

  namesOf(ip: string): readonly string[] | undefined {
    return this.#namesByIp.get(ip);
  }

  #decideOne(
    host: string | undefined,
    ip: string,
    port: number,
    protocol: Protocol,
    sni: string | undefined,
  ): Decision {
    const request = this.#scratch;
    request.host = host;
    request.ip = ip;
    request.port = port;
    request.protocol = protocol;
    request.sni = sni;
    request.method = undefined;
    request.path = undefined;
    // Only decideConnect calls this, after it checked the builtins once for the whole decision.
    return this.decider.decide(request);
  }

  /** The refusal to act on when a builtin the shim relies on was replaced (undefined: all intact). */
  tampered(): Decision | undefined {
    return prototypePolluted() ? this.#polluted() : undefined;
  }

  #pollutionReported = false;
  #polluted(): Decision {
    if (!this.#pollutionReported) {
      this.#pollutionReported = true;
      this.tamper(
        'a builtin the decision engine relies on was replaced, or Object.prototype carries a field it reads',
      );
    }
    return POLLUTED;
  }

  /**
   * A new connection (TCP or UDP) to `address:port`. The names it may be decided by are those this
   * process resolved to that address; a name the caller merely claims (a custom `lookup`) does not
   * count. SNI, when given, must be allowed too.
   */
  decideConnect(
    address: string,
    port: number,
    protocol: Protocol,
    claimedHost: unknown,
    sni: unknown,
  ): Decision {
    return this.#counted(this.#decideConnect(address, port, protocol, claimedHost, sni));
  }

  #decideConnect(
    address: string,
    port: number,
    protocol: Protocol,
    claimedHost: unknown,
    sni: unknown,
  ): Decision {
    this.ensureLoaded();
    // First, before any Map, Set or string method of ours runs: a replaced builtin could answer
    // for the exemption tables below as well as for the engine.
    if (prototypePolluted()) return this.#polluted();
    let ip = isCanonicalIpv4(address) ? address : (normalizeIp(address) ?? address);
    // Connecting to the unspecified address reaches this host's loopback: decide it as such.
    if (ip === '0.0.0.0') ip = '127.0.0.1';
    else if (ip === '::') ip = '::1';
    if (this.isExempt(ip, port)) return EXEMPT;
    const names = this.#namesByIp.get(ip);
    const sniName = typeof sni === 'string' && sni !== '' ? sni.toLowerCase() : undefined;
    if (names) {
      for (const name of names) if (this.isExempt(name, port)) return EXEMPT;
    }
    let decision: Decision | undefined;
    let viaName = false;
    const claimed = typeof claimedHost === 'string' ? claimedHost.toLowerCase() : undefined;
    if (names && claimed && names.includes(claimed)) {
      decision = this.#decideOne(claimed, ip, port, protocol, undefined);
      viaName = true;
    } else if (names) {
      for (const name of names) {
        const d = this.#decideOne(name, ip, port, protocol, undefined);
        if (decision === undefined || d.decision === 'allow') decision = d;
        if (d.decision === 'allow') {
          viaName = true;
          break;
        }
      }
    }
    if (decision === undefined || decision.decision !== 'allow') {
      const byAddress = this.#decideOne(undefined, ip, port, protocol, undefined);
      if (decision === undefined || byAddress.decision === 'allow') {
        decision = byAddress;
        viaName = false;
      }
    }
    if (decision.decision === 'allow' && viaName && isSensitiveAddress(ip))
      decision = this.#decideOne(undefined, ip, port, protocol, undefined);
    if (decision.decision === 'allow' && sniName !== undefined) {
      const bySni = this.#decideOne(sniName, ip, port, protocol, undefined);
      if (bySni.decision !== 'allow') decision = bySni;
    }
    return decision;
  }

  /** An HTTP request (any client): host + method + path, before a byte of it is sent. */
  decideRequest(request: DecisionRequest): Decision {
    this.ensureLoaded();
    if (prototypePolluted()) return this.#polluted();
    if (
      request.host !== undefined &&
      this.#exemptByPort.has(request.port) &&
      this.isExempt(hostKey(request.host), request.port)
    )
      return EXEMPT;
    return this.#counted(this.decider.decide(request));
  }

  /**
   * Before a connect (host as given, no address yet): could this end in a deny? Only then is the
   * caller's stack kept for the record; an allowed connection costs one cached decision.
   */
  mayDeny(host: unknown, port: unknown): boolean {
    this.ensureLoaded();
    if (typeof host !== 'string' || typeof port !== 'number' || prototypePolluted()) return true;
    if (this.#exemptByPort.has(port)) return false;
    const request = this.#scratch;
    // An address is asked as the TCP gate will ask it (the address, no name): the gate's decision
    // is then this one from the cache, not a second evaluation (a flood's distinct addresses all miss).
    const address = isCanonicalIpv4(host);
    request.host = address ? undefined : host;
    request.ip = address ? host : undefined;
    request.port = port;
    request.protocol = 'tcp';
    request.sni = undefined;
    request.method = undefined;
    request.path = undefined;
    return this.decider.decide(request).decision !== 'allow';
  }

  /** DNS: may this name be queried at all? Exempt endpoints' names always may. */
  decideName(host: string): Decision {
    this.ensureLoaded();
    if (prototypePolluted()) return this.#polluted();
    const name = host.toLowerCase().replace(/\.$/, '');
    if (this.#exemptNames.has(name)) return EXEMPT;
    return this.#counted(this.decider.decideName(name));
  }

  /** The Node binary's real path, to recognise `node` however a child is spawned. */
  get execRealPath(): string {
    if (this.#execRealPath === undefined) {
      try {
        this.#execRealPath = realpathSync(process.execPath);
      } catch {
        this.#execRealPath = process.execPath;
      }
    }
    return this.#execRealPath;
  }

  // ---- records ---------------------------------------------------------------------------------

  currentInvocation(): string | undefined {
    return this.#als?.getStore() ?? this.#invocationId;
  }

  /**
   * Record a deny / would-deny. Never throws. The stack walk that finds the origin runs only when the
   * record this deny goes to has none yet (once per record or aggregate, not once per deny of a flood);
   * without a sink, deny lines are logged at most LOG_BURST a second and the rest summarised.
   */
  report(
    kind: DenyRecord['kind'],
    decision: Decision,
    destination: DenyRecord['destination'],
    severity?: 'high',
    startedAt?: { stack?: unknown },
  ): void {
    try {
      const input: RecordInput = {
        kind,
        destination,
        decision: decision.decision,
        mode: decision.mode,
        rule: decision.rule,
        revision: Math.max(this.#bundle.revision, 0),
        invocationId: this.currentInvocation(),
      };
      if (severity || decision.rule === 'fail-closed') input.severity = 'high';
      if (!this.queue.sinkDescription) this.#logDeny(kind, decision, destination);
      if (this.queue.add(input))
        this.queue.setOrigin(
          captureOrigin(this.isOwnFile) ??
            (startedAt ? originFromStack(startedAt.stack, this.isOwnFile) : undefined),
        );
    } catch {
      // A record that cannot be built must not turn a denial into an application crash.
    }
  }

  #logWindowMs = 0;
  #logLines = 0;
  #logHeld = 0;
  #logLast = '';
  #logTimer: NodeJS.Timeout | undefined;
  #logAtExit = false;

  /** One line per deny, LOG_BURST a second at most; the rest are counted into one summary line. */
  #logDeny(kind: DenyRecord['kind'], decision: Decision, d: DenyRecord['destination']): void {
    const now = Date.now();
    if (now - this.#logWindowMs >= 1000) {
      this.#logWindowMs = now;
      this.#logLines = 0;
    }
    if (this.#logLines < LOG_BURST) {
      this.#logLines++;
      this.log(
        `${decision.blocked ? 'DENY' : 'would deny'} ${kind} ${describeDestination(d)} (rule ${decision.rule})`,
      );
      return;
    }
    this.#logHeld++;
    if (this.#logHeld === 1 || (this.#logHeld & 1023) === 0)
      this.#logLast = `${decision.blocked ? 'DENY' : 'would deny'} ${kind} ${describeDestination(d)} (rule ${decision.rule})`;
    if (!this.#logAtExit) {
      this.#logAtExit = true;
      process.once('exit', () => this.#logSummary());
    }
    if (this.#logTimer === undefined) {
      this.#logTimer = setTimeout(() => this.#logSummary(), 1000);
      this.#logTimer.unref?.();
    }
  }

  #logSummary(): void {
    if (this.#logTimer !== undefined) clearTimeout(this.#logTimer);
    this.#logTimer = undefined;
    const held = this.#logHeld;
    if (held === 0) return;
    this.#logHeld = 0;
    this.log(
      `${held.toLocaleString('en-US')} more denies not logged one by one (over ${LOG_BURST} a second; e.g. ${this.#logLast}); records count every one (status: queued, dropped)`,
    );
  }

  tamper(what: string): void {
    this.report(
      'tamper',
      { decision: 'deny', mode: 'enforce', blocked: true, rule: 'tamper' },
      { command: what },
      'high',
    );
  }

  // ---- API -------------------------------------------------------------------------------------

  /** child_process: may this executable start? */
  decideExec(file: string): Decision {
    this.ensureLoaded();
    if (prototypePolluted()) return this.#polluted();
    return this.#counted(this.decider.decideExec(file));
  }

  /** A Unix-domain socket connect: the address as `socketAddressText` wrote it. */
  decideUnix(socket: string): Decision {
    this.ensureLoaded();
    if (prototypePolluted()) return this.#polluted();
    return this.#counted(this.decider.decideUnix(socket));
  }

  /** process.dlopen: may this addon load? */
  decideAddon(path: string): Decision {
    this.ensureLoaded();
    if (prototypePolluted()) return this.#polluted();
    return this.#counted(this.decider.decideAddon(path));
  }

  status(): ShimStatus {
    this.ensureLoaded();
    return {
      installed: true,
      revision: this.#bundle.revision,
      mode: this.decider.mode,
      failMode: this.config.failMode,
      failing: this.#bundle.revision < 0,
      bundleFile: this.config.bundleFile,
      bundleSource: this.bundleSource,
      expiresAt: this.#bundle.expiresAt,
      workload: this.config.workload,
      dropped: this.queue.dropped,
      queued: this.queue.queued,
      delivered: this.queue.delivered,
      sink: this.queue.sinkDescription,
      lastReloadError: this.#bundle.lastReloadError,
      lastDeliveryError: this.queue.lastError,
    };
  }

  /** Where bundles come from (read without loading anything). */
  get bundleSource(): ShimStatus['bundleSource'] {
    return this.#bundle.source;
  }

  /** A platform wrapper fetches bundles itself from now on: the control link stops (records still go through it). */
  handOverFetching(): void {
    this.#bundle.handOverFetching();
  }

  flush(): Promise<FlushResult> {
    try {
      return this.queue
        .flush()
        .catch(() => ({ delivered: 0, pending: this.queue.queued, dropped: this.queue.dropped }));
    } catch {
      return Promise.resolve({ delivered: 0, pending: this.queue.queued, dropped: this.queue.dropped });
    }
  }

  coverage(): CoverageManifest {
    const hooks: Record<string, boolean> = {};
    for (const [name, installed] of Object.entries(this.hooks)) {
      let live = installed;
      try {
        if (live && this.hookChecks[name]) live = this.hookChecks[name]();
      } catch {
        live = false;
      }
      hooks[name] = live;
    }
    return { hooks, notGoverned: NOT_GOVERNED.map((entry) => ({ ...entry })) };
  }

  /**
   * A proof of this process's platform identity for this control API (BULKHEAD_ATTEST,
   * BULKHEAD_ATTEST_AUDIENCE or the control URL's origin: never a cloud or an audience a caller
   * picks). GCP and Azure proofs are made in a thread without the hooks; AWS proofs are only signed.
   */
  async proveIdentity(timeoutMs: number): Promise<AttestationProof> {
    const env = this.#env;
    const kind = attestKind(env);
    const controlUrl = env.BULKHEAD_CONTROL_URL;
    if (!kind || !controlUrl) throw new Error('BULKHEAD_ATTEST and BULKHEAD_CONTROL_URL are not both set');
    const audience = attestAudience(env, controlUrl);
    if (kind === 'aws') return awsProof({ audience, env: env as NodeJS.ProcessEnv });
    if (!this.registerPath)
      throw new Error('proof-thread.cjs not found: the shim is not running from its package');
    return proveInThread(join(dirname(this.registerPath), 'proof-thread.cjs'), kind, audience, timeoutMs);
  }

  /**
   * Records go with `credentials` from now on (a wrapper's attested session). The first caller — the
   * wrapper, at start, before the function's code runs — wins: later calls change nothing.
   */
  useCredentials(credentials: ControlCredentials): boolean {
    if (this.#credentialsSet) return false;
    this.#credentialsSet = true;
    this.#http?.use(credentials);
    return true;
  }

  runInInvocation<T>(invocationId: string, fn: () => T): T {
    if (!this.#als) {
      // Created on first use: AsyncLocalStorage turns on promise hooks, which cost every process that never needs it.
      this.#als = new AsyncLocalStorage<string>();
    }
    return this.#als.run(invocationId, fn);
  }

  setInvocationId(invocationId: string | undefined): void {
    this.#invocationId = invocationId;
  }

  pendingRecords(): DenyRecord[] {
    return this.queue.peek();
  }
}

export const NOT_GOVERNED: readonly { path: string; closedBy: string }[] = [
  {
    path: 'native addons (.node files) make their own system calls',
    closedBy: 'addons.allow in the policy: process.dlopen of any addon not listed is denied',
  },
  {
    path: 'non-Node child processes (curl, python, a shell) open their own sockets',
    closedBy: 'exec.allow in the policy: executables not listed are denied (Node children keep the shim)',
  },
  {
    path: 'FIFOs (named pipes) and files opened through fs: file I/O, not sockets',
    closedBy: 'none (no socket is connected; deny exec/addons that could relay)',
  },
  {
    path: 'non-HTTP protocols over TCP/TLS are decided at host, address, port and SNI, not by content',
    closedBy: 'allow such destinations by port only where needed',
  },
  {
    path: 'undici L7 facts (method, path) come from diagnostics_channel, which code in the process can unsubscribe',
    closedBy: 'TCP/TLS decisions by host, address and SNI still apply underneath',
  },
];

/** Where the standalone preload lives, for injecting into Node children and workers. */
export function findRegisterPath(ownFile: string | undefined, explicit?: string): string | undefined {
  const candidates = [explicit];
  if (ownFile) {
    const dir = dirname(ownFile);
    candidates.push(join(dir, 'register.cjs'), join(dir, '..', 'dist', 'register.cjs'));
  }
  for (const candidate of candidates) if (candidate && existsSync(candidate)) return candidate;
  return undefined;
}
