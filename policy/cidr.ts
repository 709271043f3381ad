// IP literals and CIDR prefixes. No dependencies: the in-process shim imports this.
//
// Every textual form an IPv4 address can take in a socket API (inet_aton rules: 1–4 parts,
// each decimal, octal with a leading 0, or hex with 0x) is normalised to dotted decimal, and
// IPv4-mapped IPv6 (::ffff:a.b.c.d, ::ffff:7f00:1) to the IPv4 address it reaches, so no
// spelling of an address can dodge a CIDR rule.

/** An address as bytes: 4 for IPv4, 16 for IPv6. */
export type IpBytes = Uint8Array;

const IPV4_PART = /^(?:0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$/;

function parseIpv4Part(part: string): number | undefined {
  if (!IPV4_PART.test(part)) return undefined;
  if (part.length > 1 && (part[1] === 'x' || part[1] === 'X')) {
    // "0x" alone is 0 for inet_aton; keep that behaviour.
    const digits = part.slice(2);
    return digits === '' ? 0 : Number.parseInt(digits, 16);
  }
  if (part.length > 1 && part[0] === '0') return Number.parseInt(part, 8);
  return Number.parseInt(part, 10);
}

/**
 * The value (0 to 2^32 - 1) of a canonical dotted quad: four decimal parts 0-255 without leading
 * zeros, what a socket API hands over after resolution. -1 for every other text. Read without
 * splitting or allocating: a flood of distinct addresses reaches this once per connect.
 */
function canonicalIpv4Value(text: string): number {
  if (text.length < 7 || text.length > 15) return -1;
  let address = 0;
  let parts = 0;
  let digits = 0;
  let value = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i === text.length ? 46 : text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || value > 255 || parts === 4) return -1;
      address = address * 256 + value;
      parts++;
      digits = 0;
      value = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits === 1 && value === 0) return -1;
      value = value * 10 + c - 48;
      digits++;
    } else return -1;
  }
  return parts === 4 ? address : -1;
}

function ipv4Bytes(value: number, into: IpBytes = new Uint8Array(4)): IpBytes {
  into[0] = value >>> 24;
  into[1] = (value >>> 16) & 0xff;
  into[2] = (value >>> 8) & 0xff;
  into[3] = value & 0xff;
  return into;
}

/** Write the bytes of a canonical dotted quad into `into` (4 bytes); false, untouched, for any other text. */
export function readCanonicalIpv4(text: string, into: IpBytes): boolean {
  const value = canonicalIpv4Value(text);
  if (value === -1) return false;
  ipv4Bytes(value, into);
  return true;
}

/** Is `text` a canonical dotted quad (four decimal parts 0-255, no leading zeros)? */
export function isCanonicalIpv4(text: string): boolean {
  return canonicalIpv4Value(text) !== -1;
}

/** inet_aton-compatible IPv4 parse (decimal, octal, hex, 1–4 parts). */
export function parseIpv4(text: string): IpBytes | undefined {
  if (text.length === 0 || text.length > 64) return undefined;
  const canonical = canonicalIpv4Value(text);
  if (canonical !== -1) return ipv4Bytes(canonical);
  // A single trailing dot is accepted by the WHATWG host parser; accept it here too.
  const trimmed = text.endsWith('.') ? text.slice(0, -1) : text;
  const parts = trimmed.split('.');
  if (parts.length > 4) return undefined;
  const values: number[] = [];
  for (const part of parts) {
    const value = parseIpv4Part(part);
    if (value === undefined || !Number.isFinite(value)) return undefined;
    values.push(value);
  }
  const last = values.pop() ?? 0;
  for (const v of values) if (v > 255) return undefined;
  const remainingBytes = 4 - values.length;
  if (last >= 2 ** (8 * remainingBytes)) return undefined;
  const bytes = new Uint8Array(4);
  values.forEach((v, i) => {
    bytes[i] = v;
  });
  for (let i = 3, rest = last; i >= values.length; i--, rest = Math.floor(rest / 256)) bytes[i] = rest % 256;
  return bytes;
}

/** Strict dotted-quad IPv4 (what a policy author writes). */
export function parseDottedIpv4(text: string): IpBytes | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = m[i + 1] as string;
    if (part.length > 1 && part[0] === '0') return undefined;
    const v = Number(part);
    if (v > 255) return undefined;
    bytes[i] = v;
  }
  return bytes;
}

