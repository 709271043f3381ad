// Destination patterns for aggregated deny records (contract §3, "Aggregates"). When a flood of
// distinct denies overflows the record queue, denies are counted per pattern instead of one
// record each: names under their registrable domain, addresses under their /24 (IPv4) or /64
// (IPv6) with the range of ports, Unix sockets under their directory, commands as themselves.
// Pure string work, no allocation beyond the key and the value: it runs once per overflowing deny.
import { isCanonicalIpv4, parseIp } from '../../policy/cidr.js';
import type { DenyRecord } from '../../policy/types.js';

type Destination = DenyRecord['destination'];

/** Longest pattern, value or sample text kept (the control API refuses longer ones). */
export const MAX_PATTERN_TEXT = 300;

/**
 * Second-level labels that are public suffixes under a two-letter country code (`co.uk`,
 * `com.au`, `ac.jp`, `gov.br`, `ne.jp`, `gob.mx`, …). A documented heuristic instead of the
 * public-suffix list: it errs toward a wider pattern (`*.example.co.uk` is right; an unlisted
 * suffix such as `*.pvt.k12.ma.us` would be grouped one label wider than its registrable domain,
 * which still names the attacker's names and never hides a count).
 */
const COUNTRY_SECOND_LEVEL = new Set([
  'ac',
  'co',
  'com',
  'edu',
  'go',
  'gob',
  'gov',
  'gv',
  'ltd',
  'mil',
  'ne',
  'net',
  'nic',
  'nom',
  'or',
  'org',
  'plc',
  'sch',
]);

/**
 * The registrable domain of a (lowercase) DNS name by the heuristic above: the last two labels,
 * or the last three when the name ends in `<listed second level>.<two-letter TLD>`. A name with
 * fewer labels than that is its own registrable domain. A trailing dot is ignored.
 */
export function registrableDomain(name: string): string {
  const text = name.endsWith('.') ? name.slice(0, -1) : name;
  const last = text.lastIndexOf('.');
  if (last <= 0) return text;
  const second = text.lastIndexOf('.', last - 1);
  if (second < 0) return text;
  if (text.length - last - 1 === 2 && COUNTRY_SECOND_LEVEL.has(text.slice(second + 1, last))) {
    const third = text.lastIndexOf('.', second - 1);
    return third < 0 ? text : text.slice(third + 1);
  }
  return text.slice(second + 1);
}

/** Where a deny falls when flooding: `base` groups it, `value` tells it apart from its neighbours. */
export interface PatternOf {
  /** The group: `*.attacker.test`, `10.1.2.0/24`, `2001:db8:0:1::/64`, `/var/run/*`, a command, `*`. */
  base: string;
  /** The address, when `base` is a prefix of addresses (an aggregate names it if it is the only one). */
  ip: string | undefined;
  /** The distinct value within the group: the name, `address:port`, `name:port[/path]`, the socket, the command. */
  value: string;
}

function clip(text: string): string {
  return text.length > MAX_PATTERN_TEXT ? text.slice(0, MAX_PATTERN_TEXT) : text;
}

let lastIpv4Head = '';
let lastIpv4Dot = -1;
let lastIpv4Base = '';

/** The prefix an address is grouped under: /24 for IPv4, /64 for IPv6. undefined: not an address. */
export function addressPrefix(ip: string): string | undefined {
  // The common case without parsing into bytes: the first three parts as written.
  if (isCanonicalIpv4(ip)) {
    // A flood's addresses share their /24 one after the other: the last one's group, not a new string.
    const dot = ip.lastIndexOf('.');
    if (dot !== lastIpv4Dot || !ip.startsWith(lastIpv4Head)) {
      lastIpv4Head = ip.slice(0, dot + 1);
      lastIpv4Dot = dot;
      lastIpv4Base = `${lastIpv4Head}0/24`;
    }
    return lastIpv4Base;
  }
  const bytes = parseIp(ip);
  if (!bytes) return undefined;
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.0/24`;
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2)
    groups.push((((bytes[i] as number) << 8) | (bytes[i + 1] as number)).toString(16));
  return `${groups.join(':')}::/64`;
}

function nameBase(host: string): string {
  const domain = registrableDomain(host);
  // A single-label name (`localhost`, `wpad`) has no domain to group under.
  return domain.includes('.') ? `*.${domain}` : '*';
}

/** The group and the distinct value of a destination. Never throws. */
export function patternOf(d: Destination): PatternOf {
  // An HTTP deny's path tells requests to one host apart (data can travel in it): part of the value.
  const port = d.port === undefined ? '' : d.path === undefined ? `:${d.port}` : `:${d.port}${d.path}`;
  if (d.command !== undefined) return { base: clip(d.command), ip: undefined, value: clip(d.command) };
  if (d.socket !== undefined) {
    const slash = d.socket.lastIndexOf('/');
    const base = d.socket.startsWith('@') ? '@*' : slash >= 0 ? `${d.socket.slice(0, slash + 1)}*` : '*';
    return { base: clip(base), ip: undefined, value: clip(d.socket) };
  }
  const host = d.host ?? d.sni;
  if (host !== undefined && host !== '') {
    const prefix = host.includes(':') || /^[\d.]+$/.test(host) ? addressPrefix(host) : undefined;
    if (prefix !== undefined) return { base: prefix, ip: host, value: clip(`${host}${port}`) };
    return { base: clip(nameBase(host.toLowerCase())), ip: undefined, value: clip(`${host}${port}`) };
  }
  if (d.ip !== undefined) {
    const prefix = addressPrefix(d.ip);
    if (prefix !== undefined) return { base: prefix, ip: d.ip, value: clip(`${d.ip}${port}`) };
    return { base: '*', ip: undefined, value: clip(`${d.ip}${port}`) };
  }
  return { base: '*', ip: undefined, value: clip(port === '' ? '*' : port) };
}

/** The pattern an aggregate reports: its group (or its only address), then its ports. */
export function patternText(
  base: string,
  onlyIp: string | undefined,
  minPort: number | undefined,
  maxPort: number | undefined,
): string {
  const where = onlyIp ?? base;
  if (minPort === undefined || maxPort === undefined) return clip(where);
  const v6 = where.includes(':');
  const head = v6 && onlyIp !== undefined ? `[${where}]` : where;
  return clip(minPort === maxPort ? `${head}:${minPort}` : `${head}:${minPort}-${maxPort}`);
}
