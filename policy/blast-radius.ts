// Blast radius: how much a SmartGroup (or a workload) could reach if it were compromised, as one
// number computed from the allow rules that govern it. No I/O. docs/blast-radius.md explains it.
//
// Scoring model
// - What governs the group or workload blocks nothing (observe mode, an unselected workload under
//   `allow` or `observe`, or an allow rule that names no destination at all): unbounded, and the
//   score is BLAST_RADIUS_CEILING.
// - Otherwise every allow rule names targets: host patterns, CIDRs, cloud resources (S3 buckets,
//   Lambda functions, other AWS services, east-west SmartGroups) and Unix sockets. Each distinct
//   target has a breadth (exact host 1, `*.domain` 100, broader than a registrable domain 10,000;
//   CIDR 2^(min(host bits, 40) / 2); bucket or function 1, function glob 100, whole AWS service 10;
//   socket 1, socket glob 100) and facts merged over the rules that name it and every target it
//   covers: the union of their ports, the least restricted L7 (methods/paths), the highest label.
//   weight(target) = breadth × (1 + log2(ports; 65,536 when any)) × (0.5 when L7 restricts, else 1)
//   × sensitivity (low 0.5, normal 1, high 4, critical 10).
// - Targets of one kind form a tree by coverage (`*.example.com` covers `api.example.com`, a /16
//   covers its /24s). A target counts the larger of its own weight and the sum of what it covers:
//   value(t) = max(weight(t), Σ value(children)). The score is ceil(Σ value(roots)), at most the ceiling.
// - Deny rules, protocols, regions and exec/addon rules do not lower the score: it is an upper
//   bound on what allow rules open, not a simulation of the decision engine.
// Monotone: adding an allow rule, widening a rule's ports, dropping its methods or paths, raising
// its label or switching to observe never lowers the score; widening a host or CIDR onto a wider
// pattern never lowers it while each named pattern outweighs the named patterns directly below it
// (docs/blast-radius.md: the limit, and why no score of this shape can avoid it).
import { type Cidr, formatCidr, parseCidr } from './cidr.js';
import {
  groupsSelecting,
  policiesSelecting,
  type UnselectedDefault,
  unselectedDefaultOf,
} from './compile.js';
import { type Destination, type EgressPolicyDoc, parseRuleUrl } from './documents.js';
import { type HostPattern, isBroaderThanRegistrable, parseHostPattern } from './host.js';
import { formatIdentity, identityGlobMatches } from './identity.js';
import type { PolicySet } from './parse.js';
import { asList } from './schema-kit.js';
import type { WorkloadIdentity } from './types.js';
import { compileUnixPattern } from './unix.js';

/** The score of what blocks nothing; every bounded score is capped at it too, so it is never exceeded. */
export const BLAST_RADIUS_CEILING = 1_000_000_000;

export const SENSITIVITY_WEIGHTS = { low: 0.5, normal: 1, high: 4, critical: 10 } as const;
export type Sensitivity = keyof typeof SENSITIVITY_WEIGHTS;

export const BREADTH = {
  exactHost: 1,
  /** A host pattern with an internal one-label `*` (`b.s3.*.amazonaws.com`). */
  innerWildcardHost: 10,
  wildcardHost: 100,
  broaderThanRegistrable: 10_000,
  exactResource: 1,
  resourceGlob: 100,
  awsService: 10,
  exactSocket: 1,
  socketGlob: 100,
} as const;

/** Host bits above this count as this many: a /0 of IPv6 is not 2^64 times a /64. */
const MAX_CIDR_HOST_BITS = 40;
const ALL_PORTS = 65_536;
const L7_RESTRICTED_FACTOR = 0.5;

export type BlastMode = 'enforce' | 'observe' | 'allow';

