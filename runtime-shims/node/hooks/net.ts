// TCP at the lowest layer JavaScript reaches: the tcp_wrap binding's connect/connect6, under
// net, tls, http, https, http2, fetch and every client library. TLS server names are checked
// against the connection (tls_wrap setServername / start), before the ClientHello leaves.
import * as net from 'node:net';
import { DENIED_ERRNO, deniedError } from '../errors.js';
import type { HookPort } from '../hook-port.js';
import { connected, markTcpConnect, markUnixConnect } from './connections.js';
import { type BindingLoader, callOriginal, lockHook, ownerOf } from './lock.js';

type Handle = object;
type ConnectFn = (this: Handle, req: { oncomplete?: Function }, address: string, port: number) => number;

/** Fail a socket with `error`, as a refused connect would (after the caller's connect returned). */
export function destroyWith(owner: Record<string, unknown>, error: Error): void {
  try {
    callOriginal(owner.destroy as (e: Error) => void, owner, [error]);
  } catch {
    // The socket was already gone.
  }
}

// Sockets a denial fails on the next loop turn, with their errors, in pairs: one setImmediate a turn
// for all of them rather than a closure and an Immediate each (a flood fails hundreds a turn). No
// arguments travel through setImmediate: Node passes those with a spread, which a replaced array
// iterator would empty.
let toDestroy: unknown[] = [];
let destroyScheduled = false;

function destroyQueued(): void {
  const queue = toDestroy;
  toDestroy = [];
  destroyScheduled = false;
  for (let i = 0; i < queue.length; i += 2)
    destroyWith(queue[i] as Record<string, unknown>, queue[i + 1] as Error);
}

/** Fail `owner` with `error` on a later loop turn, as a refused connection's error arrives. */
export function destroyLater(owner: Record<string, unknown>, error: Error): void {
  toDestroy[toDestroy.length] = owner;
  toDestroy[toDestroy.length] = error;
  if (!destroyScheduled) {
    destroyScheduled = true;
    setImmediate(destroyQueued);
  }
}

const sniByWrap = new WeakMap<object, string>();

/** Where a socket's connect was called: connects run after a tick, when the caller's frames are gone. */
export const STARTED_AT = Symbol('bulkhead.startedAt');

/**
 * Keep an unformatted stack of each Socket#connect call (V8 formats it only if a deny reads it), so a
 * record can name the application frame that started a connection decided later.
 */
export function installConnectOrigin(core: HookPort, beforeFirstConnect: () => void): void {
  const proto = net.Socket.prototype as unknown as Record<string | symbol, unknown>;
  const connect = proto.connect as (...args: unknown[]) => unknown;
  if (typeof connect !== 'function') {
    core.hooks.connectOrigin = false;
    return;
  }
  let first = true;
  const hook = function connectWithOrigin(this: Record<symbol, unknown>, ...args: unknown[]): unknown {
    if (first) {
      // Every request's first byte needs a connection: the L7 hooks go in here, before any can be sent.
      first = false;
      beforeFirstConnect();
    }
    // Socket#connect(options | [options, cb] | port, host?): a stack is kept only when a deny is plausible.
    let options = args[0];
    if (Array.isArray(options)) options = options[0];
    let host: unknown;
    let port: unknown;
    if (typeof options === 'object' && options !== null) {
      const o = options as { host?: unknown; port?: unknown; path?: unknown };
      if (typeof o.path === 'string') {
        markUnixConnect(this);
        return callOriginal(connect, this, args);
      }
      host = o.host ?? 'localhost';
      port = typeof o.port === 'string' ? Number(o.port) : o.port;
      markTcpConnect(this, port);
    } else if (typeof options === 'string' && Number.isNaN(Number(options))) {
      // socket.connect('/path/to.sock'): a Unix socket path.
      markUnixConnect(this);
      return callOriginal(connect, this, args);
    } else {
      host = typeof args[1] === 'string' ? args[1] : 'localhost';
      port = typeof options === 'string' ? Number(options) : options;
      markTcpConnect(this, port);
    }
    if (core.mayDeny(host, port)) {
      const holder: { stack?: unknown } = {};
      Error.captureStackTrace(holder, hook);
      this[STARTED_AT] = holder;
    }
    return callOriginal(connect, this, args);
  };
  core.hooks.connectOrigin = lockHook(
    core,
    proto,
    'connect',
    hook,
    'net.Socket.prototype.connect',
    'connectOrigin',
  );
}

