import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BLAST_RADIUS_CEILING, type BlastRadiusReport, blastRadius } from '../../policy/blast-radius.js';
import { canonicalJson } from '../../policy/canonical.js';
import { compilePolicy } from '../../policy/compile.js';
import { parseIdentity } from '../../policy/identity.js';
import { type PolicySet, parsePolicy } from '../../policy/parse.js';
import { mustParse, policyYaml } from './helpers.js';

const root = join(import.meta.dirname, '../..');

function groupScores(report: BlastRadiusReport): Record<string, number> {
  return Object.fromEntries(report.groups.map((g) => [g.group, g.score]));
}

describe('blastRadius: the scoring model on known policies', () => {
  it('scores each target by breadth × ports × L7 × sensitivity; a wildcard counts what it covers once', () => {
    const set = mustParse(
      policyYaml({
        allow: [
          'to: { host: api.example.com, port: 443 }',
          'to: { host: "*.example.com", port: 443, methods: [GET] }',
          '{ to: { cidr: 10.0.0.0/24 }, sensitivity: critical }',
        ],
      }),
    );
    const [group] = blastRadius(set).groups;
    // *.example.com: 100 × (1 + log2 1) × 1 (api.example.com below it is not L7-restricted) = 100,
    // the larger of that and api.example.com's 1; 10.0.0.0/24: 2^(8/2) × (1 + log2 65536) × 10 = 2720.
    expect(group).toEqual({
      group: 'app',
      policies: ['p'],
      score: 2820,
      unbounded: false,
      mode: 'enforce',
      reach: {
        hosts: 1,
        wildcardDomains: 1,
        addresses: 256,
        ports: 'any',
        cloudResources: 0,
        unixSockets: 0,
        sensitive: 1,
      },
    });
  });

  it('examples/policy/payments.yaml scores 2060 for payments-prod', () => {
    const file = join(root, 'examples/policy/payments.yaml');
    const parsed = parsePolicy([{ file, text: readFileSync(file, 'utf8') }]);
    if (!parsed.ok) throw new Error('example does not parse');
    // api.stripe.com 0.5 + github.com 0.5 + bucket 17 + ledger-* 850 + dynamodb 170
    // + *.payments.internal:8000-8100 765.8 + 10.20.0.0/16:5432 256 = 2059.8.
    expect(groupScores(blastRadius(parsed.set))).toEqual({ 'payments-prod': 2060 });
  });

  it('sockets, S3 buckets, Lambda functions and east-west groups are counted as their own targets', () => {
    const set = mustParse(
      policyYaml({
        allow: [
          'to: { unix: [/run/app/a.sock, "/run/app/*.sock"] }',
          'to: { aws: s3, buckets: [receipts], port: 443 }',
          'to: { aws: lambda, functions: [ledger-post], port: 443 }',
        ],
      }),
    );
    const [group] = blastRadius(set).groups;
    // /run/app/*.sock 100 (covers a.sock) + receipts 1 + ledger-post 1 × 0.5 (the invoke API only).
    expect(group?.score).toBe(102);
    expect(group?.reach).toMatchObject({ unixSockets: 2, cloudResources: 2, ports: 1 });

    // East-west: the functions the named group selects, merged with the same functions named directly.
    const eastWest = mustParse(`${policyYaml({
      allow: ['to: { group: ledger, port: 443 }', 'to: { aws: lambda, functions: [ledger-post], port: 443 }'],
    })}---
apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: ledger }
spec: { match: { cloud: aws, name: [ledger-post, "ledger-batch-*"] } }
`);
    const app = blastRadius(eastWest).groups.find((g) => g.group === 'app');
    // ledger-batch-* 100 × 0.5 + ledger-post 1 × 0.5.
    expect(app).toMatchObject({ score: 51, reach: { cloudResources: 2 } });
  });

  it('observe mode, an unselected default that blocks nothing, or a rule without a destination: unbounded', () => {
    const observe = blastRadius(mustParse(policyYaml({ mode: 'observe', allow: ['to: { host: a.com }'] })));
    expect(observe.groups[0]).toMatchObject({
      score: BLAST_RADIUS_CEILING,
      unbounded: true,
      mode: 'observe',
      reason: 'observe mode: nothing is blocked',
      reach: { hosts: 1 },
    });
    const unanchored = blastRadius(mustParse(policyYaml({ allow: ['to: { port: 443 }'] })));
    expect(unanchored.groups[0]).toMatchObject({ unbounded: true, mode: 'enforce' });
    expect(unanchored.groups[0]?.reason).toMatch(/p\/allow\[0\] names no host/);

    const lone = (unselected: string) =>
      mustParse(`apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: lone }
spec: { match: { name: lone-* } }
---
apiVersion: bulkhead.dev/v1
kind: Guardrail
metadata: { name: g }
spec: { unselectedWorkloads: ${unselected} }
`);
    expect(blastRadius(lone('allow')).groups[0]).toMatchObject({ unbounded: true, mode: 'allow' });
    expect(blastRadius(lone('observe')).groups[0]).toMatchObject({ unbounded: true, mode: 'observe' });
    expect(blastRadius(lone('enforce')).groups[0]).toMatchObject({ unbounded: false, score: 0 });
  });

  it('a workload is scored on every policy that selects it, as compilePolicy sees it', () => {
    const set = mustParse(`${policyYaml({ allow: ['to: { host: a.com, port: 443 }'] })}---
apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: db }
spec: { match: { tags: { tier: db } } }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: q }
spec:
  appliesTo: [db]
  mode: observe
  allow: [{ to: { cidr: 10.0.0.1, port: 5432 } }]
`);
    const app = parseIdentity('tag.app=demo');
    const both = parseIdentity('tag.app=demo,tag.tier=db');
    const none = parseIdentity('name=other');
    const report = blastRadius(set, { workloads: [app, both, none, app] });
    expect(report.workloads.map((w) => [w.workload, w.groups, w.mode, w.score])).toEqual([
      ['tag.app=demo', ['app'], 'enforce', 1],
      // An enforcing policy selects it: the observe policy's allow rules add, they do not unbound it.
      ['tag.app=demo,tag.tier=db', ['app', 'db'], 'enforce', 2],
      ['name=other', [], 'observe', BLAST_RADIUS_CEILING],
    ]);
    expect(compilePolicy(set, both).mode).toBe('enforce');
  });

  it('a pattern counts at least what is named below it; two spellings of one target are one target', () => {
    const hosts = Array.from({ length: 150 }, (_, i) => `h${i}.example.com`);
    const set = mustParse(
      policyYaml({
        allow: [
          `to: { host: [${hosts.join(', ')}], port: 443 }`,
          'to: { host: "*.example.com", port: 443 }',
          'to: { cidr: [10.1.2.3, 10.1.2.3/32, "::ffff:10.1.2.3"], port: 443 }',
        ],
      }),
    );
    // max(100, 150) for the wildcard, 1 for the one address however it is written.
    expect(blastRadius(set).groups[0]).toMatchObject({ score: 151, reach: { hosts: 150, addresses: 1 } });
  });

  it('the documented limit: moving a host onto a pattern its named sub-patterns outweigh can lower the score', () => {
    const wildcards = [
      'to: { host: "*.example.com", port: 443 }',
      'to: { host: ["*.a.example.com", "*.b.example.com"], port: 443 }',
    ];
    const before = mustParse(
      policyYaml({ allow: [...wildcards, 'to: { host: api.example.com, port: 443 }'] }),
    );
    const after = mustParse(
      policyYaml({ allow: [...wildcards, 'to: { host: "*.example.com", port: 443 }'] }),
    );
    // *.example.com counts the larger of its own 100 and what is named below it: 100 + 100 + 1, then 100 + 100.
    expect(groupScores(blastRadius(before))).toEqual({ app: 201 });
    expect(groupScores(blastRadius(after))).toEqual({ app: 200 });
  });

  it('the sensitivity label weighs the score and leaves the compiled bundle unchanged', () => {
    const plain = mustParse(policyYaml({ allow: ['to: { host: a.com, port: 443 }'] }));
    const labelled = mustParse(
      policyYaml({ allow: ['{ to: { host: a.com, port: 443 }, sensitivity: high }'] }),
    );
    expect(groupScores(blastRadius(labelled))).toEqual({ app: 4 });
    expect(canonicalJson(compilePolicy(labelled, parseIdentity('tag.app=demo')))).toBe(
      canonicalJson(compilePolicy(plain, parseIdentity('tag.app=demo'))),
    );
  });
});

