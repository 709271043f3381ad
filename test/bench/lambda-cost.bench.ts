// What the layer costs a Node function on Lambda, with and without it side by side in the emulator
// (real aws-lambda-ric, the layer's launcher and extension, a local control API, SIGSTOP between
// invokes), the function making one allowed request per invoke:
//  1. cold start: init (sandbox start until the runtime and every extension called next) and the first
//     invocation; goal ≤ 50 ms added, the bundle still verified before the first connection;
//  2. warm invocation billed time (thaw until everyone is back in next, what Lambda bills): goal ≤ 1 ms
//     added with no deny;
//  3. a warm invocation with a deny: the billed time it adds (goal ≤ 5 ms) and whether its record
//     reached the control API before the sandbox froze.
// Sandboxes alternate with and without the layer so both see the same machine load; medians.
// Run with `npm run bench -- lambda-cost` (after `npm run build`).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LambdaEmulator } from '../../emulator/index.js';
import {
  buildLayerDir,
  cardsPolicy,
  createSandbox,
  startControl,
  startDestination,
} from '../lambda/harness.js';
import { added, line } from './stats.js';

const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS ?? 9);
const WARM_INVOKES = Number(process.env.BENCH_WARM_INVOKES ?? 200);

async function main(): Promise<void> {
  const destination = await startDestination();
  const port = destination.port;
  const control = await startControl();
  await control.apply(cardsPolicy([port]));
  const layer = buildLayerDir({ controlUrl: control.url, trustedKeys: [control.publicKeyPem] });
  const clean = { allowed: `http://localhost:${port}/` };
  const sandbox = (attached: boolean): LambdaEmulator =>
    createSandbox({ ...(attached ? { layer, control } : {}), fn: 'net-cjs' });
  try {
    // 1. Cold starts.
    const init: Record<'with' | 'without', number[]> = { with: [], without: [] };
    const first: Record<'with' | 'without', number[]> = { with: [], without: [] };
    const cold: Record<'with' | 'without', number[]> = { with: [], without: [] };
    const launchToRegister: number[] = [];
    const ready: number[] = [];
    let byLauncher = 0;
    for (let i = 0; i < COLD_RUNS; i++) {
      for (const attached of [true, false]) {
        const key = attached ? 'with' : 'without';
        const emulator = sandbox(attached);
        await emulator.start();
        const result = await emulator.invoke(clean);
        if (result.status !== 'success' || !result.init)
          throw new Error(`cold start failed: ${emulator.logText()}`);
        if (result.json<{ allowed: { outcome: string } }>().allowed.outcome !== 'allowed')
          throw new Error(`the allowed request failed: ${JSON.stringify(result.json())}`);
        init[key].push(result.init.durationMs);
        first[key].push(result.phaseMs);
        cold[key].push(result.init.durationMs + result.phaseMs);
        if (attached) {
          const status = JSON.parse(readFileSync(join(emulator.stateDir, 'extension-status.json'), 'utf8'));
          ready.push(status.readyMs);
          if (status.registeredByLauncher) byLauncher++;
          for (const t of emulator.extensionTimings())
            if (t.registeredAt !== undefined) launchToRegister.push(t.registeredAt - t.launchedAt);
        }
        await emulator.close();
      }
    }
    console.log(line('extension launch → Register (the launcher, bash)', launchToRegister));
    console.log(
      line('extension process start → status file (node start, fetch + verify, beside the runtime)', ready),
    );
    console.log(`  registered by the launcher in ${byLauncher} of ${COLD_RUNS} cold starts`);
    console.log(line('init without layer', init.without));
    console.log(line('init with layer   ', init.with));
    console.log(added('init', init.with, init.without, '—'));
    console.log(line('first invocation without layer', first.without));
    console.log(line('first invocation with layer   ', first.with));
    console.log(line('cold start without layer (init + first invocation)', cold.without));
    console.log(line('cold start with layer    (init + first invocation)', cold.with));
    console.log(added('cold start', cold.with, cold.without, '≤ 50 ms added'));

    // 2. Warm invocations: one sandbox each, invoked in turns.
    const warm = { with: sandbox(true), without: sandbox(false) };
    for (const emulator of [warm.with, warm.without]) {
      await emulator.start();
      for (let i = 0; i < 5; i++) await emulator.invoke(clean);
    }
    const phases: Record<'with' | 'without', number[]> = { with: [], without: [] };
    for (let i = 0; i < WARM_INVOKES; i++) {
      phases.with.push((await warm.with.invoke(clean)).phaseMs);
      phases.without.push((await warm.without.invoke(clean)).phaseMs);
    }
    console.log(line('warm invocation without layer (one allowed request)', phases.without));
    console.log(line('warm invocation with layer    (one allowed request)', phases.with));
    console.log(added('warm billed time, no deny,', phases.with, phases.without, '≤ 1 ms'));

    // 3. A deny per invocation: the record goes to the spool as the handler returns, and the extension
    //    forwards it after the response, before the sandbox freezes.
    const denyRuns = Math.max(20, Math.floor(WARM_INVOKES / 4));
    const deny: number[] = [];
    const baseline: number[] = [];
    const afterResponse: number[] = [];
    let arrivedBeforeFreeze = 0;
    for (let i = 0; i < denyRuns; i++) {
      const pending = warm.with.startInvoke({ ...clean, forbidden: 'http://127.0.0.7:9/' });
      const dispatched = performance.now();
      await pending.response;
      const answered = performance.now() - dispatched;
      const result = await pending.completed;
      deny.push(result.phaseMs);
      afterResponse.push(Math.max(0, result.phaseMs - answered));
      baseline.push((await warm.without.invoke(clean)).phaseMs);
      const requestId = result.json<{ requestId: string }>().requestId;
      const stored = await control.denies('limit=50');
      if (stored.some((r) => r.invocationId === requestId)) arrivedBeforeFreeze++;
    }
    console.log(line('warm invocation with layer and a deny', deny));
    console.log(added('warm billed time with a deny', deny, baseline, '≤ 5 ms'));
    console.log(
      line(
        "  of which after the runtime's response (the record's forward, before the freeze)",
        afterResponse,
      ),
    );
    console.log(
      `deny records at the control API when the invocation's phase ended (before the freeze): ${arrivedBeforeFreeze} of ${denyRuns}: a record waits at most its invocation's phase`,
    );
    await warm.with.close();
    await warm.without.close();
  } finally {
    layer.cleanup();
    destination.close();
    await control.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
