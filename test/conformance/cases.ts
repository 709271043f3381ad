// The kernel conformance cases: what test/conformance/generate.ts runs through the TypeScript
// kernel to write test/conformance/table.json, which every other kernel (the Python one in
// runtime-shims/python) must reproduce row for row. Policies are YAML compiled with the real
// compiler and signed with the test-only key of keys.ts; a few bundles are hand-written compiled
// policies or payloads, to reach what the compiler never emits but a verifier must still read.
//
// Keep names that IDNA 2003 (Python's codec, which the Python shim must follow) and UTS #46
// (WHATWG, the TS kernel) spell differently out of here: `ß`, final sigma, ZWJ/ZWNJ, labels mixing
// scripts of both directions, characters assigned after Unicode 3.2 (see runtime-shims/python/src/
// bulkhead_shim/kernel/host.py). Likewise times other than the ECMAScript date-time format.
import type { CompiledPolicy } from '../../policy/compiled.js';
import type { Envelope } from '../../policy/types.js';

export const WORKLOAD = 'cloud=aws,name=fn,region=us-east-1,tag.app=demo';
/** A workload no SmartGroup of the set selects (the unselected-workload bundles). */
export const UNSELECTED_WORKLOAD = 'cloud=gcp,name=unrelated';
export const ISSUED_AT = '2026-01-01T00:00:00.000Z';
export const EXPIRES_AT = '2026-01-02T00:00:00.000Z';
/** The clock of every row that does not name its own `now` (epoch milliseconds). */
export const NOW = Date.parse('2026-01-01T12:00:00.000Z');
/** The interpreter `exec.allowNode` allows, unless a row names its own `execPath`. */
export const EXEC_PATH = '/var/lang/bin/python3.12';

export type Op = 'decide' | 'decideName' | 'decideExec' | 'decideAddon' | 'decideUnix' | 'create' | 'verify';

export interface PolicyDoc {
  name: string;
  mode?: 'enforce' | 'observe';
  allow?: string[];
  deny?: string[];
  /** YAML flow mappings for `spec.exec` / `spec.addons`. */
  exec?: string;
  addons?: string;
}

/** What the generator hands a tamper function: signing with the table's keys. */
export interface SignTools {
  /** base64 Ed25519 signature over the DSSE pre-authentication encoding of `body`. */
  sign(body: Uint8Array, key?: 'main' | 'other'): string;
  keyId(key?: 'main' | 'other'): string;
}

export type BundleSpec =
  /** Policy set YAML (the `app` SmartGroup plus these policies) compiled for `workload`. */
  | {
      kind: 'yaml';
      policies: PolicyDoc[];
      unselected?: 'observe' | 'enforce' | 'allow';
      workload?: string;
      revision?: number;
      key?: 'main' | 'other';
    }
  /** A hand-written compiled policy, signed with signBundle. */
  | { kind: 'compiled'; policy: CompiledPolicy; revision?: number }
  /** Exact payload text, signed (for what canonical JSON cannot spell: `1.0`, a BOM, bad fields). */
  | { kind: 'payload'; text: (base: Record<string, unknown>) => string; key?: 'main' | 'other' }
  /** Another bundle's envelope, altered. */
  | { kind: 'envelope'; from: string; tamper: (envelope: Envelope, tools: SignTools) => string }
  /** Envelope text as is. */
  | { kind: 'text'; text: string };

export interface Case {
  group: string;
  op: Op;
  bundle: string;
  input: Record<string, unknown>;
  /** Appended to the generated row name. */
  note?: string;
}

// ---------------------------------------------------------------------------------------------
// Bundles

const y = (name: string, mode: 'enforce' | 'observe', rest: Omit<PolicyDoc, 'name' | 'mode'>): PolicyDoc => ({
  name,
  mode,
  ...rest,
});

const MINIMAL_SCOPE = { id: 'scope-conformance', groups: [], excludes: [] };

function compiled(rules: CompiledPolicy['rules'], extra: Partial<CompiledPolicy> = {}): CompiledPolicy {
  return {
    format: 1,
    scope: MINIMAL_SCOPE,
    mode: 'enforce',
    fallback: 'deny',
    policies: [{ name: 'e', mode: 'enforce' }],
    rules,
    exec: { allowNode: true, allow: [] },
    addons: { allow: [] },
    ...extra,
  };
}

/** JSON text of `base` with `path` set to `value` (or removed when `value` is undefined). */
function withField(base: Record<string, unknown>, path: string[], value: unknown): string {
  const copy = structuredClone(base) as Record<string, unknown>;
  let node: Record<string, unknown> = copy;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string, unknown>;
  const last = path[path.length - 1] as string;
  if (value === undefined) delete node[last];
  else node[last] = value;
  return JSON.stringify(copy);
}

/** `after`, which must differ from `before` (a tamper that changes nothing tests nothing). */
function changed(before: string, after: string): string {
  if (before === after) throw new Error('conformance case: the tampered text is unchanged');
  return after;
}

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');

