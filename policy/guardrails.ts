// Guardrails: what no EgressPolicy may do. Built-in defaults, configured and extended by
// `kind: Guardrail` documents; each break is a PolicyError at the offending field.
import { type Cidr, cidrOverlaps, parseCidr } from './cidr.js';
import { ownerOf } from './compile.js';
import type { EgressPolicyDoc, GuardrailDoc, GuardrailId } from './documents.js';
import { parseRuleUrl } from './documents.js';
import { errorAt, type PolicyError } from './errors.js';
import { type HostPattern, isBroaderThanRegistrable, parseHostPattern } from './host.js';
import { identityGlobMatches } from './identity.js';
import type { PolicySet } from './parse.js';
import type { PathSegment } from './schema-kit.js';
import { asList } from './schema-kit.js';
import { compileUnixPattern } from './unix.js';

export interface GuardrailSettings {
  requireOwner: boolean;
  forbidAllowAll: boolean;
  forbidMetadataEndpoints: boolean;
  forbidBroadWildcards: boolean;
  forbidContainerSockets: boolean;
  requireEnforce: boolean;
  requireObserveFirst: boolean;
  forbidDestinations: { host?: HostPattern; cidr?: Cidr; text: string; reason?: string }[];
  exceptions: NonNullable<GuardrailDoc['spec']['exceptions']>;
}

export const DEFAULT_GUARDRAILS: Readonly<Omit<GuardrailSettings, 'forbidDestinations' | 'exceptions'>> = {
  requireOwner: true,
  forbidAllowAll: true,
  forbidMetadataEndpoints: true,
  forbidBroadWildcards: true,
  forbidContainerSockets: true,
  requireEnforce: false,
  requireObserveFirst: false,
};

/** Link-local and cloud metadata endpoints (AWS/Azure/GCP IMDS, ECS task metadata, EC2 IPv6 IMDS). */
const METADATA_CIDRS = ['169.254.0.0/16', 'fd00:ec2::254/128', 'fe80::/10'].map((text) => {
  const parsed = parseCidr(text);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.cidr;
});
const METADATA_HOSTS = [
  'metadata.google.internal',
  'metadata.goog',
  'metadata',
  'instance-data',
  'instance-data.ec2.internal',
].map((text) => {
  const parsed = parseHostPattern(text);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.pattern;
});

/**
 * Container runtime API sockets at their usual places (Docker, containerd, CRI-O, Podman,
 * BuildKit): whoever reaches one starts containers, i.e. is root on the host. An allow pattern
 * that matches one of these addresses reaches it (`/var/run/**` as much as the path itself).
 */
const CONTAINER_SOCKETS = [
  '/var/run/docker.sock',
  '/run/docker.sock',
  '/var/run/containerd/containerd.sock',
  '/run/containerd/containerd.sock',
  '/var/run/crio/crio.sock',
  '/run/crio/crio.sock',
  '/var/run/podman/podman.sock',
  '/run/podman/podman.sock',
  '/run/buildkit/buildkitd.sock',
];

/** Does the pattern match every socket path (`/**`) or every abstract name (`@*`)? */
export function unixPatternMatchesAll(pattern: string): boolean {
  if (pattern.startsWith('@')) return /^@\*+$/.test(pattern);
  // Every path has at least one segment: whole-`**` segments and at most one `*` cover them all.
  const segments = pattern.slice(1).split('/');
  return (
    segments.includes('**') &&
    segments.every((s) => s === '*' || s === '**') &&
    segments.filter((s) => s === '*').length <= 1
  );
}

/**
 * The socket counterpart of `*.com`: a pattern with no fixed start (a wildcard in the first path
 * segment, or an abstract name starting with `*`) reaches sockets anywhere, of any owner.
 */
export function unixPatternIsBroad(pattern: string): boolean {
  if (pattern.startsWith('@')) return pattern.charAt(1) === '*';
  return (pattern.slice(1).split('/')[0] ?? '').includes('*');
}

