// Both at once: 1,000 long-polling workloads and a stream of deny-record batches on one
// SQLite control API; propagation figures under ingestion load, and the errors (goal: 0).
import { join } from 'node:path';
import { ingest, ingestionPlan, prepareBodies, storedRows } from './control-ingestion.bench.js';
import {
  agent,
  applyPolicy,
  createToken,
  measurePropagation,
  parkFleet,
  policyText,
  serveControl,
  summarize,
  tempDir,
} from './control-support.js';

const WORKLOADS = Number(process.env.BENCH_WORKLOADS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const RECORDS = Number(process.env.BENCH_RECORDS ?? 100_000);

const temp = tempDir();
const storeArgs = ['--db', join(temp.dir, 'control.db')];
const admin = createToken('admin', storeArgs);
const workloadToken = createToken('workload', storeArgs);
const server = await serveControl(storeArgs, join(temp.dir, 'signing.pem'));
try {
  await applyPolicy(server.url, admin, policyText(0));
  const parked = await parkFleet([server.url], workloadToken, admin, WORKLOADS);
  const { fleet } = parked;
  const plan = ingestionPlan(RECORDS);
  const bodies = prepareBodies(plan);
  const started = performance.now();
  const ingestion = ingest(server.url, workloadToken, plan, bodies);
  const latencies = await measurePropagation(fleet, server.url, admin, ROUNDS, 1);
  const result = await ingestion;
  const seconds = (performance.now() - started) / 1000;
  const rows = await storedRows(server.url, admin);
  console.log(
    summarize(`propagation under ingestion, ${WORKLOADS} workloads x ${ROUNDS} applies`, latencies),
  );
  console.log(
    `ingestion meanwhile: ${plan.length * 1000} records in ${seconds.toFixed(2)}s; stored=${result.stored} duplicate=${result.duplicate} rows=${rows} lost=${RECORDS - rows}`,
  );
  console.log(
    `errors: long-poll=${parked.errors()} report-http=${result.errors} rejected=${result.rejected}`,
  );
  const stopped = parked.stop();
  await server.stop();
  await stopped;
} finally {
  await server.stop();
  await agent.close();
  temp.remove();
}
