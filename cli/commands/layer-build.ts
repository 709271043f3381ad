import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { buildLayer, LAYER_RUNTIMES } from '../../layers/build.js';
import { LAYER_ARCHES, type LayerArch } from '../../layers/python-deps.js';
import { type Command, EXIT_OK, stringOption, UsageError } from '../command.js';

const DEFAULT_OUT = 'dist/bulkhead-layer.zip';
/** Goal for the zipped layer (issue budget); larger still works but is reported. */
const SIZE_GOAL_BYTES = 10 * 1024 * 1024;

function listOption(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).filter((v): v is string => typeof v === 'string');
}

export const layerBuildCommand: Command = {
  path: ['layer', 'build'],
  summary: 'build the Lambda layer zip (extension, exec wrapper, shim) deterministically',
  usage: [
    'Usage: bulkhead layer build [--out FILE] [--arch x86_64|arm64] [--control URL] [--trusted-key KEY]...',
    '                            [--fail-mode closed|observe] [--fallback-bundle FILE]',
    '                            [--python-wheels DIR | --no-python-deps] [--json]',
    '',
    `Compatible runtimes: ${LAYER_RUNTIMES.join(', ')}. One layer serves Node.js and Python functions of`,
    'one architecture: the Python side vendors cryptography, a native wheel, for the architecture given',
    '(default x86_64); build and publish one layer per architecture. Other runtimes are refused by',
    '`bulkhead attach` and by the exec wrapper, never left ungoverned.',
    '',
    'Assembles the layer from dist/ (run `npm run build` first) and writes a deterministic zip: the same',
    'inputs give the same sha256. Values given here are baked into /opt/bulkhead/config.json, so attaching',
    'the layer and setting AWS_LAMBDA_EXEC_WRAPPER=/opt/bulkhead-wrapper and BULKHEAD_TOKEN is the whole',
    'install; environment variables on the function override baked values.',
    '',
    'Options:',
    `  --out FILE             zip to write (default ${DEFAULT_OUT})`,
    '  --arch ARCH            x86_64 (default) or arm64: the architecture of the vendored Python wheels',
    '  --python-wheels DIR    take the pinned wheels from DIR (checked by sha256) instead of pip download',
    '  --no-python-deps       leave cryptography out: Python functions must ship it themselves',
    '  --control URL          control API base URL (BULKHEAD_CONTROL_URL)',
    '  --trusted-key KEY      public key file or inline PEM/base64; repeat for several (BULKHEAD_TRUSTED_KEYS)',
    '  --fail-mode MODE       closed (default) or observe: what governs when no valid bundle is held',
    '  --fallback-bundle FILE signed bundle used at a cold start when the control API cannot be reached',
    '  --json                 print {file, bytes, sha256, files} as JSON',
  ].join('\n'),
  options: {
    out: { type: 'string' },
    control: { type: 'string' },
    'trusted-key': { type: 'string', multiple: true },
    'fail-mode': { type: 'string' },
    'fallback-bundle': { type: 'string' },
    arch: { type: 'string' },
    'python-wheels': { type: 'string' },
    'no-python-deps': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const out = stringOption(args, 'out') ?? DEFAULT_OUT;
    const failMode = stringOption(args, 'fail-mode');
    if (failMode !== undefined && failMode !== 'closed' && failMode !== 'observe')
      throw new UsageError('--fail-mode must be closed or observe');
    const arch = stringOption(args, 'arch') ?? 'x86_64';
    if (!LAYER_ARCHES.includes(arch as LayerArch)) throw new UsageError('--arch must be x86_64 or arm64');
    const controlUrl = stringOption(args, 'control');
    if (controlUrl !== undefined) {
      try {
        new URL(controlUrl);
      } catch {
        throw new UsageError('--control must be a URL');
      }
    }
    const workDir = mkdtempSync(join(tmpdir(), 'bulkhead-layer-'));
    try {
      io.err('layer: assembling files from dist/ …');
      const { zip, sha256, files } = buildLayer(workDir, {
        controlUrl,
        trustedKeys: listOption(args.values['trusted-key']),
        failMode,
        fallbackBundle: stringOption(args, 'fallback-bundle'),
        arch: arch as LayerArch,
        pythonDeps: args.values['no-python-deps'] !== true,
        pythonWheelsDir: stringOption(args, 'python-wheels'),
      });
      for (const file of files)
        io.err(`layer:   ${file.mode.toString(8)} ${String(file.size).padStart(8)} ${file.path}`);
      io.err(`layer: zipping ${files.length} files …`);
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, zip);
      if (zip.length > SIZE_GOAL_BYTES)
        io.err(`layer: warning: ${zip.length} bytes is above the ${SIZE_GOAL_BYTES}-byte goal`);
      if (args.values.json === true)
        io.out(
          JSON.stringify({ file: out, bytes: zip.length, sha256, arch, files: files.map((f) => f.path) }),
        );
      else io.out(`${out}  ${zip.length} bytes  sha256 ${sha256}  ${arch}`);
      return EXIT_OK;
    } finally {
      rmSync(workDir, { recursive: true, force: true });
    }
  },
};
