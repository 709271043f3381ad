// Bearer tokens: `bhk_<id>_<secret>`. The id is public and finds the row; only the sha256
// of the secret is stored, and it is compared in constant time. A token may be limited to
// SmartGroups, may expire, may be revoked (every replica drops it within a second: each polls the
// store's revocation log), and may be a session an attestation issued, pinned to one identity.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AttestedPrincipal } from '../policy/attestation.js';
import { parseIdentity } from '../policy/identity.js';
import type { WorkloadIdentity } from '../policy/types.js';
import { isStoreUnavailable } from './store/errors.js';
import type { ControlStore, TokenRow, TokenScope } from './store/types.js';

const TOKEN_PATTERN = /^bhk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const CACHE_MILLISECONDS = 30_000;
const CACHE_LIMIT = 10_000;
/** How often each replica reads the revocation log: revocations take effect within this (plus a query). */
export const REVOCATION_POLL_MS = 500;
/** Last-use times reach the store at most this often per replica. */
const LAST_USE_FLUSH_MS = 60_000;
const REVOKED_REMEMBERED = 100_000;

export const TOKEN_SCOPES: readonly TokenScope[] = ['admin', 'workload'];

/** SmartGroup names as the policy schema allows them (DNS-label-like). */
const GROUP_NAME = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;
export const MAX_TOKEN_GROUPS = 64;

export function isTokenScope(value: unknown): value is TokenScope {
  return value === 'admin' || value === 'workload';
}

/** The problem with a list of token groups, or undefined when it is fine. */
export function tokenGroupsProblem(groups: readonly string[]): string | undefined {
  if (groups.length > MAX_TOKEN_GROUPS) return `at most ${MAX_TOKEN_GROUPS} groups per token`;
  for (const group of groups)
    if (!GROUP_NAME.test(group))
      return `${JSON.stringify(group)} is not a SmartGroup name (lower-case letters, digits, '-' and '.')`;
  return undefined;
}

function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

export interface IssuedToken {
  id: string;
  scope: TokenScope;
  /** The full bearer token: shown once, never stored. */
  token: string;
  name: string | null;
  groups: string[] | null;
  expiresAt: string | null;
}

export interface IssueOptions {
  /** SmartGroups a workload token may act for (absent: any workload). */
  groups?: readonly string[] | undefined;
  expiresAt?: Date | undefined;
  /** Sessions: the workload token that attested, the identity pinned, who the proof said. */
  parentId?: string | undefined;
  identity?: string | undefined;
  attestation?: AttestedPrincipal | undefined;
}

export async function issueToken(
  store: ControlStore,
  scope: TokenScope,
  name?: string,
  options: IssueOptions = {},
): Promise<IssuedToken> {
  if (options.groups && scope !== 'workload')
    throw new TypeError('only workload tokens are limited to groups');
  const groupProblem = options.groups && tokenGroupsProblem(options.groups);
  if (groupProblem) throw new TypeError(groupProblem);
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  const groups = options.groups ? [...new Set(options.groups)].sort() : null;
  const expiresAt = options.expiresAt?.toISOString() ?? null;
  const row: TokenRow = {
    id,
    hash: hashSecret(secret).toString('hex'),
    scope,
    name: name ?? null,
    createdAt: new Date().toISOString(),
    groups,
    expiresAt,
    parentId: options.parentId ?? null,
    identity: options.identity ?? null,
    attestation: options.attestation ?? null,
  };
  await store.createToken(row);
  return { id, scope, token: `bhk_${id}_${secret}`, name: row.name, groups, expiresAt };
}

/** What a verified token may do. */
export interface TokenGrant {
  tokenId: string;
  scope: TokenScope;
  /** SmartGroups it may act for; null: any. */
  groups: ReadonlySet<string> | null;
  /** A session's identity: every bundle and record of this token is this identity's. */
  pinned: { text: string; identity: WorkloadIdentity } | null;
  /** The token limits are counted against: the workload token a session was issued to, else the token. */
  rootId: string;
  expiresAtMs: number | null;
}

export type AuthResult = { ok: true; grant: TokenGrant } | { ok: false; status: 401; error: string };

interface CachedToken {
  hash: Buffer;
  grant: TokenGrant;
  parentId: string | null;
  revoked: boolean;
}

function grantOf(row: TokenRow): TokenGrant {
  let pinned: TokenGrant['pinned'] = null;
  if (row.identity) pinned = { text: row.identity, identity: parseIdentity(row.identity) };
  return {
    tokenId: row.id,
    scope: row.scope,
    groups: row.groups ? new Set(row.groups) : null,
    pinned,
    rootId: row.parentId ?? row.id,
    expiresAtMs: row.expiresAt ? Date.parse(row.expiresAt) : null,
  };
}

/**
 * Verifies bearer tokens against the store, remembering rows briefly so the hot path does not hit
 * the database, and dropping what the revocation log names (`start()` polls it).
 */
