// Host names: normalisation, patterns, and the reversed-label trie the decision engine walks.
// No dependencies beyond node:url: the in-process shim imports this.
import { domainToASCII } from 'node:url';
import { normalizeIp } from './cidr.js';

const WILDCARD_PLACEHOLDER = 'bulkhead-any-label';
// A canonical name: lower-case LDH (and `_`) labels of 1-63 characters, 253 at most in all.
const CANONICAL_HOST =
  /^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
const NUMERIC_LABEL = /^(?:[0-9]+|0[xX][0-9a-fA-F]*)$/;

/**
 * Canonical form of a DNS name: lower case, no trailing dot, IDN as punycode (xn--).
 * Returns undefined for text that is not a usable host name (empty, spaces, empty labels,
 * over 253 characters). IP literals are not host names: see `classifyHost`.
 */
export function normalizeHost(text: string): string | undefined {
  if (text.length === 0 || text.length > 1024) return undefined;
  // Already canonical (the common case): no allocation.
  if (CANONICAL_HOST.test(text)) return text;
  // domainToASCII parses like a URL host: it would cut at "/", "?" or "#", strip tabs and decode
  // "%2e". A name must be decided as the resolver will see it, so any ASCII outside LDH, "_" and
  // "." is refused before IDN mapping (non-ASCII goes through UTS #46 to punycode).
  if (hasForbiddenAscii(text)) return undefined;
  let host = domainToASCII(text);
  if (host.endsWith('.')) host = host.slice(0, -1);
  return CANONICAL_HOST.test(host) ? host : undefined;
}

/** The last label is all digits or `0x` hex (checked in place: this runs on every miss). */
/** ASCII other than letters, digits, "-", "." and "_" (control characters included). */
function hasForbiddenAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) continue;
    const allowed =
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x2d ||
      c === 0x2e ||
      c === 0x5f;
    if (!allowed) return true;
  }
  return false;
}