export interface Reach {
  /** Distinct exact host names. */
  hosts: number;
  /** Distinct host wildcards (`*.example.com`, `*`). */
  wildcardDomains: number;
  /** IP addresses in the union of the CIDRs (IPv4 and IPv6 together). */
  addresses: number;
  /** `any` when a rule leaves ports open, else the distinct ports allowed (sockets have none). */
  ports: 'any' | number;
  /** Distinct S3 buckets, Lambda functions (or globs), other AWS services and east-west groups' functions. */
  cloudResources: number;
  /** Distinct Unix-socket patterns. */
  unixSockets: number;
  /** Targets labelled `high` or `critical`. */
  sensitive: number;
}

interface RadiusCore {
  score: number;
  unbounded: boolean;
  mode: BlastMode;
  /** Why the score is the ceiling (unbounded only). */
  reason?: string;
  reach: Reach;
}

export interface GroupRadius extends RadiusCore {
  group: string;
  /** The EgressPolicies whose `appliesTo` names the group. */
  policies: string[];
}

export interface WorkloadRadius extends RadiusCore {
  /** Canonical identity text (`formatIdentity`). */
  workload: string;
  identity: Record<string, string>;
  /** The SmartGroups that select it. */
  groups: string[];
}

export interface BlastRadiusReport {
  groups: GroupRadius[];
  workloads: WorkloadRadius[];
}

export interface BlastRadiusOptions {
  workloads?: readonly WorkloadIdentity[];
  /** Overrides the Guardrails' `unselectedWorkloads`, as for compilePolicy. */
  unselected?: UnselectedDefault;
}

type Kind = 'host' | 'cidr' | 'cloud' | 'unix';

/** What the rules naming one target allow there. */
interface Facts {
  /** Sorted disjoint inclusive ranges, or `any`; `none` for sockets (no port applies). */
  ports: 'any' | 'none' | [number, number][];
  l7Restricted: boolean;
  sensitivity: number;
}

interface Target {
  kind: Kind;
  /** `host:*.example.com`, `cidr:10.0.0.0/8`, `lambda:ledger-*`, `s3:receipts`, `aws:dynamodb`, `unix:/run/a.sock`. */
  key: string;
  breadth: number;
  /** Names more than one thing: a host wildcard, a CIDR wider than one address, a glob, a whole service. */
  wildcard: boolean;
  /** Addresses and prefix length, for CIDRs. */
  addresses?: number;
  prefixLength?: number;
  /**
   * The keys of the targets that could cover this one, nearest first (hosts, CIDRs). `named` says
   * which prefix lengths any CIDR of the scope has, so that only those are tried.
   */
  coverers?: (named: ReadonlySet<number>) => string[];
  /** For globs: does it match this exact name (the key after the prefix)? */
  matches?: (name: string) => boolean;
  /** Key prefix up to and including the `:`: globs only cover exact names of the same prefix. */
  prefix: string;
}

interface Node {
  target: Target;
  own: Facts;
  children: Node[];
}

function mergePorts(a: Facts['ports'], b: Facts['ports']): Facts['ports'] {
  if (a === 'any' || b === 'any') return 'any';
  if (a === 'none') return b;
  if (b === 'none') return a;
  const all = [...a, ...b].sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  const out: [number, number][] = [];
  for (const [from, to] of all) {
    const last = out[out.length - 1];
    if (last && from <= last[1] + 1) last[1] = Math.max(last[1], to);
    else out.push([from, to]);
  }
  return out;
}

function mergeFacts(a: Facts, b: Facts): Facts {
  return {
    ports: mergePorts(a.ports, b.ports),
    l7Restricted: a.l7Restricted && b.l7Restricted,
    sensitivity: Math.max(a.sensitivity, b.sensitivity),
  };
}

function portCount(ports: Facts['ports']): number {
  if (ports === 'any') return ALL_PORTS;
  if (ports === 'none') return 1;
  return ports.reduce((sum, [from, to]) => sum + to - from + 1, 0);
}

function factorOf(facts: Facts): number {
  return (
    (1 + Math.log2(portCount(facts.ports))) *
    (facts.l7Restricted ? L7_RESTRICTED_FACTOR : 1) *
    facts.sensitivity
  );
}

