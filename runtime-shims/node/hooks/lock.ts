// Installing a hook so it stays: an accessor that is neither configurable nor replaceable, the
// original kept only in a closure. What an assignment does depends on where it lands:
// - on an object that inherits the hook (an instance shadowing a prototype method: the override
//   pattern of mocks and instrumentation), it becomes that object's own property, as it would
//   without the shim. It cannot reach the original, so nothing is bypassed.
// - on the hooked object itself: ignored and reported as tampering, unless the hook is `layered`
//   (the child-process spawn functions, which nyc's process-on-spawn, spawn-wrap and APM agents
//   wrap): then a function is accepted above the hook. It can only spawn by calling what it read
//   there before, the hook, so the policy still decides every child.
// `defineProperty` over the hook throws (non-configurable).
import type { HookPort } from '../hook-port.js';

const defineProperty = Object.defineProperty;

export interface HookOptions {
  /** Accept a function assigned over the hook as a wrapper above it (see above). */
  layered?: boolean;
}

export function lockHook(
  core: HookPort,
  target: object,
  key: string,
  hook: Function,
  label: string,
  hookName: string,
  options: HookOptions = {},
): boolean {
  const descriptor = Object.getOwnPropertyDescriptor(target, key);
  if (descriptor && !descriptor.configurable) return false;
  let layer: Function | undefined;
  const get = function getHook() {
    return layer ?? hook;
  };
  defineProperty(target, key, {
    configurable: false,
    enumerable: descriptor?.enumerable ?? false,
    get,
    set(this: unknown, value: unknown) {
      if (this !== target) {
        if ((typeof this === 'object' && this !== null) || typeof this === 'function')
          defineProperty(this, key, { value, writable: true, enumerable: true, configurable: true });
        return;
      }
      if (value === hook) layer = undefined;
      else if (options.layered && typeof value === 'function') {
        if (layer === undefined)
          core.log(`${label} wrapped by application code (the policy still decides underneath)`);
        layer = value;
      } else core.tamper(`assignment to ${label}`);
    },
  });
  const previous = core.hookChecks[hookName];
  core.hookChecks[hookName] = () =>
    (previous ? previous() : true) && Object.getOwnPropertyDescriptor(target, key)?.get === get;
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
