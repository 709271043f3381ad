// Which rules of a policy set were used: the shims' rule hit counts (contract §3) summed per rule.
// Hits arrive under the rule ids of the revision that made the decisions (`payments/allow[2]`), and
// ids are positions: a rule moved by an edit has another id in the next revision. Each rule is
// therefore known by what it says (policy, kind, destination), and the hits of every revision go
// to the rules of the current set that say the same thing.
import { describeDestination } from './diff.js';
import type { PolicySet } from './parse.js';

export interface RuleUsage {
  /** Rule id in the current set (`payments-egress/allow[0]`, `…/exec[1]`, `…/addons[0]`). */
  rule: string;
  policy: string;
  kind: 'allow' | 'exec' | 'addon';
  /** `host=api.stripe.com port=443 methods=POST`, or the exec/addon glob. */
  destination: string;
  appliesTo: string[];
  hits: number;
  /** The last UTC day (YYYY-MM-DD) with a hit. */
  lastDay?: string;
}

export interface HitTotalInput {
  revision: number;
  rule: string;
  hits: number;
  lastDay: string;
}

interface Described {
  policy: string;
  kind: RuleUsage['kind'];
  destination: string;
  appliesTo: string[];
}

/** Every allow, exec and addon rule of the set by id, with what it says. */
export function describeRules(set: PolicySet): Map<string, Described> {
  const rules = new Map<string, Described>();
  for (const policy of set.policies) {
    const name = policy.metadata.name;
    const appliesTo = [...policy.spec.appliesTo];
    (policy.spec.allow ?? []).forEach((rule, i) => {
      rules.set(`${name}/allow[${i}]`, {
        policy: name,
        kind: 'allow',
        destination: describeDestination(rule.to),
        appliesTo,
      });
    });
    (policy.spec.exec?.allow ?? []).forEach((glob, i) => {
      rules.set(`${name}/exec[${i}]`, { policy: name, kind: 'exec', destination: glob, appliesTo });
    });
    (policy.spec.addons?.allow ?? []).forEach((glob, i) => {
      rules.set(`${name}/addons[${i}]`, { policy: name, kind: 'addon', destination: glob, appliesTo });
    });
  }
  return rules;
}

const fingerprint = (d: Described) => `${d.policy}\n${d.kind}\n${d.destination}`;

/**
 * The hits of each rule of `current`, from totals per (revision, rule id); `sets` holds the parsed
 * set of every revision named in `totals` (the current one included). Rules nothing used have 0.
 * Sorted by hits, fewest first.
 */
export function ruleUsage(
  current: PolicySet,
  totals: readonly HitTotalInput[],
  sets: ReadonlyMap<number, PolicySet>,
): RuleUsage[] {
  const described = describeRules(current);
  const byFingerprint = new Map<string, RuleUsage>();
  const usage: RuleUsage[] = [];
  for (const [rule, d] of described) {
    const entry: RuleUsage = { rule, ...d, hits: 0 };
    usage.push(entry);
    byFingerprint.set(fingerprint(d), entry);
  }
  const describedByRevision = new Map<number, Map<string, Described>>();
  for (const total of totals) {
    let rules = describedByRevision.get(total.revision);
    if (!rules) {
      const set = sets.get(total.revision);
      rules = set ? (set === current ? described : describeRules(set)) : new Map();
      describedByRevision.set(total.revision, rules);
    }
    const d = rules.get(total.rule);
    const entry = d ? byFingerprint.get(fingerprint(d)) : undefined;
    if (!entry) continue;
    entry.hits += total.hits;
    if (entry.lastDay === undefined || total.lastDay > entry.lastDay) entry.lastDay = total.lastDay;
  }
  return usage.sort((a, b) => a.hits - b.hits || a.rule.localeCompare(b.rule));
}
