// What a policy change opens and closes, per SmartGroup (and per workload when identities are
// given): the answer to "what would this merge make reachable?".
import { canonicalJson } from './canonical.js';
import { compilePolicy } from './compile.js';
import type { Destination, EgressPolicyDoc } from './documents.js';
import { formatIdentity } from './identity.js';
import type { PolicySet } from './parse.js';
import { asList } from './schema-kit.js';
import type { Mode, WorkloadIdentity } from './types.js';

export interface DestinationChange {
  /** Rule id in the set where it exists (`payments-egress/allow[2]`). */
  rule: string;
  action: 'allow' | 'deny' | 'exec' | 'addon';
  /** `host=api.stripe.com port=443 methods=POST paths=/v1/charges/**`, `unix=/var/run/app.sock`. */
  destination: string;
}

export interface GroupDiff {
  group: string;
  status: 'added' | 'removed' | 'changed';
  /** Destinations that become reachable: allows added, denies removed. */
  reachable: DestinationChange[];
  /** Destinations that become unreachable: allows removed, denies added. */
  unreachable: DestinationChange[];
  /** Effective mode of the group (undefined: no policy governs it). */
  modeBefore?: Mode | undefined;
  modeAfter?: Mode | undefined;
}

export interface WorkloadDiff {
  workload: string;
  scopeBefore: string;
  scopeAfter: string;
  reachable: DestinationChange[];
  unreachable: DestinationChange[];
  modeBefore: Mode;
  modeAfter: Mode;
  fallbackBefore: 'deny' | 'allow';
  fallbackAfter: 'deny' | 'allow';
}

export interface PolicyDiff {
  changed: boolean;
  groups: GroupDiff[];
  workloads: WorkloadDiff[];
}

const DESTINATION_ORDER = [
  'unix',
  'group',
  'url',
  'host',
  'aws',
  'buckets',
  'functions',
  'regions',
  'cidr',
  'port',
  'protocol',
  'methods',
  'paths',
] as const;

/** A stable one-line description of a destination. */
export function describeDestination(to: Destination): string {
  const parts: string[] = [];
  for (const key of DESTINATION_ORDER) {
    const value = to[key];
    if (value === undefined) continue;
    const items = asList(value as unknown).map((item) => {
      if (typeof item !== 'object' || item === null) return String(item);
      const range = item as { from: number; to: number };
      return range.from === range.to ? String(range.from) : `${range.from}-${range.to}`;
    });
    parts.push(`${key}=${items.join(',')}`);
  }
  return parts.join(' ');
}

interface Entry {
  key: string;
  change: DestinationChange;
}

function entriesOf(policies: EgressPolicyDoc[]): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const add = (key: string, change: DestinationChange) => {
    if (!out.has(key)) out.set(key, { key, change });
  };
  for (const p of policies) {
    const name = p.metadata.name;
    (p.spec.allow ?? []).forEach((rule, i) => {
      add(`allow ${canonicalJson(rule.to)}`, {
        rule: `${name}/allow[${i}]`,
        action: 'allow',
        destination: describeDestination(rule.to),
      });
    });
    (p.spec.deny ?? []).forEach((rule, i) => {
      const mode = rule.mode ?? p.spec.mode;
      // An observe-mode deny blocks nothing: it does not make anything unreachable.
      if (mode !== 'enforce') return;
      add(`deny ${canonicalJson(rule.to)}`, {
        rule: `${name}/deny[${i}]`,
        action: 'deny',
        destination: describeDestination(rule.to),
      });
    });
    (p.spec.exec?.allow ?? []).forEach((glob, i) => {
      add(`exec ${glob}`, { rule: `${name}/exec[${i}]`, action: 'exec', destination: `exec=${glob}` });
    });
    (p.spec.addons?.allow ?? []).forEach((glob, i) => {
      add(`addon ${glob}`, { rule: `${name}/addons[${i}]`, action: 'addon', destination: `addon=${glob}` });
    });
  }
  return out;
}

function compare(before: Map<string, Entry>, after: Map<string, Entry>) {
  const reachable: DestinationChange[] = [];
  const unreachable: DestinationChange[] = [];
  for (const [key, entry] of after)
    if (!before.has(key)) (entry.change.action === 'deny' ? unreachable : reachable).push(entry.change);
  for (const [key, entry] of before)
    if (!after.has(key)) (entry.change.action === 'deny' ? reachable : unreachable).push(entry.change);
  return { reachable, unreachable };
}

function policiesFor(set: PolicySet, group: string): EgressPolicyDoc[] {
  return set.policies.filter((p) => p.spec.appliesTo.includes(group));
}

function modeOf(policies: EgressPolicyDoc[]): Mode | undefined {
  if (policies.length === 0) return undefined;
  return policies.some((p) => p.spec.mode === 'enforce') ? 'enforce' : 'observe';
}

