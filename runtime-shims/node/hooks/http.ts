// L7: host + method + path decided before a request's bytes are sent. Node's http/https client
// (ClientRequest, whatever agent or createConnection), http2 sessions, and undici — Node's
// bundled fetch and the userland package — through the `undici:request:create` channel, which
// fires for every request and every redirect hop.
import * as diagnosticsChannel from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import { classifyHost } from '../../../policy/host.js';
import type { Decision, DecisionRequest, Protocol } from '../../../policy/types.js';
import { deniedError } from '../errors.js';
import type { HookPort } from '../hook-port.js';
import { decideAtConnect, intendedPort, isUnixSocket, markTunnel, type Peer, peerOf } from './connections.js';
import { callOriginal, lockHook } from './lock.js';

// Loaded when first needed (the first connection), not at process start.
const requireBuiltin = createRequire(import.meta.url);

function stripQuery(path: string): string {
  // A scan, not path.search(/[?#]/): this runs once per request and a regex exec costs more.
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 63 /* ? */ || c === 35 /* # */) return path.slice(0, i);
  }
  return path;
}

/** `host[:port]` / `[v6]:port` → parts; undefined when it is not a plausible authority. */
export function parseAuthority(text: string): { host: string; port: number | undefined } | undefined {
  const value = text.trim();
  if (value === '') return undefined;
  if (value.startsWith('[')) {
    const end = value.indexOf(']');
    if (end === -1) return undefined;
    const rest = value.slice(end + 1);
    const port = rest.startsWith(':') ? Number(rest.slice(1)) : undefined;
    if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) return undefined;
    return { host: value.slice(1, end), port };
  }
  const colon = value.lastIndexOf(':');
  if (colon !== -1 && value.indexOf(':') === colon) {
    const port = Number(value.slice(colon + 1));
    if (!(Number.isInteger(port) && port > 0 && port < 65536)) return undefined;
    return { host: value.slice(0, colon), port };
  }
  return { host: value, port: undefined };
}

interface L7Facts {
  host: string;
  port: number;
  protocol: Protocol;
  method: string;
  path: string;
  ip?: string | undefined;
}

/** Decide every name the request carries (the Host header and the connection's host when they differ). */
function decideL7(core: HookPort, facts: L7Facts, otherHost: string | undefined): Decision {
  // One request object reused: deciding is synchronous and runs no outside code (the engine keeps
  // only the fields it copies into its cache keys), so nothing can observe it between decisions.
  const request = scratch;
  const host = facts.host.toLowerCase();
  request.host = host;
  request.port = facts.port;
  request.protocol = facts.protocol;
  request.method = facts.method.toUpperCase();
  request.path = facts.path;
  request.ip = facts.ip;
  request.sni = undefined;
  let decision = core.decideRequest(request);
  if (decision.decision === 'allow' && otherHost && otherHost.toLowerCase() !== host) {
    request.host = otherHost.toLowerCase();
    const second = core.decideRequest(request);
    if (second.decision !== 'allow') decision = second;
  }
  return decision;
}
const scratch: DecisionRequest = {
  host: undefined,
  port: 0,
  protocol: 'tcp',
  method: undefined,
  path: undefined,
  ip: undefined,
  sni: undefined,
};

function describe(facts: L7Facts): string {
  return `${facts.method.toUpperCase()} ${facts.protocol}://${facts.host}:${facts.port}${facts.path}`;
}

/** CONNECT tunnels to what its target names, not to the proxy: decided as that target. */
function tunnelTarget(facts: L7Facts): boolean {
  if (facts.method.toUpperCase() !== 'CONNECT') return false;
  const target = parseAuthority(facts.path);
  if (target) {
    facts.host = target.host;
    facts.port = target.port ?? 443;
    facts.protocol = 'tcp';
    facts.path = '';
    facts.ip = undefined;
  }
  return true;
}

