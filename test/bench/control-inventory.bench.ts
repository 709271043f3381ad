// The inventory at scale (issue 17): GET /v1/workloads with 100,000 workloads beside the same at
// 1,000, on a SQLite file store, over HTTP on loopback (server in this process, requests one at a
// time, so each figure is one request's whole time: route, store, serialisation, client parse).
// A realistic applied policy (10 SmartGroups: one per app, `prod`, `eu`; ~40 scopes); workloads
// loaded through store.recordSightings (as the bundle route's sightings would), 2 % of them one
// revision behind, 1 % with numbered deny records (gaps). Per size:
//  - first page (`?limit=100`, carries the per-SmartGroup summary, counted once a second)
//  - middle page (`?limit=100&cursor=…` at the inventory's middle key)
//  - filtered pages: `group=` (a tenth of the fleet), `name=` glob (a prefix), `behind=true` (2 %)
//  - the summary alone (`?limit=0`), counted afresh (each sample a second after the last) and cached
//  - every workload, walked with `limit=1000` pages
// Goal: ≤ 50 ms per page at 100,000 workloads. Median/p99 ms and answer bytes; the 100k/1k ratio.
// A table on stdout and bench-results/control-inventory.json. Run: npm run bench -- control-inventory
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { encodeWorkloadCursor } from '../../control/routes/workloads.js';
import { startControlServer } from '../../control/server.js';
import { openSqliteStore } from '../../control/store/sqlite.js';
import type { DenyRow, WorkloadSighting } from '../../control/store/types.js';
import {
  formatIdentity,
  generateKeyPair,
  groupsSelecting,
  parsePolicy,
  scopeOf,
} from '../../policy/index.js';
import type { WorkloadIdentity } from '../../policy/types.js';
import { agent, tempDir } from './control-support.js';
import { median, percentile } from './stats.js';

const SIZES = (process.env.BENCH_INVENTORY_SIZES ?? '1000,100000').split(',').map(Number);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 50);
const SUMMARY_SAMPLES = Number(process.env.BENCH_SUMMARY_SAMPLES ?? 8);
const GOAL_PAGE_MS = 50;
const APPS = ['payments', 'ledger', 'search', 'media', 'auth', 'billing', 'ml', 'edge'];
const REGIONS = ['us-east-1', 'us-west-2', 'eu-west-1', 'eu-central-1', 'ap-southeast-2'];

const doc = (kind: string, name: string, spec: string) =>
  `apiVersion: bulkhead.dev/v1\nkind: ${kind}\nmetadata: { name: ${name} }\nspec:\n${spec}`;

function policyText(): string {
  const docs: string[] = [];
  for (const app of APPS) {
    docs.push(doc('SmartGroup', app, `  match: { cloud: aws, tags: { app: ${app} } }`));
    const allow = Array.from(
      { length: 20 },
      (_, r) => `    - to: { host: api${r}.${app}.example.com, port: 443 }`,
    );
    docs.push(
      doc(
        'EgressPolicy',
        `${app}-egress`,
        `  appliesTo: [${app}]\n  mode: enforce\n  owner: bench\n  allow:\n${allow.join('\n')}`,
      ),
    );
  }
  docs.push(doc('SmartGroup', 'prod', '  match: { tags: { env: prod } }'));
  docs.push(doc('SmartGroup', 'eu', '  match: { region: "eu-*" }'));
  docs.push(
    doc(
      'EgressPolicy',
      'prod-telemetry',
      '  appliesTo: [prod]\n  mode: enforce\n  owner: bench\n  allow:\n    - to: { host: telemetry.example.com, port: 443 }',
    ),
  );
  return `${docs.join('\n---\n')}\n`;
}

function identityOf(i: number): WorkloadIdentity {
  return {
    cloud: 'aws',
    account: `1234567890${String(i % 7).padStart(2, '0')}`,
    region: REGIONS[i % REGIONS.length] as string,
    name: `fn-${String(i).padStart(6, '0')}`,
    runtime: 'nodejs22.x',
    'tag.app': APPS[i % APPS.length] as string,
    'tag.env': i % 3 === 0 ? 'staging' : 'prod',
    'tag.team': `team-${i % 40}`,
    'tag.cost-center': `cc-${1000 + (i % 97)}`,
  };
}

