// bulkhead denies: query the forensic deny log; --follow keeps printing new records.
import { setTimeout as sleep } from 'node:timers/promises';
import { clientOptions, controlClient, describeFailure, table } from '../client.js';
import { type Command, EXIT_FAILURE, EXIT_OK, stringOption, UsageError } from '../command.js';

const usage = `Usage: bulkhead denies --control URL --token T [filters] [--limit N] [--json] [--follow]

Filters: --workload k=v,…  --group NAME  --destination HOST|IP|*.domain  --rule ID  --decision allow|deny
         --since TIME  --until TIME   (TIME: ISO-8601, or a duration ago such as 15m, 2h, 7d)
--json prints one record per line (NDJSON, every match); --follow waits for new records (Ctrl-C stops).
Token also from BULKHEAD_TOKEN.`;

const FILTERS = ['workload', 'group', 'destination', 'rule', 'decision'] as const;
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

/**
 * One table row; exported for tests. A repeated deny reads `host:443 (×3)`; an aggregate record reads
 * as its summary (`aggregateSummary`).
 */
export function denyRow(record: DenyView): string[] {
  const target = record.aggregate
    ? aggregateSummary(record)
    : `${describeTarget(record.destination)}${record.count > 1 ? ` (×${record.count.toLocaleString('en-US')})` : ''}`;
  const who =
    record.workload.name ??
    Object.entries(record.workload)
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
  const origin = record.origin?.package ?? record.origin?.file ?? '';
  return [
    record.time,
    who,
    target,
    `${record.decision}/${record.mode}`,
    record.rule,
    `r${record.revision}`,
    origin,
  ];
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
    limit: { type: 'string' },
    json: { type: 'boolean' },
    follow: { type: 'boolean' },
  },
  async run(args, io) {
    const client = controlClient(args);
    const params = new URLSearchParams();
    for (const name of FILTERS) {
      const value = stringOption(args, name);
      if (value !== undefined) params.set(name, value);
    }
    for (const name of ['since', 'until'] as const) {
      const value = stringOption(args, name);
      if (value !== undefined) params.set(name, timeArgument(value, name));
    }
    const limitText = stringOption(args, 'limit');
    if (limitText !== undefined) {
      if (!/^\d+$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > 1000) {
        throw new UsageError('--limit: 1-1000');
      }
      params.set('limit', limitText);
    }
    const json = args.values.json === true;
    const follow = args.values.follow === true;

    if (json && !follow) {
      params.set('format', 'ndjson');
      const response = await client.request('GET', `/v1/denies?${params}`);
      if (!response.ok) {
        io.err(`bulkhead denies: ${await describeFailure(response)}`);
        return EXIT_FAILURE;
      }
      const text = await response.text();
      if (text.length > 0) io.out(text.endsWith('\n') ? text.slice(0, -1) : text);
      return EXIT_OK;
    }

    // Newest page first (printed oldest first), then, with --follow, everything after it.
    const first = await client.request('GET', `/v1/denies?${params}`);
    if (!first.ok) {
      io.err(`bulkhead denies: ${await describeFailure(first)}`);
      return EXIT_FAILURE;
    }
    const page = (await first.json()) as { records: DenyView[]; followCursor: string };
    const records = [...page.records].reverse();
    const print = (batch: DenyView[], header: boolean) => {
      if (json) for (const record of batch) io.out(JSON.stringify(record));
      else if (batch.length > 0) {
        const rows = batch.map(denyRow);
        io.out(
          header
            ? table([['TIME', 'WORKLOAD', 'DESTINATION', 'DECISION', 'RULE', 'REV', 'ORIGIN'], ...rows])
            : table(rows),
        );
      }
    };
    print(records, true);
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
        print(next.records, false);
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
