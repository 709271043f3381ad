// The rollout loop end to end on loopback: a real Node process governed through the control API
// runs in observe mode, its would-deny records reach the API, `bulkhead policy suggest --mode enforce`
// writes the whole set, `policy check` passes it, it is applied, and the same process run again is
// allowed everything it did before — while anything it did not do is blocked.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { openSqliteStore } from '../../control/store/sqlite.js';
import { generateKeyPair } from '../../policy/keys.js';
import { REGISTER_CJS, WORKLOAD } from '../shim/harness.js';
import { applyPolicy, runCli } from './clients.js';

const OBSERVE = `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: demo }
spec:
  match: { tags: { app: demo } }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: demo-egress }
spec:
  appliesTo: [demo]
  mode: observe
  owner: demo-team@example.com
`;

let control: RunningControlServer;
let admin: string;
let workloadToken: string;
let dir: string;
const servers: Server[] = [];
const ports: number[] = [];
const store = openSqliteStore(':memory:');

async function listen(): Promise<number> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200).end('ok'));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** Requests as `METHOD port path`; prints one `METHOD port path → 200 | DENIED | error` line each. */
function program(requests: string[]): string {
  return `
const http = require('node:http');
const one = (line) => new Promise((resolve) => {
  const [method, port, path] = line.split(' ');
  const req = http.request({ host: '127.0.0.1', port: Number(port), method, path, agent: false }, (res) => {
    res.resume();
    res.on('end', () => resolve(line + ' -> ' + res.statusCode));
  });
  req.on('error', (error) => resolve(line + ' -> ' + (error.code === 'ERR_BULKHEAD_DENIED' ? 'DENIED' : error.code)));
  req.end();
});
(async () => {
  for (const line of ${JSON.stringify(requests)}) console.log(await one(line));
})();`;
}

async function runGoverned(requests: string[]): Promise<Map<string, string>> {
  const child = spawn(process.execPath, ['--require', REGISTER_CJS, '-e', program(requests)], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      BULKHEAD_CONTROL_URL: control.url,
      BULKHEAD_TOKEN: workloadToken,
      BULKHEAD_WORKLOAD: WORKLOAD,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect(code, stderr).toBe(0);
  const results = new Map<string, string>();
  for (const line of stdout.trim().split('\n')) {
    const [request, outcome] = line.split(' -> ');
    if (request && outcome) results.set(request, outcome);
  }
  return results;
}

async function denies(): Promise<
  { decision: string; mode: string; destination: { port?: number; path?: string } }[]
> {
  const response = await fetch(`${control.url}/v1/denies?limit=1000`, {
    headers: { authorization: `Bearer ${admin}` },
  });
  return ((await response.json()) as { records: [] }).records;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'bulkhead-suggest-'));
  control = await startControlServer({ store, signingKey: generateKeyPair().privateKeyPem });
  admin = (await control.issueToken('admin', 'test-admin')).token;
  workloadToken = (await control.issueToken('workload', 'test-workload')).token;
  for (let i = 0; i < 3; i++) ports.push(await listen());
});

