import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatPolicyError } from '../../policy/errors.js';
import { parsePolicy } from '../../policy/parse.js';
import { GROUP, mustParse, policyYaml } from './helpers.js';

function errorsOf(text: string, file = 'payments.yaml') {
  const result = parsePolicy([{ file, text }]);
  if (result.ok) throw new Error('expected errors');
  return result.errors;
}

describe('parsePolicy', () => {
  it('parses multi-document YAML into groups, policies and guardrails', () => {
    const set = mustParse(`${policyYaml({ allow: ['to: { host: api.example.com, port: 443 }'] })}---
apiVersion: bulkhead.dev/v1
kind: Guardrail
metadata: { name: base }
spec: { unselectedWorkloads: enforce }
`);
    expect(set.groups.map((g) => g.metadata.name)).toEqual(['app']);
    expect(set.policies[0]?.spec.allow?.[0]?.to.host).toBe('api.example.com');
    expect(set.guardrails[0]?.spec.unselectedWorkloads).toBe('enforce');
  });

  it('points at file:line:column and the field path', () => {
    const text = policyYaml({
      allow: [
        'to: { host: a.example.com }',
        'to: { host: b.example.com }',
        'to: { host: c.example.com, port: 70000 }',
      ],
    });
    const errors = errorsOf(text);
    expect(errors).toHaveLength(1);
    const line = text.split('\n').findIndex((l) => l.includes('70000')) + 1;
    const column = (text.split('\n')[line - 1] as string).indexOf('70000') + 1;
    expect(formatPolicyError(errors[0] as never)).toBe(
      `payments.yaml:${line}:${column} spec.allow[2].to.port: expected 1-65535, got 70000`,
    );
  });

  it('reports every error at once, unknown fields at the key', () => {
    const text = `${GROUP}---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: p }
spec:
  appliesTo: [app, missing]
  mode: enforse
  owner: me
  alow:
    - to: { host: x.com }
  allow:
    - to: { hots: x.com }
    - to: { cidr: 10.0.0.1/8 }
    - to: { host: "api-*.x.com" }
    - to: { url: "https://x.com/a?b=c" }
    - to: { host: x.com, paths: ["/a/../b"] }
    - to: { aws: s3 }
`;
    const errors = errorsOf(text);
    const byPath = Object.fromEntries(errors.map((e) => [e.path, e]));
    expect(Object.keys(byPath).sort()).toEqual(
      [
        'spec.mode',
        'spec.alow',
        'spec.allow[0].to.hots',
        'spec.allow[1].to.cidr',
        'spec.allow[2].to.host',
        'spec.allow[3].to.url',
        'spec.allow[4].to.paths[0]',
        'spec.allow[5].to.aws',
      ].sort(),
    );
    expect(byPath['spec.alow']?.message).toContain('did you mean "allow"');
    expect(byPath['spec.allow[0].to.hots']?.message).toContain('did you mean "host"');
    expect(byPath['spec.allow[1].to.cidr']?.message).toContain('did you mean 10.0.0.0/8');
    const lines = text.split('\n');
    expect(
      lines[(byPath['spec.alow']?.line ?? 0) - 1]?.slice((byPath['spec.alow']?.column ?? 0) - 1),
    ).toMatch(/^alow:/);
    // appliesTo references are checked once the documents are valid (second pass below).
    const refs = errorsOf(policyYaml({}).replace('appliesTo: [app]', 'appliesTo: [app, missing]'));
    expect(refs.map((e) => [e.path, e.message])).toEqual([
      ['spec.appliesTo[1]', 'no SmartGroup named "missing" in this policy set'],
    ]);
  });

  it('unix destinations: each malformed pattern is an error at its line and column, saying what is wrong', () => {
    const rules = [
      'to: { unix: run/app.sock }',
      'to: { unix: "" }',
      'to: { unix: "/run/app\\0.sock" }',
      'to: { unix: /tmp/../var/run/docker.sock }',
      'to: { unix: [/run/ok.sock, /run//app.sock] }',
      'to: { unix: /run/app/ }',
      'to: { unix: /run/./app.sock }',
      'to: { unix: "/run/app**.sock" }',
      'to: { unix: "@" }',
      'to: { unix: /, }',
      'to: { unix: [] }',
      'to: { unix: /run/app.sock, host: a.com, port: 443 }',
      'to: { unix: /run/app.sock, paths: [/x] }',
    ];
    const text = policyYaml({ allow: rules.slice(0, 7), deny: rules.slice(7) });
    const errors = errorsOf(text);
    const lines = text.split('\n');
    const at = (e: (typeof errors)[number]) => lines[e.line - 1]?.slice(e.column - 1);
    const found = errors.map((e) => [e.path, e.message, at(e)]);
    expect(found).toEqual([
      [
        'spec.allow[0].to.unix',
        'expected an absolute socket path ("/var/run/app.sock") or an abstract socket name ("@name"), got "run/app.sock"',
        expect.stringMatching(/^run\/app\.sock/),
      ],
      ['spec.allow[1].to.unix', 'must not be empty', expect.stringMatching(/^""/)],
      [
        'spec.allow[2].to.unix',
        'must not contain a NUL byte (write an abstract socket name as "@name")',
        expect.stringMatching(/^"\/run\/app/),
      ],
      [
        'spec.allow[3].to.unix',
        '".." segments are not allowed: write the path they lead to, got "/tmp/../var/run/docker.sock"',
        expect.stringMatching(/^\/tmp\/\.\./),
      ],
      [
        'spec.allow[4].to.unix[1]',
        'path is not normal ("//", "." segments or a trailing "/"): "/run//app.sock" reads as "/run/app.sock"',
        expect.stringMatching(/^\/run\/\/app/),
      ],
      [
        'spec.allow[5].to.unix',
        'path is not normal ("//", "." segments or a trailing "/"): "/run/app/" reads as "/run/app"',
        expect.stringMatching(/^\/run\/app\//),
      ],
      [
        'spec.allow[6].to.unix',
        'path is not normal ("//", "." segments or a trailing "/"): "/run/./app.sock" reads as "/run/app.sock"',
        expect.stringMatching(/^\/run\/\.\//),
      ],
      [
        'spec.deny[0].to.unix',
        '"**" must be a whole segment ("/a/**/b"); use "*" within a segment, got "/run/app**.sock"',
        expect.stringMatching(/^"\/run\/app\*\*/),
      ],
      [
        'spec.deny[1].to.unix',
        'the abstract socket name after "@" must not be empty',
        expect.stringMatching(/^"@"/),
      ],
      [
        'spec.deny[2].to.unix',
        '"/" is a directory, not a socket ("/**" is every path)',
        expect.stringMatching(/^\/,/),
      ],
      ['spec.deny[3].to.unix', 'expected at least 1 item(s)', expect.stringMatching(/^\[\]/)],
      [
        'spec.deny[4].to.unix',
        'unix names a local socket, not a network destination: do not combine it with host, port',
        expect.stringMatching(/^\/run\/app\.sock, host/),
      ],
      [
        'spec.deny[5].to.unix',
        'unix names a local socket, not a network destination: do not combine it with paths',
        expect.stringMatching(/^\/run\/app\.sock, paths/),
      ],
    ]);
    expect(formatPolicyError(errors[0] as never)).toMatch(
      /^payments\.yaml:\d+:\d+ spec\.allow\[0\]\.to\.unix: expected an absolute socket path/,
    );
  });

  it('unix destinations: paths, globs and abstract names parse, alone or as a list', () => {
    const set = mustParse(
      policyYaml({
        allow: [
          'to: { unix: /var/run/app.sock }',
          'to: { unix: [/tmp/app-*.sock, "/run/**", "@my-abstract-name", "@dbus-*", /run/a..b/.x.sock] }',
        ],
        deny: ['{ to: { unix: /var/run/docker.sock }, mode: observe }'],
      }),
    );
    expect(set.policies[0]?.spec.allow?.map((r) => r.to.unix)).toEqual([
      '/var/run/app.sock',
      ['/tmp/app-*.sock', '/run/**', '@my-abstract-name', '@dbus-*', '/run/a..b/.x.sock'],
    ]);
  });

  it('rejects duplicate keys, wrong apiVersion and kind, and names duplicates', () => {
    expect(errorsOf('apiVersion: bulkhead.dev/v1\napiVersion: x\n')[0]?.message).toMatch(
      /[Uu]nique|duplicate/,
    );
    expect(errorsOf('apiVersion: bulkhead.dev/v2\nkind: SmartGroup\n')[0]).toMatchObject({
      path: 'apiVersion',
      line: 1,
    });
    expect(errorsOf('apiVersion: bulkhead.dev/v1\nkind: Firewall\n')[0]).toMatchObject({
      path: 'kind',
      line: 2,
      column: 7,
    });
    const dup = errorsOf(`${GROUP}---\n${GROUP}`);
    expect(dup[0]).toMatchObject({
      path: 'metadata.name',
      line: 9,
      message: 'duplicate SmartGroup name "app"',
    });
  });

  it('accepts JSON: one document or a list of documents', () => {
    const group = {
      apiVersion: 'bulkhead.dev/v1',
      kind: 'SmartGroup',
      metadata: { name: 'g' },
      spec: { match: {} },
    };
    const policy = {
      apiVersion: 'bulkhead.dev/v1',
      kind: 'EgressPolicy',
      metadata: { name: 'p' },
      spec: {
        appliesTo: ['g'],
        mode: 'observe',
        owner: 'me',
        allow: [{ to: { host: 'x.com', port: 99999 } }],
      },
    };
    const one = parsePolicy([{ file: 'g.json', text: JSON.stringify(group) }]);
    expect(one.ok).toBe(true);
    const list = parsePolicy([{ file: 'all.json', text: JSON.stringify([group, policy], null, 2) }]);
    expect(list.ok).toBe(false);
    if (!list.ok) expect(list.errors[0]).toMatchObject({ file: 'all.json', path: 'spec.allow[0].to.port' });
  });

  it('refuses YAML tags, alias bombs and merge tricks without throwing', () => {
    const bomb = `a: &a [x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]
`;
    expect(parsePolicy([{ file: 'bomb.yaml', text: bomb }]).ok).toBe(false);
    expect(parsePolicy([{ file: 't.yaml', text: '!!js/function "x"' }]).ok).toBe(false);
    const proto = parsePolicy([
      {
        file: 'p.yaml',
        text: `${GROUP}---\napiVersion: bulkhead.dev/v1\nkind: EgressPolicy\nmetadata: { name: p, __proto__: { x: 1 } }\nspec: { appliesTo: [app], mode: observe, owner: me }\n`,
      },
    ]);
    expect(proto.ok).toBe(false);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('never throws on arbitrary text, only returns its typed result', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (text) => {
        const result = parsePolicy([{ file: 'fuzz.yaml', text }]);
        if (!result.ok)
          for (const e of result.errors) {
            expect(e.file).toBe('fuzz.yaml');
            expect(e.line).toBeGreaterThanOrEqual(1);
            expect(e.column).toBeGreaterThanOrEqual(1);
            expect(typeof e.message).toBe('string');
          }
      }),
      { numRuns: 300 },
    );
  });

  it('never throws on structurally plausible documents with arbitrary values', () => {
    const anyValue = fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }),
      fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
    );
    const to = fc.dictionary(
      fc.constantFrom(
        'host',
        'url',
        'port',
        'protocol',
        'methods',
        'paths',
        'cidr',
        'aws',
        'buckets',
        'functions',
        'regions',
        'unix',
        'x',
      ),
      anyValue,
      { maxKeys: 4 },
    );
    fc.assert(
      fc.property(fc.array(fc.record({ to }), { maxLength: 4 }), anyValue, (allow, mode) => {
        const doc = {
          apiVersion: 'bulkhead.dev/v1',
          kind: 'EgressPolicy',
          metadata: { name: 'p' },
          spec: { appliesTo: ['g'], mode, allow },
        };
        const result = parsePolicy([{ file: 'doc.json', text: JSON.stringify(doc) }]);
        expect(typeof result.ok).toBe('boolean');
      }),
      { numRuns: 300 },
    );
  });
});