// ---- Properties: a policy that allows more never scores lower ----

interface Rule {
  host?: string[];
  cidr?: string[];
  unix?: string;
  fn?: string;
  port?: (number | string)[];
  methods?: string[];
  paths?: string[];
  sensitivity?: 'low' | 'normal' | 'high' | 'critical';
}

interface Policy {
  name: string;
  appliesTo: string[];
  mode: 'enforce' | 'observe';
  allow: Rule[];
}

// A vocabulary where every pattern outweighs the patterns named directly below it (the condition
// under which widening a host or CIDR never lowers the score; docs/blast-radius.md).
const HOSTS = [
  'api.example.com',
  'www.example.com',
  'db.example.com',
  '*.example.com',
  'api.example.org',
  '*.example.org',
  '*.com',
];
const CIDRS = [
  '10.0.0.0/8',
  '10.1.0.0/16',
  '10.1.2.0/24',
  '10.1.2.3',
  '10.1.2.4',
  '192.168.0.0/16',
  '192.168.1.0/24',
];
const SOCKETS = ['/run/app/a.sock', '/run/app/b.sock', '/run/app/*.sock'];
const FUNCTIONS = ['ledger-post', 'ledger-get', 'ledger-*'];
const PORTS: (number | string)[] = [443, 80, 5432, '8000-8100'];
const LABELS = ['low', 'normal', 'high', 'critical'] as const;

