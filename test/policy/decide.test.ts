import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compilePolicy } from '../../policy/compile.js';
import { createDecider } from '../../policy/decide.js';
import { parseIdentity } from '../../policy/identity.js';
import { parsePolicy } from '../../policy/parse.js';
import type { DecisionRequest } from '../../policy/types.js';
import { APP, deciderFor, mustParse, policyYaml } from './helpers.js';

const tcp = (host: string, port = 443): DecisionRequest => ({ host, port, protocol: 'tcp' });

describe('hosts', () => {
  const d = deciderFor({ allow: ['to: { host: allowed.com }', 'to: { host: "*.wild.com" }'] });

  it.each([
    ['allowed.com', true],
    ['ALLOWED.COM', true],
    ['allowed.com.', true],
    ['Allowed.Com.', true],
    ['allowed.com.evil.com', false],
    ['evil.allowed.com', false],
    ['notallowed.com', false],
    ['x.wild.com', true],
    ['a.b.wild.com', true],
    ['wild.com', false],
    ['wild.com.evil.com', false],
    ['evilwild.com', false],
  ])('%s → allowed %s', (host, allowed) => {
    const decision = d.decide(tcp(host));
    expect(decision.decision === 'allow', `${host}: ${decision.rule}`).toBe(allowed);
    expect(d.decideName(host).decision === 'allow').toBe(allowed);
  });

  it('matches IDN names in either spelling', () => {
    const idn = deciderFor({ allow: ['to: { host: bücher.de }'] });
    expect(idn.decide(tcp('xn--bcher-kva.de')).decision).toBe('allow');
    expect(idn.decide(tcp('BÜCHER.DE')).decision).toBe('allow');
    expect(idn.decide(tcp('bucher.de')).decision).toBe('deny');
  });

  it('names the deciding rule and blocks only in enforce mode', () => {
    expect(d.decide(tcp('allowed.com'))).toEqual({
      decision: 'allow',
      mode: 'enforce',
      blocked: false,
      rule: 'p/allow[0]',
    });
    expect(d.decide(tcp('nope.com'))).toEqual({
      decision: 'deny',
      mode: 'enforce',
      blocked: true,
      rule: 'default-deny',
    });
    const observe = deciderFor({ mode: 'observe', allow: ['to: { host: allowed.com }'] });
    expect(observe.decide(tcp('nope.com'))).toEqual({
      decision: 'deny',
      mode: 'observe',
      blocked: false,
      rule: 'default-deny',
    });
  });

  it('returns frozen shared decisions, the same object on a cache hit', () => {
    const a = d.decide(tcp('allowed.com'));
    const b = d.decide(tcp('allowed.com'));
    expect(a).toBe(b);
    expect(Object.isFrozen(a)).toBe(true);
    expect(d.decide(tcp('ALLOWED.com'))).toBe(a);
    expect(d.decideUncached(tcp('allowed.com'))).toBe(a);
  });

  it('refuses unreadable destinations', () => {
    for (const host of ['', 'exa mple.com', 'a..b', '1.2.3.999', 'x'.repeat(300)])
      expect(d.decide({ host, port: 443, protocol: 'tcp' }).blocked, JSON.stringify(host)).toBe(true);
    expect(d.decide({ host: 'allowed.com', port: 70000, protocol: 'tcp' }).blocked).toBe(true);
    expect(d.decide({ host: 'allowed.com', port: 443, protocol: 'gopher' as never }).blocked).toBe(true);
    expect(d.decide({ port: 443, protocol: 'tcp' }).blocked).toBe(true);
    expect(d.decide({ host: 'allowed.com', ip: 'not-an-ip', port: 443, protocol: 'tcp' }).blocked).toBe(true);
  });
});

