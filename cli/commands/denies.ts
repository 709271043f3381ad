// bulkhead denies: query the forensic deny log; --follow keeps printing new records.
import { setTimeout as sleep } from 'node:timers/promises';
import { formatIdentity, parseIdentity } from '../../policy/index.js';
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

const usage = `Usage: bulkhead denies --control URL --token T [filters] [--limit N] [--json] [--follow]

Filters (combined with AND):
  --workload NAME|GLOB|k=v,…   the workload's name (charge-card), a glob of it (charge-*), or its identity
  --invocation ID              one invocation (Lambda requestId, …)
  --package NAME[@VERSION]     origin package; without @VERSION any version; globs allowed (@aws-sdk/*)
  --kind KIND                  connect|http|dns|udp|exec|addon|worker|tamper|unix
  --severity normal|high       --group NAME   --destination HOST|IP|*.domain   --rule ID
  --decision allow|deny        --since TIME   --until TIME   (TIME: ISO-8601, or ago: 15m, 2h, 7d)
Newest first, in the table and with --json (one record per line, NDJSON, every match). --follow then
prints each new record as it arrives (Ctrl-C stops). A filter that matches nothing says so on stderr
(exit 0). Token also from BULKHEAD_TOKEN.`;

const FILTERS = [
  'workload',
  'invocation',
  'package',
  'kind',
  'severity',
  'group',
  'destination',
  'rule',
  'decision',
] as const;
const FOLLOW_INTERVAL_MS = 2000;