/** The strictly wider patterns of the vocabulary that cover `text`. */
const WIDER: Record<string, string[]> = {
  'api.example.com': ['*.example.com', '*.com'],
  'www.example.com': ['*.example.com', '*.com'],
  'db.example.com': ['*.example.com', '*.com'],
  '*.example.com': ['*.com'],
  'api.example.org': ['*.example.org'],
  '10.1.0.0/16': ['10.0.0.0/8'],
  '10.1.2.0/24': ['10.1.0.0/16', '10.0.0.0/8'],
  '10.1.2.3': ['10.1.2.0/24', '10.1.0.0/16', '10.0.0.0/8'],
  '10.1.2.4': ['10.1.2.0/24', '10.1.0.0/16', '10.0.0.0/8'],
  '192.168.1.0/24': ['192.168.0.0/16'],
  '/run/app/a.sock': ['/run/app/*.sock'],
  '/run/app/b.sock': ['/run/app/*.sock'],
  'ledger-post': ['ledger-*'],
  'ledger-get': ['ledger-*'],
};

// Absent half of the time: rules both with and without each restriction meet on the same targets.
const optional = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 2 });
const networkRule: fc.Arbitrary<Rule> = fc
  .record({
    host: optional(fc.uniqueArray(fc.constantFrom(...HOSTS), { minLength: 1, maxLength: 2 })),
    cidr: optional(fc.uniqueArray(fc.constantFrom(...CIDRS), { minLength: 1, maxLength: 2 })),
    port: optional(fc.uniqueArray(fc.constantFrom(...PORTS), { minLength: 1, maxLength: 2 })),
    methods: optional(fc.constantFrom<string[]>(['GET'], ['GET', 'POST'])),
    paths: optional(fc.constant<string[]>(['/v1/**'])),
    sensitivity: optional(fc.constantFrom(...LABELS)),
  })
  .map((r) => (r.host === undefined && r.cidr === undefined ? { ...r, host: ['api.example.com'] } : r));
