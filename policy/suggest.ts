// `bulkhead policy suggest`: the traffic a SmartGroup was seen attempting (its would-deny and deny
// records) turned into the allow rules that would let exactly that through. Pure: records in,
// rules out; the YAML is written by ./suggest-render.ts.
//
// What a rule is made of:
//   - one rule per destination (host or address, port, UDP or not): the methods and path globs seen,
//     identifier-like path segments (numbers, UUIDs, long hex) collapsed to `*`;
//   - S3 buckets (virtual-hosted or path-style endpoints) and Lambda functions (the invoke API) as
//     `aws: s3` / `aws: lambda` rules, so the rule names the resource, not an endpoint;
//   - a name that was resolved and never connected to: `{ host, protocol: dns }` (the lookup only);
//   - executables and native addons: `exec.allow` / `addons.allow`, by full path.
// Nothing is suggested that the set's guardrails refuse (metadata endpoints, forbidden destinations,
// broad wildcards, container sockets) or that a deny rule of the set named: those become warnings,
// as do floods (aggregate records: a pattern is no destination) and tamper attempts.
//
// Allowed traffic leaves no record, so a suggestion only knows what the current rules denied (or
// would have, in observe mode): replacing rules that were in use loses their traffic (see `--merge`).
import { describeDestination } from './diff.js';
import type { Destination, EgressPolicyDoc } from './documents.js';
import { checkGuardrails } from './guardrails.js';
import { classifyHost } from './host.js';
import type { PolicySet } from './parse.js';
import { checkPathGlob, normalizePath } from './path.js';
import type { DenyRecord } from './types.js';
import { normalizeUnixPath } from './unix.js';

export interface UsageCount {
  /** `axios@1.7.2`, or `(unknown)` when the record named no package. */
  package: string;
  requests: number;
}

interface Usage {
  /** Σ record counts. */
  requests: number;
  packages: UsageCount[];
  firstSeen: string;
  lastSeen: string;
}

export interface SuggestedRule extends Usage {
  to: Destination;
  /** How it was read from the records, when that needs saying (`40 distinct paths: collapsed`). */
  note?: string;
}

export interface SuggestedGlob extends Usage {
  glob: string;
}

export interface SuggestionWarning {
  /** What was seen: `exfil.attacker.test:80`, `*.attacker.test (flood)`. */
  destination: string;
  requests: number;
  /** Why it is not suggested. */
  reason: string;
}

export interface Suggestion {
  group: string;
  /** Records read (each may count many requests). */
  records: number;
  requests: number;
  rules: SuggestedRule[];
  exec: SuggestedGlob[];
  addons: SuggestedGlob[];
  warnings: SuggestionWarning[];
}

/** More distinct path globs than this for one destination: one prefix glob instead. */
export const MAX_PATH_GLOBS = 20;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NUMBER = /^\d+$/;
const LONG_HEX = /^(?=[a-f]*\d)(?=\d*[a-f])[0-9a-f]{12,}$/i;

/** A path segment that names one object among many (an id), not a resource type. */
export function isIdentifierSegment(segment: string): boolean {
  return NUMBER.test(segment) || UUID.test(segment) || LONG_HEX.test(segment);
}

/**
 * The glob a suggested rule carries for one observed path: normalised as the engine reads it,
 * identifier-like segments as `*` (and any `*` the path itself held, which would otherwise read as a
 * wildcard). `/v1/charges/8812/refunds` → `/v1/charges/*\/refunds`.
 */
export function pathGlobOf(path: string): string {
  const normal = normalizePath(path);
  const trailing = normal.length > 1 && normal.endsWith('/');
  const segments = normal
    .split('/')
    .slice(1)
    .filter((s, i, all) => !(trailing && i === all.length - 1 && s === ''));
  const glob = `/${segments.map((s) => (isIdentifierSegment(s) || s.includes('*') ? '*' : s)).join('/')}${trailing ? '/' : ''}`;
  return glob;
}

