// bulkhead policy unused: the rules of the applied revision nothing used (no allow decision counted).
import type { RuleUsage } from '../../policy/index.js';
import { clientOptions, controlClient, describeFailure, table } from '../client.js';
import { type Command, EXIT_FAILURE, EXIT_OK, stringOption } from '../command.js';
import { timeArgument } from './denies.js';

const usage = `Usage: bulkhead policy unused [--since 30d] [--all] [--json] --control URL --token T

Lists the allow, exec and addon rules of the applied revision that allowed nothing since TIME (the
shims count every allow decision per rule and report the counts with their records, or every 60 s).
--all lists every rule with its count. TIME: ISO-8601 or a duration ago (7d, 30d). Token also from
BULKHEAD_TOKEN. A rule only workloads that never report use (no token, no network) reads as unused.`;

export const policyUnusedCommand: Command = {
  path: ['policy', 'unused'],
  summary: 'Rules nothing used (rule hit counts)',
  usage,
  options: {
    ...clientOptions,
    since: { type: 'string' },
    all: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const since = timeArgument(stringOption(args, 'since') ?? '30d', 'since');
    const client = controlClient(args);
    const response = await client.request('GET', `/v1/rules?${new URLSearchParams({ since })}`);
    if (!response.ok) {
      io.err(`bulkhead policy unused: ${await describeFailure(response)}`);
      return EXIT_FAILURE;
    }
    const answer = (await response.json()) as { revision: number; since: string; rules: RuleUsage[] };
    const all = args.values.all === true;
    const shown = all ? answer.rules : answer.rules.filter((r) => r.hits === 0);
    if (args.values.json === true) {
      io.out(JSON.stringify({ ...answer, rules: shown }));
      return EXIT_OK;
    }
    const unused = answer.rules.filter((r) => r.hits === 0).length;
    io.out(
      `revision ${answer.revision}: ${unused} of ${answer.rules.length} rule(s) allowed nothing since ${answer.since}`,
    );
    if (shown.length > 0)
      io.out(
        table([
          ['RULE', 'APPLIES TO', 'DESTINATION', 'HITS', 'LAST'],
          ...shown.map((r) => [
            r.rule,
            r.appliesTo.join(','),
            r.destination,
            r.hits.toLocaleString('en-US'),
            r.lastDay ?? '-',
          ]),
        ]),
      );
    return EXIT_OK;
  },
};
