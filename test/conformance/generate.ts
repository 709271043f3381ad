// Builds the kernel conformance table (test/conformance/table.json) by running the TypeScript
// kernel on every case of cases.ts. test/policy/conformance.test.ts regenerates it and fails when
// the checked-in file differs (`npm run conformance` rewrites it); every other kernel port (the
// Python one: runtime-shims/python/tests/test_conformance.py) must reproduce every row.
//
// Format 1 (also in docs/contracts.md, "Conformance table"):
//   {
//     "format": 1,
//     "about": "…",
//     "now": <epoch ms: the clock of rows that name none>,
//     "execPath": "<the interpreter exec.allowNode allows, unless a row names its own>",
//     "trustedKeys": [<SPKI PEM>, …],            // [0] signs every bundle; [1] is a second signer
//     "bundles": { "<name>": "<envelope text>" }, // each envelope once; rows refer to it by name
//     "rows": [ { "name", "op", "bundle", "input": {…}, "expect": {…} } ]
//   }
// Ops (a new kind of destination adds an op; readers fail on an op they do not know):
//   decide       input {host?, ip?, port, protocol, sni?, method?, path?}  → Decision
//   decideName   input {host}                                             → Decision
//   decideExec   input {file, execPath?}                                  → Decision
//   decideAddon  input {path}                                             → Decision
//   decideUnix   input {path}                                             → Decision
//   create       input {}                          → {ok: true, revision, mode, allowsAddresses} | {ok: false}
//   verify       input {now, minRevision?, workload? (identity text), trustedKeys? (indices, default [0]),
//                       asBytes? (the bundle as UTF-8 bytes), raw? (base64 bytes instead of the bundle)}
//                → {ok: true, keyId, revision} | {ok: false, reason}
// Decision = {decision, mode, blocked, rule}. For decide*/create rows the bundle is verified with
// every trusted key at `now` and the decider built from its payload with `execPath`. Absent input
// fields are absent (undefined / None), never null. Messages are not compared, reasons are.
import { spawnSync } from 'node:child_process';
import { createPrivateKey, sign } from 'node:crypto';
import { join, resolve } from 'node:path';
import { preAuthEncoding, signBundle, type VerifyResult, verifyBundle } from '../../policy/bundle.js';
import { compilePolicy } from '../../policy/compile.js';
import type { CompiledPolicy } from '../../policy/compiled.js';
import { createDecider } from '../../policy/decide.js';
import { parseIdentity } from '../../policy/identity.js';
import { keyIdOf, loadTrustedKeys, type TrustedKey } from '../../policy/keys.js';
import { parsePolicy } from '../../policy/parse.js';
import { BUNDLE_PAYLOAD_TYPE, type Decider, type Decision, type Envelope } from '../../policy/types.js';
import {
  BUNDLES,
  type BundleSpec,
  CASES,
  type Case,
  EXEC_PATH,
  EXPIRES_AT,
  ISSUED_AT,
  NOW,
  type Op,
  type PolicyDoc,
  type SignTools,
  sweepRequests,
  WORKLOAD,
} from './cases.js';
import { MAIN_PRIVATE_KEY, MAIN_PUBLIC_KEY, OTHER_PRIVATE_KEY, OTHER_PUBLIC_KEY } from './keys.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const TABLE_FILE = join(ROOT, 'test/conformance/table.json');

export interface TableRow {
  name: string;
  op: Op;
  bundle: string;
  input: Record<string, unknown>;
  expect: Record<string, unknown>;
}

export interface Table {
  format: 1;
  about: string;
  now: number;
  execPath: string;
  trustedKeys: string[];
  bundles: Record<string, string>;
  rows: TableRow[];
}

const PRIVATE_KEYS = { main: MAIN_PRIVATE_KEY, other: OTHER_PRIVATE_KEY } as const;

const tools: SignTools = {
  sign(body, key = 'main') {
    const pae = preAuthEncoding(BUNDLE_PAYLOAD_TYPE, body);
    return sign(null, pae, createPrivateKey(PRIVATE_KEYS[key])).toString('base64');
  },
  keyId(key = 'main') {
    return keyIdOf(key === 'main' ? MAIN_PUBLIC_KEY : OTHER_PUBLIC_KEY);
  },
};

function policySetYaml(policies: readonly PolicyDoc[]): string {
  const docs = [
    'apiVersion: bulkhead.dev/v1\nkind: SmartGroup\nmetadata: { name: app }\nspec:\n  match: { tags: { app: demo } }\n',
  ];
  for (const p of policies) {
    const lines = [
      'apiVersion: bulkhead.dev/v1',
      'kind: EgressPolicy',
      `metadata: { name: ${p.name} }`,
      'spec:',
      '  appliesTo: [app]',
      `  mode: ${p.mode ?? 'enforce'}`,
      '  owner: team@example.com',
    ];
    if (p.allow?.length) lines.push('  allow:', ...p.allow.map((r) => `    - ${r}`));
    if (p.deny?.length) lines.push('  deny:', ...p.deny.map((r) => `    - ${r}`));
    if (p.exec) lines.push(`  exec: ${p.exec}`);
    if (p.addons) lines.push(`  addons: ${p.addons}`);
    docs.push(`${lines.join('\n')}\n`);
  }
  return docs.join('---\n');
}

