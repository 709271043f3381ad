// The main thread's side of the proof thread (proof-thread.ts): one short-lived thread per proof,
// started with the Worker class as it was when this module loaded — before the hooks replaced it.
// The core decides the cloud and the audience from its own configuration: the function's code may
// call it, and must get nothing but a proof for this control API.
import * as workerThreads from 'node:worker_threads';
import type { AttestationKind, AttestationProof } from '../../../policy/attestation.js';

const OriginalWorker = workerThreads.Worker;

export function proveInThread(
  file: string,
  kind: AttestationKind,
  audience: string,
  timeoutMs: number,
): Promise<AttestationProof> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const worker = new OriginalWorker(file, {
      workerData: { kind, audience, timeoutMs },
      execArgv: [],
      stdin: false,
      env: workerThreads.SHARE_ENV,
    });
    const finish = (outcome: { proof?: AttestationProof; error?: string }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      if (outcome.proof) resolve(outcome.proof);
      else reject(new Error(outcome.error ?? 'the proof thread ended without a proof'));
    };
    // The thread's start (~20 ms) on top of the proof's own bound.
    const timer = setTimeout(
      () => finish({ error: `no proof within ${timeoutMs + 1000} ms` }),
      timeoutMs + 1000,
    );
    timer.unref();
    worker.once('message', (message: { proof?: AttestationProof; error?: string }) => finish(message));
    worker.once('error', (error) => finish({ error: error.message }));
    worker.once('exit', () => finish({}));
  });
}