/** `/a/b/*` and `/a/c` → `/a/**`: the longest common leading segments of the globs, then `**`. */
function commonPrefixGlob(globs: readonly string[]): string {
  const split = globs.map((g) => g.split('/').slice(1));
  const prefix: string[] = [];
  for (let i = 0; ; i++) {
    const segment = split[0]?.[i];
    if (segment === undefined || segment === '*' || split.some((s) => s[i] !== segment || i >= s.length - 1))
      break;
    prefix.push(segment);
  }
  return `/${[...prefix, '**'].join('/')}`;
}

class UsageTally {
  requests = 0;
  private readonly packages = new Map<string, number>();
  private first = '';
  private last = '';

  add(record: DenyRecord): void {
    const count = Number.isSafeInteger(record.count) && record.count > 0 ? record.count : 1;
    this.requests += count;
    const name = record.origin?.package ?? '(unknown)';
    this.packages.set(name, (this.packages.get(name) ?? 0) + count);
    const first = record.time;
    const last = record.lastTime ?? record.time;
    if (this.first === '' || first < this.first) this.first = first;
    if (last > this.last) this.last = last;
  }

  merge(other: UsageTally): void {
    this.requests += other.requests;
    for (const [name, count] of other.packages)
      this.packages.set(name, (this.packages.get(name) ?? 0) + count);
    if (other.first !== '' && (this.first === '' || other.first < this.first)) this.first = other.first;
    if (other.last > this.last) this.last = other.last;
  }

  usage(): Usage {
    return {
      requests: this.requests,
      packages: [...this.packages]
        .map(([name, requests]) => ({ package: name, requests }))
        .sort((a, b) => b.requests - a.requests || a.package.localeCompare(b.package)),
      firstSeen: this.first,
      lastSeen: this.last,
    };
  }
}

/** What was seen going to one destination (host or address, port, transport). */
interface Observation {
  host?: string;
  ip?: string;
  port?: number;
  udp: boolean;
  /** HTTP requests seen: method → path globs. Connect-only traffic leaves this empty. */
  http: { method: string; glob: string; tally: UsageTally }[];
  /** Every record of this destination, HTTP or not. */
  tally: UsageTally;
}

interface ResourceAccumulator {
  ports: Set<number>;
  regions: Set<string>;
  methods: Set<string>;
  tally: UsageTally;
}