export const BUNDLES: Record<string, BundleSpec> = {
  hosts: {
    kind: 'yaml',
    revision: 5,
    policies: [
      y('p', 'enforce', {
        allow: [
          'to: { host: allowed.com }',
          'to: { host: "*.wild.com" }',
          'to: { host: bücher.example }',
          'to: { host: "*.münchen.example" }',
          'to: { host: _svc.example }',
          'to: { host: cdn.allowed.com }',
          'to: { host: "*.deep.example", port: 443 }',
          'to: { host: [one.example, two.example] }',
        ],
        deny: ['to: { host: bad.wild.com }', 'to: { host: "*.blocked.wild.com" }'],
      }),
    ],
  },
  // The bundle the verification rows start from (small: its tampered copies are in the table too).
  small: {
    kind: 'yaml',
    revision: 5,
    policies: [y('p', 'enforce', { allow: ['to: { host: allowed.com }'] })],
  },
  ports: {
    kind: 'yaml',
    policies: [
      y('p', 'enforce', {
        allow: [
          'to: { host: ranges.example, port: [22, "8000-8100"], protocol: tcp }',
          'to: { host: any.example }',
          'to: { host: fixed.example, port: 443 }',
        ],
        deny: ['to: { host: any.example, port: 25 }', 'to: { host: any.example, port: "6000-6010" }'],
      }),
    ],
  },
  protocols: {
    kind: 'yaml',
    policies: [
      y('p', 'enforce', {
        allow: [
          'to: { host: tcp.example, protocol: tcp }',
          'to: { host: udp.example, protocol: udp }',
          'to: { host: http.example, protocol: http }',
          'to: { host: https.example, protocol: https }',
          'to: { host: dns.example, protocol: dns }',
          'to: { host: web.example, protocol: [http, https] }',
          'to: { host: any.example }',
          'to: { host: dnsdeny.example }',
        ],
        deny: ['to: { host: any.example, protocol: udp }', 'to: { host: dnsdeny.example, protocol: dns }'],
      }),
    ],
  },
  http: {
    kind: 'yaml',
    policies: [
      y('p', 'enforce', {
        allow: [
          'to: { host: api.example.com, port: 443, methods: [POST], paths: ["/v1/charges/**"] }',
          'to: { host: files.example.com, paths: ["/public/*", "/docs/**/index.html", "/a/*/c", "/exact", "/pre*fix/x", "/**/deep.txt"] }',
          'to: { host: methods.example.com, methods: [GET, HEAD] }',
          'to: { url: "https://github.com/myproject/**" }',
          'to: { url: "http://plain.example.com:8080/status" }',
        ],
        deny: [
          'to: { host: api.example.com, paths: ["/v1/charges/secret/**"] }',
          'to: { host: files.example.com, methods: [DELETE] }',
        ],
      }),
    ],
  },
  cidr: {
    kind: 'yaml',
    policies: [
      y('p', 'enforce', {
        allow: [
          'to: { cidr: 10.0.0.0/8, port: 5432 }',
          'to: { cidr: "2001:db8::/32" }',
          'to: { cidr: 192.168.1.7 }',
          'to: { cidr: "::ffff:172.16.0.0/108" }',
          'to: { cidr: 127.0.0.0/8, port: 9000 }',
          'to: { host: "*.corp.example" }',
          'to: { host: db.pinned.example, cidr: 10.20.0.0/16 }',
          'to: { cidr: "fe80::/10" }',
        ],
        deny: [
          'to: { cidr: 169.254.0.0/16 }',
          'to: { cidr: 10.9.0.0/16 }',
          'to: { cidr: "fd00:ec2::254" }',
          '{ to: { cidr: "fe80::/10", port: 22 }, mode: observe }',
        ],
      }),
    ],
  },
  aws: {
    kind: 'yaml',
    policies: [
      y('p', 'enforce', {
        allow: [
          'to: { aws: s3, buckets: [receipts, logs.archive] }',
          'to: { aws: s3, buckets: [eu-data], regions: [eu-west-1] }',
          'to: { aws: lambda, functions: ["ledger-*", billing], regions: [eu-west-1] }',
          'to: { aws: sqs, regions: [us-east-1] }',
          'to: { aws: dynamodb }',
        ],
      }),
    ],
  },
  modes: {
    kind: 'yaml',
    policies: [
      y('strict', 'enforce', {
        allow: [
          'to: { host: a.example }',
          'to: { host: b.example }',
          'to: { host: c.example }',
          'to: { host: e.example }',
        ],
        deny: ['{ to: { host: c.example }, mode: observe }'],
      }),
      y('trial', 'observe', {
        allow: ['to: { host: t.example }'],
        deny: [
          'to: { host: a.example }',
          'to: { host: d.example }',
          '{ to: { host: e.example }, mode: enforce }',
        ],
      }),
    ],
  },
  observe: {
    kind: 'yaml',
    policies: [
      y('watch', 'observe', {
        allow: ['to: { host: "*.example" }'],
        deny: ['to: { host: b.example }'],
        exec: '{ allow: [git] }',
      }),
    ],
  },
  open: {
    kind: 'yaml',
    unselected: 'allow',
    workload: UNSELECTED_WORKLOAD,
    policies: [y('p', 'enforce', {})],
  },
  'unselected-enforce': {
    kind: 'yaml',
    unselected: 'enforce',
    workload: UNSELECTED_WORKLOAD,
    policies: [y('p', 'enforce', { allow: ['to: { host: x.example }'] })],
  },
  'unselected-observe': {
    kind: 'yaml',
    workload: UNSELECTED_WORKLOAD,
    policies: [y('p', 'enforce', { allow: ['to: { host: x.example }'] })],
  },
  exec: {
    kind: 'yaml',
    policies: [
      y('p', 'enforce', {
        exec: '{ allow: [/usr/bin/git, curl, "/opt/tools/*", "/opt/deep/**/run.sh", "py*"] }',
        addons: '{ allow: ["/var/task/**/*.so", "*.node", /opt/lib/exact.so] }',
      }),
    ],
  },
  'exec-no-node': {
    kind: 'yaml',
    policies: [y('p', 'enforce', { exec: '{ allowNode: false, allow: [git] }' })],
  },
  unanchored: {
    kind: 'yaml',
    policies: [
      y('p', 'enforce', {
        allow: ['to: { port: 443 }', 'to: { host: x.example }'],
        deny: ['to: { port: 25 }', 'to: { protocol: udp }'],
      }),
    ],
  },
  'dns-deny': {
    kind: 'yaml',
    policies: [
      y('p', 'enforce', {
        allow: ['to: { host: x.example }', 'to: { host: y.example }'],
        deny: ['to: { protocol: dns }', '{ to: { host: y.example }, mode: observe }'],
      }),
    ],
  },
  unix: {
    kind: 'yaml',
    policies: [
      y('p', 'enforce', {
        allow: [
          'to: { unix: /var/run/docker.sock }',
          'to: { unix: ["/run/app/*.sock", "/srv/**"] }',
          'to: { unix: ["@dbus-*", "@exact"] }',
          'to: { host: x.example }',
        ],
        deny: ['to: { unix: /srv/secret/** }', '{ to: { unix: "/run/app/watch.sock" }, mode: observe }'],
      }),
    ],
  },
  'unix-open': {
    kind: 'yaml',
    unselected: 'allow',
    workload: UNSELECTED_WORKLOAD,
    policies: [y('p', 'enforce', { allow: ['to: { unix: /var/run/docker.sock }'] })],
  },
  sweep: {
    kind: 'yaml',
    policies: [
      y('api', 'enforce', {
        allow: [
          'to: { host: allowed.com }',
          'to: { host: "*.wild.com" }',
          'to: { host: api.example.com, port: 443, methods: [POST, GET], paths: ["/v1/charges/**"] }',
          'to: { host: files.example.com, paths: ["/public/*"] }',
          'to: { cidr: 10.0.0.0/8, port: [5432, 443] }',
          'to: { host: "*.corp.example", port: [80, 443] }',
          'to: { aws: s3, buckets: [receipts] }',
          'to: { aws: lambda, functions: ["ledger-*"], regions: [eu-west-1] }',
          'to: { host: dns.example, port: 53, protocol: [udp, dns] }',
        ],
        deny: [
          'to: { host: bad.wild.com }',
          'to: { cidr: 169.254.0.0/16 }',
          'to: { cidr: 10.9.0.0/16 }',
          'to: { host: api.example.com, paths: ["/v1/charges/secret/**"] }',
          '{ to: { port: 25 }, mode: observe }',
        ],
      }),
      y('watch', 'observe', {
        allow: ['to: { host: bücher.example }'],
        deny: ['to: { host: allowed.com, port: 80 }'],
      }),
    ],
  },
  // Kernel edge cases the compiler never writes, in a signed compiled policy.
  'compiled-edge': {
    kind: 'compiled',
    revision: 3,
    policy: compiled([
      { id: 'e/allow[0]', action: 'allow', mode: 'enforce', hosts: ['b.s3.*.amazonaws.com'] },
      { id: 'e/allow[1]', action: 'allow', mode: 'enforce', hosts: ['API.Example.COM', 'dot.example.'] },
      { id: 'e/allow[2]', action: 'allow', mode: 'enforce', hosts: [], cidrs: ['10.0.0.0/8'] },
      { id: 'e/allow[3]', action: 'allow', mode: 'enforce', hosts: ['m.example'], methods: [] },
      { id: 'e/allow[4]', action: 'allow', mode: 'enforce', hosts: ['p.example'], paths: [] },
      { id: 'e/allow[5]', action: 'allow', mode: 'enforce', hosts: ['z.example'], ports: [[0, 0]] },
      { id: 'e/allow[6]', action: 'allow', mode: 'enforce', hosts: ['*.*.example'] },
      { id: 'e/allow[7]', action: 'allow', mode: 'enforce', hosts: ['bücher.example', 'BÜCHER.test'] },
      {
        id: 'e/allow[8]',
        action: 'allow',
        mode: 'enforce',
        hosts: ['both.example'],
        cidrs: ['192.0.2.0/24'],
      },
      { id: 'e/deny[0]', action: 'deny', mode: 'observe', hosts: ['*'], protocols: ['udp'] },
      { id: 'e/allow[9]', action: 'allow', mode: 'enforce', hosts: ['*'], ports: [[853, 853]] },
      { id: 'e/deny[1]', action: 'deny', mode: 'enforce', hosts: ['np.example'], protocols: [] },
      { id: 'e/allow[10]', action: 'allow', mode: 'enforce', hosts: ['np.example'] },
      {
        id: 'e/allow[11]',
        action: 'allow',
        mode: 'observe',
        cidrs: ['::ffff:198.51.100.0/120'],
        methods: ['get'],
      },
      { id: 'e/deny[2]', action: 'deny', mode: 'enforce', cidrs: ['198.51.100.128/25'], methods: ['DELETE'] },
    ]),
  },
  'compiled-bad-cidr': {
    kind: 'compiled',
    policy: compiled([{ id: 'b/allow[0]', action: 'allow', mode: 'enforce', cidrs: ['10.0.0.1/8'] }]),
  },
  'compiled-bad-host': {
    kind: 'compiled',
    policy: compiled([
      { id: 'b/allow[0]', action: 'allow', mode: 'enforce', hosts: ['ok.example', '1.2.3.4'] },
    ]),
  },
  'compiled-bad-wildcard': {
    kind: 'compiled',
    policy: compiled([{ id: 'b/deny[0]', action: 'deny', mode: 'enforce', hosts: ['a.*b.example'] }]),
  },
  // JSON numbers as JavaScript reads them: `7.0` is the integer 7, `443e0` is 443.
  'payload-floats': {
    kind: 'payload',
    text: (base) =>
      withField(
        base,
        ['policy', 'rules'],
        [{ id: 'f/allow[0]', action: 'allow', mode: 'enforce', hosts: ['f.example'], ports: [[440, 450]] }],
      )
        .replace('"revision":9', '"revision":7.0')
        .replace('[[440,450]]', '[[440.0,45e1]]')
        .replace('"format":1', '"format":1.0'),
  },

  // Verification: envelopes and payloads a verifier must refuse, or accept.
  'other-key': {
    kind: 'yaml',
    key: 'other',
    revision: 2,
    policies: [y('p', 'enforce', { allow: ['to: { host: allowed.com }'] })],
  },
  'tampered-payload': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => {
      const body = JSON.parse(Buffer.from(e.payload, 'base64').toString('utf8'));
      body.revision = 6;
      return JSON.stringify({ ...e, payload: b64(JSON.stringify(body)) });
    },
  },
  'short-signature': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) =>
      JSON.stringify({
        ...e,
        signatures: [{ keyid: e.signatures[0]?.keyid, sig: Buffer.alloc(63, 1).toString('base64') }],
      }),
  },
  'foreign-signature': {
    kind: 'envelope',
    from: 'small',
    tamper: (e, tools) =>
      JSON.stringify({
        ...e,
        signatures: [{ keyid: tools.keyId(), sig: tools.sign(Buffer.from('another body')) }],
      }),
  },
  'renamed-keyid': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) =>
      JSON.stringify({
        ...e,
        signatures: [{ keyid: '0123456789abcdef0123456789abcdef', sig: e.signatures[0]?.sig }],
      }),
  },
  'unknown-then-good': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, signatures: [{ keyid: 'nobody', sig: 'AAAA' }, ...e.signatures] }),
  },
  'bad-then-good': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) =>
      JSON.stringify({
        ...e,
        signatures: [
          { keyid: e.signatures[0]?.keyid, sig: Buffer.alloc(64).toString('base64') },
          ...e.signatures,
        ],
      }),
  },
  'good-then-malformed': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, signatures: [...e.signatures, { keyid: 1 }] }),
  },
  'malformed-then-good': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, signatures: [{ keyid: 1 }, ...e.signatures] }),
  },
  'seventeen-signatures': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, signatures: new Array(17).fill(e.signatures[0]) }),
  },
  'signatures-empty': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, signatures: [] }),
  },
  'signatures-missing': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ payloadType: e.payloadType, payload: e.payload }),
  },
  'signatures-null': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, signatures: null }),
  },
  'signatures-string': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, signatures: 'x' }),
  },
  'signature-extra-field': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, signatures: [{ ...e.signatures[0], note: 'x' }] }),
  },
  'signature-null': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, signatures: [null] }),
  },
  'signature-array': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, signatures: [[]] }),
  },
  'signature-unpadded': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) =>
      JSON.stringify({
        ...e,
        signatures: [{ keyid: e.signatures[0]?.keyid, sig: e.signatures[0]?.sig.replace(/=+$/, '') }],
      }),
  },
  'extra-field': { kind: 'envelope', from: 'small', tamper: (e) => JSON.stringify({ ...e, extra: true }) },
  'proto-field': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify(e).replace('{', '{"__proto__":{},'),
  },
  'wrong-payload-type': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, payloadType: 'application/json' }),
  },
  'payload-type-missing': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ payload: e.payload, signatures: e.signatures }),
  },
  'payload-number': { kind: 'envelope', from: 'small', tamper: (e) => JSON.stringify({ ...e, payload: 5 }) },
  'payload-unpadded': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, payload: changed(e.payload, e.payload.replace(/=+$/, '')) }),
  },
  'payload-newline': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify({ ...e, payload: `${e.payload.slice(0, 76)}\n${e.payload.slice(76)}` }),
  },
  // Its payload's base64 holds `+` and `/` (from the `?` and `>` runs of an extra member).
  'plus-slash': { kind: 'payload', text: (base) => JSON.stringify({ ...base, note: '??????>>>>>>' }) },
  'payload-urlsafe': {
    kind: 'envelope',
    from: 'plus-slash',
    tamper: (e) =>
      JSON.stringify({
        ...e,
        payload: changed(e.payload, e.payload.replace(/\+/g, '-').replace(/\//g, '_')),
      }),
  },
  'payload-trailing-bits': {
    kind: 'envelope',
    from: 'small',
    // "QQ==" is "A"; "QR==" decodes to the same byte with a non-zero unused bit: not canonical.
    tamper: (e) => JSON.stringify({ ...e, payload: 'QR==' }),
  },
  'payload-empty': {
    kind: 'envelope',
    from: 'small',
    tamper: (e, tools) =>
      JSON.stringify({
        ...e,
        payload: '',
        signatures: [{ keyid: tools.keyId(), sig: tools.sign(Buffer.alloc(0)) }],
      }),
  },
  'whitespace-around': { kind: 'envelope', from: 'small', tamper: (e) => ` \n\t${JSON.stringify(e)}\r\n` },
  'bom-text': { kind: 'envelope', from: 'small', tamper: (e) => `\uFEFF${JSON.stringify(e)}` },
  'nan-field': {
    kind: 'envelope',
    from: 'small',
    tamper: (e) => JSON.stringify(e).replace('{', '{"x":NaN,'),
  },
  'not-json': { kind: 'text', text: 'not json' },
  'empty-text': { kind: 'text', text: '' },
  'json-array': { kind: 'text', text: '[]' },
  'json-null': { kind: 'text', text: 'null' },
  'json-string': { kind: 'text', text: '"envelope"' },
  'json-empty-object': { kind: 'text', text: '{}' },
  'trailing-garbage': { kind: 'envelope', from: 'small', tamper: (e) => `${JSON.stringify(e)}x` },

  'payload-ok': { kind: 'payload', text: (base) => JSON.stringify(base) },
  'payload-bom': { kind: 'payload', text: (base) => `\uFEFF${JSON.stringify(base)}` },
  'payload-not-json': { kind: 'payload', text: () => 'hello' },
  'payload-array': { kind: 'payload', text: () => '[]' },
  'payload-schema-2': { kind: 'payload', text: (base) => withField(base, ['schemaVersion'], 2) },
  'payload-schema-string': { kind: 'payload', text: (base) => withField(base, ['schemaVersion'], '1') },
  'payload-schema-float': {
    kind: 'payload',
    text: (base) => JSON.stringify(base).replace('"schemaVersion":1', '"schemaVersion":1.0'),
  },
  'payload-schema-missing': {
    kind: 'payload',
    text: (base) => withField(base, ['schemaVersion'], undefined),
  },
  'payload-revision-negative': { kind: 'payload', text: (base) => withField(base, ['revision'], -1) },
  'payload-revision-fraction': { kind: 'payload', text: (base) => withField(base, ['revision'], 1.5) },
  'payload-revision-unsafe': { kind: 'payload', text: (base) => withField(base, ['revision'], 2 ** 53) },
  'payload-revision-largest': { kind: 'payload', text: (base) => withField(base, ['revision'], 2 ** 53 - 1) },
  'payload-revision-true': { kind: 'payload', text: (base) => withField(base, ['revision'], true) },
  'payload-revision-string': { kind: 'payload', text: (base) => withField(base, ['revision'], '9') },
  'payload-issued-bad': { kind: 'payload', text: (base) => withField(base, ['issuedAt'], 'not a time') },
  'payload-issued-number': { kind: 'payload', text: (base) => withField(base, ['issuedAt'], 0) },
  'payload-expires-date-only': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '2026-01-02'),
  },
  'payload-expires-year-month': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '2026-02'),
  },
  'payload-expires-offset': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '2026-01-01T13:00:00+01:00'),
  },
  'payload-expires-offset-compact': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '2026-01-01T11:00:00-0100'),
  },
  'payload-expires-no-seconds': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '2026-01-01T12:00Z'),
  },
  'payload-expires-micros': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '2026-01-01T12:00:00.0009999Z'),
  },
  'payload-expires-24h': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '2026-01-01T24:00:00Z'),
  },
  'payload-expires-24h-late': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '2026-01-01T24:00:01Z'),
  },
  'payload-expires-feb-31': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '2026-02-31T00:00:00Z'),
  },
  'payload-expires-month-13': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '2026-13-01T00:00:00Z'),
  },
  'payload-expires-lowercase': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '2026-01-02t00:00:00z'),
  },
  'payload-expires-extended-year': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '+002026-01-02T00:00:00.000Z'),
  },
  'payload-expires-year-zero-negative': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '-000000-01-01T00:00:00Z'),
  },
  'payload-expires-out-of-range': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '+275760-09-13T00:00:00.001Z'),
  },
  'payload-expires-too-long': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], '2026-01-02T00:00:00.00000000000000000000000Z'),
  },
  'payload-expires-space': {
    kind: 'payload',
    text: (base) => withField(base, ['expiresAt'], ' 2026-01-02T00:00:00Z'),
  },
  'payload-keyid-null': { kind: 'payload', text: (base) => withField(base, ['keyId'], null) },
  'payload-keyid-other': {
    kind: 'payload',
    text: (base) => withField(base, ['keyId'], '0123456789abcdef0123456789abcdef'),
  },
  'payload-keyid-missing': { kind: 'payload', text: (base) => withField(base, ['keyId'], undefined) },
  'payload-policy-missing': { kind: 'payload', text: (base) => withField(base, ['policy'], undefined) },
  'payload-policy-array': { kind: 'payload', text: (base) => withField(base, ['policy'], []) },
  'payload-format-2': { kind: 'payload', text: (base) => withField(base, ['policy', 'format'], 2) },
  'payload-format-true': { kind: 'payload', text: (base) => withField(base, ['policy', 'format'], true) },
  'payload-mode-bad': { kind: 'payload', text: (base) => withField(base, ['policy', 'mode'], 'audit') },
  'payload-fallback-bad': {
    kind: 'payload',
    text: (base) => withField(base, ['policy', 'fallback'], 'maybe'),
  },
  'payload-scope-id-missing': {
    kind: 'payload',
    text: (base) => withField(base, ['policy', 'scope'], { groups: [], excludes: [] }),
  },
  'payload-groups-bad': {
    kind: 'payload',
    text: (base) => withField(base, ['policy', 'scope', 'groups'], [{ name: 'g', match: { cloud: 'aws' } }]),
  },
  'payload-excludes-bad': {
    kind: 'payload',
    text: (base) => withField(base, ['policy', 'scope', 'excludes'], [[]]),
  },
  'payload-policies-bad': { kind: 'payload', text: (base) => withField(base, ['policy', 'policies'], {}) },
  'payload-rules-bad': { kind: 'payload', text: (base) => withField(base, ['policy', 'rules'], {}) },
  'payload-rule-not-object': { kind: 'payload', text: (base) => withField(base, ['policy', 'rules'], [5]) },
  'payload-rule-no-id': {
    kind: 'payload',
    text: (base) => withField(base, ['policy', 'rules'], [{ action: 'allow', mode: 'enforce' }]),
  },
  'payload-rule-action': {
    kind: 'payload',
    text: (base) => withField(base, ['policy', 'rules'], [{ id: 'r', action: 'block', mode: 'enforce' }]),
  },
  'payload-rule-mode': {
    kind: 'payload',
    text: (base) => withField(base, ['policy', 'rules'], [{ id: 'r', action: 'allow', mode: 'on' }]),
  },
  'payload-rule-hosts': {
    kind: 'payload',
    text: (base) =>
      withField(
        base,
        ['policy', 'rules'],
        [{ id: 'r', action: 'allow', mode: 'enforce', hosts: ['a.example', 1] }],
      ),
  },
  'payload-rule-cidrs-null': {
    kind: 'payload',
    text: (base) =>
      withField(base, ['policy', 'rules'], [{ id: 'r', action: 'allow', mode: 'enforce', cidrs: null }]),
  },
  'payload-rule-protocol': {
    kind: 'payload',
    text: (base) =>
      withField(
        base,
        ['policy', 'rules'],
        [{ id: 'r', action: 'allow', mode: 'enforce', protocols: ['gopher'] }],
      ),
  },
  'payload-rule-ports-high': {
    kind: 'payload',
    text: (base) =>
      withField(
        base,
        ['policy', 'rules'],
        [{ id: 'r', action: 'allow', mode: 'enforce', ports: [[0, 70000]] }],
      ),
  },
  'payload-rule-ports-reversed': {
    kind: 'payload',
    text: (base) =>
      withField(base, ['policy', 'rules'], [{ id: 'r', action: 'allow', mode: 'enforce', ports: [[5, 4]] }]),
  },
  'payload-rule-ports-fraction': {
    kind: 'payload',
    text: (base) =>
      withField(
        base,
        ['policy', 'rules'],
        [{ id: 'r', action: 'allow', mode: 'enforce', ports: [[1.5, 2]] }],
      ),
  },
  'payload-rule-ports-triple': {
    kind: 'payload',
    text: (base) =>
      withField(
        base,
        ['policy', 'rules'],
        [{ id: 'r', action: 'allow', mode: 'enforce', ports: [[1, 2, 3]] }],
      ),
  },
  'payload-exec-bad': {
    kind: 'payload',
    text: (base) => withField(base, ['policy', 'exec'], { allowNode: 'yes', allow: [] }),
  },
  'payload-exec-glob-bad': {
    kind: 'payload',
    text: (base) => withField(base, ['policy', 'exec'], { allowNode: true, allow: [{ id: 'x' }] }),
  },
  'payload-addons-missing': {
    kind: 'payload',
    text: (base) => withField(base, ['policy', 'addons'], undefined),
  },
  'payload-unix-ok': {
    kind: 'payload',
    text: (base) =>
      withField(base, ['policy', 'unix'], {
        rules: [{ id: 'u/allow[0]', action: 'allow', mode: 'enforce', glob: '/run/*.sock' }],
      }),
  },
  'payload-unix-null': { kind: 'payload', text: (base) => withField(base, ['policy', 'unix'], null) },
  'payload-unix-array': { kind: 'payload', text: (base) => withField(base, ['policy', 'unix'], []) },
  'payload-unix-rules-missing': { kind: 'payload', text: (base) => withField(base, ['policy', 'unix'], {}) },
  'payload-unix-rule-action': {
    kind: 'payload',
    text: (base) =>
      withField(base, ['policy', 'unix'], {
        rules: [{ id: 'u', action: 'block', mode: 'enforce', glob: '/a' }],
      }),
  },
  'payload-unix-glob-empty': {
    kind: 'payload',
    text: (base) =>
      withField(base, ['policy', 'unix'], {
        rules: [{ id: 'u', action: 'allow', mode: 'enforce', glob: '' }],
      }),
  },
  'payload-unix-glob-dotdot': {
    kind: 'payload',
    text: (base) =>
      withField(base, ['policy', 'unix'], {
        rules: [{ id: 'u', action: 'allow', mode: 'enforce', glob: '/a/../b' }],
      }),
  },
  'payload-unix-glob-relative': {
    kind: 'payload',
    text: (base) =>
      withField(base, ['policy', 'unix'], {
        rules: [{ id: 'u', action: 'deny', mode: 'observe', glob: 'a.sock' }],
      }),
  },
  'payload-unix-glob-stars': {
    kind: 'payload',
    text: (base) =>
      withField(base, ['policy', 'unix'], {
        rules: [{ id: 'u', action: 'allow', mode: 'enforce', glob: '/a/b**' }],
      }),
  },
  'payload-unix-glob-trailing-slash': {
    kind: 'payload',
    text: (base) =>
      withField(base, ['policy', 'unix'], {
        rules: [{ id: 'u', action: 'allow', mode: 'enforce', glob: '/run/' }],
      }),
  },
  'payload-unix-glob-root': {
    kind: 'payload',
    text: (base) =>
      withField(base, ['policy', 'unix'], {
        rules: [{ id: 'u', action: 'allow', mode: 'enforce', glob: '/' }],
      }),
  },
  'payload-unix-glob-at': {
    kind: 'payload',
    text: (base) =>
      withField(base, ['policy', 'unix'], {
        rules: [{ id: 'u', action: 'allow', mode: 'enforce', glob: '@' }],
      }),
  },
  'payload-unix-glob-nul': {
    kind: 'payload',
    text: (base) =>
      withField(base, ['policy', 'unix'], {
        rules: [{ id: 'u', action: 'allow', mode: 'enforce', glob: '@a\u0000' }],
      }),
  },
  'payload-scope-differs': {
    kind: 'payload',
    text: (base) => withField(base, ['scope'], { id: 'scope-other', groups: [], excludes: [] }),
  },
  'payload-scope-missing': { kind: 'payload', text: (base) => withField(base, ['scope'], undefined) },
  'payload-scope-number-spelling': {
    kind: 'payload',
    // Equal under canonical JSON: 1 and 1.0 are one number (extra scope members are kept).
    text: (base) =>
      JSON.stringify(
        withFieldObject(withFieldObject(base, ['scope', 'n'], 1), ['policy', 'scope', 'n'], 2),
      ).replace('"n":2', '"n":1.0'),
  },
  'payload-scope-boolean-number': {
    kind: 'payload',
    // Not equal: true is not 1.
    text: (base) => withField(withFieldObject(base, ['scope', 'n'], 1), ['policy', 'scope', 'n'], true),
  },
};

