// The in-process bundle client (Azure/GCP wrappers, Lambda extension) against the real control API on
// loopback, measured side by side in one run:
//   conditional   GET with If-None-Match → 304 (the per-invocation refresh when stale)
//   full          GET without it → 200 + Ed25519 verification (cold start)
//   propagation   N clients long-polling, one apply, time until each holds the new revision
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { loadTrustedKeys } from '../../policy/keys.js';
import { type BundleClient, createBundleClient } from '../../runtime-shims/node/client/bundle-client.js';

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 300);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 50);

function policy(ports: number[]): string {
  return `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: payments }
spec: { match: { tags: { app: payments } } }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: payments-egress }
spec:
  appliesTo: [payments]
  mode: enforce
  owner: payments-team@example.com
  allow:
${ports.map((port) => `    - to: { host: api.payments.test, port: ${port} }`).join('\n')}
`;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function summary(name: string, samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const p50 = percentile(sorted, 50);
  console.log(
    `${name.padEnd(14)} p50 ${p50.toFixed(2).padStart(7)} ms   p99 ${percentile(sorted, 99).toFixed(2).padStart(7)} ms   max ${(sorted.at(-1) ?? 0).toFixed(2).padStart(7)} ms   (n=${samples.length})`,
  );
  return p50;
}

async function main(): Promise<void> {
  const control: RunningControlServer = await startControlServer();
  const admin = (await control.issueToken('admin')).token;
  const token = (await control.issueToken('workload')).token;
  const trustedKeys = loadTrustedKeys([control.key.publicKeyPem]);
  const apply = async (text: string) => {
    const response = await fetch(`${control.url}/v1/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/yaml' },
      body: text,
    });
    return ((await response.json()) as { revision: number }).revision;
  };
  const client = (name: string) =>
    createBundleClient({
      controlUrl: control.url,
      token,
      workload: { cloud: 'gcp', name, 'tag.app': 'payments' },
      trustedKeys,
      timeoutMs: 5000,
      longPollSeconds: 30,
    });

  try {
    // A policy of realistic size: 200 allow rules.
    await apply(policy(Array.from({ length: 200 }, (_, i) => 1000 + i)));
    const single = client('bench-single');
    const conditional: number[] = [];
    const full: number[] = [];
    await single.fetchOnce();
    for (let i = 0; i < ITERATIONS; i++) {
      let t = performance.now();
      const notModified = await single.fetchOnce();
      conditional.push(performance.now() - t);
      if (notModified.kind !== 'not-modified')
        throw new Error(`expected not-modified, got ${notModified.kind}`);
      const fresh = client(`bench-full-${i % 4}`);
      t = performance.now();
      const updated = await fresh.fetchOnce();
      full.push(performance.now() - t);
      fresh.stop();
      if (updated.kind !== 'updated') throw new Error(`expected updated, got ${updated.kind}`);
    }
    single.stop();
    console.log(`bundle: ${Buffer.byteLength(single.current()?.envelopeText ?? '')} bytes, 200 rules`);
    const c50 = summary('conditional', conditional);
    const f50 = summary('full+verify', full);
    console.log(`ratio full/conditional (p50): ${(f50 / c50).toFixed(2)}x`);

    const clients: BundleClient[] = Array.from({ length: CLIENTS }, (_, i) => client(`bench-lp-${i}`));
    await Promise.all(clients.map((c) => c.fetchOnce()));
    const arrivals: number[] = [];
    const initialRevision = clients[0]?.current()?.revision ?? 0;
    let appliedAt = 0;
    const all = new Promise<void>((resolve) => {
      for (const c of clients) {
        c.startLongPoll((outcome) => {
          if (outcome.revision > initialRevision) {
            arrivals.push(performance.now() - appliedAt);
            if (arrivals.length === clients.length) resolve();
          }
        });
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 500)); // let every long-poll park
    appliedAt = performance.now();
    await apply(policy(Array.from({ length: 201 }, (_, i) => 1000 + i)));
    const applyMs = performance.now() - appliedAt;
    await all;
    for (const c of clients) c.stop();
    console.log(
      `propagation to ${CLIENTS} long-polling clients, from sending the apply (its answer took ${applyMs.toFixed(1)} ms):`,
    );
    summary('propagation', arrivals);
  } finally {
    await control.close();
  }
}

await main();
