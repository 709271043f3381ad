// Shared by the control API benchmarks: a served control API in a child process (so the
// simulated fleet and the server do not share an event loop), tokens, and a fleet of
// long-polling workloads over keep-alive connections.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';

const CLI = join(process.cwd(), 'dist/cli.mjs');

export interface ServedControl {
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export function tempDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-bench-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function createToken(scope: 'admin' | 'workload', storeArgs: string[]): string {
  const run = spawnSync(process.execPath, [CLI, 'token', 'create', '--scope', scope, ...storeArgs], {
    encoding: 'utf8',
  });
  if (run.status !== 0) throw new Error(`token create failed: ${run.stderr}`);
  return run.stdout.trim();
}

export async function serveControl(storeArgs: string[], keyFile: string): Promise<ServedControl> {
  const child = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_SERVER_PROFILE
        ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_SERVER_PROFILE}`]
        : []),
      CLI,
      'control',
      'serve',
      ...storeArgs,
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--key',
      keyFile,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk;
      const match = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(output);
      if (match?.[1]) resolve(match[1]);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`control serve exited ${code}: ${output}`)));
  });
  return {
    url,
    process: child,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

export const agent = new Agent({
  connections: 4000,
  pipelining: 1,
  keepAliveTimeout: 120_000,
  headersTimeout: 0,
  bodyTimeout: 0,
});

export async function applyPolicy(url: string, admin: string, text: string): Promise<number> {
  const response = await request(`${url}/v1/policy`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/yaml' },
    body: text,
    dispatcher: agent,
  });
  const body = (await response.body.json()) as { revision: number; message?: string };
  if (response.statusCode !== 200) throw new Error(`apply failed ${response.statusCode}: ${body.message}`);
  return body.revision;
}

export async function longPollsOpen(url: string, admin: string): Promise<number> {
  const response = await request(`${url}/metrics`, {
    headers: { authorization: `Bearer ${admin}` },
    dispatcher: agent,
  });
  const text = await response.body.text();
  return Number(/^bulkhead_longpolls_open (\d+)$/m.exec(text)?.[1] ?? 0);
}

export function policyText(revisionTag: number): string {
  return `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: fleet }
spec:
  match: { cloud: aws, tags: { app: fleet } }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: fleet-egress }
spec:
  appliesTo: [fleet]
  mode: enforce
  owner: bench
  allow:
    - to: { host: api.example.com, port: 443 }
    - to: { host: change-${revisionTag}.example.com, port: 443 }
