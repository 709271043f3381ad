import { describe, expect, it } from 'vitest';
import { formatPolicyError } from '../../policy/errors.js';
import { checkGuardrails } from '../../policy/guardrails.js';
import { mustParse, policyYaml } from './helpers.js';

function breaks(yaml: string) {
  return checkGuardrails(mustParse(yaml, 'policy.yaml')).map((e) => ({
    guardrail: e.guardrail,
    path: e.path,
    line: e.line,
  }));
}

const guardrail = (spec: string) =>
  `---\napiVersion: bulkhead.dev/v1\nkind: Guardrail\nmetadata: { name: g }\nspec:\n${spec}\n`;

describe('built-in guardrails', () => {
  it('a clean policy passes', () => {
    expect(
      breaks(policyYaml({ allow: ['to: { host: api.example.com, port: 443 }', 'to: { cidr: 10.0.0.0/8 }'] })),
    ).toEqual([]);
  });

  it.each([
    ['to: { host: "*" }', 'allow-all', 'spec.allow[0].to.host'],
    ['to: { cidr: 0.0.0.0/0 }', 'allow-all', 'spec.allow[0].to.cidr'],
    ['to: { cidr: "::/0" }', 'allow-all', 'spec.allow[0].to.cidr'],
    ['to: { port: 443 }', 'allow-all', 'spec.allow[0].to'],
    ['to: { cidr: 169.254.169.254/32 }', 'metadata-endpoint', 'spec.allow[0].to.cidr'],
    ['to: { cidr: 169.0.0.0/8 }', 'metadata-endpoint', 'spec.allow[0].to.cidr'],
    ['to: { cidr: "fd00:ec2::254" }', 'metadata-endpoint', 'spec.allow[0].to.cidr'],
    ['to: { cidr: "::ffff:169.254.169.254" }', 'metadata-endpoint', 'spec.allow[0].to.cidr'],
    ['to: { host: metadata.google.internal }', 'metadata-endpoint', 'spec.allow[0].to.host'],
    ['to: { host: "*.com" }', 'broad-wildcard', 'spec.allow[0].to.host'],
    ['to: { host: "*.co.uk" }', 'broad-wildcard', 'spec.allow[0].to.host'],
    ['to: { host: "*.amazonaws.com" }', 'broad-wildcard', 'spec.allow[0].to.host'],
    ['to: { url: "https://*.github.io/x/**" }', 'broad-wildcard', 'spec.allow[0].to.url'],
    ['to: { unix: "/**" }', 'allow-all', 'spec.allow[0].to.unix'],
    ['to: { unix: [/run/ok.sock, "/**/*"] }', 'allow-all', 'spec.allow[0].to.unix[1]'],
    ['to: { unix: "@*" }', 'allow-all', 'spec.allow[0].to.unix'],
    ['to: { unix: "/**/app.sock" }', 'broad-wildcard', 'spec.allow[0].to.unix'],
    ['to: { unix: "/*/app.sock" }', 'broad-wildcard', 'spec.allow[0].to.unix'],
    ['to: { unix: "@*-bus" }', 'broad-wildcard', 'spec.allow[0].to.unix'],
    ['to: { unix: /var/run/docker.sock }', 'container-socket', 'spec.allow[0].to.unix'],
    ['to: { unix: "/var/run/**" }', 'container-socket', 'spec.allow[0].to.unix'],
    ['to: { unix: "/run/*.sock" }', 'container-socket', 'spec.allow[0].to.unix'],
    ['to: { unix: "/run/containerd/*" }', 'container-socket', 'spec.allow[0].to.unix'],
    ['to: { unix: "/**/docker.sock" }', 'container-socket', 'spec.allow[0].to.unix'],
  ])('%s breaks %s at %s', (rule, guardrailId, path) => {
    const found = breaks(policyYaml({ allow: [rule] }));
    expect(found.map((b) => [b.guardrail, b.path])).toContainEqual([guardrailId, path]);
  });

  it('deny rules may name anything', () => {
    expect(
      breaks(
        policyYaml({
          deny: [
            'to: { cidr: 0.0.0.0/0 }',
            'to: { cidr: 169.254.0.0/16 }',
            'to: { host: "*.com" }',
            'to: { unix: ["/**", "@*", /var/run/docker.sock] }',
          ],
        }),
      ),
    ).toEqual([]);
  });

  it('unix: a narrow socket allow passes, and a socket rule is not "every destination"', () => {
    expect(
      breaks(
        policyYaml({
          allow: ['to: { unix: [/var/run/app.sock, /tmp/app-*.sock, "/run/myapp/**", "@myapp-*", "@*"] }'],
        }),
      ).map((b) => [b.guardrail, b.path]),
    ).toEqual([['allow-all', 'spec.allow[0].to.unix[4]']]);
    expect(breaks(policyYaml({ allow: ['to: { unix: "/run/myapp/*.sock" }'] }))).toEqual([]);
  });

  it('unix guardrails switch off like the others, and yield to a guardrail-wide exception', () => {
    const docker = policyYaml({ allow: ['to: { unix: /var/run/docker.sock }'] });
    expect(breaks(docker + guardrail('  forbidContainerSockets: false'))).toEqual([]);
    expect(
      breaks(
        docker +
          guardrail(
            '  exceptions:\n    - { policy: p, guardrails: [container-socket], reason: builds images (Docker-in-Docker) }',
          ),
      ),
    ).toEqual([]);
    // An exception naming hosts or CIDRs only does not reach sockets.
    expect(
      breaks(
        docker +
          guardrail(
            '  exceptions:\n    - { policy: p, guardrails: [container-socket], hosts: [docker.example.com], reason: r }',
          ),
      ).map((b) => b.guardrail),
    ).toEqual(['container-socket']);
    expect(
      breaks(policyYaml({ allow: ['to: { unix: "/**" }'] }) + guardrail('  forbidAllowAll: false')),
    ).toEqual([]);
  });

  it('every policy names an owner (spec.owner or the bulkhead.dev/owner annotation)', () => {
    const noOwner = policyYaml({}).replace('  owner: team@example.com\n', '');
    const found = checkGuardrails(mustParse(noOwner, 'p.yaml'));
    expect(found.map((e) => e.guardrail)).toEqual(['owner-required']);
    expect(formatPolicyError(found[0] as never)).toMatch(
      /^p\.yaml:\d+:\d+ spec: every policy names an owner/,
    );
    const annotated = noOwner.replace(
      'metadata: { name: p }',
      'metadata: { name: p, annotations: { bulkhead.dev/owner: sre } }',
    );
    expect(breaks(annotated)).toEqual([]);
  });

  it('locates each break on its line', () => {
    const yaml = policyYaml({ allow: ['to: { host: ok.example.com }', 'to: { cidr: 0.0.0.0/0 }'] });
    const line = yaml.split('\n').findIndex((l) => l.includes('0.0.0.0/0')) + 1;
    expect(breaks(yaml)[0]?.line).toBe(line);
  });
});

