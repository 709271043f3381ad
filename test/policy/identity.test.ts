import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIdentity, parseIdentity, selectorMatches } from '../../policy/identity.js';

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
