// What one replica's event loop knows about the current revision: answers, not policy sets.
// The parsed set lives in the policy thread (control/policy-thread.ts); this side keeps what
// every request needs at map-lookup cost — each `?workload=` text resolved to its scope and
// SmartGroups, the signed envelope per (scope, epoch) — and asks the thread only on a miss.
//
// A new revision (an apply here, an announcement from another replica, the head check) is
// prepared by the thread in full — parsed, every known workload text resolved, the bundles of
// the parked long-polls signed — and then swapped in at once, so waking 10,000 parked polls is
// 10,000 cache hits and nothing on this thread grows with the size of the policy.
import { createHash } from 'node:crypto';
import { checkIdentityBounds, formatIdentity, parseIdentity } from '../policy/index.js';
import type { WorkloadIdentity } from '../policy/types.js';
import { PolicyWorker, type ResolvedText, type SignedScope } from './policy-worker.js';
import { PrebuiltAnswer } from './prebuilt-answer.js';
import type { ControlStore, PolicySource, RevisionRow } from './store/types.js';

export interface SigningKey {
  privateKeyPem: string;
  publicKeyPem: string;
  keyId: string;
}

export interface LoadedRevision {
  revision: number;
  createdAt: string;
  createdMs: number;
  sources: PolicySource[];
}

export type ResolvedWorkload = ResolvedText;

export interface SignedBundle {
  revision: number;
  scope: string;
  etag: string;
  /** The 200 answer (headers and the canonical envelope JSON), built once: every workload of the scope gets these bytes. */
  answer: PrebuiltAnswer;
}

export interface TextEntry {
  identity: WorkloadIdentity;
  resolved: ResolvedWorkload;
}

const IDENTITY_CACHE_LIMIT = 50_000;
const BUNDLE_CACHE_LIMIT = 10_000;
const SCOPE_NAMES_LIMIT = 10_000;
/** Most scopes the thread signs while preparing a revision; the rest on first request. */
const SIGN_AT_INSTALL = 512;

export class PolicyState {
  private loaded: LoadedRevision | undefined;
  /** Resolved workloads by the raw `?workload=` text, for the current revision. */
  private byText = new Map<string, TextEntry>();
  /** Changes whenever an entry of byText may have been replaced or dropped: an entry read at the same version is current. */
  textsVersion = 0;
  /** Per scope (this revision): the newest epoch's signed envelope. */
  private bundles = new Map<string, { epoch: number; bundle: SignedBundle }>();
  /** Per scope (this revision): the current epoch's ETag. Looked up by scope alone: no key to build per request. */
  private etags = new Map<string, { epoch: number; etag: string }>();
  /** `?workload=` texts of parked long-polls, with counts: their bundles are signed before a swap. */
  private readonly parkedTexts = new Map<string, number>();
  private readonly signing = new Map<string, Promise<SignedBundle | undefined>>();
  private resolveQueue: {
    item: { text: string; key: string; identity: WorkloadIdentity };
    done: (entry: TextEntry | undefined) => void;
  }[] = [];
  private readonly resolving = new Map<string, Promise<TextEntry | undefined>>();
  private resolveInFlight = false;
  private pending: Promise<void> | undefined;
  private wanted = 0;
  private installs: Promise<unknown> = Promise.resolve();
  /**
   * SmartGroup names per scope id, from every resolution. A scope id is a hash of the names, so an
   * entry holds across revisions; sightings carry them to the store (the inventory's groups).
   */
  private readonly scopeNames = new Map<string, readonly string[]>();
  readonly worker: PolicyWorker;

  constructor(
    private readonly store: ControlStore,
    key: SigningKey,
    /** How long a signed bundle stays valid; envelopes are re-signed each quarter of it. */
    private readonly bundleTtlMs: number,
    private readonly onAdvance: (revision: number) => void,
    private readonly onError: (error: Error, revision: number) => void,
    /** Passes of the policy thread's warm-up at start (control/policy-warm-up.ts); 0: none. */
    warmUpPasses: number,
  ) {
    this.worker = new PolicyWorker(
      { privateKeyPem: key.privateKeyPem, bundleTtlMs, signAtInstall: SIGN_AT_INSTALL, warmUpPasses },
      (reason) => {
        // The new thread holds nothing: install the current revision into it again.
        const current = this.loaded;
        this.onError(new Error(`policy thread restarted (${reason})`), current?.revision ?? 0);
        if (current) void this.prepare({ ...current, restoredFrom: null, summary: null }, undefined, true);
      },
    );
  }

