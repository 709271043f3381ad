import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  classifyHost,
  HostTrie,
  hostPatternMatches,
  isBroaderThanRegistrable,
  normalizeHost,
  parseHostPattern,
} from '../../policy/host.js';

function pattern(text: string) {
  const parsed = parseHostPattern(text, { allowInnerWildcard: true });
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.pattern;
}

describe('normalizeHost', () => {
  it.each([
    ['API.Example.COM', 'api.example.com'],
    ['api.example.com.', 'api.example.com'],
    ['bücher.de', 'xn--bcher-kva.de'],
    ['BÜCHER.de.', 'xn--bcher-kva.de'],
    ['xn--bcher-kva.de', 'xn--bcher-kva.de'],
    ['_dmarc.example.com', '_dmarc.example.com'],
  ])('%s → %s', (input, expected) => {
    expect(normalizeHost(input)).toBe(expected);
  });

  it.each([
    '',
    '.',
    'a..b',
    'exa mple.com',
    '-x.com',
    'x-.com',
    `${'a'.repeat(64)}.com`,
    `${'a.'.repeat(127)}com`,
    'api.example.com/evil',
    'api.example.com?x',
    'api.example.com#x',
    'api.example.com\\x',
    'a%2eb.com',
    'a\tb.com',
    'user@example.com',
    'example.com:443',
  ])('%j is refused', (input) => {
    expect(normalizeHost(input)).toBeUndefined();
  });

  it('is idempotent and never throws', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (text) => {
        const once = normalizeHost(text);
        if (once !== undefined) expect(normalizeHost(once)).toBe(once);
      }),
    );
  });
});

describe('classifyHost', () => {
  it('treats numeric last labels as IPv4 literals (WHATWG), never as names', () => {
    expect(classifyHost('0x7f.1')).toEqual({ ip: '127.0.0.1' });
    expect(classifyHost('2130706433')).toEqual({ ip: '127.0.0.1' });
    expect(classifyHost('127.0.0.1.')).toEqual({ ip: '127.0.0.1' });
    expect(classifyHost('[::ffff:169.254.169.254]')).toEqual({ ip: '169.254.169.254' });
    expect(classifyHost('1.2.3.999')).toBeUndefined();
    expect(classifyHost('Example.COM.')).toEqual({ host: 'example.com' });
  });
});

describe('host patterns', () => {
  it('wildcards sit on label boundaries and exclude the apex', () => {
    const p = pattern('*.allowed.com');
    expect(hostPatternMatches(p, 'evil.allowed.com')).toBe(true);
    expect(hostPatternMatches(p, 'a.b.allowed.com')).toBe(true);
    expect(hostPatternMatches(p, 'allowed.com')).toBe(false);
    expect(hostPatternMatches(p, 'notallowed.com')).toBe(false);
    expect(hostPatternMatches(p, 'allowed.com.evil.com')).toBe(false);
  });

  it('refuses wildcards inside labels and IP literals', () => {
    expect(parseHostPattern('api-*.example.com').ok).toBe(false);
    expect(parseHostPattern('api.*.example.com').ok).toBe(false);
    expect(parseHostPattern('*example.com').ok).toBe(false);
    expect(parseHostPattern('10.0.0.1').ok).toBe(false);
    expect(parseHostPattern('0x7f.1').ok).toBe(false);
    expect(parseHostPattern('::1').ok).toBe(false);
  });

  it('canonicalises case, trailing dot and IDN', () => {
    expect(pattern('*.BÜCHER.de.').text).toBe('*.xn--bcher-kva.de');
  });

  it('knows what is broader than a registrable domain', () => {
    for (const broad of [
      '*.com',
      '*.co.uk',
      '*.amazonaws.com',
      '*.s3.amazonaws.com',
      '*.github.io',
      '*.internal',
    ])
      expect(isBroaderThanRegistrable(pattern(broad)), broad).toBe(true);
    for (const fine of ['*.example.com', '*.example.co.uk', 'com', '*.mybucket.s3.amazonaws.com'])
      expect(isBroaderThanRegistrable(pattern(fine)), fine).toBe(false);
  });
});

describe('HostTrie', () => {
  it('answers like a linear scan of the patterns, most specific first', () => {
    const labels = fc.constantFrom('a', 'b', 'example', 'com', 'evil', 'allowed');
    const name = fc.array(labels, { minLength: 1, maxLength: 5 }).map((l) => l.join('.'));
    const pat = fc.tuple(fc.boolean(), name).map(([wild, n]) => (wild ? `*.${n}` : n));
    fc.assert(
      fc.property(fc.array(pat, { maxLength: 30 }), name, (patterns, host) => {
        const trie = new HostTrie<number>();
        const parsed = patterns.map(pattern);
        parsed.forEach((p, i) => {
          trie.insert(p, i);
        });
        const found = trie.lookup(host);
        const expected = parsed.map((p, i) => ({ p, i })).filter(({ p }) => hostPatternMatches(p, host));
        expect([...found].sort((x, y) => x - y)).toEqual(expected.map((e) => e.i).sort((x, y) => x - y));
        // Exact matches come before any wildcard, deeper wildcards before shallower ones.
        const rank = (i: number) => {
          const p = parsed[i];
          return p?.subtree ? 1000 - p.labels.length : 0;
        };
        const ranks = found.map(rank);
        expect([...ranks].sort((x, y) => x - y)).toEqual(ranks);
      }),
    );
  });

  it('matches the one-label inner wildcard used for AWS regions', () => {
    const trie = new HostTrie<string>();
    trie.insert(pattern('b.s3.*.amazonaws.com'), 'vh');
    expect(trie.lookup('b.s3.us-east-1.amazonaws.com')).toEqual(['vh']);
    expect(trie.lookup('b.s3.amazonaws.com')).toEqual([]);
    expect(trie.lookup('b.s3.evil.example.amazonaws.com')).toEqual([]);
  });
});