describe('kind: Guardrail', () => {
  it('an exception naming the metadata endpoint lets that policy allow exactly it', () => {
    const exception = guardrail(
      '  exceptions:\n    - { policy: p, guardrails: [metadata-endpoint], cidrs: [169.254.169.254/32], reason: IMDS role credentials }',
    );
    expect(breaks(policyYaml({ allow: ['to: { cidr: 169.254.169.254/32 }'] }) + exception)).toEqual([]);
    expect(
      breaks(policyYaml({ allow: ['to: { cidr: 169.254.0.0/16 }'] }) + exception).map((b) => b.guardrail),
    ).toEqual(['metadata-endpoint']);
    const otherPolicy = guardrail(
      '  exceptions:\n    - { policy: someone-else, cidrs: [169.254.169.254/32], reason: x }',
    );
    expect(breaks(policyYaml({ allow: ['to: { cidr: 169.254.169.254/32 }'] }) + otherPolicy)).toHaveLength(1);
  });

  it('an exception must say what it allows', () => {
    const found = breaks(policyYaml({}) + guardrail('  exceptions:\n    - { policy: p, reason: because }'));
    expect(found.map((b) => b.path)).toEqual(['spec.exceptions[0]']);
  });

  it('built-ins can be switched off, and extended with forbidden destinations', () => {
    expect(
      breaks(policyYaml({ allow: ['to: { host: "*.com" }'] }) + guardrail('  forbidBroadWildcards: false')),
    ).toEqual([]);
    const forbid = guardrail(
      '  forbidDestinations:\n    - { host: "*.ngrok.io", reason: tunnels }\n    - { cidr: 10.66.0.0/16 }',
    );
    const found = breaks(
      policyYaml({
        allow: ['to: { host: x.ngrok.io }', 'to: { host: ok.example.com }', 'to: { cidr: 10.0.0.0/8 }'],
      }) + forbid,
    );
    expect(found.map((b) => [b.guardrail, b.path])).toEqual([
      ['forbidden-destination', 'spec.allow[0].to.host'],
      ['forbidden-destination', 'spec.allow[2].to.cidr'],
    ]);
  });

  it('requireEnforce refuses observe-mode policies; conflicting settings are an error', () => {
    expect(
      breaks(policyYaml({ mode: 'observe' }) + guardrail('  requireEnforce: true')).map((b) => b.guardrail),
    ).toEqual(['enforce-required']);
    const conflict = `${policyYaml({})}${guardrail('  unselectedWorkloads: allow')}---\napiVersion: bulkhead.dev/v1\nkind: Guardrail\nmetadata: { name: g2 }\nspec: { unselectedWorkloads: enforce }\n`;
    expect(breaks(conflict).map((b) => b.path)).toEqual(['spec.unselectedWorkloads']);
  });

  it('requireObserveFirst: a new policy must start in observe mode; an existing one may enforce', () => {
    const rule = guardrail('  requireObserveFirst: true');
    const enforced = mustParse(policyYaml({ allow: ['to: { host: a.example.com }'] }) + rule);
    const observed = mustParse(
      policyYaml({ mode: 'observe', allow: ['to: { host: a.example.com }'] }) + rule,
    );
    const empty = mustParse(rule);
    expect(checkGuardrails(enforced, { previous: empty }).map((e) => [e.guardrail, e.path])).toEqual([
      ['observe-first', 'spec.mode'],
    ]);
    expect(checkGuardrails(observed, { previous: empty })).toEqual([]);
    expect(checkGuardrails(enforced, { previous: observed })).toEqual([]);
    expect(checkGuardrails(enforced)).toEqual([]);
  });
});
