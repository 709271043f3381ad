// The decision engine. Runs inside every governed function, on every connection, DNS query,
// child process, addon load and Unix-socket connect, so: no npm dependencies, index structures
// built once per revision, cost on a miss grows with the length of the name (reversed-label trie)
// and the address (binary prefix trie), not with the number of rules; a cache hit is a few Map
// lookups and allocates nothing; a miss allocates the parsed address and little else (its working
// arrays are reused), since a flood of distinct destinations is nothing but misses.
import type { BundlePayload } from './bundle.js';
import {
  type Cidr,
  CidrTrie,
  cidrContains,
  type IpBytes,
  parseCidr,
  parseIp,
  readCanonicalIpv4,
} from './cidr.js';
import type { CompiledPolicy, CompiledRule } from './compiled.js';
import { classifyHost, HostTrie, parseHostPattern } from './host.js';
import { compileGlob, type GlobMatcher, normalizePath } from './path.js';
import type { Decider, Decision, DecisionRequest, Mode, Protocol } from './types.js';
import { compileUnixPattern, normalizeUnixPath } from './unix.js';

export { normalizeIp } from './cidr.js';
export { classifyHost, normalizeHost } from './host.js';
export { normalizePath } from './path.js';
export { normalizeUnixPath } from './unix.js';

const PROTOCOL_BIT: Readonly<Record<Protocol, number>> = { tcp: 1, udp: 2, http: 4, https: 8, dns: 16 };
const L7_BITS = PROTOCOL_BIT.http | PROTOCOL_BIT.https;
const PROTOCOL_INDEX: Readonly<Record<string, number>> = { tcp: 0, udp: 1, http: 2, https: 3, dns: 4 };

interface Matcher {
  readonly id: string;
  readonly deny: boolean;
  readonly enforce: boolean;
  readonly decision: Decision;
  readonly cidrs: Cidr[] | undefined;
  /** Flattened inclusive ranges [from, to, from, to, …]. */
  readonly ports: number[] | undefined;
  /** 0: any protocol. `tcp` implies http and https (they run over it). */
  readonly protocolMask: number;
  readonly methods: ReadonlySet<string> | undefined;
  readonly paths: GlobMatcher[] | undefined;
  /** Constrains nothing but the name: a deny of this kind also refuses the DNS query. */
  readonly nameOnly: boolean;
}

/** Facts of a request after normalisation (built on a cache miss only). */
interface Facts {
  port: number;
  protocolBit: number;
  method: string | undefined;
  path: string | undefined;
}

export interface DeciderOptions {
  /** Revision reported by `decider.revision` (a BundlePayload source carries its own). */
  revision?: number;
  /** The Node binary allowed by `exec.allowNode` (default: this process's `process.execPath`). */
  execPath?: string;
  /** Cached decisions per revision before the cache is cleared (default 100 000). */
  maxCacheEntries?: number;
  /**
   * Denied connections and names are cached apart, in tables of this many before they start over
   * (default 4096): a flood of distinct denies (a port scan, a DNS exfiltration) cannot fill the
   * main cache with answers nobody asks for twice, and a repeated deny is still a cache hit.
   */
  maxDenyCacheEntries?: number;
}

function freezeDecision(decision: Decision): Decision {
  return Object.freeze(decision);
}

function buildMatcher(rule: CompiledRule): Matcher {
  const deny = rule.action === 'deny';
  const enforce = !deny || rule.mode === 'enforce';
  let protocolMask = 0;
  for (const protocol of rule.protocols ?? []) protocolMask |= PROTOCOL_BIT[protocol];
  if (protocolMask & PROTOCOL_BIT.tcp) protocolMask |= L7_BITS;
  const cidrs = rule.cidrs?.map((text) => {
    const parsed = parseCidr(text);
    if (!parsed.ok) throw new TypeError(`rule ${rule.id}: ${parsed.message}`);
    return parsed.cidr;
  });
  return {
    id: rule.id,
    deny,
    enforce,
    decision: freezeDecision(
      deny
        ? { decision: 'deny', mode: rule.mode, blocked: rule.mode === 'enforce', rule: rule.id }
        : { decision: 'allow', mode: rule.mode, blocked: false, rule: rule.id },
    ),
    cidrs: rule.hosts && cidrs ? cidrs : undefined,
    ports: rule.ports?.flat(),
    protocolMask,
    methods: rule.methods ? new Set(rule.methods.map((m) => m.toUpperCase())) : undefined,
    paths: rule.paths?.map(compileGlob),
    nameOnly:
      !rule.cidrs &&
      !rule.ports &&
      !rule.methods &&
      !rule.paths &&
      (!rule.protocols || rule.protocols.includes('dns')),
  };
}

