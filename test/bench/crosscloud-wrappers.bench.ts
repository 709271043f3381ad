// Per-invocation cost of the Azure and GCP wrappers on the real shim core, side by side in one run
// (no network in the handlers; no control API, so no refresh: what remains is tagging, the invocation
// bookkeeping and the delivery call with nothing queued):
//   gcp bare      the HTTP handler called with a minimal req/res
//   gcp wrapped   bulkhead/gcp http() around it (res.end held until delivery resolved)
//   azure bare    an @azure/functions v4 http invocation through the worker stand-in, no hooks
//   azure setup   the same after setupBulkhead(app) (preInvocation + postInvocation hooks)
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { setupBulkhead } from '../../runtime-shims/node/azure/index.js';
import { installLocalWorker } from '../../runtime-shims/node/azure/local-worker.js';
import { http } from '../../runtime-shims/node/gcp/index.js';

process.env.BULKHEAD_FAIL_MODE ??= 'observe';
process.env.BULKHEAD_LOG ??= 'silent';

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 5000);
const WARMUP = 500;

async function measure(name: string, invoke: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < WARMUP; i++) await invoke(i);
  const start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) await invoke(i);
  const perOpNs = Number(process.hrtime.bigint() - start) / ITERATIONS;
  console.log(`${name.padEnd(13)} ${(perOpNs / 1000).toFixed(2).padStart(9)} µs/invocation`);
  return perOpNs;
}

class Response extends EventEmitter {
  end(): this {
    this.emit('finish');
    return this;
  }
}

function callHttp(handler: (req: never, res: never) => unknown, i: number): Promise<void> {
  const res = new Response();
  const finished = new Promise<void>((resolve) => res.once('finish', resolve));
  void handler({ executionId: `exec-${i}` } as never, res as never);
  return finished;
}

const handler = (_req: unknown, res: Response) => {
  res.end();
};
for (let i = 0; i < ITERATIONS; i++) await callHttp(handler as never, i);
const gcpBare = await measure('gcp bare', (i) => callHttp(handler as never, i));
const wrapped = http(handler as (req: never, res: never) => unknown);
const gcpWrapped = await measure('gcp wrapped', (i) => callHttp(wrapped, i));

const worker = installLocalWorker();
const { app } = createRequire(import.meta.url)('@azure/functions') as typeof import('@azure/functions');
app.http('bench', { handler: () => ({ status: 204 }) });
await worker.start();
const invokeAzure = (i: number) =>
  worker.invoke('bench', {
    invocationId: `inv-${i}`,
    triggerData: { http: { method: 'GET', url: 'http://localhost/api/bench', headers: {} } },
  });
// The library's code paths are cold at first: one unreported round warms them like the others.
for (let i = 0; i < ITERATIONS; i++) await invokeAzure(i);
const azureBare = await measure('azure bare', invokeAzure);
setupBulkhead(app);
const azureSetup = await measure('azure setup', invokeAzure);

console.log(
  `overhead: gcp +${((gcpWrapped - gcpBare) / 1000).toFixed(2)} µs (${(gcpWrapped / gcpBare).toFixed(2)}x), ` +
    `azure +${((azureSetup - azureBare) / 1000).toFixed(2)} µs (${(azureSetup / azureBare).toFixed(2)}x)`,
);
