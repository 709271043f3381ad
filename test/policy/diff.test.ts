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

  it('a unix destination opening or closing shows, per SmartGroup and per workload pattern', () => {
    const socketsBefore = mustParse(
      policyYaml({
        allow: ['to: { host: a.com }', 'to: { unix: [/run/app.sock, "@app-*"] }'],
        deny: ['to: { unix: /var/run/docker.sock }', '{ to: { unix: "/run/**" }, mode: observe }'],
      }),
    );
    const socketsAfter = mustParse(
      policyYaml({
        allow: ['to: { host: a.com }', 'to: { unix: [/run/app.sock, /tmp/db.sock] }'],
        deny: ['{ to: { unix: "/run/**" }, mode: observe }'],
      }),
    );
    const diff = diffPolicies(socketsBefore, socketsAfter, [parseIdentity('tag.app=demo')]);
    expect(diff.groups[0]?.reachable).toEqual([
      { rule: 'p/allow[1]', action: 'allow', destination: 'unix=/run/app.sock,/tmp/db.sock' },
      { rule: 'p/deny[0]', action: 'deny', destination: 'unix=/var/run/docker.sock' },
    ]);
    expect(diff.groups[0]?.unreachable).toEqual([
      { rule: 'p/allow[1]', action: 'allow', destination: 'unix=/run/app.sock,@app-*' },
    ]);
    const workload = diff.workloads[0];
    expect(workload?.reachable.map((c) => [c.destination, c.rule])).toEqual([
      ['unix=/tmp/db.sock', 'p/allow[1]'],
      ['unix=/var/run/docker.sock', 'p/deny[0]'],
    ]);
    expect(workload?.unreachable.map((c) => [c.destination, c.rule])).toEqual([
      ['unix=@app-*', 'p/allow[1]'],
    ]);
    expect(diffPolicies(socketsAfter, socketsAfter, [parseIdentity('tag.app=demo')]).changed).toBe(false);
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
