// Rule hit counts in the Node shim (contract §3): the counter alone, then a governed process whose
// allow decisions reach the control API and `bulkhead policy unused`.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { openSqliteStore } from '../../control/store/sqlite.js';
import { generateKeyPair } from '../../policy/keys.js';
import type { Decision } from '../../policy/types.js';
import { HitCounter } from '../../runtime-shims/node/hits.js';
import { RecordQueue, SpoolSink } from '../../runtime-shims/node/records.js';
import { applyPolicy, runCli } from '../control/clients.js';
import { policyYaml, REGISTER_CJS, WORKLOAD } from './harness.js';

/** One frozen decision per rule, as the engine hands them out. */
const decisions = new Map<string, Decision>();
function allow(rule: string): Decision {
  let decision = decisions.get(rule);
  if (!decision) {
    decision = Object.freeze({ decision: 'allow', mode: 'enforce', blocked: false, rule });
    decisions.set(rule, decision);
  }
  return decision;
}

describe('HitCounter', () => {
  it('counts per rule under the revision that decided; a new revision closes the old counts', () => {
    let started = 0;
    const counter = new HitCounter(
      () => ({ name: 'fn' }),
      () => started++,
    );
    expect(counter.pending).toBe(false);
    for (let i = 0; i < 3; i++) counter.count(allow('p/allow[0]'), 1);
    counter.count(allow('p/allow[1]'), 1);
    counter.count(allow('p/allow[0]'), 2);
    expect(started).toBe(1);
    const taken = counter.take();
    expect(taken.map((h) => [h.revision, h.rules])).toEqual([
      [1, { 'p/allow[0]': 3, 'p/allow[1]': 1 }],
      [2, { 'p/allow[0]': 1 }],
    ]);
    expect(taken[0]?.workload).toEqual({ name: 'fn' });
    expect(Date.parse(taken[0]?.since ?? '')).toBeLessThanOrEqual(Date.parse(taken[0]?.until ?? ''));
    expect(counter.pending).toBe(false);
    expect(counter.take()).toEqual([]);
    counter.count(allow('p/allow[1]'), 2);
    expect(started).toBe(2);
    expect(counter.take().map((h) => h.rules)).toEqual([{ 'p/allow[1]': 1 }]);
  });

  it('a rule id is a key of its own even when it names an Object.prototype member', () => {
    const counter = new HitCounter(
      () => ({}),
      () => {},
    );
    counter.count(allow('constructor'), 0);
    counter.count(allow('__proto__'), 0);
    counter.count(allow('__proto__'), 0);
    const [count] = counter.take();
    expect(Object.entries(count?.rules ?? {})).toEqual([
      ['constructor', 1],
      ['__proto__', 2],
    ]);
  });
});

