// Compatibility harness: runs a scenario script (scenarios/<library>.mjs) as a Node child, plainly or
// with the built preload (dist/register.cjs) under a signed bundle, and reads the spool it filed.
import { mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Fixture, makeFixture, type RunResult, runNode, selfSignedCert } from '../shim/harness.js';
import { type Servers, startServers } from './servers.js';

export const SCENARIOS = join(import.meta.dirname, 'scenarios');

/** Everything local: loopback on any port, localhost, Unix sockets in the temp folder, any executable, any addon. */
export function allowLocalFixture(): Fixture {
  return makeFixture({
    allow: [
      '{ to: { cidr: 127.0.0.0/8 } }',
      '{ to: { cidr: "::1/128" } }',
      '{ to: { host: localhost } }',
      `{ to: { unix: "${realpathSync(tmpdir())}/**" } }`,
    ],
    extra: ['  exec: { allow: ["*"] }', '  addons: { allow: ["*"] }'],
  });
}

/** Nothing the cases need: only localhost port 1 (names still resolve; every connection is denied). */
export function denyingFixture(): Fixture {
  return makeFixture({ allow: ['{ to: { host: localhost, port: 1 } }'] });
}

export interface Compat {
  servers: Servers;
  dir: string;
  cleanup(): Promise<void>;
}

export async function startCompat(): Promise<Compat> {
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-compat-'));
  const tls = selfSignedCert(dir);
  const servers = await startServers(join(dir, 'srv'), tls);
  return {
    servers,
    dir,
    async cleanup() {
      await servers.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ScenarioRun extends RunResult {
  results: Record<string, unknown>;
  spool: Record<string, unknown>[];
}

let runCounter = 0;

/**
 * Run one scenario. `shim: false` runs `node script` (same env, no preload); `shim: true` runs
 * `node --require dist/register.cjs script` with the fixture's bundle and a fresh spool file.
 */
export async function runScenario(
  library: string,
  options: {
    fixture: Fixture;
    shim: boolean;
    config: object;
    cases?: string[];
    env?: Record<string, string>;
    timeoutMs?: number;
  },
): Promise<ScenarioRun> {
  const spoolFile = join(options.fixture.dir, `spool-${library}-${process.pid}-${++runCounter}.ndjson`);
  const env = options.fixture.env({
    BULKHEAD_REPORT: spoolFile,
    COMPAT_CONFIG: JSON.stringify(options.config),
    // Where the npm CLI the tests run under lives (npm sets npm_execpath for `npm test`).
    ...(process.env.npm_execpath?.endsWith('npm-cli.js') ? { COMPAT_NPM_CLI: process.env.npm_execpath } : {}),
    ...(options.cases ? { COMPAT_CASES: options.cases.join(',') } : {}),
    ...(options.env ?? {}),
  });
  const run = await runNode('', env, {
    via: options.shim ? 'require' : 'none',
    args: [join(SCENARIOS, `${library}.mjs`)],
    timeoutMs: options.timeoutMs ?? 40_000,
  });
  let spool: Record<string, unknown>[] = [];
  try {
    spool = readFileSync(spoolFile, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      // Deny records only: the spool also carries the shim's rule hit counts (`{"hits": …}`, contract §3).
      .filter((line) => !('hits' in line));
  } catch {
    spool = [];
  }
  return { ...run, results: run.json, spool };
}

/** Case names whose results differ between two runs, each with both results. */
export function differences(
  plain: Record<string, unknown>,
  shimmed: Record<string, unknown>,
): { case: string; without: unknown; with: unknown }[] {
  const names = [...new Set([...Object.keys(plain), ...Object.keys(shimmed)])];
  return names
    .filter((n) => JSON.stringify(plain[n]) !== JSON.stringify(shimmed[n]))
    .map((n) => ({ case: n, without: plain[n], with: shimmed[n] }));
}

export function describeDifferences(diffs: ReturnType<typeof differences>): string {
  return diffs
    .map(
      (d) =>
        `  - ${d.case}\n      without shim: ${JSON.stringify(d.without)}\n      with shim:    ${JSON.stringify(d.with)}`,
    )
    .join('\n');
}
