// The in-process shim imports these kernel modules; they must pull in no npm package (the YAML
// parser above all), or every governed function would carry it.
import { join } from 'node:path';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');
const shimFacing = [
  'decide',
  'bundle',
  'keys',
  'identity',
  'host',
  'cidr',
  'path',
  'unix',
  'compiled',
  'canonical',
];

describe('kernel layering', () => {
  it.each(shimFacing)('policy/%s.ts bundles from node: built-ins and policy/ only', async (name) => {
    const result = await build({
      entryPoints: [join(root, `policy/${name}.ts`)],
      bundle: true,
      write: false,
      platform: 'node',
      format: 'esm',
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.filter((file) => !file.startsWith('policy/'))).toEqual([]);
    expect(inputs).not.toContain('policy/parse.ts');
    const size = result.outputFiles[0]?.contents.length ?? 0;
    expect(size).toBeLessThan(100_000);
  });
});
