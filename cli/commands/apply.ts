// bulkhead apply FILES…: send the policy set to a control API (CI gate on the exit code).
import type { PolicyDiff, WouldBreak } from '../../policy/index.js';
import { clientOptions, controlClient, describeFailure } from '../client.js';
import {
  type CliIO,
  type Command,
  EXIT_FAILURE,
  EXIT_OK,
  integerOption,
  stringOption,
  UsageError,
} from '../command.js';
import { formatDiff, readPolicySources } from './policy.js';

const usage = `Usage: bulkhead apply FILES… --control URL --token T [--dry-run [--days N]] [--json]

Sends every policy file (directories: their .yaml/.yml/.json files) as one policy set. The control API
validates it (parser and guardrails), stores it as the next revision and answers with the diff per
SmartGroup and the workloads affected; a SmartGroup the set removes is warned about on stderr.
--dry-run validates and diffs without storing, and lists what would break: the traffic recorded in
observe mode over the last N days (--days, default 7) that the new set would block, per SmartGroup.
--json prints the API's answer as it is.
Exit 0 applied (or unchanged), 1 invalid policy or refused, 2 usage. Token also from BULKHEAD_TOKEN.`;

interface BlastRadiusGroup {
  group: string;
  score: number;
  unbounded: boolean;
}

/** The answer of PUT /v1/policy and POST /v1/revisions/{n}/restore. */
export interface ApplyAnswer {
  revision: number;
  previousRevision: number;
  dryRun: boolean;
  unchanged: boolean;
  restoredFrom?: number;
  diff: Omit<PolicyDiff, 'workloads'>;
  affectedWorkloads: { count: number; workloads: { key: string }[] };
  /** Not every API version answers with it. */
  blastRadius?: { before?: { groups?: BlastRadiusGroup[] }; after?: { groups?: BlastRadiusGroup[] } };
  /** Dry runs (not every API version answers with it). */
  wouldBreak?: WouldBreak & { days: number; truncated: boolean };
}

const BREAKING_LISTED = 10;

/** What a dry run would block of the traffic that went through when it was recorded (observe mode). */
function wouldBreakLines(breaking: ApplyAnswer['wouldBreak']): string[] {
  if (!breaking) return [];
  const n = (value: number) => value.toLocaleString('en-US');
  const window = `the last ${breaking.days} day${breaking.days === 1 ? '' : 's'}`;
  if (breaking.breaking === 0)
    return [
      `would break: nothing — none of the ${n(breaking.records)} observe-mode record(s) of ${window} would be blocked`,
    ];
  const lines = [
    `would break: ${n(breaking.breaking)} of the ${n(breaking.records)} observe-mode record(s) of ${window} would now be blocked${breaking.truncated ? ' (the newest records only)' : ''}`,
  ];
  for (const group of breaking.groups) {
    lines.push(`  ${group.group}: ${n(group.requests)} request(s)`);
    for (const d of group.destinations.slice(0, BREAKING_LISTED))
      lines.push(`    ${d.destination}  ${n(d.requests)}× from ${d.workloads} workload(s)  (${d.rule})`);
    if (group.destinations.length > BREAKING_LISTED)
      lines.push(
        `    … ${group.destinations.length - BREAKING_LISTED} more destinations (--json lists them)`,
      );
  }
  return lines;
}

const AFFECTED_LISTED = 20;

/** `blast radius payments-prod: 12 → unbounded`, one line per group on either side. */
function blastRadiusLines(blast: ApplyAnswer['blastRadius']): string[] {
  if (!blast) return [];
  const describe = (g: BlastRadiusGroup | undefined) =>
    g === undefined ? '-' : g.unbounded ? 'unbounded' : String(g.score);
  const before = new Map((blast.before?.groups ?? []).map((g) => [g.group, g]));
  const after = new Map((blast.after?.groups ?? []).map((g) => [g.group, g]));
  const names = [...new Set([...before.keys(), ...after.keys()])].sort();
  return names.map(
    (name) => `blast radius ${name}: ${describe(before.get(name))} → ${describe(after.get(name))}`,
  );
}

/** What an apply (or a restore) did, for a person: headline, warnings, diff, workloads affected. */
export function printApplyAnswer(answer: ApplyAnswer, io: CliIO): void {
  const headline = answer.dryRun
    ? `dry run: valid; would become revision ${answer.previousRevision + 1}`
    : answer.unchanged
      ? `unchanged: revision ${answer.revision} already holds this policy`
      : answer.restoredFrom !== undefined
        ? `restored revision ${answer.restoredFrom} as revision ${answer.revision} (was ${answer.previousRevision})`
        : `applied revision ${answer.revision} (was ${answer.previousRevision})`;
  io.out(headline);
  // A removed SmartGroup takes every policy that applied to it off its workloads in one step.
  for (const group of answer.diff.groups)
    if (group.status === 'removed')
      io.err(
        `warning: SmartGroup ${group.group} ${answer.dryRun ? 'would be' : 'is'} removed: the policies that applied to its workloads no longer do`,
      );
  for (const line of blastRadiusLines(answer.blastRadius)) io.out(line);
  for (const line of wouldBreakLines(answer.wouldBreak)) io.out(line);
  io.out(formatDiff(answer.diff));
  io.out(`workloads affected: ${answer.affectedWorkloads.count}`);
  for (const w of answer.affectedWorkloads.workloads.slice(0, AFFECTED_LISTED)) io.out(`  ${w.key}`);
  if (answer.affectedWorkloads.count > AFFECTED_LISTED)
    io.out(`  … and ${answer.affectedWorkloads.count - AFFECTED_LISTED} more (--json lists up to 1000)`);
}

export const applyCommand: Command = {
  path: ['apply'],
  summary: 'Apply policy files to a control API',
  usage,
  positionals: true,
  options: {
    ...clientOptions,
    'dry-run': { type: 'boolean' },
    days: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    if (args.positionals.length === 0) throw new UsageError('name at least one policy file or directory');
    const sources = readPolicySources(args.positionals);
    if (sources.length === 0) throw new UsageError('no .yaml/.yml/.json files found');
    const client = controlClient(args);
    const dryRun = args.values['dry-run'] === true;
    const days = integerOption(stringOption(args, 'days'), 'days', { min: 1, max: 90 });
    if (days !== undefined && !dryRun) throw new UsageError('--days goes with --dry-run');
    const query = dryRun ? `?dryRun=true${days !== undefined ? `&breakDays=${days}` : ''}` : '';
    const response = await client.request('PUT', `/v1/policy${query}`, {
      body: JSON.stringify({ sources }),
      contentType: 'application/json',
    });
    if (response.status === 400) {
      const body = (await response.json()) as { message?: string; errors?: unknown[] };
      if (args.values.json) io.out(JSON.stringify(body));
      else io.err(body.message ?? 'invalid policy');
      return EXIT_FAILURE;
    }
    if (!response.ok) {
      io.err(`bulkhead apply: ${await describeFailure(response)}`);
      return EXIT_FAILURE;
    }
    const answer = (await response.json()) as ApplyAnswer;
    if (args.values.json) io.out(JSON.stringify(answer));
    else printApplyAnswer(answer, io);
    return EXIT_OK;
  },
};
