// Code in the governed process shares the JavaScript builtins the decision path runs on. Replacing
// Map.prototype.get, an array iterator or the global Map would let it forge a decision without
// touching any hook. Two defences, chosen per builtin so that a correct program behaves exactly as
// without the shim:
// - Prototype methods (Map, Set, WeakMap, String, Array, RegExp, typed arrays, iterators) are left
//   as they are, writable: code may shadow one on its own instance (`myMap.set = …`, the override
//   pattern of memoizers, mocks and npm itself) and V8 keeps its fast paths. Their identity is
//   checked before every decision instead; while one is replaced, decisions are refused.
// - Statics read through a namespace object (JSON.parse, Object.keys, Buffer.from, the node:crypto
//   verifier functions) and the global constructors are made read-only: no instance inherits them,
//   so the read-only property cannot get in the way of an override.
import * as cryptoNamespace from 'node:crypto';

type Holder = Record<PropertyKey, unknown>;
// The CommonJS exports object (what `require('node:crypto')` returns and the kernel reads).
const crypto = ((cryptoNamespace as unknown as { default?: object }).default ?? cryptoNamespace) as object;

// Statics read through their namespace object (no instance inherits them, so no assignment to an
// instance can hit them): made read-only at install.
const STATICS: [string, object | undefined, PropertyKey[]][] = [
  ['Reflect', Reflect, ['apply', 'construct', 'get', 'ownKeys']],
  [
    'Object',
    Object,
    [
      'freeze',
      'hasOwn',
      'keys',
      'entries',
      'getPrototypeOf',
      'defineProperty',
      'getOwnPropertyDescriptor',
      'assign',
    ],
  ],
  ['Number', Number, ['isInteger', 'isSafeInteger', 'isNaN', 'parseInt']],
  ['Math', Math, ['max', 'min']],
  ['JSON', JSON, ['parse', 'stringify']],
  // The signature check: a forged verify, decoder or byte builder would pass a bundle it should refuse.
  ['Buffer', Buffer, ['from', 'concat', 'alloc', 'allocUnsafe', 'byteLength', 'isBuffer', 'compare']],
];

/**
 * Prototype methods the decision path calls. Redefining them, even read-only with the same value,
 * would break the override pattern (an assignment on an instance that would shadow an inherited
 * read-only property throws in strict code) and, for arrays, RegExp and typed arrays, switch V8's
 * fast paths off for the whole process. Their identity is checked before every decision instead.
 * The check is written out property by property (see watchedReplaced): a loop over (object, key)
 * pairs makes every read a megamorphic keyed load, ~1 µs per decision; named reads are ~20× less.
 */
const ArrayProto = Array.prototype as unknown as Holder;
const ArrayIteratorProto = Object.getPrototypeOf([][Symbol.iterator]()) as Holder;
const StringProto = String.prototype as unknown as Holder;
const StringIteratorProto = Object.getPrototypeOf(''[Symbol.iterator]()) as Holder;
const RegExpProto = RegExp.prototype as unknown as Holder;
const Uint8ArrayProto = Uint8Array.prototype as unknown as Holder;
const BufferProto = Buffer.prototype as unknown as Holder;
const MapProto = Map.prototype as unknown as Holder;
const SetProto = Set.prototype as unknown as Holder;
const WeakMapProto = WeakMap.prototype as unknown as Holder;
const MapIteratorProto = Object.getPrototypeOf(new Map()[Symbol.iterator]()) as Holder;
const SetIteratorProto = Object.getPrototypeOf(new Set()[Symbol.iterator]()) as Holder;
const TextDecoderProto = TextDecoder.prototype as unknown as Holder;
const ITERATOR = Symbol.iterator;
const REPLACE = Symbol.replace;
const SPLIT = Symbol.split;
const SEARCH = Symbol.search;
const MATCH = Symbol.match;

const on = (target: Holder, keys: PropertyKey[]): [object, PropertyKey][] =>
  keys.map((key): [object, PropertyKey] => [target, key]);

