// Cold start: `node -e ''` with and without the preload (configured with a real signed bundle, as
// in a function sandbox), interleaved runs, p50 wall time, the child's own CPU time and RSS. The
// bundle is verified at the first hooked operation, so a second pair of rows measures a start
// that makes one decision (a DNS lookup), with the same script run unpatched. A third variant is
// configured with the control API alone (no bundle file): its control link thread fetches the bundle
// from a real control API on loopback, and the first decision waits for it. Printed only.
import { spawn } from 'node:child_process';
import { startControlServer } from '../../control/server.js';
import { makeFixture, policyYaml, REGISTER_CJS, WORKLOAD } from '../shim/harness.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 40);
const fx = makeFixture({ allow: ['{ to: { host: localhost, port: 443 } }'] });
const control = await startControlServer();
const admin = (await control.issueToken('admin')).token;
const applied = await fetch(`${control.url}/v1/policy?file=shim.yaml`, {
  method: 'PUT',
  headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/yaml' },
  body: policyYaml({ allow: ['{ to: { host: localhost, port: 443 } }'] }),
});
if (applied.status !== 200) throw new Error(`apply failed: ${applied.status} ${await applied.text()}`);
const controlEnv = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  BULKHEAD_CONTROL_URL: control.url,
  BULKHEAD_TOKEN: (await control.issueToken('workload')).token,
  BULKHEAD_WORKLOAD: WORKLOAD,
  BULKHEAD_TRUSTED_KEYS: control.key.publicKeyPem,
  BULKHEAD_LOG: 'silent',
};
// RSS and CPU time (user + system, every thread of the process): on a shared, loaded machine CPU
// time is the steadier measure of what the preload costs; wall time includes waiting for a core.
const report =
  "const c = process.cpuUsage(); process.stdout.write(process.memoryUsage().rss + ' ' + (c.user + c.system));";
const scripts = { idle: report, decision: `require('dns').lookup('localhost', () => {}); ${report}` };
// BENCH_BASELINE_REGISTER=<another build's dist/register.cjs>: that build with the same bundle file,
// interleaved with the others (a before/after of a change to the preload).
const BASELINE = process.env.BENCH_BASELINE_REGISTER;
type Mode = 'plain' | 'shim' | 'control' | 'baseline';
const MODES: Mode[] = BASELINE ? ['plain', 'shim', 'control', 'baseline'] : ['plain', 'shim', 'control'];
type Key = `${Mode}/${keyof typeof scripts}`;
const wall: Partial<Record<Key, number[]>> = {};
const rss: Partial<Record<Key, number[]>> = {};
const cpu: Partial<Record<Key, number[]>> = {};
const push = (table: Partial<Record<Key, number[]>>, key: Key, value: number) => {
  table[key] = [...(table[key] ?? []), value];
};
/** Spawned without blocking this process: the control API answering the control link runs here. */
function run(args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.on('error', reject);
    child.on('close', () => resolve(out));
  });
}
for (let i = 0; i < RUNS; i++) {
  for (const [name, script] of Object.entries(scripts) as [keyof typeof scripts, string][]) {
    for (const mode of MODES) {
      const preload = mode === 'baseline' ? (BASELINE as string) : REGISTER_CJS;
      const args = mode === 'plain' ? ['-e', script] : ['--require', preload, '-e', script];
      const start = process.hrtime.bigint();
      const out = await run(args, mode === 'control' ? controlEnv : fx.env());
      const key: Key = `${mode}/${name}`;
      push(wall, key, Number(process.hrtime.bigint() - start) / 1e6);
      const [rssBytes, cpuMicros] = out.split(' ').map(Number);
      push(rss, key, (rssBytes ?? 0) / 1024 / 1024);
      push(cpu, key, (cpuMicros ?? 0) / 1000);
    }
  }
}
const p50 = (values: number[] | undefined) =>
  [...(values ?? [])].sort((a, b) => a - b)[Math.floor((values?.length ?? 0) / 2)] as number;
const row = (label: string, w: number, c: number, r: number) =>
  console.log(
    `  ${label.padEnd(44)} wall ${w.toFixed(1).padStart(6)} ms   cpu ${c.toFixed(1).padStart(6)} ms   RSS ${r.toFixed(1)} MB`,
  );
console.log(`cold start, ${RUNS} interleaved runs each, p50 (goal: ≤ 10 ms and ≤ 8 MB added)`);
for (const name of Object.keys(scripts) as (keyof typeof scripts)[]) {
  const plain: Key = `plain/${name}`;
  row(`${name}: unpatched`, p50(wall[plain]), p50(cpu[plain]), p50(rss[plain]));
  const variants: [Mode, string][] = [
    ['shim', '--require shim, bundle file'],
    ['control', '--require shim, control API only'],
  ];
  if (BASELINE) variants.push(['baseline', '--require baseline build, bundle file']);
  for (const [mode, label] of variants) {
    const key: Key = `${mode}/${name}`;
    row(`${name}: ${label}`, p50(wall[key]), p50(cpu[key]), p50(rss[key]));
    row(
      `${name}: added (${mode === 'control' ? 'control' : mode === 'baseline' ? 'baseline' : 'file'})`,
      p50(wall[key]) - p50(wall[plain]),
      p50(cpu[key]) - p50(cpu[plain]),
      p50(rss[key]) - p50(rss[plain]),
    );
  }
}
fx.cleanup();
await control.close();