function withFieldObject(
  base: Record<string, unknown>,
  path: string[],
  value: unknown,
): Record<string, unknown> {
  return JSON.parse(withField(base, path, value));
}

// ---------------------------------------------------------------------------------------------
// Rows

const cases: Case[] = [];

interface Request {
  host?: string;
  ip?: string;
  port: number;
  protocol: string;
  sni?: string;
  method?: string;
  path?: string;
}

function decide(group: string, bundle: string, input: Request, note?: string): void {
  cases.push({ group, op: 'decide', bundle, input: { ...input }, ...(note ? { note } : {}) });
}
const tcp = (host: string, port = 443): Request => ({ host, port, protocol: 'tcp' });
const name = (group: string, bundle: string, host: string) =>
  cases.push({ group, op: 'decideName', bundle, input: { host } });
const exec = (group: string, bundle: string, file: string, execPath?: string) =>
  cases.push({
    group,
    op: 'decideExec',
    bundle,
    input: execPath === undefined ? { file } : { file, execPath },
  });
const addon = (group: string, bundle: string, path: string) =>
  cases.push({ group, op: 'decideAddon', bundle, input: { path } });
const verify = (group: string, bundle: string, input: Record<string, unknown> = {}, note?: string) =>
  cases.push({ group, op: 'verify', bundle, input: { now: NOW, ...input }, ...(note ? { note } : {}) });