/**
 * Does `m` match the facts? `optimistic` (allow rules) counts a fact the hook does not know yet
 * as a match, because the hook that learns it (the HTTP layer, after connect) asks again; deny
 * rules need every fact they constrain to be known.
 */
function matchesFacts(m: Matcher, facts: Facts, ip: IpBytes | undefined): boolean {
  const optimistic = !m.deny;
  if (m.ports) {
    if (facts.port === 0) {
      if (!optimistic) return false;
    } else {
      let inRange = false;
      for (let i = 0; i < m.ports.length; i += 2)
        if (facts.port >= (m.ports[i] as number) && facts.port <= (m.ports[i + 1] as number)) {
          inRange = true;
          break;
        }
      if (!inRange) return false;
    }
  }
  if (m.protocolMask !== 0 && !(m.protocolMask & facts.protocolBit)) {
    const l7Pending = facts.protocolBit === PROTOCOL_BIT.tcp && m.protocolMask & L7_BITS;
    if (!(optimistic && l7Pending)) return false;
  }
  if (m.methods) {
    if (facts.method === undefined) {
      if (!optimistic) return false;
    } else if (!m.methods.has(facts.method)) return false;
  }
  if (m.paths) {
    if (facts.path === undefined) {
      if (!optimistic) return false;
    } else {
      const path = facts.path;
      if (!m.paths.some((glob) => glob(path))) return false;
    }
  }
  if (m.cidrs) {
    if (ip === undefined) {
      if (!optimistic) return false;
    } else if (!m.cidrs.some((c) => cidrContains(c, ip))) return false;
  }
  return true;
}

type CacheL5 = Map<string, Decision>;
type CacheL4 = Map<string, CacheL5>;
type CacheL3 = Map<number, CacheL4>;
type CacheL2 = Map<string, CacheL3>;
type CacheL1 = Map<string, CacheL2>;
/** Connection decisions (no method, no path), the common case: host → ip → port key, no maps below. */
type PlainCache = Map<string, Map<string, Map<number, Decision>>>;

class PolicyDecider implements Decider {
  readonly revision: number;
  readonly mode: Mode;
  readonly allowsAddresses: boolean = false;
  private readonly hostIndex = new HostTrie<Matcher>();
  private readonly cidrIndex = new CidrTrie<Matcher>();
  /** Rules that name neither a host nor an address (`{port: 25}`): checked for every request. */
  private readonly unanchored: Matcher[] = [];
  private readonly fallbackDecision: Decision;
  private readonly execGlobs: { decision: Decision; byPath: boolean; match: GlobMatcher }[];
  private readonly addonGlobs: { decision: Decision; byPath: boolean; match: GlobMatcher }[];
  /**
   * Unix-socket patterns in rule order. A workload talks to a handful of local daemons and every
   * answer is cached, so a plain scan keeps "deny first, then the first allow" obvious.
   */
  private readonly unixRules: { deny: boolean; enforce: boolean; decision: Decision; match: GlobMatcher }[];
  private readonly execPath: string | undefined;
  private readonly nodeDecision: Decision;
  private readonly literalDecision: Decision;
  private readonly maxCacheEntries: number;
  private cache: CacheL1 = new Map();
  // Apart from `cache` so that a connection's entry costs one Map slot, not two Maps (a flood of
  // 100,000 distinct denied connects kept ~45 MB of method/path maps).
  private plainCache: PlainCache = new Map();
  private cacheEntries = 0;
  private readonly maxDenyCacheEntries: number;
  private plainDenyCache: PlainCache = new Map();
  private plainDenyEntries = 0;
  private readonly nameCache = new Map<string, Decision>();
  private readonly denyNameCache = new Map<string, Decision>();
  private readonly execCache = new Map<string, Decision>();
  private readonly addonCache = new Map<string, Decision>();
  private readonly unixCache = new Map<string, Decision>();
  // decideUncached's working space, reused: it is never re-entered (it calls nothing outside the
  // kernel), and a flood of distinct destinations makes every decision a miss.
  private readonly scratchNames: string[] = [];
  private readonly scratchIps: IpBytes[] = [];
  private readonly scratchLists: (readonly Matcher[])[] = [];
  private readonly scratchAddress: IpBytes = new Uint8Array(4);
  private readonly scratchFacts: Facts = { port: 0, protocolBit: 0, method: undefined, path: undefined };

