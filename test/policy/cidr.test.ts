import { isIPv4 } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CidrTrie,
  cidrContains,
  formatIp,
  isCanonicalIpv4,
  normalizeIp,
  parseCidr,
  parseIp,
} from '../../policy/cidr.js';

describe('normalizeIp', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['2130706433', '127.0.0.1'],
    ['0177.0.0.1', '127.0.0.1'],
    ['0x7f.1', '127.0.0.1'],
    ['0x7f.0.0.1', '127.0.0.1'],
    ['127.1', '127.0.0.1'],
    ['127.0.1', '127.0.0.1'],
    ['0x7F000001', '127.0.0.1'],
    ['017700000001', '127.0.0.1'],
    ['169.254.169.254', '169.254.169.254'],
    ['0xa9.0xfe.0xa9.0xfe', '169.254.169.254'],
    ['2852039166', '169.254.169.254'],
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::ffff:7f00:1', '127.0.0.1'],
    ['::FFFF:A9FE:A9FE', '169.254.169.254'],
    ['0:0:0:0:0:ffff:a9fe:a9fe', '169.254.169.254'],
    ['[::1]', '::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['fd00:ec2:0:0:0:0:0:254', 'fd00:ec2::254'],
    ['FE80::1%eth0', 'fe80::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
  ])('%s → %s', (input, expected) => {
    expect(normalizeIp(input)).toBe(expected);
  });

  it.each([
    '',
    'localhost',
    '256.0.0.1',
    '1.2.3.4.5',
    '4294967296',
    '0x100000000',
    '08.0.0.1',
    '1.2.3.256',
    '1.2.65536',
    '::ffff::1',
    '1:2:3:4:5:6:7:8:9',
    'example.com',
    '1..2',
    ':::',
    '[::1',
    'fe80::1%',
  ])('%s is not an IP literal', (input) => {
    expect(normalizeIp(input)).toBeUndefined();
  });

  it('round-trips every IPv4 address through its decimal, hex and octal spellings', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (n) => {
        const dotted = `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
        expect(normalizeIp(String(n))).toBe(dotted);
        expect(normalizeIp(`0x${n.toString(16)}`)).toBe(dotted);
        expect(normalizeIp(`0${n.toString(8)}`)).toBe(dotted);
        expect(normalizeIp(`::ffff:${dotted}`)).toBe(dotted);
      }),
    );
  });

  it('reads a canonical dotted quad without the general parser, as Node reads it', () => {
    // The fast path (canonicalIpv4Value) must accept exactly what net.isIPv4 accepts, and agree
    // with the inet_aton reading of everything it accepts.
    const quads = fc.oneof(
      fc
        .array(fc.constantFrom('0', '1', '2', '5', '9', '.'), { maxLength: 18 })
        .map((chars) => chars.join('')),
      fc
        .tuple(
          ...[0, 1, 2, 3].map(() =>
            fc.oneof(fc.integer({ min: 0, max: 300 }), fc.constantFrom('00', '01', '0255', '')),
          ),
        )
        .map((parts) => parts.join('.')),
    );
    fc.assert(
      fc.property(quads, (text) => {
        expect(isCanonicalIpv4(text)).toBe(isIPv4(text));
        if (isIPv4(text)) expect(formatIp(parseIp(text) as Uint8Array)).toBe(text);
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (text) => {
        const out = normalizeIp(text);
        if (out !== undefined) expect(normalizeIp(out)).toBe(out);
      }),
    );
  });

  it('formats IPv6 per RFC 5952 and parses its own output', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const text = formatIp(bytes);
        const back = parseIp(text);
        expect(back).toBeDefined();
        expect(formatIp(back as Uint8Array)).toBe(text);
      }),
    );
  });
});

describe('parseCidr', () => {
  it('accepts prefixes and bare addresses', () => {
    expect(parseCidr('10.0.0.0/8')).toMatchObject({ ok: true, cidr: { prefix: 8 } });
    expect(parseCidr('169.254.169.254')).toMatchObject({ ok: true, cidr: { prefix: 32 } });
    expect(parseCidr('2001:db8::/32')).toMatchObject({ ok: true, cidr: { prefix: 32 } });
    expect(parseCidr('::/0')).toMatchObject({ ok: true, cidr: { prefix: 0 } });
  });

  it('maps IPv4-mapped IPv6 prefixes to IPv4', () => {
    const parsed = parseCidr('::ffff:10.0.0.0/104');
    expect(parsed).toMatchObject({ ok: true, cidr: { prefix: 8 } });
    if (parsed.ok) expect(parsed.cidr.bytes.length).toBe(4);
  });

  it.each([
    ['10.0.0.1/8', 'host bits set'],
    ['10.0.0.0/33', 'prefix length'],
    ['0x0a.0.0.0/8', 'not an IP'],
    ['010.0.0.0/8', 'not an IP'],
    ['10.0.0.0/', 'prefix length'],
    ['hello', 'not an IP'],
  ])('%s is refused (%s)', (text, message) => {
    const parsed = parseCidr(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.message).toContain(message);
  });

  it('contains exactly the addresses of its prefix at the edges', () => {
    const c = parseCidr('10.1.2.0/23');
    if (!c.ok) throw new Error('bad');
    const at = (t: string) => cidrContains(c.cidr, parseIp(t) as Uint8Array);
    expect(at('10.1.1.255')).toBe(false);
    expect(at('10.1.2.0')).toBe(true);
    expect(at('10.1.3.255')).toBe(true);
    expect(at('10.1.4.0')).toBe(false);
    expect(at('::ffff:10.1.3.1')).toBe(true);
  });
});

describe('CidrTrie', () => {
  it('returns every containing prefix, longest first, and agrees with a linear scan', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 })), {
          maxLength: 40,
        }),
        fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 1, maxLength: 6 }),
        (prefixes, addresses) => {
          const trie = new CidrTrie<number>();
          const cidrs = prefixes.map(([n, len]) => {
            const masked = len === 0 ? 0 : (n >>> (32 - len)) << (32 - len);
            const bytes = new Uint8Array([
              (masked >>> 24) & 255,
              (masked >>> 16) & 255,
              (masked >>> 8) & 255,
              masked & 255,
            ]);
            return { bytes, prefix: len };
          });
          cidrs.forEach((c, i) => {
            trie.insert(c, i);
          });
          // Each address twice, and neighbours under the same prefixes: the second walk under a node
          // answers from the merged lists the first one built.
          for (const address of [...addresses, ...addresses, ...addresses.map((a) => (a ^ 1) >>> 0)]) {
            const a = new Uint8Array([
              (address >>> 24) & 255,
              (address >>> 16) & 255,
              (address >>> 8) & 255,
              address & 255,
            ]);
            const found = trie.lookup(a);
            const expected = cidrs.map((c, i) => ({ c, i })).filter(({ c }) => cidrContains(c, a));
            expect([...found].sort((x, y) => x - y)).toEqual(expected.map((e) => e.i).sort((x, y) => x - y));
            const lengths = found.map((i) => cidrs[i]?.prefix ?? -1);
            expect([...lengths].sort((x, y) => y - x)).toEqual(lengths);
          }
        },
      ),
    );
  });
});