// Hosts: exact, case, trailing dot, IDN, `*.x` at any depth but not the apex, deny beats allow.
for (const host of [
  'allowed.com',
  'ALLOWED.COM',
  'allowed.com.',
  'Allowed.Com.',
  'allowed.com.evil.com',
  'evil.allowed.com',
  'notallowed.com',
  'x.wild.com',
  'a.b.wild.com',
  'a.b.c.d.e.wild.com',
  'X.WILD.COM.',
  'wild.com',
  'wild.com.',
  'wild.com.evil.com',
  'evilwild.com',
  'bad.wild.com',
  'BAD.WILD.COM.',
  'sub.bad.wild.com',
  'blocked.wild.com',
  'x.blocked.wild.com',
  'a.b.blocked.wild.com',
  'bücher.example',
  'BÜCHER.example',
  'Bücher.Example.',
  'bu\u0308cher.example',
  'xn--bcher-kva.example',
  'XN--BCHER-KVA.EXAMPLE',
  'bucher.example',
  'x.münchen.example',
  'x.MÜNCHEN.example',
  'a.b.xn--mnchen-3ya.example',
  'münchen.example',
  'ＡＬＬＯＷＥＤ.com',
  'allowed。com',
  'allowed．com',
  'allowed｡com',
  '_svc.example',
  '_SVC.example',
  'svc.example',
  'one.example',
  'two.example',
  'three.example',
  'xn--zz.example',
]) {
  decide('hosts', 'hosts', tcp(host));
  name('hosts', 'hosts', host);
}
decide('hosts', 'hosts', tcp('a.deep.example', 443));
decide('hosts', 'hosts', tcp('a.deep.example', 80));
decide('hosts', 'hosts', tcp('a.deep.example', 0));
name('hosts', 'hosts', 'a.deep.example');
name('hosts', 'hosts', 'deep.example');

