// What the shim knows about a socket's connection, shared by the TCP gate (which sees the address
// a socket connects to) and the HTTP hooks (which see the requests written over it):
// - the peer: the address and port the gate let a socket connect to. An HTTP request is decided
//   with it, so a CIDR rule allows the address whatever name the request carries, and a fresh
//   socket and a reused keep-alive socket decide alike.
// - a check waiting for the peer: a request handed a socket that is still connecting is decided
//   by the gate, with the address, before the connection exists (no byte can leave before it).
// - tunnels: once a socket carried CONNECT its bytes reach the tunnel's target, not its peer, so
//   what is sent through it is decided by its names only.
export interface Peer {
  ip: string;
  port: number;
}

/** Decide a request now that its connection's address is known: an error denies it. */
export type AtConnect = (ip: string, port: number) => Error | undefined;

const peers = new WeakMap<object, Peer>();
const waiting = new WeakMap<object, AtConnect[]>();
const tunnels = new WeakSet<object>();
/** Sockets whose connect went to TCP through Socket#connect (the gate will see them), with the port asked. */
const tcpConnecting = new WeakMap<object, number | undefined>();
/** Sockets connected to a Unix socket path through Socket#connect. */
const unixSockets = new WeakSet<object>();

export function peerOf(socket: unknown): Peer | undefined {
  return typeof socket === 'object' && socket !== null ? peers.get(socket) : undefined;
}

/**
 * Called by the gate once a connection is allowed: records the socket's peer (unless it is a tunnel)
 * and runs the checks of the requests waiting for it; the first error refuses the connection.
 */
export function connected(socket: object, ip: string, port: number): Error | undefined {
  if (!tunnels.has(socket)) peers.set(socket, { ip, port });
  const checks = waiting.get(socket);
  if (checks === undefined) return undefined;
  // Every request handed this socket before it connected (createConnection may hand one to several).
  for (let i = 0; i < checks.length; i++) {
    const refused = (checks[i] as AtConnect)(ip, port);
    if (refused) return refused;
  }
  return undefined;
}

/** The socket now carries a tunnel (CONNECT): forget its peer for what is sent through it. */
export function markTunnel(socket: object): void {
  tunnels.add(socket);
  peers.delete(socket);
}

export function markTcpConnect(socket: object, port: unknown): void {
  tcpConnecting.set(socket, typeof port === 'number' && Number.isInteger(port) ? port : undefined);
}

/** The port a socket was asked to connect to (before the gate saw it connect). */
export function intendedPort(socket: unknown): number | undefined {
  return typeof socket === 'object' && socket !== null ? tcpConnecting.get(socket) : undefined;
}

export function markUnixConnect(socket: object): void {
  unixSockets.add(socket);
}

/** Does this socket go to a Unix socket path (no network address)? */
export function isUnixSocket(socket: unknown): boolean {
  return typeof socket === 'object' && socket !== null && unixSockets.has(socket);
}

/**
 * If `socket` is on its way to a TCP connection the gate will see, have the gate run `check` with
 * the address (true); false when the request must be decided now, with what is known.
 */
export function decideAtConnect(socket: unknown, check: AtConnect): boolean {
  if (typeof socket !== 'object' || socket === null) return false;
  const s = socket as { connecting?: unknown; destroyed?: unknown };
  if (s.connecting !== true || s.destroyed === true || !tcpConnecting.has(socket) || tunnels.has(socket))
    return false;
  const checks = waiting.get(socket);
  if (checks) checks.push(check);
  else waiting.set(socket, [check]);
  return true;
}
