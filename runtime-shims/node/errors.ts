// How a denial looks to application code: like a refused connection, with a code of its own.
//
// Node turns a libuv error number returned by a binding into an exception whose `code` comes
// from the uv binding's error map. Registering one number there makes every path Node already
// handles (net, dgram, child_process, spawnSync, …) raise `code === 'ERR_BULKHEAD_DENIED'` with
// Node's own error shape and timing, instead of us guessing each caller's error plumbing.

/** Outside libuv's range (-1 … -4095) and getaddrinfo's (-3000 …), so it can never be a real error. */
export const DENIED_ERRNO = -4242;
export const DENIED_CODE = 'ERR_BULKHEAD_DENIED';

interface UvBinding {
  errmap?: Map<number, [string, string]>;
  getErrorMap?: () => Map<number, [string, string]>;
}

/** Teach Node's error map the denial number (idempotent; harmless when the binding is unavailable). */
export function registerDeniedErrno(binding: (name: string) => unknown): boolean {
  try {
    const uv = binding('uv') as UvBinding;
    if (!uv.errmap && typeof uv.getErrorMap === 'function') uv.errmap = uv.getErrorMap();
    uv.errmap?.set(DENIED_ERRNO, [DENIED_CODE, 'denied by Bulkhead egress policy']);
    return uv.errmap?.get(DENIED_ERRNO)?.[0] === DENIED_CODE;
  } catch {
    return false;
  }
}

export interface DeniedError extends Error {
  code: typeof DENIED_CODE;
  errno: number;
  syscall: string;
  /** The deciding rule (`<policy>/deny[0]`, `default-deny`, `fail-closed`). */
  rule: string;
  revision: number;
  destination: string;
  address?: string;
  port?: number;
}

export function deniedError(
  syscall: string,
  destination: string,
  rule: string,
  revision: number,
  address?: string,
  port?: number,
): DeniedError {
  const error = new Error(
    `Bulkhead denied ${syscall} to ${destination} (rule ${rule}, revision ${revision})`,
  ) as DeniedError;
  error.code = DENIED_CODE;
  error.errno = DENIED_ERRNO;
  error.syscall = syscall;
  error.rule = rule;
  error.revision = revision;
  error.destination = destination;
  if (address !== undefined) error.address = address;
  if (port !== undefined) error.port = port;
  return error;
}