  constructor(policy: CompiledPolicy, options: DeciderOptions) {
    this.revision = options.revision ?? 0;
    this.mode = policy.mode;
    this.maxCacheEntries = options.maxCacheEntries ?? 100_000;
    this.maxDenyCacheEntries = options.maxDenyCacheEntries ?? 4096;
    this.fallbackDecision = freezeDecision(
      policy.fallback === 'allow'
        ? { decision: 'allow', mode: policy.mode, blocked: false, rule: 'default-allow' }
        : { decision: 'deny', mode: policy.mode, blocked: policy.mode === 'enforce', rule: 'default-deny' },
    );
    this.nodeDecision = freezeDecision({
      decision: 'allow',
      mode: policy.mode,
      blocked: false,
      rule: 'exec:node',
    });
    this.literalDecision = freezeDecision({
      decision: 'allow',
      mode: policy.mode,
      blocked: false,
      rule: 'ip-literal',
    });
    for (const rule of policy.rules) {
      const matcher = buildMatcher(rule);
      if (rule.hosts && rule.hosts.length > 0) {
        for (const text of rule.hosts) {
          const parsed = parseHostPattern(text, { allowInnerWildcard: true });
          if (!parsed.ok) throw new TypeError(`rule ${rule.id}: ${parsed.message}`);
          this.hostIndex.insert(parsed.pattern, matcher);
        }
      } else if (rule.cidrs && rule.cidrs.length > 0) {
        for (const text of rule.cidrs) {
          const parsed = parseCidr(text);
          if (!parsed.ok) throw new TypeError(`rule ${rule.id}: ${parsed.message}`);
          this.cidrIndex.insert(parsed.cidr, matcher);
        }
        if (!matcher.deny) this.allowsAddresses = true;
      } else this.unanchored.push(matcher);
    }
    const globRules = (rules: { id: string; glob: string }[]) =>
      rules.map((r) => ({
        decision: freezeDecision({ decision: 'allow', mode: policy.mode, blocked: false, rule: r.id }),
        byPath: r.glob.includes('/'),
        match: compileGlob(r.glob),
      }));
    this.execGlobs = globRules(policy.exec.allow);
    this.addonGlobs = globRules(policy.addons.allow);
    this.unixRules = (policy.unix?.rules ?? []).map((rule) => {
      const deny = rule.action === 'deny';
      return {
        deny,
        enforce: !deny || rule.mode === 'enforce',
        decision: freezeDecision(
          deny
            ? { decision: 'deny', mode: rule.mode, blocked: rule.mode === 'enforce', rule: rule.id }
            : { decision: 'allow', mode: rule.mode, blocked: false, rule: rule.id },
        ),
        match: compileUnixPattern(rule.glob),
      };
    });
    this.execPath = policy.exec.allowNode
      ? (options.execPath ?? (typeof process !== 'undefined' ? process.execPath : undefined))
      : undefined;
  }

