// Propagation with two control API replicas on one PostgreSQL database: 1,000 workloads split
// across both, the change applied on replica A only; replica B learns it through NOTIFY.
import { join } from 'node:path';
import { startPostgresCluster } from '../control/pg-cluster.js';
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

const temp = tempDir();
const cluster = await startPostgresCluster();
const servers: Awaited<ReturnType<typeof serveControl>>[] = [];
try {
  const databaseUrl = await cluster.createDatabase('bench');
  const storeArgs = ['--database-url', databaseUrl];
  const keyFile = join(temp.dir, 'signing.pem');
  servers.push(await serveControl(storeArgs, keyFile));
  servers.push(await serveControl(storeArgs, keyFile));
  const [a, b] = servers as [(typeof servers)[0], (typeof servers)[0]];
  const admin = createToken('admin', storeArgs);
  const workloadToken = createToken('workload', storeArgs);
  await applyPolicy(a.url, admin, policyText(0));
  const parked = await parkFleet([a.url, b.url], workloadToken, admin, WORKLOADS);
  const { fleet } = parked;
  const latencies = await measurePropagation(fleet, a.url, admin, ROUNDS, 1);
  console.log(
    summarize(`propagation postgres, 2 replicas, ${WORKLOADS} workloads x ${ROUNDS} applies on A`, latencies),
  );
  console.log(`errors: ${parked.errors()}`);
  const stopped = parked.stop();
  for (const server of servers) await server.stop();
  await stopped;
} finally {
  for (const server of servers) await server.stop();
  await agent.close();
  await cluster.stop();
  temp.remove();
}
