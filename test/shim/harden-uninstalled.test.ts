// ShimCore is also used without install() (benchmarks, wrappers that drive it directly): with nothing
// captured yet, the tamper check has nothing to compare against and must not report tampering.
import { describe, expect, it } from 'vitest';
import { hardenIntrinsics, prototypePolluted } from '../../runtime-shims/node/harden.js';

describe('tamper check before install', () => {
  it('reports nothing until builtins are captured, then watches them', () => {
    expect(prototypePolluted()).toBe(false);
    hardenIntrinsics();
    hardenIntrinsics(); // idempotent
    expect(prototypePolluted()).toBe(false);
    const original = Array.prototype.push;
    try {
      Array.prototype.push = function forged(this: unknown[], ...items: unknown[]) {
        return original.apply(this, items);
      };
      expect(prototypePolluted()).toBe(true);
    } finally {
      Array.prototype.push = original;
    }
    expect(prototypePolluted()).toBe(false);
  });
});
