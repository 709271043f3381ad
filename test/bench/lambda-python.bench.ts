// A Python function on Lambda with the layer, against the same function without it, side by side in
// the emulator (real awslambdaric, the Python extension, a local control API, SIGSTOP between invokes):
//  1. cold start: init + first invocation (goal: ≤ 50 ms added);
//  2. warm invocation billed time: thaw until the runtime and every extension are back in `next`, for a
//     function making one allowed request (goal: ≤ 1 ms added with no deny), and with one deny;
//  3. the layer's size, zipped, for each architecture (goal: ≤ 10 MB).
// Run with `npm run bench -- lambda-python` (after `npm run build`).
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findPythonRuntime, type LambdaEmulator } from '../../emulator/index.js';
import { packageRoot, zipLayerTree } from '../../layers/build.js';
import {
  buildLayerDir,
  cardsPolicy,
  createSandbox,
  FIXTURES,
  startControl,
  startDestination,
} from '../lambda/harness.js';
import { added, line } from './stats.js';

const COLD_RUNS = Number(process.env.BENCH_COLD_RUNS ?? 9);
const WARM_INVOKES = Number(process.env.BENCH_WARM_INVOKES ?? 200);

async function main(): Promise<void> {
  const python = findPythonRuntime();
  if (!python.python) {
    console.log(`skipped: ${python.reason}`);
    return;
  }
  console.log(`python${python.version}, awslambdaric ${python.awslambdaric}`);
  const destination = await startDestination();
  const port = destination.port;
  const control = await startControl();
  await control.apply(cardsPolicy([port]));
  const layer = buildLayerDir({
    controlUrl: control.url,
    trustedKeys: [control.publicKeyPem],
    pythonDeps: true,
  });
  const taskRoot = mkdtempSync(join(tmpdir(), 'bulkhead-bench-py-'));
  cpSync(join(FIXTURES, 'python-functions', 'net'), taskRoot, { recursive: true });
  cpSync(join(packageRoot(), 'runtime-shims', 'python', 'tests', 'fixtures', 'site-packages'), taskRoot, {
    recursive: true,
  });
  const clean = { allowed: `http://localhost:${port}/` };
  const sandbox = (attached: boolean): LambdaEmulator =>
    createSandbox({
      ...(attached ? { layer, control } : {}),
      taskRoot,
      handler: 'app.handler',
      runtimeName: `python${python.version}` as 'python3.12',
      pythonPath: python.python,
      env: attached ? { BULKHEAD_EXTENSION_RUNTIME: 'python' } : {},
    });
  try {
    // 1. Cold starts, alternating with and without the layer so both see the same machine load.
    const cold: Record<'with' | 'without', number[]> = { with: [], without: [] };
    const ready: number[] = [];
    const launchToRegister: number[] = [];
    for (let i = 0; i < COLD_RUNS; i++) {
      for (const attached of [true, false]) {
        const emulator = sandbox(attached);
        await emulator.start();
        const startedAt = performance.now();
        const result = await emulator.invoke(clean);
        const elapsed = performance.now() - startedAt;
        if (result.status !== 'success') throw new Error(`cold start failed: ${emulator.logText()}`);
        if (result.json<{ allowed: { outcome: string } }>().allowed.outcome !== 'allowed')
          throw new Error(`the allowed request failed: ${JSON.stringify(result.json())}`);
        (attached ? cold.with : cold.without).push(elapsed);
        if (attached) {
          const status = JSON.parse(readFileSync(join(emulator.stateDir, 'extension-status.json'), 'utf8'));
          ready.push(status.readyMs);
          for (const t of emulator.extensionTimings())
            if (t.registeredAt !== undefined) launchToRegister.push(t.registeredAt - t.launchedAt);
        }
        await emulator.close();
      }
    }
    console.log(line('extension launch → Register (python start-up, Register first)', launchToRegister));
    console.log(
      line(
        'extension start → first bundle answer (Register, then fetch + verify, beside the runtime)',
        ready,
      ),
    );
    console.log(line('cold start without layer (init + first invoke)', cold.without));
    console.log(line('cold start with layer    (init + first invoke)', cold.with));
    console.log(added('cold start', cold.with, cold.without, '≤ 50 ms added'));

    // 2. Warm invocations: one sandbox each, invoked in turns so both see the same load.
    const warm = { with: sandbox(true), without: sandbox(false) };
    const phases: Record<'with' | 'without' | 'deny', number[]> = { with: [], without: [], deny: [] };
    for (const emulator of [warm.with, warm.without]) {
      await emulator.start();
      for (let i = 0; i < 5; i++) await emulator.invoke(clean);
    }
    for (let i = 0; i < WARM_INVOKES; i++) {
      phases.with.push((await warm.with.invoke(clean)).phaseMs);
      phases.without.push((await warm.without.invoke(clean)).phaseMs);
    }
    // With a deny: the record goes to the spool at once and out by the extension off the critical
    // path (or, if the freeze came first, at the next INVOKE: billed to that one, measured here too).
    const denyRuns = Math.max(20, Math.floor(WARM_INVOKES / 4));
    const after: number[] = [];
    for (let i = 0; i < denyRuns; i++) {
      phases.deny.push((await warm.with.invoke({ ...clean, track: ['127.0.0.7', 9] })).phaseMs);
      after.push((await warm.with.invoke(clean)).phaseMs);
    }
    console.log(line('warm invoke phase without layer (one allowed request)', phases.without));
    console.log(line('warm invoke phase with layer    (one allowed request)', phases.with));
    console.log(added('warm billed time, no deny,', phases.with, phases.without, '≤ 1 ms'));
    console.log(line('warm invoke phase with a deny', phases.deny));
    console.log(line('  and the clean invocation right after it', after));
    const denies = await control.denies('limit=1000');
    console.log(
      `deny records at the control API after the run: ${denies.length} (of ${denyRuns} denied invocations, aggregated per sandbox)`,
    );
    await warm.with.close();
    await warm.without.close();

    // 3. Layer size per architecture.
    for (const arch of ['x86_64', 'arm64'] as const) {
      const built = buildLayerDir({
        controlUrl: control.url,
        trustedKeys: [control.publicKeyPem],
        pythonDeps: true,
        arch,
      });
      try {
        const zip = zipLayerTree(built.dir);
        console.log(`layer zip (${arch}): ${(zip.zip.length / 1024 / 1024).toFixed(2)} MB (goal: ≤ 10 MB)`);
      } finally {
        built.cleanup();
      }
    }
    const nodeOnly = buildLayerDir({
      controlUrl: control.url,
      trustedKeys: [control.publicKeyPem],
      pythonDeps: false,
    });
    console.log(
      `  without the Python wheels: ${(zipLayerTree(nodeOnly.dir).zip.length / 1024 / 1024).toFixed(2)} MB`,
    );
    nodeOnly.cleanup();
  } finally {
    layer.cleanup();
    rmSync(taskRoot, { recursive: true, force: true });
    destination.close();
    await control.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
