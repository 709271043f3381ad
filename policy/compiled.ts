// The compiled policy a workload receives inside a signed bundle, and a structural check of it.
// No dependencies: the verifier in the shim runs this on every bundle it accepts.
import type { Selector } from './identity.js';
import type { Mode, Protocol } from './types.js';
import { checkUnixPattern } from './unix.js';

export const COMPILED_FORMAT = 1;

/**
 * What a bundle is for. A workload holds a bundle meant for it when its identity satisfies the
 * selector of every group in `groups` (the SmartGroups it was compiled for) and none of
 * `excludes` (the selectors of every other SmartGroup in the set; names and rules of those
 * groups are not disclosed). Workloads selected by the same groups share one scope id.
 */
export interface BundleScope {
  id: string;
  groups: { name: string; match: Selector }[];
  excludes: Selector[];
}

/**
 * One compiled matcher. A policy rule may expand to several (S3 virtual-hosted and path-style
 * endpoints), all carrying the rule's id. Every present field must match; an absent field matches
 * anything. For allow rules, a fact the hook does not know yet (path, method, L7 protocol at
 * connect time) is not held against the rule; the hook that learns it asks again.
 */
export interface CompiledRule {
  /** `<policy>/allow[2]`, `<policy>/deny[0]`. */
  id: string;
  action: 'allow' | 'deny';
  /** Deny rules: whether a match blocks (`enforce`) or only records (`observe`). */
  mode: Mode;
  /** Host patterns (`api.example.com`, `*.example.com`, internal one-label `*`: `b.s3.*.amazonaws.com`). */
  hosts?: string[];
  cidrs?: string[];
  /** Inclusive port ranges. */
  ports?: [number, number][];
  protocols?: Protocol[];
  methods?: string[];
  /** Path globs on the normalised path. */
  paths?: string[];
}

export interface CompiledGlobRule {
  id: string;
  glob: string;
}

/**
 * One Unix-socket pattern of a rule (`to: { unix: … }`); a rule with several patterns gives one
 * entry each, all carrying the rule's id. Kept out of `rules` on purpose: a `CompiledRule` without
 * hosts or CIDRs is unanchored (it matches every network request), so a decider that predates this
 * section must never meet a socket rule there.
 */
export interface CompiledUnixRule {
  /** `<policy>/allow[2]`, `<policy>/deny[0]`. */
  id: string;
  action: 'allow' | 'deny';
  /** Deny rules: whether a match blocks (`enforce`) or only records (`observe`). */
  mode: Mode;
  /** Normal absolute path glob (`/run/app/*.sock`) or abstract name pattern (`@app-*`). */
  glob: string;
}

export interface CompiledPolicy {
  format: typeof COMPILED_FORMAT;
  scope: BundleScope;
  /** Mode of `default-deny` and of exec/addon denials. */
  mode: Mode;
  /** What governs a request no rule matches: deny (reported under `mode`) or allow. */
  fallback: 'deny' | 'allow';
  /** Policies that select this workload (names, modes, owners), for explain and audit. */
  policies: { name: string; mode: Mode; owner?: string }[];
  rules: CompiledRule[];
  exec: { allowNode: boolean; allow: CompiledGlobRule[] };
  addons: { allow: CompiledGlobRule[] };
  /**
   * Unix-domain socket rules. Absent when the workload has none (bundles without them keep their
   * bytes, and deciders that predate the section ignore it); sockets then get the fallback.
   */
  unix?: { rules: CompiledUnixRule[] };
}

const PROTOCOLS: ReadonlySet<string> = new Set(['tcp', 'udp', 'http', 'https', 'dns']);

function isStringArray(value: unknown, max = 1_000_000): value is string[] {
  return Array.isArray(value) && value.length <= max && value.every((v) => typeof v === 'string');
}

function isMode(value: unknown): value is Mode {
  return value === 'enforce' || value === 'observe';
}

function isSelector(value: unknown): value is Selector {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  return Object.values(value).every((v) => isStringArray(v));
}