function hostTarget(pattern: HostPattern): Target {
  const breadth = isBroaderThanRegistrable(pattern)
    ? BREADTH.broaderThanRegistrable
    : pattern.subtree
      ? BREADTH.wildcardHost
      : pattern.labels.includes('*')
        ? BREADTH.innerWildcardHost
        : BREADTH.exactHost;
  const { labels } = pattern;
  return {
    kind: 'host',
    key: `host:${pattern.text}`,
    prefix: 'host:',
    breadth,
    wildcard: pattern.subtree || labels.includes('*'),
    // `*.` of every strictly shorter suffix: `*.example.com`, `*.com`, `*` for `api.example.com`
    // and for `*.api.example.com` alike (policies cannot write an inner `*`).
    coverers: () => {
      const out: string[] = [];
      for (let n = labels.length - 1; n >= 0; n--)
        out.push(n === 0 ? 'host:*' : `host:*.${labels.slice(0, n).reverse().join('.')}`);
      return out;
    },
  };
}

function maskedCidr(cidr: Cidr, prefix: number): Cidr {
  const bytes = new Uint8Array(cidr.bytes);
  for (let bit = prefix; bit < bytes.length * 8; bit++)
    bytes[bit >> 3] = (bytes[bit >> 3] as number) & ~(1 << (7 - (bit & 7)));
  return { bytes, prefix };
}

function cidrTarget(cidr: Cidr): Target {
  const hostBits = cidr.bytes.length * 8 - cidr.prefix;
  return {
    kind: 'cidr',
    key: `cidr:${formatCidr(cidr)}`,
    prefix: 'cidr:',
    breadth: 2 ** (Math.min(hostBits, MAX_CIDR_HOST_BITS) / 2),
    addresses: 2 ** hostBits,
    prefixLength: cidr.prefix,
    wildcard: hostBits > 0,
    coverers: (named) => {
      const out: string[] = [];
      for (let p = cidr.prefix - 1; p >= 0; p--)
        if (named.has(p)) out.push(`cidr:${formatCidr(maskedCidr(cidr, p))}`);
      return out;
    },
  };
}

/** `lambda:ledger-*` covers `lambda:ledger-post`; globs never cover one another (globs need not nest). */
function globTarget(kind: 'cloud' | 'unix', prefix: string, name: string): Target {
  const glob = name.includes('*');
  const exact = kind === 'unix' ? BREADTH.exactSocket : BREADTH.exactResource;
  const wide = kind === 'unix' ? BREADTH.socketGlob : BREADTH.resourceGlob;
  const target: Target = {
    kind,
    key: `${prefix}:${name}`,
    prefix: `${prefix}:`,
    breadth: glob ? wide : exact,
    wildcard: glob,
  };
  if (glob)
    target.matches =
      kind === 'unix' ? compileUnixPattern(name) : (value: string) => identityGlobMatches(name, value);
  return target;
}

function serviceTarget(service: string): Target {
  return {
    kind: 'cloud',
    key: `aws:${service}`,
    prefix: 'aws:',
    breadth: BREADTH.awsService,
    wildcard: true,
  };
}

/** The targets one allow rule names; `undefined` when it names none (it allows every destination). */
function targetsOf(to: Destination, set: PolicySet): Target[] | undefined {
  if (to.unix !== undefined) return asList(to.unix).map((p) => globTarget('unix', 'unix', p));
  if (to.group !== undefined) {
    const group = set.groups.find((g) => g.metadata.name === to.group);
    return asList(group?.spec.match.name).map((fn) => globTarget('cloud', 'lambda', fn));
  }
  if (to.aws !== undefined) {
    if (to.aws === 's3') return (to.buckets ?? []).map((b) => globTarget('cloud', 's3', b));
    if (to.aws === 'lambda') return (to.functions ?? []).map((fn) => globTarget('cloud', 'lambda', fn));
    return [serviceTarget(to.aws)];
  }
  const targets: Target[] = [];
  const hostTexts = [
    ...asList(to.host),
    ...asList(to.url).flatMap((text) => {
      const url = parseRuleUrl(text);
      return 'message' in url ? [] : [url.host];
    }),
  ];
  for (const text of hostTexts) {
    const parsed = parseHostPattern(text);
    if (parsed.ok) targets.push(hostTarget(parsed.pattern));
  }
  for (const text of asList(to.cidr)) {
    const parsed = parseCidr(text);
    if (parsed.ok) targets.push(cidrTarget(parsed.cidr));
  }
  return targets.length > 0 ? targets : undefined;
}

