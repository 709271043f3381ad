import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../policy/canonical.js';
import { compilePolicy, scopeOf } from '../../policy/compile.js';
import { parseIdentity } from '../../policy/identity.js';
import { parsePolicy } from '../../policy/parse.js';
import { APP, mustParse, policyYaml } from './helpers.js';

const text = `${policyYaml({ allow: ['to: { host: a.com }'] })}---
apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: prod }
spec: { match: { tags: { env: prod }, cloud: [aws, gcp], name: "charge-*" } }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: prod-egress }
spec: { appliesTo: [prod], mode: observe, owner: x, allow: [{ to: { host: prod.example } }] }
`;

describe('compilePolicy', () => {
  it('same input → same bytes, whatever the document order', () => {
    const docs = text.split('\n---\n');
    const reversed = mustParse([...docs].reverse().join('\n---\n'));
    const a = canonicalJson(compilePolicy(mustParse(text), APP));
    expect(canonicalJson(compilePolicy(mustParse(text), APP))).toBe(a);
    expect(canonicalJson(compilePolicy(reversed, APP))).toBe(a);
  });

  it('merges every policy of every group that selects the workload; enforce wins the default mode', () => {
    const both = parseIdentity('cloud=aws,name=charge-card,tag.app=demo,tag.env=prod');
    const compiled = compilePolicy(mustParse(text), both);
    expect(compiled.scope.groups.map((g) => g.name)).toEqual(['app', 'prod']);
    expect(compiled.policies.map((p) => [p.name, p.mode])).toEqual([
      ['p', 'enforce'],
      ['prod-egress', 'observe'],
    ]);
    expect(compiled.mode).toBe('enforce');
    expect(compiled.rules.map((r) => r.id)).toEqual(['p/allow[0]', 'prod-egress/allow[0]']);
    const prodOnly = compilePolicy(mustParse(text), parseIdentity('cloud=gcp,name=charge-x,tag.env=prod'));
    expect(prodOnly.mode).toBe('observe');
    expect(prodOnly.rules.map((r) => r.id)).toEqual(['prod-egress/allow[0]']);
    expect(
      compilePolicy(mustParse(text), parseIdentity('cloud=azure,name=charge-x,tag.env=prod')).scope.groups,
    ).toEqual([]);
  });

  it('scope: equal for workloads selected by the same groups, different otherwise', () => {
    const set = mustParse(text);
    const a = scopeOf(set, parseIdentity('tag.app=demo,name=one'));
    expect(scopeOf(set, parseIdentity('tag.app=demo,name=two'))).toBe(a);
    expect(scopeOf(set, parseIdentity('tag.app=demo,tag.env=prod,cloud=aws,name=charge-1'))).not.toBe(a);
    expect(compilePolicy(set, APP).scope.id).toBe(a);
    expect(a).toMatch(/^scope-[0-9a-f]{16}$/);
  });

  it('compiles a 10,000-rule policy', () => {
    const rules = Array.from(
      { length: 10_000 },
      (_, i) => `    - to: { host: h${i}.example.com, port: 443 }`,
    ).join('\n');
    const parsed = parsePolicy([
      {
        file: 'big.yaml',
        text: policyYaml({}).replace('  owner: team@example.com', `  owner: x\n  allow:\n${rules}`),
      },
    ]);
    expect(parsed.ok).toBe(true);
    if (parsed.ok) expect(compilePolicy(parsed.set, APP).rules).toHaveLength(10_000);
  });
});
