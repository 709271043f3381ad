// Unix-domain sockets at the lowest layer JavaScript reaches: the pipe_wrap binding's connect,
// under net.connect({ path }), http.request({ socketPath }), undici's connect.socketPath, abstract
// names ("\0name") and the binding used directly. Decided as the kernel's `unix` destination
// (contracts §1b): the path as named (a relative one resolved against the working directory),
// and, when that is allowed, the path its links lead to as well.
import { realpathSync } from 'node:fs';
import { DENIED_ERRNO, deniedError } from '../errors.js';
import type { HookPort } from '../hook-port.js';
import { type BindingLoader, callOriginal, lockHook, ownerOf } from './lock.js';
import { destroyLater } from './net.js';

type PipeConnect = (
  this: object,
  req: { oncomplete?: Function },
  address: unknown,
  ...rest: unknown[]
) => number;

// Captured at load: application code that replaces them later cannot steer what a socket is decided as.
const workingDirectory = process.cwd;
const resolveLinks = realpathSync.native;
const BACKSLASH = 92;

/**
 * The text a socket address is decided on (contracts §1b): an absolute path as given, a relative
 * one joined to the working directory (the kernel normalises it), or `@name` for an abstract name,
 * its bytes outside printable ASCII and `\` written `\xNN`. Anything else is passed on as it is
 * and decided as unreadable (denied).
 */
export function socketAddressText(address: unknown): string {
  if (typeof address !== 'string' || address === '') return '';
  const first = address.charCodeAt(0);
  if (first === 0) return `@${escapeAbstractName(address.slice(1))}`;
  if (first === 47) return address;
  let cwd: unknown;
  try {
    cwd = callOriginal(workingDirectory, process, []);
  } catch {
    // The working directory is gone: the relative path cannot be named, so it is unreadable.
    return address;
  }
  return typeof cwd === 'string' && cwd.charCodeAt(0) === 47 ? `${cwd}/${address}` : address;
}

/** The name's UTF-8 bytes (what the system call receives), printable ASCII but `\` kept as is. */
function escapeAbstractName(name: string): string {
  let plain = true;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === BACKSLASH) {
      plain = false;
      break;
    }
  }
  if (plain) return name;
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    out +=
      byte < 0x20 || byte > 0x7e || byte === BACKSLASH
        ? `\\x${byte.toString(16).padStart(2, '0')}`
        : String.fromCharCode(byte);
  }
  return out;
}

/** Where a path's links lead, or undefined when it cannot be resolved (no such file: the connect fails). */
function linkTarget(path: string): string | undefined {
  try {
    const target = resolveLinks(path);
    return typeof target === 'string' && target !== path ? target : undefined;
  } catch {
    return undefined;
  }
}

export function installUnix(core: HookPort, binding: BindingLoader): void {
  const pipeWrap = binding('pipe_wrap') as { Pipe?: { prototype: Record<string, PipeConnect> } } | undefined;
  const proto = pipeWrap?.Pipe?.prototype;
  if (!proto || typeof proto.connect !== 'function') {
    core.hooks.unix = false;
    return;
  }
  const connect = proto.connect;
  const hook: PipeConnect = function pipeConnectHook(req, address, ...rest) {
    let socket = socketAddressText(address);
    let decision = core.decideUnix(socket);
    if (decision.decision === 'allow' && socket.charCodeAt(0) === 47) {
      // A link made under an allowed folder must not reach another socket: where it leads is
      // decided too, and either refusal blocks (the path that refused is the one recorded).
      const target = linkTarget(socket);
      if (target !== undefined) {
        const byTarget = core.decideUnix(target);
        if (byTarget.decision !== 'allow') {
          decision = byTarget;
          socket = target;
        }
      }
    }
    if (decision.decision !== 'allow') {
      core.report('unix', decision, { socket });
      if (decision.blocked) {
        const owner = ownerOf(this);
        const error = deniedError('connect', socket, decision.rule, core.revision, socket);
        if (owner && typeof owner.destroy === 'function') {
          // A later loop turn, as for a denied TCP connect (net.ts).
          destroyLater(owner, error);
          return 0;
        }
        // The binding used directly: its own error number, as for TCP.
        return DENIED_ERRNO;
      }
    }
    return callOriginal(connect, this, [req, address, ...rest]);
  };
  core.hooks.unix = lockHook(core, proto, 'connect', hook, 'Pipe.prototype.connect', 'unix');
}
