// Per-invocation cost of withBulkhead, measured side by side in one run:
//   bare        the handler called directly
//   wrapped     withBulkhead on the real shim core (tagging + flush with nothing queued)
//   wrapped+ext the same plus the ready sync with an extension endpoint over loopback (keep-alive)
// Figures are means over many sequential invocations; ratios are against `bare`.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { coreShim } from '../../runtime-shims/aws/core-binding.js';
import { createWithBulkhead } from '../../runtime-shims/aws/with-bulkhead.js';

process.env.BULKHEAD_FAIL_MODE ??= 'observe';

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 5000);
const WARMUP = 500;

function context(requestId: string) {
  return { awsRequestId: requestId, getRemainingTimeInMillis: () => 30_000 };
}

async function measure(name: string, invoke: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < WARMUP; i++) await invoke(i);
  const start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) await invoke(i);
  const perOpNs = Number(process.hrtime.bigint() - start) / ITERATIONS;
  console.log(`${name.padEnd(12)} ${(perOpNs / 1000).toFixed(2).padStart(9)} µs/invocation`);
  return perOpNs;
}

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

console.log(`${ITERATIONS} sequential invocations each (after ${WARMUP} warm-up)`);
const bare = await measure('bare', (i) => handler({ i }));
const plain = await measure('wrapped', (i) => wrapped({ i }, context(`req-${i}`)));
const synced = await measure('wrapped+ext', (i) => wrappedWithExtension({ i }, context(`req-${i}`)));
console.log(
  `ratio wrapped/bare      ${(plain / bare).toFixed(1)}x  (+${((plain - bare) / 1000).toFixed(2)} µs)`,
);
console.log(
  `ratio wrapped+ext/bare  ${(synced / bare).toFixed(1)}x  (+${((synced - bare) / 1000).toFixed(2)} µs)`,
);
server.close();
if (telemetryErrors > 0) {
  console.error(`${telemetryErrors} sync/flush failures: the figures above are not valid`);
  process.exitCode = 1;
}