/** Record a denial and answer the error to fail the request with (undefined: observe mode, let it go). */
function refuseL7(
  core: HookPort,
  facts: L7Facts,
  decision: Decision,
  startedAt?: { stack?: unknown },
): Error | undefined {
  core.report(
    'http',
    decision,
    {
      host: facts.host.toLowerCase(),
      ip: facts.ip,
      port: facts.port,
      protocol: facts.protocol,
      method: facts.method.toUpperCase(),
      path: facts.path || undefined,
    },
    undefined,
    startedAt,
  );
  if (!decision.blocked) return undefined;
  return deniedError('request', describe(facts), decision.rule, core.revision, facts.ip, facts.port);
}

/** Decide, record, and answer the error to fail the request with (undefined: let it go). */
function gateL7(
  core: HookPort,
  facts: L7Facts,
  otherHost: string | undefined,
  startedAt?: { stack?: unknown },
): Error | undefined {
  const decision = decideL7(core, facts, tunnelTarget(facts) ? undefined : otherHost);
  return decision.decision === 'allow' ? undefined : refuseL7(core, facts, decision, startedAt);
}

/**
 * Could the address the connection goes to still allow what the names did not? Only when no rule
 * denied the names outright (the fallback decided) and the policy allows some addresses. Then the
 * request waits for its address; otherwise it is refused at once, with the caller's stack.
 */
/**
 * Could the connection a request gets allow what its names do not? An address a CIDR rule allows,
 * or a Unix socket (undici's connect.socketPath: the request's names mean nothing there, the socket
 * was decided at its connect). Then the request is decided once connected, with the connection.
 */
function addressMayAllow(core: HookPort, decision: Decision): boolean {
  return decision.rule === 'default-deny' && (core.allowsAddresses || core.allowsUnixSockets);
}

/** The caller's stack, kept unformatted for a record filed later (V8 formats it only if read). */
function keepStack(from: Function): { stack?: unknown } {
  const holder: { stack?: unknown } = {};
  Error.captureStackTrace(holder, from);
  return holder;
}

interface ClientRequestLike {
  method?: string;
  path?: string;
  host?: string;
  protocol?: string;
  socketPath?: unknown;
  getHeader?: (name: string) => unknown;
}

function httpFacts(
  req: ClientRequestLike,
  peer: Peer | undefined,
  connectingTo: number | undefined,
): { facts: L7Facts; connectionHost: string | undefined; proxied: boolean } {
  const protocol: Protocol = req.protocol === 'https:' ? 'https' : 'http';
  const defaultPort = protocol === 'https' ? 443 : 80;
  let header: unknown;
  try {
    header = req.getHeader?.('host');
  } catch {
    header = undefined;
  }
  const authority = typeof header === 'string' ? parseAuthority(header) : undefined;
  const connectionHost = typeof req.host === 'string' ? req.host : undefined;
  const rawPath = typeof req.path === 'string' ? req.path : '/';
  let host = authority?.host ?? connectionHost ?? 'localhost';
  let path = stripQuery(rawPath);
  // An absolute-form request line (to a forward proxy) names the real destination. Origin-form
  // paths (the usual case) start with '/' and skip the regex.
  let proxied: number | undefined;
  if (rawPath.charCodeAt(0) !== 47 /* / */ && /^https?:\/\//i.test(rawPath)) {
    try {
      const url = new URL(rawPath);
      host = url.hostname;
      path = url.pathname;
      proxied = url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
    } catch {
      // Left as given: the decision sees an unusual path.
    }
  }
  return {
    facts: {
      host: host.startsWith('[') ? host.slice(1, -1) : host,
      // The port the connection really goes to when the gate saw it; else what the request names.
      port: proxied ?? peer?.port ?? connectingTo ?? authority?.port ?? defaultPort,
      protocol,
      method: typeof req.method === 'string' ? req.method : 'GET',
      path,
      // A request through a forward proxy is not for the proxy's address.
      ip: proxied === undefined ? peer?.ip : undefined,
    },
    connectionHost: proxied === undefined ? connectionHost : undefined,
    proxied: proxied !== undefined,
  };
}

