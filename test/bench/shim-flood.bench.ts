// A flood of distinct denies from one process, side by side in one run (issue 20): Node children
// with the preload (dist/register.cjs, a real signed enforce bundle allowing nothing the flood
// reaches) doing 100,000 dns.lookup of distinct names under attacker.test and 100,000 net.connect
// to distinct denied address:port pairs on loopback, and a child without the shim doing the same
// number of connects to a closed local port (refused by the kernel: the cost a denied connect is
// held to). The application issues its operations in waves of WAVE and awaits each wave, so its own
// longest synchronous stretch is small and measured; the longest event-loop block beyond it is the
// shim's. Per variant: µs per operation (wall, first issue to last callback); RSS growth (peak over
// the run minus before); the heap the flood left once garbage is collected; the longest event-loop
// block (a 5 ms timer's drift, and perf_hooks' monitorEventLoopDelay max); the application's own
// longest wave; what reached the sink: records, the sum of their counts plus the dropped (must be N
// exactly), and how many are aggregates. Without a sink: the deny lines written to stderr. Beside them,
// the floor of the mechanism: a bare hook that fails the same connects and does nothing else.
// BENCH_FLOOD_N (default 100,000), BENCH_FLOOD_WAVE (default 100), BENCH_ROUNDS (default 1).
// Printed, not asserted.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { join } from 'node:path';
import { makeFixture, REGISTER_CJS } from '../shim/harness.js';

const N = Number(process.env.BENCH_FLOOD_N ?? 100_000);
const WAVE = Number(process.env.BENCH_FLOOD_WAVE ?? 100);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);
// BENCH_FLOOD_PROFILE=<dir>: write each child's CPU profile there (node --cpu-prof).
const PROFILE = process.env.BENCH_FLOOD_PROFILE;
// BENCH_FLOOD_ONLY=<substring>: run only the variants whose name contains it.
const ONLY = process.env.BENCH_FLOOD_ONLY;

// A port nothing listens on: bound then closed, so a plain connect to it is refused.
const closedPort = await new Promise<number>((resolve) => {
  const server = createTcpServer();
  server.listen(0, '127.0.0.1', () => {
    const port = (server.address() as { port: number }).port;
    server.close(() => resolve(port));
  });
});

// The HTTP sink's receiver: counts records and sums their counts (and aggregates, when present).
let httpRecords = 0;
let httpCount = 0;
let httpAggregates = 0;
const receiver = createServer((req: IncomingMessage, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        records: { count: number; aggregate?: unknown }[];
      };
      for (const r of body.records) {
        httpRecords++;
        httpCount += r.count;
        if (r.aggregate) httpAggregates++;
      }
    } catch {
      res.statusCode = 400;
    }
    res.end('{}');
  });
});
await new Promise<void>((done) => receiver.listen(0, '127.0.0.1', done));
const receiverPort = (receiver.address() as { port: number }).port;

const fx = makeFixture({ allow: ['{ to: { host: allowed.example.test, port: 443 } }'] });
const child = join(fx.dir, 'flood.cjs');
writeFileSync(
  child,
  `'use strict';
const dns = require('node:dns');
const net = require('node:net');
const { monitorEventLoopDelay, performance } = require('node:perf_hooks');
const { writeSync } = require('node:fs');
const { KIND, N, WAVE, CLOSED_PORT } = process.env;
const n = Number(N);
const wave = Number(WAVE);
const one = KIND === 'dns'
  ? (i) => new Promise((resolve) => dns.lookup('x' + i + '.exfil.attacker.test', () => resolve()))
  : KIND === 'connect'
    ? (i) => new Promise((resolve) => {
        // Distinct address:port pairs on loopback: 127.0.0.2.. with ports 1024..65023.
        const ip = '127.0.0.' + (2 + Math.floor(i / 64000));
        net.connect(1024 + (i % 64000), ip).on('error', resolve).on('connect', function () { this.destroy(); resolve(); });
      })
    : () => new Promise((resolve) => net.connect(Number(CLOSED_PORT), '127.0.0.1').on('error', resolve).on('connect', function () { this.destroy(); resolve(); }));
const histogram = monitorEventLoopDelay({ resolution: 5 });
let maxGap = 0;
let peakRss = 0;
let last = performance.now();
const sampler = setInterval(() => {
  const now = performance.now();
  if (now - last - 5 > maxGap) maxGap = now - last - 5;
  last = now;
  const rss = process.memoryUsage.rss();
  if (rss > peakRss) peakRss = rss;
}, 5);
const result = { kind: KIND };
(async () => {
  // A quiet start: the sampler running, nothing else.
  await new Promise((r) => setTimeout(r, 50));
  global.gc();
  const heap0 = process.memoryUsage().heapUsed;
  const rss0 = process.memoryUsage.rss();
  peakRss = rss0;
  histogram.enable();
  maxGap = 0;
  last = performance.now();
  let appMax = 0;
  const start = performance.now();
  for (let i = 0; i < n; i += wave) {
    const t = performance.now();
    const batch = [];
    for (let j = i; j < Math.min(n, i + wave); j++) batch.push(one(j));
    const spent = performance.now() - t;
    if (spent > appMax) appMax = spent;
    await Promise.all(batch);
  }
  const elapsed = performance.now() - start;
  // One more turn of the loop, so the sampler sees a block that lasted until the flood's end.
  await new Promise((r) => setTimeout(r, 20));
  histogram.disable();
  clearInterval(sampler);
  const rss = process.memoryUsage.rss();
  Object.assign(result, {
    usPerOp: (elapsed * 1000) / n,
    rssGrowthMB: (Math.max(peakRss, rss) - rss0) / 1048576,
    maxGapMs: maxGap,
    loopDelayMaxMs: histogram.max / 1e6,
    appWaveMaxMs: appMax,
  });
  const shim = globalThis[Symbol.for('bulkhead.shim.instance')];
  if (shim) {
    await shim.flush();
    // Whatever the sink, time to let a background delivery finish.
    await new Promise((r) => setTimeout(r, 300));
    await shim.flush();
  }
  // What the flood left behind once garbage is collected (records delivered, tables bounded).
  global.gc();
  result.keptMB = (process.memoryUsage().heapUsed - heap0) / 1048576;
  process.on('exit', () => {
    if (shim) {
      const s = shim.status();
      Object.assign(result, { dropped: s.dropped, queued: s.queued, delivered: s.delivered });
    }
    writeSync(1, JSON.stringify(result) + '\\n');
  });
})();
`,
);

