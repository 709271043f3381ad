// DNS through the cares_wrap binding: getaddrinfo (dns.lookup, and so net/http/fetch) and every
// c-ares query (dns.resolve*, Resolver, dns.promises). A name no rule could allow is refused
// before a query leaves the process; answers bind addresses to the name for later connects.
import { parseIp } from '../../../policy/cidr.js';
import { DENIED_ERRNO, deniedError } from '../errors.js';
import type { HookPort } from '../hook-port.js';
import { type BindingLoader, callOriginal, lockHook } from './lock.js';

interface Req {
  oncomplete?: (...args: unknown[]) => unknown;
  callback?: (error: Error) => void;
  reject?: (error: Error) => void;
}

/**
 * Fail the request the way its caller listens (callback or promise); the error number otherwise.
 * The failure arrives on a later turn of the event loop (setImmediate), as a resolver's answer does:
 * an application awaiting denied lookups in a loop still lets timers, I/O and the shim's own record
 * delivery run between them, instead of spinning through a flood in one turn.
 */
function refuse(req: Req, error: Error): number {
  // Closures, not setImmediate's own arguments: Node passes those with a spread, which a replaced
  // array iterator would empty (the caller would never hear of the denial).
  const reject = req.reject;
  if (typeof reject === 'function') {
    setImmediate(() => callOriginal(reject, req, [error]));
    return 0;
  }
  const callback = req.callback;
  if (typeof callback === 'function') {
    setImmediate(() => callOriginal(callback, req, [error]));
    return 0;
  }
  return DENIED_ERRNO;
}

const QUERY_METHODS = [
  'queryAny',
  'queryA',
  'queryAaaa',
  'queryCaa',
  'queryCname',
  'queryMx',
  'queryNs',
  'queryTxt',
  'querySrv',
  'queryPtr',
  'queryNaptr',
  'querySoa',
];

/**
 * The PTR name a reverse lookup of `ip` queries (`4.3.2.1.in-addr.arpa`, nibbles for IPv6): the
 * address bits travel to the resolver and on to whoever runs that reverse zone, so a reverse
 * lookup is decided like a query for that name.
 */
