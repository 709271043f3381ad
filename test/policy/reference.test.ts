// Differential test: the indexed engine (tries, cache) against a naive linear evaluator written
// straight from the documented semantics, on random policies and random requests.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cidrContains, type IpBytes, parseCidr, parseIp } from '../../policy/cidr.js';
import { compilePolicy } from '../../policy/compile.js';
import type { CompiledPolicy, CompiledRule } from '../../policy/compiled.js';
import { createDecider } from '../../policy/decide.js';
import { classifyHost, hostPatternMatches, parseHostPattern } from '../../policy/host.js';
import { parsePolicy } from '../../policy/parse.js';
import { compileGlob, normalizePath } from '../../policy/path.js';
import type { DecisionRequest } from '../../policy/types.js';
import { APP, GROUP } from './helpers.js';

interface Outcome {
  decision: 'allow' | 'deny';
  blocked: boolean;
  /** Rules that could have decided (any of them is a correct answer to report). */
  rules: Set<string>;
}

const L7: ReadonlySet<string> = new Set(['http', 'https']);

function protocolMatches(rule: CompiledRule, protocol: string, optimistic: boolean): boolean {
  if (!rule.protocols) return true;
  const wanted = new Set<string>(rule.protocols);
  if (wanted.has('tcp')) {
    wanted.add('http');
    wanted.add('https');
  }
  if (wanted.has(protocol)) return true;
  return optimistic && protocol === 'tcp' && [...wanted].some((p) => L7.has(p));
}

function factsMatch(rule: CompiledRule, r: DecisionRequest, ip: IpBytes | undefined): boolean {
  const optimistic = rule.action === 'allow';
  if (rule.ports) {
    if (r.port === 0) {
      if (!optimistic) return false;
    } else if (!rule.ports.some(([a, b]) => r.port >= a && r.port <= b)) return false;
  }
  if (!protocolMatches(rule, r.protocol, optimistic)) return false;
  if (rule.methods) {
    if (!r.method) {
      if (!optimistic) return false;
    } else if (!rule.methods.includes(r.method.toUpperCase())) return false;
  }
  if (rule.paths) {
    if (!r.path) {
      if (!optimistic) return false;
    } else {
      const path = normalizePath(r.path);
      if (!rule.paths.some((g) => compileGlob(g)(path))) return false;
    }
  }
  if (rule.hosts && rule.cidrs) {
    if (!ip) {
      if (!optimistic) return false;
    } else if (
      !rule.cidrs.some((c) => {
        const p = parseCidr(c);
        return p.ok && cidrContains(p.cidr, ip);
      })
    )
      return false;
  }
  return true;
}

function byName(rule: CompiledRule, name: string): boolean {
  return (rule.hosts ?? []).some((h) => {
    const p = parseHostPattern(h, { allowInnerWildcard: true });
    return p.ok && hostPatternMatches(p.pattern, name);
  });
}

function byIp(rule: CompiledRule, ip: IpBytes): boolean {
  if (rule.hosts) return false;
  return (rule.cidrs ?? []).some((c) => {
    const p = parseCidr(c);
    return p.ok && cidrContains(p.cidr, ip);
  });
}

function naive(policy: CompiledPolicy, r: DecisionRequest): Outcome | 'unreadable' {
  const names: string[] = [];
  const ips: IpBytes[] = [];
  for (const text of [r.host, r.sni]) {
    if (!text) continue;
    const kind = classifyHost(text);
    if (!kind) return 'unreadable';
    if ('ip' in kind) ips.push(parseIp(kind.ip) as IpBytes);
    else if (!names.includes(kind.host)) names.push(kind.host);
  }
  if (r.ip) {
    const b = parseIp(r.ip);
    if (!b) return 'unreadable';
    ips.push(b);
  }
  if (names.length === 0 && ips.length === 0) return 'unreadable';
  const ip = ips[ips.length - 1];
  const unanchored = (rule: CompiledRule) => !rule.hosts && !rule.cidrs;
  const reaches = (rule: CompiledRule) =>
    names.some((n) => byName(rule, n)) || ips.some((a) => byIp(rule, a)) || unanchored(rule);
  const denies = policy.rules.filter(
    (rule) => rule.action === 'deny' && reaches(rule) && factsMatch(rule, r, ip),
  );
  const enforcing = denies.filter((rule) => rule.mode === 'enforce');
  if (enforcing.length > 0)
    return { decision: 'deny', blocked: true, rules: new Set(enforcing.map((x) => x.id)) };
  const allows = (pred: (rule: CompiledRule) => boolean) =>
    policy.rules.filter((rule) => rule.action === 'allow' && pred(rule) && factsMatch(rule, r, ip));
  const viaNames = names.length > 0 && names.every((n) => allows((rule) => byName(rule, n)).length > 0);
  const viaIps = ips.length > 0 && ips.every((a) => allows((rule) => byIp(rule, a)).length > 0);
  const viaUnanchored = allows(unanchored).length > 0;
  if (viaNames || viaIps || viaUnanchored) {
    if (denies.length > 0)
      return { decision: 'deny', blocked: false, rules: new Set(denies.map((x) => x.id)) };
    const candidates = allows(
      (rule) => names.some((n) => byName(rule, n)) || ips.some((a) => byIp(rule, a)) || unanchored(rule),
    );
    return { decision: 'allow', blocked: false, rules: new Set(candidates.map((x) => x.id)) };
  }
  return {
    decision: policy.fallback === 'allow' ? 'allow' : 'deny',
    blocked: policy.fallback === 'deny' && policy.mode === 'enforce',
    rules: new Set([policy.fallback === 'allow' ? 'default-allow' : 'default-deny']),
  };
}