  decide(request: DecisionRequest): Decision {
    const host = request.host ?? '';
    const sni = request.sni;
    // A request whose SNI differs from its host is rare (domain fronting looks like this):
    // decided without the cache rather than widening every key.
    // A port that is not an integer would alias another key: decided (and refused) uncached.
    if ((sni !== undefined && sni !== host) || !Number.isInteger(request.port))
      return this.decideUncached(request);
    const ip = request.ip ?? '';
    // Own keys only: `toString` or `constructor` must not read as a protocol (they are unreadable).
    const protocolIndex = Object.hasOwn(PROTOCOL_INDEX, request.protocol)
      ? PROTOCOL_INDEX[request.protocol]
      : undefined;
    const portKey = request.port * 8 + (protocolIndex ?? 7);
    const method = request.method ?? '';
    const path = request.path ?? '';
    if (method === '' && path === '') {
      const hit =
        this.plainCache.get(host)?.get(ip)?.get(portKey) ??
        this.plainDenyCache.get(host)?.get(ip)?.get(portKey);
      if (hit !== undefined) return hit;
      const decision = this.decideUncached(request);
      if (decision.decision === 'allow') {
        this.makeRoom();
        getOrCreate(getOrCreate(this.plainCache, host), ip).set(portKey, decision);
        this.cacheEntries++;
      } else {
        if (this.plainDenyEntries >= this.maxDenyCacheEntries) {
          this.plainDenyCache = new Map();
          this.plainDenyEntries = 0;
        }
        getOrCreate(getOrCreate(this.plainDenyCache, host), ip).set(portKey, decision);
        this.plainDenyEntries++;
      }
      return decision;
    }
    const l2 = this.cache.get(host);
    const l3 = l2?.get(ip);
    const l4 = l3?.get(portKey);
    const l5 = l4?.get(method);
    const hit = l5?.get(path);
    if (hit !== undefined) return hit;
    const decision = this.decideUncached(request);
    this.remember(host, ip, portKey, method, path, decision);
    return decision;
  }

  private remember(
    host: string,
    ip: string,
    portKey: number,
    method: string,
    path: string,
    decision: Decision,
  ) {
    this.makeRoom();
    const l2 = getOrCreate(this.cache, host);
    const l3 = getOrCreate(l2, ip);
    const l4 = getOrCreate(l3, portKey);
    const l5 = getOrCreate(l4, method);
    l5.set(path, decision);
    this.cacheEntries++;
  }

  /** Both caches start over once they hold maxCacheEntries decisions between them. */
  private makeRoom(): void {
    if (this.cacheEntries >= this.maxCacheEntries) {
      this.cache = new Map();
      this.plainCache = new Map();
      this.cacheEntries = 0;
    }
  }

  /** The full evaluation (the cache-miss path). Exposed for benchmarks and explain. */
  decideUncached(request: DecisionRequest): Decision {
    const names = this.scratchNames;
    const ips = this.scratchIps;
    names.length = 0;
    ips.length = 0;
    if (!this.collect(request.host, names, ips) || !this.collect(request.sni, names, ips))
      return this.unreadable();
    if (request.ip !== undefined && request.ip !== '') {
      const bytes = readCanonicalIpv4(request.ip, this.scratchAddress)
        ? this.scratchAddress
        : parseIp(request.ip);
      if (!bytes) return this.unreadable();
      ips.push(bytes);
    }
    const port =
      Number.isInteger(request.port) && request.port >= 0 && request.port <= 65535 ? request.port : -1;
    const protocolBit = Object.hasOwn(PROTOCOL_BIT, request.protocol)
      ? PROTOCOL_BIT[request.protocol as Protocol]
      : 0;
    // A destination we cannot read (bad name, bad address, bad port or protocol) is never allowed.
    if (port === -1 || protocolBit === 0 || (names.length === 0 && ips.length === 0))
      return this.unreadable();
    const facts = this.scratchFacts;
    facts.port = port;
    facts.protocolBit = protocolBit;
    facts.method = request.method ? request.method.toUpperCase() : undefined;
    facts.path = request.path ? normalizePath(request.path) : undefined;
    const ip = ips[ips.length - 1];
    // The candidates of each name, then of each address: lists [0, nameLists) and [nameLists, end).
    const lists = this.scratchLists;
    lists.length = 0;
    for (let i = 0; i < names.length; i++) lists.push(this.hostIndex.lookup(names[i] as string));
    const nameLists = lists.length;
    for (let i = 0; i < ips.length; i++) lists.push(this.cidrIndex.lookup(ips[i] as IpBytes));

    // Deny first: an enforcing deny anywhere decides; an observing one is remembered.
    let observedDeny: Decision | undefined;
    for (let list = 0; list <= lists.length; list++) {
      const candidates = list < lists.length ? (lists[list] as readonly Matcher[]) : this.unanchored;
      for (const m of candidates) {
        if (!m.deny || !matchesFacts(m, facts, ip)) continue;
        if (m.enforce) return m.decision;
        observedDeny ??= m.decision;
      }
    }
    // Allowed through the names (every name the request carries, host and a differing SNI),
    // through the addresses, or by a rule that names neither.
    const allowed =
      allowedByAll(lists, 0, nameLists, facts, ip) ??
      allowedByAll(lists, nameLists, lists.length, facts, ip) ??
      firstAllow(this.unanchored, facts, ip);
    if (allowed) return observedDeny ?? allowed;
    return this.fallbackDecision;
  }

