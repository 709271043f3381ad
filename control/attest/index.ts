// Proof verification for POST /v1/attest: the proof's `type` picks the cloud's verifier; a cloud
// the configuration does not name is refused with a message that says how to turn it on.
import { ATTESTATION_KINDS, type AttestationKind } from '../../policy/attestation.js';
import { createAwsVerifier } from './aws.js';
import { createAzureVerifier, createGcpVerifier } from './jwt.js';
import type { AttestationConfig, ProofVerifier, VerifyOutcome } from './types.js';

export interface Attestor {
  verify(proof: unknown): Promise<VerifyOutcome>;
  /** The proof's cloud as a metrics label (`unknown` for anything else). */
  kindOf(proof: unknown): AttestationKind | 'unknown';
}

function kindOf(proof: unknown): AttestationKind | 'unknown' {
  const type = typeof proof === 'object' && proof !== null ? (proof as { type?: unknown }).type : undefined;
  return ATTESTATION_KINDS.includes(type as AttestationKind) ? (type as AttestationKind) : 'unknown';
}

export function createAttestor(verifiers: readonly ProofVerifier[]): Attestor {
  const byKind = new Map(verifiers.map((verifier) => [verifier.kind, verifier]));
  return {
    kindOf,
    async verify(proof) {
      const kind = kindOf(proof);
      if (kind === 'unknown')
        return {
          ok: false,
          status: 400,
          error: `proof.type: expected one of ${ATTESTATION_KINDS.join(', ')}`,
        };
      const verifier = byKind.get(kind);
      if (!verifier)
        return {
          ok: false,
          status: 400,
          error: `this control API does not verify ${kind} proofs (add "${kind}" to its attestation configuration)`,
        };
      try {
        return await verifier.verify(proof);
      } catch {
        // A verifier throws only on a bug; the client is told nothing of it.
        return { ok: false, status: 502, error: `the ${kind} proof could not be checked` };
      }
    },
  };
}

/** The verifiers an attestation configuration names (each checks its own settings and throws on a bad one). */
export function verifiersFor(config: AttestationConfig): ProofVerifier[] {
  const verifiers: ProofVerifier[] = [];
  if (config.aws) verifiers.push(createAwsVerifier(config.aws, config.audience));
  if (config.gcp) verifiers.push(createGcpVerifier(config.gcp, config.audience));
  if (config.azure) verifiers.push(createAzureVerifier(config.azure, config.audience));
  return verifiers;
}
