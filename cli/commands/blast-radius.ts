// bulkhead blast-radius: the blast-radius score per SmartGroup and per workload (docs/blast-radius.md),
// of policy files (computed here) or of the applied revision (GET /v1/blast-radius).
import {
  type BlastRadiusReport,
  blastRadius,
  type GroupRadius,
  parseIdentity,
  type Reach,
  type WorkloadIdentity,
} from '../../policy/index.js';
import { clientOptions, controlClient, describeFailure, table } from '../client.js';
import { type CliIO, type Command, EXIT_FAILURE, EXIT_OK, type ParsedArgs, UsageError } from '../command.js';
import { loadPolicySet } from './policy.js';

const usage = `Usage: bulkhead blast-radius [FILES_OR_DIRS...] [--workload k=v,...]... [--json] [--control URL --token T]

How much each SmartGroup (and each workload) could reach if compromised: one score from the allow rules
that govern it, weighted by the sensitivity labels of their destinations (docs/blast-radius.md).
"unbounded" means nothing is blocked (observe mode, an unselected default of observe or allow, or an
allow rule without a destination). With files, computed from them (workloads: each --workload); without,
the applied revision from the control API (workloads: the inventory, or each --workload).
--json prints {"groups":[{"group","score","unbounded","mode","reach",…}],"workloads":[…]}.
Exit 0 when scored, 1 when the policy does not check or the API fails, 2 on usage errors.`;

/** `2060`, or `unbounded` for a score that is the ceiling because nothing is blocked. */
export function formatScore(radius: { score: number; unbounded: boolean }): string {
  return radius.unbounded ? 'unbounded' : String(radius.score);
}

function formatAddresses(count: number): string {
  return count >= 1e9 ? `2^${Math.round(Math.log2(count))}` : String(count);
}

const REACH_HEADER = ['HOSTS', 'WILDCARDS', 'ADDRESSES', 'PORTS', 'CLOUD', 'SOCKETS', 'SENSITIVE'];

function reachCells(reach: Reach): string[] {
  return [
    String(reach.hosts),
    String(reach.wildcardDomains),
    formatAddresses(reach.addresses),
    String(reach.ports),
    String(reach.cloudResources),
    String(reach.unixSockets),
    String(reach.sensitive),
  ];
}

export function formatBlastRadius(report: BlastRadiusReport): string {
  const blocks: string[] = [];
  const why = (r: GroupRadius | BlastRadiusReport['workloads'][number]) => r.reason ?? '';
  if (report.groups.length > 0)
    blocks.push(
      table([
        ['SMARTGROUP', 'MODE', 'SCORE', ...REACH_HEADER, 'UNBOUNDED BECAUSE'],
        ...report.groups.map((g) => [g.group, g.mode, formatScore(g), ...reachCells(g.reach), why(g)]),
      ]),
    );
  else blocks.push('no SmartGroup');
  if (report.workloads.length > 0)
    blocks.push(
      table([
        ['WORKLOAD', 'GROUPS', 'MODE', 'SCORE', ...REACH_HEADER, 'UNBOUNDED BECAUSE'],
        ...report.workloads.map((w) => [
          w.workload,
          w.groups.join(',') || '-',
          w.mode,
          formatScore(w),
          ...reachCells(w.reach),
          why(w),
        ]),
      ]),
    );
  // Rows whose last cell is empty would end in padding.
  return blocks.join('\n\n').replace(/ +$/gm, '');
}

function workloadOptions(args: ParsedArgs): WorkloadIdentity[] {
  const texts = Array.isArray(args.values.workload) ? args.values.workload : [];
  return texts.map((text) => {
    try {
      return parseIdentity(String(text));
    } catch (error) {
      throw new UsageError(`--workload: ${(error as Error).message}`);
    }
  });
}

async function fromControl(
  args: ParsedArgs,
  workloads: string[],
  io: CliIO,
): Promise<BlastRadiusReport | undefined> {
  const client = controlClient(args);
  const query = workloads.map((w) => `workload=${encodeURIComponent(w)}`).join('&');
  const response = await client.request('GET', `/v1/blast-radius${query ? `?${query}` : ''}`);
  if (!response.ok) {
    io.err(`bulkhead blast-radius: ${await describeFailure(response)}`);
    return undefined;
  }
  return (await response.json()) as BlastRadiusReport;
}

export const blastRadiusCommand: Command = {
  path: ['blast-radius'],
  summary: 'Score what each SmartGroup and workload could reach (files or the applied revision)',
  usage,
  positionals: true,
  options: { ...clientOptions, workload: { type: 'string', multiple: true }, json: { type: 'boolean' } },
  async run(args, io) {
    const json = args.values.json === true;
    const workloads = workloadOptions(args);
    let report: BlastRadiusReport | undefined;
    if (args.positionals.length > 0) {
      const set = loadPolicySet(args.positionals, io, { json });
      if (!set) return EXIT_FAILURE;
      report = blastRadius(set, { workloads });
    } else {
      const texts = (Array.isArray(args.values.workload) ? args.values.workload : []).map(String);
      report = await fromControl(args, texts, io);
      if (!report) return EXIT_FAILURE;
    }
    io.out(json ? JSON.stringify(report) : formatBlastRadius(report));
    return EXIT_OK;
  },
};