describe('hand-over', () => {
  it('the queue writes counts to the spool as {"hits": …} lines with the records, and alone at exit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulkhead-hits-'));
    try {
      const spool = join(dir, 'spool.ndjson');
      const queue = new RecordQueue(new SpoolSink(spool), () => ({ name: 'fn' }), { log: () => {} });
      const counter = new HitCounter(
        () => ({ name: 'fn' }),
        () => queue.hitsPending(),
      );
      queue.attachHits(counter);
      counter.count(allow('p/allow[0]'), 4);
      queue.add({
        kind: 'connect',
        destination: { ip: '10.0.0.1', port: 1 },
        decision: 'deny',
        mode: 'enforce',
        rule: 'default-deny',
        revision: 4,
      });
      await queue.flush();
      counter.count(allow('p/allow[1]'), 4);
      queue.drainSync();
      const lines = readFileSync(spool, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.map((l) => ('hits' in l ? (l.hits as { rules: unknown }).rules : l.kind))).toEqual([
        'connect',
        { 'p/allow[0]': 1 },
        { 'p/allow[1]': 1 },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('hit counts from a governed process to policy unused', () => {
  let control: RunningControlServer;
  let admin: string;
  let workloadToken: string;
  const servers: Server[] = [];
  const ports: number[] = [];

  beforeAll(async () => {
    control = await startControlServer({
      store: openSqliteStore(':memory:'),
      signingKey: generateKeyPair().privateKeyPem,
    });
    admin = (await control.issueToken('admin', 'admin')).token;
    workloadToken = (await control.issueToken('workload', 'fn')).token;
    for (let i = 0; i < 2; i++) {
      const server = createServer((socket) => socket.end());
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.push(server);
      ports.push((server.address() as AddressInfo).port);
    }
  });
  afterAll(async () => {
    await control?.close();
    for (const server of servers) server.close();
  });

  it('allowed connects are counted per rule, sent at exit, and the unused rule is listed', async () => {
    const [a, b] = ports as [number, number];
    const allow = [a, b, 9].map((port) => `{ to: { cidr: 127.0.0.1/32, port: ${port} } }`);
    await applyPolicy(control.url, admin, policyYaml({ allow }), 'hits.yaml');
    const script = `
const net = require('node:net');
const once = (port) => new Promise((resolve) => {
  const s = net.connect(port, '127.0.0.1');
  s.on('connect', () => { s.destroy(); resolve(); });
  s.on('error', resolve);
});
(async () => { for (let i = 0; i < 3; i++) await once(${a}); await once(${b}); })();`;
    const child = spawn(process.execPath, ['--require', REGISTER_CJS, '-e', script], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        BULKHEAD_CONTROL_URL: control.url,
        BULKHEAD_TOKEN: workloadToken,
        BULKHEAD_WORKLOAD: WORKLOAD,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    expect(await new Promise((resolve) => child.on('close', resolve)), stderr).toBe(0);

    const env = { BULKHEAD_CONTROL_URL: control.url, BULKHEAD_TOKEN: admin };
    const all = await runCli(['policy', 'unused', '--all', '--json'], env);
    expect(all.code, all.stderr).toBe(0);
    const rules = (JSON.parse(all.stdout) as { rules: { rule: string; hits: number }[] }).rules;
    expect(Object.fromEntries(rules.map((r) => [r.rule, r.hits]))).toEqual({
      'shim/allow[0]': 3,
      'shim/allow[1]': 1,
      'shim/allow[2]': 0,
    });
    const unused = await runCli(['policy', 'unused'], env);
    expect(unused.stdout).toMatch(/1 of 3 rule\(s\) allowed nothing since \d{4}-\d\d-\d\d/);
    expect(unused.stdout).toMatch(/shim\/allow\[2\]\s+demo\s+cidr=127\.0\.0\.1\/32 port=9\s+0\s+-/);
    expect(unused.stdout).not.toContain('shim/allow[0]');

    // A later revision that moves the rules keeps their counts: they are known by what they say.
    await applyPolicy(
      control.url,
      admin,
      policyYaml({ allow: [allow[2], allow[1], allow[0]] as string[] }),
      'hits.yaml',
    );
    const moved = await runCli(['policy', 'unused', '--all', '--json'], env);
    const after = (JSON.parse(moved.stdout) as { rules: { rule: string; hits: number }[] }).rules;
    expect(Object.fromEntries(after.map((r) => [r.rule, r.hits]))).toEqual({
      'shim/allow[0]': 0,
      'shim/allow[1]': 1,
      'shim/allow[2]': 3,
    });
  });

  it('POST /v1/reports: malformed hit counts refuse the batch with 400; good ones are counted', async () => {
    const post = (body: unknown) =>
      fetch(`${control.url}/v1/reports`, {
        method: 'POST',
        headers: { authorization: `Bearer ${workloadToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    for (const hits of [
      'x',
      [{ revision: -1, rules: {} }],
      [{ revision: 1, rules: { r: 1.5 } }],
      [{ revision: 1, rules: { [`r${'x'.repeat(600)}`]: 1 } }],
      [{ revision: 1, rules: [] }],
      Array.from({ length: 101 }, () => ({ revision: 1, rules: { r: 1 } })),
    ]) {
      const response = await post({ records: [], hits });
      expect(response.status, JSON.stringify(hits).slice(0, 80)).toBe(400);
    }
    const ok = await post({
      records: [],
      hits: [{ workload: {}, revision: 1, since: '', until: '', rules: { a: 2, b: 0 } }],
    });
    expect(ok.status).toBe(202);
    expect(await ok.json()).toMatchObject({ stored: 0, hits: 1 });
  });
});
