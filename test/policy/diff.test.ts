import { describe, expect, it } from 'vitest';
import { diffPolicies } from '../../policy/diff.js';
import { parseIdentity } from '../../policy/identity.js';
import { mustParse, policyYaml } from './helpers.js';

describe('diffPolicies', () => {
  const before = mustParse(
    policyYaml({
      allow: ['to: { host: a.com, port: 443 }', 'to: { host: b.com }'],
      deny: ['to: { host: x.com }'],
    }),
  );

  it('nothing changed → no entries', () => {
    expect(diffPolicies(before, before, [parseIdentity('tag.app=demo')])).toEqual({
      changed: false,
      groups: [],
      workloads: [],
    });
  });

  it('lists what becomes reachable and unreachable per SmartGroup and per workload', () => {
    const after = mustParse(
      policyYaml({ allow: ['to: { host: a.com, port: 443 }', 'to: { host: c.com, port: "8000-8001" }'] }),
    );
    const diff = diffPolicies(before, after, [parseIdentity('tag.app=demo'), parseIdentity('tag.app=other')]);
    expect(diff.changed).toBe(true);
    expect(diff.groups).toHaveLength(1);
    const group = diff.groups[0];
    expect(group?.group).toBe('app');
    expect(group?.reachable.map((c) => c.destination).sort()).toEqual([
      'host=c.com port=8000-8001',
      'host=x.com',
    ]);
    expect(group?.unreachable.map((c) => c.destination)).toEqual(['host=b.com']);
    expect(diff.workloads.map((w) => w.workload)).toEqual(['tag.app=demo']);
  });

  it('reports a mode flip and added groups', () => {
    const after = mustParse(
      `${policyYaml({ mode: 'observe', allow: ['to: { host: a.com, port: 443 }', 'to: { host: b.com }'], deny: ['to: { host: x.com }'] })}`,
    );
    const diff = diffPolicies(before, after);
    expect(diff.groups[0]).toMatchObject({ modeBefore: 'enforce', modeAfter: 'observe' });
    const empty = mustParse('');
    expect(diffPolicies(empty, before).groups[0]).toMatchObject({ group: 'app', status: 'added' });
  });
});