// Unreadable destinations: never allowed, even where the fallback allows (`open`), and refused
// as `default-deny` in the policy's mode.
const unreadable = [
  '',
  '.',
  '..',
  'a..b',
  '.allowed.com',
  'allowed.com..',
  'allowed.com:443',
  'allowed.com/evil',
  'allowed.com?x',
  'allowed.com#x',
  'allowed.com\\x',
  'user@allowed.com',
  'allowed.com evil.com',
  ' allowed.com',
  'allowed.com\t',
  'allowed.com\u0000',
  'allowed.com\n',
  'allowed%2ecom',
  '*.wild.com',
  '*',
  '-x.com',
  'x-.com',
  'x_.com',
  `${'x'.repeat(63)}.com`,
  `${'x'.repeat(64)}.com`,
  `${'a.'.repeat(126)}com`,
  `${'a.'.repeat(127)}com`,
  'a'.repeat(1100),
  '1.2.3.999',
  'a.1',
  'a.0x',
  'example.09',
  '[::1',
  '::1]',
  '[1.2.3.4]',
  'fe80::1%',
  'XN--ZZ.example',
  'xn--a.example',
  'a.b.c.0x',
  'ａ.１',
];
for (const host of unreadable) {
  decide('unreadable', 'hosts', tcp(host));
  decide('unreadable', 'open', tcp(host));
  name('unreadable', 'open', host);
}
decide('unreadable', 'open', { host: 'x.example', port: 70000, protocol: 'tcp' });
decide('unreadable', 'open', { host: 'x.example', port: 65536, protocol: 'tcp' });
decide('unreadable', 'open', { host: 'x.example', port: -1, protocol: 'tcp' });
decide('unreadable', 'open', { host: 'x.example', port: 443.5, protocol: 'tcp' });
decide('unreadable', 'open', { host: 'x.example', port: 443, protocol: 'gopher' });
for (const protocol of ['toString', 'constructor', '__proto__', 'valueOf', 'hasOwnProperty'])
  decide('unreadable', 'open', { host: 'x.example', port: 443, protocol });
decide('unreadable', 'open', { host: 'x.example', port: 443, protocol: 'TCP' });
decide('unreadable', 'open', { host: 'x.example', port: 443, protocol: '' });
decide('unreadable', 'open', { port: 443, protocol: 'tcp' });
decide('unreadable', 'open', { host: '', ip: '', port: 443, protocol: 'tcp' });
decide('unreadable', 'open', { host: 'x.example', ip: 'not-an-ip', port: 443, protocol: 'tcp' });
decide('unreadable', 'open', { host: 'x.example', ip: '1.2.3.4.5', port: 443, protocol: 'tcp' });
decide('unreadable', 'open', { host: 'x.example', sni: 'a..b', port: 443, protocol: 'tcp' });
decide('unreadable', 'open', { host: 'x.example', sni: 'x.example:443', port: 443, protocol: 'tcp' });
decide('unreadable', 'open', tcp('x.example', 443), 'readable, for contrast');
decide('unreadable', 'unselected-observe', tcp('a..b'));
decide('unreadable', 'unselected-enforce', tcp('a..b'));
name('unreadable', 'hosts', 'a..b');

// Host and SNI together: both names must be allowed (domain fronting).
for (const [host, sni] of [
  ['cdn.allowed.com', 'cdn.allowed.com'],
  ['cdn.allowed.com', 'CDN.ALLOWED.COM.'],
  ['cdn.allowed.com', 'evil.com'],
  ['evil.com', 'cdn.allowed.com'],
  ['allowed.com', 'cdn.allowed.com'],
  ['allowed.com', 'bad.wild.com'],
  ['bad.wild.com', 'allowed.com'],
  ['allowed.com', ''],
  ['', 'allowed.com'],
  ['allowed.com', '1.2.3.4'],
  ['1.2.3.4', 'allowed.com'],
  ['allowed.com', 'a..b'],
  ['bücher.example', 'xn--bcher-kva.example'],
] as const) {
  decide('sni', 'hosts', { host, sni, port: 443, protocol: 'https' });
}
decide('sni', 'hosts', { sni: 'cdn.allowed.com', ip: '1.2.3.4', port: 443, protocol: 'tcp' });
decide('sni', 'hosts', { sni: 'evil.com', ip: '1.2.3.4', port: 443, protocol: 'tcp' });
decide('sni', 'cidr', {
  host: 'x.corp.example',
  sni: 'y.corp.example',
  ip: '169.254.169.254',
  port: 443,
  protocol: 'tcp',
});
decide('sni', 'cidr', {
  host: 'x.corp.example',
  sni: 'other.example',
  ip: '10.1.2.3',
  port: 5432,
  protocol: 'tcp',
});
decide('sni', 'cidr', { host: 'x.corp.example', sni: '10.1.2.3', port: 5432, protocol: 'tcp' });

// Ports and inclusive ranges, port 0 = unknown (allow rules do not hold it against the request).
for (const port of [0, 1, 21, 22, 23, 7999, 8000, 8050, 8100, 8101, 65535])
  decide('ports', 'ports', tcp('ranges.example', port));
for (const port of [0, 24, 25, 26, 443, 5999, 6000, 6005, 6010, 6011, 65535])
  decide('ports', 'ports', tcp('any.example', port));
for (const port of [0, 442, 443, 444]) decide('ports', 'ports', tcp('fixed.example', port));
decide('ports', 'ports', { host: 'ranges.example', port: 8000, protocol: 'https' });
decide('ports', 'ports', { host: 'ranges.example', port: 8000, protocol: 'udp' });
name('ports', 'ports', 'any.example');
name('ports', 'ports', 'ranges.example');

// Protocols: tcp covers http and https; an L7 rule allows the tcp connect that carries it.
for (const host of [
  'tcp.example',
  'udp.example',
  'http.example',
  'https.example',
  'dns.example',
  'web.example',
  'any.example',
  'dnsdeny.example',
]) {
  for (const protocol of ['tcp', 'udp', 'http', 'https', 'dns'])
    decide('protocols', 'protocols', { host, port: 443, protocol });
  name('protocols', 'protocols', host);
}

