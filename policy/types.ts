// The shared vocabulary of Bulkhead. Every other folder (shim, extension, control API,
// wrappers) speaks in these types; nothing here does I/O.

/**
 * Workload identity: a flat attribute map every platform fills the same way.
 * Keys: `cloud` (aws|azure|gcp|other), `account`, `region`, `name`, `runtime`, and `tag.<key>`.
 * Platforms may add more keys (`function`, `revision`, …); selectors only see what is here.
 */
export type WorkloadIdentity = Readonly<Record<string, string>>;

export type Mode = 'enforce' | 'observe';
export type Protocol = 'tcp' | 'udp' | 'http' | 'https' | 'dns';
export type DecisionKind = 'allow' | 'deny';

/** What a hook knows at the moment it asks. Absent fields are unknown, not wildcards. */
export interface DecisionRequest {
  /** Lower-case host name if known (from the URL, SNI, or the name an IP was resolved for). */
  host?: string | undefined;
  /** IP literal (v4 dotted or v6), if known. */
  ip?: string | undefined;
  port: number;
  protocol: Protocol;
  /** TLS server name, when different from host. */
  sni?: string | undefined;
  /** HTTP method, upper-case. */
  method?: string | undefined;
  /** HTTP path without query string (the engine normalises it). */
  path?: string | undefined;
}

/**
 * The answer. Instances are shared and frozen (cached per revision): never mutate one.
 * `blocked` is what the hook acts on: true only for a deny in enforce mode.
 */
export interface Decision {
  readonly decision: DecisionKind;
  readonly mode: Mode;
  readonly blocked: boolean;
  /**
   * Deciding rule: `<policy>/allow[2]`, `<policy>/deny[0]`, `<policy>/exec[i]`, `<policy>/addons[i]`,
   * `exec:node`, `ip-literal`, `default-deny`, `default-allow` (hooks may add their own, e.g. fail-closed).
   */
  readonly rule: string;
}

/** Deny (or would-deny) forensic record, produced by shims, forwarded by extensions, stored by the control API. */
export interface DenyRecord {
  /** Unique id (UUID v4 or ULID) used for idempotent delivery. */
  id: string;
  /** ISO-8601 time of the first occurrence. */
  time: string;
  /** ISO-8601 time of the last occurrence when count > 1. */
  lastTime?: string | undefined;
  /** How many identical denies this record aggregates (>= 1). */
  count: number;
  workload: WorkloadIdentity;
  /** What was attempted. `kind` says which hook saw it. */
  kind: 'connect' | 'http' | 'dns' | 'udp' | 'exec' | 'addon' | 'worker' | 'tamper' | 'unix';
  destination: {
    host?: string | undefined;
    ip?: string | undefined;
    port?: number | undefined;
    protocol?: Protocol | undefined;
    sni?: string | undefined;
    method?: string | undefined;
    /** Path without query string. */
    path?: string | undefined;
    /** For exec/addon: the executable or addon path. */
    command?: string | undefined;
    /**
     * For unix: the socket as decided (`normalizeUnixPath`): an absolute path or `@name`. Its own
     * field, not `path`: an HTTP request over a socket (the Docker API) may carry both.
     */
    socket?: string | undefined;
  };
  decision: DecisionKind;
  mode: Mode;
  rule: string;
  revision: number;
  /** `high` for tamper attempts and fail-closed denials; `normal` otherwise. */
  severity?: 'normal' | 'high' | undefined;
  /** npm package (`name@version`) and `file:line` of the nearest application frame that started it. */
  origin?: { package?: string | undefined; file?: string | undefined; line?: number | undefined } | undefined;
  /** Platform invocation id (Lambda requestId, Azure invocationId, GCP execution id). */
  invocationId?: string | undefined;
  /** Per-sandbox sequence number assigned by the forwarder (extension / in-process client), for gap counting. */
  sandboxId?: string | undefined;
  seq?: number | undefined;
  /**
   * Present when this record counts a flood of distinct denies under one destination pattern (the
   * shim's queue overflowed): `count` denies from `time` to `lastTime`, `destination` is the first.
   * Contract §3, "Aggregates". Readers that ignore it still see a correct count.
   */
  aggregate?: DenyAggregate | undefined;
}

/** The summary of an aggregate deny record (contract §3). */
export interface DenyAggregate {
  /** `*.attacker.test`, `203.0.113.7:1024-65535`, `10.1.2.0/24:443`, `/var/run/*`, a command, or `*`. */
  pattern: string;
  /** Distinct destinations among the `count` denies (a lower bound when `distinctCapped`). */
  distinct: number;
  /** The shim stopped remembering values (a bound on its memory): `distinct` is at least this. */
  distinctCapped?: boolean | undefined;
  /** Up to 8 distinct destinations, first seen first (`name`, `name:port`, `address:port`, …). */
  sample: string[];
}

/** Body of POST /v1/reports. */
export interface ReportBatch {
  records: DenyRecord[];
}

/** Answer of POST /v1/reports (HTTP 202). */
export interface ReportResult {
  stored: number;
  duplicate: number;
  rejected: number;
  errors?: { index: number; reason: string }[];
}

/** DSSE envelope (https://github.com/secure-systems-lab/dsse). */
export interface Envelope {
  payloadType: string;
  /** base64 of the canonical JSON BundlePayload. */
  payload: string;
  signatures: { keyid: string; sig: string }[];
}

export const BUNDLE_PAYLOAD_TYPE = 'application/vnd.bulkhead.bundle+json';
export const BUNDLE_SCHEMA_VERSION = 1;

/** The decision engine for one bundle revision (`createDecider`). Every method is synchronous and cheap. */
export interface Decider {
  readonly revision: number;
  /** The mode a deny of this workload is reported under when no rule overrides it. */
  readonly mode: Mode;
  /**
   * Does any allow rule name addresses (CIDRs)? Only then can a request that its names do not allow
   * still be allowed, by the address its connection goes to.
   */
  readonly allowsAddresses: boolean;
  decide(request: DecisionRequest): Decision;
  /** DNS: may this name be resolved at all (could any allow rule ever match it)? */
  decideName(host: string): Decision;
  /** child_process: may this executable (path or basename as given) be started? */
  decideExec(file: string): Decision;
  /** process.dlopen: may this native addon be loaded? */
  decideAddon(path: string): Decision;
  /**
   * Unix-domain socket connect: may the program reach this socket? `path` is an absolute path
   * (relative ones resolved against the process's working directory first) or `@name` for a
   * Linux abstract socket (leading NUL written as `@`; in the name, bytes outside printable ASCII
   * and `\` itself written `\xNN`). Normalised lexically (`normalizeUnixPath`); unreadable input is denied.
   */
  decideUnix(path: string): Decision;
}