const hostsPool = ['a.com', 'b.a.com', 'x.b.a.com', 'c.net', 'a.com.evil.net', 'evil.net'];
const destination = fc
  .record(
    {
      host: fc.constantFrom('a.com', '*.a.com', 'b.a.com', '*.b.a.com', 'c.net'),
      cidr: fc.constantFrom(
        '10.0.0.0/8',
        '10.1.0.0/16',
        '10.1.2.3/32',
        '169.254.169.254/32',
        '2001:db8::/32',
      ),
      port: fc.constantFrom(443, 80, '8000-8080'),
      protocol: fc.constantFrom('tcp', 'udp', 'https', 'http'),
      methods: fc.constantFrom(['GET'], ['POST', 'PUT']),
      paths: fc.constantFrom(['/v1/**'], ['/a/*/b']),
    },
    { requiredKeys: [] },
  )
  .filter(
    (to) =>
      Object.keys(to).length > 0 &&
      (to.host !== undefined || (to.methods === undefined && to.paths === undefined)),
  );

function yamlOf(allow: object[], deny: { to: object; mode?: string }[], mode: string): string {
  const doc = {
    apiVersion: 'bulkhead.dev/v1',
    kind: 'EgressPolicy',
    metadata: { name: 'p' },
    spec: { appliesTo: ['app'], mode, owner: 'o', allow: allow.map((to) => ({ to })), deny },
  };
  return `${GROUP}---\n${JSON.stringify(doc)}\n`;
}

const request = fc.record(
  {
    host: fc.constantFrom(...hostsPool, 'A.COM.', '10.1.2.3', '0x0a.1.2.3'),
    ip: fc.constantFrom(
      '10.1.2.3',
      '10.2.0.1',
      '169.254.169.254',
      '::ffff:10.1.2.3',
      '2001:db8::5',
      '11.0.0.1',
    ),
    sni: fc.constantFrom(...hostsPool),
    port: fc.constantFrom(0, 80, 443, 8000, 8081),
    protocol: fc.constantFrom('tcp', 'udp', 'http', 'https') as fc.Arbitrary<DecisionRequest['protocol']>,
    method: fc.constantFrom('GET', 'post', 'DELETE'),
    path: fc.constantFrom('/v1/x', '/v1/../admin', '/a/z/b', '/a/z/y/b', '/'),
  },
  { requiredKeys: ['port', 'protocol'] },
);

describe('indexed engine = naive evaluator', () => {
  it('agrees on decision and blocking, and reports a rule that decides', () => {
    fc.assert(
      fc.property(
        fc.array(destination, { maxLength: 6 }),
        fc.array(
          fc.record(
            { to: destination, mode: fc.constantFrom('enforce', 'observe') },
            { requiredKeys: ['to'] },
          ),
          { maxLength: 3 },
        ),
        fc.constantFrom('enforce', 'observe'),
        fc.array(request, { minLength: 1, maxLength: 12 }),
        (allow, deny, mode, requests) => {
          const parsed = parsePolicy([{ file: 'p.yaml', text: yamlOf(allow, deny, mode) }]);
          if (!parsed.ok) throw new Error(parsed.errors.map((e) => `${e.path}: ${e.message}`).join('\n'));
          const policy = compilePolicy(parsed.set, APP);
          const decider = createDecider(policy);
          for (const r of requests) {
            const expected = naive(policy, r);
            const actual = decider.decide(r);
            if (expected === 'unreadable') {
              expect(actual.decision).toBe('deny');
              continue;
            }
            expect(
              { decision: actual.decision, blocked: actual.blocked },
              JSON.stringify({ r, policy: policy.rules }),
            ).toEqual({
              decision: expected.decision,
              blocked: expected.blocked,
            });
            expect(expected.rules.has(actual.rule), `${actual.rule} not in ${[...expected.rules]}`).toBe(
              true,
            );
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
