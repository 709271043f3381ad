// Code in the governed process shares the JavaScript builtins the decision path runs on. Replacing
// Map.prototype.get, an array iterator or the global Map would let it forge a decision without
// touching any hook. The builtins the path uses are made read-only at install (the methods named
// below, not whole prototypes): an assignment over one fails (TypeError in strict code), which the
// README lists as the one behaviour change the shim makes to the language.

import * as cryptoNamespace from 'node:crypto';

type Holder = Record<PropertyKey, unknown>;
// The CommonJS exports object (what `require('node:crypto')` returns and the kernel reads).
const crypto = ((cryptoNamespace as unknown as { default?: object }).default ?? cryptoNamespace) as object;

const METHODS: [string, object | undefined, PropertyKey[]][] = [
  [
    'Map.prototype',
    Map.prototype,
    ['get', 'set', 'has', 'delete', 'clear', 'forEach', 'keys', 'values', 'entries', Symbol.iterator],
  ],
  [
    'Set.prototype',
    Set.prototype,
    ['has', 'add', 'delete', 'clear', 'forEach', 'values', 'keys', Symbol.iterator],
  ],
  ['WeakMap.prototype', WeakMap.prototype, ['get', 'set', 'has', 'delete']],
  ['MapIterator', Object.getPrototypeOf(new Map()[Symbol.iterator]()) as object, ['next']],
  ['SetIterator', Object.getPrototypeOf(new Set()[Symbol.iterator]()) as object, ['next']],
  [
    'String.prototype',
    String.prototype,
    [
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
    ],
  ],
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
  ['TextDecoder.prototype', TextDecoder.prototype, ['decode']],
];

/**
 * Builtins V8 keeps fast paths for (array iteration and species, RegExp, typed arrays): redefining
 * them, even read-only with the same value, switches those fast paths off for the whole process
 * (an order of magnitude on array and RegExp code). These are not touched; their identity is
 * checked before every decision instead, and a decision taken after one changed is refused.
 */
const WATCHED: [object, PropertyKey[]][] = [
  [
    Array.prototype,
    [
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
      Symbol.iterator,
    ],
  ],
  [Object.getPrototypeOf([][Symbol.iterator]()) as object, ['next']],
  [String.prototype, [Symbol.iterator]],
  [Object.getPrototypeOf(''[Symbol.iterator]()) as object, ['next']],
  [RegExp.prototype, ['exec', 'test', Symbol.replace, Symbol.split, Symbol.search, Symbol.match]],
  [Uint8Array.prototype, ['subarray', 'slice', 'set']],
  [Buffer.prototype, ['toString', 'slice', 'subarray', 'equals', 'write']],
];

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
const SPECIES: object[] = [Map, Set];
// Species the engine's code paths consult (array methods, regex split); checked by descriptor.
const WATCHED_SPECIES: object[] = [Array, RegExp];
const watchedValues: unknown[] = [];
const watchedTargets: object[] = [];
const watchedKeys: PropertyKey[] = [];
const watchedSpeciesGetters: unknown[] = [];
const getDescriptor = Object.getOwnPropertyDescriptor;

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
  for (const [target, keys] of WATCHED)
    for (const key of keys) {
      watchedTargets.push(target);
      watchedKeys.push(key);
      watchedValues.push((target as Holder)[key]);
    }
  for (const ctor of WATCHED_SPECIES) watchedSpeciesGetters.push(getDescriptor(ctor, Symbol.species)?.get);
  for (const [, target, keys] of METHODS) {
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
  for (const ctor of SPECIES) {
    try {
      if (lockValue(ctor, Symbol.species)) locked++;
    } catch {
      // As above.
    }
  }
  return locked;
}

/** For coverage(): are the locked builtins still the ones captured at install? */
export function intrinsicsIntact(): boolean {
  const descriptor = Object.getOwnPropertyDescriptor(Map.prototype, 'get') as PropertyDescriptor | undefined;
  return descriptor?.configurable === false && (globalThis as Holder).Map === Map;
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
  for (let i = 0; i < watchedTargets.length; i++)
    if ((watchedTargets[i] as Holder)[watchedKeys[i] as PropertyKey] !== watchedValues[i]) return true;
  for (let i = 0; i < WATCHED_SPECIES.length; i++)
    if (getDescriptor(WATCHED_SPECIES[i] as object, Symbol.species)?.get !== watchedSpeciesGetters[i])
      return true;
  return false;
}