export function installTcp(core: HookPort, binding: BindingLoader, beforeFirstConnect: () => void): void {
  const tcpWrap = binding('tcp_wrap') as { TCP?: { prototype: Record<string, ConnectFn> } } | undefined;
  const proto = tcpWrap?.TCP?.prototype;
  if (!proto || typeof proto.connect !== 'function') {
    core.hooks.tcp = false;
    return;
  }

  /** Refuse a connect: what the binding call returns instead. */
  const refuse = (
    owner: Record<string, unknown> | undefined,
    req: { oncomplete?: Function },
    error: Error,
  ): number => {
    // Happy eyeballs tries the next address on an error number; a plain connect gets our own error.
    const multiple = typeof req.oncomplete === 'function' && req.oncomplete.name === 'afterConnectMultiple';
    if (owner && typeof owner.destroy === 'function' && !multiple) {
      // On a later loop turn, as a refused connection's error arrives: a program that awaits denied
      // connects in a loop still yields, so the sockets it drops are closed as it goes (a flood of
      // them otherwise holds every handle, and the event loop, until it ends).
      destroyLater(owner, error);
      return 0;
    }
    return DENIED_ERRNO;
  };

  /** undefined: let it through. A number: what the binding call returns instead. */
  const gate = (
    handle: Handle,
    req: { oncomplete?: Function },
    address: string,
    port: number,
  ): number | undefined => {
    // Normally done at Socket#connect already; a handle connected without one arms the L7 hooks here.
    beforeFirstConnect();
    const owner = ownerOf(handle);
    let claimed: unknown;
    let sni: string | undefined;
    // A replaced WeakMap#get could only add an SNI to satisfy (stricter), never remove a check:
    // decideConnect refuses while any watched builtin is replaced, before its own tables are read.
    if (owner) {
      claimed = owner._host;
      const wrap = owner._handle;
      if (typeof wrap === 'object' && wrap !== null && wrap !== handle) sni = sniByWrap.get(wrap);
    }
    const decision = core.decideConnect(address, port, 'tcp', claimed, sni);
    if (decision.decision === 'allow') {
      // An HTTP request handed this socket before it connected is decided now, with the address.
      const refused = owner ? connected(owner, address, port) : undefined;
      return refused ? refuse(owner, req, refused) : undefined;
    }
    core.report(
      'connect',
      decision,
      {
        host: typeof claimed === 'string' ? claimed : core.namesOf(address)?.[0],
        ip: address,
        port,
        protocol: 'tcp',
        sni,
      },
      undefined,
      owner?.[STARTED_AT as unknown as string] as { stack?: unknown } | undefined,
    );
    if (!decision.blocked) return undefined;
    const destination = `${typeof claimed === 'string' ? `${claimed} (${address})` : address}:${port}`;
    // Without a stack: the connect runs after the caller's frames are gone (a tick, a lookup), so it
    // would only list Node's internals, and the socket's destroy formats it for every denial of a
    // flood. Where the program connected is in the record's origin.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    const error = deniedError('connect', destination, decision.rule, core.revision, address, port);
    Error.stackTraceLimit = limit;
    return refuse(owner, req, error);
  };

  const connect4 = proto.connect;
  const connect6 = proto.connect6;
  const hook4: ConnectFn = function connectHook(req, address, port): number {
    const verdict = gate(this, req, address, port);
    return verdict === undefined ? callOriginal(connect4, this, [req, address, port]) : verdict;
  };
  let ok = lockHook(core, proto, 'connect', hook4, 'TCP.prototype.connect', 'tcp');
  if (typeof connect6 === 'function') {
    const hook6: ConnectFn = function connect6Hook(req, address, port): number {
      const verdict = gate(this, req, address, port);
      return verdict === undefined ? callOriginal(connect6, this, [req, address, port]) : verdict;
    };
    ok = lockHook(core, proto, 'connect6', hook6, 'TCP.prototype.connect6', 'tcp') && ok;
  }
  core.hooks.tcp = ok;
}

export function installTlsSni(core: HookPort, binding: BindingLoader): void {
  const tlsWrap = binding('tls_wrap') as { TLSWrap?: { prototype: Record<string, Function> } } | undefined;
  const proto = tlsWrap?.TLSWrap?.prototype;
  if (!proto || typeof proto.setServername !== 'function' || typeof proto.start !== 'function') {
    core.hooks.tlsSni = false;
    return;
  }
  const setServername = proto.setServername;
  const start = proto.start;
  const hookSet = function setServernameHook(this: object, name: unknown) {
    if (typeof name === 'string') sniByWrap.set(this, name.toLowerCase());
    return callOriginal(setServername, this, [name]);
  };
  // The handshake starts once the socket is connected, whatever carries it (a TCP socket, a
  // proxy tunnel, a duplex): the server name is decided against the peer before the ClientHello.
  const hookStart = function startHook(this: object, ...args: unknown[]) {
    // A replaced WeakMap#get could hide the server name: no handshake starts while one is.
    const tampered = core.tampered();
    if (tampered) {
      const owner = ownerOf(this);
      if (owner && typeof owner.destroy === 'function')
        process.nextTick(destroyWith, owner, deniedError('tls', 'a TLS peer', tampered.rule, core.revision));
      return 0;
    }
    const sni = sniByWrap.get(this);
    const owner = sni === undefined ? undefined : ownerOf(this);
    if (sni !== undefined && owner) {
      let address: unknown;
      let port: unknown;
      try {
        address = owner.remoteAddress;
        port = owner.remotePort;
      } catch {
        address = undefined;
      }
      const decision =
        typeof address === 'string' && typeof port === 'number'
          ? core.decideConnect(address, port, 'tcp', owner._host, sni)
          : core.decideRequest({
              host: sni,
              ip: undefined,
              port: 443,
              protocol: 'https',
              sni: undefined,
              method: undefined,
              path: undefined,
            });
      if (decision.decision !== 'allow') {
        core.report('connect', decision, {
          host: sni,
          ip: typeof address === 'string' ? address : undefined,
          port: typeof port === 'number' ? port : undefined,
          protocol: 'tcp',
          sni,
        });
        if (decision.blocked) {
          const error = deniedError(
            'tls',
            `${sni} (${String(address)}:${String(port)})`,
            decision.rule,
            core.revision,
          );
          if (typeof owner.destroy === 'function') process.nextTick(destroyWith, owner, error);
          return 0;
        }
      }
    }
    return callOriginal(start, this, args);
  };
  core.hooks.tlsSni =
    lockHook(core, proto, 'setServername', hookSet, 'TLSWrap.prototype.setServername', 'tlsSni') &&
    lockHook(core, proto, 'start', hookStart, 'TLSWrap.prototype.start', 'tlsSni');
}
