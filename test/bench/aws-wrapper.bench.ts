// Per-invocation cost of withBulkhead, measured side by side in one run:
//   bare        the handler called directly
//   wrapped     withBulkhead on the real shim core (tagging + flush with nothing queued)
//   wrapped+ext the same plus the ready sync with an extension endpoint over loopback (keep-alive)
// Figures are means over many sequential invocations; ratios are against `bare`.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { coreShim } from '../../runtime-shims/node/aws/core-binding.js';
import { createWithBulkhead } from '../../runtime-shims/node/aws/with-bulkhead.js';

process.env.BULKHEAD_FAIL_MODE ??= 'observe';

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const WARMUP = 500;

function context(requestId: string) {
  return { awsRequestId: requestId, getRemainingTimeInMillis: () => 30_000 };
}

/** Mean ns per invocation over one round of sequential invocations. */
async function round(invoke: (i: number) => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) await invoke(i);
  return Number(process.hrtime.bigint() - start) / ITERATIONS;
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end('{"revision":0}');
});
await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
const extensionUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
// As the exec wrapper does: the shim exempts exactly this endpoint, read when it installs (below).
process.env.BULKHEAD_EXTENSION_URL = extensionUrl;

const handler = async (event: { i: number }) => event.i + 1;
const withBulkhead = createWithBulkhead(coreShim, { ...process.env, BULKHEAD_EXTENSION_URL: '' });
const wrapped = withBulkhead(handler, { onError: () => undefined });
let telemetryErrors = 0;
const wrappedWithExtension = createWithBulkhead(coreShim, process.env)(handler, {
  extensionUrl,
  onError: () => {
    telemetryErrors++;
  },
});

const variants: [string, (i: number) => Promise<unknown>][] = [
  ['bare', (i) => handler({ i })],
  ['wrapped', (i) => wrapped({ i }, context(`req-${i}`))],
  ['wrapped+ext', (i) => wrappedWithExtension({ i }, context(`req-${i}`))],
];
for (const [, invoke] of variants) for (let i = 0; i < WARMUP; i++) await invoke(i);
// Rounds interleave the variants so a noisy neighbour hurts all three alike; medians are reported.
const samples = new Map<string, number[]>(variants.map(([name]) => [name, []]));
for (let r = 0; r < ROUNDS; r++)
  for (const [name, invoke] of variants) samples.get(name)?.push(await round(invoke));
const result = new Map([...samples].map(([name, values]) => [name, median(values)]));
console.log(
  `${ROUNDS} interleaved rounds of ${ITERATIONS} sequential invocations per variant (median of rounds)`,
);
for (const [name, ns] of result)
  console.log(`${name.padEnd(12)} ${(ns / 1000).toFixed(2).padStart(9)} µs/invocation`);
const bare = result.get('bare') ?? Number.NaN;
for (const name of ['wrapped', 'wrapped+ext']) {
  const ns = result.get(name) ?? Number.NaN;
  console.log(
    `ratio ${name}/bare`.padEnd(24),
    `${(ns / bare).toFixed(1)}x  (+${((ns - bare) / 1000).toFixed(2)} µs)`,
  );
}
server.close();
if (telemetryErrors > 0) {
  console.error(`${telemetryErrors} sync/flush failures: the figures above are not valid`);
  process.exitCode = 1;
}