  /** Add a host or SNI text to the names or addresses; false when it is unreadable. */
  private collect(text: string | undefined, names: string[], ips: IpBytes[]): boolean {
    if (text === undefined || text === '') return true;
    const kind = classifyHost(text);
    if (!kind) return false;
    if ('ip' in kind) {
      const bytes = parseIp(kind.ip);
      if (bytes) ips.push(bytes);
    } else if (!names.includes(kind.host)) names.push(kind.host);
    return true;
  }

  /** Unreadable destinations are denied, whatever the fallback. */
  private unreadable(): Decision {
    return this.fallbackDecision.decision === 'deny' ? this.fallbackDecision : this.denyUnreadable();
  }

  private unreadableDecision: Decision | undefined;
  private denyUnreadable(): Decision {
    this.unreadableDecision ??= freezeDecision({
      decision: 'deny',
      mode: this.mode,
      blocked: this.mode === 'enforce',
      rule: 'default-deny',
    });
    return this.unreadableDecision;
  }

  decideName(host: string): Decision {
    const hit = this.nameCache.get(host) ?? this.denyNameCache.get(host);
    if (hit !== undefined) return hit;
    const decision = this.decideNameUncached(host);
    const cache = decision.decision === 'allow' ? this.nameCache : this.denyNameCache;
    const max = decision.decision === 'allow' ? this.maxCacheEntries : this.maxDenyCacheEntries;
    if (cache.size >= max) cache.clear();
    cache.set(host, decision);
    return decision;
  }

  private decideNameUncached(text: string): Decision {
    const kind = typeof text === 'string' ? classifyHost(text) : undefined;
    if (!kind)
      return this.fallbackDecision.decision === 'deny' ? this.fallbackDecision : this.denyUnreadable();
    // An IP literal needs no query: the connection to it is decided by address.
    if ('ip' in kind) return this.literalDecision;
    const candidates = this.hostIndex.lookup(kind.host);
    let observedDeny: Decision | undefined;
    for (const m of [...candidates, ...this.unanchored]) {
      if (!m.deny || !m.nameOnly) continue;
      if (m.enforce) return m.decision;
      observedDeny ??= m.decision;
    }
    let allowed: Decision | undefined;
    for (const m of candidates)
      if (!m.deny) {
        allowed = m.decision;
        break;
      }
    if (!allowed)
      for (const m of this.unanchored)
        if (!m.deny) {
          allowed = m.decision;
          break;
        }
    if (allowed) return observedDeny ?? allowed;
    return this.fallbackDecision;
  }

  decideExec(file: string): Decision {
    const hit = this.execCache.get(file);
    if (hit !== undefined) return hit;
    let decision: Decision = this.fallbackDecision;
    if (typeof file === 'string' && file !== '') {
      if (this.execPath !== undefined && file === this.execPath) decision = this.nodeDecision;
      else decision = matchGlobRules(this.execGlobs, file) ?? this.fallbackDecision;
    }
    if (this.execCache.size >= 10_000) this.execCache.clear();
    this.execCache.set(file, decision);
    return decision;
  }