/** IPv6 parse (with optional brackets, zone id, embedded dotted IPv4 tail). */
export function parseIpv6(input: string): IpBytes | undefined {
  let text = input;
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  const zone = text.indexOf('%');
  if (zone !== -1) {
    if (zone === text.length - 1) return undefined;
    text = text.slice(0, zone);
  }
  if (text.length < 2 || text.length > 45 || !text.includes(':')) return undefined;
  let tail: IpBytes | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) !== -1) {
    tail = parseDottedIpv4(text.slice(lastColon + 1));
    if (!tail) return undefined;
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] === '' ? [] : (halves[0] as string).split(':');
  const rest = halves.length === 2 ? (halves[1] === '' ? [] : (halves[1] as string).split(':')) : [];
  const groups = head.length + rest.length;
  if (halves.length === 1 ? groups !== 8 : groups > 7) return undefined;
  const all = [...head, ...new Array<string>(8 - groups).fill('0'), ...rest];
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = all[i] as string;
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    const v = Number.parseInt(g, 16);
    bytes[i * 2] = v >> 8;
    bytes[i * 2 + 1] = v & 0xff;
  }
  if (tail) bytes.set(tail, 12);
  return bytes;
}

/** If `bytes` is IPv4-mapped IPv6 (::ffff:0:0/96), the IPv4 address; else the input. */
export function unmapIpv4(bytes: IpBytes): IpBytes {
  if (bytes.length !== 16) return bytes;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return bytes;
  if (bytes[10] !== 0xff || bytes[11] !== 0xff) return bytes;
  return bytes.slice(12);
}

/** Parse any IP literal form a socket API accepts; IPv4-mapped IPv6 becomes IPv4. */
export function parseIp(text: string): IpBytes | undefined {
  if (text.includes(':')) {
    const v6 = parseIpv6(text);
    return v6 ? unmapIpv4(v6) : undefined;
  }
  return parseIpv4(text);
}

export function formatIp(bytes: IpBytes): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] as number) << 8) | (bytes[i + 1] as number));
  // RFC 5952: compress the longest run (≥ 2) of zero groups, the first one on ties.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLength).join(':');
  return `${left}::${right}`;
}

/**
 * Canonical text of an IP literal in any accepted form (`0177.0.0.1`, `0x7f.1`, `2130706433`,
 * `::ffff:127.0.0.1`, `[::1]`) or undefined when `text` is not an IP literal.
 */
export function normalizeIp(text: string): string | undefined {
  const bytes = parseIp(text);
  return bytes ? formatIp(bytes) : undefined;
}

export interface Cidr {
  bytes: IpBytes;
  prefix: number;
}

/**
 * Parse `a.b.c.d/n`, `v6::/n` or a bare address (a /32 or /128). Strict: dotted-quad IPv4 only,
 * no host bits set. IPv4-mapped IPv6 prefixes of /96 or longer become IPv4 prefixes.
 */
export function parseCidr(text: string): { ok: true; cidr: Cidr } | { ok: false; message: string } {
  const slash = text.indexOf('/');
  const addressText = slash === -1 ? text : text.slice(0, slash);
  const isV6 = addressText.includes(':');
  let bytes = isV6 ? parseIpv6(addressText) : parseDottedIpv4(addressText);
  if (!bytes) return { ok: false, message: `not an IP address or CIDR: ${JSON.stringify(text)}` };
  const max = bytes.length * 8;
  let prefix = max;
  if (slash !== -1) {
    const prefixText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max)
      return { ok: false, message: `prefix length must be 0-${max}, got ${JSON.stringify(prefixText)}` };
    prefix = Number(prefixText);
  }
  for (let bit = prefix; bit < max; bit++) {
    if (((bytes[bit >> 3] as number) >> (7 - (bit & 7))) & 1) {
      const base = formatIp(maskBytes(bytes, prefix));
      return { ok: false, message: `host bits set in ${text}; did you mean ${base}/${prefix}?` };
    }
  }
  if (bytes.length === 16 && prefix >= 96) {
    const unmapped = unmapIpv4(bytes);
    if (unmapped.length === 4) {
      bytes = unmapped;
      prefix -= 96;
    }
  }
  return { ok: true, cidr: { bytes, prefix } };
}

