// The kernel's CLI commands, run as the built dist/cli.mjs in child processes (npm test builds first).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

const root = join(import.meta.dirname, '../..');
const cli = join(root, 'dist/cli.mjs');
const example = join(root, 'examples/policy/payments.yaml');
const workload = 'cloud=aws,name=charge-card,region=us-east-1,tag.app=payments,tag.env=prod';
let dir: string;

// Each case starts the CLI several times; on a loaded two-core machine a start can take seconds.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

function run(...args: string[]) {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: dir, timeout: 20_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

beforeAll(() => {
  if (!existsSync(cli)) throw new Error('dist/cli.mjs is missing: run `npm run build` (npm test does) first');
  dir = mkdtempSync(join(tmpdir(), 'bulkhead-kernel-cli-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('bulkhead keys generate', () => {
  it('writes bulkhead.key (0600) and bulkhead.pub, and refuses to overwrite', () => {
    const out = join(dir, 'keys');
    const first = run('keys', 'generate', '--out', out, '--json');
    expect(first.code).toBe(0);
    const info = JSON.parse(first.stdout) as { keyId: string };
    expect(info.keyId).toMatch(/^[0-9a-f]{32}$/);
    expect(statSync(join(out, 'bulkhead.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(out, 'bulkhead.pub'), 'utf8')).toContain('BEGIN PUBLIC KEY');
    expect(first.stdout).not.toContain('PRIVATE');
    const again = run('keys', 'generate', '--out', out);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('--force');
    expect(run('keys', 'id', join(out, 'bulkhead.pub')).stdout.trim()).toBe(info.keyId);
    expect(run('keys', 'generate').code).toBe(2);
    expect(run('keys', 'generate', '--help').code).toBe(0);
  });
});

describe('bulkhead policy check', () => {
  it('passes a clean policy set', () => {
    const result = run('policy', 'check', example);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('1 EgressPolicy');
  });

  it('prints every error with file:line:column and exits 1', () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      readFileSync(example, 'utf8')
        .replace('port: 5432', 'port: 70000')
        .replace('mode: enforce', 'mode: enforsed'),
    );
    const result = run('policy', 'check', bad);
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(
      lines.some((l) => /bad\.yaml:\d+:\d+ spec\.allow\[6\]\.to\.port: expected 1-65535, got 70000/.test(l)),
    ).toBe(true);
    expect(lines.some((l) => /bad\.yaml:\d+:\d+ spec\.mode: expected enforce \| observe/.test(l))).toBe(true);
    const json = run('policy', 'check', bad, '--json');
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false });
  });

  it('fails on a guardrail break (the CI gate)', () => {
    const open = join(dir, 'open.yaml');
    writeFileSync(open, readFileSync(example, 'utf8').replace('cidr: 10.20.0.0/16', 'cidr: 0.0.0.0/0'));
    const result = run('policy', 'check', open);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /open\.yaml:\d+:\d+ spec\.allow\[6\]\.to\.cidr: 0\.0\.0\.0\/0 allows every address \[guardrail allow-all\]/,
    );
  });

  it('usage errors exit 2', () => {
    expect(run('policy', 'check').code).toBe(2);
    expect(run('policy', 'check', join(dir, 'missing.yaml')).code).toBe(2);
    expect(run('policy', 'check', example, '--bogus').code).toBe(2);
  });
});

describe('bulkhead policy explain', () => {
  it('--json prints exactly one object with decision, mode and rule', () => {
    const allowed = run(
      'policy',
      'explain',
      example,
      '--workload',
      workload,
      '--url',
      'https://api.stripe.com/v1/charges/ch_1',
      '--method',
      'POST',
      '--json',
    );
    expect(allowed.code).toBe(0);
    const lines = allowed.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      decision: 'allow',
      mode: 'enforce',
      rule: 'payments-egress/allow[0]',
    });
    const denied = run(
      'policy',
      'explain',
      example,
      '--workload',
      workload,
      '--url',
      'https://api.stripe.com/v1/charges/../admin',
      '--method',
      'POST',
      '--json',
    );
    expect(JSON.parse(denied.stdout)).toMatchObject({
      decision: 'deny',
      mode: 'enforce',
      rule: 'default-deny',
      blocked: true,
    });
  });

  it('--dest decides addresses in every literal form, and names for other workloads under the default', () => {
    const meta = run(
      'policy',
      'explain',
      example,
      '--workload',
      workload,
      '--dest',
      '0xa9.0xfe.0xa9.0xfe:80',
      '--json',
    );
    expect(JSON.parse(meta.stdout)).toMatchObject({ decision: 'deny', rule: 'payments-egress/deny[1]' });
    const db = run(
      'policy',
      'explain',
      example,
      '--workload',
      workload,
      '--dest',
      '[::ffff:10.20.0.5]:5432/tcp',
      '--json',
    );
    expect(JSON.parse(db.stdout)).toMatchObject({ decision: 'allow', rule: 'payments-egress/allow[6]' });
    const other = run(
      'policy',
      'explain',
      example,
      '--workload',
      'cloud=gcp,name=x',
      '--dest',
      'evil.example:443',
      '--json',
    );
    expect(JSON.parse(other.stdout)).toMatchObject({
      decision: 'deny',
      mode: 'observe',
      blocked: false,
      rule: 'default-deny',
    });
    const text = run('policy', 'explain', example, '--workload', workload, '--dest', 'x.pastebin.com:443');
    expect(text.stdout).toContain('DENY (enforce, blocked) by payments-egress/deny[0]');
  });

  it('--unix decides a Unix-socket connect: paths (normalised) and abstract names', () => {
    const file = join(dir, 'sockets.yaml');
    writeFileSync(
      file,
      [
        'apiVersion: bulkhead.dev/v1',
        'kind: SmartGroup',
        'metadata: { name: app }',
        'spec: { match: { name: fn } }',
        '---',
        'apiVersion: bulkhead.dev/v1',
        'kind: EgressPolicy',
        'metadata: { name: sockets }',
        'spec:',
        '  appliesTo: [app]',
        '  mode: enforce',
        '  owner: team',
        '  allow:',
        '    - to: { unix: [/run/app/db.sock, "@app-*"] }',
        '',
      ].join('\n'),
    );
    const allowed = run(
      'policy',
      'explain',
      file,
      '--workload',
      'name=fn',
      '--unix',
      '/tmp/../run/app/db.sock',
    );
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stdout).toMatch(/^ALLOW \(enforce\) by sockets\/allow\[0\]: unix \/run\/app\/db\.sock\n/);
    const denied = run(
      'policy',
      'explain',
      file,
      '--workload',
      'name=fn',
      '--unix',
      '/var/run/docker.sock',
      '--json',
    );
    expect(JSON.parse(denied.stdout)).toMatchObject({
      decision: 'deny',
      rule: 'default-deny',
      blocked: true,
      request: { unix: '/var/run/docker.sock' },
    });
    const abstract = run('policy', 'explain', file, '--workload', 'name=fn', '--unix', '@app-bus', '--json');
    expect(JSON.parse(abstract.stdout)).toMatchObject({ decision: 'allow', rule: 'sockets/allow[0]' });
    expect(run('policy', 'explain', file, '--workload', 'name=fn', '--unix', 'db.sock').code).toBe(2);
    expect(
      run('policy', 'explain', file, '--workload', 'name=fn', '--unix', '/x.sock', '--dest', 'a.com:443')
        .code,
    ).toBe(2);
  });

  it('usage errors exit 2', () => {
    expect(run('policy', 'explain', example, '--workload', workload).code).toBe(2);
    expect(run('policy', 'explain', example, '--url', 'https://x.com/').code).toBe(2);
    expect(run('policy', 'explain', example, '--workload', 'noequals', '--url', 'https://x.com/').code).toBe(
      2,
    );
    expect(run('policy', 'explain', example, '--workload', workload, '--dest', 'x.com').code).toBe(2);
    expect(run('policy', 'explain', example, '--workload', workload, '--url', 'ftp://x.com/').code).toBe(2);
  });
});