/** Every watched builtin as [object, key]: what the snapshot captures and the tests replace one by one. */
export const WATCHED: readonly [object, PropertyKey][] = [
  ...on(ArrayProto, [
    'push',
    'pop',
    'shift',
    'unshift',
    'slice',
    'splice',
    'concat',
    'join',
    'indexOf',
    'lastIndexOf',
    'includes',
    'some',
    'every',
    'map',
    'filter',
    'find',
    'findIndex',
    'forEach',
    'reduce',
    'reverse',
    'flat',
    'fill',
    'sort',
    'entries',
    'keys',
    'values',
    ITERATOR,
  ]),
  [ArrayIteratorProto, 'next'],
  [StringProto, ITERATOR],
  [StringIteratorProto, 'next'],
  ...on(RegExpProto, ['exec', 'test', REPLACE, SPLIT, SEARCH, MATCH]),
  ...on(Uint8ArrayProto, ['subarray', 'slice', 'set']),
  ...on(BufferProto, ['toString', 'slice', 'subarray', 'equals', 'write']),
  ...on(MapProto, ['get', 'set', 'has', 'delete', 'clear', 'forEach', 'keys', 'values', 'entries', ITERATOR]),
  ...on(SetProto, ['has', 'add', 'delete', 'clear', 'forEach', 'values', 'keys', ITERATOR]),
  ...on(WeakMapProto, ['get', 'set', 'has', 'delete']),
  [MapIteratorProto, 'next'],
  [SetIteratorProto, 'next'],
  ...on(StringProto, [
    'slice',
    'split',
    'startsWith',
    'endsWith',
    'includes',
    'indexOf',
    'lastIndexOf',
    'toLowerCase',
    'toUpperCase',
    'trim',
    'replace',
    'search',
    'charCodeAt',
    'codePointAt',
    'padStart',
    'substring',
    'normalize',
  ]),
  [TextDecoderProto, 'decode'],
];

/** The watched values captured at install, in WATCHED order (undefined until then). */
let w: unknown[] | undefined;

/** Has any watched builtin been replaced since install? Must read exactly the WATCHED entries. */
function watchedReplaced(s: unknown[]): boolean {
  const A = ArrayProto;
  const R = RegExpProto;
  const U = Uint8ArrayProto;
  const B = BufferProto;
  const M = MapProto;
  const S = SetProto;
  const W = WeakMapProto;
  const T = StringProto;
  return (
    A.push !== s[0] ||
    A.pop !== s[1] ||
    A.shift !== s[2] ||
    A.unshift !== s[3] ||
    A.slice !== s[4] ||
    A.splice !== s[5] ||
    A.concat !== s[6] ||
    A.join !== s[7] ||
    A.indexOf !== s[8] ||
    A.lastIndexOf !== s[9] ||
    A.includes !== s[10] ||
    A.some !== s[11] ||
    A.every !== s[12] ||
    A.map !== s[13] ||
    A.filter !== s[14] ||
    A.find !== s[15] ||
    A.findIndex !== s[16] ||
    A.forEach !== s[17] ||
    A.reduce !== s[18] ||
    A.reverse !== s[19] ||
    A.flat !== s[20] ||
    A.fill !== s[21] ||
    A.sort !== s[22] ||
    A.entries !== s[23] ||
    A.keys !== s[24] ||
    A.values !== s[25] ||
    A[ITERATOR] !== s[26] ||
    ArrayIteratorProto.next !== s[27] ||
    T[ITERATOR] !== s[28] ||
    StringIteratorProto.next !== s[29] ||
    R.exec !== s[30] ||
    R.test !== s[31] ||
    R[REPLACE] !== s[32] ||
    R[SPLIT] !== s[33] ||
    R[SEARCH] !== s[34] ||
    R[MATCH] !== s[35] ||
    U.subarray !== s[36] ||
    U.slice !== s[37] ||
    U.set !== s[38] ||
    B.toString !== s[39] ||
    B.slice !== s[40] ||
    B.subarray !== s[41] ||
    B.equals !== s[42] ||
    B.write !== s[43] ||
    M.get !== s[44] ||
    M.set !== s[45] ||
    M.has !== s[46] ||
    M.delete !== s[47] ||
    M.clear !== s[48] ||
    M.forEach !== s[49] ||
    M.keys !== s[50] ||
    M.values !== s[51] ||
    M.entries !== s[52] ||
    M[ITERATOR] !== s[53] ||
    S.has !== s[54] ||
    S.add !== s[55] ||
    S.delete !== s[56] ||
    S.clear !== s[57] ||
    S.forEach !== s[58] ||
    S.values !== s[59] ||
    S.keys !== s[60] ||
    S[ITERATOR] !== s[61] ||
    W.get !== s[62] ||
    W.set !== s[63] ||
    W.has !== s[64] ||
    W.delete !== s[65] ||
    MapIteratorProto.next !== s[66] ||
    SetIteratorProto.next !== s[67] ||
    T.slice !== s[68] ||
    T.split !== s[69] ||
    T.startsWith !== s[70] ||
    T.endsWith !== s[71] ||
    T.includes !== s[72] ||
    T.indexOf !== s[73] ||
    T.lastIndexOf !== s[74] ||
    T.toLowerCase !== s[75] ||
    T.toUpperCase !== s[76] ||
    T.trim !== s[77] ||
    T.replace !== s[78] ||
    T.search !== s[79] ||
    T.charCodeAt !== s[80] ||
    T.codePointAt !== s[81] ||
    T.padStart !== s[82] ||
    T.substring !== s[83] ||
    T.normalize !== s[84] ||
    TextDecoderProto.decode !== s[85]
  );
}

