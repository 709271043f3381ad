// The `bulkhead` control commands against a running `bulkhead control serve` child process.
// Needs dist/cli.mjs (npm test builds first).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApplyAnswer, printApplyAnswer } from '../../cli/commands/apply.js';
import { CLI, runCli } from './clients.js';
import { BAD_PORT, LEDGER_GROUP, PAYMENTS_V1, PAYMENTS_V2 } from './fixtures.js';
import { type Api, type StoreFactory, startApi, storeFactory } from './harness.js';

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

    // Paging: --limit stops and prints the cursor that continues; --cursor continues.
    const refund = 'cloud=aws,name=refund,tag.app=payments,tag.env=prod';
    const second = await fetch(`${url}/v1/bundle?workload=${encodeURIComponent(refund)}`, {
      headers: { authorization: `Bearer ${workload}` },
    });
    expect(second.status).toBe(200);
    const firstPage = await runCli(['workloads', '--control', url, '--limit', '1'], {
      BULKHEAD_TOKEN: admin,
    });
    expect(firstPage.code, firstPage.stderr).toBe(0);
    expect(firstPage.stdout).toContain('name=charge-card');
    expect(firstPage.stdout).not.toContain('name=refund');
    const cursor = /^more: --cursor (\S+)$/m.exec(firstPage.stdout)?.[1] ?? '';
    expect(cursor).not.toBe('');
    const rest = await runCli(['workloads', '--control', url, '--cursor', cursor, '--json'], {
      BULKHEAD_TOKEN: admin,
    });
    expect(rest.code, rest.stderr).toBe(0);
    const restAnswer = JSON.parse(rest.stdout) as { workloads: { key: string }[]; nextCursor?: string };
    expect(restAnswer.workloads.map((w) => w.key)).toEqual([refund]);
    expect(restAnswer.nextCursor).toBeUndefined();
    const filtered = await runCli(['workloads', '--control', url, '--name', 'ref*', '--json'], {
      BULKHEAD_TOKEN: admin,
    });
    expect((JSON.parse(filtered.stdout) as { workloads: { key: string }[] }).workloads).toHaveLength(1);
    const behind = await runCli(['workloads', '--control', url, '--behind', '--json'], {
      BULKHEAD_TOKEN: admin,
    });
    expect((JSON.parse(behind.stdout) as { workloads: unknown[] }).workloads).toEqual([]);

    const table = await runCli(['denies', '--control', url, '--destination', 'exfil.attacker.test'], {
      BULKHEAD_TOKEN: admin,
    });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(
      /charge-card\s+-\s+exfil\.attacker\.test:443\s+connect\s+default-deny\s+enforce\s+-\s+evil-dep@1\.0\.0/,
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
      /charge-card\s+-\s+unix:\/var\/run\/docker\.sock\s+unix\s+sockets\/deny\[0\]\s+enforce/,
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
    expect(floodTable.stdout).toMatch(
      /again\.attacker\.test:443 \(×3\)\s+connect\s+flood\/deny\[0\]\s+enforce/,
    );
  });

  it('investigates: filters by name glob, invocation, package, kind, severity; newest first; says when nothing matched', async () => {
    const post = (records: unknown[]) =>
      fetch(`${url}/v1/reports`, {
        method: 'POST',
        headers: { authorization: `Bearer ${workload}`, 'content-type': 'application/json' },
        body: JSON.stringify({ records }),
      });
    const at = (minute: number) => `2026-11-28T03:0${minute}:00.000Z`;
    const lambda = { cloud: 'aws', account: '123456789012', region: 'eu-west-1' };
    const records = [
      {
        id: 'inv-1',
        time: at(1),
        count: 1,
        workload: { ...lambda, name: 'charge-card' },
        kind: 'dns',
        destination: { host: 'exfil.attacker.test', protocol: 'dns' },
        decision: 'deny',
        mode: 'enforce',
        rule: 'default-deny',
        revision: 1,
        invocationId: 'req-aaaa',
        origin: { package: 'evil-dep@1.0.0', file: '/var/task/node_modules/evil-dep/index.js', line: 7 },
      },
      {
        id: 'inv-2',
        time: at(2),
        count: 1,
        workload: { ...lambda, name: 'charge-refund' },
        kind: 'tamper',
        severity: 'high',
        destination: { command: 'process.binding' },
        decision: 'deny',
        mode: 'observe',
        rule: 'tamper',
        revision: 1,
        invocationId: 'req-bbbb',
        origin: { package: 'other@2.0.0', file: '/var/task/index.js', line: 12 },
      },
    ];
    expect((await post(records)).status).toBe(202);
    const env = { BULKHEAD_TOKEN: admin, BULKHEAD_CONTROL_URL: url };

    const glob = await runCli(
      [
        'denies',
        '--workload',
        'charge-*',
        '--since',
        '2026-11-28T03:00:00Z',
        '--until',
        '2026-11-28T03:10:00Z',
      ],
      env,
    );
    expect(glob.code, glob.stderr).toBe(0);
    const lines = glob.stdout.trim().split('\n');
    expect(lines[0]).toMatch(
      /^TIME\s+WORKLOAD\s+ACCOUNT\/REGION\s+DESTINATION\s+KIND\s+RULE\s+MODE\s+INVOCATION\s+ORIGIN$/,
    );
    // Newest first.
    expect(lines[1]).toMatch(
      /^2026-11-28T03:02:00\.000Z\s+charge-refund\s+123456789012\/eu-west-1\s+process\.binding\s+tamper \(high\)\s+tamper\s+observe\s+req-bbbb\s+other@2\.0\.0 \/var\/task\/index\.js:12$/,
    );
    expect(lines[2]).toMatch(
      /^2026-11-28T03:01:00\.000Z\s+charge-card\s+123456789012\/eu-west-1\s+exfil\.attacker\.test\s+dns\s+default-deny\s+enforce\s+req-aaaa\s+evil-dep@1\.0\.0 \/var\/task\/node_modules\/evil-dep\/index\.js:7$/,
    );
    expect(lines).toHaveLength(3);

    // The NDJSON export in the same order.
    const json = await runCli(
      ['denies', '--workload', 'charge-*', '--until', '2026-11-28T03:10:00Z', '--json'],
      env,
    );
    expect(json.code, json.stderr).toBe(0);
    expect(
      json.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { id: string }).id),
    ).toEqual(['inv-2', 'inv-1']);

    const ids = async (...filter: string[]) => {
      const run = await runCli(['denies', ...filter, '--until', '2026-11-28T03:10:00Z', '--json'], env);
      expect(run.code, run.stderr).toBe(0);
      return run.stdout.trim() === ''
        ? []
        : run.stdout
            .trim()
            .split('\n')
            .map((l) => (JSON.parse(l) as { id: string }).id);
    };
    expect(await ids('--invocation', 'req-aaaa')).toEqual(['inv-1']);
    expect(await ids('--package', 'evil-dep')).toEqual(['inv-1']);
    expect(await ids('--package', 'other@2.*')).toEqual(['inv-2']);
    expect(await ids('--kind', 'tamper')).toEqual(['inv-2']);
    expect(await ids('--severity', 'high')).toEqual(['inv-2']);
    expect(await ids('--workload', 'charge-card', '--kind', 'dns')).toEqual(['inv-1']);

    // Nothing matched: said on stderr, naming the filters, exit 0, stdout empty.
    const none = await runCli(['denies', '--workload', 'charge-card', '--kind', 'tamper'], env);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toBe('');
    expect(none.stderr.trim()).toBe(
      'no deny record matched the filters --workload charge-card --kind tamper',
    );
    const noneJson = await runCli(['denies', '--invocation', 'req-zzzz', '--json'], env);
    expect(noneJson.code).toBe(0);
    expect(noneJson.stdout).toBe('');
    expect(noneJson.stderr).toMatch(/^no deny record matched the filters --invocation req-zzzz$/m);
    // A workload name the inventory does not know (a typo) is named as such.
    const typo = await runCli(['denies', '--workload', 'chrage-*'], env);
    expect(typo.code).toBe(0);
    expect(typo.stderr).toMatch(/^no deny record matched the filters --workload chrage-\*$/m);
    expect(typo.stderr).toMatch(
      /^--workload chrage-\*: no workload in the inventory matches it \(known: charge-card, refund\)$/m,
    );
    // A bad kind is the API's 400, with the values it accepts.
    const badKind = await runCli(['denies', '--kind', 'socket'], env);
    expect(badKind.code).toBe(1);
    expect(badKind.stderr).toMatch(/400 bad-request: kind: expected one of connect, http, dns/);
  });

  it('apply prints a readable diff and warns of removed SmartGroups; revisions lists, diffs and restores', async () => {
    const named = await runCli([
      'token',
      'create',
      '--scope',
      'admin',
      '--name',
      'ci-deploy',
      '--db',
      db,
      '--json',
    ]);
    expect(named.code, named.stderr).toBe(0);
    const ci = JSON.parse(named.stdout) as { id: string; token: string };
    const env = { BULKHEAD_TOKEN: ci.token, BULKHEAD_CONTROL_URL: url };
    writeFileSync(join(dir, 'payments-v2.yaml'), PAYMENTS_V2);

    // The set without ledger.yaml: the ledger SmartGroup goes away.
    const dry = await runCli(['apply', 'payments-v2.yaml', '--dry-run'], env, { cwd: dir });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stderr).toMatch(/^warning: SmartGroup ledger would be removed: /m);
    const applied = await runCli(['apply', 'payments-v2.yaml'], env, { cwd: dir });
    expect(applied.code, applied.stderr).toBe(0);
    const [, revision, previous] = /^applied revision (\d+) \(was (\d+)\)$/m.exec(applied.stdout) ?? [];
    expect(Number(revision)).toBe(Number(previous) + 1);
    expect(applied.stderr.trim()).toBe(
      'warning: SmartGroup ledger is removed: the policies that applied to its workloads no longer do',
    );
    expect(applied.stdout).toContain('SmartGroup payments-prod (changed)');
    expect(applied.stdout).toContain(
      '  + reachable   host=hooks.slack.com port=443  [payments-egress/allow[1]]',
    );
    expect(applied.stdout).toContain('SmartGroup ledger (removed)');
    expect(applied.stdout).toMatch(/^workloads affected: \d+$/m);
    expect(applied.stdout).not.toMatch(/diff: \{|"groups"/);
    const again = await runCli(['apply', 'payments-v2.yaml'], env, { cwd: dir });
    expect(again.stdout).toMatch(/^unchanged: revision \d+ already holds this policy$/m);
    expect(again.stdout).toContain('no change in what any SmartGroup can reach');
    expect(again.stderr).toBe('');

    const list = await runCli(['revisions'], env);
    expect(list.code, list.stderr).toBe(0);
    const rows = list.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^REVISION\s+APPLIED AT\s+BY\s+CHANGE$/);
    expect(rows[1]).toMatch(
      new RegExp(
        `^${revision} \\(current\\)\\s+\\d{4}-\\S+\\s+ci-deploy \\(token ${ci.id}\\)\\s+ledger removed, payments-prod$`,
      ),
    );
    expect(rows[2]).toMatch(
      new RegExp(`^${previous}\\s+\\S+\\s+token [0-9a-f]{16}\\s+ledger added, payments-prod added$`),
    );
    const limited = await runCli(['revisions', '--limit', '1', '--json'], env);
    const listed = JSON.parse(limited.stdout) as { current: number; revisions: { revision: number }[] };
    expect(listed.current).toBe(Number(revision));
    expect(listed.revisions.map((r) => r.revision)).toEqual([Number(revision)]);

    const diff = await runCli(['revisions', 'diff', previous as string, revision as string], env);
    expect(diff.code, diff.stderr).toBe(0);
    expect(diff.stdout).toContain('SmartGroup ledger (removed)');
    expect(diff.stdout).toContain(
      '  + reachable   host=hooks.slack.com port=443  [payments-egress/allow[1]]',
    );
    const diffJson = await runCli(
      [
        'revisions',
        'diff',
        previous as string,
        revision as string,
        '--json',
        '--workload',
        'cloud=aws,name=ledger-writer',
      ],
      env,
    );
    const parsed = JSON.parse(diffJson.stdout) as { changed: boolean; workloads: { workload: string }[] };
    expect(parsed.changed).toBe(true);
    expect(parsed.workloads.map((w) => w.workload)).toEqual(['cloud=aws,name=ledger-writer']);

    const restore = await runCli(['revisions', 'restore', previous as string], env);
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.stdout).toMatch(
      new RegExp(
        `^restored revision ${previous} as revision ${Number(revision) + 1} \\(was ${revision}\\)$`,
        'm',
      ),
    );
    expect(restore.stdout).toContain('SmartGroup ledger (added)');
    expect(restore.stderr).toBe('');
    const afterRestore = await runCli(['revisions', '--limit', '1'], env);
    expect(afterRestore.stdout).toMatch(
      new RegExp(`restore of ${previous}; ledger added, payments-prod$`, 'm'),
    );

    const missing = await runCli(['revisions', 'diff', previous as string, '999'], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no revision 999/);
    expect((await runCli(['revisions', 'restore', '999'], env)).stderr).toMatch(/no revision 999/);
    expect((await runCli(['revisions', 'restore', 'latest'], env)).code).toBe(2);
    expect((await runCli(['revisions', 'diff', '1'], env)).code).toBe(2);
  });

  it('policy check --against checks requireObserveFirst against the applied revision', async () => {
    const observeFirst =
      '---\napiVersion: bulkhead.dev/v1\nkind: Guardrail\nmetadata: { name: observe-first }\nspec:\n  requireObserveFirst: true\n';
    const newPolicy = (mode: string) =>
      `---\napiVersion: bulkhead.dev/v1\nkind: EgressPolicy\nmetadata: { name: refunds-egress }\nspec:\n  appliesTo: [payments-prod]\n  mode: ${mode}\n  owner: team-payments\n  allow:\n    - to: { host: api.refunds.example, port: 443 }\n`;
    // The applied set enforces payments-egress already; refunds-egress is new.
    writeFileSync(join(dir, 'check-enforce.yaml'), `${PAYMENTS_V1}${observeFirst}${newPolicy('enforce')}`);
    writeFileSync(join(dir, 'check-observe.yaml'), `${PAYMENTS_V1}${observeFirst}${newPolicy('observe')}`);
    const noEnv = { BULKHEAD_CONTROL_URL: '', BULKHEAD_TOKEN: '' };
    const opts = { cwd: dir };

    const broken = await runCli(
      ['policy', 'check', 'check-enforce.yaml', '--against', url, '--token', admin],
      noEnv,
      opts,
    );
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(
      /^check-enforce\.yaml:\d+:\d+ spec\.mode: a new policy starts in observe mode.*\[guardrail observe-first\]$/m,
    );
    expect(broken.stderr).not.toMatch(/payments-egress/);

    const clean = await runCli(
      ['policy', 'check', 'check-observe.yaml', '--against', url, '--token', admin],
      noEnv,
      opts,
    );
    expect(clean.code, clean.stderr).toBe(0);
    expect(clean.stdout).toMatch(
      new RegExp(`^requireObserveFirst: checked against revision \\d+ at ${url}$`, 'm'),
    );
    expect(clean.stdout).toMatch(/^ok: 1 SmartGroup\(s\), 2 EgressPolicy\(s\), 1 Guardrail\(s\)$/m);

    // From the environment, when the guardrail is on and nothing else names the applied policy.
    const fromEnv = await runCli(
      ['policy', 'check', 'check-enforce.yaml'],
      { BULKHEAD_CONTROL_URL: url, BULKHEAD_TOKEN: admin },
      opts,
    );
    expect(fromEnv.code).toBe(1);
    expect(fromEnv.stderr).toMatch(/\[guardrail observe-first\]/);

    // Neither: not an error, but said.
    const unchecked = await runCli(['policy', 'check', 'check-enforce.yaml', '--json'], noEnv, opts);
    expect(unchecked.code, unchecked.stderr).toBe(0);
    expect(JSON.parse(unchecked.stdout)).toMatchObject({ ok: true, requireObserveFirst: 'not checked' });
    expect(unchecked.stderr).toMatch(
      /^note: requireObserveFirst is on but was not checked: .*--previous FILES.*--against URL/,
    );
    // Without the guardrail, no note.
    const off = await runCli(['policy', 'check', 'payments.yaml'], noEnv, opts);
    expect(off.code).toBe(0);
    expect(off.stderr).toBe('');

    const refused = await runCli(
      ['policy', 'check', 'check-observe.yaml', '--against', url, '--token', workload],
      noEnv,
      opts,
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^bulkhead policy check: --against http:\/\/127\.0\.0\.1:\d+: 403/);
    const noToken = await runCli(['policy', 'check', 'check-observe.yaml', '--against', url], noEnv, opts);
    expect(noToken.code).toBe(2);
    const both = await runCli(
      ['policy', 'check', 'check-observe.yaml', '--against', url, '--previous', 'payments.yaml'],
      noEnv,
      opts,
    );
    expect(both.code).toBe(2);
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
    expect(report.revision).toBeGreaterThanOrEqual(1); // earlier cases applied and restored revisions
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

  it('creates scoped tokens, lists them without secrets, and revokes one on the running server within a second', async () => {
    const created = await runCli([
      'token',
      'create',
      '--scope',
      'workload',
      '--group',
      'payments-prod',
      '--group',
      'ledger',
      '--expires',
      '30d',
      '--name',
      'payments-fns',
      '--db',
      db,
      '--json',
    ]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toBe('');
    const typo = await runCli([
      'token',
      'create',
      '--scope',
      'workload',
      '--group',
      'paymnts-prod',
      '--db',
      db,
    ]);
    expect(typo.code).toBe(0);
    expect(typo.stderr).toMatch(/warning: SmartGroup paymnts-prod is not in the applied revision \d+/);
    const issued = JSON.parse(created.stdout) as {
      token: string;
      id: string;
      scope: string;
      groups: string[];
      expiresAt: string;
      name: string;
    };
    expect(issued).toMatchObject({
      scope: 'workload',
      groups: ['ledger', 'payments-prod'],
      name: 'payments-fns',
    });
    expect(issued.token).toMatch(new RegExp(`^bhk_${issued.id}_`));
    const days = (Date.parse(issued.expiresAt) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThan(30.1);

    const bundle = `${url}/v1/bundle?workload=${encodeURIComponent('cloud=aws,name=charge-card,tag.app=payments,tag.env=prod')}`;
    const fetchBundle = () => fetch(bundle, { headers: { authorization: `Bearer ${issued.token}` } });
    expect((await fetchBundle()).status).toBe(200);

    const listed = await runCli(['token', 'list', '--db', db, '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    const secret = issued.token.slice(22);
    expect(listed.stdout).not.toContain(secret);
    expect(listed.stdout).not.toMatch(/"hash"|"token"/);
    const row = (JSON.parse(listed.stdout) as { tokens: Record<string, unknown>[] }).tokens.find(
      (token) => token.id === issued.id,
    );
    expect(row).toMatchObject({ scope: 'workload', status: 'active', groups: ['ledger', 'payments-prod'] });
    const table = await runCli(['token', 'list', '--db', db]);
    expect(table.stdout).toMatch(
      new RegExp(`${issued.id} +payments-fns +workload +ledger,payments-prod +active`),
    );
    expect(table.stdout).not.toContain(secret);

    const revoke = await runCli(['token', 'revoke', issued.id, '--db', db]);
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(revoke.stdout).toMatch(/revoked token [0-9a-f]{16}; every replica refuses it within 1000 ms/);
    const revokedAt = Date.now();
    while ((await fetchBundle()).status !== 401) {
      expect(Date.now() - revokedAt).toBeLessThan(3000);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(Date.now() - revokedAt).toBeLessThan(1500);
    const after = await runCli(['token', 'list', '--db', db, '--json']);
    expect(after.stdout).toContain('"status":"revoked"');
    expect((await runCli(['token', 'revoke', issued.id, '--db', db])).stdout).toMatch(/already revoked/);
    const unknown = await runCli(['token', 'revoke', '0123456789abcdef', '--db', db]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no token 0123456789abcdef/);
    const adminGroups = await runCli(['token', 'create', '--scope', 'admin', '--group', 'x', '--db', db]);
    expect(adminGroups.code).toBe(2);
    expect(adminGroups.stderr).toMatch(/only workload tokens/);
    const badExpiry = await runCli([
      'token',
      'create',
      '--scope',
      'workload',
      '--expires',
      'soon',
      '--db',
      db,
    ]);
    expect(badExpiry.code).toBe(2);
    expect(badExpiry.stderr).toMatch(/--expires: expected a duration like 24h/);
    const badGroup = await runCli([
      'token',
      'create',
      '--scope',
      'workload',
      '--group',
      'Payments!',
      '--db',
      db,
    ]);
    expect(badGroup.code).toBe(2);
    expect(badGroup.stderr).toMatch(/not a SmartGroup name/);
  });

  it('stops cleanly on SIGTERM', async () => {
    server.kill('SIGTERM');
    const code = await new Promise((r) => server.once('exit', r));
    expect(code).toBe(0);
    expect(serverOut).toMatch(/shutting down/);
  });
});

describe('bulkhead apply output', () => {
  const answer: ApplyAnswer = {
    revision: 4,
    previousRevision: 3,
    dryRun: false,
    unchanged: false,
    diff: {
      changed: true,
      groups: [
        { group: 'ledger', status: 'removed', reachable: [], unreachable: [] },
        { group: 'payments-prod', status: 'changed', reachable: [], unreachable: [] },
      ],
    },
    affectedWorkloads: { count: 0, workloads: [] },
  };
  const print = (value: ApplyAnswer) => {
    const out: string[] = [];
    const err: string[] = [];
    printApplyAnswer(value, { out: (text) => out.push(text), err: (text) => err.push(text) });
    return { out, err };
  };

  it('prints one blast-radius line per group when the answer carries them', () => {
    const { out, err } = print({
      ...answer,
      blastRadius: {
        before: {
          groups: [
            { group: 'payments-prod', score: 3, unbounded: false },
            { group: 'ledger', score: 1, unbounded: false },
          ],
        },
        after: { groups: [{ group: 'payments-prod', score: 0, unbounded: true }] },
      },
    });
    expect(out).toContain('blast radius ledger: 1 → -');
    expect(out).toContain('blast radius payments-prod: 3 → unbounded');
    expect(err).toEqual([
      'warning: SmartGroup ledger is removed: the policies that applied to its workloads no longer do',
    ]);
  });

  it('prints none without the field', () => {
    expect(print(answer).out.some((line) => line.startsWith('blast radius'))).toBe(false);
  });
});

describe('bulkhead policy check --against a control API with nothing applied', () => {
  let factory: StoreFactory;
  let api: Api;
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-check-'));
  beforeAll(async () => {
    factory = await storeFactory('sqlite');
    api = await startApi(factory);
  });
  afterAll(async () => {
    await api?.server.close();
    await factory?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('treats every policy as new', async () => {
    const observeFirst =
      '---\napiVersion: bulkhead.dev/v1\nkind: Guardrail\nmetadata: { name: observe-first }\nspec:\n  requireObserveFirst: true\n';
    writeFileSync(join(dir, 'set.yaml'), `${PAYMENTS_V1}${observeFirst}`);
    const run = await runCli(
      ['policy', 'check', 'set.yaml', '--against', api.server.url, '--token', api.admin],
      { BULKHEAD_CONTROL_URL: '', BULKHEAD_TOKEN: '' },
      { cwd: dir },
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^set\.yaml:\d+:\d+ spec\.mode: a new policy starts in observe mode/m);
    // A URL that is not a control API is an error, not an empty history.
    const wrong = await runCli(
      ['policy', 'check', 'set.yaml', '--against', `${api.server.url}/elsewhere`, '--token', api.admin],
      { BULKHEAD_CONTROL_URL: '', BULKHEAD_TOKEN: '' },
      { cwd: dir },
    );
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^bulkhead policy check: --against .*: 404/);
  });
});