const socketRule: fc.Arbitrary<Rule> = fc.record({
  unix: fc.constantFrom(...SOCKETS),
  sensitivity: optional(fc.constantFrom(...LABELS)),
});
const functionRule: fc.Arbitrary<Rule> = fc.record({
  fn: fc.constantFrom(...FUNCTIONS),
  port: optional(fc.uniqueArray(fc.constantFrom(...PORTS), { minLength: 1, maxLength: 2 })),
  sensitivity: optional(fc.constantFrom(...LABELS)),
});
const anyRule = fc.oneof({ arbitrary: networkRule, weight: 4 }, socketRule, functionRule);

const policiesArb: fc.Arbitrary<Policy[]> = fc
  .tuple(
    fc.array(anyRule, { maxLength: 6 }),
    fc.array(anyRule, { maxLength: 6 }),
    fc.constantFrom<Policy['mode']>('enforce', 'observe'),
    fc.constantFrom<Policy['mode']>('enforce', 'observe'),
    fc.constantFrom<string[]>(['db'], ['app', 'db']),
  )
  .map(([a, b, modeA, modeB, appliesTo]) => [
    { name: 'p1', appliesTo: ['app'], mode: modeA, allow: a },
    { name: 'p2', appliesTo, mode: modeB, allow: b },
  ]);

function toDestination(rule: Rule): Record<string, unknown> {
  const to: Record<string, unknown> = {};
  if (rule.unix !== undefined) return { unix: rule.unix };
  if (rule.fn !== undefined) to.aws = 'lambda';
  if (rule.fn !== undefined) to.functions = [rule.fn];
  if (rule.host !== undefined) to.host = rule.host;
  if (rule.cidr !== undefined) to.cidr = rule.cidr;
  if (rule.port !== undefined) to.port = rule.port;
  if (rule.methods !== undefined) to.methods = rule.methods;
  if (rule.paths !== undefined) to.paths = rule.paths;
  return to;
}

function setOf(policies: Policy[]): PolicySet {
  const docs: unknown[] = [
    {
      apiVersion: 'bulkhead.dev/v1',
      kind: 'SmartGroup',
      metadata: { name: 'app' },
      spec: { match: { tags: { app: 'demo' } } },
    },
    {
      apiVersion: 'bulkhead.dev/v1',
      kind: 'SmartGroup',
      metadata: { name: 'db' },
      spec: { match: { tags: { tier: 'db' } } },
    },
    ...policies.map((p) => ({
      apiVersion: 'bulkhead.dev/v1',
      kind: 'EgressPolicy',
      metadata: { name: p.name },
      spec: {
        appliesTo: p.appliesTo,
        mode: p.mode,
        allow: p.allow.map((rule) => ({
          to: toDestination(rule),
          ...(rule.sensitivity !== undefined ? { sensitivity: rule.sensitivity } : {}),
        })),
      },
    })),
  ];
  const parsed = parsePolicy([
    { file: 'gen.yaml', text: docs.map((d) => JSON.stringify(d)).join('\n---\n') },
  ]);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
  return parsed.set;
}

const WORKLOADS = ['tag.app=demo', 'tag.tier=db', 'tag.app=demo,tag.tier=db', 'name=other'].map(
  parseIdentity,
);

function scores(policies: Policy[]): Map<string, number> {
  const report = blastRadius(setOf(policies), { workloads: WORKLOADS });
  return new Map([
    ...report.groups.map((g): [string, number] => [`group ${g.group}`, g.score]),
    ...report.workloads.map((w): [string, number] => [`workload ${w.workload}`, w.score]),
  ]);
}

type Widening = (rule: Rule, pick: number) => Rule | undefined;

const pickFrom = <T>(items: readonly T[], pick: number): T | undefined => items[pick % items.length];