// Methods and paths: normalisation (dot segments, `%2e`, `..;`, `\`, `//`, queries, encoded
// slashes), `*` within a segment, `**` across segments, deny on what the request shows.
/** `method: null`: no method (the connect before the request is seen). */
const post = (host: string, path: string | undefined, method: string | null = 'POST', port = 443) => {
  const input: Request = { host, port, protocol: port === 443 ? 'https' : 'http' };
  if (method !== null) input.method = method;
  if (path !== undefined) input.path = path;
  decide('http', 'http', input);
};
for (const path of [
  '/v1/charges',
  '/v1/charges/',
  '/v1/charges/ch_1',
  '/v1/charges/ch_1?expand=x',
  '/v1/charges/ch_1#frag',
  '/v1/charges/a/b/c',
  '/v1/chargesX',
  '/v1/customers',
  '/v1/charges/../customers',
  '/v1/charges/%2e%2e/customers',
  '/v1/charges/%2E%2E/%2E%2E/admin',
  '/v1/charges/.%2e/customers',
  '/v1/charges/..;/customers',
  '/v1/charges/..;jsessionid=1/customers',
  '/v1/charges;x=1/y',
  '/v1/charges\\..\\customers',
  '//v1/charges/../../admin',
  '/v1//charges/x',
  '/v1/charges/./x',
  '/v1/charges/./../customers',
  '/v1/charges%2F..%2Fcustomers',
  '/v1/charges/%41',
  '/v1/charges/%7e%2d%5f',
  '/v1/charges/%zz',
  '/v1/charges/%4',
  '/v1/charges/%',
  '/%76%31/charges/x',
  '/v1/charges/secret/x',
  '/v1/charges/secret',
  '/v1/charges/SECRET/x',
  '/v1/charges/%73ecret/x',
  '/v1/charges/secret%2Fx',
  '/v1/charges/x/../secret/y',
  'https://api.example.com/v1/charges/x',
  'https://api.example.com/v1/customers',
  'v1/charges/x',
  '/../../v1/charges/x',
  '/v1/charges/ü',
  '/v1/charges/%C3%BC',
  '?/v1/charges',
  '',
]) {
  post('api.example.com', path);
}
post('api.example.com', '/v1/charges/x', 'post');
post('api.example.com', '/v1/charges/x', 'GET');
post('api.example.com', '/v1/charges/x', '');
post('api.example.com', undefined, null);
post('api.example.com', undefined, 'POST');
post('api.example.com', undefined, 'GET');
post('api.example.com', '/v1/charges/secret/x', null);
decide('http', 'http', tcp('api.example.com'));
decide('http', 'http', tcp('api.example.com', 80));
for (const path of [
  '/public/a',
  '/public/a.txt',
  '/public/a/b',
  '/public/',
  '/public',
  '/docs/index.html',
  '/docs/a/index.html',
  '/docs/a/b/c/index.html',
  '/docs/a/index.htm',
  '/docs',
  '/a/b/c',
  '/a/bb/c',
  '/a/b/b/c',
  '/a//c',
  '/a/c',
  '/exact',
  '/exact/',
  '/EXACT',
  '/exact?x=1',
  '/prefix/x',
  '/pre-and-fix/x',
  '/prefi/x',
  '/pre/fix/x',
  '/deep.txt',
  '/x/y/deep.txt',
  '/x/y/deep.txt/z',
]) {
  post('files.example.com', path, 'GET');
}
post('files.example.com', '/public/a', 'DELETE');
post('files.example.com', undefined, 'DELETE');
post('files.example.com', '/public/a', 'delete');
for (const method of ['GET', 'HEAD', 'POST', 'get', 'Get', '', 'PATCH'])
  post('methods.example.com', '/anything', method);
post('methods.example.com', '/anything', null);
for (const path of [
  '/myproject/repo.git',
  '/myproject',
  '/myproject/',
  '/otherproject/repo.git',
  '/myproject/../otherproject',
])
  post('github.com', path, 'GET');
post('github.com', '/myproject/x', 'GET', 80);
decide('http', 'http', tcp('github.com', 443));
decide('http', 'http', tcp('github.com', 22));
for (const path of ['/status', '/status/', '/status?x', '/Status', '/status/x'])
  decide('http', 'http', { host: 'plain.example.com', port: 8080, protocol: 'http', method: 'GET', path });
decide('http', 'http', {
  host: 'plain.example.com',
  port: 8080,
  protocol: 'https',
  method: 'GET',
  path: '/status',
});
decide('http', 'http', { host: 'plain.example.com', port: 8080, protocol: 'tcp' });
decide('http', 'http', {
  host: 'plain.example.com',
  port: 80,
  protocol: 'http',
  method: 'GET',
  path: '/status',
});

// Addresses: CIDR v4 / v6 (IPv4-mapped prefixes), every IPv4 literal spelling, names and
// addresses together (a deny CIDR wins over an allowed name; a name allows what its CIDRs do not).
for (const ip of [
  '10.1.2.3',
  '10.255.255.255',
  '11.0.0.0',
  '9.255.255.255',
  '10.9.0.1',
  '10.9.255.255',
  '10.10.0.0',
  '::ffff:10.1.2.3',
  '::ffff:a01:203',
  '0:0:0:0:0:ffff:10.1.2.3',
  '[::ffff:10.1.2.3]',
  '::10.1.2.3',
  '012.1.2.3',
  '0xa.1.2.3',
  '0XA.0X1.0X2.0X3',
  '167838211',
  '10.66051',
  '10.1.515',
  '10.1.2.3.',
  '192.168.1.7',
  '192.168.1.8',
  '172.16.0.1',
  '172.31.255.255',
  '172.32.0.0',
  '::ffff:172.20.1.1',
  '2001:db8::1',
  '2001:DB8:0:0:0:0:0:1',
  '2001:0db8:0000::0001',
  '2001:db9::1',
  '[2001:db8::1]',
  '2001:db8::1%eth0',
  '169.254.169.254',
  '::ffff:169.254.169.254',
  '::ffff:a9fe:a9fe',
  '0251.0376.0251.0376',
  '0xa9fea9fe',
  '2852039166',
  'fd00:ec2::254',
  'FD00:EC2:0:0:0:0:0:254',
  '[fd00:ec2::254]',
  'fd00:ec2:0000::0254',
  'fd00:ec2::254%eth0',
  'fe80::1',
  '::1',
  '::',
  '0.0.0.0',
  '1.2.3.4',
]) {
  decide('cidr', 'cidr', { ip, port: 5432, protocol: 'tcp' });
}
decide('cidr', 'cidr', { ip: 'fe80::1', port: 22, protocol: 'tcp' });
decide('cidr', 'cidr', { ip: 'fe80::1', port: 80, protocol: 'tcp' });
decide('cidr', 'cidr', { ip: '10.1.2.3', port: 5433, protocol: 'tcp' });
decide('cidr', 'cidr', { ip: '10.1.2.3', port: 0, protocol: 'tcp' });
for (const literal of [
  '127.0.0.1',
  '0177.0.0.1',
  '0x7f.1',
  '0x7f.0.0.1',
  '0X7F.0X0.0X0.0X1',
  '2130706433',
  '0x7f000001',
  '017700000001',
  '127.1',
  '127.0.1',
  '127.0.0.1.',
  '0177.1.',
  '::ffff:127.0.0.1',
  '::ffff:7f00:1',
  '[::ffff:127.0.0.1]',
  '0:0:0:0:0:ffff:7f00:1',
  '::ffff:0177.0.0.1',
  '127.0.0.256',
  '0x100000000',
  '4294967296',
  '08.0.0.1',
  '0x.0x.0x.0x',
  '0.0.0.00',
  '1.2.3.4.5',
  '1:2:3:4:5:6:7:8:9',
  ':::',
  '1::2::3',
  '12345::',
  'g::1',
]) {
  decide('ip-literals', 'cidr', { ip: literal, port: 9000, protocol: 'tcp' });
  decide('ip-literals', 'cidr', { host: literal, port: 9000, protocol: 'tcp' });
}
for (const literal of ['127.0.0.1', '0x7f.1', '[::1]', '::ffff:10.1.1.1', '2130706433', '127.0.0.1.'])
  name('ip-literals', 'cidr', literal);
for (const [host, ip, port] of [
  ['db.corp.example', '10.2.0.1', 443],
  ['db.corp.example', '169.254.169.254', 80],
  ['db.corp.example', '::ffff:169.254.169.254', 80],
  ['db.corp.example', '11.0.0.1', 443],
  ['db.corp.example', '10.9.1.1', 443],
  ['unknown.example', '10.1.2.3', 5432],
  ['unknown.example', '10.1.2.3', 443],
  ['unknown.example', '10.9.1.1', 5432],
  ['db.pinned.example', '10.20.1.1', 443],
  ['db.pinned.example', '10.21.0.1', 443],
  ['db.pinned.example', '::ffff:10.20.1.1', 443],
  ['DB.PINNED.EXAMPLE.', '10.20.255.255', 443],
  ['10.1.2.3', '11.0.0.1', 5432],
  ['10.1.2.3', '10.1.2.4', 5432],
] as const) {
  decide('names+ip', 'cidr', { host, ip, port, protocol: 'tcp' });
}
decide('names+ip', 'cidr', { host: 'db.pinned.example', port: 443, protocol: 'tcp' });
name('names+ip', 'cidr', 'db.internal');
name('names+ip', 'cidr', 'x.corp.example');
name('names+ip', 'cidr', 'db.pinned.example');

// AWS: S3 buckets (virtual-hosted, regional, dualstack, path-style) and Lambda invoke paths.
const get = (host: string, path = '/key', method = 'GET') =>
  decide('aws', 'aws', { host, port: 443, protocol: 'https', method, path });
