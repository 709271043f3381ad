// Ingestion: deny records per second into SQLite through POST /v1/reports with idempotency on
// (every batch is sent, then a tenth of them replayed), and a count of stored rows at the end.
// Goal (issue 4): ≥ 50,000 records/s with 0 lost.
import { join } from 'node:path';
import { request } from 'undici';
import { agent, createToken, serveControl, tempDir } from './control-support.js';

const RECORDS = Number(process.env.BENCH_RECORDS ?? 200_000);
const BATCH = Number(process.env.BENCH_BATCH ?? 1000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);

function batchBody(batchIndex: number): string {
  const records = [];
  for (let i = 0; i < BATCH; i++) {
    const n = batchIndex * BATCH + i;
    records.push({
      id: `bench-${n}`,
      time: new Date(Date.UTC(2026, 10, 28, 3, 0, 0, n % 1000)).toISOString(),
      count: 1,
      // A forwarder sends the records of its own sandbox: one workload per batch.
      workload: { cloud: 'aws', name: `fn-${batchIndex % 200}`, 'tag.app': 'fleet' },
      kind: 'connect',
      destination: { host: `host-${n % 50}.attacker.test`, port: 443, protocol: 'tcp' },
      decision: 'deny',
      mode: 'enforce',
      rule: 'default-deny',
      revision: 1,
      sandboxId: `sandbox-${batchIndex}`,
      seq: i + 1,
      origin: { package: 'evil-dep@1.0.0', file: 'node_modules/evil-dep/index.js', line: 12 },
    });
  }
  return JSON.stringify({ records });
}

/** Bodies are built before the clock starts, so the figure is the server's, not the generator's. */
export function prepareBodies(batches: number[]): Map<number, string> {
  const bodies = new Map<number, string>();
  for (const index of batches) if (!bodies.has(index)) bodies.set(index, batchBody(index));
  return bodies;
}

export async function ingest(url: string, token: string, batches: number[], bodies: Map<number, string>) {
  let stored = 0;
  let duplicate = 0;
  let rejected = 0;
  let errors = 0;
  let next = 0;
  const worker = async () => {
    while (next < batches.length) {
      const index = batches[next++] as number;
      const body = bodies.get(index) ?? batchBody(index);
      const response = await request(`${url}/v1/reports`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
        dispatcher: agent,
      });
      if (response.statusCode !== 202) {
        errors++;
        await response.body.dump();
        continue;
      }
      const answer = (await response.body.json()) as { stored: number; duplicate: number; rejected: number };
      stored += answer.stored;
      duplicate += answer.duplicate;
      rejected += answer.rejected;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { stored, duplicate, rejected, errors };
}

export function ingestionPlan(total: number): number[] {
  const batches = Array.from({ length: Math.ceil(total / BATCH) }, (_, i) => i);
  // Replay every tenth batch: a forwarder retrying after a lost acknowledgement.
  return [...batches, ...batches.filter((i) => i % 10 === 0)];
}

export async function storedRows(url: string, admin: string): Promise<number> {
  const response = await request(`${url}/metrics`, {
    headers: { authorization: `Bearer ${admin}` },
    dispatcher: agent,
  });
  const text = await response.body.text();
  return Number(/^bulkhead_deny_records_stored (\d+)$/m.exec(text)?.[1] ?? Number.NaN);
}

if (process.argv[1]?.includes('control-ingestion')) {
  const temp = tempDir();
  const storeArgs = ['--db', join(temp.dir, 'control.db')];
  const admin = createToken('admin', storeArgs);
  const workload = createToken('workload', storeArgs);
  const server = await serveControl(storeArgs, join(temp.dir, 'signing.pem'));
  try {
    const plan = ingestionPlan(RECORDS);
    const bodies = prepareBodies(plan);
    const started = performance.now();
    const result = await ingest(server.url, workload, plan, bodies);
    const seconds = (performance.now() - started) / 1000;
    const sent = plan.length * BATCH;
    const rows = await storedRows(server.url, admin);
    console.log(
      `ingestion sqlite: ${sent} records sent (${RECORDS} unique + ${sent - RECORDS} replayed) in ${seconds.toFixed(2)}s = ${Math.round(sent / seconds)} records/s; batches of ${BATCH}, ${CONCURRENCY} in flight`,
    );
    console.log(
      `stored=${result.stored} duplicate=${result.duplicate} rejected=${result.rejected} http-errors=${result.errors}; rows in store=${rows}; lost=${RECORDS - rows}`,
    );
  } finally {
    await server.stop();
    await agent.close();
    temp.remove();
  }
}
