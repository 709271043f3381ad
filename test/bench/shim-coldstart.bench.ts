// Cold start: `node -e ''` with and without the preload (a real signed bundle verified at start,
// as in a function sandbox), interleaved runs, p50 wall time and RSS. Printed only.
import { spawnSync } from 'node:child_process';
import { makeFixture, REGISTER_CJS } from '../shim/harness.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 40);
const fx = makeFixture({ allow: ['{ to: { host: api.example.com, port: 443 } }'] });
// RSS and the process's own CPU time (user + system): on a shared, loaded machine CPU time is the
// steadier measure of what the preload costs; wall time includes waiting for a core.
const script =
  "const c = process.cpuUsage(); process.stdout.write(process.memoryUsage().rss + ' ' + (c.user + c.system))";
const wall: Record<'plain' | 'shim', number[]> = { plain: [], shim: [] };
const rss: Record<'plain' | 'shim', number[]> = { plain: [], shim: [] };
const cpu: Record<'plain' | 'shim', number[]> = { plain: [], shim: [] };
for (let i = 0; i < RUNS; i++) {
  for (const mode of ['plain', 'shim'] as const) {
    const args = mode === 'shim' ? ['--require', REGISTER_CJS, '-e', script] : ['-e', script];
    const start = process.hrtime.bigint();
    const run = spawnSync(process.execPath, args, { env: fx.env(), encoding: 'utf8' });
    wall[mode].push(Number(process.hrtime.bigint() - start) / 1e6);
    const [rssBytes, cpuMicros] = run.stdout.split(' ').map(Number);
    rss[mode].push((rssBytes ?? 0) / 1024 / 1024);
    cpu[mode].push((cpuMicros ?? 0) / 1000);
  }
}
const p50 = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
console.log(`cold start, ${RUNS} interleaved runs each, p50`);
const row = (label: string, w: number, c: number, r: number) =>
  console.log(
    `  ${label.padEnd(20)} wall ${w.toFixed(1).padStart(6)} ms   cpu ${c.toFixed(1).padStart(6)} ms   RSS ${r.toFixed(1)} MB`,
  );
row("node -e ''", p50(wall.plain), p50(cpu.plain), p50(rss.plain));
row('+ --require shim', p50(wall.shim), p50(cpu.shim), p50(rss.shim));
row(
  'added',
  p50(wall.shim) - p50(wall.plain),
  p50(cpu.shim) - p50(cpu.plain),
  p50(rss.shim) - p50(rss.plain),
);
console.log('  (goal: ≤ 10 ms and ≤ 8 MB added; the bundle is verified at start, as in a sandbox)');
fx.cleanup();
