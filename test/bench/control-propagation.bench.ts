// Propagation: 1,000 simulated workloads long-poll one control API (SQLite) over loopback;
// a policy change is applied and we time, per workload, apply request → new revision held.
// Goal (issue 4): p99 ≤ 250 ms.
import { join } from 'node:path';
import {
  agent,
  applyPolicy,
  createToken,
  measurePropagation,
  parkFleet,
  policyText,
  serveControl,
  serverPropagationMeanMs,
  summarize,
  tempDir,
} from './control-support.js';

const WORKLOADS = Number(process.env.BENCH_WORKLOADS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

const temp = tempDir();
const storeArgs = ['--db', join(temp.dir, 'control.db')];
const admin = createToken('admin', storeArgs);
const workloadToken = createToken('workload', storeArgs);
const server = await serveControl(storeArgs, join(temp.dir, 'signing.pem'));
try {
  await applyPolicy(server.url, admin, policyText(0));
  const parked = await parkFleet([server.url], workloadToken, admin, WORKLOADS);
  const { fleet } = parked;
  const latencies = await measurePropagation(fleet, server.url, admin, ROUNDS, 1);
  console.log(summarize(`propagation sqlite, ${WORKLOADS} workloads x ${ROUNDS} applies`, latencies));
  console.log(
    `server-side mean, revision known → workload answered: ${(await serverPropagationMeanMs(server.url, admin)).toFixed(1)}ms`,
  );
  console.log(`errors: ${parked.errors()}`);
  const stopped = parked.stop();
  await server.stop();
  await stopped;
} finally {
  await server.stop();
  await agent.close();
  temp.remove();
}
