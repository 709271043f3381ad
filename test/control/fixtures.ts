// Policy texts the control tests apply.

export const PAYMENTS_V1 = `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: payments-prod }
spec:
  match: { cloud: aws, tags: { app: payments, env: prod } }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: payments-egress }
spec:
  appliesTo: [payments-prod]
  mode: enforce
  owner: team-payments
  allow:
    - to: { host: api.stripe.com, port: 443 }
`;

/** v1 plus one more allowed destination. */
export const PAYMENTS_V2 = `${PAYMENTS_V1}    - to: { host: hooks.slack.com, port: 443 }
`;

export const LEDGER_GROUP = `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: ledger }
spec:
  match: { cloud: aws, name: "ledger-*" }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: ledger-egress }
spec:
  appliesTo: [ledger]
  mode: observe
  owner: team-ledger
  allow:
    - to: { host: db.internal.example, port: 5432 }
`;

/** A port out of range on line 15. */
export const BAD_PORT = PAYMENTS_V1.replace('port: 443 }', 'port: 70000 }');

export const CHARGE_CARD = 'cloud=aws,name=charge-card,tag.app=payments,tag.env=prod';
export const REFUND = 'cloud=aws,name=refund,tag.app=payments,tag.env=prod';
export const LEDGER_WRITER = 'cloud=aws,name=ledger-writer';

/** A valid deny record (as a shim sends it) with `id`; `overrides` replace top-level fields. */
export function denyRecord(id: string, overrides: Record<string, unknown> = {}) {
  return {
    id,
    time: '2026-11-28T03:00:00.000Z',
    count: 1,
    workload: { cloud: 'aws', name: 'charge-card', 'tag.app': 'payments', 'tag.env': 'prod' },
    kind: 'connect',
    destination: { host: 'exfil.attacker.test', port: 443, protocol: 'tcp' },
    decision: 'deny',
    mode: 'enforce',
    rule: 'default-deny',
    revision: 1,
    ...overrides,
  };
}