/** Could some name match both patterns? */
export function hostPatternsOverlap(a: HostPattern, b: HostPattern): boolean {
  const shorter = a.labels.length <= b.labels.length ? a : b;
  const longer = shorter === a ? b : a;
  for (let i = 0; i < shorter.labels.length; i++) {
    const x = shorter.labels[i];
    const y = longer.labels[i];
    if (x !== '*' && y !== '*' && x !== y) return false;
  }
  if (shorter.labels.length === longer.labels.length) return true;
  // The shorter pattern must reach below itself.
  return shorter.subtree;
}

function settingsOf(set: PolicySet, errors: PolicyError[]): GuardrailSettings {
  const settings: GuardrailSettings = { ...DEFAULT_GUARDRAILS, forbidDestinations: [], exceptions: [] };
  const setBy = new Map<string, { value: unknown; doc: GuardrailDoc }>();
  const scalarKeys = [
    'requireOwner',
    'forbidAllowAll',
    'forbidMetadataEndpoints',
    'forbidBroadWildcards',
    'forbidContainerSockets',
    'requireEnforce',
    'requireObserveFirst',
    'unselectedWorkloads',
  ] as const;
  for (const doc of set.guardrails) {
    for (const key of scalarKeys) {
      const value = doc.spec[key];
      if (value === undefined) continue;
      const earlier = setBy.get(key);
      if (earlier && earlier.value !== value) {
        errors.push(
          errorAt(
            doc,
            ['spec', key],
            `conflicts with Guardrail ${earlier.doc.metadata.name}, which sets ${key}: ${String(earlier.value)}`,
          ),
        );
        continue;
      }
      setBy.set(key, { value, doc });
      if (key !== 'unselectedWorkloads') settings[key] = value as boolean;
    }
    for (const forbidden of doc.spec.forbidDestinations ?? []) {
      const host = forbidden.host ? parseHostPattern(forbidden.host) : undefined;
      const cidr = forbidden.cidr ? parseCidr(forbidden.cidr) : undefined;
      settings.forbidDestinations.push({
        ...(host?.ok ? { host: host.pattern } : {}),
        ...(cidr?.ok ? { cidr: cidr.cidr } : {}),
        text: forbidden.host ?? forbidden.cidr ?? '',
        ...(forbidden.reason ? { reason: forbidden.reason } : {}),
      });
    }
    for (const [i, exception] of (doc.spec.exceptions ?? []).entries()) {
      if (!exception.guardrails && !exception.cidrs && !exception.hosts)
        errors.push(
          errorAt(
            doc,
            ['spec', 'exceptions', i],
            'an exception must name the guardrails or the destinations it allows',
          ),
        );
      else settings.exceptions.push(exception);
    }
  }
  return settings;
}

interface DestinationFacts {
  hosts: { pattern: HostPattern; path: PathSegment[] }[];
  cidrs: { cidr: Cidr; text: string; path: PathSegment[] }[];
  unix: { pattern: string; path: PathSegment[] }[];
  unanchored: boolean;
}

function destinationFacts(
  to: EgressPolicyDoc['spec']['allow'] extends (infer R)[] | undefined ? R : never,
  base: PathSegment[],
): DestinationFacts {
  const facts: DestinationFacts = { hosts: [], cidrs: [], unix: [], unanchored: false };
  const d = to.to;
  const hostList = d.host === undefined ? [] : asList(d.host);
  hostList.forEach((text, i) => {
    const parsed = parseHostPattern(text);
    if (parsed.ok)
      facts.hosts.push({
        pattern: parsed.pattern,
        path: [...base, 'to', 'host', ...(Array.isArray(d.host) ? [i] : [])],
      });
  });
  const urls = d.url === undefined ? [] : asList(d.url);
  urls.forEach((text, i) => {
    const url = parseRuleUrl(text);
    if ('message' in url) return;
    const parsed = parseHostPattern(url.host);
    if (parsed.ok)
      facts.hosts.push({
        pattern: parsed.pattern,
        path: [...base, 'to', 'url', ...(Array.isArray(d.url) ? [i] : [])],
      });
  });
  const cidrList = d.cidr === undefined ? [] : asList(d.cidr);
  cidrList.forEach((text, i) => {
    const parsed = parseCidr(text);
    if (parsed.ok)
      facts.cidrs.push({
        cidr: parsed.cidr,
        text,
        path: [...base, 'to', 'cidr', ...(Array.isArray(d.cidr) ? [i] : [])],
      });
  });
  const unixList = d.unix === undefined ? [] : asList(d.unix);
  unixList.forEach((pattern, i) => {
    facts.unix.push({ pattern, path: [...base, 'to', 'unix', ...(Array.isArray(d.unix) ? [i] : [])] });
  });
  facts.unanchored =
    d.unix === undefined &&
    d.host === undefined &&
    d.url === undefined &&
    d.cidr === undefined &&
    d.aws === undefined &&
    d.group === undefined;
  return facts;
}

