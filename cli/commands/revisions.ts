// bulkhead revisions / revisions diff A B / revisions restore N: the applied history of a control API.
import {
  diffPolicies,
  formatPolicyError,
  type GroupDiff,
  type PolicySet,
  type PolicySource,
  parseIdentity,
  parsePolicy,
} from '../../policy/index.js';
import { type ControlClient, clientOptions, controlClient, describeFailure, table } from '../client.js';
import {
  type CliIO,
  type Command,
  EXIT_FAILURE,
  EXIT_OK,
  integerOption,
  stringOption,
  UsageError,
} from '../command.js';
import { type ApplyAnswer, printApplyAnswer } from './apply.js';
import { formatDiff } from './policy.js';

const listUsage = `Usage: bulkhead revisions --control URL --token T [--limit N] [--json]

The applied revisions, newest first: when, who applied it (the name its token was created with, else the
token id) and what changed (SmartGroups, or the revision a restore brought back). --limit 1-1000 (100).
Token also from BULKHEAD_TOKEN.`;

interface RevisionSummary {
  diff?: { changed?: boolean; groups?: Pick<GroupDiff, 'group' | 'status'>[] };
  files?: string[];
  appliedBy?: string | null;
  appliedByName?: string | null;
}

interface RevisionsAnswer {
  current: number;
  revisions: { revision: number; createdAt: string; restoredFrom: number | null; summary: unknown }[];
}

function summaryOf(value: unknown): RevisionSummary {
  return typeof value === 'object' && value !== null ? (value as RevisionSummary) : {};
}

/** `ci-deploy (token 0123456789abcdef)`, the token id alone, or `-` for a revision stored without one. */
function author(summary: RevisionSummary): string {
  if (summary.appliedByName) return `${summary.appliedByName} (token ${summary.appliedBy ?? '?'})`;
  return summary.appliedBy ? `token ${summary.appliedBy}` : '-';
}

const CHANGE_WIDTH = 80;

function change(restoredFrom: number | null, summary: RevisionSummary): string {
  const parts: string[] = [];
  if (restoredFrom !== null) parts.push(`restore of ${restoredFrom}`);
  const diff = summary.diff;
  if (diff?.groups && diff.groups.length > 0)
    parts.push(
      diff.groups.map((g) => (g.status === 'changed' ? g.group : `${g.group} ${g.status}`)).join(', '),
    );
  else if (diff) parts.push('no change in reach');
  const text = parts.join('; ') || '-';
  return text.length > CHANGE_WIDTH ? `${text.slice(0, CHANGE_WIDTH - 1)}…` : text;
}

export const revisionsCommand: Command = {
  path: ['revisions'],
  summary: 'List applied policy revisions (when, who, what changed)',
  usage: listUsage,
  options: { ...clientOptions, limit: { type: 'string' }, json: { type: 'boolean' } },
  async run(args, io) {
    const client = controlClient(args);
    const limit = integerOption(stringOption(args, 'limit'), 'limit', { min: 1, max: 1000 });
    const response = await client.request(
      'GET',
      `/v1/revisions${limit !== undefined ? `?limit=${limit}` : ''}`,
    );
    if (!response.ok) {
      io.err(`bulkhead revisions: ${await describeFailure(response)}`);
      return EXIT_FAILURE;
    }
    const answer = (await response.json()) as RevisionsAnswer;
    if (args.values.json) {
      io.out(JSON.stringify(answer));
      return EXIT_OK;
    }
    if (answer.revisions.length === 0) {
      io.err('no policy applied yet');
      return EXIT_OK;
    }
    const rows = answer.revisions.map((r) => {
      const summary = summaryOf(r.summary);
      return [
        `${r.revision}${r.revision === answer.current ? ' (current)' : ''}`,
        r.createdAt,
        author(summary),
        change(r.restoredFrom, summary),
      ];
    });
    io.out(table([['REVISION', 'APPLIED AT', 'BY', 'CHANGE'], ...rows]));
    return EXIT_OK;
  },
};

