// UDP through the udp_wrap binding under dgram: connect/connect6 and send/send6 to an address.
// A send on a connected socket carries no address; its connect was decided.

import { DENIED_ERRNO, deniedError } from '../errors.js';
import type { HookPort } from '../hook-port.js';
import { type BindingLoader, callOriginal, lockHook } from './lock.js';

type Fn = (this: object, ...args: unknown[]) => unknown;

export function installUdp(core: HookPort, binding: BindingLoader): void {
  const udpWrap = binding('udp_wrap') as { UDP?: { prototype: Record<string, Fn> } } | undefined;
  const proto = udpWrap?.UDP?.prototype;
  if (!proto || typeof proto.send !== 'function') {
    core.hooks.udp = false;
    return;
  }

  const denied = (address: string, port: number, syscall: string) => {
    const decision = core.decideConnect(address, port, 'udp', undefined, undefined);
    if (decision.decision === 'allow') return undefined;
    core.report('udp', decision, { host: core.namesOf(address)?.[0], ip: address, port, protocol: 'udp' });
    if (!decision.blocked) return undefined;
    return deniedError(syscall, `${address}:${port}`, decision.rule, core.revision, address, port);
  };

  let ok = true;
  for (const method of ['connect', 'connect6'] as const) {
    const original = proto[method];
    if (typeof original !== 'function') continue;
    const hook: Fn = function udpConnect(address, port, ...rest) {
      if (typeof address === 'string' && typeof port === 'number' && denied(address, port, 'connect'))
        return DENIED_ERRNO;
      return callOriginal(original, this, [address, port, ...rest]);
    };
    ok = lockHook(core, proto, method, hook, `UDP.prototype.${method}`, 'udp') && ok;
  }
  for (const method of ['send', 'send6'] as const) {
    const original = proto[method];
    if (typeof original !== 'function') continue;
    // send(req, list, count, port, address, hasCallback) — or (req, list, count, hasCallback) when connected.
    const hook: Fn = function udpSend(...args) {
      const port = args[3];
      const address = args[4];
      if (args.length >= 6 && typeof address === 'string' && typeof port === 'number') {
        const error = denied(address, port, 'send');
        if (error) {
          const callback = (args[0] as { callback?: unknown } | undefined)?.callback;
          // Node drops a failed send without a callback silently; so do we (the record is made).
          // The callback runs on a later turn of the event loop, as a sent datagram's would: a loop
          // awaiting denied sends still lets timers, I/O and record delivery run.
          // (A closure: setImmediate's own arguments are spread, which a replaced array iterator empties.)
          if (typeof callback === 'function') setImmediate(() => (callback as (e: Error) => void)(error));
          return 0;
        }
      }
      return callOriginal(original, this, args);
    };
    ok = lockHook(core, proto, method, hook, `UDP.prototype.${method}`, 'udp') && ok;
  }
  core.hooks.udp = ok;
}