interface Figure {
  medianMs: number;
  p99Ms: number;
  bytes: number;
  rows: number;
}

async function time(
  url: string,
  token: string,
  path: string,
): Promise<{ ms: number; bytes: number; body: unknown }> {
  const start = performance.now();
  const response = await request(`${url}${path}`, {
    headers: { authorization: `Bearer ${token}` },
    dispatcher: agent,
  });
  const text = await response.body.text();
  const ms = performance.now() - start;
  if (response.statusCode !== 200) throw new Error(`${path}: ${response.statusCode} ${text.slice(0, 200)}`);
  return { ms, bytes: Buffer.byteLength(text), body: JSON.parse(text) };
}

async function figure(
  url: string,
  token: string,
  path: string,
  samples = SAMPLES,
  gapMs = 0,
): Promise<Figure> {
  const times: number[] = [];
  let bytes = 0;
  let rows = 0;
  await time(url, token, path); // warm-up
  for (let i = 0; i < samples; i++) {
    if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
    const sample = await time(url, token, path);
    times.push(sample.ms);
    bytes = sample.bytes;
    rows = (sample.body as { workloads: unknown[] }).workloads.length;
  }
  return { medianMs: median(times), p99Ms: percentile(times, 99), bytes, rows };
}

async function measure(size: number) {
  const dir = tempDir();
  const store = openSqliteStore(join(dir.dir, 'inventory.db'));
  const server = await startControlServer({
    store,
    signingKey: generateKeyPair(),
    limits: {
      rateLimit: { admin: { perSecond: 1e6, burst: 1e6 }, workload: { perSecond: 1e6, burst: 1e6 } },
    },
  });
  try {
    const admin = (await server.issueToken('admin')).token;
    const text = policyText();
    const applied = await request(`${server.url}/v1/policy`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/yaml' },
      body: text,
      dispatcher: agent,
    });
    const { revision } = (await applied.body.json()) as { revision: number };
    if (applied.statusCode !== 200) throw new Error(`apply: ${applied.statusCode}`);
    const parsed = parsePolicy([{ file: 'bench.yaml', text }]);
    if (!parsed.ok) throw new Error('policy does not parse');

    const loadStart = performance.now();
    const byCombination = new Map<string, { scope: string; groups: string[] }>();
    let batch: WorkloadSighting[] = [];
    const keys: string[] = [];
    const denies: DenyRow[] = [];
    for (let i = 0; i < size; i++) {
      const identity = identityOf(i);
      const combination = `${identity['tag.app']}|${identity['tag.env']}|${identity.region}`;
      let resolved = byCombination.get(combination);
      if (!resolved) {
        resolved = {
          scope: scopeOf(parsed.set, identity),
          groups: groupsSelecting(parsed.set, identity).map((g) => g.metadata.name),
        };
        byCombination.set(combination, resolved);
      }
      const key = formatIdentity(identity);
      keys.push(key);
      batch.push({
        key,
        identity: { ...identity },
        seenAt: new Date(Date.UTC(2026, 10, 28, 3, 0, i % 60)).toISOString(),
        revision: i % 50 === 7 ? revision - 1 : revision,
        scope: resolved.scope,
        groups: resolved.groups,
      });
      if (i % 100 === 3) {
        for (const seq of [1, 2, 5]) {
          denies.push({
            id: `d-${i}-${seq}`,
            time: '2026-11-28T03:00:00.000Z',
            timeMs: Date.parse('2026-11-28T03:00:00.000Z'),
            workloadKey: key,
            workloadName: identity.name ?? null,
            invocationId: null,
            originPackage: null,
            severity: 'normal',
            groups: `,${resolved.groups.join(',')},`,
            host: 'exfil.attacker.test',
            ip: null,
            port: 443,
            kind: 'connect',
            decision: 'deny',
            mode: 'enforce',
            rule: 'default-deny',
            revision,
            sandboxId: `sb-${i}`,
            seq,
            receivedAt: new Date().toISOString(),
            record: '{}',
          });
        }
      }
      if (batch.length === 5000) {
        await store.recordSightings(batch);
        batch = [];
      }
    }
    await store.recordSightings(batch);
    await store.insertDenies(denies);
    const loadMs = performance.now() - loadStart;

    const sorted = [...keys].sort();
    const middle = encodeWorkloadCursor(sorted[Math.floor(sorted.length / 2)] as string);
    const url = server.url;
    const results = {
      size,
      scopes: byCombination.size,
      loadMs,
      firstPage: await figure(url, admin, '/v1/workloads?limit=100'),
      middlePage: await figure(url, admin, `/v1/workloads?limit=100&cursor=${middle}`),
      groupFilter: await figure(url, admin, `/v1/workloads?limit=100&group=ledger&cursor=${middle}`),
      nameGlob: await figure(url, admin, '/v1/workloads?limit=100&name=fn-0005*'),
      behind: await figure(url, admin, `/v1/workloads?limit=100&behind=true&cursor=${middle}`),
      summaryCounted: await figure(url, admin, '/v1/workloads?limit=0', SUMMARY_SAMPLES, 1050),
      summaryCached: await figure(url, admin, '/v1/workloads?limit=0'),
      walk: { totalMs: 0, pages: 0, rows: 0 },
      rssMiB: 0,
    };
    // Every workload, 1000 a page.
    const walkStart = performance.now();
    let cursor: string | undefined;
    do {
      const page = (await time(url, admin, `/v1/workloads?limit=1000${cursor ? `&cursor=${cursor}` : ''}`))
        .body as { workloads: unknown[]; nextCursor?: string };
      results.walk.pages++;
      results.walk.rows += page.workloads.length;
      cursor = page.nextCursor;
    } while (cursor);
    results.walk.totalMs = performance.now() - walkStart;
    results.rssMiB = process.memoryUsage().rss / 2 ** 20;
    return results;
  } finally {
    await server.close();
    await store.close();
    dir.remove();
  }
}

