// What a workload sends as `Authorization` to the control API: the interface every sender takes,
// and the plain workload token. No I/O and no imports of node:http(s): the preload's record sink
// takes it, and a process that never reports must not pay for loading them
// (attested-credentials.ts is the attesting kind).
import type { WorkloadIdentity } from '../../../policy/types.js';

export interface ControlCredentials {
  /** The `Authorization` value when none has to be asked for first (no attestation due), else undefined. */
  current(): string | undefined;
  /** The `Authorization` value to send now; attests first when a session is due (bounded by `timeoutMs`). */
  authorization(timeoutMs?: number): Promise<string>;
  /** The control API answered 401 to `authorization`: a session is dropped (the next call attests again). */
  refused(authorization: string): void;
  /** The identity bundles are scoped to: the attested one once a session holds, else the claimed one. */
  identity(): WorkloadIdentity;
}

/** A workload token as it is. */
export function tokenCredentials(token: string, identity: WorkloadIdentity): ControlCredentials {
  checkToken(token);
  const header = `Bearer ${token}`;
  return {
    current: () => header,
    authorization: async () => header,
    refused: () => {},
    identity: () => identity,
  };
}

export function checkToken(token: string): void {
  if (typeof token !== 'string' || token.length === 0 || /[\r\n]/.test(token))
    throw new TypeError('control credentials: token must be a non-empty single-line string');
}