function factsOf(to: Destination, sensitivity: Sensitivity | undefined): Facts {
  let ports: Facts['ports'];
  if (to.unix !== undefined) ports = 'none';
  else if (to.url !== undefined && to.port === undefined)
    ports = mergePorts(
      [],
      asList(to.url).flatMap((text): [number, number][] => {
        const url = parseRuleUrl(text);
        return 'message' in url ? [] : [[url.port, url.port]];
      }),
    );
  else if (to.port === undefined) ports = 'any';
  else
    ports = mergePorts(
      [],
      asList(to.port).map((p): [number, number] => [p.from, p.to]),
    );
  const urlPaths =
    to.url !== undefined &&
    asList(to.url).every((text) => {
      const url = parseRuleUrl(text);
      return !('message' in url) && url.path !== undefined;
    });
  // The Lambda invoke API (aws: lambda, group:) is one method on one path per function.
  const invokeOnly = to.aws === 'lambda' || to.group !== undefined;
  return {
    ports,
    l7Restricted: to.methods !== undefined || to.paths !== undefined || urlPaths || invokeOnly,
    sensitivity: SENSITIVITY_WEIGHTS[sensitivity ?? 'normal'],
  };
}

interface Evaluated {
  score: number;
  unanchored?: string;
  reach: Reach;
}

/** The targets the allow rules of `policies` name, scored. */
function evaluate(policies: readonly EgressPolicyDoc[], set: PolicySet): Evaluated {
  const nodes = new Map<string, Node>();
  let unanchored: string | undefined;
  let anyPorts = false;
  let ports: [number, number][] = [];
  for (const policy of policies) {
    (policy.spec.allow ?? []).forEach((rule, i) => {
      const targets = targetsOf(rule.to, set);
      if (targets === undefined) {
        unanchored ??= `${policy.metadata.name}/allow[${i}] names no host, address or service: it allows every destination`;
        return;
      }
      const facts = factsOf(rule.to, rule.sensitivity);
      if (facts.ports === 'any') anyPorts = true;
      else if (facts.ports !== 'none') ports = mergePorts(ports, facts.ports) as [number, number][];
      for (const target of targets) {
        const node = nodes.get(target.key);
        if (node) node.own = mergeFacts(node.own, facts);
        else nodes.set(target.key, { target, own: facts, children: [] });
      }
    });
  }
  const all = [...nodes.values()].sort((a, b) => (a.target.key < b.target.key ? -1 : 1));
  const roots: Node[] = [];
  // Each target hangs under the nearest target that covers it. Hosts and CIDRs look their coverers
  // up by key (linear in the targets); an exact function or socket name is matched against the
  // globs of its kind (exact names × globs: policies name few globs).
  const globs = all.filter((n) => n.target.matches !== undefined);
  const prefixLengths = new Set<number>();
  for (const node of all)
    if (node.target.prefixLength !== undefined) prefixLengths.add(node.target.prefixLength);
  for (const node of all) {
    const { target } = node;
    let parent: Node | undefined;
    if (target.coverers) {
      for (const key of target.coverers(prefixLengths)) {
        parent = nodes.get(key);
        if (parent) break;
      }
    } else if (!target.wildcard) {
      const name = target.key.slice(target.prefix.length);
      parent = globs.find((g) => g.target.prefix === target.prefix && g.target.matches?.(name));
    }
    (parent ? parent.children : roots).push(node);
  }
  const subtreeValue = (node: Node): { value: number; facts: Facts } => {
    let facts = node.own;
    let sum = 0;
    for (const child of node.children) {
      const c = subtreeValue(child);
      sum += c.value;
      facts = mergeFacts(facts, c.facts);
    }
    return { value: Math.max(node.target.breadth * factorOf(facts), sum), facts };
  };
  let total = 0;
  let addresses = 0;
  for (const root of roots) {
    total += subtreeValue(root).value;
    // Roots of the CIDR tree do not overlap: their sizes add up to the union.
    addresses += root.target.addresses ?? 0;
  }
  const count = (predicate: (n: Node) => boolean) => all.filter(predicate).length;
  const sensitiveFloor = SENSITIVITY_WEIGHTS.high;
  return {
    // The epsilon keeps a sum that floating point puts a hair above an integer from rounding up.
    score: Math.min(Math.max(0, Math.ceil(total - 1e-9)), BLAST_RADIUS_CEILING),
    ...(unanchored !== undefined ? { unanchored } : {}),
    reach: {
      hosts: count((n) => n.target.kind === 'host' && !n.target.wildcard),
      wildcardDomains: count((n) => n.target.kind === 'host' && n.target.wildcard),
      addresses,
      ports: anyPorts ? 'any' : portCount(ports),
      cloudResources: count((n) => n.target.kind === 'cloud'),
      unixSockets: count((n) => n.target.kind === 'unix'),
      sensitive: count((n) => n.own.sensitivity >= sensitiveFloor),
    },
  };
}