afterAll(async () => {
  await control?.close();
  for (const server of servers) server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('observe → suggest → enforce', () => {
  it('the applied suggestion allows everything observed and nothing else', async () => {
    const [api, health, unobserved] = ports as [number, number, number];
    const observed = [
      `POST ${api} /v1/charges/1001`,
      `POST ${api} /v1/charges/1002`,
      `GET ${api} /v1/charges/3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b/refunds`,
      `GET ${health} /health`,
    ];
    await applyPolicy(control.url, admin, OBSERVE, 'demo.yaml');

    // Observe: everything goes through, and is recorded as a would-deny.
    const first = await runGoverned(observed);
    for (const request of observed) expect(first.get(request), request).toBe('200');
    for (
      let i = 0;
      i < 100 && (await denies()).filter((r) => r.destination.path).length < observed.length;
      i++
    )
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await denies()).every((r) => r.mode === 'observe')).toBe(true);

    const env = { BULKHEAD_CONTROL_URL: control.url, BULKHEAD_TOKEN: admin };
    const file = join(dir, 'enforce.yaml');
    const suggest = await runCli(
      ['policy', 'suggest', '--group', 'demo', '--mode', 'enforce', '--out', file],
      env,
    );
    expect(suggest.code, suggest.stderr).toBe(0);
    expect(suggest.stdout).toMatch(/wrote .*enforce\.yaml: 2 rule\(s\)/);
    expect(suggest.stdout).toMatch(
      /policy demo-egress: its 0 allow rule\(s\) replaced by 2 suggested; mode enforce/,
    );
    const text = readFileSync(file, 'utf8');
    expect(text).toContain(
      `{ cidr: 127.0.0.1/32, port: ${api}, methods: [ GET, POST ], paths: [ /v1/charges/*, /v1/charges/*/refunds ] }`,
    );
    expect(text).toContain(`{ cidr: 127.0.0.1/32, port: ${health}, methods: [ GET ], paths: [ /health ] }`);
    expect(text).toMatch(/# \(unknown\) \(2×\)|# [^\n]*2 requests/);

    // Offline, from an export of the records and the policy files: the same rules.
    const exported = await runCli(['denies', '--json', '--limit', '1000'], env);
    expect(exported.code, exported.stderr).toBe(0);
    writeFileSync(join(dir, 'denies.ndjson'), exported.stdout);
    writeFileSync(join(dir, 'observe.yaml'), OBSERVE);
    const offline = await runCli([
      'policy',
      'suggest',
      '--group',
      'demo',
      '--mode',
      'enforce',
      '--json',
      '--records',
      join(dir, 'denies.ndjson'),
      join(dir, 'observe.yaml'),
    ]);
    expect(offline.code, offline.stderr).toBe(0);
    const offlineRules = (JSON.parse(offline.stdout) as { rules: { to: unknown }[] }).rules.map((r) => r.to);
    expect(offlineRules).toEqual([
      {
        cidr: '127.0.0.1/32',
        port: api,
        methods: ['GET', 'POST'],
        paths: ['/v1/charges/*', '/v1/charges/*/refunds'],
      },
      { cidr: '127.0.0.1/32', port: health, methods: ['GET'], paths: ['/health'] },
    ]);

    // What would break: enforcing without the suggestion blocks all of it; with it, nothing.
    const dryRun = async (text: string) => {
      const response = await fetch(`${control.url}/v1/policy?dryRun=true&breakDays=1`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/yaml' },
        body: text,
      });
      expect(response.status).toBe(200);
      return (
        (await response.json()) as {
          wouldBreak: {
            days: number;
            breaking: number;
            groups: {
              group: string;
              requests: number;
              destinations: { destination: string; requests: number }[];
            }[];
          };
        }
      ).wouldBreak;
    };
    const bare = await dryRun(OBSERVE.replace('mode: observe', 'mode: enforce'));
    expect(bare.days).toBe(1);
    expect(bare.groups.map((g) => g.group)).toEqual(['demo']);
    expect(bare.groups[0]?.destinations.map((d) => d.destination)).toEqual(
      expect.arrayContaining([
        `127.0.0.1:${api} POST /v1/charges/*`,
        `127.0.0.1:${api} GET /v1/charges/*/refunds`,
        `127.0.0.1:${health} GET /health`,
      ]),
    );
    expect(
      bare.groups[0]?.destinations.find((d) => d.destination === `127.0.0.1:${api} POST /v1/charges/*`)
        ?.requests,
    ).toBe(2);
    expect((await dryRun(text)).breaking).toBe(0);
    const bareFile = join(dir, 'bare.yaml');
    writeFileSync(bareFile, OBSERVE.replace('mode: observe', 'mode: enforce'));
    const cliDryRun = await runCli(['apply', bareFile, '--dry-run', '--days', '1'], env);
    expect(cliDryRun.code, cliDryRun.stderr).toBe(0);
    expect(cliDryRun.stdout).toMatch(
      /would break: \d+ of the \d+ observe-mode record\(s\) of the last 1 day would now be blocked/,
    );
    expect(cliDryRun.stdout).toContain(
      `127.0.0.1:${api} POST /v1/charges/*  2× from 1 workload(s)  (default-deny)`,
    );
    const fine = await runCli(['apply', file, '--dry-run'], env);
    expect(fine.stdout).toMatch(/would break: nothing/);
    expect(fine.stdout).toMatch(/blast radius demo: unbounded → \d+/);

    const check = await runCli(['policy', 'check', file]);
    expect(check.code, check.stderr).toBe(0);
    const applied = await runCli(['apply', file], env);
    expect(applied.code, applied.stderr).toBe(0);

    // Enforce: the same requests pass (another id too); anything else is blocked in the process.
    const before = (await denies()).length;
    const again = [...observed, `POST ${api} /v1/charges/99999`];
    const notObserved = [
      `DELETE ${api} /v1/charges/1001`,
      `POST ${api} /v1/admin/users`,
      `GET ${health} /metrics`,
      `GET ${unobserved} /health`,
    ];
    const second = await runGoverned([...again, ...notObserved]);
    for (const request of again) expect(second.get(request), request).toBe('200');
    for (const request of notObserved) expect(second.get(request), request).toBe('DENIED');
    for (let i = 0; i < 100 && (await denies()).length < before + notObserved.length; i++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    const fresh = (await denies()).slice(0, (await denies()).length - before);
    expect(fresh.every((r) => r.mode === 'enforce' && r.decision === 'deny')).toBe(true);
    expect(fresh.length).toBeGreaterThanOrEqual(notObserved.length);
  });

  it('GET /v1/suggestions: 404 for an unknown group, 400 for a bad time, 401 without a token', async () => {
    const get = (query: string, token: string | null = admin) =>
      fetch(`${control.url}/v1/suggestions?${query}`, {
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
    const unknown = await get('group=nope');
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { message: string }).message).toMatch(/no SmartGroup nope .*demo/);
    expect((await get('group=demo&since=yesterday')).status).toBe(400);
    expect((await get('group=demo&mode=sometimes')).status).toBe(400);
    expect((await get('group=demo', null)).status).toBe(401);
    expect([401, 403]).toContain((await get('group=demo', workloadToken)).status);
  });
});