function revisionArgument(text: string | undefined, what: string): number {
  if (text === undefined) throw new UsageError(`expected ${what}`);
  if (!/^[1-9]\d{0,14}$/.test(text))
    throw new UsageError(`expected a revision number, got ${JSON.stringify(text)}`);
  return Number(text);
}

/** The stored sources of one revision, parsed; undefined (the reason printed) when it cannot be had. */
async function loadRevision(
  client: ControlClient,
  revision: number,
  io: CliIO,
): Promise<PolicySet | undefined> {
  const response = await client.request('GET', `/v1/policy?revision=${revision}`);
  if (!response.ok) {
    io.err(
      response.status === 404
        ? `bulkhead revisions diff: no revision ${revision}`
        : `bulkhead revisions diff: ${await describeFailure(response)}`,
    );
    return undefined;
  }
  const { sources } = (await response.json()) as { sources: PolicySource[] };
  const parsed = parsePolicy(sources);
  if (parsed.ok) return parsed.set;
  // Stored revisions passed the parser of their day; a newer CLI may read them differently.
  io.err(`revision ${revision} does not parse here:\n${parsed.errors.map(formatPolicyError).join('\n')}`);
  return undefined;
}

const diffUsage = `Usage: bulkhead revisions diff A B --control URL --token T [--workload k=v,…]... [--json]

What revision B makes reachable or unreachable compared with revision A, per SmartGroup (and per
workload for each --workload), as \`bulkhead policy diff\` prints it. Token also from BULKHEAD_TOKEN.`;

export const revisionsDiffCommand: Command = {
  path: ['revisions', 'diff'],
  summary: 'Diff two stored revisions',
  usage: diffUsage,
  positionals: true,
  options: { ...clientOptions, workload: { type: 'string', multiple: true }, json: { type: 'boolean' } },
  async run(args, io) {
    if (args.positionals.length > 2) throw new UsageError('expected two revisions: A B');
    const from = revisionArgument(args.positionals[0], 'two revisions: A B');
    const to = revisionArgument(args.positionals[1], 'a second revision: A B');
    const workloads = (Array.isArray(args.values.workload) ? args.values.workload : []).map((text) => {
      try {
        return parseIdentity(String(text));
      } catch (error) {
        throw new UsageError(`--workload: ${(error as Error).message}`);
      }
    });
    const client = controlClient(args);
    const before = await loadRevision(client, from, io);
    if (!before) return EXIT_FAILURE;
    const after = await loadRevision(client, to, io);
    if (!after) return EXIT_FAILURE;
    const diff = diffPolicies(before, after, workloads);
    io.out(args.values.json === true ? JSON.stringify(diff) : formatDiff(diff));
    return EXIT_OK;
  },
};

const restoreUsage = `Usage: bulkhead revisions restore N --control URL --token T [--json]

Makes revision N current again, as a new, higher revision (revisions never go backwards): checked and
diffed like an apply, and printed like one. Token also from BULKHEAD_TOKEN.`;

export const revisionsRestoreCommand: Command = {
  path: ['revisions', 'restore'],
  summary: 'Make an older revision current again (as a new revision)',
  usage: restoreUsage,
  positionals: true,
  options: { ...clientOptions, json: { type: 'boolean' } },
  async run(args, io) {
    if (args.positionals.length !== 1) throw new UsageError('expected one revision number');
    const revision = revisionArgument(args.positionals[0], 'a revision number');
    const client = controlClient(args);
    const response = await client.request('POST', `/v1/revisions/${revision}/restore`);
    if (!response.ok) {
      io.err(
        response.status === 404
          ? `bulkhead revisions restore: no revision ${revision}`
          : `bulkhead revisions restore: ${await describeFailure(response)}`,
      );
      return EXIT_FAILURE;
    }
    const answer = (await response.json()) as ApplyAnswer;
    if (args.values.json) io.out(JSON.stringify(answer));
    else printApplyAnswer(answer, io);
    return EXIT_OK;
  },
};