/** Constructors the decision path creates or whose species it relies on. */
const GLOBALS = [
  'Map',
  'Set',
  'WeakMap',
  'Array',
  'Object',
  'String',
  'Number',
  'RegExp',
  'Reflect',
  'JSON',
  'Math',
  'URL',
  'Uint8Array',
  'Symbol',
  'Error',
  'TypeError',
  'Buffer',
  'TextDecoder',
  'parseInt',
  'isNaN',
];
/** node:crypto functions the verifier calls through the module object (read at call time). */
const CRYPTO = ['verify', 'createPublicKey', 'createHash', 'timingSafeEqual', 'KeyObject'];
// Species, checked by descriptor like the watched methods (a subclass declares its own; nothing is
// redefined): Array's and RegExp's are consulted by the engine's paths, Map's and Set's by none today.
const WATCHED_SPECIES: object[] = [Array, RegExp, Map, Set];
const watchedSpeciesGetters: unknown[] = [];
const getDescriptor = Object.getOwnPropertyDescriptor;
// The getter a constructor's own Symbol.species has (undefined once it is a value or gone), read
// without building a descriptor object: the check runs before every decision, and a flood of
// distinct denies made the four descriptors a decision a measurable part of its garbage.
// Object.prototype.__lookupGetter__ and Reflect.apply as they were when the shim loaded.
const lookupGetter = (Object.prototype as unknown as { __lookupGetter__: (key: PropertyKey) => unknown })
  .__lookupGetter__;
const apply = Reflect.apply;
const SPECIES_KEY = [Symbol.species];
function speciesGetter(ctor: object): unknown {
  return apply(lookupGetter, ctor, SPECIES_KEY);
}

function lockValue(target: object, key: PropertyKey): boolean {
  const descriptor = Object.getOwnPropertyDescriptor(target, key);
  if (!descriptor) return false;
  if (!descriptor.configurable) return descriptor.writable !== true || 'get' in descriptor;
  if ('value' in descriptor) {
    Object.defineProperty(target, key, {
      value: descriptor.value,
      writable: false,
      configurable: false,
      enumerable: descriptor.enumerable ?? false,
    });
  } else {
    Object.defineProperty(target, key, {
      get: descriptor.get,
      set: descriptor.set,
      configurable: false,
      enumerable: descriptor.enumerable ?? false,
    });
  }
  return true;
}

/** Make the builtins the decision path uses read-only. Returns how many were locked; never throws. */
export function hardenIntrinsics(): number {
  let locked = 0;
  if (w === undefined) w = WATCHED.map(([target, key]) => (target as Holder)[key]);
  if (watchedSpeciesGetters.length === 0)
    for (const ctor of WATCHED_SPECIES) watchedSpeciesGetters.push(getDescriptor(ctor, Symbol.species)?.get);
  for (const [, target, keys] of STATICS) {
    if (!target) continue;
    for (const key of keys) {
      try {
        if (lockValue(target, key)) locked++;
      } catch {
        // A builtin another preload already locked differently: leave it.
      }
    }
  }
  for (const name of GLOBALS) {
    try {
      if (lockValue(globalThis, name)) locked++;
    } catch {
      // As above.
    }
  }
  for (const key of CRYPTO) {
    try {
      if (lockValue(crypto, key)) locked++;
    } catch {
      // As above.
    }
  }
  return locked;
}

/** For coverage(): are the locked builtins still the ones captured at install? */
export function intrinsicsIntact(): boolean {
  const descriptor = Object.getOwnPropertyDescriptor(JSON, 'parse') as PropertyDescriptor | undefined;
  return (
    descriptor?.configurable === false &&
    (globalThis as Holder).Map === Map &&
    (w === undefined || !watchedReplaced(w))
  );
}

/**
 * Fields the decision engine's index nodes leave absent until used (trie children, values). An
 * accessor or value planted under one of these names on Object.prototype would be read by every
 * lookup that misses it: the shim checks before each decision and refuses to decide through it.
 */
const OPTIONAL_FIELDS = [
  'children',
  'anyLabel',
  'exact',
  'below',
  'one',
  'zero',
  'values',
  'hosts',
  'cidrs',
  'ports',
  'protocols',
  'methods',
  'paths',
];
const objectPrototype = Object.prototype;
const hasOwn = Object.hasOwn;

/** Has anything the decision engine relies on been planted or replaced since install? */
export function prototypePolluted(): boolean {
  for (let i = 0; i < OPTIONAL_FIELDS.length; i++)
    if (hasOwn(objectPrototype, OPTIONAL_FIELDS[i] as string)) return true;
  if (w !== undefined && watchedReplaced(w)) return true;
  // Like the watched values, the species getters are compared only once captured at install.
  for (let i = 0; i < watchedSpeciesGetters.length; i++)
    if (speciesGetter(WATCHED_SPECIES[i] as object) !== watchedSpeciesGetters[i]) return true;
  return false;
}