// The floor of any in-process deny: a preload that fails every TCP connect at the binding, on the
// next loop turn, with a stackless error, and does nothing else (no decision, no record, no stack
// kept). What a denied connect costs beyond it is the shim's own work; what it costs beyond a refused
// connect without it is also the price of answering faster than the kernel (V8 sizes its young
// generation and its next old-space collection by the allocation rate, so the same garbage made in a
// third of the time peaks higher).
const bareHook = join(fx.dir, 'bare-hook.cjs');
writeFileSync(
  bareHook,
  `'use strict';
const { TCP } = process.binding('tcp_wrap');
let owner;
TCP.prototype.connect = function (req, address, port) {
  owner ??= Object.getOwnPropertySymbols(this).find((s) => s.description === 'owner_symbol');
  const socket = this[owner];
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  const error = new Error('denied ' + address + ':' + port);
  Error.stackTraceLimit = limit;
  setImmediate(() => socket.destroy(error));
  return 0;
};
`,
);

interface Variant {
  name: string;
  kind: 'dns' | 'connect' | 'refused';
  shim: boolean;
  sink: 'spool' | 'http' | 'none';
  register?: string;
}
// BENCH_BASELINE_REGISTER=<another build's dist/register.cjs>: the denied variants again with that
// build, in the same run (a before/after of a change to the shim).
const BASELINE = process.env.BENCH_BASELINE_REGISTER;
const VARIANTS: Variant[] = [
  { name: 'refused connect, no shim', kind: 'refused', shim: false, sink: 'none' },
  { name: 'connect, bare hook (floor)', kind: 'connect', shim: false, sink: 'none', register: bareHook },
  { name: 'denied connect, spool', kind: 'connect', shim: true, sink: 'spool' },
  { name: 'denied lookup, spool', kind: 'dns', shim: true, sink: 'spool' },
  { name: 'denied lookup, http sink', kind: 'dns', shim: true, sink: 'http' },
  { name: 'denied lookup, no sink (stderr)', kind: 'dns', shim: true, sink: 'none' },
];
if (BASELINE)
  for (const v of VARIANTS.slice(2))
    VARIANTS.push({ ...v, name: `${v.name.replace('denied ', '')}, baseline`, register: BASELINE });

interface Outcome {
  usPerOp: number;
  rssGrowthMB: number;
  keptMB: number;
  maxGapMs: number;
  loopDelayMaxMs: number;
  appWaveMaxMs: number;
  dropped?: number;
  records?: number;
  counted?: number;
  aggregates?: number;
  stderrLines?: number;
}

