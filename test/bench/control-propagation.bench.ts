// Propagation: 1,000 simulated workloads long-poll one control API (SQLite) over loopback;
// a policy change is applied and we time, per workload, apply request → new revision held.
// Goal (issue 4): p99 ≤ 250 ms.
import { join } from 'node:path';
import {
  agent,
  applyPolicy,
  createToken,
  longPollsOpen,
  measurePropagation,
  policyText,
  SimulatedWorkload,
  serveControl,
  serverPropagationMeanMs,
  summarize,
  tempDir,
  waitUntil,
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
  const fleet = Array.from(
    { length: WORKLOADS },
    (_, i) => new SimulatedWorkload(server.url, workloadToken, `cloud=aws,name=fn-${i},tag.app=fleet`),
  );
  const running = fleet.map((w) => w.run());
  await waitUntil(
    async () => (await longPollsOpen(server.url, admin)) >= WORKLOADS,
    60_000,
    'the fleet to park',
  );
  const latencies = await measurePropagation(fleet, server.url, admin, ROUNDS, 1);
  console.log(summarize(`propagation sqlite, ${WORKLOADS} workloads x ${ROUNDS} applies`, latencies));
  console.log(
    `server-side mean, revision known → workload answered: ${(await serverPropagationMeanMs(server.url, admin)).toFixed(1)}ms`,
  );
  const errors = fleet.reduce((sum, w) => sum + w.errors, 0);
  console.log(`errors: ${errors}`);
  for (const w of fleet) w.stop();
  await server.stop();
  await Promise.allSettled(running);
} finally {
  await server.stop();
  await agent.close();
  temp.remove();
}