describe('bulkhead policy diff', () => {
  it('shows what becomes reachable and unreachable', () => {
    const next = join(dir, 'next.yaml');
    writeFileSync(next, readFileSync(example, 'utf8').replace('api.stripe.com', 'api.stripe.net'));
    const result = run('policy', 'diff', example, '--', next, '--json');
    expect(result.code).toBe(0);
    const diff = JSON.parse(result.stdout) as {
      groups: {
        group: string;
        reachable: { destination: string }[];
        unreachable: { destination: string }[];
      }[];
    };
    expect(diff.groups[0]?.group).toBe('payments-prod');
    expect(diff.groups[0]?.reachable[0]?.destination).toContain('host=api.stripe.net');
    expect(diff.groups[0]?.unreachable[0]?.destination).toContain('host=api.stripe.com');
    const text = run('policy', 'diff', example, '--', next, '--workload', workload);
    expect(text.stdout).toContain('+ reachable   host=api.stripe.net');
    expect(text.stdout).toContain(`workload ${workload}`);
    expect(run('policy', 'diff', example).code).toBe(2);
  });
});

describe('bulkhead blast-radius', () => {
  it('scores each SmartGroup and workload of policy files, as a table or JSON', () => {
    const table = run('blast-radius', example, '--workload', workload, '--workload', 'name=stray');
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/payments-prod\s+enforce\s+2060\s+2\s+1\s+65536\s+any\s+3\s+0\s+0$/m);
    expect(table.stdout).toMatch(/name=stray\s+-\s+observe\s+unbounded\s.*nothing is blocked$/m);
    const json = run('blast-radius', example, '--workload', workload, '--json');
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as {
      groups: { group: string; score: number; unbounded: boolean; mode: string; reach: object }[];
      workloads: { workload: string; groups: string[]; score: number }[];
    };
    expect(report.groups).toEqual([
      expect.objectContaining({ group: 'payments-prod', score: 2060, unbounded: false, mode: 'enforce' }),
    ]);
    expect(report.workloads).toEqual([
      expect.objectContaining({ workload, groups: ['payments-prod'], score: 2060 }),
    ]);
    expect(run('blast-radius', example, '--workload', 'no-equals').code).toBe(2);
    const bad = join(dir, 'radius-bad.yaml');
    writeFileSync(bad, readFileSync(example, 'utf8').replace('port: 443', 'port: 70000'));
    expect(run('blast-radius', bad).code).toBe(1);
    // Without files it asks the control API, which needs an address.
    expect(run('blast-radius').code).toBe(2);
  });

  it('policy diff shows each score before → after', () => {
    const wider = join(dir, 'wider.yaml');
    writeFileSync(wider, readFileSync(example, 'utf8').replace('10.20.0.0/16', '10.0.0.0/8'));
    const text = run('policy', 'diff', example, '--', wider, '--workload', workload);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/SmartGroup payments-prod\s+2060\s+→\s+5900\s+\(wider\)/);
    expect(text.stdout).toMatch(
      new RegExp(`workload ${workload.replace(/\./g, '\\.')}\\s+2060\\s+→\\s+5900`),
    );
    const json = JSON.parse(run('policy', 'diff', example, '--', wider, '--json').stdout) as {
      blastRadius: { before: { groups: { score: number }[] }; after: { groups: { score: number }[] } };
    };
    expect(json.blastRadius.before.groups[0]?.score).toBe(2060);
    expect(json.blastRadius.after.groups[0]?.score).toBe(5900);
  });
});