export function installHttp(core: HookPort): void {
  const http = requireBuiltin('node:http') as typeof import('node:http');
  const proto = (http.ClientRequest as unknown as { prototype: Record<string, Function> }).prototype;
  const onSocket = proto.onSocket;
  if (typeof onSocket !== 'function') {
    core.hooks.http = false;
    return;
  }
  // Every socket a ClientRequest writes to is handed over here (agent pool, new connection, custom
  // createConnection); headers are only flushed after. A denial takes Node's own error path.
  const hook = function onSocketHook(this: ClientRequestLike, socket: unknown, error: unknown) {
    // Over a Unix socket the destination is the socket's path, not the name the request carries:
    // governed with Unix sockets, never decided as a made-up host.
    if (!error && socket && typeof this.socketPath !== 'string' && !isUnixSocket(socket)) {
      const { facts, connectionHost, proxied } = httpFacts(this, peerOf(socket), intendedPort(socket));
      const tunnel = tunnelTarget(facts);
      if (tunnel) markTunnel(socket as object);
      const otherHost = tunnel ? undefined : connectionHost;
      const decision = decideL7(core, facts, otherHost);
      if (decision.decision === 'allow') return callOriginal(onSocket, this, [socket, error]);
      // A socket still connecting, to an address that may be allowed: decided by the gate with that
      // address before any byte can leave, as a reused keep-alive socket is decided now.
      if (!tunnel && !proxied && facts.ip === undefined && addressMayAllow(core, decision)) {
        const startedAt = keepStack(onSocketHook);
        const check = (ip: string, port: number) =>
          gateL7(core, { ...facts, ip, port }, otherHost, startedAt);
        if (decideAtConnect(socket, check)) return callOriginal(onSocket, this, [socket, error]);
      }
      const denied = refuseL7(core, facts, decision);
      if (denied) return callOriginal(onSocket, this, [socket, denied]);
    }
    return callOriginal(onSocket, this, [socket, error]);
  };
  core.hooks.http = lockHook(core, proto, 'onSocket', hook, 'http.ClientRequest.prototype.onSocket', 'http');
}

/**
 * Live sockets undici connected per origin, with the peer the gate let each connect to ('unix' for a
 * Unix socket path: no network address, governed with Unix sockets, not by the request's names).
 */
class OriginPeers {
  readonly #byOrigin = new Map<string, { socket: WeakRef<object>; peer: Peer | 'unix' }[]>();

