// What one replica knows about the current revision: the parsed policy set, and caches of
// scopes, compiled policies and signed envelopes per revision. All revision changes come
// through `advance`, fed by the store's announcements.
import { createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import {
  type CompiledPolicy,
  canonicalJson,
  compilePolicy,
  formatIdentity,
  type PolicySet,
  parseIdentity,
  parsePolicy,
  scopeOf,
  serializeEnvelope,
  signBundle,
} from '../policy/index.js';
import type { WorkloadIdentity } from '../policy/types.js';
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
  set: PolicySet;
}

export interface ResolvedWorkload {
  key: string;
  scope: string;
  groups: string[];
}

export interface SignedBundle {
  revision: number;
  scope: string;
  etag: string;
  /** The canonical envelope JSON, encoded once: every response sends these same bytes. */
  body: Buffer;
}

interface ScopeEntry {
  compiled: CompiledPolicy;
  groups: string[];
}

const IDENTITY_CACHE_LIMIT = 50_000;
const BUNDLE_CACHE_LIMIT = 10_000;

export function parseSources(sources: PolicySource[]): ReturnType<typeof parsePolicy> {
  return parsePolicy(sources);
}

export class PolicyState {
  private loaded: LoadedRevision | undefined;
  /** Resolved workloads by the raw `?workload=` text, for the current revision. */
  private byText = new Map<string, { identity: WorkloadIdentity; resolved: ResolvedWorkload }>();
  /**
   * Scope ids depend only on the SmartGroup definitions, so they survive revisions that keep
   * the groups: one map per groups fingerprint (the current and the previous are kept).
   */
  private scopeIds = new Map<string, Map<string, string>>();
  private readonly fingerprints = new WeakMap<PolicySet, string>();
  private scopes = new Map<string, ScopeEntry>();
  private bundles = new Map<string, SignedBundle>();
  private etags = new Map<string, string>();
  private pending: Promise<void> | undefined;
  private wanted = 0;
  private readonly privateKey: KeyObject;

