// The proof thread (dist/proof-thread.cjs): makes a GCP or Azure identity proof for the wrappers.
// It runs without the shim's hooks (started with the Worker class captured before they went in,
// without the application's flags), so the platform's identity endpoint is reachable for this
// request only, while the function's own requests to it stay governed by the policy.
import { parentPort, workerData } from 'node:worker_threads';
import type { AttestationKind } from '../../../policy/attestation.js';
import { makeProof } from '../client/attest.js';

const { kind, audience, timeoutMs } = workerData as {
  kind: AttestationKind;
  audience: string;
  timeoutMs: number;
};
makeProof(kind, { audience, env: process.env, timeoutMs }).then(
  (proof) => parentPort?.postMessage({ proof }),
  (error: Error) => parentPort?.postMessage({ error: error.message }),
);