  decideAddon(path: string): Decision {
    const hit = this.addonCache.get(path);
    if (hit !== undefined) return hit;
    const decision =
      typeof path === 'string' && path !== ''
        ? (matchGlobRules(this.addonGlobs, path) ?? this.fallbackDecision)
        : this.fallbackDecision;
    if (this.addonCache.size >= 10_000) this.addonCache.clear();
    this.addonCache.set(path, decision);
    return decision;
  }

  decideUnix(path: string): Decision {
    if (typeof path !== 'string') return this.unreadable();
    const hit = this.unixCache.get(path);
    if (hit !== undefined) return hit;
    const decision = this.decideUnixUncached(path);
    // Longer than any path the system accepts (PATH_MAX): answered, not kept.
    if (path.length > 4096) return decision;
    if (this.unixCache.size >= 10_000) this.unixCache.clear();
    this.unixCache.set(path, decision);
    return decision;
  }

  private decideUnixUncached(text: string): Decision {
    const address = normalizeUnixPath(text);
    // A socket address we cannot read is never allowed, as for network destinations.
    if (address === undefined) return this.unreadable();
    // Deny first: an enforcing deny decides; an observing one wins over an allow, as a record.
    let observedDeny: Decision | undefined;
    for (const rule of this.unixRules) {
      if (!rule.deny || !rule.match(address)) continue;
      if (rule.enforce) return rule.decision;
      observedDeny ??= rule.decision;
    }
    for (const rule of this.unixRules)
      if (!rule.deny && rule.match(address)) return observedDeny ?? rule.decision;
    return this.fallbackDecision;
  }
}

function firstAllow(
  candidates: readonly Matcher[],
  facts: Facts,
  ip: IpBytes | undefined,
): Decision | undefined {
  for (const m of candidates) if (!m.deny && matchesFacts(m, facts, ip)) return m.decision;
  return undefined;
}

/** The first allow of lists[from], when each of lists[from, to) has an allow (undefined for none). */
function allowedByAll(
  lists: readonly (readonly Matcher[])[],
  from: number,
  to: number,
  facts: Facts,
  ip: IpBytes | undefined,
): Decision | undefined {
  let first: Decision | undefined;
  for (let i = from; i < to; i++) {
    const d = firstAllow(lists[i] as readonly Matcher[], facts, ip);
    if (!d) return undefined;
    first ??= d;
  }
  return first;
}

function getOrCreate<K, K2, V>(map: Map<K, Map<K2, V>>, key: K): Map<K2, V> {
  let inner = map.get(key);
  if (!inner) {
    inner = new Map();
    map.set(key, inner);
  }
  return inner;
}

function matchGlobRules(
  rules: { decision: Decision; byPath: boolean; match: GlobMatcher }[],
  file: string,
): Decision | undefined {
  const slash = Math.max(file.lastIndexOf('/'), file.lastIndexOf('\\'));
  const base = file.slice(slash + 1);
  // A pattern with a `/` is matched against the path as given; a bare name against the base
  // name, so `git` allows /usr/bin/git (and any other file named git: prefer full paths).
  for (const rule of rules) if (rule.match(rule.byPath ? file : base)) return rule.decision;
  return undefined;
}

function isBundlePayload(source: CompiledPolicy | BundlePayload): source is BundlePayload {
  return 'policy' in source && 'revision' in source;
}

/**
 * Build the decision engine for one compiled policy (or a verified bundle payload, which also
 * gives the revision). Index structures are built here, once per revision.
 */
export function createDecider(
  source: CompiledPolicy | BundlePayload,
  options: DeciderOptions = {},
): Decider & {
  decideUncached(request: DecisionRequest): Decision;
} {
  if (isBundlePayload(source))
    return new PolicyDecider(source.policy, { ...options, revision: options.revision ?? source.revision });
  return new PolicyDecider(source, options);
}