function compileYaml(spec: Extract<BundleSpec, { kind: 'yaml' }>, name: string): CompiledPolicy {
  const parsed = parsePolicy([{ file: `${name}.yaml`, text: policySetYaml(spec.policies) }]);
  if (!parsed.ok)
    throw new Error(
      `bundle ${name}: ${parsed.errors.map((e) => `${e.line}:${e.column} ${e.path} ${e.message}`).join('; ')}`,
    );
  return compilePolicy(
    parsed.set,
    parseIdentity(spec.workload ?? WORKLOAD),
    spec.unselected ? { unselected: spec.unselected } : {},
  );
}

/** The payload a `payload` bundle starts from: what signBundle would write for an empty policy. */
function basePayload(): Record<string, unknown> {
  const policy: CompiledPolicy = {
    format: 1,
    scope: { id: 'scope-conformance', groups: [], excludes: [] },
    mode: 'enforce',
    fallback: 'deny',
    policies: [],
    rules: [],
    exec: { allowNode: true, allow: [] },
    addons: { allow: [] },
  };
  return {
    schemaVersion: 1,
    revision: 9,
    issuedAt: ISSUED_AT,
    expiresAt: EXPIRES_AT,
    scope: policy.scope,
    keyId: tools.keyId('main'),
    policy,
  };
}

function signedText(text: string, key: 'main' | 'other' = 'main'): string {
  const body = Buffer.from(text, 'utf8');
  const envelope: Envelope = {
    payloadType: BUNDLE_PAYLOAD_TYPE,
    payload: body.toString('base64'),
    signatures: [{ keyid: tools.keyId(key), sig: tools.sign(body, key) }],
  };
  return JSON.stringify(envelope);
}

function buildBundles(): Record<string, string> {
  const out: Record<string, string> = {};
  const build = (name: string): string => {
    const done = out[name];
    if (done !== undefined) return done;
    const spec = BUNDLES[name];
    if (!spec) throw new Error(`unknown bundle ${name}`);
    let text: string;
    const times = { issuedAt: ISSUED_AT, expiresAt: EXPIRES_AT };
    switch (spec.kind) {
      case 'yaml':
        text = JSON.stringify(
          signBundle(
            { policy: compileYaml(spec, name), revision: spec.revision ?? 1, ...times },
            PRIVATE_KEYS[spec.key ?? 'main'],
          ),
        );
        break;
      case 'compiled':
        text = JSON.stringify(
          signBundle({ policy: spec.policy, revision: spec.revision ?? 1, ...times }, PRIVATE_KEYS.main),
        );
        break;
      case 'payload':
        text = signedText(spec.text(basePayload()), spec.key);
        break;
      case 'envelope':
        text = spec.tamper(JSON.parse(build(spec.from)) as Envelope, tools);
        break;
      case 'text':
        text = spec.text;
        break;
    }
    out[name] = text;
    return text;
  };
  for (const name of Object.keys(BUNDLES)) build(name);
  return out;
}

const SAFE_TEXT = /^[\x21-\x7e]+$/;

function show(value: unknown): string {
  if (typeof value !== 'string') return String(value);
  const text = value.length > 48 ? `${value.slice(0, 40)}…(${value.length} chars)` : value;
  return SAFE_TEXT.test(text) && !text.includes('"') ? text : JSON.stringify(text);
}

function summary(op: Op, input: Record<string, unknown>): string {
  switch (op) {
    case 'decide': {
      const parts = [String(input.protocol === '' ? '""' : show(input.protocol))];
      if (input.method !== undefined) parts.push(input.method === '' ? 'method=""' : show(input.method));
      parts.push(`${input.host === undefined ? '-' : show(input.host)}:${input.port}`);
      if (input.path !== undefined) parts.push(`path=${show(input.path)}`);
      if (input.ip !== undefined) parts.push(`ip=${show(input.ip)}`);
      if (input.sni !== undefined) parts.push(`sni=${show(input.sni)}`);
      return parts.join(' ');
    }
    case 'decideName':
      return show(input.host);
    case 'decideExec':
      return input.execPath === undefined
        ? show(input.file)
        : `${show(input.file)} execPath=${show(input.execPath)}`;
    case 'decideAddon':
    case 'decideUnix':
      return show(input.path);
    case 'create':
      return '';
    case 'verify':
      return Object.entries(input)
        .filter(([k]) => k !== 'now' || input.now !== NOW)
        .map(([k, v]) => `${k}=${Array.isArray(v) ? `[${v.join(',')}]` : show(v)}`)
        .join(' ');
  }
}

function decisionOf(d: Decision): Record<string, unknown> {
  return { decision: d.decision, mode: d.mode, blocked: d.blocked, rule: d.rule };
}

