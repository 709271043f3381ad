// Keeps the control API below its own file-descriptor limit. Past that limit accept() fails and
// every connection, /healthz included, is reset; so the server sizes itself from RLIMIT_NOFILE:
//
//   reserve      = max(64, 5 % of the limit): the database pool, the SQLite files, worker threads, logs
//   connections  = limit − reserve            (the guard below enforces it)
//   long-polls   = connections − max(64, 10 %): room always kept for /healthz, applies, fetches, reports
//
// When a connection arrives at the cap, the oldest connection that is not in the middle of a
// request (one still sending its headers — a slowloris — or an idle keep-alive) is closed to make
// room; when every connection is busy the newcomer's request gets a 503 with Retry-After and
// the connection is closed (from a slack taken out of the reserve; beyond it, closed unanswered).
// Connections that have not finished their headers within `headersTimeoutMs` get 408 from Node.
import { readdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/** Used when the limit cannot be read (not Linux): the common default soft limit. */
const FALLBACK_FD_LIMIT = 1024;

export interface ConnectionBudget {
  /** The process's soft RLIMIT_NOFILE. */
  fdLimit: number;
  /** Open connections the server accepts before shedding or refusing. */
  connections: number;
  /** Parked long-polls allowed; beyond it a long-poll is answered 429 with Retry-After. */
  longPolls: number;
}

/** The soft open-files limit of this process, from /proc/self/limits. */
export function readOpenFileLimit(): number {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const match = /^Max open files\s+(\d+|unlimited)\s+/m.exec(limits);
    if (match?.[1] === 'unlimited') return Number.MAX_SAFE_INTEGER;
    if (match?.[1]) return Number(match[1]);
  } catch {
    // Not Linux: fall through.
  }
  return FALLBACK_FD_LIMIT;
}

/** Descriptors this process has open now (/proc/self/fd); 64 when that cannot be read. */
export function countOpenFiles(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 64;
  }
}

/** Derives the caps from the fd limit; `configured` values only ever lower them. */
export function connectionBudget(
  fdLimit: number,
  configured: { connections?: number | undefined; longPolls?: number | undefined } = {},
): ConnectionBudget {
  const reserve = Math.max(64, Math.ceil(fdLimit * 0.05));
  const derived = Math.max(16, fdLimit - reserve);
  const connections = Math.min(derived, configured.connections ?? derived);
  const room = Math.max(Math.min(64, Math.floor(connections / 2)), Math.ceil(connections * 0.1));
  const longPolls = Math.max(
    0,
    Math.min(connections - room, configured.longPolls ?? Number.MAX_SAFE_INTEGER),
  );
  return { fdLimit, connections, longPolls };
}

export interface ConnectionGuardStats {
  open: number;
  /** Connections closed to make room (slow or idle). */
  shed: number;
  /** Connections refused with 503 because every open one was busy. */
  refused: number;
}

/** Counts connections and sheds or refuses beyond `limit`; attach before `listen`. */
export class ConnectionGuard {
  private open = 0;
  /** Connections not inside a request, oldest first (Set keeps insertion order). */
  private readonly notBusy = new Set<Socket>();
  /** Connections over the limit, to be answered 503 by `refuses` and closed. */
  private readonly overLimit = new WeakSet<Socket>();
  private refusing = 0;
  shed = 0;
  refused = 0;

  /**
   * @param limit connections served
   * @param slack connections beyond it that are still read and answered 503 (from the fd reserve);
   *   past that a connection is closed unanswered: nothing else can be done without descriptors.
   */
  constructor(
    private readonly limit: number,
    private readonly slack = 32,
  ) {}

  stats(): ConnectionGuardStats {
    return { open: this.open, shed: this.shed, refused: this.refused };
  }

  /** True when this request arrived on a connection over the limit: answer 503 + Retry-After and close. */
  refuses(socket: Socket): boolean {
    return this.overLimit.has(tcpSocket(socket));
  }

  /** An http.Server, or an https.Server (its connections are counted before the TLS handshake). */
  attach(server: Server): void {
    server.on('connection', (socket: Socket) => this.admit(socket));
    // 'request' fires once the headers are complete: from then on the connection is doing work.
    server.on('request', (request, response) => {
      const socket = tcpSocket(request.socket);
      if (!this.notBusy.delete(socket)) return;
      response.once('close', () => {
        if (!socket.destroyed) this.notBusy.add(socket);
      });
    });
  }

  private admit(socket: Socket): void {
    if (this.open >= this.limit) {
      const oldest = this.notBusy.values().next();
      if (!oldest.done) {
        this.notBusy.delete(oldest.value);
        this.shed++;
        oldest.value.destroy();
      } else {
        this.refused++;
        if (this.refusing >= this.slack) {
          socket.destroy();
          return;
        }
        // Read (so that closing sends FIN, not RST, and the client sees the answer) and refused.
        this.refusing++;
        this.overLimit.add(socket);
        socket.setTimeout(2000, () => socket.destroy());
        socket.once('close', () => {
          this.refusing--;
        });
        return;
      }
    }
    this.open++;
    this.notBusy.add(socket);
    socket.once('close', () => {
      this.open--;
      this.notBusy.delete(socket);
    });
  }
}

/**
 * The TCP connection under a request's socket. An https.Server announces the plain socket in
 * 'connection' and hands requests the TLSSocket made over it (its `_parent`); destroying the plain
 * one closes both.
 */
function tcpSocket(socket: Socket): Socket {
  return (socket as Socket & { _parent?: Socket | null })._parent ?? socket;
}
