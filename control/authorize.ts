// What a verified token may act for. A workload token limited to SmartGroups fetches bundles and
// files records only for identities one of its groups selects; the refusal names the token's
// groups, never the identity's (no other group's facts in any answer).
import type { TokenGrant } from './auth.js';

/** True when the token may act for a workload in `groups` (the SmartGroups that select it). */
export function mayActFor(grant: TokenGrant | undefined, groups: readonly string[]): boolean {
  const allowed = grant?.groups;
  if (!allowed) return true;
  for (const group of groups) if (allowed.has(group)) return true;
  return false;
}

/** The 403 body for a workload outside the token's groups. */
export function outsideGroups(grant: TokenGrant): { error: string; message: string } {
  const names = [...(grant.groups ?? [])].join(', ');
  return {
    error: 'forbidden',
    message: `this token acts only for workloads that its SmartGroups (${names}) select`,
  };
}