const results: Record<string, Outcome[]> = {};
for (let round = 0; round < ROUNDS; round++) {
  for (const v of VARIANTS) {
    if (ONLY && !v.name.includes(ONLY)) continue;
    const spool = join(fx.dir, `spool-${round}-${v.kind}-${v.sink}${v.register ? '-baseline' : ''}.ndjson`);
    const env: Record<string, string> = v.shim
      ? fx.env({
          BULKHEAD_REPORT:
            v.sink === 'spool'
              ? spool
              : v.sink === 'http'
                ? `http://127.0.0.1:${receiverPort}/v1/reports`
                : '',
          ...(v.sink === 'none' ? { BULKHEAD_LOG: 'stderr' } : {}),
        })
      : { PATH: process.env.PATH ?? '' };
    Object.assign(env, { KIND: v.kind, N: String(N), WAVE: String(WAVE), CLOSED_PORT: String(closedPort) });
    httpRecords = 0;
    httpCount = 0;
    httpAggregates = 0;
    const profile = ['--expose-gc', ...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`] : [])];
    const preload = v.shim ? (v.register ?? REGISTER_CJS) : v.register;
    const args = preload ? [...profile, '--require', preload, child] : [...profile, child];
    const run = await new Promise<{ stdout: string; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, args, { env });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (c) => {
        stdout += c;
      });
      p.stderr.on('data', (c) => {
        stderr += c;
      });
      p.on('close', () => resolve({ stdout, stderr }));
    });
    const lastLine = run.stdout.trim().split('\n').pop() ?? '';
    let outcome: Outcome & { dropped?: number };
    try {
      outcome = JSON.parse(lastLine);
    } catch {
      throw new Error(`${v.name} failed: ${run.stdout.slice(-500)} ${run.stderr.slice(-2000)}`);
    }
    if (v.shim && v.sink === 'spool' && existsSync(spool)) {
      const records = readFileSync(spool, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as { count: number; aggregate?: unknown });
      outcome.records = records.length;
      outcome.counted = records.reduce((sum, r) => sum + r.count, 0);
      outcome.aggregates = records.filter((r) => r.aggregate).length;
    } else if (v.shim && v.sink === 'http') {
      outcome.records = httpRecords;
      outcome.counted = httpCount;
      outcome.aggregates = httpAggregates;
    }
    if (v.sink === 'none' && v.shim) outcome.stderrLines = run.stderr.split('\n').length - 1;
    results[v.name] = [...(results[v.name] ?? []), outcome];
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
};
const pick = (name: string, key: keyof Outcome) =>
  median((results[name] ?? []).map((o) => (o[key] as number | undefined) ?? Number.NaN));

console.log(
  `flood of ${N.toLocaleString('en-US')} distinct denies per child, waves of ${WAVE}, ${ROUNDS} round(s), medians`,
);
console.log(
  'variant                              µs/op   RSS +MB  heap kept MB  max block ms (drift / eld)  app wave ms  records  counted+dropped  aggregates  stderr lines',
);
const summary: Record<string, unknown> = { n: N, wave: WAVE, rounds: ROUNDS };
for (const v of VARIANTS) {
  if (ONLY && !v.name.includes(ONLY)) continue;
  const row = {
    usPerOp: pick(v.name, 'usPerOp'),
    rssGrowthMB: pick(v.name, 'rssGrowthMB'),
    keptMB: pick(v.name, 'keptMB'),
    maxGapMs: pick(v.name, 'maxGapMs'),
    loopDelayMaxMs: pick(v.name, 'loopDelayMaxMs'),
    appWaveMaxMs: pick(v.name, 'appWaveMaxMs'),
    records: pick(v.name, 'records'),
    counted: pick(v.name, 'counted'),
    dropped: pick(v.name, 'dropped'),
    aggregates: pick(v.name, 'aggregates'),
    stderrLines: pick(v.name, 'stderrLines'),
  };
  summary[v.name] = row;
  const accounted = v.shim && v.sink !== 'none' ? `${row.counted}+${row.dropped}` : '-';
  console.log(
    `${v.name.padEnd(34)} ${row.usPerOp.toFixed(1).padStart(7)}  ${row.rssGrowthMB.toFixed(1).padStart(8)}  ${row.keptMB.toFixed(1).padStart(12)}  ${row.maxGapMs.toFixed(1).padStart(8)} / ${row.loopDelayMaxMs.toFixed(1).padEnd(14)} ${row.appWaveMaxMs.toFixed(1).padStart(10)}  ${String(Number.isNaN(row.records) ? '-' : row.records).padStart(7)}  ${accounted.padStart(15)}  ${String(Number.isNaN(row.aggregates) ? '-' : row.aggregates).padStart(10)}  ${Number.isNaN(row.stderrLines) ? '-' : row.stderrLines}`,
  );
}
const refused = pick('refused connect, no shim', 'usPerOp');
const denied = pick('denied connect, spool', 'usPerOp');
summary.deniedOverRefused = denied / refused;
summary.rssOverFloorMB =
  pick('denied connect, spool', 'rssGrowthMB') - pick('connect, bare hook (floor)', 'rssGrowthMB');
if (BASELINE) summary.baselineDeniedOverRefused = pick('connect, spool, baseline', 'usPerOp') / refused;
console.log(
  `denied connect RSS beyond the bare hook's: ${(summary.rssOverFloorMB as number).toFixed(1)} MB\n` +
    `denied connect / refused connect: ${(denied / refused).toFixed(2)}x${BASELINE ? ` (baseline ${(summary.baselineDeniedOverRefused as number).toFixed(2)}x)` : ''} (goal ≤ 1); denied lookup goal ≤ 20 µs; RSS goal ≤ 50 MB; block goal ≤ 50 ms beyond the app's own`,
);
console.log(JSON.stringify({ bench: 'shim-flood', ...summary }));
receiver.close();
fx.cleanup();
