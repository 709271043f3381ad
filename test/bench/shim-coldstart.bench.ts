// Cold start: `node -e ''` with and without the preload (a real signed bundle verified at start,
// as in a function sandbox), interleaved runs, p50 wall time and RSS. Printed only.
import { spawnSync } from 'node:child_process';
import { makeFixture, REGISTER_CJS } from '../shim/harness.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 40);
const fx = makeFixture({ allow: ['{ to: { host: api.example.com, port: 443 } }'] });
const script = 'process.stdout.write(String(process.memoryUsage().rss))';
const wall: Record<'plain' | 'shim', number[]> = { plain: [], shim: [] };
const rss: Record<'plain' | 'shim', number[]> = { plain: [], shim: [] };
for (let i = 0; i < RUNS; i++) {
  for (const mode of ['plain', 'shim'] as const) {
    const args = mode === 'shim' ? ['--require', REGISTER_CJS, '-e', script] : ['-e', script];
    const start = process.hrtime.bigint();
    const run = spawnSync(process.execPath, args, { env: fx.env(), encoding: 'utf8' });
    wall[mode].push(Number(process.hrtime.bigint() - start) / 1e6);
    rss[mode].push(Number(run.stdout) / 1024 / 1024);
  }
}
const p50 = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
console.log(`cold start, ${RUNS} interleaved runs each, p50`);
console.log(`  node -e ''           ${p50(wall.plain).toFixed(1)} ms   RSS ${p50(rss.plain).toFixed(1)} MB`);
console.log(`  + --require shim     ${p50(wall.shim).toFixed(1)} ms   RSS ${p50(rss.shim).toFixed(1)} MB`);
console.log(
  `  added                ${(p50(wall.shim) - p50(wall.plain)).toFixed(1)} ms   RSS ${(p50(rss.shim) - p50(rss.plain)).toFixed(1)} MB   (goal ≤ 10 ms, ≤ 8 MB)`,
);
fx.cleanup();
