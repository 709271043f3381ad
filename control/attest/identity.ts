// The identity an attested session is pinned to: what the workload claims, with every attribute
// the proof vouches for laid over it. A claim that disagrees with the proof is refused rather than
// overwritten: a workload that thinks it is someone else is misconfigured or lying.
import { ATTESTED_ATTRIBUTE, type AttestedPrincipal } from '../../policy/attestation.js';
import type { WorkloadIdentity } from '../../policy/types.js';

export type MergeOutcome =
  | { ok: true; identity: WorkloadIdentity }
  | { ok: false; attribute: string; claimed: string; attested: string };

export function attestedIdentity(claimed: WorkloadIdentity, principal: AttestedPrincipal): MergeOutcome {
  const vouched: Record<string, string> = { ...principal.attributes, [ATTESTED_ATTRIBUTE]: principal.kind };
  for (const [attribute, value] of Object.entries(vouched)) {
    const claim = claimed[attribute];
    if (claim !== undefined && claim !== value)
      return { ok: false, attribute, claimed: claim, attested: value };
  }
  return { ok: true, identity: Object.freeze({ ...claimed, ...vouched }) };
}