export function reverseName(ip: string): string | undefined {
  const bytes = parseIp(ip);
  if (!bytes) return undefined;
  if (bytes.length === 4) return `${bytes[3]}.${bytes[2]}.${bytes[1]}.${bytes[0]}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = bytes.length - 1; i >= 0; i--) {
    const byte = bytes[i] as number;
    nibbles.push((byte & 15).toString(16), (byte >> 4).toString(16));
  }
  return `${nibbles.join('.')}.ip6.arpa`;
}

export function installDns(core: HookPort, binding: BindingLoader): void {
  const cares = binding('cares_wrap') as
    | (Record<string, unknown> & { ChannelWrap?: { prototype: Record<string, Function> } })
    | undefined;
  if (!cares || typeof cares.getaddrinfo !== 'function') {
    core.hooks.dnsLookup = false;
    core.hooks.dnsQuery = false;
    return;
  }

  /** 0 / undefined: go ahead. A number: return it instead of querying. */
  const gate = (req: Req, name: unknown, syscall: string): number | undefined => {
    if (typeof name !== 'string') return undefined;
    const decision = core.decideName(name);
    if (decision.decision === 'allow') return undefined;
    core.report('dns', decision, { host: name.toLowerCase(), protocol: 'dns' });
    if (!decision.blocked) return undefined;
    return refuse(req, deniedError(syscall, name, decision.rule, core.revision));
  };

  const bindAnswers = (req: Req, name: string) => {
    const original = req.oncomplete;
    if (typeof original !== 'function') return;
    req.oncomplete = function bulkheadAnswers(
      this: unknown,
      error: unknown,
      answers: unknown,
      ...rest: unknown[]
    ) {
      if (!error && Array.isArray(answers)) core.bindNames(name, answers);
      return callOriginal(original, this, [error, answers, ...rest]);
    };
  };

  const getaddrinfo = cares.getaddrinfo as (...args: unknown[]) => number;
  const lookupHook = function getaddrinfoHook(
    this: unknown,
    req: Req,
    hostname: unknown,
    ...rest: unknown[]
  ) {
    const verdict = gate(req, hostname, 'getaddrinfo');
    if (verdict !== undefined) return verdict;
    if (typeof hostname === 'string' && typeof req === 'object' && req !== null) bindAnswers(req, hostname);
    return callOriginal(getaddrinfo, this, [req, hostname, ...rest]);
  };
  core.hooks.dnsLookup = lockHook(
    core,
    cares,
    'getaddrinfo',
    lookupHook,
    'cares_wrap.getaddrinfo',
    'dnsLookup',
  );

  const getnameinfo = cares.getnameinfo as ((...args: unknown[]) => number) | undefined;
  if (typeof getnameinfo === 'function') {
    const reverseHook = function getnameinfoHook(this: unknown, req: Req, ip: unknown, ...rest: unknown[]) {
      const name = typeof ip === 'string' ? (reverseName(ip) ?? ip) : ip;
      const verdict = gate(req, name, 'getnameinfo');
      if (verdict !== undefined) return verdict;
      return callOriginal(getnameinfo, this, [req, ip, ...rest]);
    };
    core.hooks.dnsLookup =
      lockHook(core, cares, 'getnameinfo', reverseHook, 'cares_wrap.getnameinfo', 'dnsLookup') &&
      core.hooks.dnsLookup;
  }

  const proto = cares.ChannelWrap?.prototype;
  if (!proto) {
    core.hooks.dnsQuery = false;
    return;
  }
  let ok = true;
  for (const method of QUERY_METHODS) {
    const original = proto[method];
    if (typeof original !== 'function') continue;
    const hook = function queryHook(this: unknown, req: Req, name: unknown, ...rest: unknown[]) {
      const verdict = gate(req, name, method);
      if (verdict !== undefined) return verdict;
      if (typeof name === 'string' && typeof req === 'object' && req !== null) bindAnswers(req, name);
      return callOriginal(original, this, [req, name, ...rest]);
    };
    ok = lockHook(core, proto, method, hook, `ChannelWrap.prototype.${method}`, 'dnsQuery') && ok;
  }
  const getHostByAddr = proto.getHostByAddr;
  if (typeof getHostByAddr === 'function') {
    const hook = function getHostByAddrHook(this: unknown, req: Req, ip: unknown, ...rest: unknown[]) {
      const name = typeof ip === 'string' ? (reverseName(ip) ?? ip) : ip;
      const verdict = gate(req, name, 'getHostByAddr');
      if (verdict !== undefined) return verdict;
      return callOriginal(getHostByAddr, this, [req, ip, ...rest]);
    };
    ok =
      lockHook(core, proto, 'getHostByAddr', hook, 'ChannelWrap.prototype.getHostByAddr', 'dnsQuery') && ok;
  }
  // Pointing a resolver at another server sends every later query there: only servers the system
  // configured, or ones the policy allows by address, may be set.
  const setServers = proto.setServers;
  const getServers = proto.getServers;
  const ChannelWrap = cares.ChannelWrap as unknown as new (
    timeout: number,
    tries: number,
  ) => Record<string, Function>;
  let systemServers: Set<string> | undefined;
  if (typeof setServers === 'function') {
    const hook = function setServersHook(this: unknown, servers: unknown, ...rest: unknown[]) {
      if (Array.isArray(servers)) {
        if (!systemServers) {
          systemServers = new Set();
          try {
            const probe = new ChannelWrap(-1, 4);
            for (const entry of (typeof getServers === 'function'
              ? callOriginal(getServers, probe, [])
              : []) as [string, number][])
              systemServers.add(`${entry[0]}|${entry[1]}`);
          } catch {
            // No system servers known: every server must then be allowed by policy.
          }
        }
        for (const entry of servers as unknown[]) {
          if (!Array.isArray(entry)) continue;
          const ip = String(entry[1]);
          const port = Number(entry[2]) || 53;
          if (systemServers.has(`${ip}|${port}`)) continue;
          const decision = core.decideConnect(ip, port, 'udp', undefined, undefined);
          if (decision.decision === 'allow') continue;
          core.report('dns', decision, { ip, port, protocol: 'dns' });
          if (decision.blocked)
            throw deniedError('setServers', `${ip}:${port}`, decision.rule, core.revision, ip, port);
        }
      }
      return callOriginal(setServers, this, [servers, ...rest]);
    };
    ok = lockHook(core, proto, 'setServers', hook, 'ChannelWrap.prototype.setServers', 'dnsQuery') && ok;
  }
  core.hooks.dnsQuery = ok;
}
