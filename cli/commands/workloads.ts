// bulkhead workloads: the inventory and how far the current revision has propagated.
import { clientOptions, controlClient, describeFailure, table } from '../client.js';
import { type Command, EXIT_FAILURE, EXIT_OK } from '../command.js';

const usage = `Usage: bulkhead workloads --control URL --token T [--json]

Lists every workload that has fetched a bundle: identity, SmartGroups, last seen, the revision it holds,
and records lost in transit; then propagation per SmartGroup. Token also from BULKHEAD_TOKEN.`;

interface WorkloadsAnswer {
  revision: number;
  workloads: {
    key: string;
    groups: string[];
    lastSeen: string;
    revision: number;
    current: boolean;
    missingRecords: number;
  }[];
  groups: { name: string; workloads: number; current: number; behind: number }[];
}

export const workloadsCommand: Command = {
  path: ['workloads'],
  summary: 'List workloads, the revision each holds, propagation per SmartGroup',
  usage,
  options: { ...clientOptions, json: { type: 'boolean' } },
  async run(args, io) {
    const client = controlClient(args);
    const response = await client.request('GET', '/v1/workloads');
    if (!response.ok) {
      io.err(`bulkhead workloads: ${await describeFailure(response)}`);
      return EXIT_FAILURE;
    }
    const answer = (await response.json()) as WorkloadsAnswer;
    if (args.values.json) {
      io.out(JSON.stringify(answer));
      return EXIT_OK;
    }
    io.out(`current revision: ${answer.revision}; workloads: ${answer.workloads.length}`);
    if (answer.workloads.length > 0) {
      io.out(
        table([
          ['WORKLOAD', 'GROUPS', 'REVISION', 'LAST SEEN', 'LOST'],
          ...answer.workloads.map((w) => [
            w.key,
            w.groups.join(',') || '-',
            `${w.revision}${w.current ? '' : ' (behind)'}`,
            w.lastSeen,
            String(w.missingRecords),
          ]),
        ]),
      );
    }
    if (answer.groups.length > 0) {
      io.out('');
      io.out(
        table([
          ['SMARTGROUP', 'WORKLOADS', 'CURRENT', 'BEHIND'],
          ...answer.groups.map((g) => [g.name, String(g.workloads), String(g.current), String(g.behind)]),
        ]),
      );
    }
    return EXIT_OK;
  },
};
