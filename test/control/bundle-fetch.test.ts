// `bulkhead bundle fetch` (dist/cli.mjs, a child process) against the real control API on loopback:
// writes the verified bundle, is conditional once the file holds one, long-polls with --wait,
// refuses a bundle signed by a key it was not told to trust, and never prints the token.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningControlServer, startControlServer } from '../../control/server.js';
import { generateKeyPair } from '../../policy/keys.js';
import { policyYaml, WORKLOAD } from '../shim/harness.js';
import { applyPolicy, runCli } from './clients.js';

/** Only what is given: no BULKHEAD_* of the test's own environment. */
const runCliClean = (args: string[], env: Record<string, string>) => runCli(args, env, { clean: true });

let control: RunningControlServer;
let admin: string;
let token: string;
let dir: string;

function apply(port: number): Promise<number> {
  return applyPolicy(
    control.url,
    admin,
    policyYaml({ allow: [`{ to: { cidr: 127.0.0.1/32, port: ${port} } }`] }),
    'shim.yaml',
  );
}

beforeAll(async () => {
  control = await startControlServer();
  admin = (await control.issueToken('admin')).token;
  token = (await control.issueToken('workload')).token;
  dir = mkdtempSync(join(tmpdir(), 'bulkhead-fetch-'));
});
afterAll(async () => {
  await control.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('bulkhead bundle fetch', { timeout: 60_000 }, () => {
  it('writes the verified bundle, refreshes it, then long-polls the next revision', async () => {
    const first = await apply(1001);
    const out = join(dir, 'bundle.json');
    const env = { BULKHEAD_CONTROL_URL: control.url, BULKHEAD_TOKEN: token, BULKHEAD_WORKLOAD: WORKLOAD };
    const trusted = join(dir, 'signing.pub');
    writeFileSync(trusted, control.key.publicKeyPem);
    const written = await runCliClean(['bundle', 'fetch', '--out', out, '--trusted', trusted, '--json'], env);
    expect(written.code).toBe(0);
    expect(JSON.parse(written.stdout)).toMatchObject({ outcome: 'written', revision: first, file: out });
    expect(JSON.parse(readFileSync(out, 'utf8')).payloadType).toBeDefined();
    expect(statSync(out).mode & 0o777).toBe(0o644);

    // The same revision again: written again (a re-signed bundle carries a later expiry).
    const again = await runCliClean(['bundle', 'fetch', '--out', out, '--trusted', trusted, '--json'], env);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ outcome: 'refreshed', revision: first });

    const waiting = runCli(
      ['bundle', 'fetch', '--out', out, '--trusted', trusted, '--wait', '20', '--json'],
      env,
    );
    await new Promise((resolve) => setTimeout(resolve, 400));
    const second = await apply(1002);
    const polled = await waiting;
    expect(polled.code).toBe(0);
    expect(JSON.parse(polled.stdout)).toMatchObject({ outcome: 'written', revision: second });
    for (const run of [written, again, polled]) expect(run.stdout + run.stderr).not.toContain(token);
  });

  it('trusts the listed keys on loopback only when none is given, and says so', async () => {
    await apply(1003);
    const out = join(dir, 'listed.json');
    const run = await runCliClean(['bundle', 'fetch', '--out', out, '--workload', WORKLOAD], {
      BULKHEAD_CONTROL_URL: control.url,
      BULKHEAD_TOKEN: token,
    });
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('trusting the 1 signing key(s) the control API lists');
    const offLoopback = await runCliClean(['bundle', 'fetch', '--out', out, '--workload', WORKLOAD], {
      BULKHEAD_CONTROL_URL: 'http://192.0.2.1:9',
      BULKHEAD_TOKEN: token,
    });
    expect(offLoopback.code).toBe(2);
    expect(offLoopback.stderr).toContain('neither https nor loopback');
  });

  it('refuses a bundle signed by a key it was not told to trust and leaves the file alone', async () => {
    await apply(1004);
    const out = join(dir, 'kept.json');
    writeFileSync(out, 'previous');
    const stranger = join(dir, 'stranger.pub');
    writeFileSync(stranger, generateKeyPair().publicKeyPem);
    const run = await runCli(
      ['bundle', 'fetch', '--out', out, '--trusted', stranger, '--workload', WORKLOAD],
      {
        BULKHEAD_CONTROL_URL: control.url,
        BULKHEAD_TOKEN: token,
      },
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/bundle refused \(unknown-key/);
    expect(readFileSync(out, 'utf8')).toBe('previous');
  });
});