/** Build the table: every case run through the TypeScript kernel. */
export function buildTable(): Table {
  const bundles = buildBundles();
  const trustedPems = [MAIN_PUBLIC_KEY, OTHER_PUBLIC_KEY];
  const trusted: TrustedKey[] = loadTrustedKeys(trustedPems);
  const deciders = new Map<string, ReturnType<typeof createDecider>>();

  const payloadOf = (bundle: string) => {
    const result = verifyBundle(bundles[bundle] as string, { trustedKeys: trusted, now: NOW });
    if (!result.ok) throw new Error(`bundle ${bundle} does not verify: ${result.reason} ${result.message}`);
    return result.payload;
  };
  const deciderOf = (bundle: string, execPath: string) => {
    const key = `${bundle}\u0000${execPath}`;
    let decider = deciders.get(key);
    if (!decider) {
      decider = createDecider(payloadOf(bundle), { execPath });
      deciders.set(key, decider);
    }
    return decider;
  };

  const run = (c: Case): Record<string, unknown> => {
    const input = c.input;
    const execPath = (input.execPath as string | undefined) ?? EXEC_PATH;
    switch (c.op) {
      case 'decide': {
        const decider = deciderOf(c.bundle, execPath);
        const request = input as unknown as Parameters<Decider['decide']>[0];
        const decision = decider.decide(request);
        const uncached = decider.decideUncached(request);
        if (uncached !== decision) throw new Error(`${c.group}: cache and uncached path disagree`);
        return decisionOf(decision);
      }
      case 'decideName':
        return decisionOf(deciderOf(c.bundle, execPath).decideName(input.host as string));
      case 'decideExec':
        return decisionOf(deciderOf(c.bundle, execPath).decideExec(input.file as string));
      case 'decideAddon':
        return decisionOf(deciderOf(c.bundle, execPath).decideAddon(input.path as string));
      case 'decideUnix':
        return decisionOf(deciderOf(c.bundle, execPath).decideUnix(input.path as string));
      case 'create': {
        try {
          const decider = createDecider(payloadOf(c.bundle), { execPath });
          return {
            ok: true,
            revision: decider.revision,
            mode: decider.mode,
            allowsAddresses: decider.allowsAddresses,
          };
        } catch {
          return { ok: false };
        }
      }
      case 'verify': {
        const text = bundles[c.bundle] as string;
        const data =
          input.raw !== undefined
            ? new Uint8Array(Buffer.from(input.raw as string, 'base64'))
            : input.asBytes
              ? new Uint8Array(Buffer.from(text, 'utf8'))
              : text;
        const result: VerifyResult = verifyBundle(data, {
          trustedKeys: ((input.trustedKeys as number[] | undefined) ?? [0]).map(
            (i) => trusted[i] as TrustedKey,
          ),
          minRevision: input.minRevision as number | undefined,
          workload: input.workload === undefined ? undefined : parseIdentity(input.workload as string),
          now: input.now as number,
        });
        return result.ok
          ? { ok: true, keyId: result.keyId, revision: result.payload.revision }
          : { ok: false, reason: result.reason };
      }
    }
  };

  const all: Case[] = [...CASES];
  // One create row per bundle a decider can be asked for (it verifies).
  for (const [name, spec] of Object.entries(BUNDLES)) {
    if (spec.kind === 'envelope' || spec.kind === 'text') continue;
    const verified = verifyBundle(bundles[name] as string, { trustedKeys: trusted, now: NOW });
    if (verified.ok) all.push({ group: 'create', op: 'create', bundle: name, input: {} });
  }
  sweepRequests().forEach((request, i) => {
    all.push({ group: 'sweep', op: 'decide', bundle: 'sweep', input: { ...request }, note: `#${i}` });
  });

  const rows: TableRow[] = [];
  const names = new Set<string>();
  for (const c of all) {
    const detail = summary(c.op, c.input);
    const name = [
      `${c.group}: ${c.op}`,
      c.bundle === c.group ? '' : `[${c.bundle}]`,
      detail,
      c.note ? `(${c.note})` : '',
    ]
      .filter((part) => part !== '')
      .join(' ');
    if (names.has(name)) throw new Error(`duplicate conformance row: ${name} ${JSON.stringify(c.input)}`);
    names.add(name);
    rows.push({ name, op: c.op, bundle: c.bundle, input: c.input, expect: run(c) });
  }
  return {
    format: 1,
    about:
      'Kernel conformance table generated by test/conformance/generate.ts from cases.ts with the TypeScript kernel; every kernel port must reproduce every row (format: docs/contracts.md, "Conformance table"). Regenerate: npm run conformance. Keys are test-only.',
    now: NOW,
    execPath: EXEC_PATH,
    trustedKeys: trustedPems,
    bundles,
    rows,
  };
}

/** The table as checked in: JSON formatted by Biome, as `npm run lint` wants it. */
export function renderTable(table: Table): string {
  const biome = join(ROOT, 'node_modules/.bin/biome');
  const result = spawnSync(biome, ['format', `--stdin-file-path=${TABLE_FILE}`], {
    input: JSON.stringify(table),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0) throw new Error(`biome format failed: ${result.stderr}`);
  return result.stdout;
}
