// Unix-domain socket destinations: compiled section, decideUnix, normalisation, bundle checks.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../policy/canonical.js';
import { compilePolicy } from '../../policy/compile.js';
import { type CompiledPolicy, checkCompiledPolicy } from '../../policy/compiled.js';
import { createDecider } from '../../policy/decide.js';
import { parseIdentity } from '../../policy/identity.js';
import { checkUnixPattern, compileUnixPattern, normalizeUnixPath } from '../../policy/unix.js';
import { APP, deciderFor, mustParse, policyYaml } from './helpers.js';

const DOCKER = '/var/run/docker.sock';

describe('normalizeUnixPath', () => {
  it.each([
    ['/var/run/docker.sock', '/var/run/docker.sock'],
    ['//var//run///docker.sock', '/var/run/docker.sock'],
    ['/var/./run/./docker.sock', '/var/run/docker.sock'],
    ['/tmp/../var/run/docker.sock', '/var/run/docker.sock'],
    ['/../../../var/run/docker.sock', '/var/run/docker.sock'],
    ['/tmp/app.sock/', '/tmp/app.sock'],
    ['/tmp/x/..', '/tmp'],
    ['/', '/'],
    ['/tmp/a..b/.hidden.sock', '/tmp/a..b/.hidden.sock'],
    ['/tmp/back\\slash', '/tmp/back\\slash'],
    ['@my-abstract-name', '@my-abstract-name'],
    ['@/tmp/../x//y', '@/tmp/../x//y'],
    ['@', '@'],
  ])('%s → %s', (input, expected) => {
    expect(normalizeUnixPath(input)).toBe(expected);
  });

  it.each([
    [''],
    ['relative.sock'],
    ['./app.sock'],
    ['../app.sock'],
    ['/run/app\0.sock'],
    ['@name\0'],
    ['\0abstract'],
  ])('%j is unreadable', (input) => {
    expect(normalizeUnixPath(input)).toBeUndefined();
  });

  it('returns a normal path unchanged (same string, no allocation)', () => {
    const text = '/run/app/db.sock';
    expect(normalizeUnixPath(text)).toBe(text);
  });

  it('is idempotent and never yields "..", "." or empty segments or a trailing "/" for a path', () => {
    const segment = fc.oneof(
      fc.constantFrom('', '.', '..', '...', 'a', 'run', 'x.sock', '.x', '..x'),
      fc.string({ maxLength: 6 }),
    );
    const input = fc.oneof(
      fc.array(segment, { maxLength: 8 }).map((parts) => `/${parts.join('/')}`),
      fc.string({ maxLength: 40 }),
      fc.string({ maxLength: 40 }).map((s) => `@${s}`),
    );
    fc.assert(
      fc.property(input, (text) => {
        const normal = normalizeUnixPath(text);
        if (normal === undefined) return;
        expect(normalizeUnixPath(normal)).toBe(normal);
        if (normal.startsWith('@')) {
          expect(normal).toBe(text);
          return;
        }
        expect(normal.startsWith('/')).toBe(true);
        expect(normal).not.toContain('//');
        const segments = normal.slice(1).split('/');
        expect(segments).not.toContain('..');
        expect(segments).not.toContain('.');
        if (normal !== '/') expect(normal.endsWith('/')).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('checkUnixPattern and compileUnixPattern', () => {
  it('accepts normal absolute path globs and abstract name patterns', () => {
    for (const p of ['/var/run/docker.sock', '/tmp/app-*.sock', '/run/**', '/**', '@x', '@dbus-*', '@*'])
      expect(checkUnixPattern(p), p).toBeUndefined();
    for (const p of ['x', '', '/a/../b', '/a//b', '/a/', '/a/.', '/a**', '@', '/\0', '/'])
      expect(checkUnixPattern(p), p).toBeTypeOf('string');
  });

  it('path patterns match only paths, @ patterns only abstract names', () => {
    expect(compileUnixPattern('/**')('@x')).toBe(false);
    expect(compileUnixPattern('/**')('/x')).toBe(true);
    expect(compileUnixPattern('@*')('/x')).toBe(false);
    expect(compileUnixPattern('@*')('@')).toBe(true);
    expect(compileUnixPattern('@/tmp/*')('@/tmp/a/b')).toBe(true);
    expect(compileUnixPattern('/tmp/*')('/tmp/a/b')).toBe(false);
    expect(compileUnixPattern('/tmp/*.sock')('/tmp/a.sock')).toBe(true);
    expect(compileUnixPattern('/run/**')('/run')).toBe(true);
    expect(compileUnixPattern('@bus')('@bus')).toBe(true);
    expect(compileUnixPattern('@bus')('@bus2')).toBe(false);
  });
});

describe('compiling unix rules', () => {
  const text = policyYaml({
    allow: [
      'to: { host: a.com }',
      'to: { unix: [/var/run/app.sock, "@app-*", /var/run/app.sock] }',
      'to: { unix: /tmp/db.sock }',
    ],
    deny: ['to: { unix: /var/run/docker.sock }', '{ to: { unix: "/run/**" }, mode: observe }'],
  });

  it('go to their own section, never to the network rules', () => {
    const compiled = compilePolicy(mustParse(text), APP);
    expect(compiled.rules.map((r) => r.id)).toEqual(['p/allow[0]']);
    expect(compiled.unix).toEqual({
      rules: [
        { id: 'p/allow[1]', action: 'allow', mode: 'enforce', glob: '/var/run/app.sock' },
        { id: 'p/allow[1]', action: 'allow', mode: 'enforce', glob: '@app-*' },
        { id: 'p/allow[2]', action: 'allow', mode: 'enforce', glob: '/tmp/db.sock' },
        { id: 'p/deny[0]', action: 'deny', mode: 'enforce', glob: DOCKER },
        { id: 'p/deny[1]', action: 'deny', mode: 'observe', glob: '/run/**' },
      ],
    });
    expect(checkCompiledPolicy(compiled)).toBeUndefined();
    expect(canonicalJson(compilePolicy(mustParse(text), APP))).toBe(canonicalJson(compiled));
  });

  it('a policy without them compiles to the same bytes as before (no unix section)', () => {
    const compiled = compilePolicy(mustParse(policyYaml({ allow: ['to: { host: a.com }'] })), APP);
    expect(compiled).not.toHaveProperty('unix');
    expect(canonicalJson(compiled)).not.toContain('unix');
  });

  it('a decider that ignores the section sees no unanchored rule: a unix allow opens no network request', () => {
    const compiled = compilePolicy(mustParse(policyYaml({ allow: ['to: { unix: "/**" }'] })), APP);
    expect(compiled.rules).toEqual([]);
    const { unix: _unix, ...older } = compiled;
    const d = createDecider(older as CompiledPolicy);
    expect(d.decide({ host: 'evil.test', port: 443, protocol: 'tcp' }).rule).toBe('default-deny');
    expect(d.decideUnix('/var/run/app.sock').rule).toBe('default-deny');
    const withSection = createDecider(compiled);
    expect(withSection.decide({ host: 'evil.test', port: 443, protocol: 'tcp' }).rule).toBe('default-deny');
    expect(withSection.decideName('evil.test').rule).toBe('default-deny');
    expect(withSection.decideUnix('/var/run/app.sock').rule).toBe('p/allow[0]');
  });
});

describe('decideUnix', () => {
  const d = deciderFor({
    allow: [
      'to: { unix: [/var/run/app.sock, /tmp/app-*.sock, "/run/app/**"] }',
      'to: { unix: ["@my-abstract-name", "@dbus-*"] }',
      'to: { unix: "/var/run/**" }',
    ],
    deny: ['to: { unix: /var/run/docker.sock }', '{ to: { unix: "/run/app/secret/**" }, mode: observe }'],
  });

  it.each([
    ['/var/run/app.sock', 'allow', 'p/allow[0]'],
    ['/tmp/app-1.sock', 'allow', 'p/allow[0]'],
    ['/tmp/app-1/x.sock', 'deny', 'default-deny'],
    ['/tmp/other.sock', 'deny', 'default-deny'],
    ['/run/app/a/b/c.sock', 'allow', 'p/allow[0]'],
    ['@my-abstract-name', 'allow', 'p/allow[1]'],
    ['@dbus-1234', 'allow', 'p/allow[1]'],
    ['@my-abstract-name2', 'deny', 'default-deny'],
    ['/my-abstract-name', 'deny', 'default-deny'],
    ['@/var/run/app.sock', 'deny', 'default-deny'],
    ['/var/run/other.sock', 'allow', 'p/allow[2]'],
    // Deny beats allow, whatever the spelling.
    [DOCKER, 'deny', 'p/deny[0]'],
    ['/tmp/../var/run/docker.sock', 'deny', 'p/deny[0]'],
    ['//var//run/./docker.sock', 'deny', 'p/deny[0]'],
    ['/var/run/x/../docker.sock', 'deny', 'p/deny[0]'],
    ['/../../var/run/docker.sock/', 'deny', 'p/deny[0]'],
    // Unreadable input is denied.
    ['', 'deny', 'default-deny'],
    ['docker.sock', 'deny', 'default-deny'],
    ['var/run/app.sock', 'deny', 'default-deny'],
    ['/var/run/app.sock\0/x', 'deny', 'default-deny'],
  ])('%j → %s by %s', (path, decision, rule) => {
    expect(d.decideUnix(path)).toMatchObject({
      decision,
      rule,
      mode: 'enforce',
      blocked: decision === 'deny',
    });
  });

  it('an observing deny wins over an allow, as a record that blocks nothing', () => {
    expect(d.decideUnix('/run/app/secret/key.sock')).toEqual({
      decision: 'deny',
      mode: 'observe',
      blocked: false,
      rule: 'p/deny[1]',
    });
    // Without an allow it opens nothing: the default deny decides.
    const only = deciderFor({ deny: ['{ to: { unix: "/run/**" }, mode: observe }'] });
    expect(only.decideUnix('/run/x.sock')).toMatchObject({ rule: 'default-deny', blocked: true });
  });

  it('the first matching allow names the rule; answers are frozen and cached', () => {
    const first = d.decideUnix('/var/run/app.sock');
    expect(Object.isFrozen(first)).toBe(true);
    expect(d.decideUnix('/var/run/app.sock')).toBe(first);
    expect(d.decideUnix('/var/run/./app.sock')).toBe(first);
  });

  it('observe mode records without blocking; Unix sockets are denied by default under enforce', () => {
    const observe = deciderFor({ mode: 'observe', allow: ['to: { unix: /run/a.sock }'] });
    expect(observe.decideUnix('/run/b.sock')).toEqual({
      decision: 'deny',
      mode: 'observe',
      blocked: false,
      rule: 'default-deny',
    });
    const none = deciderFor({ allow: ['to: { host: a.com }'] });
    expect(none.decideUnix('/run/b.sock')).toMatchObject({ rule: 'default-deny', blocked: true });
  });

  it('fallback allow: unmatched sockets are allowed, unreadable ones still denied', () => {
    const set = mustParse(policyYaml({ allow: ['to: { unix: /run/a.sock }'] }));
    const other = parseIdentity('cloud=aws,name=x,tag.app=other');
    const open = createDecider(compilePolicy(set, other, { unselected: 'allow' }));
    expect(open.decideUnix('/run/b.sock')).toMatchObject({ decision: 'allow', rule: 'default-allow' });
    expect(open.decideUnix('b.sock')).toEqual({
      decision: 'deny',
      mode: 'observe',
      blocked: false,
      rule: 'default-deny',
    });
    const openEnforce = createDecider({
      ...compilePolicy(set, other, { unselected: 'allow' }),
      mode: 'enforce',
    });
    expect(openEnforce.decideUnix('')).toMatchObject({
      decision: 'deny',
      blocked: true,
      rule: 'default-deny',
    });
    const observed = createDecider(compilePolicy(set, other));
    expect(observed.decideUnix('/run/a.sock')).toMatchObject({ rule: 'default-deny', blocked: false });
  });

  it('never throws, and answers a frozen decision, for any input', () => {
    const input = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.string({ unit: 'binary', maxLength: 60 }),
      fc
        .array(fc.constantFrom('', '.', '..', 'var', 'run', 'docker.sock', 'app', '*'), { maxLength: 8 })
        .map((parts) => `/${parts.join('/')}`),
      fc.string({ maxLength: 30 }).map((s) => `@${s}`),
    );
    fc.assert(
      fc.property(input, (text) => {
        const decision = d.decideUnix(text);
        expect(Object.isFrozen(decision)).toBe(true);
        expect(['allow', 'deny']).toContain(decision.decision);
        // Whatever the spelling, the docker socket is never allowed.
        if (normalizeUnixPath(text) === DOCKER) expect(decision.rule).toBe('p/deny[0]');
      }),
      { numRuns: 2000 },
    );
    for (const junk of [undefined, null, 42, {}, [], Symbol('x')])
      expect(d.decideUnix(junk as unknown as string)).toMatchObject({ decision: 'deny' });
    expect(d.decideUnix(`/${'a/'.repeat(50_000)}x.sock`)).toMatchObject({ decision: 'deny' });
  });
});

describe('checkCompiledPolicy on the unix section', () => {
  const base = compilePolicy(mustParse(policyYaml({ allow: ['to: { unix: /run/a.sock }'] })), APP);
  const rule = { id: 'p/allow[0]', action: 'allow', mode: 'enforce', glob: '/run/a.sock' };

  it.each([
    [null, 'policy.unix: expected an object'],
    [[], 'policy.unix: expected an object'],
    ['x', 'policy.unix: expected an object'],
    [{}, 'policy.unix.rules: expected an array'],
    [{ rules: {} }, 'policy.unix.rules: expected an array'],
    [{ rules: [null] }, 'policy.unix.rules[0]: not an object'],
    [{ rules: [rule, { ...rule, id: 3 }] }, 'policy.unix.rules[1]: id: expected a string'],
    [{ rules: [{ ...rule, action: 'maybe' }] }, 'policy.unix.rules[0]: action: expected allow or deny'],
    [{ rules: [{ ...rule, mode: 'loud' }] }, 'policy.unix.rules[0]: mode: expected enforce or observe'],
    [{ rules: [{ ...rule, glob: 7 }] }, 'policy.unix.rules[0]: glob: expected a non-empty string'],
    [{ rules: [{ ...rule, glob: '' }] }, 'policy.unix.rules[0]: glob: expected a non-empty string'],
    [{ rules: [{ ...rule, glob: 'run/a.sock' }] }, 'policy.unix.rules[0]: glob: expected an absolute'],
    [{ rules: [{ ...rule, glob: '/tmp/../run/a.sock' }] }, 'policy.unix.rules[0]: glob: ".." segments'],
    [{ rules: [{ ...rule, glob: '/run/a\0' }] }, 'policy.unix.rules[0]: glob: must not contain a NUL'],
  ])('%j → %s', (unix, problem) => {
    expect(checkCompiledPolicy({ ...base, unix })).toMatch(
      new RegExp(`^${problem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    );
  });

  it('absent or empty is well formed', () => {
    const { unix: _unix, ...without } = base;
    expect(checkCompiledPolicy(without)).toBeUndefined();
    expect(checkCompiledPolicy({ ...base, unix: { rules: [] } })).toBeUndefined();
    expect(checkCompiledPolicy(base)).toBeUndefined();
  });
});