describe('deny beats allow; observe never blocks', () => {
  it('a deny rule wins over an allow rule for the same destination', () => {
    const d = deciderFor({
      allow: ['to: { host: "*.example.com" }'],
      deny: ['to: { host: bad.example.com }'],
    });
    expect(d.decide(tcp('good.example.com')).decision).toBe('allow');
    expect(d.decide(tcp('bad.example.com'))).toMatchObject({
      decision: 'deny',
      blocked: true,
      rule: 'p/deny[0]',
    });
    expect(d.decideName('bad.example.com')).toMatchObject({ decision: 'deny', rule: 'p/deny[0]' });
  });

  it('an observe-mode deny rule records without blocking, and never opens what default-deny closes', () => {
    const d = deciderFor({
      allow: ['to: { host: "*.example.com" }'],
      deny: [
        '{ to: { host: new.example.com }, mode: observe }',
        '{ to: { host: other.net }, mode: observe }',
      ],
    });
    expect(d.decide(tcp('new.example.com'))).toEqual({
      decision: 'deny',
      mode: 'observe',
      blocked: false,
      rule: 'p/deny[0]',
    });
    expect(d.decide(tcp('other.net'))).toMatchObject({
      decision: 'deny',
      blocked: true,
      rule: 'default-deny',
    });
  });

  it('a deny limited to a protocol other than dns leaves the DNS query alone', () => {
    const tcpOnly = deciderFor({
      allow: ['to: { host: x.com }'],
      deny: ['to: { host: x.com, protocol: tcp }'],
    });
    expect(tcpOnly.decideName('x.com').decision).toBe('allow');
    expect(tcpOnly.decide(tcp('x.com')).blocked).toBe(true);
    const dnsToo = deciderFor({
      allow: ['to: { host: x.com }'],
      deny: ['to: { host: x.com, protocol: [dns, tcp] }'],
    });
    expect(dnsToo.decideName('x.com')).toMatchObject({ decision: 'deny', rule: 'p/deny[0]' });
  });

  it('a deny rule constrained by port applies only to that port; DNS is refused only by name-only denies', () => {
    const d = deciderFor({ allow: ['to: { host: x.com }'], deny: ['to: { host: x.com, port: 25 }'] });
    expect(d.decide(tcp('x.com', 25)).blocked).toBe(true);
    expect(d.decide(tcp('x.com', 443)).blocked).toBe(false);
    expect(d.decideName('x.com').decision).toBe('allow');
  });
});

describe('ports, protocols, methods, paths', () => {
  const d = deciderFor({
    allow: [
      'to: { host: api.stripe.com, port: 443, methods: [POST], paths: ["/v1/charges/**"] }',
      'to: { host: ranges.com, port: [22, "8000-8100"], protocol: tcp }',
      'to: { host: dns.example.com, port: 53, protocol: udp }',
    ],
  });

  it('checks port lists and inclusive ranges at the edges', () => {
    for (const [port, ok] of [
      [22, true],
      [23, false],
      [7999, false],
      [8000, true],
      [8100, true],
      [8101, false],
    ] as const)
      expect(d.decide(tcp('ranges.com', port)).decision === 'allow', String(port)).toBe(ok);
  });

  it('tcp covers http and https; udp is its own', () => {
    expect(d.decide({ host: 'ranges.com', port: 8000, protocol: 'https' }).decision).toBe('allow');
    expect(d.decide({ host: 'ranges.com', port: 8000, protocol: 'udp' }).decision).toBe('deny');
    expect(d.decide({ host: 'dns.example.com', port: 53, protocol: 'udp' }).decision).toBe('allow');
    expect(d.decide({ host: 'dns.example.com', port: 53, protocol: 'tcp' }).decision).toBe('deny');
  });

  it('allows the connect before the path is known, then decides the HTTP request on method and path', () => {
    expect(d.decide(tcp('api.stripe.com')).decision).toBe('allow');
    const http = (method: string, path: string) =>
      d.decide({ host: 'api.stripe.com', port: 443, protocol: 'https', method, path }).decision;
    expect(http('POST', '/v1/charges')).toBe('allow');
    expect(http('POST', '/v1/charges/ch_1')).toBe('allow');
    expect(http('post', '/v1/charges/ch_1')).toBe('allow');
    expect(http('GET', '/v1/charges/ch_1')).toBe('deny');
    expect(http('POST', '/v1/customers')).toBe('deny');
  });

  it.each([
    '/v1/charges/../customers',
    '/v1/charges/%2e%2e/customers',
    '/v1/charges/%2E%2E/%2E%2E/admin',
    '/v1/charges/..;/customers',
    '/v1/charges\\..\\customers',
    '//v1/charges/../../admin',
    '/v1/charges/./../customers',
    '/v1/chargesX',
    '/v1/charges%2F..%2Fcustomers',
  ])('path trick %s does not pass /v1/charges/**', (path) => {
    expect(
      d.decide({ host: 'api.stripe.com', port: 443, protocol: 'https', method: 'POST', path }).decision,
    ).toBe('deny');
  });
});

