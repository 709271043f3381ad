// Runs every benchmark under test/bench/ (or those whose file name contains an argument),
// one after another so they do not compete for the two cores, then the Python shim's
// (runtime-shims/python/bench/run.py, named python-shim: `npm run bench -- python`).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const benchDir = join(root, 'test/bench');
const outDir = join(root, '.tmp/bench');
mkdirSync(outDir, { recursive: true });
const filters = process.argv.slice(2);
const files = readdirSync(benchDir)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
let failed = 0;
for (const file of files) {
  const outfile = join(outDir, file.replace(/\.ts$/, '.mjs'));
  await build({
    entryPoints: [join(benchDir, file)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
  });
  console.log(`\n=== ${file} ===`);
  const run = spawnSync(process.execPath, ['--expose-gc', outfile], { cwd: root, stdio: 'inherit' });
  if (run.status !== 0) failed++;
}
// The Python shim: run by a project virtualenv's CPython (`node scripts/python.mjs setup` makes them;
// they have cryptography, requests and urllib3), BENCH_PYTHON to choose another interpreter.
if (filters.length === 0 || filters.some((x) => 'python-shim'.includes(x))) {
  console.log('\n=== python-shim (runtime-shims/python/bench/run.py) ===');
  const python =
    process.env.BENCH_PYTHON ??
    ['3.11', '3.12', '3.13', '3.10']
      .map((minor) => join(root, '.venv', `py${minor}`, 'bin', 'python'))
      .find((path) => existsSync(path));
  if (python === undefined) {
    console.log(
      'skipped: no virtualenv at .venv/py3.11 (nor py3.12, py3.13, py3.10); `node scripts/python.mjs setup` makes them',
    );
  } else {
    const script = join(root, 'runtime-shims/python/bench/run.py');
    const run = spawnSync(python, [script], { cwd: root, stdio: 'inherit' });
    if (run.error) console.log(`python-shim: cannot run ${python}: ${run.error.message}`);
    if (run.status !== 0) failed++;
  }
}
if (failed) process.exit(1);