/** Describe the first structural problem of a compiled policy, or undefined when it is well formed. */
export function checkCompiledPolicy(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'policy: not an object';
  const p = value as Record<string, unknown>;
  if (p.format !== COMPILED_FORMAT) return `policy.format: expected ${COMPILED_FORMAT}`;
  if (!isMode(p.mode)) return 'policy.mode: expected enforce or observe';
  if (p.fallback !== 'deny' && p.fallback !== 'allow') return 'policy.fallback: expected deny or allow';
  const scope = p.scope as Record<string, unknown> | undefined;
  if (typeof scope !== 'object' || scope === null || typeof scope.id !== 'string')
    return 'policy.scope: malformed';
  if (
    !Array.isArray(scope.groups) ||
    !scope.groups.every(
      (g: unknown) =>
        typeof g === 'object' &&
        g !== null &&
        typeof (g as { name?: unknown }).name === 'string' &&
        isSelector((g as { match?: unknown }).match),
    )
  )
    return 'policy.scope.groups: malformed';
  if (!Array.isArray(scope.excludes) || !scope.excludes.every(isSelector))
    return 'policy.scope.excludes: malformed';
  if (!Array.isArray(p.policies)) return 'policy.policies: expected an array';
  if (!Array.isArray(p.rules)) return 'policy.rules: expected an array';
  for (let i = 0; i < p.rules.length; i++) {
    const problem = checkRule(p.rules[i]);
    if (problem) return `policy.rules[${i}]: ${problem}`;
  }
  const exec = p.exec as Record<string, unknown> | undefined;
  if (
    typeof exec !== 'object' ||
    exec === null ||
    typeof exec.allowNode !== 'boolean' ||
    !checkGlobRules(exec.allow)
  )
    return 'policy.exec: malformed';
  const addons = p.addons as Record<string, unknown> | undefined;
  if (typeof addons !== 'object' || addons === null || !checkGlobRules(addons.allow))
    return 'policy.addons: malformed';
  if (p.unix !== undefined) {
    const unix = p.unix as Record<string, unknown> | null;
    if (typeof unix !== 'object' || unix === null || Array.isArray(unix))
      return 'policy.unix: expected an object';
    if (!Array.isArray(unix.rules)) return 'policy.unix.rules: expected an array';
    for (let i = 0; i < unix.rules.length; i++) {
      const problem = checkUnixRule(unix.rules[i]);
      if (problem) return `policy.unix.rules[${i}]: ${problem}`;
    }
  }
  return undefined;
}

function checkUnixRule(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'not an object';
  const r = value as Record<string, unknown>;
  if (typeof r.id !== 'string') return 'id: expected a string';
  if (r.action !== 'allow' && r.action !== 'deny') return 'action: expected allow or deny';
  if (!isMode(r.mode)) return 'mode: expected enforce or observe';
  if (typeof r.glob !== 'string' || r.glob === '') return 'glob: expected a non-empty string';
  const problem = checkUnixPattern(r.glob);
  return problem ? `glob: ${problem}` : undefined;
}

function checkGlobRules(value: unknown): boolean {
  return (
    Array.isArray(value) &&
    value.every(
      (r: unknown) =>
        typeof r === 'object' &&
        r !== null &&
        typeof (r as CompiledGlobRule).id === 'string' &&
        typeof (r as CompiledGlobRule).glob === 'string',
    )
  );
}

function checkRule(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'not an object';
  const r = value as Record<string, unknown>;
  if (typeof r.id !== 'string') return 'id: expected a string';
  if (r.action !== 'allow' && r.action !== 'deny') return 'action: expected allow or deny';
  if (!isMode(r.mode)) return 'mode: expected enforce or observe';
  for (const key of ['hosts', 'cidrs', 'methods', 'paths'] as const)
    if (r[key] !== undefined && !isStringArray(r[key])) return `${key}: expected strings`;
  if (
    r.protocols !== undefined &&
    !(isStringArray(r.protocols) && r.protocols.every((x) => PROTOCOLS.has(x)))
  )
    return 'protocols: unknown protocol';
  if (
    r.ports !== undefined &&
    !(
      Array.isArray(r.ports) &&
      r.ports.every(
        (range: unknown) =>
          Array.isArray(range) &&
          range.length === 2 &&
          Number.isInteger(range[0]) &&
          Number.isInteger(range[1]) &&
          (range[0] as number) >= 0 &&
          (range[0] as number) <= (range[1] as number) &&
          (range[1] as number) <= 65535,
      )
    )
  )
    return 'ports: expected [from, to] ranges within 0-65535';
  return undefined;
}
