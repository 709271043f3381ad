// The `bulkhead` control commands against a running `bulkhead control serve` child process.
// Needs dist/cli.mjs (npm test builds first).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, runCli } from './clients.js';
import { BAD_PORT, LEDGER_GROUP, PAYMENTS_V1, PAYMENTS_V2 } from './fixtures.js';

describe('bulkhead control CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-cli-'));
  const db = join(dir, 'control.db');
  const keyFile = join(dir, 'keys', 'signing.pem');
  let server: ChildProcess;
  let serverOut = '';
  let url = '';
  let admin = '';
  let workload = '';

  beforeAll(async () => {
    const adminRun = await runCli(['token', 'create', '--scope', 'admin', '--db', db, '--json']);
    expect(adminRun.code, adminRun.stderr).toBe(0);
    admin = (JSON.parse(adminRun.stdout) as { token: string }).token;
    const workloadRun = await runCli(['token', 'create', '--scope', 'workload', '--db', db]);
    expect(workloadRun.code).toBe(0);
    workload = workloadRun.stdout.trim();
    expect(workloadRun.stderr).toMatch(/shown once/);

    server = spawn(
      process.execPath,
      [CLI, 'control', 'serve', '--db', db, '--port', '0', '--host', '127.0.0.1', '--key', keyFile],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    server.stderr?.on('data', (chunk) => (serverOut += chunk));
    url = await new Promise<string>((resolve, reject) => {
      server.stdout?.on('data', (chunk: Buffer) => {
        serverOut += chunk;
        const match = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(serverOut);
        if (match?.[1]) resolve(match[1]);
      });
      server.on('exit', (code) => reject(new Error(`server exited ${code}: ${serverOut}`)));
    });
    writeFileSync(join(dir, 'payments.yaml'), PAYMENTS_V1);
    writeFileSync(join(dir, 'ledger.yaml'), LEDGER_GROUP);
    writeFileSync(join(dir, 'bad.yaml'), BAD_PORT);
  });

  afterAll(async () => {
    if (server && server.exitCode === null) {
      server.kill('SIGKILL');
      await new Promise((r) => server.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('generated the signing key with mode 0600 and said so without logging secrets', () => {
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(serverOut).toMatch(/generated a new signing key/);
    expect(serverOut).not.toContain('PRIVATE KEY');
    expect(serverOut).not.toContain(admin);
  });

  it('applies a directory of policy files and reports the revision', async () => {
    const run = await runCli(
      ['apply', 'payments.yaml', 'ledger.yaml', '--control', url],
      { BULKHEAD_TOKEN: admin },
      { cwd: dir },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/applied revision 1 \(was 0\)/);
    const again = await runCli(['apply', dir, '--control', url, '--token', admin, '--dry-run']);
    // The directory also holds bad.yaml: the dry run must fail on it.
    expect(again.code).toBe(1);
  });

  it('exits 1 with file:line:column errors on an invalid policy, and 2 on usage errors', async () => {
    const run = await runCli(
      ['apply', 'bad.yaml', '--control', url, '--dry-run'],
      { BULKHEAD_TOKEN: admin },
      { cwd: dir },
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^bad\.yaml:15:\d+ /m);
    const usage = await runCli(['apply', '--control', url], { BULKHEAD_TOKEN: admin });
    expect(usage.code).toBe(2);
    const noToken = await runCli(['workloads', '--control', url], { BULKHEAD_TOKEN: '' });
    expect(noToken.code).toBe(2);
    const wrongToken = await runCli(['workloads', '--control', url, '--token', workload]);
    expect(wrongToken.code).toBe(1);
    expect(wrongToken.stderr).toMatch(/403/);
  });

  it('lists workloads and queries denies (table, NDJSON, follow)', async () => {
    const identity = 'cloud=aws,name=charge-card,tag.app=payments,tag.env=prod';
    const bundle = await fetch(`${url}/v1/bundle?workload=${encodeURIComponent(identity)}`, {
      headers: { authorization: `Bearer ${workload}` },
    });
    expect(bundle.status).toBe(200);
    const report = (id: string, host: string) => ({
      id,
      time: new Date().toISOString(),
      count: 1,
      workload: { cloud: 'aws', name: 'charge-card', 'tag.app': 'payments', 'tag.env': 'prod' },
      kind: 'connect',
      destination: { host, port: 443 },
      decision: 'deny',
      mode: 'enforce',
      rule: 'default-deny',
      revision: 1,
      origin: { package: 'evil-dep@1.0.0' },
    });
    const post = (records: unknown[]) =>
      fetch(`${url}/v1/reports`, {
        method: 'POST',
        headers: { authorization: `Bearer ${workload}`, 'content-type': 'application/json' },
        body: JSON.stringify({ records }),
      });
    expect((await post([report('cli-1', 'exfil.attacker.test')])).status).toBe(202);

    const workloads = await runCli(['workloads', '--control', url], { BULKHEAD_TOKEN: admin });
    expect(workloads.code, workloads.stderr).toBe(0);
    expect(workloads.stdout).toContain('name=charge-card');
    expect(workloads.stdout).toMatch(/payments-prod\s+1\s+1\s+0/);

    const table = await runCli(['denies', '--control', url, '--destination', 'exfil.attacker.test'], {
      BULKHEAD_TOKEN: admin,
    });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(
      /charge-card\s+exfil\.attacker\.test:443\s+deny\/enforce\s+default-deny\s+r1\s+evil-dep@1\.0\.0/,
    );

    const ndjson = await runCli(['denies', '--control', url, '--json', '--since', '1h'], {
      BULKHEAD_TOKEN: admin,
    });
    expect(ndjson.code).toBe(0);
    const lines = ndjson.stdout.trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as { id: string }).id)).toEqual(['cli-1']);

    const follower = spawn(process.execPath, [CLI, 'denies', '--control', url, '--follow', '--json'], {
      env: { ...process.env, BULKHEAD_TOKEN: admin },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let followed = '';
    const sawNew = new Promise<void>((resolve) => {
      follower.stdout.on('data', (chunk) => {
        followed += chunk;
        if (followed.includes('"cli-2"')) resolve();
      });
    });
    // The first line printed is the existing record; post the new one once the follower is running.
    await new Promise<void>((resolve) => {
      const check = () => (followed.includes('"cli-1"') ? resolve() : setTimeout(check, 20));
      check();
    });
    expect((await post([report('cli-2', 'second.attacker.test')])).status).toBe(202);
    await sawNew;
    follower.kill('SIGINT');
    const code = await new Promise((r) => follower.once('exit', r));
    expect(code).toBe(0);

    // A Unix-socket record is stored and reads as unix:<socket>.
    const socket = {
      ...report('cli-3', 'unused'),
      kind: 'unix',
      destination: { socket: '/var/run/docker.sock' },
      rule: 'sockets/deny[0]',
    };
    expect((await post([socket])).status).toBe(202);
    const unixTable = await runCli(['denies', '--control', url, '--rule', 'sockets/deny[0]'], {
      BULKHEAD_TOKEN: admin,
    });
    expect(unixTable.code, unixTable.stderr).toBe(0);
    expect(unixTable.stdout).toMatch(
      /charge-card\s+unix:\/var\/run\/docker\.sock\s+deny\/enforce\s+sockets\/deny\[0\]\s+r1/,
    );

    // A flood the shim counted per pattern reads as one line saying how many more, under what.
    const flood = {
      ...report('cli-4', 'x1.exfil.attacker.test'),
      kind: 'dns',
      count: 99_000,
      destination: { host: 'x1.exfil.attacker.test', protocol: 'dns' },
      rule: 'flood/deny[0]',
      aggregate: {
        pattern: '*.attacker.test',
        distinct: 50_000,
        distinctCapped: true,
        sample: ['x1.exfil.attacker.test', 'x2.exfil.attacker.test', 'x3.exfil.attacker.test'],
      },
    };
    const repeated = { ...report('cli-5', 'again.attacker.test'), count: 3, rule: 'flood/deny[0]' };
    expect((await post([flood, repeated])).status).toBe(202);
    const floodTable = await runCli(['denies', '--control', url, '--rule', 'flood/deny[0]'], {
      BULKHEAD_TOKEN: admin,
    });
    expect(floodTable.code, floodTable.stderr).toBe(0);
    expect(floodTable.stdout).toContain(
      '99,000 more names under *.attacker.test (50,000+ distinct, e.g. x1.exfil.attacker.test, x2.exfil.attacker.test, …)',
    );
    expect(floodTable.stdout).toMatch(/again\.attacker\.test:443 \(×3\)\s+deny\/enforce/);
  });

  it('scores the applied revision (blast-radius, GET /v1/blast-radius) and answers an apply with before → after', async () => {
    const run = await runCli(['blast-radius', '--control', url, '--json'], { BULKHEAD_TOKEN: admin });
    expect(run.code, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as {
      revision: number;
      truncated: boolean;
      groups: { group: string; score: number; unbounded: boolean; mode: string; reason?: string }[];
      workloads: { workload: string; groups: string[]; score: number }[];
    };
    expect(report.revision).toBe(1);
    expect(report.truncated).toBe(false);
    expect(report.groups.map((g) => [g.group, g.mode, g.unbounded, g.score])).toEqual([
      ['ledger', 'observe', true, 1_000_000_000],
      ['payments-prod', 'enforce', false, 1],
    ]);
    // The inventory: charge-card fetched a bundle in an earlier case.
    expect(report.workloads).toContainEqual(
      expect.objectContaining({
        workload: 'cloud=aws,name=charge-card,tag.app=payments,tag.env=prod',
        groups: ['payments-prod'],
        score: 1,
      }),
    );
    const table = await runCli(['blast-radius', '--control', url, '--workload', 'cloud=aws,name=ledger-1'], {
      BULKHEAD_TOKEN: admin,
    });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^payments-prod\s+enforce\s+1\s/m);
    expect(table.stdout).toMatch(/^cloud=aws,name=ledger-1\s+ledger\s+observe\s+unbounded\s.*observe mode/m);

    const dryRun = await fetch(`${url}/v1/policy?dryRun=true`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/yaml' },
      body: `${PAYMENTS_V2}---\n${LEDGER_GROUP}`,
    });
    expect(dryRun.status).toBe(200);
    const answer = (await dryRun.json()) as {
      blastRadius: { before: { groups: { group: string; score: number }[] }; after: typeof report };
    };
    const scores = (r: { groups: { group: string; score: number }[] }) =>
      Object.fromEntries(r.groups.map((g) => [g.group, g.score]));
    expect(scores(answer.blastRadius.before)).toEqual({ ledger: 1_000_000_000, 'payments-prod': 1 });
    expect(scores(answer.blastRadius.after)).toEqual({ ledger: 1_000_000_000, 'payments-prod': 2 });
  });

  it('stops cleanly on SIGTERM', async () => {
    server.kill('SIGTERM');
    const code = await new Promise((r) => server.once('exit', r));
    expect(code).toBe(0);
    expect(serverOut).toMatch(/shutting down/);
  });
});