export function timeArgument(text: string, name: string, nowMs = Date.now()): string {
  const ago = /^(\d+)(s|m|h|d)$/.exec(text);
  if (ago?.[1] && ago[2]) {
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[ago[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(nowMs - Number(ago[1]) * unit).toISOString();
  }
  if (Number.isNaN(Date.parse(text)))
    throw new UsageError(`--${name}: expected ISO-8601 or a duration like 15m`);
  return text;
}

interface DenyView {
  time: string;
  workload: Record<string, string>;
  invocationId?: string;
  severity?: string;
  destination: {
    host?: string;
    ip?: string;
    port?: number;
    path?: string;
    command?: string;
    socket?: string;
  };
  decision: string;
  mode: string;
  rule: string;
  revision: number;
  count: number;
  kind?: string;
  origin?: { package?: string; file?: string; line?: number };
  aggregate?: { pattern: string; distinct: number; distinctCapped?: boolean; sample: string[] };
}

const AGGREGATE_WORDING: Record<string, string> = {
  dns: 'names under',
  connect: 'connects to',
  udp: 'datagrams to',
  http: 'requests to',
  unix: 'socket connects to',
  exec: 'execs of',
  addon: 'addon loads of',
};

/**
 * An aggregate record (a flood counted per pattern, contract §3) in one line:
 * `99,000 more names under *.attacker.test (99,000 distinct, e.g. a.attacker.test, b.attacker.test)`.
 */
export function aggregateSummary(record: Pick<DenyView, 'count' | 'kind' | 'aggregate'>): string {
  const a = record.aggregate;
  if (!a) return '';
  const n = (value: number) => value.toLocaleString('en-US');
  const wording = AGGREGATE_WORDING[record.kind ?? ''] ?? 'denies of';
  const examples = a.sample.slice(0, 2).join(', ');
  const more = a.sample.length > 2 ? ', …' : '';
  const distinct = `${n(a.distinct)}${a.distinctCapped ? '+' : ''} distinct`;
  return `${n(record.count)} more ${wording} ${a.pattern} (${distinct}${examples ? `, e.g. ${examples}${more}` : ''})`;
}

/** Where a record went: `host:port/path`, the command, or `unix:/var/run/docker.sock` (or `unix:@name`). */
function describeTarget(d: DenyView['destination']): string {
  if (d.command !== undefined) return d.command;
  if (d.socket !== undefined) return `unix:${d.socket}${d.path !== undefined ? ` ${d.path}` : ''}`;
  return `${d.host ?? d.ip ?? '?'}${d.port !== undefined ? `:${d.port}` : ''}${d.path ?? ''}`;
}

export const TABLE_HEADER = [
  'TIME',
  'WORKLOAD',
  'ACCOUNT/REGION',
  'DESTINATION',
  'KIND',
  'RULE',
  'MODE',
  'INVOCATION',
  'ORIGIN',
];

/** `evil-dep@1.0.0 /var/task/node_modules/evil-dep/index.js:7`: what started the request. */
function describeOrigin(origin: DenyView['origin']): string {
  if (!origin) return '';
  const where =
    origin.file !== undefined ? `${origin.file}${origin.line !== undefined ? `:${origin.line}` : ''}` : '';
  return [origin.package, where].filter((part) => part).join(' ');
}

/**
 * One table row (TABLE_HEADER's columns); exported for tests. A repeated deny reads `host:443 (×3)`;
 * an aggregate record reads as its summary (`aggregateSummary`). MODE names the decision only when
 * it is not a deny (an allow recorded in observe mode).
 */
export function denyRow(record: DenyView): string[] {
  const target = record.aggregate
    ? aggregateSummary(record)
    : `${describeTarget(record.destination)}${record.count > 1 ? ` (×${record.count.toLocaleString('en-US')})` : ''}`;
  const { name, account, region } = record.workload;
  return [
    record.time,
    name ?? formatIdentity(record.workload),
    account === undefined && region === undefined ? '-' : `${account ?? '-'}/${region ?? '-'}`,
    target,
    `${record.kind ?? '?'}${record.severity === 'high' ? ' (high)' : ''}`,
    record.rule,
    record.decision === 'deny' ? record.mode : `${record.decision} (${record.mode})`,
    record.invocationId ?? '-',
    describeOrigin(record.origin),
  ];
}

/** The filters as given on the command line, for the message that says nothing matched them. */
function describeFilters(given: [string, string][]): string {
  return given.length === 0
    ? 'no deny record is stored yet'
    : `no deny record matched the filters ${given.map(([name, value]) => `--${name} ${value}`).join(' ')}`;
}

/** One page of the inventory (GET /v1/workloads), or undefined when it cannot be read. */
async function inventoryPage(
  client: ControlClient,
  query: URLSearchParams,
): Promise<{ key: string; identity: Record<string, string> }[] | undefined> {
  const response = await client.request('GET', `/v1/workloads?${query}`);
  if (!response.ok) return undefined;
  return ((await response.json()) as { workloads: { key: string; identity: Record<string, string> }[] })
    .workloads;
}

/**
 * A `--workload` value that matches no workload the control API has seen (GET /v1/workloads, asked
 * with its name filter) is most likely a typo: say so, with a few names it knows. Nothing when the
 * inventory cannot be read.
 */
async function checkWorkloadKnown(client: ControlClient, value: string, io: CliIO): Promise<void> {
  const key = value.includes('=') ? formatIdentity(parseIdentity(value)) : undefined;
  const name = key === undefined ? value : parseIdentity(value).name;
  const byName = new URLSearchParams({ limit: '1000' });
  if (name !== undefined) byName.set('name', name);
  const matching = await inventoryPage(client, byName);
  if (matching === undefined) return;
  const known = key !== undefined ? matching.some((w) => w.key === key) : matching.length > 0;
  if (known) return;
  const sample = (await inventoryPage(client, new URLSearchParams({ limit: '100' }))) ?? [];
  const names = [...new Set(sample.map((w) => w.identity.name ?? w.key))].sort();
  const listed = names.slice(0, 10).join(', ') + (names.length > 10 ? ', …' : '');
  io.err(
    `--workload ${value}: no workload in the inventory matches it${names.length > 0 ? ` (known: ${listed})` : ' (the inventory is empty)'}`,
  );
}

export const deniesCommand: Command = {
  path: ['denies'],
  summary: 'Query deny records (filters, NDJSON, follow)',
  usage,
  options: {
    ...clientOptions,
    workload: { type: 'string' },
    group: { type: 'string' },
    destination: { type: 'string' },
    rule: { type: 'string' },
    decision: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    invocation: { type: 'string' },
    package: { type: 'string' },
    kind: { type: 'string' },
    severity: { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
    follow: { type: 'boolean' },
  },
  async run(args, io) {
    const client = controlClient(args);
    const params = new URLSearchParams();
    const given: [string, string][] = [];
    for (const name of FILTERS) {
      const value = stringOption(args, name);
      if (value === undefined) continue;
      params.set(name, value);
      given.push([name, value]);
    }
    for (const name of ['since', 'until'] as const) {
      const value = stringOption(args, name);
      if (value === undefined) continue;
      params.set(name, timeArgument(value, name));
      given.push([name, value]);
    }
    const limit = integerOption(stringOption(args, 'limit'), 'limit', { min: 1, max: 1000 });
    if (limit !== undefined) params.set('limit', String(limit));
    const json = args.values.json === true;
    const follow = args.values.follow === true;
    const workload = stringOption(args, 'workload');
    const nothingMatched = async () => {
      io.err(`${describeFilters(given)}${follow ? '; waiting for new records' : ''}`);
      if (workload !== undefined) await checkWorkloadKnown(client, workload, io);
    };

    if (json && !follow) {
      params.set('format', 'ndjson');
      const response = await client.request('GET', `/v1/denies?${params}`);
      if (!response.ok) {
        io.err(`bulkhead denies: ${await describeFailure(response)}`);
        return EXIT_FAILURE;
      }
      const text = await response.text();
      if (text.length > 0) io.out(text.endsWith('\n') ? text.slice(0, -1) : text);
      else await nothingMatched();
      return EXIT_OK;
    }

    // The newest page, newest first (as the NDJSON export); with --follow, then everything after it.
    const first = await client.request('GET', `/v1/denies?${params}`);
    if (!first.ok) {
      io.err(`bulkhead denies: ${await describeFailure(first)}`);
      return EXIT_FAILURE;
    }
    const page = (await first.json()) as { records: DenyView[]; followCursor: string };
    // The header goes above the first rows printed, which with --follow may come after an empty page.
    let headerPrinted = false;
    const print = (batch: DenyView[]) => {
      if (json) for (const record of batch) io.out(JSON.stringify(record));
      else if (batch.length > 0) {
        const rows = batch.map(denyRow);
        io.out(headerPrinted ? table(rows) : table([TABLE_HEADER, ...rows]));
        headerPrinted = true;
      }
    };
    print(page.records);
    if (page.records.length === 0) await nothingMatched();
    if (!follow) return EXIT_OK;

    let cursor = page.followCursor;
    let stopped = false;
    const stop = () => {
      stopped = true;
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      while (!stopped) {
        const query = new URLSearchParams(params);
        query.set('order', 'asc');
        query.set('limit', '1000');
        query.set('cursor', cursor);
        const response = await client.request('GET', `/v1/denies?${query}`);
        if (!response.ok) {
          io.err(`bulkhead denies: ${await describeFailure(response)}`);
          return EXIT_FAILURE;
        }
        const next = (await response.json()) as { records: DenyView[]; followCursor: string };
        print(next.records);
        cursor = next.followCursor;
        if (next.records.length < 1000) await sleep(FOLLOW_INTERVAL_MS);
      }
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    return EXIT_OK;
  },
};
