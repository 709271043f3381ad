import { LambdaClient } from '@aws-sdk/client-lambda';
import { DEFAULT_LAYER_NAME, publishLayer } from '../../../layers/publish.js';
import { type Command, EXIT_OK, requireOption, stringOption } from '../command.js';

export const DEFAULT_LAYER_ZIP = 'dist/bulkhead-layer.zip';

export const layerPublishCommand: Command = {
  path: ['layer', 'publish'],
  summary: 'publish the layer zip as a Lambda layer version in one region',
  usage: [
    'Usage: bulkhead layer publish --region R [--name N] [--zip FILE] [--force] [--json]',
    '',
    `Publishes FILE (default ${DEFAULT_LAYER_ZIP}, made by \`bulkhead layer build\`) with PublishLayerVersion,`,
    'compatible with nodejs20.x, nodejs22.x, nodejs24.x on x86_64 and arm64. When the newest version of the',
    'layer already has the same sha256 it is reused (--force publishes a new version anyway).',
    'Credentials come from the usual AWS SDK chain (AWS_PROFILE, environment, SSO, instance role).',
    '',
    'Options:',
    '  --region R    AWS region (default AWS_REGION)',
    `  --name N      layer name (default ${DEFAULT_LAYER_NAME})`,
    '  --zip FILE    layer zip to upload',
    '  --force       publish even when the newest version has the same content',
    '  --json        print the result as JSON',
  ].join('\n'),
  options: {
    region: { type: 'string' },
    name: { type: 'string' },
    zip: { type: 'string' },
    force: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const region = stringOption(args, 'region') || process.env.AWS_REGION || requireOption(args, 'region');
    const json = args.values.json === true;
    const client = new LambdaClient({ region });
    try {
      const result = await publishLayer({
        client,
        zip: stringOption(args, 'zip') ?? DEFAULT_LAYER_ZIP,
        layerName: stringOption(args, 'name'),
        force: args.values.force === true,
        // Progress goes to stderr so --json output stays parseable.
        onProgress: (message) => io.err(`[${region}] ${message}`),
      });
      if (json) io.out(JSON.stringify({ region, ...result }));
      else io.out(result.layerVersionArn);
      return EXIT_OK;
    } finally {
      client.destroy();
    }
  },
};
