import { LambdaClient } from '@aws-sdk/client-lambda';
import {
  AttachError,
  type AttachResult,
  attachLayer,
  checkTokenSecret,
  describeChange,
  describeTokenSecretPolicy,
} from '../../layers/attach.js';
import { type Command, EXIT_OK, requireOption, stringOption, UsageError } from '../command.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export const attachCommand: Command = {
  path: ['attach'],
  summary: 'attach the Bulkhead layer and its environment to a Lambda function',
  usage: [
    'Usage: bulkhead attach FUNCTION --layer ARN --control URL [--token-env NAME | --token-secret ARN] [--attest]',
    '                       [--region R] [--dry-run] [--wait] [--json]',
    '',
    'Adds the layer (or replaces an older version of it), sets AWS_LAMBDA_EXEC_WRAPPER=/opt/bulkhead-wrapper,',
    "BULKHEAD_CONTROL_URL, and BULKHEAD_TAGS from the function's tags; keeps every other layer and variable.",
    'Idempotent: nothing is written when the function is already attached. Refuses when the function already',
    'has 5 layers, uses another exec wrapper, is a container image, or does not run Node.js 20/22/24.',
    '',
    'Options:',
    '  --layer ARN        layer version ARN printed by `bulkhead layer publish`',
    '  --control URL      control API URL the extension fetches bundles from',
    '  --token-env NAME   read the workload token from this local environment variable and store it',
    '                     in BULKHEAD_TOKEN (the token never appears on the command line or in output)',
    '  --token-secret ARN keep the token out of the function configuration: set BULKHEAD_TOKEN_SECRET to the',
    '                     ARN of a Secrets Manager secret (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)',
    '                     or SSM SecureString parameter (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME) holding it',
    '                     (the token itself, or JSON {"token": "bhk_…"}); the extension reads it at init with',
    "                     the function's role, and this prints what that role must be allowed",
    '  --attest           BULKHEAD_ATTEST=aws: the extension proves which function it is with its role',
    '                     (a signed sts:GetCallerIdentity) and gets a session bound to it; needs a control',
    '                     API started with --attestation (docs/identity.md)',
    '  --region R         AWS region (default AWS_REGION; a function ARN carries its own)',
    '  --dry-run          show the changes, write nothing',
    '  --wait             wait until Lambda has applied the update',
    '  --json             print the result as JSON',
  ].join('\n'),
  options: {
    layer: { type: 'string' },
    control: { type: 'string' },
    'token-env': { type: 'string' },
    'token-secret': { type: 'string' },
    attest: { type: 'boolean' },
    region: { type: 'string' },
    'dry-run': { type: 'boolean' },
    wait: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  positionals: true,
  async run(args, io) {
    if (args.positionals.length !== 1) throw new UsageError('give exactly one FUNCTION (name or ARN)');
    const functionName = args.positionals[0] as string;
    const layerArn = requireOption(args, 'layer');
    const controlUrl = requireOption(args, 'control');
    let token: string | undefined;
    const tokenEnv = stringOption(args, 'token-env');
    if (tokenEnv !== undefined) {
      if (!ENV_NAME.test(tokenEnv))
        throw new UsageError(`--token-env '${tokenEnv}' is not an environment variable name`);
      token = process.env[tokenEnv];
      if (!token)
        throw new UsageError(`--token-env ${tokenEnv}: that environment variable is empty or unset`);
    }
    const tokenSecret = stringOption(args, 'token-secret');
    if (tokenSecret !== undefined) {
      if (tokenEnv !== undefined)
        throw new UsageError('--token-env and --token-secret are exclusive: the token is in one place');
      try {
        checkTokenSecret(tokenSecret);
      } catch (error) {
        if (error instanceof AttachError) throw new UsageError(error.message);
        throw error;
      }
    }
    const arnRegion = /^arn:aws[a-z-]*:lambda:([a-z0-9-]+):/.exec(functionName)?.[1];
    const region = stringOption(args, 'region') || arnRegion || process.env.AWS_REGION;
    if (!region) throw new UsageError('--region is required (or AWS_REGION, or a function ARN)');
    const dryRun = args.values['dry-run'] === true;
    const client = new LambdaClient({ region });
    let result: AttachResult;
    try {
      result = await attachLayer({
        client,
        functionName,
        layerArn,
        controlUrl,
        token,
        tokenSecret,
        attest: args.values.attest === true,
        dryRun,
        wait: args.values.wait === true,
        onProgress: (message) => io.err(message),
      });
    } finally {
      client.destroy();
    }
    if (args.values.json === true) {
      io.out(
        JSON.stringify({
          function: functionName,
          functionArn: result.functionArn,
          updated: result.updated,
          dryRun,
          layers: result.layers,
          changes: result.changes.map(describeChange),
          ...(result.executionRolePolicy ? { executionRolePolicy: result.executionRolePolicy } : {}),
        }),
      );
      return EXIT_OK;
    }
    if (result.changes.length === 0) io.out(`${functionName}: already attached`);
    else io.out(`${functionName}: ${dryRun ? 'would apply' : 'applied'} ${result.changes.length} change(s)`);
    if (tokenSecret !== undefined && result.executionRolePolicy) {
      io.out(`${functionName}: its execution role must be allowed to read the token:`);
      for (const line of describeTokenSecretPolicy(tokenSecret)) io.out(`  ${line}`);
      io.out(JSON.stringify(result.executionRolePolicy, null, 2));
    }
    return EXIT_OK;
  },
};
