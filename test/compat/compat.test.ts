// Compatibility: real npm libraries answer the same with and without the shim when the bundle allows
// everything local. Each scenario (scenarios/<library>.mjs) runs twice as a child — `node script` and
// `node --require dist/register.cjs script` — and every case's normalised result must be equal; the
// shimmed run must file no deny and no tamper records.
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PostgresCluster, startPostgresCluster } from '../control/pg-cluster.js';
import { type Fixture, killAll, REGISTER_CJS } from '../shim/harness.js';
import {
  allowLocalFixture,
  type Compat,
  describeDifferences,
  differences,
  runScenario,
  startCompat,
} from './harness.js';

const LIBRARIES = ['undici', 'node-fetch', 'axios', 'got', 'ws', 's3', 'node-http', 'pg', 'npm'] as const;

/**
 * Cases that reach a name the allow-local bundle does not allow, so the shim must deny them (the
 * README's semantics): through a proxy the destination is the target the request names, not the
 * proxy's address; a DNS query is decided by the name asked, whichever server answers it. Each maps
 * to the host its deny record must name.
 */
const OUTSIDE_POLICY: Partial<Record<(typeof LIBRARIES)[number], Record<string, string>>> = {
  undici: { 'ProxyAgent CONNECT to fake name': 'proxied.compat.test' },
  axios: { 'proxy option to fake name': 'proxied.compat.test' },
  got: { 'dnsCache (resolver on local DNS server)': 'dns.compat.test' },
};

let compat: Compat;
let fixture: Fixture;
let cluster: PostgresCluster | undefined;
let pgUnavailable: string | undefined;
const config: Record<string, unknown> = {};

/** pg-cluster.ts puts the server's Unix socket in its temp dir (`-k dir`); find it by port. */
function pgSocketDir(port: number): string | undefined {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith('bulkhead-pg-')) continue;
    const dir = join(tmpdir(), name);
    if (existsSync(join(dir, `.s.PGSQL.${port}`))) return dir;
  }
  return undefined;
}

beforeAll(async () => {
  compat = await startCompat();
  fixture = allowLocalFixture();
  Object.assign(config, compat.servers.config);
  try {
    cluster = await startPostgresCluster();
    config.pgPort = cluster.port;
    config.pgSocketDir = pgSocketDir(cluster.port);
  } catch (error) {
    pgUnavailable = `PostgreSQL not available, pg cases skipped: ${(error as Error).message}`;
    console.warn(pgUnavailable);
  }
}, 90_000);

afterAll(async () => {
  killAll();
  await cluster?.stop().catch(() => undefined);
  await compat?.cleanup();
  fixture?.cleanup();
});

describe('libraries behave the same with and without the shim (bundle allows everything local)', () => {
  for (const library of LIBRARIES) {
    it(`${library}: every case identical; no deny or tamper record`, { timeout: 60_000 }, async (ctx) => {
      if (library === 'pg' && pgUnavailable) ctx.skip(pgUnavailable);
      const env = library === 'npm' ? { COMPAT_NPM_NODE_OPTIONS: `--require ${REGISTER_CJS}` } : undefined;
      const [plain, shimmed] = await Promise.all([
        runScenario(library, { fixture, shim: false, config }),
        runScenario(library, { fixture, shim: true, config, env }),
      ]);
      // The harness itself: the plain run must work and answer every case.
      expect(plain.code, `plain run failed:\n${plain.stderr}`).toBe(0);
      expect(Object.keys(plain.results).length, 'plain run answered no case').toBeGreaterThan(0);

      const outside = OUTSIDE_POLICY[library] ?? {};
      for (const [name, host] of Object.entries(outside)) {
        expect(plain.results[name], `${name}: plain run`).not.toHaveProperty('denied');
        expect(shimmed.results[name], `${name}: denied with the shim`).toHaveProperty('denied', true);
        expect(
          shimmed.spool.some((r) => (r.destination as { host?: string }).host === host),
          `${name}: a deny record names ${host}`,
        ).toBe(true);
        delete plain.results[name];
        delete shimmed.results[name];
      }
      const outsideHosts = new Set(Object.values(outside));
      const diffs = differences(plain.results, shimmed.results);
      expect
        .soft(
          diffs.map((d) => d.case),
          `${library}: ${diffs.length} case(s) differ with the shim (exit ${shimmed.code}):\n${describeDifferences(diffs)}\n${
            shimmed.code === 0 ? '' : `shimmed stderr:\n${shimmed.stderr.slice(0, 2000)}`
          }`,
        )
        .toEqual([]);
      console.log(
        `compat ${library}: ${Object.keys(plain.results).length} cases, ${Object.keys(plain.results).length - diffs.length} identical; ${Object.keys(outside).length} outside the policy, denied`,
      );
      const short = (r: Record<string, unknown>) =>
        JSON.stringify({ kind: r.kind, destination: r.destination, rule: r.rule, count: r.count });
      const tamper = shimmed.spool.filter((r) => r.kind === 'tamper');
      const denies = shimmed.spool.filter(
        (r) => r.kind !== 'tamper' && !outsideHosts.has((r.destination as { host?: string }).host ?? ''),
      );
      expect.soft(denies.map(short), `${library}: deny records under the allow-local bundle`).toEqual([]);
      expect.soft(tamper.map(short), `${library}: tamper records`).toEqual([]);
    });
  }
});