for (const host of [
  'receipts.s3.amazonaws.com',
  'receipts.s3.us-east-1.amazonaws.com',
  'receipts.s3.dualstack.eu-west-1.amazonaws.com',
  'RECEIPTS.S3.AMAZONAWS.COM',
  'logs.archive.s3.amazonaws.com',
  'archive.s3.amazonaws.com',
  'other.s3.amazonaws.com',
  'receipts.evil.com',
  'receipts.s3.amazonaws.com.evil.com',
  'receipts.s3.evil.amazonaws.com',
  'eu-data.s3.eu-west-1.amazonaws.com',
  'eu-data.s3.us-east-1.amazonaws.com',
  'eu-data.s3.amazonaws.com',
  'eu-data.s3.dualstack.eu-west-1.amazonaws.com',
])
  get(host);
for (const [host, path] of [
  ['s3.amazonaws.com', '/receipts/2024/a.pdf'],
  ['s3.amazonaws.com', '/receipts'],
  ['s3.amazonaws.com', '/receipts/'],
  ['s3.us-west-2.amazonaws.com', '/receipts/x'],
  ['s3.dualstack.us-west-2.amazonaws.com', '/receipts/x'],
  ['s3.amazonaws.com', '/logs.archive/x'],
  ['s3.amazonaws.com', '/receipts-evil/x'],
  ['s3.amazonaws.com', '/other/x'],
  ['s3.amazonaws.com', '/receipts/../other/x'],
  ['s3.amazonaws.com', '/receipts%2F..%2Fother/x'],
  ['s3.amazonaws.com', '/%72eceipts/x'],
  ['s3.eu-west-1.amazonaws.com', '/eu-data/x'],
  ['s3.us-east-1.amazonaws.com', '/eu-data/x'],
  ['s3.amazonaws.com', '/eu-data/x'],
] as const)
  get(host, path);
decide('aws', 'aws', tcp('s3.amazonaws.com'));
decide('aws', 'aws', tcp('receipts.s3.amazonaws.com'));
name('aws', 'aws', 's3.us-east-1.amazonaws.com');
name('aws', 'aws', 'receipts.s3.amazonaws.com');
const lambda = 'lambda.eu-west-1.amazonaws.com';
for (const [host, path, method] of [
  [lambda, '/2015-03-31/functions/ledger-write/invocations', 'POST'],
  [lambda, '/2015-03-31/functions/ledger-write%3Aprod/invocations', 'POST'],
  [lambda, '/2015-03-31/functions/ledger-write:prod/invocations', 'POST'],
  [
    lambda,
    '/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Aledger-x/invocations',
    'POST',
  ],
  [
    lambda,
    '/2015-03-31/functions/arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Abilling/invocations',
    'POST',
  ],
  [lambda, '/2015-03-31/functions/billing/invocations', 'POST'],
  [lambda, '/2015-03-31/functions/billing-x/invocations', 'POST'],
  [lambda, '/2014-11-13/functions/ledger-a/invoke-async', 'POST'],
  [lambda, '/2015-03-31/functions/payroll/invocations', 'POST'],
  [lambda, '/2015-03-31/functions/ledger-write/configuration', 'GET'],
  [lambda, '/2015-03-31/functions/ledger-write/invocations', 'DELETE'],
  [lambda, '/2015-03-31/functions/ledger-write/invocations', 'post'],
  ['lambda.us-east-1.amazonaws.com', '/2015-03-31/functions/ledger-write/invocations', 'POST'],
] as const)
  get(host, path, method);
decide('aws', 'aws', tcp(lambda));
for (const host of [
  'sqs.us-east-1.amazonaws.com',
  'sqs-fips.us-east-1.amazonaws.com',
  'sqs.us-east-1.api.aws',
  'sqs.amazonaws.com',
  'sqs.eu-west-1.amazonaws.com',
  'sns.us-east-1.amazonaws.com',
  'dynamodb.amazonaws.com',
  'dynamodb.ap-south-2.amazonaws.com',
  'dynamodb-fips.us-gov-west-1.amazonaws.com',
  'dynamodb.eu-west-1.api.aws',
  'x.dynamodb.eu-west-1.amazonaws.com',
])
  decide('aws', 'aws', tcp(host));

// Modes: observe vs enforce policies, deny beats allow, an observing deny never opens what
// default-deny closes, per-rule mode overrides.
for (const host of [
  'a.example',
  'b.example',
  'c.example',
  'd.example',
  'e.example',
  't.example',
  'z.example',
]) {
  decide('modes', 'modes', tcp(host));
  name('modes', 'modes', host);
}
for (const host of ['a.example', 'b.example', 'c.x.example', 'example', 'x.other']) {
  decide('modes', 'observe', tcp(host));
  name('modes', 'observe', host);
}
exec('modes', 'observe', '/bin/sh');
exec('modes', 'observe', 'git');
addon('modes', 'observe', '/tmp/x.so');

// Workloads no policy selects: the unselected default governs (allow / enforce / observe).
for (const bundle of ['open', 'unselected-enforce', 'unselected-observe']) {
  decide('fallback', bundle, tcp('anything.example'));
  decide('fallback', bundle, tcp('x.example'));
  decide('fallback', bundle, { ip: '8.8.8.8', port: 53, protocol: 'udp' });
  name('fallback', bundle, 'anything.example');
  name('fallback', bundle, '8.8.8.8');
  exec('fallback', bundle, '/bin/sh');
  exec('fallback', bundle, EXEC_PATH);
  addon('fallback', bundle, '/tmp/x.node');
}

// Rules naming neither host nor address: checked for every request.
for (const [host, port, protocol] of [
  ['x.example', 443, 'tcp'],
  ['y.example', 443, 'tcp'],
  ['y.example', 80, 'tcp'],
  ['y.example', 0, 'tcp'],
  ['x.example', 25, 'tcp'],
  ['y.example', 25, 'tcp'],
  ['x.example', 53, 'udp'],
  ['x.example', 443, 'dns'],
] as const)
  decide('unanchored', 'unanchored', { host, port, protocol });
decide('unanchored', 'unanchored', { ip: '203.0.113.9', port: 443, protocol: 'https' });
decide('unanchored', 'unanchored', { ip: '203.0.113.9', port: 80, protocol: 'tcp' });
name('unanchored', 'unanchored', 'x.example');
name('unanchored', 'unanchored', 'y.example');
for (const host of ['x.example', 'y.example', 'z.example', '1.2.3.4']) {
  name('unanchored', 'dns-deny', host);
  decide('unanchored', 'dns-deny', tcp(host));
  decide('unanchored', 'dns-deny', { host, port: 53, protocol: 'dns' });
}

// exec and addons: the interpreter (`exec.allowNode`, exactly `execPath`), globs by path and by
// base name (also after a backslash).
for (const file of [
  EXEC_PATH,
  '/usr/bin/python3',
  '/usr/bin/git',
  '/tmp/git',
  'git',
  'curl',
  '/usr/local/bin/curl',
  'C:\\tools\\curl',
  'C:\\tools\\curl.exe',
  '/opt/tools/x',
  '/opt/tools/a/b',
  '/opt/tools/',
  '/opt/deep/run.sh',
  '/opt/deep/a/b/run.sh',
  '/opt/deep/a/run.sh.bak',
  'python3',
  '/usr/bin/pypy',
  '/usr/bin/py',
  '/usr/bin/py/sh',
  '/bin/sh',
  '',
]) {
  exec('exec', 'exec', file);
}
exec('exec', 'exec', '/opt/python/bin/python3', '/opt/python/bin/python3');
exec('exec', 'exec', EXEC_PATH, '/opt/python/bin/python3');
exec('exec', 'exec-no-node', EXEC_PATH);
exec('exec', 'exec-no-node', 'git');
exec('exec', 'exec-no-node', '/usr/bin/git');
for (const path of [
  '/var/task/lib/x.so',
  '/var/task/x.so',
  '/var/task/a/b/c/x.so',
  '/var/task/x.so.1',
  '/tmp/x.so',
  'x.node',
  '/anywhere/x.node',
  '/opt/lib/exact.so',
  '/opt/lib/other.so',
  '',
])
  addon('addons', 'exec', path);