function radiusOf(
  policies: readonly EgressPolicyDoc[],
  set: PolicySet,
  unselected: UnselectedDefault,
): RadiusCore {
  const { score, unanchored, reach } = evaluate(policies, set);
  let mode: BlastMode;
  let reason: string | undefined;
  if (policies.length === 0) {
    mode = unselected;
    if (unselected === 'allow')
      reason = 'no EgressPolicy governs it and unselected workloads are allowed: nothing is blocked';
    else if (unselected === 'observe')
      reason = 'no EgressPolicy governs it and unselected workloads are observed: nothing is blocked';
  } else {
    mode = policies.some((p) => p.spec.mode === 'enforce') ? 'enforce' : 'observe';
    if (mode === 'observe') reason = 'observe mode: nothing is blocked';
    else reason = unanchored;
  }
  if (reason !== undefined) return { score: BLAST_RADIUS_CEILING, unbounded: true, mode, reason, reach };
  return { score, unbounded: false, mode, reach };
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The blast radius of every SmartGroup of the set (the policies whose appliesTo names it) and of
 * each workload given (every policy that selects it, as compilePolicy sees it).
 */
export function blastRadius(set: PolicySet, options: BlastRadiusOptions = {}): BlastRadiusReport {
  const unselected = unselectedDefaultOf(set, options.unselected ? { unselected: options.unselected } : {});
  // Groups and workloads governed by the same policies share one evaluation.
  const byPolicies = new Map<string, RadiusCore>();
  const radiusFor = (policies: EgressPolicyDoc[]) => {
    const key = policies
      .map((p) => p.metadata.name)
      .sort(byName)
      .join('\n');
    let core = byPolicies.get(key);
    if (!core) {
      core = radiusOf(policies, set, unselected);
      byPolicies.set(key, core);
    }
    return core;
  };
  const groups = set.groups
    .map((g) => g.metadata.name)
    .sort(byName)
    .map((group): GroupRadius => {
      const policies = set.policies.filter((p) => p.spec.appliesTo.includes(group));
      return { group, policies: policies.map((p) => p.metadata.name).sort(byName), ...radiusFor(policies) };
    });
  // Workloads selected by the same SmartGroups are governed by the same policies.
  const byScope = new Map<string, RadiusCore>();
  const seen = new Set<string>();
  const workloads: WorkloadRadius[] = [];
  for (const identity of options.workloads ?? []) {
    const workload = formatIdentity(identity);
    if (seen.has(workload)) continue;
    seen.add(workload);
    const groupNames = groupsSelecting(set, identity).map((g) => g.metadata.name);
    const scopeKey = groupNames.join('\n');
    let core = byScope.get(scopeKey);
    if (!core) {
      core = radiusFor(policiesSelecting(set, identity));
      byScope.set(scopeKey, core);
    }
    workloads.push({ workload, identity: { ...identity }, groups: groupNames, ...core });
  }
  return { groups, workloads };
}