function compiledEntries(set: PolicySet, identity: WorkloadIdentity) {
  const compiled = compilePolicy(set, identity);
  const entries = new Map<string, Entry>();
  for (const rule of compiled.rules) {
    if (rule.action === 'deny' && rule.mode !== 'enforce') continue;
    const { id, mode: _mode, ...shape } = rule;
    const key = canonicalJson(shape);
    if (entries.has(key)) continue;
    const parts = [
      rule.hosts ? `host=${rule.hosts.join(',')}` : '',
      rule.cidrs ? `cidr=${rule.cidrs.join(',')}` : '',
      rule.ports ? `port=${rule.ports.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',')}` : '',
      rule.protocols ? `protocol=${rule.protocols.join(',')}` : '',
      rule.methods ? `methods=${rule.methods.join(',')}` : '',
      rule.paths ? `paths=${rule.paths.join(',')}` : '',
    ].filter(Boolean);
    entries.set(key, { key, change: { rule: id, action: rule.action, destination: parts.join(' ') } });
  }
  // Socket rules: one entry per pattern (a rule's patterns may open and close separately).
  for (const rule of compiled.unix?.rules ?? []) {
    if (rule.action === 'deny' && rule.mode !== 'enforce') continue;
    const key = `unix ${rule.action} ${rule.glob}`;
    if (!entries.has(key))
      entries.set(key, {
        key,
        change: { rule: rule.id, action: rule.action, destination: `unix=${rule.glob}` },
      });
  }
  for (const r of compiled.exec.allow)
    entries.set(`exec ${r.glob}`, {
      key: r.glob,
      change: { rule: r.id, action: 'exec', destination: `exec=${r.glob}` },
    });
  for (const r of compiled.addons.allow)
    entries.set(`addon ${r.glob}`, {
      key: r.glob,
      change: { rule: r.id, action: 'addon', destination: `addon=${r.glob}` },
    });
  return { compiled, entries };
}

/**
 * Destinations that become reachable or unreachable between two policy sets, per SmartGroup;
 * with `identities`, also per workload (its compiled policy before and after, which accounts for
 * workloads that move between groups).
 */
export function diffPolicies(
  before: PolicySet,
  after: PolicySet,
  identities: readonly WorkloadIdentity[] = [],
): PolicyDiff {
  const names = [...new Set([...before.groups, ...after.groups].map((g) => g.metadata.name))].sort();
  const groups: GroupDiff[] = [];
  for (const group of names) {
    const inBefore = before.groups.some((g) => g.metadata.name === group);
    const inAfter = after.groups.some((g) => g.metadata.name === group);
    const policiesBefore = policiesFor(before, group);
    const policiesAfter = policiesFor(after, group);
    const { reachable, unreachable } = compare(entriesOf(policiesBefore), entriesOf(policiesAfter));
    const modeBefore = modeOf(policiesBefore);
    const modeAfter = modeOf(policiesAfter);
    const matchChanged =
      inBefore &&
      inAfter &&
      canonicalJson(before.groups.find((g) => g.metadata.name === group)?.spec) !==
        canonicalJson(after.groups.find((g) => g.metadata.name === group)?.spec);
    if (
      inBefore &&
      inAfter &&
      !matchChanged &&
      reachable.length === 0 &&
      unreachable.length === 0 &&
      modeBefore === modeAfter
    )
      continue;
    groups.push({
      group,
      status: !inBefore ? 'added' : !inAfter ? 'removed' : 'changed',
      reachable,
      unreachable,
      modeBefore,
      modeAfter,
    });
  }
  const workloads: WorkloadDiff[] = [];
  const seen = new Set<string>();
  for (const identity of identities) {
    const workload = formatIdentity(identity);
    if (seen.has(workload)) continue;
    seen.add(workload);
    const b = compiledEntries(before, identity);
    const a = compiledEntries(after, identity);
    const { reachable, unreachable } = compare(b.entries, a.entries);
    if (
      reachable.length === 0 &&
      unreachable.length === 0 &&
      b.compiled.mode === a.compiled.mode &&
      b.compiled.fallback === a.compiled.fallback &&
      b.compiled.scope.id === a.compiled.scope.id
    )
      continue;
    workloads.push({
      workload,
      scopeBefore: b.compiled.scope.id,
      scopeAfter: a.compiled.scope.id,
      reachable,
      unreachable,
      modeBefore: b.compiled.mode,
      modeAfter: a.compiled.mode,
      fallbackBefore: b.compiled.fallback,
      fallbackAfter: a.compiled.fallback,
    });
  }
  return { changed: groups.length > 0 || workloads.length > 0, groups, workloads };
}
