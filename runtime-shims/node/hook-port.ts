// What a hook may ask of the shim core, and nothing more: decide, record, and say which revision
// decided; plus what installing a hook needs (its entry in the coverage manifest, the log, the
// settings a child or worker inherits). The core implements it; the bundle's lifecycle, the record
// queue and the public API stay behind it.
import type { Decision, DecisionRequest, DenyRecord, Protocol } from '../../policy/types.js';
import type { ShimConfig } from './config.js';

export interface HookPort {
  // ---- the bundle in force
  /** Revision that decides now; -1 while none is held (the fail mode governs). Named in every denial. */
  readonly revision: number;
  /** Could a CIDR rule allow an address a request's names do not? (Then decide once connected.) */
  readonly allowsAddresses: boolean;
  /** Does any rule allow a Unix socket? (HTTP over one is decided at its connect.) */
  readonly allowsUnixSockets: boolean;

  // ---- decisions
  decideConnect(
    address: string,
    port: number,
    protocol: Protocol,
    claimedHost: unknown,
    sni: unknown,
  ): Decision;
  decideRequest(request: DecisionRequest): Decision;
  decideName(host: string): Decision;
  decideExec(file: string): Decision;
  decideAddon(path: string): Decision;
  decideUnix(socket: string): Decision;
  /** Before a connect: could it end in a deny? (Only then is the caller's stack kept.) */
  mayDeny(host: unknown, port: unknown): boolean;
  /** The refusal to act on while a builtin the shim relies on is replaced; undefined when all are intact. */
  tampered(): Decision | undefined;
  /** Remember the addresses a name resolved to (answers of this process's own queries). */
  bindNames(host: string, addresses: readonly unknown[]): void;
  namesOf(ip: string): readonly string[] | undefined;

  // ---- records
  report(
    kind: DenyRecord['kind'],
    decision: Decision,
    destination: DenyRecord['destination'],
    severity?: 'high',
    startedAt?: { stack?: unknown },
  ): void;
  tamper(what: string): void;

  // ---- installing hooks
  /** Hook name → installed (the coverage manifest). */
  readonly hooks: Record<string, boolean>;
  /** Hook name → is it still the one in force? */
  readonly hookChecks: Record<string, () => boolean>;
  readonly config: Pick<ShimConfig, 'propagate' | 'runtimeDir'>;
  /** The standalone preload, injected into Node children and workers. */
  readonly registerPath: string | undefined;
  /** The Node binary's real path (a `node` child is recognised however it is spawned). */
  readonly execRealPath: string;
  log(line: string): void;
}
