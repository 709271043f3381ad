// The compiler: policy set + workload identity → the compiled policy for that workload only
// (least disclosure: rules of policies whose SmartGroups do not select it are left out).
// Same input → same bytes under canonicalJson.
import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical.js';
import {
  COMPILED_FORMAT,
  type CompiledGlobRule,
  type CompiledPolicy,
  type CompiledRule,
  type CompiledUnixRule,
} from './compiled.js';
import {
  type Destination,
  type EgressPolicyDoc,
  parseRuleUrl,
  type SelectorDoc,
  type SmartGroupDoc,
} from './documents.js';
import { parseHostPattern } from './host.js';
import { type Selector, selectorMatches } from './identity.js';
import type { PolicySet } from './parse.js';
import { asList } from './schema-kit.js';
import type { Mode, Protocol, WorkloadIdentity } from './types.js';

export type UnselectedDefault = 'observe' | 'enforce' | 'allow';

export interface CompileOptions {
  /**
   * What governs a workload no EgressPolicy selects. Overrides a Guardrail's
   * `unselectedWorkloads`; default `observe` (nothing blocked, everything recorded as would-deny).
   */
  unselected?: UnselectedDefault;
}

export const DEFAULT_UNSELECTED: UnselectedDefault = 'observe';

/** SmartGroup `spec.match` → the flat selector a verifier evaluates against an identity. */
export function selectorOf(match: SelectorDoc): Selector {
  const out: Record<string, string[]> = {};
  const put = (key: string, values: string[]) => {
    if (values.length > 0 && !Object.hasOwn(out, key)) out[key] = [...values];
  };
  put('cloud', asList(match.cloud));
  put('account', asList(match.account));
  put('region', asList(match.region));
  put('name', asList(match.name));
  put('runtime', asList(match.runtime));
  for (const [key, value] of Object.entries(match.tags ?? {})) put(`tag.${key}`, [value]);
  for (const key of match.hasTags ?? []) put(`tag.${key}`, ['*']);
  for (const [key, value] of Object.entries(match.attributes ?? {})) put(key, asList(value));
  return out;
}

/** The SmartGroups (sorted by name) whose selector matches the identity. */
export function groupsSelecting(set: PolicySet, identity: WorkloadIdentity): SmartGroupDoc[] {
  return set.groups
    .filter((g) => selectorMatches(selectorOf(g.spec.match), identity))
    .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
}

/** The EgressPolicies (sorted by name) that govern the identity. */
export function policiesSelecting(set: PolicySet, identity: WorkloadIdentity): EgressPolicyDoc[] {
  const names = new Set(groupsSelecting(set, identity).map((g) => g.metadata.name));
  return set.policies
    .filter((p) => p.spec.appliesTo.some((g) => names.has(g)))
    .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
}

function scopeIdOf(groupNames: string[]): string {
  return `scope-${createHash('sha256').update(canonicalJson(groupNames)).digest('hex').slice(0, 16)}`;
}

/**
 * The scope id of a workload: derived from the SmartGroups that select it. Workloads selected
 * by the same groups get the same compiled policy, so one signed bundle serves them all.
 */
export function scopeOf(set: PolicySet, identity: WorkloadIdentity): string {
  return scopeIdOf(groupsSelecting(set, identity).map((g) => g.metadata.name));
}

/** The `unselectedWorkloads` setting of the set's Guardrail documents (first one that sets it). */
export function unselectedDefaultOf(set: PolicySet, options: CompileOptions = {}): UnselectedDefault {
  if (options.unselected) return options.unselected;
  for (const g of set.guardrails) if (g.spec.unselectedWorkloads) return g.spec.unselectedWorkloads;
  return DEFAULT_UNSELECTED;
}

type RuleShape = Omit<CompiledRule, 'id' | 'action' | 'mode'>;

const LAMBDA_INVOKE_PATHS = (fn: string) => {
  const encoded = fn.replace(/:/g, '%3A');
  return [
    `/2015-03-31/functions/${encoded}/invocations`,
    `/2015-03-31/functions/*%3Afunction%3A${encoded}/invocations`,
    `/2014-11-13/functions/${encoded}/invoke-async`,
    `/2014-11-13/functions/*%3Afunction%3A${encoded}/invoke-async`,
  ];
};

