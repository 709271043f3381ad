// Per-invocation cost of withBulkhead, measured side by side in one run:
//   bare        the handler called directly
//   wrapped     withBulkhead on the real shim core (tagging + flush with nothing queued)
//   wrapped+ext the same plus the sync with the extension through the state dir's files: the ready
//               line read (written before each invocation as the extension writes it at INVOKE, outside
//               the timing: that is the extension's cost), the refresh (one stat of the bundle file) and
//               the done line written after the flush
// Figures are means over many sequential invocations; ratios are against `bare`.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DONE_FILE, READY_FILE } from '../../extensions/state-files.js';
import { corePort } from '../../runtime-shims/node/core-port.js';

const coreShim = corePort();

import { LineFile } from '../../runtime-shims/node/aws/extension-sync.js';
import { createWithBulkhead } from '../../runtime-shims/node/aws/with-bulkhead.js';

process.env.BULKHEAD_FAIL_MODE ??= 'observe';

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const WARMUP = 500;

function context(requestId: string) {
  return { awsRequestId: requestId, getRemainingTimeInMillis: () => 30_000 };
}

interface Variant {
  invoke: (i: number) => Promise<unknown>;
  /** Work before each invocation that is not the wrapper's (left out of the figure). */
  prepare?: (i: number) => void;
}

/** Mean ns per invocation over one round of sequential invocations. */
async function round({ invoke, prepare }: Variant): Promise<number> {
  if (prepare === undefined) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < ITERATIONS; i++) await invoke(i);
    return Number(process.hrtime.bigint() - start) / ITERATIONS;
  }
  let total = 0n;
  for (let i = 0; i < ITERATIONS; i++) {
    prepare(i);
    const start = process.hrtime.bigint();
    await invoke(i);
    total += process.hrtime.bigint() - start;
  }
  return Number(total) / ITERATIONS;
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

// The state dir the layer's exec wrapper names in BULKHEAD_READY_FILE and BULKHEAD_DONE_FILE.
const stateDir = mkdtempSync(join(tmpdir(), 'bulkhead-bench-'));
const readyFile = join(stateDir, READY_FILE);
const doneFile = join(stateDir, DONE_FILE);
// Kept open and rewritten in place, as the extension writes it.
const ready = new LineFile(readyFile, 0o644);
// As on Lambda, where the exec wrapper names it: the core installs below, at the first wrap. Absent
// here (the fail mode governs), so each refresh is one stat that finds the file unchanged.
process.env.BULKHEAD_BUNDLE_FILE ??= join(stateDir, 'bundle.json');

const handler = async (event: { i: number }) => event.i + 1;
const withBulkhead = createWithBulkhead(coreShim, {
  ...process.env,
  BULKHEAD_READY_FILE: '',
  BULKHEAD_DONE_FILE: '',
});
const wrapped = withBulkhead(handler, { onError: () => undefined });
let telemetryErrors = 0;
const wrappedWithExtension = createWithBulkhead(coreShim, {
  ...process.env,
  BULKHEAD_READY_FILE: readyFile,
  BULKHEAD_DONE_FILE: doneFile,
  AWS_LAMBDA_MAX_CONCURRENCY: '1',
})(handler, {
  onError: () => {
    telemetryErrors++;
  },
});

const variants: [string, Variant][] = [
  ['bare', { invoke: (i) => handler({ i }) }],
  ['wrapped', { invoke: (i) => wrapped({ i }, context(`req-${i}`)) }],
  [
    'wrapped+ext',
    {
      // The bundle file does not change: the wrapper's refresh is one stat (the figure is the sync alone).
      prepare: (i) => ready.write(`req-${i}`, 0),
      invoke: (i) => wrappedWithExtension({ i }, context(`req-${i}`)),
    },
  ],
];
for (const [, { invoke, prepare }] of variants)
  for (let i = 0; i < WARMUP; i++) {
    prepare?.(i);
    await invoke(i);
  }
// Rounds interleave the variants so a noisy neighbour hurts all three alike; medians are reported.
const samples = new Map<string, number[]>(variants.map(([name]) => [name, []]));
for (let r = 0; r < ROUNDS; r++)
  for (const [name, variant] of variants) samples.get(name)?.push(await round(variant));
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
ready.close();
rmSync(stateDir, { recursive: true, force: true });
if (telemetryErrors > 0) {
  console.error(`${telemetryErrors} sync/flush failures: the figures above are not valid`);
  process.exitCode = 1;
}
