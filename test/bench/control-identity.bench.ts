// Workload identity under attack and at work (issue 17), on an in-process control API with a SQLite
// file store, over HTTP on loopback:
//  - the inventory flood measured from outside before: one workload token inventing 20,000 identities
//    in a burst, then 2,000 identities of 8 KiB — how many the API took in, what it refused, and what
//    GET /v1/workloads (first page) and the server's RSS looked like afterwards;
//  - what identity costs a legitimate workload: a bundle fetch (304) with a fleet token, with a
//    SmartGroup-limited token, and with an attested session, side by side; and POST /v1/attest
//    itself (proof verified against the SigV4-checking STS stand-in, session stored).
// A table on stdout and bench-results/control-identity.json. Run: npm run bench -- control-identity
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { startControlServer } from '../../control/server.js';
import { openSqliteStore } from '../../control/store/sqlite.js';
import { generateKeyPair } from '../../policy/index.js';
import { awsProof } from '../../runtime-shims/node/client/attest-aws.js';
import { startAwsStandin } from '../support/aws-standin.js';
import { agent, tempDir } from './control-support.js';
import { median, percentile } from './stats.js';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 400);
const INVENTED = 20_000;
const LARGE = 2_000;
const AUDIENCE = 'https://bulkhead.bench';
const ROLE = {
  id: 'ASIABENCH00000000001',
  secret: 'bench/secret/0000000000000000000000000',
  token: 'bench//token==',
};
const POLICY = `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: payments }
spec:
  match: { cloud: aws, name: "charge-*" }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: payments-egress }
spec:
  appliesTo: [payments]
  mode: enforce
  owner: bench
  allow:
    - to: { host: api.stripe.com, port: 443 }
`;

async function call(
  url: string,
  token: string,
  init: { method?: string; body?: string; etag?: string } = {},
) {
  const started = performance.now();
  const answer = await request(url, {
    method: (init.method ?? 'GET') as 'GET',
    dispatcher: agent,
    headers: {
      authorization: `Bearer ${token}`,
      ...(init.body ? { 'content-type': 'application/json' } : {}),
      ...(init.etag ? { 'if-none-match': init.etag } : {}),
    },
    ...(init.body ? { body: init.body } : {}),
  });
  const text = await answer.body.text();
  return { status: answer.statusCode, ms: performance.now() - started, text, headers: answer.headers };
}

const rssMiB = () => Math.round(process.memoryUsage().rss / 1048576);

