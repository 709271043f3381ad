// Where a worker thread's program comes from. Bundled (dist/cli.mjs, dist/demo.mjs, a chunk under
// dist/chunks/), each thread is its own build entry, dist/<name>.cjs. From TypeScript sources
// (vitest), there is no .cjs: the thread's .ts is compiled with esbuild (a devDependency, loaded
// only then) and run as a string.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const compiled = new Map<string, string>();

/** The thread's source: beside the caller (running from sources), else `source` under an ancestor (a bundled bench). */
function findSource(callerUrl: string, name: string, source: string): string | undefined {
  const beside = fileURLToPath(new URL(`./${name}.ts`, callerUrl));
  if (existsSync(beside)) return beside;
  let dir = dirname(fileURLToPath(callerUrl));
  for (let depth = 0; depth < 6; depth++) {
    const candidate = join(dir, source);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return undefined;
}

/**
 * @param callerUrl `import.meta.url` of the module starting the thread
 * @param name build entry name (dist/<name>.cjs)
 * @param source the thread's source from the repository root (`control/<name>.ts`)
 * @param external packages the thread requires at run time instead of bundling (native ones)
 */
export function workerProgram(
  callerUrl: string,
  name: string,
  source: string,
  external: string[] = [],
): { filename: URL | string; eval: boolean } {
  for (const relative of [`./${name}.cjs`, `../${name}.cjs`]) {
    const built = new URL(relative, callerUrl);
    if (built.protocol === 'file:' && existsSync(fileURLToPath(built)))
      return { filename: built, eval: false };
  }
  let code = compiled.get(name);
  if (code === undefined) {
    const found = findSource(callerUrl, name, source);
    if (!found) throw new Error(`neither ${name}.cjs nor ${source} found from ${callerUrl}`);
    // Synchronous (stores open synchronously), so required rather than import()ed.
    const esbuild = createRequire(callerUrl)('esbuild') as typeof import('esbuild');
    const result = esbuild.buildSync({
      entryPoints: [found],
      bundle: true,
      format: 'cjs',
      platform: 'node',
      target: 'node20',
      external,
      write: false,
      logLevel: 'silent',
    });
    code = result.outputFiles[0]?.text;
    if (code === undefined) throw new Error(`esbuild produced no output for ${name}`);
    compiled.set(name, code);
  }
  return { filename: code, eval: true };
}