  get current(): LoadedRevision | undefined {
    return this.loaded;
  }

  get revision(): number {
    return this.loaded?.revision ?? 0;
  }

  /** Loads the latest revision at start. */
  async init(): Promise<void> {
    const latest = await this.store.latestRevision();
    if (latest) await this.prepare(latest);
  }

  /** Moves to `revision` (or later) when it is newer than what is loaded; announcements may race, so only forward. */
  advance(revision: number): Promise<void> {
    if (revision > this.wanted) this.wanted = revision;
    if (!this.pending) {
      this.pending = this.catchUp().finally(() => {
        this.pending = undefined;
      });
    }
    return this.pending;
  }

  private async catchUp(): Promise<void> {
    // Give a local apply (which installs the set it already checked) the chance to go first.
    await new Promise((resolve) => setImmediate(resolve));
    await this.installs;
    while (this.wanted > this.revision) {
      const target = this.wanted;
      try {
        const row = (await this.store.latestRevision()) ?? (await this.store.getRevision(target));
        if (!row || row.revision <= this.revision) return;
        await this.prepare(row);
      } catch (error) {
        this.onError(error as Error, target);
        return;
      }
      if (this.revision < target) return;
    }
  }

  /**
   * Makes `row` current, one install at a time; `candidate` is the policy thread's token for the
   * set an apply just checked (else the thread parses `row.sources`).
   */
  prepare(row: RevisionRow, candidate?: number, again = false): Promise<void> {
    const run = this.installs.then(() => this.install(row, candidate, again));
    this.installs = run.catch(() => {});
    return run;
  }

  private async install(row: RevisionRow, candidate: number | undefined, again: boolean): Promise<void> {
    if (row.revision < this.revision || (row.revision === this.revision && !again)) return;
    const createdMs = Date.parse(row.createdAt);
    const request = {
      op: 'install' as const,
      revision: row.revision,
      createdMs,
      ...(candidate === undefined ? {} : { candidate }),
      sources: row.sources,
      epoch: this.epochOf(Date.now()),
    };
    // One text per scope is enough while the SmartGroups stay the same (the policy thread says
    // when they do not): 4 texts to clone and look at instead of 10,000.
    let reply = await this.worker.ask({ ...request, ...this.oneTextPerScope(), everyKey: false });
    const texts: string[] = [];
    if (reply.installed?.needsEveryKey) {
      const keys: string[] = [];
      const parked: number[] = [];
      for (const [text, entry] of this.byText) {
        if (this.parkedTexts.has(text)) parked.push(keys.length);
        texts.push(text);
        keys.push(entry.resolved.key);
      }
      reply = await this.worker.ask({ ...request, keys, parked, everyKey: true });
    }
    const installed = reply.installed;
    if (!installed || installed.needsEveryKey)
      throw new Error('policy thread: install answered without a result');
    let byText = this.byText;
    // Changed SmartGroups: every text gets its new scope; texts resolved meanwhile are asked again.
    if (!installed.sameScopes) {
      byText = new Map();
      const scopeOfKey = installed.scopeOfKey ?? new Int32Array(0);
      const table = installed.scopes ?? [];
      for (let i = 0; i < texts.length; i++) {
        const text = texts[i];
        const previous = text === undefined ? undefined : this.byText.get(text);
        const scope = table[scopeOfKey[i] ?? -1];
        if (text === undefined || !previous || !scope) continue;
        byText.set(text, {
          identity: previous.identity,
          resolved: { key: previous.resolved.key, scope: scope.scope, groups: scope.groups },
        });
      }
      for (const scope of table) this.learnScope(scope.scope, scope.groups);
    }
    this.loaded = { revision: row.revision, createdAt: row.createdAt, createdMs, sources: row.sources };
    if (byText !== this.byText) this.textsVersion++;
    this.byText = byText;
    this.bundles = new Map();
    this.etags = new Map();
    this.signing.clear();
    this.resolving.clear();
    for (const signed of installed.signed) this.keep(signed);
    if (!again) this.onAdvance(row.revision);
  }