describe('addresses', () => {
  const d = deciderFor({
    allow: [
      'to: { cidr: 10.0.0.0/8, port: 5432 }',
      'to: { cidr: "2001:db8::/32" }',
      'to: { host: "*.corp.example" }',
    ],
    deny: ['to: { cidr: 169.254.0.0/16 }', 'to: { cidr: 10.9.0.0/16 }'],
  });

  it.each([
    ['10.1.2.3', true],
    ['10.255.255.255', true],
    ['11.0.0.0', false],
    ['9.255.255.255', false],
    ['::ffff:10.1.2.3', true],
    ['::ffff:a01:203', true],
    ['012.1.2.3', true],
    ['0xa.1.2.3', true],
    ['167838211', true],
    ['10.9.0.1', false],
    ['2001:db8::1', true],
    ['2001:db9::1', false],
  ])('%s:5432 → allowed %s', (ip, allowed) => {
    expect(d.decide({ ip, port: 5432, protocol: 'tcp' }).decision === 'allow').toBe(allowed);
  });

  it('an IP literal given as host is decided as an address', () => {
    expect(d.decide({ host: '0x0a.0.0.1', port: 5432, protocol: 'tcp' }).decision).toBe('allow');
    expect(d.decide({ host: '[::ffff:169.254.169.254]', port: 80, protocol: 'tcp' }).blocked).toBe(true);
  });

  it('a name rebinding to the metadata address is denied; the deny CIDR wins over the allowed name', () => {
    expect(d.decide({ host: 'db.corp.example', ip: '10.2.0.1', port: 443, protocol: 'tcp' }).decision).toBe(
      'allow',
    );
    expect(
      d.decide({ host: 'db.corp.example', ip: '169.254.169.254', port: 80, protocol: 'tcp' }),
    ).toMatchObject({
      blocked: true,
      rule: 'p/deny[0]',
    });
    expect(
      d.decide({ host: 'db.corp.example', ip: '::ffff:169.254.169.254', port: 80, protocol: 'tcp' }).blocked,
    ).toBe(true);
  });

  it('a CIDR rule does not make names resolvable; an IP literal needs no DNS', () => {
    expect(d.decideName('db.internal').decision).toBe('deny');
    expect(d.decideName('10.1.1.1')).toMatchObject({ decision: 'allow', rule: 'ip-literal' });
  });
});

describe('SNI', () => {
  it('a TLS name that differs from the host must be allowed too (domain fronting)', () => {
    const d = deciderFor({ allow: ['to: { host: cdn.allowed.com }'] });
    expect(
      d.decide({ host: 'cdn.allowed.com', sni: 'cdn.allowed.com', port: 443, protocol: 'https' }).decision,
    ).toBe('allow');
    expect(
      d.decide({ host: 'cdn.allowed.com', sni: 'evil.com', port: 443, protocol: 'https' }).decision,
    ).toBe('deny');
    expect(
      d.decide({ host: 'evil.com', sni: 'cdn.allowed.com', port: 443, protocol: 'https' }).decision,
    ).toBe('deny');
    expect(d.decide({ sni: 'cdn.allowed.com', ip: '1.2.3.4', port: 443, protocol: 'tcp' }).decision).toBe(
      'allow',
    );
  });
});

