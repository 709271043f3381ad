// Installing a hook so it stays: an accessor that is neither configurable nor replaceable. An
// assignment (on the prototype or, through inheritance, on an instance) is ignored and reported
// as a tamper attempt; `defineProperty` over it throws. The original is kept only in a closure.
import type { ShimCore } from '../core.js';

export function lockHook(
  core: ShimCore,
  target: object,
  key: string,
  hook: Function,
  label: string,
  hookName: string,
): boolean {
  const descriptor = Object.getOwnPropertyDescriptor(target, key);
  if (descriptor && !descriptor.configurable) return false;
  Object.defineProperty(target, key, {
    configurable: false,
    enumerable: descriptor?.enumerable ?? false,
    get() {
      return hook;
    },
    set(value: unknown) {
      if (value !== hook) core.tamper(`assignment to ${label}`);
    },
  });
  const previous = core.hookChecks[hookName];
  core.hookChecks[hookName] = () =>
    (previous ? previous() : true) && (target as Record<string, unknown>)[key] === hook;
  return true;
}

/** The `owner_symbol` Node puts on handles (handle → net.Socket / dgram.Socket / ChildProcess). */
let ownerSymbol: symbol | null | undefined;
export function ownerOf(handle: object): Record<string, unknown> | undefined {
  if (ownerSymbol === undefined) {
    const found = Object.getOwnPropertySymbols(handle).find((s) => s.description === 'owner_symbol');
    if (!found) return undefined;
    ownerSymbol = found;
  }
  if (ownerSymbol === null) return undefined;
  const owner = (handle as Record<symbol, unknown>)[ownerSymbol];
  return typeof owner === 'object' && owner !== null ? (owner as Record<string, unknown>) : undefined;
}

/**
 * Reflect.apply as it was when the shim loaded. Hooks never call an original through
 * `fn.call`/`fn.apply`: code that replaced Function.prototype.call would receive the original.
 */
export const callOriginal: (fn: Function, thisArg: unknown, args: ArrayLike<unknown>) => any = Reflect.apply;

export type BindingLoader = (name: string) => unknown;

/** `process.binding` as it was when the shim loaded (later replacement by app code does not matter). */
export function bindingLoader(): BindingLoader | undefined {
  const load = (process as unknown as { binding?: (name: string) => unknown }).binding;
  if (typeof load !== 'function') return undefined;
  return (name: string) => {
    try {
      return callOriginal(load, process, [name]);
    } catch {
      return undefined;
    }
  };
}
