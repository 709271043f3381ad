// The tokens table as both engines store it: one column list and one row mapping, so SQLite and
// PostgreSQL cannot drift apart on what a token is.
import type { AttestedPrincipal } from '../../policy/attestation.js';
import type { TokenRow, TokenScope } from './types.js';

export const TOKEN_COLUMNS =
  'id, hash, scope, name, created_at, groups, expires_at, revoked_at, last_used_at, parent_id, identity, attestation';

export interface TokenRecord {
  id: string;
  hash: string;
  scope: TokenScope;
  name: string | null;
  created_at: string;
  groups: string | null;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
  parent_id: string | null;
  identity: string | null;
  attestation: string | null;
}

export function tokenFromRecord(row: TokenRecord): TokenRow {
  return {
    id: row.id,
    hash: row.hash,
    scope: row.scope,
    name: row.name,
    createdAt: row.created_at,
    groups: row.groups === null ? null : (JSON.parse(row.groups) as string[]),
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    lastUsedAt: row.last_used_at,
    parentId: row.parent_id,
    identity: row.identity,
    attestation: row.attestation === null ? null : (JSON.parse(row.attestation) as AttestedPrincipal),
  };
}

/** Values in TOKEN_COLUMNS order. */
export function tokenValues(token: TokenRow): (string | null)[] {
  return [
    token.id,
    token.hash,
    token.scope,
    token.name,
    token.createdAt,
    token.groups ? JSON.stringify(token.groups) : null,
    token.expiresAt ?? null,
    token.revokedAt ?? null,
    token.lastUsedAt ?? null,
    token.parentId ?? null,
    token.identity ?? null,
    token.attestation ? JSON.stringify(token.attestation) : null,
  ];
}