describe('cloud resources', () => {
  const d = deciderFor({
    allow: [
      'to: { aws: s3, buckets: [receipts] }',
      'to: { aws: lambda, functions: [ledger-*], regions: [eu-west-1] }',
      'to: { aws: sqs, regions: [us-east-1] }',
    ],
  });
  const get = (host: string, path = '/key') =>
    d.decide({ host, port: 443, protocol: 'https', method: 'GET', path }).decision;

  it('S3 virtual-hosted, regional, dualstack and path-style endpoints reach that bucket only', () => {
    expect(get('receipts.s3.amazonaws.com')).toBe('allow');
    expect(get('receipts.s3.us-east-1.amazonaws.com')).toBe('allow');
    expect(get('receipts.s3.dualstack.eu-west-1.amazonaws.com')).toBe('allow');
    expect(get('s3.amazonaws.com', '/receipts/2024/a.pdf')).toBe('allow');
    expect(get('s3.us-west-2.amazonaws.com', '/receipts')).toBe('allow');
    expect(get('s3.dualstack.us-west-2.amazonaws.com', '/receipts/x')).toBe('allow');
    expect(get('other.s3.amazonaws.com')).toBe('deny');
    expect(get('receipts.evil.com')).toBe('deny');
    expect(get('s3.amazonaws.com', '/receipts-evil/x')).toBe('deny');
    expect(get('s3.amazonaws.com', '/other/x')).toBe('deny');
    expect(get('s3.amazonaws.com', '/receipts/../other/x')).toBe('deny');
  });

  it('Lambda: only the invoke path of the named functions, in the named region', () => {
    const invoke = (host: string, path: string, method = 'POST') =>
      d.decide({ host, port: 443, protocol: 'https', method, path }).decision;
    const host = 'lambda.eu-west-1.amazonaws.com';
    expect(invoke(host, '/2015-03-31/functions/ledger-write/invocations')).toBe('allow');
    expect(invoke(host, '/2015-03-31/functions/ledger-write%3Aprod/invocations')).toBe('allow');
    expect(
      invoke(
        host,
        '/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Aledger-x/invocations',
      ),
    ).toBe('allow');
    expect(invoke(host, '/2015-03-31/functions/payroll/invocations')).toBe('deny');
    expect(invoke(host, '/2015-03-31/functions/ledger-write/configuration', 'GET')).toBe('deny');
    expect(invoke(host, '/2015-03-31/functions/ledger-write/invocations', 'DELETE')).toBe('deny');
    expect(invoke('lambda.us-east-1.amazonaws.com', '/2015-03-31/functions/ledger-write/invocations')).toBe(
      'deny',
    );
  });

  it('aws: <service> reaches that service’s regional endpoints', () => {
    expect(d.decide(tcp('sqs.us-east-1.amazonaws.com')).decision).toBe('allow');
    expect(d.decide(tcp('sqs-fips.us-east-1.amazonaws.com')).decision).toBe('allow');
    expect(d.decide(tcp('sqs.us-east-1.api.aws')).decision).toBe('allow');
    expect(d.decide(tcp('sqs.eu-west-1.amazonaws.com')).decision).toBe('deny');
    expect(d.decide(tcp('sns.us-east-1.amazonaws.com')).decision).toBe('deny');
  });
});

describe('url rules', () => {
  const d = deciderFor({ allow: ['to: { url: "https://github.com/myproject/**" }'] });
  it('scheme, host, port and path glob together', () => {
    const req = (path: string, port = 443, protocol: 'https' | 'http' = 'https') =>
      d.decide({ host: 'github.com', port, protocol, method: 'GET', path }).decision;
    expect(req('/myproject/repo.git')).toBe('allow');
    expect(req('/myproject')).toBe('allow');
    expect(req('/otherproject/repo.git')).toBe('deny');
    expect(req('/myproject/../otherproject')).toBe('deny');
    expect(req('/myproject/x', 80, 'http')).toBe('deny');
    expect(d.decide(tcp('github.com', 443)).decision).toBe('allow');
    expect(d.decide(tcp('github.com', 22)).decision).toBe('deny');
  });
});

