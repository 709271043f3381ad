// bulkhead policy suggest: allow rules from what a SmartGroup was recorded attempting, as policy YAML.
// From a control API (GET /v1/suggestions), or offline from policy files and an NDJSON export of records
// (`bulkhead denies --json`), with the same kernel (policy/suggest.ts).
import { readFileSync, writeFileSync } from 'node:fs';
import {
  type DenyRecord,
  groupsSelecting,
  type MergedSet,
  type Mode,
  mergeSuggestion,
  type PolicySet,
  renderSuggestion,
  type Suggestion,
  suggestPolicy,
} from '../../policy/index.js';
import { clientOptions, controlClient, describeFailure } from '../client.js';
import {
  type CliIO,
  type Command,
  EXIT_FAILURE,
  EXIT_OK,
  requireOption,
  stringOption,
  UsageError,
} from '../command.js';
import { timeArgument } from './denies.js';
import { loadPolicySet, readPolicySources } from './policy.js';

const usage = `Usage: bulkhead policy suggest --group G [--since 7d] [--until TIME] [--mode enforce|observe [--merge]]
                             [--owner TEAM] [--out FILE] [--json] (--control URL --token T | --records FILE POLICY_FILES...)

Writes the allow rules that let through exactly what SmartGroup G was recorded attempting (its deny and
would-deny records, default the last 7 days): one rule per destination with its methods and path globs
(ids in paths as *), S3 buckets and Lambda functions as aws rules, exec and addon paths; each rule
commented with the packages that used it and how often. What the guardrails forbid is listed as a
warning, never suggested.
Without --mode: the SmartGroup and a suggested EgressPolicy (mode observe), for review.
With --mode: the whole applied set, the group's own policy taking the suggestion in that mode (its
allow rules replaced, or kept and added to with --merge), ready for policy check and apply.
Offline: --records FILE (NDJSON, as bulkhead denies --json writes it) and the applied policy files.
TIME: ISO-8601 or a duration ago (15m, 2h, 7d). Token also from BULKHEAD_TOKEN.`;

interface SuggestionAnswer extends Suggestion {
  truncated?: boolean;
  window?: string;
  policy: string;
  set?: MergedSet;
}

function modeOption(text: string | undefined): Mode | undefined {
  if (text === undefined) return undefined;
  if (text !== 'enforce' && text !== 'observe') throw new UsageError('--mode: enforce or observe');
  return text;
}

/** The export's records of the window whose workload the group selects (an export may hold every group's). */
function readRecords(
  file: string,
  set: PolicySet,
  group: string,
  sinceMs: number,
  untilMs: number | undefined,
): DenyRecord[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new UsageError(`--records: cannot read ${file}`);
  }
  const records: DenyRecord[] = [];
  for (const [index, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    let record: DenyRecord;
    try {
      record = JSON.parse(line) as DenyRecord;
    } catch {
      throw new UsageError(`--records: ${file}:${index + 1}: not a JSON record`);
    }
    const time = Date.parse(record.lastTime ?? record.time);
    if (time < sinceMs || (untilMs !== undefined && time >= untilMs)) continue;
    if (!groupsSelecting(set, record.workload ?? {}).some((g) => g.metadata.name === group)) continue;
    records.push(record);
  }
  return records;
}

async function fromControl(args: Parameters<Command['run']>[0], io: CliIO, params: URLSearchParams) {
  const client = controlClient(args);
  const response = await client.request('GET', `/v1/suggestions?${params}`);
  if (!response.ok) {
    io.err(`bulkhead policy suggest: ${await describeFailure(response)}`);
    return undefined;
  }
  return (await response.json()) as SuggestionAnswer;
}

function offline(
  args: Parameters<Command['run']>[0],
  io: CliIO,
  options: { group: string; sinceMs: number; untilMs?: number; mode?: Mode; merge: boolean; owner?: string },
): SuggestionAnswer | undefined {
  const set = loadPolicySet(args.positionals, io);
  if (!set) return undefined;
  if (!set.groups.some((g) => g.metadata.name === options.group))
    throw new UsageError(`--group: the policy files have no SmartGroup ${options.group}`);
  const records = readRecords(
    requireOption(args, 'records'),
    set,
    options.group,
    options.sinceMs,
    options.untilMs,
  );
  const suggestion = suggestPolicy(records, set, options.group);
  const render = { mode: options.mode, owner: options.owner };
  return {
    ...suggestion,
    policy: renderSuggestion(suggestion, set, render),
    ...(options.mode
      ? {
          set: mergeSuggestion(readPolicySources(args.positionals), set, suggestion, {
            ...render,
            mode: options.mode,
            merge: options.merge,
          }),
        }
      : {}),
  };
}

export const policySuggestCommand: Command = {
  path: ['policy', 'suggest'],
  summary: "Suggest allow rules from a SmartGroup's recorded traffic",
  usage,
  positionals: true,
  options: {
    ...clientOptions,
    group: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    mode: { type: 'string' },
    merge: { type: 'boolean' },
    owner: { type: 'string' },
    out: { type: 'string' },
    records: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(args, io) {
    const group = requireOption(args, 'group');
    const since = timeArgument(stringOption(args, 'since') ?? '7d', 'since');
    const untilText = stringOption(args, 'until');
    const until = untilText === undefined ? undefined : timeArgument(untilText, 'until');
    const mode = modeOption(stringOption(args, 'mode'));
    const merge = args.values.merge === true;
    if (merge && !mode) throw new UsageError('--merge needs --mode (it edits the whole set)');
    const owner = stringOption(args, 'owner');
    const local = stringOption(args, 'records') !== undefined;
    if (local !== args.positionals.length > 0)
      throw new UsageError('--records FILE and the policy files go together (or neither, with --control)');

    let answer: SuggestionAnswer | undefined;
    if (local) {
      answer = offline(args, io, {
        group,
        sinceMs: Date.parse(since),
        ...(until ? { untilMs: Date.parse(until) } : {}),
        ...(mode ? { mode } : {}),
        merge,
        ...(owner ? { owner } : {}),
      });
    } else {
      const params = new URLSearchParams({ group, since });
      if (until) params.set('until', until);
      if (mode) params.set('mode', mode);
      if (merge) params.set('merge', 'true');
      if (owner) params.set('owner', owner);
      answer = await fromControl(args, io, params);
    }
    if (!answer) return EXIT_FAILURE;

    if (args.values.json === true) {
      io.out(JSON.stringify(answer));
      return EXIT_OK;
    }
    const text = answer.set?.text ?? answer.policy;
    const out = stringOption(args, 'out');
    if (out) writeFileSync(out, text);
    else io.out(text.trimEnd());
    const n = (value: number) => value.toLocaleString('en-US');
    const report = out ? io.out : io.err;
    report(
      `${out ? `wrote ${out}: ` : ''}${n(answer.rules.length)} rule(s), ${n(answer.exec.length)} exec and ${n(answer.addons.length)} addon path(s) for ${group} from ${n(answer.records)} record(s) (${n(answer.requests)} requests)${answer.truncated ? ', the newest records left out (too many: narrow --since)' : ''}`,
    );
    for (const note of answer.set?.notes ?? []) report(`  ${note}`);
    for (const warning of answer.warnings)
      io.err(`warning: not suggested: ${warning.destination} (${n(warning.requests)}×): ${warning.reason}`);
    return EXIT_OK;
  },
};