  /** A text of each scope resolved now, the scopes of parked long-polls first (`parked` indexes them). */
  private oneTextPerScope(): { keys: string[]; parked: number[] } {
    const parkedScopes = new Map<string, string>();
    const otherScopes = new Map<string, string>();
    for (const [text, entry] of this.byText) {
      const { scope, key } = entry.resolved;
      if (this.parkedTexts.has(text)) {
        if (!parkedScopes.has(scope)) parkedScopes.set(scope, key);
      } else if (!otherScopes.has(scope)) otherScopes.set(scope, key);
    }
    const keys = [...parkedScopes.values()];
    const parked = keys.map((_, index) => index);
    for (const [scope, key] of otherScopes) if (!parkedScopes.has(scope)) keys.push(key);
    return { keys, parked };
  }

  private learnScope(scope: string, groups: readonly string[]): void {
    if (this.scopeNames.has(scope)) return;
    if (this.scopeNames.size >= SCOPE_NAMES_LIMIT) this.scopeNames.clear();
    this.scopeNames.set(scope, groups);
  }

  /** The SmartGroup names of a scope id this replica has resolved (undefined: not seen since start). */
  groupsOfScope(scope: string): readonly string[] | undefined {
    return this.scopeNames.get(scope);
  }

  private keep(signed: SignedScope): SignedBundle {
    this.learnScope(signed.scope, signed.groups);
    const etag = this.etag(this.revision, signed.scope, signed.epoch);
    const body = Buffer.from(signed.body.buffer, signed.body.byteOffset, signed.body.byteLength);
    const bundle: SignedBundle = {
      revision: this.revision,
      scope: signed.scope,
      etag,
      answer: new PrebuiltAnswer(
        [
          'content-type',
          'application/json',
          'content-length',
          String(body.byteLength),
          'etag',
          etag,
          'x-bulkhead-revision',
          String(this.revision),
          'cache-control',
          'no-cache',
        ],
        body,
      ),
    };
    if (this.bundles.size >= BUNDLE_CACHE_LIMIT) this.bundles.clear();
    const current = this.bundles.get(signed.scope);
    if (!current || current.epoch <= signed.epoch)
      this.bundles.set(signed.scope, { epoch: signed.epoch, bundle });
    return bundle;
  }

  /** A long-poll on `text` parks (its bundle is signed before the next swap) or leaves. */
  park(text: string): void {
    this.parkedTexts.set(text, (this.parkedTexts.get(text) ?? 0) + 1);
  }

  unpark(text: string): void {
    const count = this.parkedTexts.get(text) ?? 0;
    if (count <= 1) this.parkedTexts.delete(text);
    else this.parkedTexts.set(text, count - 1);
  }

  /** The resolved entry for a `?workload=` text when this revision already has it (no allocation, no await). */
  cachedText(text: string): TextEntry | undefined {
    return this.byText.get(text);
  }

  /**
   * Parses and resolves the `?workload=` text, remembered per text for the current revision so a
   * fleet waking on a new revision costs a map lookup each. Throws TypeError on a malformed identity
   * or one beyond IDENTITY_BOUNDS (never cached, so never in the inventory); `resolved` is undefined
   * while no revision exists.
   */
  resolveText(
    text: string,
  ): TextEntry | Promise<{ identity: WorkloadIdentity; resolved: ResolvedWorkload | undefined }> {
    const cached = this.byText.get(text);
    if (cached) return cached;
    const identity = parseIdentity(text);
    checkIdentityBounds(identity);
    if (!this.loaded) return Promise.resolve({ identity, resolved: undefined });
    let resolving = this.resolving.get(text);
    if (!resolving) {
      resolving = new Promise<TextEntry | undefined>((done) => {
        this.resolveQueue.push({ item: { text, key: formatIdentity(identity), identity }, done });
        // One request in flight at a time: misses arriving meanwhile go together in the next.
        if (this.resolveQueue.length === 1 && !this.resolveInFlight)
          setImmediate(() => void this.flushResolves());
      });
      this.resolving.set(text, resolving);
      void resolving.finally(() => {
        if (this.resolving.get(text) === resolving) this.resolving.delete(text);
      });
    }
    return resolving.then((entry) => ({ identity, resolved: entry?.resolved }));
  }

