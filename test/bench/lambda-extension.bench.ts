// Lambda benchmarks in the emulator (real processes, local control API):
//  1. extension ready time: fetch + verify + register (goal ≤ 50 ms p50);
//  2. sandbox cold start (init + first invoke) with and without the layer, side by side;
//  3. propagation at the invoke boundary: after each apply, 50 sandboxes are invoked in a loop and
//     every invocation says which revision governs it (goal: 0 stale once 1 s has passed).
// Run with `npm run bench lambda` (after `npm run build`).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LambdaEmulator } from '../../emulator/index.js';
import { buildLayerDir, cardsPolicy, createSandbox, startControl } from '../lambda/harness.js';

const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS ?? 12);
const SANDBOXES = Number(process.env.BENCH_SANDBOXES ?? 50);
const PROPAGATION_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function summary(values: number[]): string {
  return `p50 ${percentile(values, 50).toFixed(1)} ms, p95 ${percentile(values, 95).toFixed(1)} ms, n=${values.length}`;
}

async function main(): Promise<void> {
  const control = await startControl();
  await control.apply(cardsPolicy([20_000]));
  const layer = buildLayerDir({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] });
  const sandboxes: LambdaEmulator[] = [];
  try {
    // 1 + 2: cold starts, with and without the layer, alternating so both see the same machine load.
    const ready: number[] = [];
    const fetches: number[] = [];
    const launchToRegister: number[] = [];
    const coldWith: number[] = [];
    const coldWithout: number[] = [];
    for (let i = 0; i < COLD_RUNS; i++) {
      for (const attached of [true, false]) {
        const emulator = createSandbox({ ...(attached ? { layer, control } : {}), fn: 'net-cjs' });
        await emulator.start();
        const startedAt = performance.now();
        const result = await emulator.invoke({});
        const elapsed = performance.now() - startedAt;
        if (result.status !== 'success') throw new Error(`cold start failed: ${emulator.logText()}`);
        if (attached) {
          coldWith.push(elapsed);
          const status = JSON.parse(readFileSync(join(emulator.stateDir, 'extension-status.json'), 'utf8'));
          ready.push(status.readyMs);
          fetches.push(status.fetchMs);
          for (const t of emulator.extensionTimings())
            if (t.registeredAt !== undefined) launchToRegister.push(t.registeredAt - t.launchedAt);
        } else coldWithout.push(elapsed);
        await emulator.close();
      }
    }
    console.log(`extension ready (fetch + verify + register, in the extension): ${summary(ready)}`);
    console.log(
      `  of which the bundle fetch (control API answer for a new workload + verify): ${summary(fetches)}`,
    );
    console.log(
      `extension launch → Register (adds node start-up of the extension): ${summary(launchToRegister)}`,
    );
    console.log(`cold start without layer (init + first invoke): ${summary(coldWithout)}`);
    console.log(`cold start with layer    (init + first invoke): ${summary(coldWith)}`);
    console.log(
      `cold start ratio with/without (p50): ${(percentile(coldWith, 50) / percentile(coldWithout, 50)).toFixed(2)}`,
    );

    // 3: propagation at the invoke boundary.
    for (let i = 0; i < SANDBOXES; i++) {
      const emulator = createSandbox({ layer, control, fn: 'net-cjs' });
      await emulator.start();
      const init = await emulator.init();
      if (!init.ok) throw new Error(`init failed: ${init.errorType} ${init.errorMessage}`);
      sandboxes.push(emulator);
    }
    // Each round: apply, then invoke every sandbox once, in a loop, as traffic would reach them.
    let invocations = 0;
    let staleTotal = 0;
    let staleAfterOneSecond = 0;
    let afterOneSecond = 0;
    const phases: number[] = [];
    for (let round = 1; round <= PROPAGATION_ROUNDS; round++) {
      const revision = await control.apply(cardsPolicy([20_000 + round]));
      const appliedAt = performance.now();
      for (const emulator of sandboxes) {
        const sinceApply = performance.now() - appliedAt;
        const result = await emulator.invoke({ revision: true });
        phases.push(result.phaseMs);
        const seen = result.json<{ readyRevision: number | null }>().readyRevision;
        invocations++;
        if (sinceApply >= 1_000) afterOneSecond++;
        if (seen !== revision) {
          staleTotal++;
          if (sinceApply >= 1_000) staleAfterOneSecond++;
        }
      }
    }
    console.log(
      `propagation: ${invocations} invocations over ${SANDBOXES} sandboxes after ${PROPAGATION_ROUNDS} applies: ` +
        `${staleTotal} decided on a stale revision (${staleAfterOneSecond} of the ${afterOneSecond} that started 1 s or more after the apply)`,
    );
    console.log(`warm invoke phase (thaw → runtime and extension back in next → freeze): ${summary(phases)}`);
  } finally {
    for (const emulator of sandboxes) await emulator.close();
    layer.cleanup();
    await control.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