describe('bulkhead bundle build / verify', () => {
  let keys: string;
  let other: string;
  let out: string;
  let pub: string;
  const verify = (...extra: string[]) => {
    const r = run('bundle', 'verify', out, '--json', ...extra);
    return {
      code: r.code,
      reason: r.code === 1 ? (JSON.parse(r.stdout) as { reason: string }).reason : undefined,
    };
  };

  beforeAll(() => {
    keys = join(dir, 'bundle-keys');
    other = join(dir, 'other-keys');
    out = join(dir, 'bundle.json');
    pub = join(keys, 'bulkhead.pub');
    expect(run('keys', 'generate', '--out', keys).code).toBe(0);
    expect(run('keys', 'generate', '--out', other).code).toBe(0);
    const built = run(
      'bundle',
      'build',
      example,
      '--key',
      join(keys, 'bulkhead.key'),
      '--workload',
      workload,
      '--revision',
      '12',
      '--out',
      out,
      '--expires',
      '2h',
      '--json',
    );
    expect(built.code).toBe(0);
    expect(JSON.parse(built.stdout)).toMatchObject({ revision: 12, rules: expect.any(Number) });
  });

  it('builds a signed bundle that verifies, also among several trusted keys', () => {
    const ok = run(
      'bundle',
      'verify',
      out,
      '--trusted',
      pub,
      '--workload',
      workload,
      '--min-revision',
      '12',
      '--json',
    );
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, revision: 12, groups: ['payments-prod'] });
    expect(run('bundle', 'verify', out, '--trusted', `${join(other, 'bulkhead.pub')},${pub}`).code).toBe(0);
  });

  it('refuses rollback, other keys and other workloads with the reason', () => {
    expect(verify('--trusted', pub, '--min-revision', '13')).toEqual({ code: 1, reason: 'rollback' });
    expect(verify('--trusted', join(other, 'bulkhead.pub'))).toEqual({ code: 1, reason: 'unknown-key' });
    expect(verify('--trusted', pub, '--workload', 'cloud=aws,name=other')).toEqual({
      code: 1,
      reason: 'wrong-scope',
    });
  });

  it('refuses a tampered payload, and usage errors exit 2', () => {
    const tampered = join(dir, 'tampered.json');
    const envelope = JSON.parse(readFileSync(out, 'utf8')) as { payload: string };
    const payload = JSON.parse(Buffer.from(envelope.payload, 'base64').toString()) as { revision: number };
    payload.revision = 999;
    writeFileSync(
      tampered,
      JSON.stringify({ ...envelope, payload: Buffer.from(JSON.stringify(payload)).toString('base64') }),
    );
    const r = run('bundle', 'verify', tampered, '--json', '--trusted', pub);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, reason: 'bad-signature' });
    expect(run('bundle', 'verify', out).code).toBe(2);
    expect(
      run('bundle', 'build', example, '--key', pub, '--workload', workload, '--revision', '1', '--out', out)
        .code,
    ).toBe(2);
  });
});