const all = [];
for (const size of SIZES) {
  (globalThis as { gc?: () => void }).gc?.();
  all.push(await measure(size));
}
const pages = [
  'firstPage',
  'middlePage',
  'groupFilter',
  'nameGlob',
  'behind',
  'summaryCounted',
  'summaryCached',
] as const;
const fmt = (n: number) => n.toFixed(2).padStart(8);
console.log(
  `GET /v1/workloads, SQLite file store, loopback; ${SAMPLES} samples (summary counted: ${SUMMARY_SAMPLES})`,
);
for (const r of all) {
  console.log(
    `\n${r.size.toLocaleString('en')} workloads (${r.scopes} scopes; loaded in ${(r.loadMs / 1000).toFixed(1)} s; RSS ${r.rssMiB.toFixed(0)} MiB)`,
  );
  console.log('                   median ms   p99 ms    bytes  rows');
  for (const name of pages) {
    const f = r[name];
    console.log(
      `  ${name.padEnd(15)} ${fmt(f.medianMs)} ${fmt(f.p99Ms)} ${String(f.bytes).padStart(8)} ${String(f.rows).padStart(5)}`,
    );
  }
  console.log(
    `  every workload: ${r.walk.pages} pages of ≤ 1000 in ${r.walk.totalMs.toFixed(0)} ms (${r.walk.rows} rows)`,
  );
}
const small = all[0];
const large = all[all.length - 1];
if (small && large && small !== large) {
  console.log(`\nratio ${large.size.toLocaleString('en')} / ${small.size.toLocaleString('en')} (medians):`);
  for (const name of pages)
    console.log(`  ${name.padEnd(15)} ${(large[name].medianMs / small[name].medianMs).toFixed(2)}`);
  const worst = Math.max(...pages.filter((p) => !p.startsWith('summary')).map((p) => large[p].p99Ms));
  console.log(
    `\ngoal: every page ≤ ${GOAL_PAGE_MS} ms at ${large.size.toLocaleString('en')} (worst page p99 ${worst.toFixed(2)} ms): ${worst <= GOAL_PAGE_MS ? 'met' : 'NOT met'}`,
  );
}
mkdirSync(join(process.cwd(), 'bench-results'), { recursive: true });
writeFileSync(
  join(process.cwd(), 'bench-results', 'control-inventory.json'),
  `${JSON.stringify(all, null, 2)}\n`,
);
console.log('written: bench-results/control-inventory.json');
process.exit(0);
