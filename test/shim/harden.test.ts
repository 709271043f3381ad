// The builtin-identity watch is written out property by property for speed; this proves each
// watched builtin, replaced on its own, is seen (and that restoring it clears the alarm).
import { describe, expect, it } from 'vitest';
import { hardenIntrinsics, prototypePolluted, WATCHED } from '../../runtime-shims/node/harden.js';

type Holder = Record<PropertyKey, unknown>;

describe('builtin identity watch', () => {
  hardenIntrinsics();

  it('is quiet while every watched builtin is the one captured at install', () => {
    expect(WATCHED.length).toBeGreaterThan(40);
    expect(prototypePolluted()).toBe(false);
  });

  it.each(WATCHED.map(([target, key], i) => [i, String(key), target, key] as const))(
    'entry %i (%s) replaced is detected',
    (_i, _name, target, key) => {
      const holder = target as Holder;
      const saved = holder[key];
      holder[key] = function impostor() {};
      let seen: boolean;
      try {
        seen = prototypePolluted();
      } finally {
        holder[key] = saved;
      }
      expect(seen).toBe(true);
      expect(prototypePolluted()).toBe(false);
    },
  );

  it('a field planted on Object.prototype is detected', () => {
    (Object.prototype as Holder).children = {};
    let seen: boolean;
    try {
      seen = prototypePolluted();
    } finally {
      delete (Object.prototype as Holder).children;
    }
    expect(seen).toBe(true);
  });
});