function maskBytes(bytes: IpBytes, prefix: number): IpBytes {
  const out = new Uint8Array(bytes);
  for (let bit = prefix; bit < out.length * 8; bit++)
    out[bit >> 3] = (out[bit >> 3] as number) & ~(1 << (7 - (bit & 7)));
  return out;
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr.bytes)}/${cidr.prefix}`;
}

export function cidrContains(cidr: Cidr, address: IpBytes): boolean {
  if (cidr.bytes.length !== address.length) return false;
  const fullBytes = cidr.prefix >> 3;
  for (let i = 0; i < fullBytes; i++) if (cidr.bytes[i] !== address[i]) return false;
  const remainingBits = cidr.prefix & 7;
  if (remainingBits === 0) return true;
  const mask = (0xff << (8 - remainingBits)) & 0xff;
  return ((cidr.bytes[fullBytes] as number) & mask) === ((address[fullBytes] as number) & mask);
}

/** `a` contains or equals `b` (same family). */
export function cidrCovers(a: Cidr, b: Cidr): boolean {
  return a.bytes.length === b.bytes.length && a.prefix <= b.prefix && cidrContains(a, b.bytes);
}

/** Two prefixes share at least one address. */
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrCovers(a, b) || cidrCovers(b, a);
}

const NO_VALUES: readonly never[] = Object.freeze([]);

interface TrieNode<T> {
  zero?: TrieNode<T>;
  one?: TrieNode<T>;
  values?: T[];
}

/**
 * Binary prefix trie (one per address family): lookup walks at most 32 / 128 bits, whatever
 * the number of prefixes stored, and returns every value whose prefix contains the address,
 * longest prefix first.
 */
export class CidrTrie<T> {
  private readonly v4: TrieNode<T> = {};
  private readonly v6: TrieNode<T> = {};
  /**
   * The merged result for a walk whose deepest prefix with values is the key: every prefix above it
   * is on its path, so the result depends on that node alone. Built on first use, so that a miss on
   * an address under several prefixes allocates nothing; dropped by insert. A Map, not a field on
   * the node: nodes are plain objects, and a field they lack would be read from Object.prototype.
   */
  private readonly merged = new Map<TrieNode<T>, T[]>();

  insert(cidr: Cidr, value: T): void {
    let node = cidr.bytes.length === 4 ? this.v4 : this.v6;
    for (let bit = 0; bit < cidr.prefix; bit++) {
      const set = ((cidr.bytes[bit >> 3] as number) >> (7 - (bit & 7))) & 1;
      if (set) {
        node.one ??= {};
        node = node.one;
      } else {
        node.zero ??= {};
        node = node.zero;
      }
    }
    node.values ??= [];
    node.values.push(value);
    this.merged.clear();
  }

  /** Values of every prefix containing `address`, longest prefix first. Callers must not change the list. */
  lookup(address: IpBytes): readonly T[] {
    let node: TrieNode<T> | undefined = address.length === 4 ? this.v4 : this.v6;
    const bits = address.length * 8;
    let deepest: TrieNode<T> | undefined;
    let lists = 0;
    for (let bit = 0; node; bit++) {
      if (node.values) {
        deepest = node;
        lists++;
      }
      if (bit === bits) break;
      const set = ((address[bit >> 3] as number) >> (7 - (bit & 7))) & 1;
      node = set ? node.one : node.zero;
    }
    if (deepest === undefined) return NO_VALUES;
    if (lists === 1) return deepest.values as T[];
    const known = this.merged.get(deepest);
    if (known) return known;
    // Walk again, keeping every list on the way: the first multi-prefix miss under this node.
    const found: T[][] = [];
    node = address.length === 4 ? this.v4 : this.v6;
    for (let bit = 0; node; bit++) {
      if (node.values) found.push(node.values);
      if (node === deepest) break;
      const set = ((address[bit >> 3] as number) >> (7 - (bit & 7))) & 1;
      node = set ? node.one : node.zero;
    }
    const out: T[] = [];
    for (let i = found.length - 1; i >= 0; i--) for (const value of found[i] as T[]) out.push(value);
    this.merged.set(deepest, out);
    return out;
  }
}
