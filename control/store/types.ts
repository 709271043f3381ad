// The storage interface of the control API. Two engines implement it (SQLite embedded,
// PostgreSQL shared by several replicas); the server never talks SQL itself. A store that
// cannot do something right now (database away, disk full) throws StoreUnavailableError
// (./errors.ts); any other error is a bug.

import type { AttestedPrincipal } from '../../policy/attestation.js';

export type TokenScope = 'admin' | 'workload';

export interface TokenRow {
  id: string;
  /** hex sha256 of the token's secret part. */
  hash: string;
  scope: TokenScope;
  name: string | null;
  createdAt: string;
  /** SmartGroups a workload token may act for (bundles and records of the identities they select); null: any. */
  groups?: string[] | null;
  expiresAt?: string | null;
  revokedAt?: string | null;
  /** Updated at most once a minute per token and replica. */
  lastUsedAt?: string | null;
  /** Set on a session an attestation issued: the workload token that asked for it. */
  parentId?: string | null;
  /** A session's identity (canonical `k=v,…`): every bundle and record it touches is this identity's. */
  identity?: string | null;
  /** A session's attested principal (policy/attestation.ts AttestedPrincipal). */
  attestation?: AttestedPrincipal | null;
}

export interface TokenListing extends TokenRow {
  /** Unexpired, unrevoked sessions issued to this token. */
  sessions: number;
}

/** Revocations since a sequence number: what each replica drops from its token cache. */
export interface TokenRevocations {
  /** The newest revocation's sequence number (pass it next time). */
  seq: number;
  ids: string[];
}

export interface PolicySource {
  file: string;
  text: string;
}

export interface RevisionRow {
  revision: number;
  createdAt: string;
  sources: PolicySource[];
  /** Set when this revision was made by restoring an older one. */
  restoredFrom: number | null;
  /** Free-form JSON the server stores with the revision (diff summary, author). */
  summary: unknown;
}

export interface NewRevision {
  createdAt: string;
  sources: PolicySource[];
  restoredFrom: number | null;
  summary: unknown;
  /** `summary` already serialised (an apply's diff can be megabytes): stored as given when present. */
  summaryJson?: string;
  /** `JSON.stringify(sources)` made already (on the policy thread): stored as given when present. */
  sourcesJson?: string;
}

export interface WorkloadSighting {
  /** Canonical identity string (sorted `k=v,…`): the inventory key. */
  key: string;
  identity: Record<string, string>;
  seenAt: string;
  /** Revision of the bundle the workload was answered with (200) or confirmed to hold (304). */
  revision: number;
  scope: string;
  /** The SmartGroups `scope` stands for (the scope id is a hash of their names): remembered per scope. */
  groups?: readonly string[] | undefined;
}

export interface WorkloadRow {
  key: string;
  identity: Record<string, string>;
  firstSeen: string;
  lastSeen: string;
  revision: number;
  scope: string;
  /** The SmartGroups of `scope`; undefined when no sighting has named them. */
  groups: string[] | undefined;
  /** Records that never arrived, summed over the workload's sandboxes. */
  missingRecords: number;
  /** Records whose `seq` jumped implausibly, summed over the workload's sandboxes. */
  seqAnomalies: number;
  sandboxes: number;
}

/** One page of the inventory, in key order; filters combine with AND. */
export interface WorkloadQuery {
  /** Continue after this key (exclusive). */
  after?: string | undefined;
  limit: number;
  /** The identity's `name`: exact, or a glob (`*` any run of characters, `?` one character). */
  name?: string | undefined;
  /** Only workloads whose scope's SmartGroups include this one. */
  group?: string | undefined;
  /** Only workloads holding a revision below this one (`behind`), or this one and later (`current`). */
  revision?: { below: number } | { atLeast: number } | undefined;
}

/** Workloads per stored scope: how many hold the current revision (or later) and how many an older one. */
export interface ScopeCount {
  scope: string;
  /** The scope's SmartGroups; undefined when no sighting has named them. */
  groups: string[] | undefined;
  current: number;
  behind: number;
}

/** A validated deny record ready to store, with the columns the forensic queries filter on. */
export interface DenyRow {
  id: string;
  time: string;
  timeMs: number;
  workloadKey: string;
  /** The identity's `name` attribute (the `--workload charge-*` filter), null when it has none. */
  workloadName: string | null;
  /** The platform invocation id (Lambda requestId, …): the `invocation` filter. */
  invocationId: string | null;
  /** `origin.package` as the shim sent it (`name@version`): the `package` filter. */
  originPackage: string | null;
  /** `normal` or `high`; a record without one is `normal` (DenyRecord.severity). */
  severity: string;
  /** `,group-a,group-b,` so one substring test finds a group. */
  groups: string;
  host: string | null;
  ip: string | null;
  port: number | null;
  kind: string;
  decision: string;
  mode: string;
  rule: string;
  revision: number;
  sandboxId: string | null;
  seq: number | null;
  receivedAt: string;
  /** The record as JSON, returned verbatim by queries. */
  record: string;
}

export interface InsertDeniesResult {
  stored: number;
  duplicate: number;
  /** Stored records whose `seq` jumped implausibly (store/sandbox-progress.ts); absent when none. */
  seqAnomalies?: number;
}

