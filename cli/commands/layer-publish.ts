import { LambdaClient } from '@aws-sdk/client-lambda';
import { COMPATIBLE_RUNTIMES, DEFAULT_LAYER_NAME, publishLayer } from '../../layers/publish.js';
import { LAYER_ARCHES, type LayerArch } from '../../layers/python-deps.js';
import { type Command, EXIT_FAILURE, EXIT_OK, requireOption, stringOption, UsageError } from '../command.js';

export const DEFAULT_LAYER_ZIP = 'dist/bulkhead-layer.zip';
const REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;

export const layerPublishCommand: Command = {
  path: ['layer', 'publish'],
  summary: 'publish the layer zip as a Lambda layer version (one or more regions)',
  usage: [
    'Usage: bulkhead layer publish --region R[,R…] [--name N] [--zip FILE] [--arch x86_64|arm64] [--force] [--json]',
    '',
    `Publishes FILE (default ${DEFAULT_LAYER_ZIP}, made by \`bulkhead layer build\`) with PublishLayerVersion,`,
    `compatible with ${COMPATIBLE_RUNTIMES.join(', ')} on the architecture it was built for (--arch, default`,
    'x86_64: name arm64 layers apart, e.g. --name bulkhead-arm64), in each region given. When the',
    'newest version of the layer already has the same sha256 it is reused (--force publishes anyway).',
    'Prints one layer version ARN per region. Credentials come from the usual AWS SDK chain.',
    '',
    'Options:',
    '  --region R    AWS region, or a comma-separated list (default AWS_REGION)',
    `  --name N      layer name (default ${DEFAULT_LAYER_NAME})`,
    '  --zip FILE    layer zip to upload',
    '  --arch ARCH   x86_64 (default) or arm64, as given to `bulkhead layer build`',
    '  --force       publish even when the newest version has the same content',
    '  --json        print one JSON object per region',
  ].join('\n'),
  options: {
    region: { type: 'string' },
    name: { type: 'string' },
    zip: { type: 'string' },
    arch: { type: 'string' },
    force: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const regionText =
      stringOption(args, 'region') || process.env.AWS_REGION || requireOption(args, 'region');
    const regions = [...new Set(regionText.split(',').map((r) => r.trim()))];
    for (const region of regions)
      if (!REGION.test(region))
        throw new UsageError(`--region: '${region}' is not a region name (eu-west-1 …)`);
    const arch = stringOption(args, 'arch') ?? 'x86_64';
    if (!LAYER_ARCHES.includes(arch as LayerArch)) throw new UsageError('--arch must be x86_64 or arm64');
    const json = args.values.json === true;
    let failed = 0;
    // One region after another: a failure is reported and the others still get the layer.
    for (const region of regions) {
      const client = new LambdaClient({ region });
      try {
        const result = await publishLayer({
          client,
          zip: stringOption(args, 'zip') ?? DEFAULT_LAYER_ZIP,
          layerName: stringOption(args, 'name'),
          force: args.values.force === true,
          architecture: arch as LayerArch,
          // Progress goes to stderr so the ARNs (or --json) on stdout stay parseable.
          onProgress: (message) => io.err(`[${region}] ${message}`),
        });
        io.out(json ? JSON.stringify({ region, ...result }) : result.layerVersionArn);
      } catch (error) {
        if (regions.length === 1) throw error;
        failed++;
        io.err(`[${region}] failed: ${(error as Error).message}`);
      } finally {
        client.destroy();
      }
    }
    return failed === 0 ? EXIT_OK : EXIT_FAILURE;
  },
};
