import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkIdentityBounds,
  formatIdentity,
  IDENTITY_BOUNDS,
  parseIdentity,
  selectorMatches,
} from '../../policy/identity.js';

describe('parseIdentity / formatIdentity', () => {
  it('parses the k=v,k=v form', () => {
    expect(parseIdentity('cloud=aws, name=charge-card ,tag.app=payments')).toEqual({
      cloud: 'aws',
      name: 'charge-card',
      'tag.app': 'payments',
    });
    expect(parseIdentity('')).toEqual({});
    expect(parseIdentity('tag.note=a%2Cb%3Dc%25')).toEqual({ 'tag.note': 'a,b=c%' });
  });

  it.each([
    ['noequals', 'expected key=value'],
    ['=v', 'empty key'],
    ['a=1,a=2', 'duplicate key'],
    ['a=%zz', 'percent-encoding'],
    ['__proto__=x', 'reserved key'],
    ['a=1,'.repeat(200), 'more than'],
  ])('%j is refused (%s)', (text, message) => {
    expect(() => parseIdentity(text)).toThrow(message);
  });

  it('format → parse round-trips any identity, and equal identities give equal text', () => {
    const key = fc
      .string({ minLength: 1, maxLength: 12 })
      .filter((k) => !['__proto__', 'constructor', 'prototype'].includes(k.trim()) && k.trim() === k);
    fc.assert(
      fc.property(
        fc.dictionary(
          key,
          fc.string({ maxLength: 12 }).filter((v) => v.trim() === v),
          { maxKeys: 6 },
        ),
        (id) => {
          const text = formatIdentity(id);
          expect(parseIdentity(text)).toEqual(id);
          expect(formatIdentity(parseIdentity(text))).toBe(text);
        },
      ),
    );
  });

  it('never throws anything but a TypeError on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), (text) => {
        try {
          parseIdentity(text);
        } catch (error) {
          expect(error).toBeInstanceOf(TypeError);
        }
      }),
    );
  });
});

describe('checkIdentityBounds', () => {
  // AWS tag keys: letters, digits, spaces and _ . : / = + - @ (= is percent-encoded in the text form).
  const awsTagKey = fc.stringMatching(/^[A-Za-z0-9 _.:/=+@-]{1,128}$/).filter((k) => k.trim() === k);
  const awsTagValue = fc.stringMatching(/^[A-Za-z0-9 _.:/=+@-]{0,256}$/).filter((v) => v.trim() === v);

  it('accepts every AWS identity whose tags fit a function environment (4 KiB for all variables)', () => {
    fc.assert(
      fc.property(
        fc.dictionary(awsTagKey, awsTagValue, { maxKeys: 50 }),
        fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
        (tags, name) => {
          fc.pre(formatIdentity(tags).length <= 4096 - 'BULKHEAD_TAGS'.length);
          const identity: Record<string, string> = {
            account: '123456789012',
            cloud: 'aws',
            name,
            region: 'ap-southeast-2',
            runtime: 'nodejs22.x',
            version: '$LATEST',
          };
          for (const [key, value] of Object.entries(tags)) identity[`tag.${key}`] = value;
          expect(() => checkIdentityBounds(parseIdentity(formatIdentity(identity)))).not.toThrow();
        },
      ),
      { numRuns: 200 },
    );
  });

  it('refuses an identity beyond any one bound, naming that bound', () => {
    const cases: [Record<string, string>, number][] = [
      [
        Object.fromEntries(Array.from({ length: IDENTITY_BOUNDS.attributes + 1 }, (_, i) => [`k${i}`, 'v'])),
        IDENTITY_BOUNDS.attributes,
      ],
      [{ ['k'.repeat(IDENTITY_BOUNDS.keyLength + 1)]: 'v' }, IDENTITY_BOUNDS.keyLength],
      [{ k: 'v'.repeat(IDENTITY_BOUNDS.valueLength + 1) }, IDENTITY_BOUNDS.valueLength],
      [
        Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`tag.k${i}`, 'v'.repeat(250)])),
        IDENTITY_BOUNDS.textLength,
      ],
    ];
    for (const [identity, bound] of cases) {
      expect(() => checkIdentityBounds(identity)).toThrow(TypeError);
      expect(() => checkIdentityBounds(identity)).toThrow(String(bound));
    }
  });

  it('passes exactly the identities within every bound, and whatever passes, any part of it passes', () => {
    const within = (identity: Record<string, string>) =>
      Object.keys(identity).length <= IDENTITY_BOUNDS.attributes &&
      Object.keys(identity).every(
        (k) =>
          k.length <= IDENTITY_BOUNDS.keyLength && (identity[k] ?? '').length <= IDENTITY_BOUNDS.valueLength,
      ) &&
      formatIdentity(identity).length <= IDENTITY_BOUNDS.textLength;
    const passes = (identity: Record<string, string>) => {
      try {
        checkIdentityBounds(identity);
        return true;
      } catch (error) {
        expect(error).toBeInstanceOf(TypeError);
        return false;
      }
    };
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ minLength: 1, maxLength: 200 }), fc.string({ maxLength: 300 }), {
          maxKeys: 100,
        }),
        fc.nat(),
        (identity, drop) => {
          expect(passes(identity)).toBe(within(identity));
          if (!passes(identity)) return;
          const keys = Object.keys(identity);
          const part = Object.fromEntries(
            Object.entries(identity).filter((_, i) => i !== drop % keys.length),
          );
          expect(passes(part)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('selectorMatches', () => {
  const id = parseIdentity('cloud=aws,name=charge-card,tag.app=payments,tag.env=prod');
  it('exact, glob, tag equality and presence; every key must hold', () => {
    expect(selectorMatches({}, id)).toBe(true);
    expect(selectorMatches({ cloud: ['aws'], name: ['charge-*'] }, id)).toBe(true);
    expect(selectorMatches({ cloud: ['gcp', 'aws'] }, id)).toBe(true);
    expect(selectorMatches({ name: ['charge'] }, id)).toBe(false);
    expect(selectorMatches({ 'tag.env': ['*'] }, id)).toBe(true);
    expect(selectorMatches({ 'tag.team': ['*'] }, id)).toBe(false);
    expect(selectorMatches({ 'tag.app': ['payments'], 'tag.env': ['dev'] }, id)).toBe(false);
    expect(selectorMatches({ name: ['charge-car?'] }, id)).toBe(true);
    expect(selectorMatches({ name: ['charge.card'] }, id)).toBe(false);
  });
});

describe('selector globs on hostile values', () => {
  it('many stars against a long workload name finish (values come from workloads)', () => {
    const name = 'a'.repeat(8000);
    expect(selectorMatches({ name: ['*a*a*a*a*a*a*a*b'] }, { name })).toBe(false);
    expect(selectorMatches({ name: ['a?a*'] }, { name })).toBe(true);
  });
});