export interface DenyFilter {
  /** Canonical identity text (`formatIdentity`), exact. */
  workload?: string | undefined;
  /** The identity's `name`: exact, or a glob (`*` any run of characters, `?` one character). */
  workloadName?: string | undefined;
  /** Invocation id, exact. */
  invocation?: string | undefined;
  /** Origin package `name@version`, glob allowed; without `@version` every version of the name matches. */
  package?: string | undefined;
  kind?: string | undefined;
  severity?: string | undefined;
  group?: string | undefined;
  /** Host or IP, exact; `*.example.com` matches sub-domains. */
  destination?: string | undefined;
  rule?: string | undefined;
  decision?: string | undefined;
  sinceMs?: number | undefined;
  untilMs?: number | undefined;
  /** Storage position to continue from (exclusive). */
  after?: number | undefined;
  before?: number | undefined;
  order: 'asc' | 'desc';
  limit: number;
}

export interface StoredDeny {
  /** Storage position (monotonic per store): the basis of pagination cursors. */
  position: number;
  record: string;
}

/** Allow decisions of one rule under one revision, summed over a UTC day (YYYY-MM-DD). */
export interface HitRow {
  day: string;
  revision: number;
  rule: string;
  hits: number;
}

/** The hits of one rule id under one revision since a day, and the last day it had any. */
export interface HitTotal {
  revision: number;
  rule: string;
  hits: number;
  lastDay: string;
}

export interface SigningKeyRow {
  keyId: string;
  publicKeyPem: string;
  firstUsed: string;
}

export interface MetricsSnapshot {
  workloads: number;
  /** Workloads whose last fetched revision is at least the current one. */
  workloadsCurrent: number;
  missingRecords: number;
  /** Stored records whose `seq` jumped implausibly, over every sandbox. */
  seqAnomalies: number;
  denies: number;
}

export type Unsubscribe = () => void;

export interface ControlStore {
  readonly engine: 'sqlite' | 'postgres';
  /** Applies pending migrations; safe to run concurrently from several replicas. */
  migrate(): Promise<void>;
  schemaVersion(): Promise<number>;

  createToken(token: TokenRow): Promise<void>;
  findToken(id: string): Promise<TokenRow | undefined>;
  /** Tokens newest first, with their live session counts; sessions themselves only with `sessions: true`. */
  listTokens(options: { sessions: boolean; nowIso: string }): Promise<TokenListing[]>;
  /**
   * Revokes a token and every session issued to it, and records the revocation so that every
   * replica drops it (`tokenRevocations`). Answers how many rows were revoked now (0: unknown or
   * already revoked).
   */
  revokeToken(id: string, atIso: string): Promise<number>;
  /** Revocations recorded after `afterSeq` (at most `limit` ids; `seq` advances only past those returned). */
  tokenRevocations(afterSeq: number, limit: number): Promise<TokenRevocations>;
  /** Sets last use times (a later time wins). */
  touchTokens(uses: { id: string; atIso: string }[]): Promise<void>;
  /** Deletes sessions that expired before `beforeIso`; answers how many. */
  deleteExpiredSessions(beforeIso: string): Promise<number>;

  latestRevision(): Promise<RevisionRow | undefined>;
  getRevision(revision: number): Promise<RevisionRow | undefined>;
  listRevisions(limit: number): Promise<Omit<RevisionRow, 'sources'>[]>;
  /**
   * The newest revision number, cheaply. Engines shared by several processes implement it: the
   * server polls it as a backstop for lost announcements (a LISTEN connection that was down).
   */
  headRevision?(): Promise<number>;
  /** Stores revision N+1 atomically (N = current latest, 0 when none) and announces it. */
  appendRevision(revision: NewRevision): Promise<number>;
  /**
   * Called with the revision number whenever any writer (this process or, on PostgreSQL,
   * any replica) stores a new revision.
   */
  onRevision(listener: (revision: number) => void): Unsubscribe;

  /** Adds or refreshes inventory rows, and remembers the SmartGroups of scopes not seen before. */
  recordSightings(sightings: WorkloadSighting[]): Promise<void>;
  /** One page of the inventory in key order, index-backed (keyset pagination on the key). */
  listWorkloads(query: WorkloadQuery): Promise<WorkloadRow[]>;
  /** Workload counts per stored scope, against `currentRevision`: one row per scope, from an index. */
  scopeCounts(currentRevision: number): Promise<ScopeCount[]>;
  /** Inventory keys only (canonical identity texts): what an apply needs to find affected workloads. */
  listWorkloadKeys(): Promise<string[]>;

  insertDenies(rows: DenyRow[]): Promise<InsertDeniesResult>;
  queryDenies(filter: DenyFilter): Promise<StoredDeny[]>;

  /** Adds hit counts (rows with the same day, revision and rule add up). */
  addHits(rows: HitRow[]): Promise<void>;
  /** Hits per (revision, rule) on `sinceDay` (YYYY-MM-DD) and later. */
  hitTotals(sinceDay: string): Promise<HitTotal[]>;

  rememberSigningKey(key: SigningKeyRow): Promise<void>;
  listSigningKeys(): Promise<SigningKeyRow[]>;

  /** Counts for /metrics; `currentRevision` decides which workloads count as up to date. */
  metrics(currentRevision?: number): Promise<MetricsSnapshot>;
  close(): Promise<void>;
}