  /** One thread request for every text that missed since the last one. */
  private async flushResolves(): Promise<void> {
    const batch = this.resolveQueue;
    this.resolveQueue = [];
    if (batch.length === 0) return;
    const revision = this.revision;
    this.resolveInFlight = true;
    try {
      await this.resolveBatch(batch, revision);
    } finally {
      this.resolveInFlight = false;
      if (this.resolveQueue.length > 0) setImmediate(() => void this.flushResolves());
    }
  }

  private async resolveBatch(batch: PolicyState['resolveQueue'], revision: number): Promise<void> {
    let reply: Awaited<ReturnType<PolicyWorker['ask']>> | undefined;
    try {
      reply = await this.worker.ask({
        op: 'resolve',
        revision,
        items: batch.map(({ item }) => ({ key: item.key, identity: item.identity })),
      });
    } catch (error) {
      this.onError(error as Error, revision);
    }
    const results = reply?.resolvedMany;
    for (let i = 0; i < batch.length; i++) {
      const waiting = batch[i];
      if (!waiting) continue;
      const resolved = results?.[i];
      if (!resolved || revision !== this.revision) {
        // Stale (a swap happened meanwhile) or failed: the caller asks again.
        waiting.done(undefined);
        continue;
      }
      const entry: TextEntry = { identity: waiting.item.identity, resolved };
      this.learnScope(resolved.scope, resolved.groups);
      if (this.byText.size >= IDENTITY_CACHE_LIMIT) {
        this.byText.clear();
        this.textsVersion++;
      }
      this.byText.set(waiting.item.text, entry);
      waiting.done(entry);
    }
  }

  /** Scope and SmartGroups of a workload under the current revision (undefined before the first). */
  async resolve(identity: WorkloadIdentity): Promise<ResolvedWorkload | undefined> {
    return (await this.resolveText(formatIdentity(identity))).resolved;
  }

  /** ETag of the envelope a workload would get now, without signing anything. */
  etagFor(resolved: ResolvedWorkload, nowMs = Date.now()): string {
    return this.etag(this.revision, resolved.scope, this.epochOf(nowMs));
  }

  private epochOf(nowMs: number): number {
    return Math.floor(nowMs / (this.bundleTtlMs / 4));
  }

  private etag(revision: number, scope: string, epoch: number): string {
    const cached = revision === this.revision ? this.etags.get(scope) : undefined;
    if (cached && cached.epoch === epoch) return cached.etag;
    const scopeHash = createHash('sha256').update(scope).digest('base64url').slice(0, 16);
    const etag = `"r${revision}-${scopeHash}-e${epoch}"`;
    if (revision === this.revision) {
      if (this.etags.size >= BUNDLE_CACHE_LIMIT) this.etags.clear();
      this.etags.set(scope, { epoch, etag });
    }
    return etag;
  }

  /** The envelope for this scope if it is signed for the current revision and epoch (a woken fleet asks 10,000 times). */
  signedBundle(resolved: ResolvedWorkload, nowMs = Date.now()): SignedBundle | undefined {
    const cached = this.bundles.get(resolved.scope);
    return cached && cached.epoch === this.epochOf(nowMs) ? cached.bundle : undefined;
  }

  /**
   * The signed envelope for this workload's scope, signed once per (revision, scope, epoch): the
   * cached one, or a promise of it from the thread (undefined when the revision moved meanwhile).
   */
  bundleFor(
    identity: WorkloadIdentity,
    resolved: ResolvedWorkload,
    nowMs = Date.now(),
  ): SignedBundle | Promise<SignedBundle | undefined> | undefined {
    if (!this.loaded) return undefined;
    const ready = this.signedBundle(resolved, nowMs);
    if (ready) return ready;
    const epoch = this.epochOf(nowMs);
    const cacheKey = `${resolved.scope}\u0000${epoch}`;
    let signing = this.signing.get(cacheKey);
    if (!signing) {
      const revision = this.revision;
      signing = this.worker.ask({ op: 'sign', revision, scope: resolved.scope, identity, epoch }).then(
        (reply) => (reply.signedOne && revision === this.revision ? this.keep(reply.signedOne) : undefined),
        (error: Error) => {
          this.onError(error, revision);
          return undefined;
        },
      );
      this.signing.set(cacheKey, signing);
      void signing.finally(() => {
        if (this.signing.get(cacheKey) === signing) this.signing.delete(cacheKey);
      });
    }
    return signing;
  }

  close(): Promise<void> {
    return this.worker.close();
  }
}
