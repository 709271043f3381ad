// Propagation at the invoke boundary in the emulator (real processes, local control API): after each
// apply, 50 warm sandboxes are invoked in a loop and every invocation says which revision governs it
// (goal: 0 stale once 1 s has passed). An invocation is governed by an applied revision once the control
// API's answer to the sandbox's parked long-poll has reached it, typically milliseconds after the apply. Cold start and
// billed time: lambda-cost.bench.ts. Run with `npm run bench -- lambda-propagation` (after `npm run build`).
import type { LambdaEmulator } from '../../emulator/index.js';
import { buildLayerDir, cardsPolicy, createSandbox, startControl } from '../lambda/harness.js';
import { line } from './stats.js';

const SANDBOXES = Number(process.env.BENCH_SANDBOXES ?? 50);
const PROPAGATION_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

async function main(): Promise<void> {
  const control = await startControl();
  await control.apply(cardsPolicy([20_000]));
  const layer = buildLayerDir({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] });
  const sandboxes: LambdaEmulator[] = [];
  try {
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
    const staleSinceApply: number[] = [];
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
          staleSinceApply.push(sinceApply);
          if (sinceApply >= 1_000) staleAfterOneSecond++;
        }
      }
    }
    console.log(
      `propagation: ${invocations} invocations over ${SANDBOXES} sandboxes after ${PROPAGATION_ROUNDS} applies: ` +
        `${staleTotal} decided on a stale revision (${staleAfterOneSecond} of the ${afterOneSecond} that started 1 s or more after the apply)`,
    );
    if (staleSinceApply.length > 0)
      console.log(
        `  the stale ones started ${staleSinceApply.map((ms) => ms.toFixed(1)).join(', ')} ms after the apply answered ` +
          "(before the control API's long-poll answer reached their sandbox)",
      );
    console.log(line('warm invoke phase (thaw → runtime and extension back in next → freeze)', phases));
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