  add(origin: string, socket: object, peer: Peer | 'unix'): void {
    const list = this.live(origin);
    list.push({ socket: new WeakRef(socket), peer });
    if (!this.#byOrigin.has(origin)) {
      if (this.#byOrigin.size >= 1000) this.#byOrigin.clear();
      this.#byOrigin.set(origin, list);
    }
  }

  /** The origin's sockets still open (closed and collected ones are dropped here). */
  live(origin: string): { socket: WeakRef<object>; peer: Peer | 'unix' }[] {
    const list = this.#byOrigin.get(origin);
    if (!list) return [];
    for (let i = list.length - 1; i >= 0; i--) {
      const socket = list[i]?.socket.deref() as { destroyed?: unknown } | undefined;
      if (!socket || socket.destroyed === true) list.splice(i, 1);
    }
    return list;
  }
}

export function installUndici(core: HookPort): void {
  interface UndiciRequest {
    origin?: unknown;
    path?: unknown;
    method?: unknown;
    host?: unknown;
    error?: unknown;
    servername?: unknown;
    upgrade?: unknown;
  }
  const origins = new Map<
    string,
    { scheme: Protocol; host: string; port: number; key: string; ip?: string }
  >();
  const peers = new OriginPeers();
  // undici connects a client's socket before it writes any request on it; the gate saw the address.
  const onConnected = (message: unknown) => {
    try {
      const m = message as { connectParams?: { protocol?: unknown; host?: unknown }; socket?: unknown };
      const peer = isUnixSocket(m.socket) ? 'unix' : peerOf(m.socket);
      const params = m.connectParams;
      if (peer && params && typeof params.protocol === 'string' && typeof params.host === 'string')
        peers.add(`${params.protocol}//${params.host}`, m.socket as object, peer);
    } catch {
      // Nothing learned: a request to that origin is decided by its names.
    }
  };
  /**
   * A request its names do not allow may still go to an address a CIDR rule allows (a custom
   * `connect.lookup`, a DNS cache). undici reads `request.error` once connected, just before it
   * writes the request: decided there, with the addresses of the origin's live sockets (every one
   * must allow; none known: the names decide).
   */
  const decideWhenConnected = (
    request: UndiciRequest,
    facts: L7Facts,
    otherHost: string | undefined,
    key: string,
    byNames: Decision,
    startedAt: { stack?: unknown },
  ) => {
    let assigned: unknown;
    Object.defineProperty(request, 'error', {
      configurable: true,
      enumerable: true,
      get() {
        if (assigned) return assigned;
        const live = peers.live(key);
        if (live.length === 0) return refuseL7(core, facts, byNames, startedAt);
        for (const { peer } of live) {
          if (peer === 'unix') continue;
          const denied = gateL7(core, { ...facts, ip: peer.ip, port: peer.port }, otherHost, startedAt);
          if (denied) return denied;
        }
        return undefined;
      },
      set(value: unknown) {
        assigned = value;
      },
    });
  };
  const onCreate = (message: unknown) => {
    try {
      const request = (message as { request?: UndiciRequest } | undefined)?.request;
      if (!request || typeof request.path !== 'string') return;
      const originText = typeof request.origin === 'string' ? request.origin : String(request.origin);
      // Origins repeat (one per connection pool): parse each once.
      let parsed = origins.get(originText);
      if (!parsed) {
        let url: URL;
        try {
          url = new URL(originText);
        } catch {
          return;
        }
        const scheme: Protocol = url.protocol === 'https:' ? 'https' : 'http';
        const host = url.hostname.replace(/^\[|\]$/g, '');
        const literal = classifyHost(host);
        parsed = {
          scheme,
          host,
          port: url.port ? Number(url.port) : scheme === 'https' ? 443 : 80,
          key: url.origin,
          ip: literal && 'ip' in literal ? literal.ip : undefined,
        };
        if (origins.size >= 1000) origins.clear();
        origins.set(originText, parsed);
      }
      const protocol = parsed.scheme;
      let host = parsed.host;
      let port = parsed.port;
      let ip = parsed.ip;
      let path = stripQuery(request.path);
      if (/^https?:\/\//i.test(request.path)) {
        // Absolute form, through a forward proxy: for the URL's destination, not the proxy's address.
        const target = new URL(request.path);
        host = target.hostname.replace(/^\[|\]$/g, '');
        port = target.port ? Number(target.port) : target.protocol === 'https:' ? 443 : 80;
        path = target.pathname;
        ip = undefined;
      }
      const headerHost = typeof request.host === 'string' ? parseAuthority(request.host) : undefined;
      const facts: L7Facts = {
        host: (headerHost?.host ?? host).replace(/^\[|\]$/g, ''),
        // The connection's port, whatever the Host header says.
        port,
        protocol,
        method: typeof request.method === 'string' ? request.method : 'GET',
        path,
        ip,
      };
      const tunnel = tunnelTarget(facts);
      const otherHost = headerHost && !tunnel ? host : undefined;
      const decision = decideL7(core, facts, otherHost);
      if (decision.decision === 'allow') return;
      if (
        !tunnel &&
        ip === undefined &&
        !request.upgrade &&
        host === parsed.host &&
        addressMayAllow(core, decision)
      )
        decideWhenConnected(request, facts, otherHost, parsed.key, decision, keepStack(onCreate));
      else {
        // undici aborts a request whose `error` is set when it is handed a connection, before writing it.
        const denied = refuseL7(core, facts, decision);
        if (denied) request.error = denied;
      }
    } catch {
      // A malformed request is undici's to reject.
    }
  };
  try {
    diagnosticsChannel.subscribe('undici:request:create', onCreate);
    diagnosticsChannel.subscribe('undici:client:connected', onConnected);
    const channel = diagnosticsChannel.channel('undici:request:create');
    pinSubscriber(core, channel as unknown as Record<string, unknown>, onCreate);
    core.hooks.undici = channel.hasSubscribers;
    core.hookChecks.undici = () => channel.hasSubscribers;
  } catch {
    core.hooks.undici = false;
  }
}

/**
 * A channel keeps its subscribers in a copy-on-write array property any code can overwrite, and an
 * emptied channel switches to a prototype whose publish does nothing. Pin ours: every array stored
 * there keeps our subscriber (others may still come and go), and the channel object cannot change
 * prototype.
 */
function pinSubscriber(core: HookPort, channel: Record<string, unknown>, subscriber: Function): void {
  let current = channel._subscribers;
  if (!Array.isArray(current)) return;
  Object.defineProperty(channel, '_subscribers', {
    configurable: false,
    enumerable: true,
    get: () => current,
    set(value: unknown) {
      if (!Array.isArray(value)) {
        core.tamper('undici:request:create subscribers replaced');
        return;
      }
      if (!value.includes(subscriber)) {
        if (value.length === 0 || (current as unknown[]).length > value.length + 1)
          core.tamper('undici:request:create subscriber removed');
        value.unshift(subscriber);
      }
      current = value;
    },
  });
  Object.preventExtensions(channel);
}

/**
 * http2 sessions: ClientHttp2Session.prototype.request, reached through a session built on an
 * in-memory stream (no socket, no byte leaves). Its authority and scheme come from the session's own
 * fields, so sessions created before or after, by any code path, are decided the same way.
 */
export function installHttp2(core: HookPort): void {
  const http2 = requireBuiltin('node:http2') as typeof import('node:http2');
  const { Duplex } = requireBuiltin('node:stream') as typeof import('node:stream');
  const probe = http2.connect('http://bulkhead.invalid', {
    createConnection: () =>
      new Duplex({
        read() {},
        write(_chunk, _encoding, done) {
          done();
        },
      }),
  });
  probe.on('error', () => undefined);
  const proto = Object.getPrototypeOf(probe) as Record<string, Function>;
  const symbols = Object.getOwnPropertySymbols(probe);
  const authorityKey = symbols.find((s) => s.description === 'authority');
  const protocolKey = symbols.find((s) => s.description === 'protocol');
  const socketKey = symbols.find((s) => s.description === 'socket');
  probe.destroy();
  const request = proto.request;
  if (typeof request !== 'function') {
    core.hooks.http2 = false;
    return;
  }
  const hook = function requestHook(this: Record<symbol, unknown>, headers: unknown, ...rest: unknown[]) {
    const sessionAuthority = authorityKey ? this[authorityKey] : undefined;
    const origin = typeof sessionAuthority === 'string' ? parseAuthority(sessionAuthority) : undefined;
    const scheme: Protocol = protocolKey && this[protocolKey] === 'http:' ? 'http' : 'https';
    const h = (typeof headers === 'object' && headers !== null ? headers : {}) as Record<string, unknown>;
    const authority =
      typeof h[':authority'] === 'string' ? parseAuthority(h[':authority'] as string) : undefined;
    const method = typeof h[':method'] === 'string' ? (h[':method'] as string) : 'GET';
    const path = typeof h[':path'] === 'string' ? stripQuery(h[':path'] as string) : '/';
    // The session's own socket (not the proxy `session.socket` hands out): its peer when the gate saw it.
    const peer = socketKey ? peerOf(this[socketKey]) : undefined;
    const facts: L7Facts = {
      host: authority?.host ?? origin?.host ?? 'localhost',
      port: peer?.port ?? authority?.port ?? origin?.port ?? (scheme === 'http' ? 80 : 443),
      protocol: scheme,
      method,
      path: method.toUpperCase() === 'CONNECT' ? String(h[':authority'] ?? '') : path,
      ip: peer?.ip,
    };
    const denied = gateL7(core, facts, authority ? origin?.host : undefined);
    if (denied) throw denied;
    return callOriginal(request, this, [headers, ...rest]);
  };
  core.hooks.http2 = lockHook(core, proto, 'request', hook, 'ClientHttp2Session.prototype.request', 'http2');
}