// Hand-written compiled policies: inner wildcards, non-canonical patterns, empty lists,
// the `*` pattern, IPv4-mapped CIDRs, lower-case methods.
for (const request of [
  { host: 'b.s3.us-east-1.amazonaws.com', port: 443, protocol: 'tcp' },
  { host: 'b.s3.amazonaws.com', port: 443, protocol: 'tcp' },
  { host: 'b.s3.a.b.amazonaws.com', port: 443, protocol: 'tcp' },
  { host: 'api.example.com', port: 443, protocol: 'tcp' },
  { host: 'dot.example', port: 443, protocol: 'tcp' },
  { ip: '10.1.1.1', port: 443, protocol: 'tcp' },
  { host: 'm.example', port: 443, protocol: 'https' },
  { host: 'm.example', port: 443, protocol: 'https', method: 'GET' },
  { host: 'p.example', port: 443, protocol: 'https', path: '/x' },
  { host: 'p.example', port: 443, protocol: 'tcp' },
  { host: 'z.example', port: 0, protocol: 'tcp' },
  { host: 'z.example', port: 5, protocol: 'tcp' },
  { host: 'x.a.example', port: 443, protocol: 'tcp' },
  { host: 'a.example', port: 443, protocol: 'tcp' },
  { host: 'bücher.example', port: 443, protocol: 'tcp' },
  { host: 'xn--bcher-kva.test', port: 443, protocol: 'tcp' },
  { host: 'both.example', port: 443, protocol: 'tcp' },
  { host: 'both.example', ip: '192.0.2.9', port: 443, protocol: 'tcp' },
  { host: 'both.example', ip: '192.0.3.9', port: 443, protocol: 'tcp' },
  { host: 'anything.example', port: 853, protocol: 'tcp' },
  { host: 'anything.example', port: 853, protocol: 'udp' },
  { host: 'anything.example', port: 53, protocol: 'udp' },
  { host: 'np.example', port: 443, protocol: 'tcp' },
  { ip: '198.51.100.7', port: 443, protocol: 'https', method: 'GET' },
  { ip: '198.51.100.7', port: 443, protocol: 'https', method: 'get' },
  { ip: '198.51.100.7', port: 443, protocol: 'https', method: 'POST' },
  { ip: '198.51.100.200', port: 443, protocol: 'https', method: 'DELETE' },
  { ip: '198.51.100.200', port: 443, protocol: 'https' },
  { ip: '::ffff:198.51.100.7', port: 443, protocol: 'tcp' },
]) {
  decide('compiled', 'compiled-edge', request);
}
for (const host of ['np.example', 'anything.example', 'b.s3.x.amazonaws.com', '10.1.1.1'])
  name('compiled', 'compiled-edge', host);
for (const port of [439, 440, 445, 450, 451])
  decide('compiled', 'payload-floats', { host: 'f.example', port, protocol: 'tcp' });

// Unix-domain sockets: normal paths, path globs, abstract `@` names, deny first, unreadable input.
const unix = (group: string, bundle: string, path: string) =>
  cases.push({ group, op: 'decideUnix', bundle, input: { path } });
for (const path of [
  '/var/run/docker.sock',
  '/var/run/../run/docker.sock',
  '/var//run/docker.sock',
  '/var/run/./docker.sock',
  '/var/run/docker.sock/',
  '/../var/run/docker.sock',
  '/var/run/docker.sock2',
  '/run/app/a.sock',
  '/run/app/a.sock.bak',
  '/run/app/sub/a.sock',
  '/run/app/watch.sock',
  '/srv',
  '/srv/a/b/c',
  '/srv/secret',
  '/srv/secret/key.sock',
  '/srv/public/../secret/key.sock',
  '@dbus-session',
  '@dbus-',
  '@dbus',
  '@exact',
  '@exact2',
  '@/var/run/docker.sock',
  '/@exact',
  'relative.sock',
  '',
  '/var/run/docker.sock\u0000x',
  // A newline is an ordinary byte of a path: no regular-expression anchor may treat it as an end.
  '/x\n/',
  '/srv/a\n/..',
  '/tmp/other.sock',
]) {
  unix('unix', 'unix', path);
}
for (const path of ['/var/run/docker.sock', '/tmp/x.sock', '@anything', 'relative', ''])
  unix('unix', 'unix-open', path);
unix('unix', 'hosts', '/var/run/docker.sock');
unix('unix', 'observe', '/var/run/docker.sock');
name('unix', 'unix', 'x.example');
decide('unix', 'unix', tcp('x.example'));
decide('unix', 'unix', tcp('y.example'));

// Bundle verification: every refusal reason, and what must still be accepted.
verify('verify', 'small', {}, 'good');
verify('verify', 'small', { minRevision: 4 });
verify('verify', 'small', { minRevision: 5 }, 'equal revision accepted');
verify('verify', 'small', { minRevision: 6 }, 'rollback');
verify('verify', 'small', { now: Date.parse(EXPIRES_AT) }, 'expired exactly at expiresAt');
verify('verify', 'small', { now: Date.parse(EXPIRES_AT) - 1 });
verify('verify', 'small', { now: Date.parse('2020-01-01T00:00:00Z') }, 'before issuedAt: accepted');
verify(
  'verify',
  'small',
  { now: Date.parse('2027-01-01T00:00:00Z'), minRevision: 9 },
  'expired before rollback',
);
verify('verify', 'small', { workload: WORKLOAD });
verify('verify', 'small', { workload: 'cloud=aws,name=fn,tag.app=other' }, 'wrong-scope');
verify('verify', 'small', { workload: '' }, 'empty identity still checked');
verify('verify', 'small', { workload: 'tag.app=demo' });
verify('verify', 'small', { workload: 'tag.app=other', minRevision: 6 }, 'rollback before wrong-scope');
verify('verify', 'open', { workload: WORKLOAD }, 'excluded group');
verify('verify', 'open', { workload: UNSELECTED_WORKLOAD });
verify('verify', 'open', { workload: 'cloud=gcp' });
verify('verify', 'small', { trustedKeys: [] }, 'no trusted keys');
verify('verify', 'small', { trustedKeys: [1] }, 'other key only');
verify('verify', 'small', { trustedKeys: [1, 0] });
verify('verify', 'other-key', {}, 'unknown signer');
verify('verify', 'other-key', { trustedKeys: [0, 1] });
verify(
  'verify',
  'small',
  { raw: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{}')]).toString('base64') },
  'BOM bytes',
);
verify('verify', 'small', { raw: Buffer.from([0x7b, 0xff, 0x7d]).toString('base64') }, 'bytes not UTF-8');
verify(
  'verify',
  'small',
  { raw: Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]).toString('base64') },
  'bytes: encoded surrogate',
);
verify('verify', 'small', { raw: '' }, 'zero bytes');
for (const bundle of Object.keys(BUNDLES)) {
  const spec = BUNDLES[bundle] as BundleSpec;
  if (spec.kind === 'envelope' || spec.kind === 'text' || spec.kind === 'payload') verify('verify', bundle);
}
verify('verify', 'bom-text', { asBytes: true }, 'as bytes: TextDecoder drops the BOM');
verify('verify', 'small', { asBytes: true }, 'as bytes');

export const CASES: readonly Case[] = cases;

// ---------------------------------------------------------------------------------------------
// Seeded random sweep over the `sweep` bundle (mulberry32: same seed, same rows).

export const SWEEP_ROWS = 240;
export const SWEEP_SEED = 0x5eed;

const SWEEP_POOLS = {
  host: [
    undefined,
    '',
    'allowed.com',
    'ALLOWED.com.',
    'x.wild.com',
    'bad.wild.com',
    'api.example.com',
    'files.example.com',
    'db.corp.example',
    'evil.example',
    'a..b',
    '10.1.2.3',
    '[::ffff:169.254.169.254]',
    'bücher.example',
    'receipts.s3.amazonaws.com',
    's3.eu-west-1.amazonaws.com',
    'lambda.eu-west-1.amazonaws.com',
    'dns.example',
  ],
  ip: [
    undefined,
    undefined,
    '10.1.2.3',
    '10.9.1.1',
    '169.254.169.254',
    '::ffff:10.1.2.3',
    '8.8.8.8',
    'bogus',
  ],
  sni: [undefined, undefined, undefined, undefined, 'allowed.com', 'evil.example', 'x.wild.com'],
  port: [0, 22, 25, 53, 80, 443, 443, 5432, 8080, 70000],
  protocol: ['tcp', 'tcp', 'udp', 'http', 'https', 'https', 'dns'],
  method: [undefined, undefined, 'GET', 'POST', 'delete'],
  path: [
    undefined,
    undefined,
    '/',
    '/v1/charges/x',
    '/v1/charges/secret/x',
    '/v1/charges/%73ecret/x',
    '/public/a',
    '/receipts/x',
    '/2015-03-31/functions/ledger-a/invocations',
    '/x/../v1/charges/y',
  ],
} as const;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The sweep's requests, deduplicated, in generation order. */
export function sweepRequests(): Request[] {
  const random = mulberry32(SWEEP_SEED);
  const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)] as T;
  const seen = new Set<string>();
  const out: Request[] = [];
  while (out.length < SWEEP_ROWS) {
    const request: Request = { port: pick(SWEEP_POOLS.port), protocol: pick(SWEEP_POOLS.protocol) };
    const host = pick(SWEEP_POOLS.host);
    const ip = pick(SWEEP_POOLS.ip);
    const sni = pick(SWEEP_POOLS.sni);
    const method = pick(SWEEP_POOLS.method);
    const path = pick(SWEEP_POOLS.path);
    if (host !== undefined) request.host = host;
    if (ip !== undefined) request.ip = ip;
    if (sni !== undefined) request.sni = sni;
    if (method !== undefined) request.method = method;
    if (path !== undefined) request.path = path;
    const key = JSON.stringify(request);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(request);
  }
  return out;
}
