// The inspector protocol can pause inside the shim's own hooks and read their closures (the
// original binding functions), so an in-process inspector session is a way around every hook.
// Sessions (Session#connect, connectToMainThread) and opening the inspector port from code are
// refused and reported as tampering. The inspector module destructures its binding when first
// loaded, after the preload, so replacing the binding's constructors here covers it.

import { deniedError } from '../errors.js';
import type { HookPort } from '../hook-port.js';
import { type BindingLoader, lockHook } from './lock.js';

export function installInspector(core: HookPort, binding: BindingLoader): void {
  const inspector = binding('inspector') as Record<string, unknown> | undefined;
  if (!inspector) {
    core.hooks.inspector = false;
    return;
  }
  const refuse = (what: string) => {
    core.tamper(what);
    return deniedError('inspector', what, 'inspector', core.revision);
  };
  let ok = true;
  for (const key of ['Connection', 'MainThreadConnection', 'open']) {
    if (typeof inspector[key] !== 'function') continue;
    const hook = function refusedInspector(): never {
      throw refuse(key === 'open' ? 'inspector.open' : 'an in-process inspector session');
    };
    ok = lockHook(core, inspector, key, hook, `inspector binding ${key}`, 'inspector') && ok;
  }
  core.hooks.inspector = ok;
}