function portsOf(to: Destination): [number, number][] | undefined {
  if (to.port === undefined) return undefined;
  return asList(to.port)
    .map((p): [number, number] => [p.from, p.to])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

function withOptional<T extends object>(shape: T): T {
  for (const key of Object.keys(shape) as (keyof T)[]) if (shape[key] === undefined) delete shape[key];
  return shape;
}

/**
 * One destination → the matchers it stands for. Plain host/cidr rules give one; `url` gives one
 * per URL; `aws: s3` gives virtual-hosted (any path) and path-style (bucket prefix) matchers.
 */
export function expandDestination(
  to: Destination,
  groups: ReadonlyMap<string, SmartGroupDoc> = new Map(),
): RuleShape[] {
  // A socket is no network destination. Returning an empty shape here would make an unanchored
  // rule (every request); socket rules go to the `unix` section instead (unixRulesOf).
  if (to.unix !== undefined) return [];
  if (to.group !== undefined) {
    // East-west: the group's Lambda functions through the invoke API, following its selector.
    const group = groups.get(to.group);
    if (!group) throw new TypeError(`unknown SmartGroup ${to.group}`);
    const region = group.spec.match.region;
    return expandDestination({
      aws: 'lambda',
      functions: asList(group.spec.match.name),
      ...(region !== undefined ? { regions: asList(region) } : {}),
      ...(to.port !== undefined ? { port: to.port } : {}),
      ...(to.protocol !== undefined ? { protocol: to.protocol } : {}),
    });
  }
  const ports = portsOf(to);
  const protocols = to.protocol === undefined ? undefined : [...new Set(asList(to.protocol))].sort();
  const methods = to.methods ? [...new Set(to.methods)].sort() : undefined;
  const cidrs = to.cidr === undefined ? undefined : asList(to.cidr);
  const hostText = (h: string) => {
    const parsed = parseHostPattern(h);
    return parsed.ok ? parsed.pattern.text : h;
  };
  if (to.url !== undefined) {
    return asList(to.url).map((text) => {
      const url = parseRuleUrl(text);
      if ('message' in url) throw new TypeError(`invalid url ${text}: ${url.message}`);
      return withOptional<RuleShape>({
        hosts: [url.host],
        ports: [[url.port, url.port]],
        protocols:
          protocols ?? (['http', 'https', 'tcp'].includes(url.scheme) ? [url.scheme as Protocol] : undefined),
        methods,
        paths: url.path ? [url.path] : undefined,
      });
    });
  }
  if (to.aws !== undefined) {
    const regions = to.regions ?? ['*'];
    const common = { ports, protocols, methods };
    if (to.aws === 's3') {
      const buckets = to.buckets ?? [];
      const virtualHosted: string[] = [];
      for (const b of buckets) {
        virtualHosted.push(`${b}.s3.amazonaws.com`);
        for (const r of regions)
          virtualHosted.push(`${b}.s3.${r}.amazonaws.com`, `${b}.s3.dualstack.${r}.amazonaws.com`);
      }
      const pathStyleHosts = ['s3.amazonaws.com'];
      for (const r of regions)
        pathStyleHosts.push(`s3.${r}.amazonaws.com`, `s3.dualstack.${r}.amazonaws.com`);
      return [
        withOptional<RuleShape>({ hosts: virtualHosted, ...common }),
        withOptional<RuleShape>({ hosts: pathStyleHosts, ...common, paths: buckets.map((b) => `/${b}/**`) }),
      ];
    }
    if (to.aws === 'lambda') {
      return [
        withOptional<RuleShape>({
          hosts: regions.map((r) => `lambda.${r}.amazonaws.com`),
          ports,
          protocols,
          methods: ['POST'],
          paths: (to.functions ?? []).flatMap(LAMBDA_INVOKE_PATHS),
        }),
      ];
    }
    const service = to.aws;
    const hosts: string[] = to.regions ? [] : [`${service}.amazonaws.com`];
    for (const r of regions)
      hosts.push(
        `${service}.${r}.amazonaws.com`,
        `${service}-fips.${r}.amazonaws.com`,
        `${service}.${r}.api.aws`,
      );
    return [withOptional<RuleShape>({ hosts, ...common })];
  }
  return [
    withOptional<RuleShape>({
      hosts: to.host === undefined ? undefined : asList(to.host).map(hostText),
      cidrs,
      ports,
      protocols,
      methods,
      paths: to.paths,
    }),
  ];
}

/** One rule's `unix` patterns → entries of the compiled `unix` section (duplicates dropped, order kept). */
function unixRulesOf(to: Destination, id: string, action: 'allow' | 'deny', mode: Mode): CompiledUnixRule[] {
  return [...new Set(asList(to.unix))].map((glob) => ({ id, action, mode, glob }));
}

/**
 * Compile the policy for one workload. Default deny for a workload any EgressPolicy selects
 * (reported as `enforce` when any selecting policy enforces, else `observe`); a workload no
 * policy selects gets the unselected default (observe / enforce / allow).
 */
export function compilePolicy(
  set: PolicySet,
  identity: WorkloadIdentity,
  options: CompileOptions = {},
): CompiledPolicy {
  const groups = groupsSelecting(set, identity);
  const groupNames = new Set(groups.map((g) => g.metadata.name));
  const policies = policiesSelecting(set, identity);
  let mode: Mode;
  let fallback: 'deny' | 'allow';
  if (policies.length > 0) {
    mode = policies.some((p) => p.spec.mode === 'enforce') ? 'enforce' : 'observe';
    fallback = 'deny';
  } else {
    const unselected = unselectedDefaultOf(set, options);
    mode = unselected === 'enforce' ? 'enforce' : 'observe';
    fallback = unselected === 'allow' ? 'allow' : 'deny';
  }
  const rules: CompiledRule[] = [];
  const execAllow: CompiledGlobRule[] = [];
  const addonAllow: CompiledGlobRule[] = [];
  const unixRules: CompiledUnixRule[] = [];
  let allowNode = true;
  const groupsByName = new Map(set.groups.map((g) => [g.metadata.name, g]));
  for (const policy of policies) {
    const name = policy.metadata.name;
    (policy.spec.allow ?? []).forEach((rule, i) => {
      const id = `${name}/allow[${i}]`;
      unixRules.push(...unixRulesOf(rule.to, id, 'allow', policy.spec.mode));
      for (const shape of expandDestination(rule.to, groupsByName))
        rules.push({ id, action: 'allow', mode: policy.spec.mode, ...shape });
    });
    (policy.spec.deny ?? []).forEach((rule, i) => {
      unixRules.push(...unixRulesOf(rule.to, `${name}/deny[${i}]`, 'deny', rule.mode ?? policy.spec.mode));
      for (const shape of expandDestination(rule.to, groupsByName))
        rules.push({
          id: `${name}/deny[${i}]`,
          action: 'deny',
          mode: rule.mode ?? policy.spec.mode,
          ...shape,
        });
    });
    (policy.spec.exec?.allow ?? []).forEach((glob, i) => {
      execAllow.push({ id: `${name}/exec[${i}]`, glob });
    });
    if (policy.spec.exec?.allowNode === false) allowNode = false;
    (policy.spec.addons?.allow ?? []).forEach((glob, i) => {
      addonAllow.push({ id: `${name}/addons[${i}]`, glob });
    });
  }
  return {
    format: COMPILED_FORMAT,
    scope: {
      id: scopeIdOf(groups.map((g) => g.metadata.name)),
      groups: groups.map((g) => ({ name: g.metadata.name, match: selectorOf(g.spec.match) })),
      excludes: set.groups
        .filter((g) => !groupNames.has(g.metadata.name))
        .map((g) => selectorOf(g.spec.match))
        .map((sel) => ({ text: canonicalJson(sel), sel }))
        .sort((a, b) => (a.text < b.text ? -1 : a.text > b.text ? 1 : 0))
        .filter((entry, i, all) => i === 0 || all[i - 1]?.text !== entry.text)
        .map((entry) => entry.sel),
    },
    mode,
    fallback,
    policies: policies.map((p) =>
      withOptional({ name: p.metadata.name, mode: p.spec.mode, owner: ownerOf(p) ?? undefined }),
    ) as CompiledPolicy['policies'],
    rules,
    exec: { allowNode, allow: execAllow },
    addons: { allow: addonAllow },
    // Only when there are socket rules: other bundles keep their bytes.
    ...(unixRules.length > 0 ? { unix: { rules: unixRules } } : {}),
  };
}

/** `spec.owner`, or the `bulkhead.dev/owner` annotation. */
export function ownerOf(policy: EgressPolicyDoc): string | undefined {
  return policy.spec.owner ?? policy.metadata.annotations?.['bulkhead.dev/owner'];
}
