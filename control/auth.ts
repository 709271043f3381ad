// Bearer tokens: `bhk_<id>_<secret>`. The id is public and finds the row; only the sha256
// of the secret is stored, and it is compared in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isStoreUnavailable } from './store/errors.js';
import type { ControlStore, TokenRow, TokenScope } from './store/types.js';

const TOKEN_PATTERN = /^bhk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const CACHE_MILLISECONDS = 30_000;
const CACHE_LIMIT = 10_000;

export const TOKEN_SCOPES: readonly TokenScope[] = ['admin', 'workload'];

export function isTokenScope(value: unknown): value is TokenScope {
  return value === 'admin' || value === 'workload';
}

function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

export interface IssuedToken {
  id: string;
  scope: TokenScope;
  /** The full bearer token: shown once, never stored. */
  token: string;
}

export async function issueToken(
  store: ControlStore,
  scope: TokenScope,
  name?: string,
): Promise<IssuedToken> {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  const row: TokenRow = {
    id,
    hash: hashSecret(secret).toString('hex'),
    scope,
    name: name ?? null,
    createdAt: new Date().toISOString(),
  };
  await store.createToken(row);
  return { id, scope, token: `bhk_${id}_${secret}` };
}

export type AuthResult =
  | { ok: true; tokenId: string; scope: TokenScope }
  | { ok: false; status: 401; error: string };

interface CachedToken {
  hash: Buffer;
  scope: TokenScope;
}

/** Verifies bearer tokens against the store, remembering rows briefly so the hot path does not hit the database. */
export class TokenVerifier {
  /** Unknown ids are remembered too (as `until` only), so a flood of made-up ids stays cheap. */
  private readonly cache = new Map<string, { entry: CachedToken | null; until: number }>();

  constructor(private readonly store: ControlStore) {}

  async verify(authorization: string | undefined): Promise<AuthResult> {
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
    const known = await this.lookup(id);
    // Compare against a dummy hash for unknown ids so both paths cost the same.
    const expected = known?.hash ?? Buffer.alloc(32);
    const equal = timingSafeEqual(presented, expected);
    if (!known || !equal) return { ok: false, status: 401, error: 'invalid token' };
    return { ok: true, tokenId: id, scope: known.scope };
  }

  private async lookup(id: string): Promise<CachedToken | null> {
    const now = Date.now();
    const cached = this.cache.get(id);
    if (cached && cached.until > now) return cached.entry;
    let row: TokenRow | undefined;
    try {
      row = await this.store.findToken(id);
    } catch (error) {
      // The database is away: a token verified before keeps working (stale-if-error) so that
      // bundles are still served from memory; one never seen cannot be checked (503).
      if (cached && isStoreUnavailable(error)) return cached.entry;
      throw error;
    }
    const entry: CachedToken | null = row ? { hash: Buffer.from(row.hash, 'hex'), scope: row.scope } : null;
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(id, { entry, until: now + CACHE_MILLISECONDS });
    return entry;
  }
}