function lastLabelIsNumeric(name: string): boolean {
  const start = name.lastIndexOf('.') + 1;
  if (start >= name.length) return false;
  const c0 = name.charCodeAt(start);
  const c1 = name.charCodeAt(start + 1);
  if (c0 === 48 && (c1 === 120 || c1 === 88)) return NUMERIC_LABEL.test(name.slice(start));
  for (let i = start; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/**
 * What a destination string names: an IP literal (every IPv4 form, IPv6 with or without
 * brackets, IPv4-mapped → IPv4) or a DNS name. The WHATWG rule applies: a name whose last
 * label is numeric is an IPv4 literal (`0x7f.1`, `2130706433`), never a host name.
 */
export function classifyHost(text: string): { ip: string } | { host: string } | undefined {
  if (text.includes(':') || text.startsWith('[')) {
    const ip = normalizeIp(text);
    return ip === undefined ? undefined : { ip };
  }
  const trimmed = text.endsWith('.') ? text.slice(0, -1) : text;
  if (lastLabelIsNumeric(trimmed)) {
    const ip = normalizeIp(trimmed);
    return ip === undefined ? undefined : { ip };
  }
  const host = normalizeHost(text);
  if (host === undefined) return undefined;
  // IDN mapping can turn full-width digits into ASCII ones: the WHATWG rule applies again.
  if (lastLabelIsNumeric(host)) {
    const ip = normalizeIp(host);
    return ip === undefined ? undefined : { ip };
  }
  return { host };
}

/**
 * A host pattern from a policy: `api.example.com` (that name only) or `*.example.com` (any name
 * below example.com, at any depth, not example.com itself). Internally `*` may also stand for
 * exactly one label in the middle (`b.s3.*.amazonaws.com`), used by the AWS expansions.
 */
export interface HostPattern {
  /** Labels from the top: `['com', 'example', '*']`. `*` in the middle = one label. */
  labels: string[];
  /** Leading `*.`: the pattern matches one or more labels below `labels`. */
  subtree: boolean;
  text: string;
}

export function parseHostPattern(
  text: string,
  options: { allowInnerWildcard?: boolean } = {},
): { ok: true; pattern: HostPattern } | { ok: false; message: string } {
  if (text === '*') return { ok: true, pattern: { labels: [], subtree: true, text: '*' } };
  const subtree = text.startsWith('*.');
  const rest = subtree ? text.slice(2) : text;
  // Canonical already (what compiled bundles hold): no IDN or placeholder work.
  if (CANONICAL_HOST.test(rest) && !lastLabelIsNumeric(rest))
    return { ok: true, pattern: { labels: rest.split('.').reverse(), subtree, text } };
  if (rest.includes(':') || rest.includes('[') || normalizeIp(rest) !== undefined)
    return { ok: false, message: `${JSON.stringify(text)} is an IP address: use cidr` };
  const placeholders: string[] = [];
  for (const label of rest.split('.')) {
    if (label === '*' && options.allowInnerWildcard) placeholders.push(WILDCARD_PLACEHOLDER);
    else if (label.includes('*'))
      return {
        ok: false,
        message: `wildcard only as a whole leading label ("*.example.com"), got ${JSON.stringify(text)}`,
      };
    else placeholders.push(label);
  }
  const normal = normalizeHost(placeholders.join('.'));
  if (normal === undefined) return { ok: false, message: `not a valid host name: ${JSON.stringify(text)}` };
  const lastLabel = normal.slice(normal.lastIndexOf('.') + 1);
  if (/^\d+$/.test(lastLabel))
    return { ok: false, message: `${JSON.stringify(text)} is an IP address: use cidr` };
  const labels = normal
    .split('.')
    .map((label) => (label === WILDCARD_PLACEHOLDER ? '*' : label))
    .reverse();
  const canonical = (subtree ? '*.' : '') + [...labels].reverse().join('.');
  return { ok: true, pattern: { labels, subtree, text: canonical } };
}

export function hostPatternMatches(pattern: HostPattern, host: string): boolean {
  const labels = host.split('.').reverse();
  if (pattern.subtree ? labels.length <= pattern.labels.length : labels.length !== pattern.labels.length)
    return false;
  return pattern.labels.every((label, i) => label === '*' || label === labels[i]);
}

// A deliberately small public-suffix list (the common ones, plus shared-hosting suffixes where
// one customer's subdomain is another's attacker): `*.<suffix>` is broader than a registrable
// domain. Any single label (`*.com`, `*.internal`) counts too. Not the full PSL: say so.
const PUBLIC_SUFFIXES = new Set(
  [
    'com net org edu gov mil int info biz name pro io co ai app dev cloud xyz online site tech me tv cc ws us uk eu de fr',
    'nl be ch at es it se no dk fi pl cz ru ua cn jp kr in au nz ca br mx ar za sg hk tw',
    'co.uk org.uk ac.uk gov.uk com.au net.au org.au co.jp ne.jp or.jp co.nz com.br com.cn com.mx co.in co.za com.sg com.hk',
    'amazonaws.com s3.amazonaws.com compute.amazonaws.com elb.amazonaws.com cloudfront.net awsapprunner.com',
    'lambda-url.us-east-1.on.aws on.aws execute-api.us-east-1.amazonaws.com',
    'azurewebsites.net blob.core.windows.net core.windows.net cloudapp.net azurestaticapps.net azure-api.net',
    'appspot.com run.app cloudfunctions.net web.app firebaseapp.com googleusercontent.com storage.googleapis.com',
    'herokuapp.com github.io githubusercontent.com gitlab.io vercel.app netlify.app pages.dev workers.dev',
    'ngrok.io ngrok-free.app ngrok.app trycloudflare.com fly.dev onrender.com glitch.me repl.co',
  ]
    .join(' ')
    .split(' '),
);

/** `*.<suffix>` where suffix is a public suffix or a single label: broader than a registrable domain. */
export function isBroaderThanRegistrable(pattern: HostPattern): boolean {
  if (!pattern.subtree) return false;
  if (pattern.labels.length <= 1) return true;
  if (pattern.labels.includes('*')) return false;
  return PUBLIC_SUFFIXES.has([...pattern.labels].reverse().join('.'));
}

interface HostTrieNode<T> {
  children?: Map<string, HostTrieNode<T>>;
  /** Single-label wildcard child (`*` in the middle of a pattern). */
  anyLabel?: HostTrieNode<T>;
  /** Patterns ending exactly here. */
  exact?: T[];
  /** `*.` patterns rooted here: match names strictly below this node. */
  below?: T[];
}

/**
 * Reversed-label trie: a lookup walks the labels of the name from the top (com → example →
 * api), so its cost grows with the length of the name, not the number of patterns.
 * Values come back most specific first (exact, then the deepest `*.` wildcard).
 */
export class HostTrie<T> {
  private readonly root: HostTrieNode<T> = {};
  size = 0;

  insert(pattern: HostPattern, value: T): void {
    let node = this.root;
    for (const label of pattern.labels) {
      if (label === '*') {
        node.anyLabel ??= {};
        node = node.anyLabel;
      } else {
        node.children ??= new Map();
        let next = node.children.get(label);
        if (!next) {
          next = {};
          node.children.set(label, next);
        }
        node = next;
      }
    }
    if (pattern.subtree) {
      node.below ??= [];
      node.below.push(value);
    } else {
      node.exact ??= [];
      node.exact.push(value);
    }
    this.size++;
  }

  /** Every value whose pattern matches `host` (already normalised). */
  lookup(host: string): T[] {
    const exact: T[] = [];
    const below: T[][] = [];
    this.walk(this.root, host, host.length, exact, below);
    for (let i = below.length - 1; i >= 0; i--) for (const value of below[i] as T[]) exact.push(value);
    return exact;
  }

  /** `end`: exclusive end of the labels not consumed yet (-1 when all are). */
  private walk(node: HostTrieNode<T>, host: string, end: number, exact: T[], below: T[][]): void {
    if (end < 0) {
      if (node.exact) for (const value of node.exact) exact.push(value);
      return;
    }
    if (node.below) below.push(node.below);
    const start = host.lastIndexOf('.', end - 1) + 1;
    const next = node.children?.get(start === 0 && end === host.length ? host : host.slice(start, end));
    if (next) this.walk(next, host, start - 1, exact, below);
    if (node.anyLabel) this.walk(node.anyLabel, host, start - 1, exact, below);
  }
}