`;
}

/**
 * One simulated workload on its own keep-alive connection: fetches its bundle, then long-polls
 * with If-None-Match; on every 200 it records when it received which revision. HTTP/1.1 is
 * spoken directly on the socket so a thousand of them cost the bench process little CPU and the
 * figures are the server's.
 */
export class SimulatedWorkload {
  etag = '';
  revision = 0;
  readonly received = new Map<number, number>();
  errors = 0;
  private stopped = false;
  private socket: Socket | undefined;
  private buffer: Buffer = Buffer.alloc(0);
  private fail: ((error: Error) => void) | undefined;
  private answer: ((response: { status: number; headers: Map<string, string> }) => void) | undefined;

  constructor(
    private readonly url: string,
    private readonly token: string,
    readonly identity: string,
  ) {}

  private connect(): Promise<Socket> {
    const { hostname, port } = new URL(this.url);
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host: hostname, port: Number(port) }, () => resolve(socket));
      socket.setNoDelay(true);
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
      socket.once('error', reject);
      socket.once('close', () => {
        if (this.socket === socket) this.socket = undefined;
        this.fail?.(new Error('connection closed'));
      });
    });
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = this.buffer.subarray(0, end).toString('latin1').split('\r\n');
      const headers = new Map<string, string>();
      for (const line of head.slice(1)) {
        const colon = line.indexOf(':');
        headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
      }
      const length = Number(headers.get('content-length') ?? 0);
      if (this.buffer.length < end + 4 + length) return;
      this.buffer = this.buffer.subarray(end + 4 + length);
      const status = Number(head[0]?.split(' ')[1]);
      const answer = this.answer;
      this.answer = undefined;
      answer?.({ status, headers });
    }
  }

  async run(): Promise<void> {
    const host = new URL(this.url).host;
    const path = `/v1/bundle?workload=${encodeURIComponent(this.identity)}`;
    while (!this.stopped) {
      try {
        this.socket ??= await this.connect();
        const lines = [
          `GET ${path}${this.etag ? '&wait=60' : ''} HTTP/1.1`,
          `Host: ${host}`,
          `Authorization: Bearer ${this.token}`,
        ];
        if (this.etag) lines.push(`If-None-Match: ${this.etag}`);
        const response = await new Promise<{ status: number; headers: Map<string, string> }>(
          (resolve, reject) => {
            this.answer = resolve;
            this.fail = reject;
            (this.socket as Socket).write(`${lines.join('\r\n')}\r\n\r\n`);
          },
        );
        if (response.status === 200) {
          this.etag = response.headers.get('etag') ?? '';
          this.revision = Number(response.headers.get('x-bulkhead-revision'));
          this.received.set(this.revision, performance.now());
        } else if (response.status !== 304) {
          this.errors++;
          await new Promise((r) => setTimeout(r, 100));
        }
      } catch {
        if (!this.stopped) this.errors++;
        this.socket?.destroy();
        this.socket = undefined;
        this.buffer = Buffer.alloc(0);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.socket?.destroy();
  }
}

/** Server-side mean: from the revision reaching the replica to each parked workload being answered. */
export async function serverPropagationMeanMs(url: string, admin: string): Promise<number> {
  const response = await request(`${url}/metrics`, {
    headers: { authorization: `Bearer ${admin}` },
    dispatcher: agent,
  });
  const text = await response.body.text();
  const sum = Number(/^bulkhead_propagation_seconds_sum (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
  const count = Number(/^bulkhead_propagation_seconds_count (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
  return (sum / count) * 1000;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] as number;
}

export async function waitUntil(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `count` simulated workloads long-polling, spread round-robin over `urls`, parked before it returns. */
export async function parkFleet(
  urls: string[],
  workloadToken: string,
  admin: string,
  count: number,
): Promise<{ fleet: SimulatedWorkload[]; errors(): number; stop(): Promise<unknown> }> {
  const fleet = Array.from(
    { length: count },
    (_, i) =>
      new SimulatedWorkload(
        urls[i % urls.length] as string,
        workloadToken,
        `cloud=aws,name=fn-${i},tag.app=fleet`,
      ),
  );
  const running = fleet.map((w) => w.run());
  await waitUntil(
    async () => {
      let open = 0;
      for (const url of urls) open += await longPollsOpen(url, admin);
      return open >= count;
    },
    60_000,
    'the fleet to park',
  );
  return {
    fleet,
    errors: () => fleet.reduce((sum, w) => sum + w.errors, 0),
    /** Stops the workloads at once; resolves when their loops ended (stop the servers meanwhile: that ends parked polls). */
    stop() {
      for (const w of fleet) w.stop();
      return Promise.allSettled(running);
    },
  };
}

/**
 * Applies `rounds` policy changes to `applyUrl` while `fleet` long-polls, and answers the time
 * from each apply request until every workload holds the new revision.
 */
export async function measurePropagation(
  fleet: SimulatedWorkload[],
  applyUrl: string,
  admin: string,
  rounds: number,
  firstTag: number,
): Promise<number[]> {
  const latencies: number[] = [];
  const applyTimes: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const started = performance.now();
    const revision = await applyPolicy(applyUrl, admin, policyText(firstTag + round));
    applyTimes.push(performance.now() - started);
    await waitUntil(
      () => fleet.every((w) => w.received.has(revision)),
      60_000,
      `revision ${revision} everywhere`,
    );
    for (const workload of fleet) latencies.push((workload.received.get(revision) as number) - started);
    // Let every workload re-park before the next change.
    await new Promise((r) => setTimeout(r, 300));
  }
  console.log(`apply request round trips (ms): ${applyTimes.map((t) => t.toFixed(1)).join(' ')}`);
  return latencies.sort((a, b) => a - b);
}

export function summarize(label: string, sortedMs: number[]): string {
  return `${label}: n=${sortedMs.length} p50=${percentile(sortedMs, 50).toFixed(1)}ms p99=${percentile(sortedMs, 99).toFixed(1)}ms max=${(sortedMs[sortedMs.length - 1] ?? Number.NaN).toFixed(1)}ms`;
}