/** Each way of making one rule allow more (undefined: does not apply to that rule). */
const RULE_WIDENINGS: Record<string, Widening> = {
  'host onto a wider pattern': (rule, pick) => {
    const i = (rule.host ?? []).findIndex((h) => WIDER[h]);
    const host = rule.host?.[i];
    if (!rule.host || host === undefined) return undefined;
    const wider = pickFrom(WIDER[host] ?? [], pick) as string;
    return { ...rule, host: [...new Set(rule.host.map((h, j) => (j === i ? wider : h)))] };
  },
  'CIDR onto a wider prefix': (rule, pick) => {
    const i = (rule.cidr ?? []).findIndex((c) => WIDER[c]);
    const cidr = rule.cidr?.[i];
    if (!rule.cidr || cidr === undefined) return undefined;
    const wider = pickFrom(WIDER[cidr] ?? [], pick) as string;
    return { ...rule, cidr: [...new Set(rule.cidr.map((c, j) => (j === i ? wider : c)))] };
  },
  'socket onto a glob': (rule) =>
    rule.unix && WIDER[rule.unix] ? { ...rule, unix: WIDER[rule.unix]?.[0] as string } : undefined,
  'function onto a glob': (rule) =>
    rule.fn && WIDER[rule.fn] ? { ...rule, fn: WIDER[rule.fn]?.[0] as string } : undefined,
  'a port added': (rule, pick) => {
    if (rule.port === undefined || rule.unix !== undefined) return undefined;
    const extra = PORTS.filter((p) => !rule.port?.includes(p));
    const port = pickFrom(extra, pick);
    return port === undefined ? undefined : { ...rule, port: [...rule.port, port] };
  },
  'ports no longer restricted': (rule) => {
    if (rule.port === undefined) return undefined;
    const { port: _port, ...rest } = rule;
    return rest;
  },
  'methods removed': (rule) => {
    if (rule.methods === undefined) return undefined;
    const { methods: _methods, ...rest } = rule;
    return rest;
  },
  'paths removed': (rule) => {
    if (rule.paths === undefined) return undefined;
    const { paths: _paths, ...rest } = rule;
    return rest;
  },
  'label raised': (rule, pick) => {
    const current = LABELS.indexOf(rule.sensitivity ?? 'normal');
    const higher = LABELS.slice(current + 1);
    const label = pickFrom(higher, pick);
    return label === undefined ? undefined : { ...rule, sensitivity: label };
  },
};

describe('blastRadius: properties', () => {
  it('a policy set that allows more never scores lower, for any SmartGroup or workload', () => {
    fc.assert(
      fc.property(policiesArb, fc.nat(), fc.nat(), anyRule, (policies, which, pick, extra) => {
        const policy = policies[which % policies.length] as Policy;
        const index = pick % Math.max(policy.allow.length, 1);
        const rule = policy.allow[index];
        // Every way of allowing more that applies to this set, each checked on its own.
        const widenings: [string, Policy][] = [
          ['rule added', { ...policy, allow: [...policy.allow, extra] }],
          ['policy to observe', { ...policy, mode: 'observe' }],
        ];
        for (const [kind, widen] of Object.entries(RULE_WIDENINGS)) {
          const next = rule && widen(rule, pick >> 3);
          if (next)
            widenings.push([
              kind,
              { ...policy, allow: policy.allow.map((r, i) => (i === index ? next : r)) },
            ]);
        }
        const before = scores(policies);
        for (const [kind, widened] of widenings) {
          const after = scores(policies.map((p) => (p === policy ? widened : p)));
          for (const [name, score] of after) {
            const was = before.get(name) as number;
            if (score < was) expect.fail(`${kind}: ${name} scored ${was}, then ${score}`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('the score depends on what is allowed, not on how it is written: duplicates and order do not count', () => {
    fc.assert(
      fc.property(policiesArb, fc.nat(), (policies, pick) => {
        const [first, second] = policies as [Policy, Policy];
        const rule = first.allow[pick % Math.max(first.allow.length, 1)];
        if (!rule) return;
        const duplicated = [{ ...first, allow: [...first.allow, rule] }, second];
        const reversed = [{ ...first, allow: [...first.allow].reverse() }, second];
        const split = [
          {
            ...first,
            allow: first.allow.flatMap((r) =>
              r.host && r.host.length > 1 ? r.host.map((h) => ({ ...r, host: [h] })) : [r],
            ),
          },
          second,
        ];
        const base = scores(policies);
        expect(scores(duplicated)).toEqual(base);
        expect(scores(reversed)).toEqual(base);
        expect(scores(split)).toEqual(base);
      }),
      { numRuns: 200 },
    );
  });
});
