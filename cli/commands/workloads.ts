// bulkhead workloads: the inventory and how far the current revision has propagated.
import { clientOptions, controlClient, describeFailure, table } from '../client.js';
import { type Command, EXIT_FAILURE, EXIT_OK, integerOption, stringOption } from '../command.js';

const usage = `Usage: bulkhead workloads --control URL --token T [--group G] [--name NAME|GLOB] [--behind]
                          [--limit N] [--cursor C] [--json]

Lists the workloads that have fetched a bundle: identity, SmartGroups, the revision each holds, last
seen, records lost in transit (LOST) and records whose sequence number jumped implausibly (FLAGGED);
then propagation per SmartGroup. Every workload by default, fetched 1000 at a time.
  --group G           only the workloads of SmartGroup G
  --name NAME|GLOB    only workloads of this name, or a glob of it (charge-*)
  --behind            only workloads holding an older revision than the current one
  --limit N           at most N workloads; when there are more, prints the --cursor that continues
  --cursor C          continue where an earlier --limit stopped (same filters)
  --json              one JSON object: {revision, workloads, groups, nextCursor?}
Token also from BULKHEAD_TOKEN.`;

/** The API's largest page. */
const PAGE = 1000;

interface WorkloadView {
  key: string;
  groups: string[];
  lastSeen: string;
  revision: number;
  current: boolean;
  missingRecords: number;
  seqAnomalies?: number;
}

interface GroupView {
  name: string;
  workloads: number;
  current: number;
  behind: number;
}

interface WorkloadsAnswer {
  revision: number;
  workloads: WorkloadView[];
  nextCursor?: string;
  groups?: GroupView[];
}

export const workloadsCommand: Command = {
  path: ['workloads'],
  summary: 'List workloads, the revision each holds, propagation per SmartGroup',
  usage,
  options: {
    ...clientOptions,
    json: { type: 'boolean' },
    group: { type: 'string' },
    name: { type: 'string' },
    behind: { type: 'boolean' },
    limit: { type: 'string' },
    cursor: { type: 'string' },
  },
  async run(args, io) {
    const client = controlClient(args);
    const wanted = integerOption(stringOption(args, 'limit'), 'limit', {
      min: 1,
      max: Number.MAX_SAFE_INTEGER,
    });
    const filters = new URLSearchParams();
    for (const name of ['group', 'name', 'cursor'] as const) {
      const value = stringOption(args, name);
      if (value !== undefined) filters.set(name, value);
    }
    if (args.values.behind) filters.set('behind', 'true');

    const workloads: WorkloadView[] = [];
    let revision = 0;
    let groups: GroupView[] | undefined;
    let nextCursor: string | undefined;
    for (;;) {
      const query = new URLSearchParams(filters);
      query.set('limit', String(Math.min(PAGE, (wanted ?? Number.POSITIVE_INFINITY) - workloads.length)));
      if (nextCursor !== undefined) query.set('cursor', nextCursor);
      const response = await client.request('GET', `/v1/workloads?${query}`);
      if (!response.ok) {
        io.err(`bulkhead workloads: ${await describeFailure(response)}`);
        return EXIT_FAILURE;
      }
      const page = (await response.json()) as WorkloadsAnswer;
      revision = page.revision;
      groups ??= page.groups;
      workloads.push(...page.workloads);
      nextCursor = page.nextCursor;
      if (nextCursor === undefined || (wanted !== undefined && workloads.length >= wanted)) break;
    }

    if (args.values.json) {
      io.out(
        JSON.stringify({ revision, workloads, groups: groups ?? [], ...(nextCursor ? { nextCursor } : {}) }),
      );
      return EXIT_OK;
    }
    io.out(`current revision: ${revision}; workloads: ${workloads.length}${nextCursor ? ' (more)' : ''}`);
    if (workloads.length > 0) {
      io.out(
        table([
          ['WORKLOAD', 'GROUPS', 'REVISION', 'LAST SEEN', 'LOST', 'FLAGGED'],
          ...workloads.map((w) => [
            w.key,
            w.groups.join(',') || '-',
            `${w.revision}${w.current ? '' : ' (behind)'}`,
            w.lastSeen,
            String(w.missingRecords),
            String(w.seqAnomalies ?? 0),
          ]),
        ]),
      );
    }
    if (nextCursor) io.out(`more: --cursor ${nextCursor}`);
    if (groups && groups.length > 0) {
      io.out('');
      io.out(
        table([
          ['SMARTGROUP', 'WORKLOADS', 'CURRENT', 'BEHIND'],
          ...groups.map((g) => [g.name, String(g.workloads), String(g.current), String(g.behind)]),
        ]),
      );
    }
    return EXIT_OK;
  },
};
