// "What would break": the traffic a policy set is about to block that went through when it was
// recorded. Records of observe mode (would-deny: not blocked then) are decided again under the new
// set, as the shim of that workload would decide them; those it blocks are counted per SmartGroup
// and destination. The answer to "if I enforce this now, what stops working?".
//
// Allowed traffic leaves no record: a narrowing of rules that were in use shows here only as far as
// records of observe mode cover it (the rule hit counts tell the rest).
import { compilePolicy, groupsSelecting, scopeOf } from './compile.js';
import { createDecider } from './decide.js';
import { formatIdentity } from './identity.js';
import type { PolicySet } from './parse.js';
import { destinationText, pathGlobOf } from './suggest.js';
import type { Decider, Decision, DecisionRequest, DenyRecord, Protocol } from './types.js';

export interface BreakingDestination {
  /** `api.fraud.test:443 POST /v1/score/*`, `api.fraud.test (lookup)`, `exec /usr/bin/git`. */
  destination: string;
  kind: DenyRecord['kind'];
  /** Σ record counts. */
  requests: number;
  /** Distinct workloads that made them. */
  workloads: number;
  /** The rule of the new set that blocks it (`default-deny`, `<policy>/deny[0]`). */
  rule: string;
}

export interface BreakingGroup {
  group: string;
  requests: number;
  destinations: BreakingDestination[];
}

export interface WouldBreak {
  /** Observe-mode records decided again. */
  records: number;
  /** Of them, those the new set blocks. */
  breaking: number;
  groups: BreakingGroup[];
}

/** Most destinations listed per group (the count of the rest is in `requests`). */
export const MAX_BREAKING_LISTED = 50;
const NO_GROUP = '(no SmartGroup)';

/** Decide a recorded attempt again, as the hook that made the record would; undefined: not decidable. */
export function decideRecord(decider: Decider, record: DenyRecord): Decision | undefined {
  const d = record.destination;
  switch (record.kind) {
    case 'exec':
      return d.command === undefined ? undefined : decider.decideExec(d.command);
    case 'addon':
      return d.command === undefined ? undefined : decider.decideAddon(d.command);
    case 'unix':
      return d.socket === undefined ? undefined : decider.decideUnix(d.socket);
    case 'dns':
      return d.host === undefined ? undefined : decider.decideName(d.host);
    case 'connect':
    case 'http':
    case 'udp': {
      if ((d.host === undefined && d.ip === undefined) || d.port === undefined) return undefined;
      const protocol: Protocol =
        record.kind === 'udp' ? 'udp' : (d.protocol ?? (record.kind === 'http' ? 'http' : 'tcp'));
      const request: DecisionRequest = {
        host: d.host,
        ip: d.ip,
        port: d.port,
        protocol,
        sni: d.sni,
        method: d.method,
        path: d.path,
      };
      return decider.decide(request);
    }
    default:
      return undefined;
  }
}

function destinationOf(record: DenyRecord): string {
  const d = record.destination;
  const target = destinationText(d);
  switch (record.kind) {
    case 'exec':
    case 'addon':
      return `${record.kind} ${d.command}`;
    case 'unix':
      return `unix:${d.socket}`;
    case 'dns':
      return `${d.host} (lookup)`;
    case 'http':
      return `${target} ${d.method ?? 'GET'} ${d.path === undefined ? '' : pathGlobOf(d.path)}`.trimEnd();
    case 'udp':
      return `${target}/udp`;
    default:
      return target;
  }
}

/**
 * The observe-mode records of `records` (others were blocked already, or allowed) that `set` would
 * block, per SmartGroup of the new set and destination, most requests first.
 */
export function wouldBreak(records: Iterable<DenyRecord>, set: PolicySet): WouldBreak {
  const deciders = new Map<string, { decider: Decider; groups: string[] }>();
  const byIdentity = new Map<string, { decider: Decider; groups: string[] }>();
  const groups = new Map<
    string,
    { requests: number; destinations: Map<string, BreakingDestination & { who: Set<string> }> }
  >();
  let considered = 0;
  let breaking = 0;
  for (const record of records) {
    if (record.mode !== 'observe' || record.decision !== 'deny' || record.kind === 'tamper') continue;
    considered++;
    const key = formatIdentity(record.workload ?? {});
    let entry = byIdentity.get(key);
    if (!entry) {
      const identity = record.workload ?? {};
      const scope = scopeOf(set, identity);
      entry = deciders.get(scope);
      if (!entry) {
        entry = {
          decider: createDecider(compilePolicy(set, identity)),
          groups: groupsSelecting(set, identity).map((g) => g.metadata.name),
        };
        deciders.set(scope, entry);
      }
      byIdentity.set(key, entry);
    }
    const decision = decideRecord(entry.decider, record);
    if (!decision?.blocked) continue;
    breaking++;
    const count = Number.isSafeInteger(record.count) && record.count > 0 ? record.count : 1;
    const destination = destinationOf(record);
    for (const name of entry.groups.length > 0 ? entry.groups : [NO_GROUP]) {
      let group = groups.get(name);
      if (!group) {
        group = { requests: 0, destinations: new Map() };
        groups.set(name, group);
      }
      group.requests += count;
      let row = group.destinations.get(destination);
      if (!row) {
        row = {
          destination,
          kind: record.kind,
          requests: 0,
          workloads: 0,
          rule: decision.rule,
          who: new Set(),
        };
        group.destinations.set(destination, row);
      }
      row.requests += count;
      row.who.add(key);
      row.workloads = row.who.size;
    }
  }
  return {
    records: considered,
    breaking,
    groups: [...groups]
      .map(([group, g]) => ({
        group,
        requests: g.requests,
        destinations: [...g.destinations.values()]
          .sort((a, b) => b.requests - a.requests || a.destination.localeCompare(b.destination))
          .slice(0, MAX_BREAKING_LISTED)
          .map(({ who: _who, ...row }) => row),
      }))
      .sort((a, b) => b.requests - a.requests || a.group.localeCompare(b.group)),
  };
}