  constructor(
    private readonly store: ControlStore,
    key: SigningKey,
    /** How long a signed bundle stays valid; envelopes are re-signed each quarter of it. */
    private readonly bundleTtlMs: number,
    private readonly onAdvance: (revision: number) => void,
    private readonly onError: (error: Error, revision: number) => void,
  ) {
    this.privateKey = createPrivateKey(key.privateKeyPem);
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
    if (latest) this.install(latest);
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
    // Give a local apply (which installs the set it already parsed) the chance to go first.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.wanted > this.revision) {
      const target = this.wanted;
      try {
        const row = (await this.store.latestRevision()) ?? (await this.store.getRevision(target));
        if (!row || row.revision <= this.revision) return;
        this.install(row);
      } catch (error) {
        this.onError(error as Error, target);
        return;
      }
    }
  }

  /** Makes `row` current if it is newer; used by the apply path with the set it already parsed. */
  install(row: RevisionRow, parsedSet?: PolicySet): void {
    if (row.revision <= this.revision) return;
    let set = parsedSet;
    if (!set) {
      const parsed = parsePolicy(row.sources);
      if (!parsed.ok) {
        this.onError(new Error(`stored revision ${row.revision} no longer parses`), row.revision);
        return;
      }
      set = parsed.set;
    }
    const previousFingerprint = this.loaded ? this.fingerprintOf(this.loaded.set) : undefined;
    this.loaded = {
      revision: row.revision,
      createdAt: row.createdAt,
      createdMs: Date.parse(row.createdAt),
      sources: row.sources,
      set,
    };
    const fingerprint = this.fingerprintOf(set);
    // Same SmartGroups: every workload keeps its scope and groups, so the parsed texts stay valid.
    if (fingerprint !== previousFingerprint) this.byText = new Map();
    for (const key of this.scopeIds.keys()) {
      if (key !== fingerprint && this.scopeIds.size > 1) this.scopeIds.delete(key);
    }
    this.scopes = new Map();
    this.bundles = new Map();
    this.etags = new Map();
    this.onAdvance(row.revision);
  }

  private fingerprintOf(set: PolicySet): string {
    let fingerprint = this.fingerprints.get(set);
    if (fingerprint === undefined) {
      fingerprint = canonicalJson(set.groups.map((g) => [g.metadata.name, g.spec.match]));
      this.fingerprints.set(set, fingerprint);
    }
    return fingerprint;
  }

  /** `scopeOf`, remembered per SmartGroup definitions; `key` is the canonical identity text. */
  scopeIn(set: PolicySet, identity: WorkloadIdentity, key = formatIdentity(identity)): string {
    const fingerprint = this.fingerprintOf(set);
    let scopes = this.scopeIds.get(fingerprint);
    if (!scopes) {
      scopes = new Map();
      this.scopeIds.set(fingerprint, scopes);
    }
    let scope = scopes.get(key);
    if (scope === undefined) {
      scope = scopeOf(set, identity);
      if (scopes.size >= IDENTITY_CACHE_LIMIT) scopes.clear();
      scopes.set(key, scope);
    }
    return scope;
  }

  /** Scope and SmartGroups of a workload under the current revision. */
  resolve(identity: WorkloadIdentity, key = formatIdentity(identity)): ResolvedWorkload | undefined {
    const loaded = this.loaded;
    if (!loaded) return undefined;
    const scope = this.scopeIn(loaded.set, identity, key);
    return { key, scope, groups: this.scopeEntry(loaded, scope, identity).groups };
  }

  /**
   * Parses and resolves the `?workload=` text, remembered per text for the current revision so a
   * fleet waking on a new revision costs a map lookup each. Throws TypeError on a malformed identity.
   */
  resolveText(text: string): { identity: WorkloadIdentity; resolved: ResolvedWorkload | undefined } {
    const cached = this.byText.get(text);
    if (cached) return cached;
    const identity = parseIdentity(text);
    const resolved = this.resolve(identity);
    if (resolved) {
      if (this.byText.size >= IDENTITY_CACHE_LIMIT) this.byText.clear();
      this.byText.set(text, { identity, resolved });
    }
    return { identity, resolved };
  }

  private scopeEntry(loaded: LoadedRevision, scope: string, identity: WorkloadIdentity): ScopeEntry {
    let entry = this.scopes.get(scope);
    if (!entry) {
      const compiled = compilePolicy(loaded.set, identity);
      entry = { compiled, groups: compiled.scope.groups.map((g) => g.name) };
      this.scopes.set(scope, entry);
    }
    return entry;
  }

  /** ETag of the envelope a workload would get now, without signing anything. */
  etagFor(resolved: ResolvedWorkload, nowMs = Date.now()): string {
    return this.etag(this.revision, resolved.scope, this.epochOf(nowMs));
  }

  private epochOf(nowMs: number): number {
    return Math.floor(nowMs / (this.bundleTtlMs / 4));
  }

  private etag(revision: number, scope: string, epoch: number): string {
    const cacheKey = `${revision}\u0000${scope}\u0000${epoch}`;
    let etag = this.etags.get(cacheKey);
    if (etag === undefined) {
      const scopeHash = createHash('sha256').update(scope).digest('base64url').slice(0, 16);
      etag = `"r${revision}-${scopeHash}-e${epoch}"`;
      if (this.etags.size >= BUNDLE_CACHE_LIMIT) this.etags.clear();
      this.etags.set(cacheKey, etag);
    }
    return etag;
  }

  /** The signed envelope for this workload's scope; signed once per (revision, scope, epoch). */
  bundleFor(
    identity: WorkloadIdentity,
    resolved: ResolvedWorkload,
    nowMs = Date.now(),
  ): SignedBundle | undefined {
    const loaded = this.loaded;
    if (!loaded) return undefined;
    const epoch = this.epochOf(nowMs);
    const cacheKey = `${resolved.scope}\u0000${epoch}`;
    const cached = this.bundles.get(cacheKey);
    if (cached) return cached;
    const entry = this.scopeEntry(loaded, resolved.scope, identity);
    // Deterministic times: every replica signs byte-identical envelopes for the same epoch.
    const epochStartMs = epoch * (this.bundleTtlMs / 4);
    const issuedAt = new Date(
      Math.max(epochStartMs, Number.isFinite(loaded.createdMs) ? loaded.createdMs : 0),
    );
    const expiresAt = new Date(epochStartMs + this.bundleTtlMs);
    const envelope = signBundle(
      { policy: entry.compiled, revision: loaded.revision, issuedAt, expiresAt },
      this.privateKey,
    );
    const bundle: SignedBundle = {
      revision: loaded.revision,
      scope: resolved.scope,
      etag: this.etag(loaded.revision, resolved.scope, epoch),
      body: Buffer.from(serializeEnvelope(envelope), 'utf8'),
    };
    if (this.bundles.size >= BUNDLE_CACHE_LIMIT) this.bundles.clear();
    this.bundles.set(cacheKey, bundle);
    return bundle;
  }
}
