// BULKHEAD_ATTEST and the audience proofs name, read from the environment. No I/O and no imports
// of node:http(s): the preload's core reads them, and a process that never attests must not pay for
// loading what attesting needs (attest.ts).
import { ATTESTATION_KINDS, type AttestationKind } from '../../../policy/attestation.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** BULKHEAD_ATTEST: aws, gcp, azure; unset, `off` or `none`: no attestation. Throws on anything else. */
export function attestKind(env: Env): AttestationKind | undefined {
  const text = env.BULKHEAD_ATTEST?.trim().toLowerCase();
  if (!text || text === 'off' || text === 'none') return undefined;
  if (ATTESTATION_KINDS.includes(text as AttestationKind)) return text as AttestationKind;
  throw new TypeError(
    `BULKHEAD_ATTEST must be one of ${ATTESTATION_KINDS.join(', ')}, off; got ${JSON.stringify(text)}`,
  );
}

/** The audience proofs name: BULKHEAD_ATTEST_AUDIENCE, else the control URL's origin (what the server's `audience` should be). */
export function attestAudience(env: Env, controlUrl: string): string {
  return env.BULKHEAD_ATTEST_AUDIENCE?.trim() || new URL(controlUrl).origin;
}