function exempt(
  settings: GuardrailSettings,
  policy: string,
  guardrail: GuardrailId,
  destination?: { host?: HostPattern; cidr?: Cidr },
): boolean {
  return settings.exceptions.some((e) => {
    if (!identityGlobMatches(e.policy, policy)) return false;
    if (e.guardrails && !e.guardrails.includes(guardrail)) return false;
    if (!e.cidrs && !e.hosts) return true;
    if (!destination) return false;
    if (destination.cidr) {
      const target = destination.cidr;
      return (e.cidrs ?? []).some((text) => {
        const parsed = parseCidr(text);
        return (
          parsed.ok &&
          parsed.cidr.bytes.length === target.bytes.length &&
          parsed.cidr.prefix <= target.prefix &&
          cidrOverlaps(parsed.cidr, target)
        );
      });
    }
    if (destination.host) {
      const text = destination.host.text;
      return (e.hosts ?? []).some((h) => {
        const parsed = parseHostPattern(h);
        return parsed.ok && parsed.pattern.text === text;
      });
    }
    return false;
  });
}

/** The guardrail settings a set gives itself (defaults, then its `kind: Guardrail` documents). */
export function guardrailSettings(set: PolicySet): GuardrailSettings {
  return settingsOf(set, []);
}

export interface GuardrailOptions {
  /**
   * The policy set currently applied (the previous revision). Needed by `requireObserveFirst`:
   * without it, new policies cannot be told from existing ones and that guardrail is not checked.
   */
  previous?: PolicySet | undefined;
}

