// A control API replica as a real child process (`node dist/cli.mjs control serve`), for tests
// that take its database away: its exits are recorded (a fault must never end it) and its
// output is kept to print when something fails.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './pg-cluster.js';

export const CLI = join(import.meta.dirname, '../../dist/cli.mjs');

/** Why replicas cannot be started (no build), or undefined when they can. */
export function cliUnavailableReason(): string | undefined {
  return existsSync(CLI) ? undefined : `${CLI} is missing: run node scripts/build.mjs (npm test builds it)`;
}

export interface ReplicaExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the test asked it to stop. */
  requested: boolean;
  atMs: number;
}

export interface ReplicaProcess {
  name: string;
  url: string;
  port: number;
  child: ChildProcess;
  /** Exits seen so far (at most one). */
  exits: ReplicaExit[];
  /** Still running. */
  alive(): boolean;
  /** Its stdout and stderr so far (the last `maxChars`). */
  output(maxChars?: number): string;
  /** SIGTERM, then SIGKILL after `graceMs`; answers when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

export interface ReplicaOptions {
  name: string;
  /** PostgreSQL, or `db`: a SQLite file. */
  databaseUrl?: string;
  db?: string;
  keyFile: string;
  /** Started under `ulimit -n` this low (the server sizes its caps from it). */
  fdLimit?: number;
  port?: number;
  env?: Record<string, string>;
}

const MAX_OUTPUT_CHARS = 2_000_000;

export async function startReplica(options: ReplicaOptions): Promise<ReplicaProcess> {
  const port = options.port ?? (await freePort());
  const store = options.databaseUrl ? ['--database-url', options.databaseUrl] : ['--db', options.db ?? ''];
  const node = options.fdLimit
    ? { command: 'sh', prefix: ['-c', `ulimit -n ${options.fdLimit} && exec "$0" "$@"`, process.execPath] }
    : { command: process.execPath, prefix: [] };
  const child = spawn(
    node.command,
    [
      ...node.prefix,
      CLI,
      'control',
      'serve',
      ...store,
      '--port',
      String(port),
      '--host',
      '127.0.0.1',
      '--key',
      options.keyFile,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } },
  );
  let output = '';
  const keep = (stream: string) => (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    output += stream === 'stderr' ? text.replace(/^/gm, '[stderr] ') : text;
    if (output.length > MAX_OUTPUT_CHARS) output = output.slice(-MAX_OUTPUT_CHARS / 2);
  };
  child.stdout?.on('data', keep('stdout'));
  child.stderr?.on('data', keep('stderr'));
  const exits: ReplicaExit[] = [];
  let requested = false;
  const exited = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => {
      exits.push({ code, signal, requested, atMs: Date.now() });
      resolve();
    });
  });
  child.on('error', (error) => {
    output += `[spawn error] ${error.message}\n`;
  });
  return {
    name: options.name,
    url: `http://127.0.0.1:${port}`,
    port,
    child,
    exits,
    alive: () => child.exitCode === null && child.signalCode === null,
    output: (maxChars = 20_000) => output.slice(-maxChars),
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      requested = true;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface HealthAnswer {
  status: number;
  body: Record<string, unknown>;
  /** When the answer arrived (epoch ms). */
  atMs: number;
}

/** One GET /healthz (2 s bound). */
export async function healthOf(replica: ReplicaProcess): Promise<HealthAnswer> {
  const response = await fetch(`${replica.url}/healthz`, { signal: AbortSignal.timeout(2000) });
  const atMs = Date.now();
  const text = await response.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { text };
  }
  return { status: response.status, body, atMs };
}

/**
 * Poll /healthz every 50 ms until `accept` says yes (the answer that did), failing with the last
 * answer after `timeoutMs`, or at once when the replica exited (a fault must never end one).
 * `probe` replaces the plain GET (a test that also checks every answer it gets).
 */
export async function waitForHealth(
  replica: ReplicaProcess,
  accept: (body: Record<string, unknown>, status: number) => boolean,
  timeoutMs: number,
  what: string,
  probe: (replica: ReplicaProcess) => Promise<HealthAnswer> = healthOf,
): Promise<HealthAnswer> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    if (!replica.alive())
      throw new Error(`${replica.name} exited while waiting for ${what}: ${replica.output()}`);
    let answer: HealthAnswer | undefined;
    try {
      answer = await probe(replica);
      last = `${answer.status} ${JSON.stringify(answer.body)}`;
    } catch (error) {
      const failure = error as { message?: string; cause?: { code?: string } };
      last = failure.cause?.code ?? failure.message ?? String(error);
    }
    if (answer && accept(answer.body, answer.status)) return answer;
    if (Date.now() > deadline)
      throw new Error(`${replica.name}: ${what} not seen within ${timeoutMs} ms; last: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