async function main(): Promise<void> {
  const temp = tempDir();
  const aws = await startAwsStandin({
    credentials: {
      [ROLE.id]: {
        secretAccessKey: ROLE.secret,
        sessionToken: ROLE.token,
        arn: 'arn:aws:sts::111122223333:assumed-role/charge-role/charge-card',
        account: '111122223333',
      },
    },
  });
  const control = await startControlServer({
    store: openSqliteStore(join(temp.dir, 'bench.db')),
    signingKey: generateKeyPair(),
    attestation: { audience: AUDIENCE, aws: { stsEndpoint: aws.url } },
  });
  const rows: { row: string; value: string }[] = [];
  try {
    const admin = (await control.issueToken('admin')).token;
    const fleet = (await control.issueToken('workload', 'fleet')).token;
    const limited = (await control.issueToken('workload', 'payments', { groups: ['payments'] })).token;
    const applied = await call(`${control.url}/v1/policy`, admin, {
      method: 'PUT',
      body: JSON.stringify({ sources: [{ file: 'p.yaml', text: POLICY }] }),
    });
    if (applied.status !== 200) throw new Error(`apply: ${applied.status} ${applied.text}`);
    const bundle = (identity: string) => `${control.url}/v1/bundle?workload=${encodeURIComponent(identity)}`;

    // The flood: one token, 20,000 invented identities, 32 at a time.
    const rssBefore = rssMiB();
    const statuses = new Map<number, number>();
    const floodStarted = performance.now();
    for (let i = 0; i < INVENTED; i += 32) {
      const batch = Array.from({ length: Math.min(32, INVENTED - i) }, (_, j) =>
        call(bundle(`cloud=aws,name=invented-${i + j}`), fleet),
      );
      for (const answer of await Promise.all(batch))
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
    }
    const floodMs = performance.now() - floodStarted;
    const large = new Map<number, number>();
    const value = 'x'.repeat(250);
    for (let i = 0; i < LARGE; i++) {
      const identity = Array.from({ length: 32 }, (_, k) => `tag.k${k}=${value}${i}`).join(',');
      const answer = await call(bundle(`cloud=aws,name=big-${i},${identity}`), fleet);
      large.set(answer.status, (large.get(answer.status) ?? 0) + 1);
    }
    const page = await call(`${control.url}/v1/workloads?limit=100`, admin);
    const counted = JSON.parse(
      (await call(`${control.url}/metrics`, admin)).text
        .match(/bulkhead_workloads (\d+)/)?.[0]
        .split(' ')[1] ?? '0',
    );
    const text = (m: Map<number, number>) =>
      [...m]
        .sort()
        .map(([status, n]) => `${n}×${status}`)
        .join(', ');
    rows.push(
      {
        row: `${INVENTED} invented identities (one token, burst)`,
        value: `${text(statuses)} in ${Math.round(floodMs)} ms`,
      },
      { row: `${LARGE} identities of ~8 KiB`, value: text(large) },
      { row: 'workloads in the inventory afterwards', value: String(counted) },
      {
        row: 'GET /v1/workloads?limit=100 afterwards',
        value: `${page.ms.toFixed(1)} ms, ${page.text.length} bytes`,
      },
      { row: 'server RSS growth (this process)', value: `${rssMiB() - rssBefore} MiB` },
    );

    // What identity costs a legitimate workload: 304 fetches side by side.
    const identity = 'cloud=aws,name=charge-card,region=eu-west-1';
    const proof = awsProof({
      audience: AUDIENCE,
      env: {
        AWS_ACCESS_KEY_ID: ROLE.id,
        AWS_SECRET_ACCESS_KEY: ROLE.secret,
        AWS_SESSION_TOKEN: ROLE.token,
        AWS_ENDPOINT_URL_STS: aws.url,
      },
    });
    const attestMs: number[] = [];
    let session = '';
    for (let i = 0; i < 50; i++) {
      const answer = await call(`${control.url}/v1/attest`, limited, {
        method: 'POST',
        body: JSON.stringify({ workload: identity, proof }),
      });
      if (answer.status !== 200) throw new Error(`attest: ${answer.status} ${answer.text}`);
      attestMs.push(answer.ms);
      session = (JSON.parse(answer.text) as { token: string }).token;
    }
    const kinds: [string, string][] = [
      ['fleet token', fleet],
      ['SmartGroup-limited token', limited],
      ['attested session', session],
    ];
    const etag = String((await call(bundle(identity), fleet)).headers.etag ?? '');
    const sessionEtag = String((await call(bundle(identity), session)).headers.etag ?? '');
    const times = new Map<string, number[]>(kinds.map(([name]) => [name, []]));
    for (let round = 0; round < SAMPLES; round++) {
      for (const [name, token] of kinds) {
        const answer = await call(bundle(identity), token, { etag: token === session ? sessionEtag : etag });
        if (answer.status !== 304) throw new Error(`${name}: ${answer.status} ${answer.text}`);
        times.get(name)?.push(answer.ms);
      }
    }
    const base = median(times.get('fleet token') ?? []);
    for (const [name] of kinds) {
      const sample = times.get(name) ?? [];
      rows.push({
        row: `bundle 304, ${name}`,
        value: `median ${median(sample).toFixed(3)} ms, p99 ${percentile(sample, 99).toFixed(3)} ms (${(median(sample) / base).toFixed(2)}×)`,
      });
    }
    rows.push({
      row: 'POST /v1/attest (SigV4 proof via the STS stand-in, session stored)',
      value: `median ${median(attestMs).toFixed(2)} ms, p99 ${percentile(attestMs, 99).toFixed(2)} ms`,
    });
  } finally {
    await control.close();
    await aws.close();
    temp.remove();
  }
  const width = Math.max(...rows.map((r) => r.row.length));
  console.log('control-identity: workload identity under attack and at work');
  for (const { row, value } of rows) console.log(`  ${row.padEnd(width)}  ${value}`);
  mkdirSync('bench-results', { recursive: true });
  writeFileSync(join('bench-results', 'control-identity.json'), `${JSON.stringify({ rows }, null, 2)}\n`);
}

await main();
await agent.close();
