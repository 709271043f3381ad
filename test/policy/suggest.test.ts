// policy suggest: records in, rules out — and the rules, applied in enforce mode, let through
// exactly what was recorded (the decider says so, request by request).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkGuardrails,
  compilePolicy,
  createDecider,
  type DecisionRequest,
  type DenyRecord,
  isIdentifierSegment,
  mergeSuggestion,
  parseIdentity,
  parsePolicy,
  pathGlobOf,
  renderSuggestion,
  suggestPolicy,
} from '../../policy/index.js';
import { mustParse } from './helpers.js';

const IDENTITY = parseIdentity('cloud=aws,name=charge,region=eu-west-1,tag.app=payments');

const OBSERVE = `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: payments }
spec:
  match: { tags: { app: payments } }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: payments-egress }
spec:
  appliesTo: [payments]
  mode: observe
  owner: payments-team@example.com
  deny:
    - to: { host: known-bad.test }
---
apiVersion: bulkhead.dev/v1
kind: Guardrail
metadata: { name: org }
spec:
  forbidDestinations:
    - host: "*.attacker.test"
      reason: threat intel
`;

let sequence = 0;
function record(
  kind: DenyRecord['kind'],
  destination: DenyRecord['destination'],
  extra: Partial<DenyRecord> = {},
): DenyRecord {
  sequence++;
  return {
    id: `r${sequence}`,
    time: `2026-12-0${1 + (sequence % 4)}T10:00:00.000Z`,
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

const http = (host: string, port: number, method: string, path: string, pkg = 'axios@1.7.2') =>
  record('http', { host, port, protocol: 'http', method, path }, { origin: { package: pkg } });
const connect = (host: string | undefined, ip: string, port: number) =>
  record('connect', { ...(host ? { host } : {}), ip, port, protocol: 'tcp' });

/** The set with the suggestion merged in enforce mode, parsed as `policy check` would, and its decider. */
function enforced(records: DenyRecord[], base = OBSERVE) {
  const set = mustParse(base);
  const suggestion = suggestPolicy(records, set, 'payments');
  const merged = mergeSuggestion([{ file: 'policy.yaml', text: base }], set, suggestion, { mode: 'enforce' });
  const parsed = parsePolicy([{ file: 'merged.yaml', text: merged.text }]);
  if (!parsed.ok) throw new Error(`${merged.text}\n${JSON.stringify(parsed.errors, null, 2)}`);
  expect(checkGuardrails(parsed.set)).toEqual([]);
  const decider = createDecider(compilePolicy(parsed.set, IDENTITY));
  return { suggestion, merged, decider, set: parsed.set };
}

describe('path globs', () => {
  it('collapses numbers, UUIDs and long hex to *, keeps words', () => {
    expect(pathGlobOf('/v1/charges/8812/refunds')).toBe('/v1/charges/*/refunds');
    expect(pathGlobOf('/users/3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b')).toBe('/users/*');
    expect(pathGlobOf('/commits/9fceb02d0ae598e95dc970b74767f19372d61af8')).toBe('/commits/*');
    expect(pathGlobOf('/v1/health')).toBe('/v1/health');
    expect(pathGlobOf('/v1/cafebabe')).toBe('/v1/cafebabe'); // a word, not an id
    expect(pathGlobOf('/a//b/../c?x=1')).toBe('/a/c');
    expect(pathGlobOf('/v1/items/')).toBe('/v1/items/');
    expect(pathGlobOf('/')).toBe('/');
  });

  it('property: a glob always passes the policy path check and matches the path it came from', () => {
    const segment = fc.oneof(
      fc.stringMatching(/^[a-z]{1,8}$/),
      fc.nat().map(String),
      fc.uuid(),
      fc.stringMatching(/^[0-9a-f]{12,40}$/),
      fc.string({ maxLength: 6 }),
    );
    fc.assert(
      fc.property(fc.array(segment, { maxLength: 6 }), (segments) => {
        const path = `/${segments.map(encodeURIComponent).join('/')}`;
        const text = `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: g }
spec: { match: {} }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: p }
spec:
  appliesTo: [g]
  mode: enforce
  owner: t
`;
        const records = [http('api.test', 443, 'GET', path)];
        const set = mustParse(text);
        const suggestion = suggestPolicy(records, set, 'g');
        const merged = mergeSuggestion([{ file: 'p.yaml', text }], set, suggestion, { mode: 'enforce' });
        const parsed = parsePolicy([{ file: 'm.yaml', text: merged.text }]);
        expect(parsed.ok, merged.text).toBe(true);
        if (!parsed.ok) return;
        const decider = createDecider(compilePolicy(parsed.set, {}));
        expect(
          decider.decide({ host: 'api.test', port: 443, protocol: 'https', method: 'GET', path }).decision,
        ).toBe('allow');
        for (const s of segments)
          if (isIdentifierSegment(s) && s.length >= 8) expect(merged.text).not.toContain(s);
      }),
      { numRuns: 150 },
    );
  });
});

describe('suggestPolicy', () => {
  it('one rule per destination with methods and collapsed paths, usage counted per package', () => {
    const records = [
      http('api.payments.test', 8443, 'POST', '/v1/charges/1001', 'axios@1.7.2'),
      http('api.payments.test', 8443, 'POST', '/v1/charges/1002', 'axios@1.7.2'),
      { ...http('api.payments.test', 8443, 'GET', '/v1/charges/1003/refunds', 'got@14.6.6'), count: 5 },
      connect('api.payments.test', '127.0.0.2', 8443),
      record('dns', { host: 'api.payments.test' }),
    ];
    const { rules, requests, records: read } = suggestPolicy(records, mustParse(OBSERVE), 'payments');
    expect(read).toBe(5);
    expect(requests).toBe(9);
    expect(rules).toHaveLength(1);
    expect(rules[0]?.to).toEqual({
      host: 'api.payments.test',
      port: 8443,
      methods: ['GET', 'POST'],
      paths: ['/v1/charges/*', '/v1/charges/*/refunds'],
    });
    expect(rules[0]?.packages).toEqual([
      { package: 'got@14.6.6', requests: 5 },
      { package: 'axios@1.7.2', requests: 2 },
      { package: '(unknown)', requests: 1 }, // the connect; its lookup is the same request
    ]);
  });

  it('recognises S3 buckets (both endpoint styles) and Lambda functions (name and ARN)', () => {
    const records = [
      http('receipts.s3.eu-west-1.amazonaws.com', 443, 'PUT', '/2026/12/r-1.pdf'),
      http('s3.eu-west-1.amazonaws.com', 443, 'GET', '/audit-logs/2026/12/01.json'),
      connect('s3.eu-west-1.amazonaws.com', '52.0.0.1', 443),
      http('lambda.eu-west-1.amazonaws.com', 443, 'POST', '/2015-03-31/functions/ledger-write/invocations'),
      http(
        'lambda.eu-west-1.amazonaws.com',
        443,
        'POST',
        '/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Aledger-read%3Alive/invocations',
      ),
    ];
    const { rules } = suggestPolicy(records, mustParse(OBSERVE), 'payments');
    expect(rules.map((r) => r.to)).toEqual(
      expect.arrayContaining([
        { aws: 's3', buckets: ['receipts'], regions: ['eu-west-1'], port: 443, methods: ['PUT'] },
        { aws: 's3', buckets: ['audit-logs'], regions: ['eu-west-1'], port: 443, methods: ['GET'] },
        { aws: 'lambda', functions: ['ledger-write'], regions: ['eu-west-1'], port: 443 },
        { aws: 'lambda', functions: ['ledger-read'], regions: ['eu-west-1'], port: 443 },
      ]),
    );
    expect(rules).toHaveLength(4);
  });

  it('warns instead of suggesting what a guardrail forbids, what a deny rule named, floods and tamper', () => {
    const records = [
      http('exfil.attacker.test', 80, 'POST', '/collect'),
      connect(undefined, '169.254.169.254', 80),
      connect('known-bad.test', '127.0.0.9', 443),
      { ...connect('known-bad.test', '127.0.0.9', 443), rule: 'payments-egress/deny[0]' },
      record(
        'dns',
        { host: 'a1.tunnel.test' },
        {
          count: 5000,
          aggregate: { pattern: '*.tunnel.test', distinct: 5000, sample: ['a1.tunnel.test'] },
        },
      ),
      record('tamper', { command: 'process.binding' }),
    ];
    const { rules, warnings } = suggestPolicy(records, mustParse(OBSERVE), 'payments');
    expect(rules.map((r) => r.to)).toEqual([{ host: 'known-bad.test', port: 443 }]);
    const reasons = warnings.map((w) => `${w.destination}: ${w.reason}`).join('\n');
    expect(reasons).toMatch(/exfil\.attacker\.test:80: .*Guardrail forbids \(threat intel\)/);
    expect(reasons).toMatch(/169\.254\.169\.254:80: .*metadata/);
    expect(reasons).toMatch(/known-bad\.test:443: denied by the rule payments-egress\/deny\[0\]/);
    expect(reasons).toMatch(/\*\.tunnel\.test \(dns\): a flood of 5,000 distinct/);
    expect(reasons).toMatch(/tamper: /);
  });

  it('the rendered suggestion passes policy check on its own and names its usage', () => {
    const set = mustParse(OBSERVE);
    const suggestion = suggestPolicy(
      [
        http('api.payments.test', 443, 'POST', '/v1/charges/7'),
        http('exfil.attacker.test', 80, 'POST', '/x'),
      ],
      set,
      'payments',
    );
    const text = renderSuggestion(suggestion, set, { window: 'since 2026-11-28' });
    expect(text).toContain('# axios@1.7.2 (1×) · 1 request');
    expect(text).toContain('exfil.attacker.test:80 (1×)');
    expect(text).toMatch(
      /to: \{ host: api\.payments\.test, port: 443, methods: \[ POST \], paths: \[ "?\/v1\/charges\/\*"? \] \}/,
    );
    const parsed = parsePolicy([{ file: 'suggested.yaml', text }]);
    expect(parsed.ok).toBe(true);
    if (parsed.ok) expect(checkGuardrails(parsed.set)).toEqual([]);
  });
});

describe('the applied suggestion allows what was observed and nothing else', () => {
  const observed: { record: DenyRecord; request: DecisionRequest }[] = [
    {
      record: http('api.payments.test', 8443, 'POST', '/v1/charges/4242'),
      request: {
        host: 'api.payments.test',
        port: 8443,
        protocol: 'http',
        method: 'POST',
        path: '/v1/charges/4242',
      },
    },
    {
      record: http('api.fraud.test', 443, 'GET', '/score/3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b'),
      request: {
        host: 'api.fraud.test',
        port: 443,
        protocol: 'https',
        method: 'GET',
        path: '/score/3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b',
      },
    },
    {
      record: connect('db.internal.test', '10.20.0.5', 5432),
      request: { host: 'db.internal.test', ip: '10.20.0.5', port: 5432, protocol: 'tcp' },
    },
    {
      record: connect(undefined, '10.30.0.7', 6379),
      request: { ip: '10.30.0.7', port: 6379, protocol: 'tcp' },
    },
    {
      record: record('udp', { ip: '10.40.0.1', port: 8125, protocol: 'udp' }),
      request: { ip: '10.40.0.1', port: 8125, protocol: 'udp' },
    },
    {
      record: http('receipts.s3.eu-west-1.amazonaws.com', 443, 'PUT', '/2026/r.pdf'),
      request: {
        host: 'receipts.s3.eu-west-1.amazonaws.com',
        port: 443,
        protocol: 'https',
        method: 'PUT',
        path: '/2026/r.pdf',
      },
    },
  ];
  const exec = record('exec', { command: '/usr/bin/git' });
  const addon = record('addon', { command: '/var/task/node_modules/bcrypt/build/Release/bcrypt.node' });

  it('every observed request is allowed, with another id too', () => {
    const { decider } = enforced([...observed.map((o) => o.record), exec, addon]);
    expect(decider.mode).toBe('enforce');
    for (const { request } of observed)
      expect(decider.decide(request), JSON.stringify(request)).toMatchObject({ decision: 'allow' });
    expect(
      decider.decide({ ...(observed[0]?.request as DecisionRequest), path: '/v1/charges/4243' }).decision,
    ).toBe('allow');
    expect(decider.decideName('api.payments.test').decision).toBe('allow');
    expect(decider.decideExec('/usr/bin/git').decision).toBe('allow');
    expect(decider.decideAddon('/var/task/node_modules/bcrypt/build/Release/bcrypt.node').decision).toBe(
      'allow',
    );
  });

  it('nothing else: other hosts, ports, methods, paths, addresses, transports, buckets, programs', () => {
    const { decider } = enforced([...observed.map((o) => o.record), exec, addon]);
    const denied: DecisionRequest[] = [
      { host: 'api.payments.test', port: 8443, protocol: 'http', method: 'DELETE', path: '/v1/charges/4242' },
      { host: 'api.payments.test', port: 8443, protocol: 'http', method: 'POST', path: '/v1/admin/4242' },
      { host: 'api.payments.test', port: 443, protocol: 'https', method: 'POST', path: '/v1/charges/4242' },
      { host: 'evil.payments.test', port: 8443, protocol: 'http', method: 'POST', path: '/v1/charges/4242' },
      { host: 'api.fraud.test', port: 443, protocol: 'https', method: 'POST', path: '/score/1' },
      { host: 'db.internal.test', ip: '10.20.0.6', port: 5433, protocol: 'tcp' },
      { ip: '10.30.0.8', port: 6379, protocol: 'tcp' },
      { ip: '10.30.0.7', port: 6380, protocol: 'tcp' },
      { ip: '10.40.0.1', port: 8125, protocol: 'tcp' },
      { host: 'other.s3.eu-west-1.amazonaws.com', port: 443, protocol: 'https', method: 'PUT', path: '/x' },
      { host: 'exfil.attacker.test', port: 80, protocol: 'http', method: 'POST', path: '/' },
    ];
    for (const request of denied)
      expect(decider.decide(request), JSON.stringify(request)).toMatchObject({
        decision: 'deny',
        blocked: true,
      });
    expect(decider.decideName('exfil.attacker.test').decision).toBe('deny');
    expect(decider.decideExec('/usr/bin/curl').decision).toBe('deny');
    expect(decider.decideAddon('/tmp/evil.node').decision).toBe('deny');
  });

  it('replace drops the old allow rules (with a note), merge keeps them', () => {
    const base = OBSERVE.replace(
      '  deny:\n',
      '  allow:\n    - to: { host: api.old.test, port: 443 }\n  deny:\n',
    );
    const records = [observed[0]?.record as DenyRecord];
    const replaced = enforced(records, base);
    expect(replaced.decider.decide({ host: 'api.old.test', port: 443, protocol: 'tcp' }).decision).toBe(
      'deny',
    );
    expect(replaced.merged.notes.join('\n')).toMatch(
      /its 1 allow rule\(s\) replaced by 1 suggested; mode enforce/,
    );
    expect(replaced.merged.notes.join('\n')).toMatch(/--merge keeps them/);
    const set = mustParse(base);
    const merged = mergeSuggestion(
      [{ file: 'p.yaml', text: base }],
      set,
      suggestPolicy(records, set, 'payments'),
      {
        mode: 'enforce',
        merge: true,
      },
    );
    expect(merged.text).toContain('api.old.test');
    expect(merged.text).toContain('api.payments.test');
    // Other documents keep their comments.
    expect(
      mergeSuggestion(
        [{ file: 'p.yaml', text: `# keep me\n${base}` }],
        set,
        suggestPolicy(records, set, 'payments'),
        { mode: 'enforce' },
      ).text,
    ).toContain('# keep me');
  });
});