describe('workloads no policy selects, and exec / addons', () => {
  const set = mustParse(
    policyYaml({
      allow: ['to: { host: x.com }'],
      extra:
        '  exec: { allow: [/usr/bin/git, curl] }\n  addons: { allow: ["/var/task/node_modules/**/*.node"] }',
    }),
  );
  const other = parseIdentity('cloud=gcp,name=unrelated');

  it('default: observe — nothing blocked, everything recorded as would-deny', () => {
    const d = createDecider(compilePolicy(set, other));
    expect(d.mode).toBe('observe');
    expect(d.decide(tcp('anything.com'))).toEqual({
      decision: 'deny',
      mode: 'observe',
      blocked: false,
      rule: 'default-deny',
    });
    expect(d.decideExec('/bin/sh').blocked).toBe(false);
  });

  it('configurable by compile option and by Guardrail', () => {
    expect(
      createDecider(compilePolicy(set, other, { unselected: 'enforce' })).decide(tcp('a.com')).blocked,
    ).toBe(true);
    expect(createDecider(compilePolicy(set, other, { unselected: 'allow' })).decide(tcp('a.com')).rule).toBe(
      'default-allow',
    );
    const guarded = mustParse(
      `${policyYaml({})}---\napiVersion: bulkhead.dev/v1\nkind: Guardrail\nmetadata: { name: g }\nspec: { unselectedWorkloads: enforce }\n`,
    );
    expect(createDecider(compilePolicy(guarded, other)).decide(tcp('a.com')).blocked).toBe(true);
  });

  it('exec: the Node binary, listed paths and base names; everything else denied under enforce', () => {
    const d = createDecider(compilePolicy(set, APP), { execPath: '/opt/node/bin/node' });
    expect(d.decideExec('/opt/node/bin/node')).toMatchObject({ decision: 'allow', rule: 'exec:node' });
    expect(d.decideExec('/usr/bin/git')).toMatchObject({ decision: 'allow', rule: 'p/exec[0]' });
    expect(d.decideExec('/usr/local/bin/curl')).toMatchObject({ decision: 'allow', rule: 'p/exec[1]' });
    expect(d.decideExec('/tmp/git')).toMatchObject({ decision: 'deny', blocked: true });
    expect(d.decideExec('/tmp/node')).toMatchObject({ decision: 'deny', blocked: true });
    expect(d.decideExec('sh')).toMatchObject({ decision: 'deny', blocked: true });
    expect(d.decideExec('')).toMatchObject({ decision: 'deny', blocked: true });
    expect(
      d.decideAddon('/var/task/node_modules/better-sqlite3/build/Release/better_sqlite3.node').decision,
    ).toBe('allow');
    expect(d.decideAddon('/tmp/evil.node')).toMatchObject({ decision: 'deny', blocked: true });
  });

  it('exec.allowNode: false forbids the Node binary too', () => {
    const strict = mustParse(policyYaml({ extra: '  exec: { allowNode: false }' }));
    expect(
      createDecider(compilePolicy(strict, APP), { execPath: '/opt/node/bin/node' }).decideExec(
        '/opt/node/bin/node',
      ).blocked,
    ).toBe(true);
  });
});