/** Every guardrail break of the set (built-in defaults plus `kind: Guardrail` documents). */
export function checkGuardrails(set: PolicySet, options: GuardrailOptions = {}): PolicyError[] {
  const errors: PolicyError[] = [];
  const settings = settingsOf(set, errors);
  const previousNames = options.previous
    ? new Set(options.previous.policies.map((p) => p.metadata.name))
    : undefined;
  for (const policy of set.policies) {
    const name = policy.metadata.name;
    const fail = (path: PathSegment[], guardrail: GuardrailId, message: string) =>
      errors.push(errorAt(policy, path, message, { guardrail }));
    if (settings.requireOwner && !ownerOf(policy) && !exempt(settings, name, 'owner-required'))
      fail(
        ['spec'],
        'owner-required',
        'every policy names an owner: add spec.owner (team or person answerable for it)',
      );
    if (
      settings.requireEnforce &&
      policy.spec.mode !== 'enforce' &&
      !exempt(settings, name, 'enforce-required')
    )
      fail(['spec', 'mode'], 'enforce-required', 'a Guardrail requires every policy to be in enforce mode');
    if (
      settings.requireObserveFirst &&
      previousNames &&
      policy.spec.mode === 'enforce' &&
      !previousNames.has(name) &&
      !exempt(settings, name, 'observe-first')
    )
      fail(
        ['spec', 'mode'],
        'observe-first',
        'a new policy starts in observe mode: apply it with mode: observe, read the would-deny records, then enforce',
      );
    (policy.spec.allow ?? []).forEach((rule, i) => {
      const base: PathSegment[] = ['spec', 'allow', i];
      const facts = destinationFacts(rule, base);
      if (settings.forbidAllowAll && facts.unanchored && !exempt(settings, name, 'allow-all'))
        fail(
          [...base, 'to'],
          'allow-all',
          'allows every destination (no host, url, cidr or aws): name where traffic goes',
        );
      for (const host of facts.hosts) {
        const d = { host: host.pattern };
        if (host.pattern.text === '*') {
          if (settings.forbidAllowAll && !exempt(settings, name, 'allow-all', d))
            fail(host.path, 'allow-all', 'host "*" allows every name');
          continue;
        }
        if (
          settings.forbidBroadWildcards &&
          isBroaderThanRegistrable(host.pattern) &&
          !exempt(settings, name, 'broad-wildcard', d)
        )
          fail(
            host.path,
            'broad-wildcard',
            `${host.pattern.text} is broader than a registrable domain (one owner's names): name the domain, e.g. *.example.${host.pattern.labels.length > 0 ? host.pattern.labels[0] : 'com'}`,
          );
        if (
          settings.forbidMetadataEndpoints &&
          METADATA_HOSTS.some((m) => hostPatternsOverlap(m, host.pattern)) &&
          !exempt(settings, name, 'metadata-endpoint', d)
        )
          fail(
            host.path,
            'metadata-endpoint',
            `${host.pattern.text} is a cloud metadata endpoint (credentials live there)`,
          );
        for (const forbidden of settings.forbidDestinations)
          if (
            forbidden.host &&
            hostPatternsOverlap(forbidden.host, host.pattern) &&
            !exempt(settings, name, 'forbidden-destination', d)
          )
            fail(
              host.path,
              'forbidden-destination',
              `may reach ${forbidden.text}, which a Guardrail forbids${forbidden.reason ? ` (${forbidden.reason})` : ''}`,
            );
      }
      for (const c of facts.cidrs) {
        const d = { cidr: c.cidr };
        if (c.cidr.prefix === 0) {
          if (settings.forbidAllowAll && !exempt(settings, name, 'allow-all', d))
            fail(c.path, 'allow-all', `${c.text} allows every address`);
          continue;
        }
        if (
          settings.forbidMetadataEndpoints &&
          METADATA_CIDRS.some((m) => cidrOverlaps(m, c.cidr)) &&
          !exempt(settings, name, 'metadata-endpoint', d)
        )
          fail(
            c.path,
            'metadata-endpoint',
            `${c.text} includes link-local / cloud metadata addresses (169.254.0.0/16, fd00:ec2::254); a Guardrail exception must name it`,
          );
        for (const forbidden of settings.forbidDestinations)
          if (
            forbidden.cidr &&
            cidrOverlaps(forbidden.cidr, c.cidr) &&
            !exempt(settings, name, 'forbidden-destination', d)
          )
            fail(
              c.path,
              'forbidden-destination',
              `overlaps ${forbidden.text}, which a Guardrail forbids${forbidden.reason ? ` (${forbidden.reason})` : ''}`,
            );
      }
      // Sockets: no exception names them by destination, so only guardrail-wide ones apply.
      for (const u of facts.unix) {
        const abstract = u.pattern.startsWith('@');
        if (unixPatternMatchesAll(u.pattern)) {
          if (settings.forbidAllowAll && !exempt(settings, name, 'allow-all'))
            fail(
              u.path,
              'allow-all',
              `${u.pattern} allows every ${abstract ? 'abstract socket name' : 'Unix socket path'}`,
            );
          continue;
        }
        if (
          settings.forbidBroadWildcards &&
          unixPatternIsBroad(u.pattern) &&
          !exempt(settings, name, 'broad-wildcard')
        )
          fail(
            u.path,
            'broad-wildcard',
            abstract
              ? `${u.pattern} matches names any program may take: start it with a fixed prefix, e.g. @myapp-*`
              : `${u.pattern} is not confined to a directory: start it with the directory the socket lives in, e.g. /run/myapp/*.sock`,
          );
        if (settings.forbidContainerSockets && !exempt(settings, name, 'container-socket')) {
          const match = compileUnixPattern(u.pattern);
          const reached = CONTAINER_SOCKETS.find((socket) => match(socket));
          if (reached)
            fail(
              u.path,
              'container-socket',
              `${u.pattern} reaches ${reached}, a container runtime's API (whoever reaches it is root on the host)`,
            );
        }
      }
    });
  }
  return errors;
}