export class TokenVerifier {
  /** Unknown ids are remembered too (as `until` only), so a flood of made-up ids stays cheap. */
  private readonly cache = new Map<string, { entry: CachedToken | null; until: number }>();
  /** Ids revoked since this replica started (tokens and their sessions): parked requests check it. */
  private readonly revoked = new Set<string>();
  private readonly lastUse = new Map<string, number>();
  private revocationSeq = -1;
  private timers: NodeJS.Timeout[] = [];
  private polling = false;

  constructor(private readonly store: ControlStore) {}

  /** Starts reading the revocation log and writing last-use times. */
  start(): void {
    if (this.timers.length > 0) return;
    const poll = setInterval(() => void this.pollRevocations(), REVOCATION_POLL_MS);
    const flush = setInterval(() => void this.flushLastUse(), LAST_USE_FLUSH_MS);
    poll.unref();
    flush.unref();
    this.timers = [poll, flush];
    void this.pollRevocations();
  }

  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    await this.flushLastUse();
  }

  async verify(authorization: string | undefined, nowMs = Date.now()): Promise<AuthResult> {
    if (authorization === undefined || authorization === '') {
      return { ok: false, status: 401, error: 'missing Authorization header (expected: Bearer <token>)' };
    }
    const match = /^Bearer ([^\s]+)$/i.exec(authorization.trim());
    const parts = match?.[1] ? TOKEN_PATTERN.exec(match[1]) : null;
    if (!parts?.[1] || !parts[2]) {
      return { ok: false, status: 401, error: 'malformed bearer token' };
    }
    const id = parts[1];
    const presented = hashSecret(parts[2]);
    const known = await this.lookup(id, nowMs);
    // Compare against a dummy hash for unknown ids so both paths cost the same.
    const expected = known?.hash ?? Buffer.alloc(32);
    const equal = timingSafeEqual(presented, expected);
    if (!known || !equal) return { ok: false, status: 401, error: 'invalid token' };
    // Only the holder of the secret learns why a real token no longer works.
    if (known.revoked || this.revoked.has(id)) return { ok: false, status: 401, error: 'token revoked' };
    const expires = known.grant.expiresAtMs;
    if (expires !== null && nowMs >= expires) {
      return {
        ok: false,
        status: 401,
        error: known.parentId ? 'session expired: attest again' : 'token expired',
      };
    }
    this.lastUse.set(id, nowMs);
    if (known.parentId) this.lastUse.set(known.parentId, nowMs);
    return { ok: true, grant: known.grant };
  }

  /** True when the token was revoked or has expired since it was verified (parked long-polls ask before answering). */
  noLongerValid(grant: TokenGrant, nowMs = Date.now()): boolean {
    if (this.revoked.has(grant.tokenId)) return true;
    return grant.expiresAtMs !== null && nowMs >= grant.expiresAtMs;
  }

  private async lookup(id: string, nowMs: number): Promise<CachedToken | null> {
    const cached = this.cache.get(id);
    if (cached && cached.until > nowMs) return cached.entry;
    let row: TokenRow | undefined;
    try {
      row = await this.store.findToken(id);
    } catch (error) {
      // The database is away: a token verified before keeps working (stale-if-error) so that
      // bundles are still served from memory; one never seen cannot be checked (503).
      if (cached && isStoreUnavailable(error)) return cached.entry;
      throw error;
    }
    const entry: CachedToken | null = row
      ? {
          hash: Buffer.from(row.hash, 'hex'),
          grant: grantOf(row),
          parentId: row.parentId ?? null,
          revoked: row.revokedAt !== null && row.revokedAt !== undefined,
        }
      : null;
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(id, { entry, until: nowMs + CACHE_MILLISECONDS });
    return entry;
  }

  /** Reads revocations recorded since the last poll (by any replica or the CLI) and forgets those tokens. */
  async pollRevocations(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      for (;;) {
        const { seq, ids } = await this.store.tokenRevocations(Math.max(0, this.revocationSeq), 1000);
        // The first read only learns where the log stands: nothing is cached yet.
        if (this.revocationSeq >= 0) for (const id of ids) this.forget(id);
        this.revocationSeq = seq;
        if (ids.length < 1000) break;
      }
    } catch {
      // The database is away: revocations resume with it (documented in docs/identity.md).
    } finally {
      this.polling = false;
    }
  }

  private forget(id: string): void {
    if (this.revoked.size >= REVOKED_REMEMBERED) this.revoked.clear();
    this.revoked.add(id);
    this.cache.delete(id);
    // Sessions issued to it were revoked with it.
    for (const [key, value] of this.cache) {
      if (value.entry?.parentId === id) {
        this.revoked.add(key);
        this.cache.delete(key);
      }
    }
  }

  private async flushLastUse(): Promise<void> {
    if (this.lastUse.size === 0) return;
    const uses = [...this.lastUse].map(([id, ms]) => ({ id, atIso: new Date(ms).toISOString() }));
    this.lastUse.clear();
    try {
      await this.store.touchTokens(uses);
    } catch {
      // Last use is a convenience: lost while the database is away.
    }
  }
}
