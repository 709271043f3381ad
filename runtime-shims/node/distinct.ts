// The distinct destinations of an aggregate record, counted without keeping them (contract §3,
// `aggregate.distinct`). A flood of 100,000 distinct names or address:port pairs used to keep up to
// 50,000 strings in a Set per delivery window: a few MB that lived just long enough to be promoted
// to V8's old space, whose next collection is then scheduled at a multiple of that size (the flood's
// RSS grew with it). Here each value is two 32-bit hashes in an open-addressed table of typed
// arrays: 8 bytes a value, no object per value, no string kept.
//
// Exact up to hash collisions: two distinct values share both hashes with odds of about n²/2⁶⁵
// (one in 10¹⁰ for 50,000 values); a collision undercounts `distinct` by one, never a deny's
// `count`. Hashing reads the value's characters and allocates nothing. Tables hold no secrets: a
// value is never recoverable from them.

/** Slots a table starts with, and shrinks back to when a window closes (a power of two). */
const INITIAL_SLOTS = 64;
// As it was when the shim loaded: a replaced Math.imul must not fold every value into one.
const imul = Math.imul;

export class DistinctSet {
  #high = new Uint32Array(INITIAL_SLOTS);
  #low = new Uint32Array(INITIAL_SLOTS);
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Remember `value`; true when it was not seen before. */
  add(value: string): boolean {
    // FNV-1a and a multiplicative hash with another seed, in one pass over the UTF-16 units.
    let a = 0x811c9dc5;
    let b = 0x9e3779b9;
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      a = imul(a ^ c, 0x01000193);
      b = imul(b ^ c, 0x5bd1e995) ^ (b >>> 15);
    }
    a ^= value.length;
    b = imul(b ^ (b >>> 13), 0xc2b2ae35) ^ value.length;
    const high = a >>> 0;
    // (0, 0) marks an empty slot: a value that hashes there is stored as (0, 1).
    const low = high === 0 && b >>> 0 === 0 ? 1 : b >>> 0;
    if (this.#insert(high, low)) {
      this.#size++;
      if (this.#size * 2 > this.#high.length) this.#grow();
      return true;
    }
    return false;
  }

  /** Forget every value (a window closed); a table grown by a flood goes back to its first size. */
  clear(): void {
    if (this.#size === 0) return;
    if (this.#high.length > INITIAL_SLOTS) {
      this.#high = new Uint32Array(INITIAL_SLOTS);
      this.#low = new Uint32Array(INITIAL_SLOTS);
    } else {
      this.#high.fill(0);
      this.#low.fill(0);
    }
    this.#size = 0;
  }

  /** Linear probing; false when (high, low) is already there. */
  #insert(high: number, low: number): boolean {
    const highs = this.#high;
    const lows = this.#low;
    const mask = highs.length - 1;
    for (let slot = (low ^ high) & mask; ; slot = (slot + 1) & mask) {
      const h = highs[slot] as number;
      const l = lows[slot] as number;
      if (h === 0 && l === 0) {
        highs[slot] = high;
        lows[slot] = low;
        return true;
      }
      if (h === high && l === low) return false;
    }
  }

  #grow(): void {
    const highs = this.#high;
    const lows = this.#low;
    this.#high = new Uint32Array(highs.length * 2);
    this.#low = new Uint32Array(lows.length * 2);
    for (let slot = 0; slot < highs.length; slot++) {
      const h = highs[slot] as number;
      const l = lows[slot] as number;
      if (h !== 0 || l !== 0) this.#insert(h, l);
    }
  }
}
