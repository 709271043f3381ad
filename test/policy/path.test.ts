import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkPathGlob, compileGlob, normalizePath, wildcardMatch } from '../../policy/path.js';

describe('normalizePath', () => {
  it.each([
    ['/v1/../admin', '/admin'],
    ['/v1/./charges', '/v1/charges'],
    ['/v1//charges', '/v1/charges'],
    ['//v1/charges', '/v1/charges'],
    ['/v1/%2e%2e/admin', '/admin'],
    ['/v1/%2E%2E/admin', '/admin'],
    ['/v1/.%2e/admin', '/admin'],
    ['/v1\\..\\admin', '/admin'],
    ['/v1/..;/admin', '/admin'],
    ['/v1/charges;jsessionid=1', '/v1/charges;jsessionid=1'],
    ['/%76%31/charges', '/v1/charges'],
    ['/v1%2F..%2Fadmin', '/v1%2F..%2Fadmin'],
    ['/v1/a%2fb', '/v1/a%2Fb'],
    ['/../../etc/passwd', '/etc/passwd'],
    ['/v1/charges?x=/../admin', '/v1/charges'],
    ['/v1/charges#/../admin', '/v1/charges'],
    ['http://evil.com/v1/../admin', '/admin'],
    ['', '/'],
    ['v1/x', '/v1/x'],
    ['/v1/', '/v1/'],
    ['/%zz/x', '/%zz/x'],
  ])('%s → %s', (input, expected) => {
    expect(normalizePath(input)).toBe(expected);
  });

  it('is idempotent, starts with "/" and has no dot segments, on any input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (raw) => {
        const once = normalizePath(raw);
        expect(once.startsWith('/')).toBe(true);
        expect(normalizePath(once)).toBe(once);
        expect(once.split('/')).not.toContain('..');
        expect(once).not.toContain('//');
      }),
    );
  });
});

describe('compileGlob', () => {
  it('`*` stays in one segment, `**` crosses them, trailing `/**` covers the prefix itself', () => {
    const g = compileGlob('/v1/**');
    expect(g('/v1')).toBe(true);
    expect(g('/v1/')).toBe(true);
    expect(g('/v1/a/b')).toBe(true);
    expect(g('/v10')).toBe(false);
    expect(g('/v2/a')).toBe(false);
    const one = compileGlob('/repos/*/pulls');
    expect(one('/repos/x/pulls')).toBe(true);
    expect(one('/repos/x/y/pulls')).toBe(false);
    const literal = compileGlob('/a.b(c)+');
    expect(literal('/a.b(c)+')).toBe(true);
    expect(literal('/aXb(c)+')).toBe(false);
  });

  it('a normalised path never escapes a prefix glob through dot segments', () => {
    const g = compileGlob('/v1/**');
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('..', '.', '%2e%2e', '.%2e', 'x', '', '..;', '\\..'), { maxLength: 6 }),
        (segs) => {
          const path = normalizePath(`/v1/${segs.join('/')}/admin`);
          if (g(path)) expect(path.startsWith('/v1')).toBe(true);
        },
      ),
    );
  });
});

describe('checkPathGlob', () => {
  it('refuses globs that are not normalised', () => {
    expect(checkPathGlob('/v1/**')).toBeUndefined();
    expect(checkPathGlob('v1/**')).toContain('start with');
    expect(checkPathGlob('/v1/../admin')).toContain('not normalised');
    expect(checkPathGlob('/v1//x')).toContain('not normalised');
    expect(checkPathGlob('/v1?x=1')).toContain('query');
    expect(checkPathGlob('/%41')).toContain('not normalised');
  });
});

describe('glob matching on hostile input', () => {
  it('stays linear: many wildcards against a long path or value finish (a backtracking regex would not)', () => {
    const glob = compileGlob('/**/a*a*a*a*a*b/**/a*a*a*b');
    expect(glob(`/${'a'.repeat(20_000)}`)).toBe(false);
    expect(glob(`/${'a/'.repeat(5_000)}x`)).toBe(false);
    expect(wildcardMatch('*a*a*a*a*a*a*b', 'a'.repeat(50_000))).toBe(false);
    expect(wildcardMatch('*a*a*a*a*a*a*b', `${'a'.repeat(50_000)}b`)).toBe(true);
  });

  it('agrees with a reference regular expression on small inputs', () => {
    const toRegex = (g: string) =>
      new RegExp(
        `^${g
          .split('*')
          .map((p) => p.replace(/[\\^$.|?+()[\]{}]/g, '\\$&'))
          .join('.*')}$`,
        's',
      );
    fc.assert(
      fc.property(fc.stringMatching(/^[ab*]{0,8}$/), fc.stringMatching(/^[ab]{0,10}$/), (pattern, text) => {
        expect(wildcardMatch(pattern, text)).toBe(toRegex(pattern).test(text));
      }),
    );
  });

  it('"**" must be a whole segment', () => {
    expect(checkPathGlob('/files/**.pdf')).toContain('whole segment');
    expect(checkPathGlob('/a/***')).toContain('whole segment');
    expect(checkPathGlob('/a/**/b/*.pdf')).toBeUndefined();
    const g = compileGlob('/a/**/b/*.pdf');
    expect(g('/a/b/x.pdf')).toBe(true);
    expect(g('/a/x/y/b/x.pdf')).toBe(true);
    expect(g('/a/x/y/b/c/x.pdf')).toBe(false);
  });
});