const S3_VIRTUAL = /^(.+?)\.s3\.(?:dualstack\.)?(?:([a-z]{2}(?:-[a-z]+)+-\d)\.)?amazonaws\.com$/;
const S3_PATH_STYLE = /^s3\.(?:dualstack\.)?(?:([a-z]{2}(?:-[a-z]+)+-\d)\.)?amazonaws\.com$/;
const LAMBDA_HOST = /^lambda\.([a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com$/;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const LAMBDA_INVOKE =
  /^\/(?:2015-03-31\/functions\/([^/]+)\/invocations|2014-11-13\/functions\/([^/]+)\/invoke-async)\/?$/;
const FUNCTION_NAME = /^[A-Za-z0-9_-]{1,140}$/;

/** The function an invoke path names (a name, or a URL-encoded ARN with an optional qualifier). */
function lambdaFunctionOf(path: string): string | undefined {
  const match = LAMBDA_INVOKE.exec(path);
  const raw = match?.[1] ?? match?.[2];
  if (raw === undefined) return undefined;
  let text: string;
  try {
    text = decodeURIComponent(raw);
  } catch {
    return undefined;
  }
  // arn:aws:lambda:eu-west-1:123456789012:function:name[:qualifier]; name:qualifier; name.
  const name = text.startsWith('arn:') ? text.split(':')[6] : text.split(':')[0];
  return name !== undefined && FUNCTION_NAME.test(name) ? name : undefined;
}

/** `host:port`, `203.0.113.7:443`, `[2001:db8::1]:443` (no port: the target alone). */
export function destinationText(o: {
  host?: string | undefined;
  ip?: string | undefined;
  port?: number | undefined;
}): string {
  const target = o.host ?? (o.ip?.includes(':') ? `[${o.ip}]` : (o.ip ?? '?'));
  return o.port === undefined ? target : `${target}:${o.port}`;
}

function hostCidr(ip: string): string {
  return ip.includes(':') ? `${ip}/128` : `${ip}/32`;
}

function sortedUnique<T>(values: Iterable<T>): T[] {
  return [...new Set(values)].sort();
}

/**
 * The allow rules, exec and addon globs that let the recorded traffic of `group` through. `set` is
 * the applied policy set: its guardrails decide what may be suggested. Records of other groups must
 * be filtered out by the caller (the control API queries by group).
 */
export function suggestPolicy(records: Iterable<DenyRecord>, set: PolicySet, group: string): Suggestion {
  const observations = new Map<string, Observation>();
  const resolvedOnly = new Map<string, UsageTally>();
  const execs = new Map<string, UsageTally>();
  const addons = new Map<string, UsageTally>();
  const sockets = new Map<string, UsageTally>();
  const warnings = new Map<string, SuggestionWarning>();
  const warn = (destination: string, requests: number, reason: string) => {
    const key = `${destination}\n${reason}`;
    const existing = warnings.get(key);
    if (existing) existing.requests += requests;
    else warnings.set(key, { destination, requests, reason });
  };
  const tallyIn = (map: Map<string, UsageTally>, key: string, record: DenyRecord) => {
    let tally = map.get(key);
    if (!tally) {
      tally = new UsageTally();
      map.set(key, tally);
    }
    tally.add(record);
  };

  let recordCount = 0;
  let requests = 0;
  for (const record of records) {
    if (record.decision !== 'deny') continue;
    recordCount++;
    const count = Number.isSafeInteger(record.count) && record.count > 0 ? record.count : 1;
    requests += count;
    const d = record.destination;
    if (record.aggregate) {
      warn(
        `${record.aggregate.pattern} (${record.kind})`,
        count,
        `a flood of ${record.aggregate.distinct.toLocaleString('en-US')}${record.aggregate.distinctCapped ? '+' : ''} distinct destinations: a pattern is not a destination; investigate it (bulkhead denies --kind ${record.kind})`,
      );
      continue;
    }
    if (record.kind === 'tamper' || record.kind === 'worker') {
      warn(record.kind, count, 'an attempt to disable or escape the shim: never allowed by a rule');
      continue;
    }
    if (/\/deny\[\d+\]$/.test(record.rule)) {
      warn(
        d.command ?? d.socket ?? destinationText(d),
        count,
        `denied by the rule ${record.rule}: an explicit deny is not overridden by a suggestion`,
      );
      continue;
    }
    if (record.kind === 'exec' && d.command) {
      tallyIn(execs, d.command, record);
      continue;
    }
    if (record.kind === 'addon' && d.command) {
      tallyIn(addons, d.command, record);
      continue;
    }
    if (record.kind === 'unix' && d.socket) {
      tallyIn(sockets, normalizeUnixPath(d.socket) ?? d.socket, record);
      continue;
    }
    const host = d.host !== undefined ? classifyHost(d.host) : undefined;
    const hostName = host && 'host' in host ? host.host : undefined;
    const ip = d.ip ?? (host && 'ip' in host ? host.ip : undefined);
    if (record.kind === 'dns') {
      if (hostName) tallyIn(resolvedOnly, hostName, record);
      continue;
    }
    if (hostName === undefined && ip === undefined) continue;
    const udp = record.kind === 'udp' || d.protocol === 'udp';
    const port = Number.isInteger(d.port) && (d.port as number) > 0 ? d.port : undefined;
    const key = `${hostName ?? `ip:${ip}`}|${port ?? ''}|${udp ? 'udp' : 'tcp'}`;
    let observation = observations.get(key);
    if (!observation) {
      observation = {
        ...(hostName !== undefined ? { host: hostName } : { ip: ip as string }),
        ...(port !== undefined ? { port } : {}),
        udp,
        http: [],
        tally: new UsageTally(),
      };
      observations.set(key, observation);
    }
    observation.tally.add(record);
    if (record.kind === 'http' && d.path !== undefined) {
      const method = (d.method ?? 'GET').toUpperCase();
      const glob = pathGlobOf(d.path);
      let entry = observation.http.find((h) => h.method === method && h.glob === glob);
      if (!entry) {
        entry = { method, glob, tally: new UsageTally() };
        observation.http.push(entry);
      }
      entry.tally.add(record);
    }
  }

  const rules: SuggestedRule[] = [];
  const buckets = new Map<string, ResourceAccumulator>();
  const functions = new Map<string, ResourceAccumulator>();
  const resource = (map: Map<string, ResourceAccumulator>, name: string) => {
    let entry = map.get(name);
    if (!entry) {
      entry = { ports: new Set(), regions: new Set(), methods: new Set(), tally: new UsageTally() };
      map.set(name, entry);
    }
    return entry;
  };
  const connectedHosts = new Set<string>();
  for (const o of observations.values()) {
    if (o.host) connectedHosts.add(o.host);
    if (!o.udp && o.host) {
      // S3, virtual-hosted: the bucket is in the name, any path.
      const virtual = S3_VIRTUAL.exec(o.host);
      if (virtual?.[1] && BUCKET.test(virtual[1])) {
        const entry = resource(buckets, virtual[1]);
        if (o.port !== undefined) entry.ports.add(o.port);
        if (virtual[2]) entry.regions.add(virtual[2]);
        for (const h of o.http) entry.methods.add(h.method);
        entry.tally.merge(o.tally);
        continue;
      }
      // S3 path-style and the Lambda invoke API: the resource is in the path. Requests that name one
      // go to its rule; whatever else went there stays a host rule. Connect-only records (no path) are
      // covered by the resource rule when there is one: a connection is decided before its path is known.
      const pathStyle = S3_PATH_STYLE.exec(o.host);
      const lambda = LAMBDA_HOST.exec(o.host);
      if ((pathStyle || lambda) && o.http.length > 0) {
        const rest: Observation['http'] = [];
        for (const h of o.http) {
          const name = pathStyle ? h.glob.split('/')[1] : lambdaFunctionOf(h.glob);
          const valid = name !== undefined && (pathStyle ? BUCKET.test(name) && name !== '*' : true);
          if (!valid) {
            rest.push(h);
            continue;
          }
          const entry = resource(pathStyle ? buckets : functions, name as string);
          if (o.port !== undefined) entry.ports.add(o.port);
          const region = (pathStyle ?? lambda)?.[1];
          if (region) entry.regions.add(region);
          if (pathStyle) entry.methods.add(h.method);
          entry.tally.merge(h.tally);
        }
        if (rest.length === 0) continue;
        o.http = rest;
      }
    }
    rules.push(networkRule(o));
  }
  for (const [name, entry] of buckets)
    rules.push({
      to: {
        aws: 's3',
        buckets: [name],
        ...(entry.regions.size > 0 ? { regions: sortedUnique(entry.regions) } : {}),
        ...(entry.ports.size > 0 ? { port: portValue(entry.ports) } : {}),
        ...(entry.methods.size > 0 ? { methods: sortedUnique(entry.methods) } : {}),
      } as Destination,
      ...entry.tally.usage(),
    });
  for (const [name, entry] of functions)
    rules.push({
      to: {
        aws: 'lambda',
        functions: [name],
        ...(entry.regions.size > 0 ? { regions: sortedUnique(entry.regions) } : {}),
        ...(entry.ports.size > 0 ? { port: portValue(entry.ports) } : {}),
      } as Destination,
      ...entry.tally.usage(),
    });
  for (const [host, tally] of resolvedOnly) {
    if (connectedHosts.has(host)) continue;
    rules.push({
      to: { host, protocol: 'dns' } as Destination,
      ...tally.usage(),
      note: 'resolved, never connected to: the lookup alone',
    });
  }
  for (const [socket, tally] of sockets)
    rules.push({ to: { unix: socket } as Destination, ...tally.usage() });

  const allowed = dropForbidden(rules, set, group, warn);
  allowed.sort(
    (a, b) => b.requests - a.requests || describeDestination(a.to).localeCompare(describeDestination(b.to)),
  );
  const globs = (map: Map<string, UsageTally>) =>
    [...map]
      .map(([glob, tally]) => ({ glob, ...tally.usage() }))
      .sort((a, b) => a.glob.localeCompare(b.glob));
  return {
    group,
    records: recordCount,
    requests,
    rules: allowed,
    exec: globs(execs),
    addons: globs(addons),
    warnings: [...warnings.values()].sort((a, b) => b.requests - a.requests),
  };
}

function portValue(ports: ReadonlySet<number>): number | number[] {
  const list = [...ports].sort((a, b) => a - b);
  return list.length === 1 ? (list[0] as number) : list;
}

/** One destination's rule: host (or the address as a /32), port, transport, the HTTP requests seen. */
function networkRule(o: Observation): SuggestedRule {
  const to: Record<string, unknown> =
    o.host !== undefined ? { host: o.host } : { cidr: hostCidr(o.ip as string) };
  if (o.port !== undefined) to.port = o.port;
  if (o.udp) to.protocol = 'udp';
  let note: string | undefined;
  if (o.http.length > 0) {
    to.methods = sortedUnique(o.http.map((h) => h.method));
    let globs = sortedUnique(o.http.map((h) => h.glob));
    const unusable = globs.filter((g) => checkPathGlob(g) !== undefined);
    if (unusable.length > 0) {
      globs = [];
      note = `a path that no rule can name as it is (${unusable[0]}): any path`;
    } else if (globs.length > MAX_PATH_GLOBS) {
      note = `${globs.length} distinct paths: one prefix`;
      globs = [commonPrefixGlob(globs)];
    }
    if (globs.length > 0 && !(globs.length === 1 && globs[0] === '/**')) to.paths = globs;
  }
  return { to: to as Destination, ...o.tally.usage(), ...(note ? { note } : {}) };
}

/**
 * Rules the set's guardrails refuse become warnings: each candidate is checked as an allow rule of
 * a policy for the group, with the set's guardrails (exactly what `policy check` will say).
 */
function dropForbidden(
  rules: SuggestedRule[],
  set: PolicySet,
  group: string,
  warn: (destination: string, requests: number, reason: string) => void,
): SuggestedRule[] {
  if (rules.length === 0) return rules;
  const candidate: EgressPolicyDoc = {
    apiVersion: 'bulkhead.dev/v1',
    kind: 'EgressPolicy',
    metadata: { name: `${group}-suggested` },
    spec: {
      appliesTo: [group],
      mode: 'observe',
      owner: 'suggestion',
      allow: rules.map((r) => ({ to: r.to })),
    },
  } as EgressPolicyDoc;
  const refused = new Map<number, string>();
  for (const error of checkGuardrails({
    groups: set.groups,
    policies: [candidate],
    guardrails: set.guardrails,
  })) {
    const match = /^spec\.allow\[(\d+)\]/.exec(error.path);
    if (match && !refused.has(Number(match[1])))
      refused.set(
        Number(match[1]),
        `${error.message}${error.guardrail ? ` [guardrail ${error.guardrail}]` : ''}`,
      );
  }
  return rules.filter((rule, i) => {
    const reason = refused.get(i);
    if (reason === undefined) return true;
    warn(suggestedTarget(rule.to), rule.requests, reason);
    return false;
  });
}

/** The destination a rule names, as a person says it: `169.254.169.254:80`, `*.x.test`, `unix:/run/a.sock`. */
function suggestedTarget(to: Destination): string {
  if (to.unix !== undefined) return `unix:${String(to.unix)}`;
  const port = typeof to.port === 'number' ? to.port : undefined;
  if (typeof to.host === 'string') return destinationText({ host: to.host, port });
  // A suggested address rule is always one address (hostCidr).
  if (typeof to.cidr === 'string') return destinationText({ ip: to.cidr.replace(/\/(32|128)$/, ''), port });
  return describeDestination(to);
}