describe('cache', () => {
  it('gives the same answers as the uncached path for any request sequence, across cache resets', () => {
    const compiled = compilePolicy(
      mustParse(
        policyYaml({
          allow: [
            'to: { host: "*.a.com", port: 443 }',
            'to: { cidr: 10.0.0.0/8 }',
            'to: { host: b.com, paths: ["/x/**"] }',
          ],
          deny: ['to: { host: bad.a.com }'],
        }),
      ),
      APP,
    );
    const d = createDecider(compiled, { maxCacheEntries: 7, maxDenyCacheEntries: 3 });
    const request = fc.record({
      host: fc.option(fc.constantFrom('x.a.com', 'bad.a.com', 'b.com', 'B.COM.', 'c.com', '10.1.1.1', ''), {
        nil: undefined,
      }),
      ip: fc.option(fc.constantFrom('10.1.1.1', '11.0.0.1', '::ffff:10.0.0.1'), { nil: undefined }),
      port: fc.constantFrom(0, 443, 80, 443.5, 442.875, '443' as unknown as number),
      protocol: fc.constantFrom('tcp', 'https', 'udp') as fc.Arbitrary<DecisionRequest['protocol']>,
      method: fc.option(fc.constantFrom('GET', 'POST'), { nil: undefined }),
      path: fc.option(fc.constantFrom('/x/1', '/y', '/x/../y'), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(request, { maxLength: 40 }), (requests) => {
        for (const r of requests) expect(d.decide(r)).toBe(d.decideUncached(r));
      }),
    );
    // Names: allowed and denied ones cached apart, each table starting over when full.
    const uncached = () => createDecider(compiled, {});
    const names = fc.constantFrom(
      'x.a.com',
      'bad.a.com',
      'b.com',
      'B.COM.',
      'c.com',
      'd.c.com',
      '10.1.1.1',
      '',
    );
    fc.assert(
      fc.property(fc.array(names, { maxLength: 40 }), (hosts) => {
        for (const h of hosts) expect(d.decideName(h)).toEqual(uncached().decideName(h));
      }),
    );
  });
});

describe('cache keys', () => {
  it('a port that is not an integer never shares a cached answer with a real port', () => {
    const d = deciderFor({ allow: ['to: { host: x.com, port: 443 }'] });
    expect(d.decide({ host: 'x.com', port: 443, protocol: 'tcp' }).decision).toBe('allow');
    expect(d.decide({ host: 'x.com', port: '443' as unknown as number, protocol: 'tcp' }).decision).toBe(
      'deny',
    );
    expect(d.decide({ host: 'x.com', port: 443, protocol: 'dns' }).decision).toBe('allow');
    expect(d.decide({ host: 'x.com', port: 443.5, protocol: 'tcp' }).decision).toBe('deny');
  });
});

describe('least disclosure', () => {
  it('a workload receives only the rules of policies whose groups select it', () => {
    const set = mustParse(`${policyYaml({ allow: ['to: { host: mine.com }'] })}---
apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: other }
spec: { match: { tags: { app: secret-project } } }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: secret }
spec: { appliesTo: [other], mode: enforce, owner: x, allow: [{ to: { host: secret-partner.example } }] }
`);
    const compiled = JSON.stringify(compilePolicy(set, APP));
    expect(compiled).toContain('mine.com');
    expect(compiled).not.toContain('secret-partner');
    expect(compiled).not.toContain('"other"');
  });
});

describe('hostile requests', () => {
  const d = deciderFor({
    allow: ['to: { host: api.example.com, port: 443, paths: ["/v1/**"] }', 'to: { cidr: "2001:db8::/32" }'],
    deny: ['to: { cidr: 169.254.0.0/16 }', 'to: { cidr: "fd00:ec2::254" }'],
  });

  it.each([
    'api.example.com:443',
    'api.example.com\u0000.evil.com',
    'api.example.com/evil',
    'api.example.com evil.com',
    'api.example.com@evil.com',
    'user@api.example.com',
    '*.example.com',
  ])('host %j is never allowed', (host) => {
    expect(d.decide({ host, port: 443, protocol: 'tcp' }).decision).toBe('deny');
    expect(d.decideName(host).decision).toBe('deny');
  });

  it.each([
    'fd00:ec2::254',
    'FD00:EC2:0:0:0:0:0:254',
    '[fd00:ec2::254]',
    'fd00:ec2:0000::0254',
    'fd00:ec2::254%eth0',
  ])('the EC2 IPv6 metadata address in the form %s is denied', (ip) => {
    expect(d.decide({ ip, port: 80, protocol: 'tcp' })).toMatchObject({ blocked: true, rule: 'p/deny[1]' });
    expect(d.decide({ host: ip, port: 80, protocol: 'tcp' })).toMatchObject({
      blocked: true,
      rule: 'p/deny[1]',
    });
  });

  it('a very long path or name costs a miss, not a crash', () => {
    const path = `/v1/${'a/'.repeat(50_000)}x`;
    expect(
      d.decide({ host: 'api.example.com', port: 443, protocol: 'https', method: 'GET', path }).decision,
    ).toBe('allow');
    expect(d.decide({ host: `${'a.'.repeat(5000)}example.com`, port: 443, protocol: 'tcp' }).blocked).toBe(
      true,
    );
  });

  it('never throws, and answers a frozen decision, for any request shape', () => {
    const text = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.constantFrom('api.example.com', '169.254.169.254', '::ffff:a9fe:a9fe', '0x7f.1', '', '.', '[', '%'),
    );
    const request = fc.record(
      {
        host: text,
        ip: text,
        sni: text,
        port: fc.oneof(fc.integer({ min: -5, max: 70_000 }), fc.double(), fc.constant(Number.NaN)),
        protocol: fc.oneof(
          fc.constantFrom('tcp', 'udp', 'http', 'https', 'dns'),
          fc.string({ maxLength: 6 }),
        ),
        method: fc.oneof(fc.constantFrom('GET', 'post'), fc.string({ maxLength: 8 })),
        path: text,
      },
      { requiredKeys: ['port', 'protocol'] },
    );
    fc.assert(
      fc.property(request, (r) => {
        const decision = d.decide(r as DecisionRequest);
        expect(Object.isFrozen(decision)).toBe(true);
        expect(['allow', 'deny']).toContain(decision.decision);
        expect(Object.isFrozen(d.decideName(r.host ?? ''))).toBe(true);
        expect(Object.isFrozen(d.decideExec(r.path ?? ''))).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('east-west to another SmartGroup', () => {
  const ledger = `---
apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: ledger }
spec: { match: { cloud: aws, name: ["ledger-*"], region: eu-west-1 } }
`;

  it('reaches the functions the group selects, through the Lambda invoke API, following its selector', () => {
    const set = mustParse(policyYaml({ allow: ['to: { group: ledger }'] }) + ledger);
    const d = createDecider(compilePolicy(set, APP));
    const invoke = (host: string, fn: string) =>
      d.decide({
        host,
        port: 443,
        protocol: 'https',
        method: 'POST',
        path: `/2015-03-31/functions/${fn}/invocations`,
      });
    expect(invoke('lambda.eu-west-1.amazonaws.com', 'ledger-write')).toMatchObject({
      decision: 'allow',
      rule: 'p/allow[0]',
    });
    expect(invoke('lambda.eu-west-1.amazonaws.com', 'payroll')).toMatchObject({ decision: 'deny' });
    expect(invoke('lambda.us-east-1.amazonaws.com', 'ledger-write')).toMatchObject({ decision: 'deny' });
  });

  it('refuses groups whose members cannot be addressed, and unknown groups, at the field', () => {
    const byTag = `---\napiVersion: bulkhead.dev/v1\nkind: SmartGroup\nmetadata: { name: ledger }\nspec: { match: { tags: { app: ledger } } }\n`;
    const gcp = `---\napiVersion: bulkhead.dev/v1\nkind: SmartGroup\nmetadata: { name: ledger }\nspec: { match: { cloud: gcp, name: x } }\n`;
    for (const [groups, message] of [
      [byTag, 'does not select by name'],
      [gcp, 'not AWS-only'],
      ['', 'no SmartGroup named "ledger"'],
    ] as const) {
      const result = parsePolicy([
        { file: 'p.yaml', text: policyYaml({ allow: ['to: { group: ledger }'] }) + groups },
      ]);
      expect(result.ok).toBe(false);
      if (!result.ok)
        expect(result.errors.map((e) => [e.path, e.message.includes(message)])).toEqual([
          ['spec.allow[0].to.group', true],
        ]);
    }
    const mixed = parsePolicy([
      { file: 'p.yaml', text: policyYaml({ allow: ['to: { group: ledger, host: x.com }'] }) + ledger },
    ]);
    expect(mixed.ok).toBe(false);
  });
});
