// Cold start: `node -e ''` with and without the preload (configured with a real signed bundle, as
// in a function sandbox), interleaved runs, p50 wall time, the child's own CPU time and RSS. The
// bundle is verified at the first hooked operation, so a second pair of rows measures a start
// that makes one decision (a DNS lookup), with the same script run unpatched. Printed only.
import { spawnSync } from 'node:child_process';
import { makeFixture, REGISTER_CJS } from '../shim/harness.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 40);
const fx = makeFixture({ allow: ['{ to: { host: localhost, port: 443 } }'] });
// RSS and CPU time (user + system): on a shared, loaded machine CPU time is the steadier measure of
// what the preload costs; wall time includes waiting for a core.
const report =
  "const c = process.cpuUsage(); process.stdout.write(process.memoryUsage().rss + ' ' + (c.user + c.system));";
const scripts = { idle: report, decision: `require('dns').lookup('localhost', () => {}); ${report}` };
type Key = `${'plain' | 'shim'}/${keyof typeof scripts}`;
const wall: Partial<Record<Key, number[]>> = {};
const rss: Partial<Record<Key, number[]>> = {};
const cpu: Partial<Record<Key, number[]>> = {};
const push = (table: Partial<Record<Key, number[]>>, key: Key, value: number) => {
  table[key] = [...(table[key] ?? []), value];
};
for (let i = 0; i < RUNS; i++) {
  for (const [name, script] of Object.entries(scripts) as [keyof typeof scripts, string][]) {
    for (const mode of ['plain', 'shim'] as const) {
      const args = mode === 'shim' ? ['--require', REGISTER_CJS, '-e', script] : ['-e', script];
      const start = process.hrtime.bigint();
      const run = spawnSync(process.execPath, args, { env: fx.env(), encoding: 'utf8' });
      const key: Key = `${mode}/${name}`;
      push(wall, key, Number(process.hrtime.bigint() - start) / 1e6);
      const [rssBytes, cpuMicros] = run.stdout.split(' ').map(Number);
      push(rss, key, (rssBytes ?? 0) / 1024 / 1024);
      push(cpu, key, (cpuMicros ?? 0) / 1000);
    }
  }
}
const p50 = (values: number[] | undefined) =>
  [...(values ?? [])].sort((a, b) => a - b)[Math.floor((values?.length ?? 0) / 2)] as number;
const row = (label: string, w: number, c: number, r: number) =>
  console.log(
    `  ${label.padEnd(34)} wall ${w.toFixed(1).padStart(6)} ms   cpu ${c.toFixed(1).padStart(6)} ms   RSS ${r.toFixed(1)} MB`,
  );
console.log(`cold start, ${RUNS} interleaved runs each, p50 (goal: ≤ 10 ms and ≤ 8 MB added)`);
for (const name of Object.keys(scripts) as (keyof typeof scripts)[]) {
  const plain: Key = `plain/${name}`;
  const shim: Key = `shim/${name}`;
  row(`${name}: unpatched`, p50(wall[plain]), p50(cpu[plain]), p50(rss[plain]));
  row(`${name}: --require shim`, p50(wall[shim]), p50(cpu[shim]), p50(rss[shim]));
  row(
    `${name}: added`,
    p50(wall[shim]) - p50(wall[plain]),
    p50(cpu[shim]) - p50(cpu[plain]),
    p50(rss[shim]) - p50(rss[plain]),
  );
}
fx.cleanup();
