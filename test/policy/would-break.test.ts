// What would break: observe-mode records decided again under a new set; those it blocks, per group.
import { describe, expect, it } from 'vitest';
import {
  type DenyRecord,
  mergeSuggestion,
  parseIdentity,
  suggestPolicy,
  wouldBreak,
} from '../../policy/index.js';
import { mustParse } from './helpers.js';

const IDENTITY = parseIdentity('cloud=aws,name=charge,tag.app=payments');
const OTHER = parseIdentity('cloud=aws,name=refund,tag.app=payments');

const OBSERVE = `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: payments }
spec: { match: { tags: { app: payments } } }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: payments-egress }
spec:
  appliesTo: [payments]
  mode: observe
  owner: team
  allow:
    - to: { host: api.payments.test, port: 443 }
`;

let n = 0;
function record(
  kind: DenyRecord['kind'],
  destination: DenyRecord['destination'],
  extra: Partial<DenyRecord> = {},
): DenyRecord {
  n++;
  return {
    id: `r${n}`,
    time: '2026-12-01T00:00:00.000Z',
    count: 1,
    workload: IDENTITY,
    kind,
    destination,
    decision: 'deny',
    mode: 'observe',
    rule: 'default-deny',
    revision: 1,
    ...extra,
  };
}

const RECORDS: DenyRecord[] = [
  record(
    'http',
    { host: 'api.fraud.test', port: 443, protocol: 'https', method: 'POST', path: '/v1/score/17' },
    { count: 4 },
  ),
  record(
    'http',
    { host: 'api.fraud.test', port: 443, protocol: 'https', method: 'POST', path: '/v1/score/18' },
    { workload: OTHER },
  ),
  record('dns', { host: 'api.fraud.test' }),
  record('exec', { command: '/usr/bin/git' }),
  // Blocked when recorded: not "breaking" (it never worked).
  record('connect', { host: 'exfil.test', port: 80 }, { mode: 'enforce' }),
];

describe('wouldBreak', () => {
  it('observe → enforce without new rules: the would-deny traffic breaks, per group and destination', () => {
    const enforce = mustParse(OBSERVE.replace('mode: observe', 'mode: enforce'));
    const result = wouldBreak(RECORDS, enforce);
    expect(result.records).toBe(4);
    expect(result.breaking).toBe(4);
    expect(result.groups).toEqual([
      {
        group: 'payments',
        requests: 7,
        destinations: [
          {
            destination: 'api.fraud.test:443 POST /v1/score/*',
            kind: 'http',
            requests: 5,
            workloads: 2,
            rule: 'default-deny',
          },
          {
            destination: 'api.fraud.test (lookup)',
            kind: 'dns',
            requests: 1,
            workloads: 1,
            rule: 'default-deny',
          },
          { destination: 'exec /usr/bin/git', kind: 'exec', requests: 1, workloads: 1, rule: 'default-deny' },
        ],
      },
    ]);
  });

  it('the same change with the suggestion merged breaks nothing; staying in observe breaks nothing', () => {
    const observe = mustParse(OBSERVE);
    const suggestion = suggestPolicy(RECORDS, observe, 'payments');
    const merged = mergeSuggestion([{ file: 'p.yaml', text: OBSERVE }], observe, suggestion, {
      mode: 'enforce',
      merge: true,
    });
    expect(wouldBreak(RECORDS, mustParse(merged.text))).toMatchObject({
      records: 4,
      breaking: 0,
      groups: [],
    });
    expect(wouldBreak(RECORDS, observe).breaking).toBe(0);
  });

  it('a workload no group selects any more is listed under (no SmartGroup) when the default blocks it', () => {
    const enforceAll = mustParse(`${OBSERVE.replace('app: payments } } }', 'app: billing } } }')}---
apiVersion: bulkhead.dev/v1
kind: Guardrail
metadata: { name: g }
spec: { unselectedWorkloads: enforce }
`);
    expect(wouldBreak(RECORDS, enforceAll).groups.map((g) => g.group)).toEqual(['(no SmartGroup)']);
  });
});
