// decide() on a 10,000-rule bundle of a realistic mix (exact hosts, wildcards, CIDRs, L7 paths,
// denies), cache hit and miss, side by side with Cedar (@cedar-policy/cedar-wasm, preparsed policy
// set) evaluating the same rules for the same requests. Also: parse, compile+sign and verify times.
// Figures are printed, never asserted. Run: npm run bench -- decide
import { createRequire } from 'node:module';
import { PerformanceObserver } from 'node:perf_hooks';
import { serializeEnvelope, signBundle, verifyBundle } from '../../policy/bundle.js';
import { compilePolicy } from '../../policy/compile.js';
import { createDecider } from '../../policy/decide.js';
import { checkGuardrails } from '../../policy/guardrails.js';
import { parseIdentity } from '../../policy/identity.js';
import { generateKeyPair, loadTrustedKeys } from '../../policy/keys.js';
import { parsePolicy } from '../../policy/parse.js';
import type { Decision, DecisionRequest } from '../../policy/types.js';

type Cedar = typeof import('@cedar-policy/cedar-wasm/nodejs');
const cedar = createRequire(import.meta.url)('@cedar-policy/cedar-wasm/nodejs') as Cedar;

const RULES = 10_000;
const identity = parseIdentity('cloud=aws,name=charge-card,region=us-east-1,tag.app=payments');

// A deterministic pseudo-random sequence, so every run measures the same rules and requests.
let seed = 0x2545f491;
function random(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 0x100000000;
}
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

interface RuleSpec {
  kind: 'allow' | 'deny';
  host?: string;
  cidr?: string;
  port?: number;
  methods?: string[];
  path?: string;
}

const tlds = ['com', 'net', 'io', 'dev', 'org'];
const specs: RuleSpec[] = [];
for (let i = 0; i < RULES; i++) {
  const r = random();
  const domain = `svc${i}.vendor${i % 997}.${pick(tlds)}`;
  if (r < 0.45) specs.push({ kind: 'allow', host: `api.${domain}`, port: 443 });
  else if (r < 0.65) specs.push({ kind: 'allow', host: `*.${domain}` });
  else if (r < 0.8)
    specs.push({
      kind: 'allow',
      host: `app.${domain}`,
      port: 443,
      methods: ['GET', 'POST'],
      path: `/v${i % 3}/items/**`,
    });
  else if (r < 0.92) {
    const v6 = random() < 0.25;
    specs.push({
      kind: 'allow',
      cidr: v6
        ? `2001:db8:${(i % 65535).toString(16)}::/48`
        : `10.${i % 256}.${Math.floor(i / 256) % 256}.0/24`,
      port: 5432,
    });
  } else if (r < 0.97) specs.push({ kind: 'deny', host: `bad.${domain}` });
  else specs.push({ kind: 'deny', cidr: `172.16.${i % 256}.${(i * 7) % 256}/32` });
}

function yamlOf(rules: RuleSpec[]): string {
  const line = (s: RuleSpec) => {
    const parts: string[] = [];
    if (s.host) parts.push(`host: "${s.host}"`);
    if (s.cidr) parts.push(`cidr: "${s.cidr}"`);
    if (s.port) parts.push(`port: ${s.port}`);
    if (s.methods) parts.push(`methods: [${s.methods.join(', ')}]`);
    if (s.path) parts.push(`paths: ["${s.path}"]`);
    return `    - to: { ${parts.join(', ')} }`;
  };
  return `apiVersion: bulkhead.dev/v1
kind: SmartGroup
metadata: { name: payments }
spec: { match: { tags: { app: payments } } }
---
apiVersion: bulkhead.dev/v1
kind: EgressPolicy
metadata: { name: big }
spec:
  appliesTo: [payments]
  mode: enforce
  owner: bench
  allow:
${rules
  .filter((s) => s.kind === 'allow')
  .map(line)
  .join('\n')}
  deny:
${rules
  .filter((s) => s.kind === 'deny')
  .map(line)
  .join('\n')}
`;
}

// Requests: hits on every rule kind plus misses, as a function would make them.
function requestFor(spec: RuleSpec | undefined): DecisionRequest {
  if (!spec)
    return { host: `unknown${Math.floor(random() * 1e6)}.example.${pick(tlds)}`, port: 443, protocol: 'tcp' };
  if (spec.cidr) {
    const base = spec.cidr.split('/')[0] as string;
    const ip = base.includes(':') ? base.replace(/::$/, '::1') : base.replace(/\.0$/, '.7');
    return { ip, port: spec.port ?? 443, protocol: 'tcp' };
  }
  const host = (spec.host as string).replace(/^\*\./, `x${Math.floor(random() * 100)}.`);
  if (spec.path)
    return {
      host,
      port: 443,
      protocol: 'https',
      method: 'POST',
      path: spec.path.replace('/**', `/${Math.floor(random() * 1000)}/detail`),
    };
  return { host, port: spec.port ?? 443, protocol: 'tcp' };
}
const requests: DecisionRequest[] = [];
for (let i = 0; i < 4096; i++) requests.push(requestFor(random() < 0.8 ? pick(specs) : undefined));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number;
}

interface Figures {
  p50: number;
  p99: number;
  /** p99 of the noisiest round (the machine is shared: other processes preempt us). */
  p99Worst: number;
}

/**
 * ns per call from batches of `batch` calls timed together with hrtime.bigint, in `rounds` rounds;
 * reports the median round's p50 and the best round's p99 (least disturbed by other processes),
 * plus the worst round's p99 so the noise is visible.
 */
function measure(rounds: number, batches: number, batch: number, run: (i: number) => unknown): Figures {
  const p50s: number[] = [];
  const p99s: number[] = [];
  let sink = 0;
  let k = 0;
  for (let round = 0; round < rounds; round++) {
    const samples: number[] = [];
    for (let b = 0; b < batches; b++) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < batch; i++) if (run(k++)) sink++;
      samples.push(Number(process.hrtime.bigint() - start) / batch);
    }
    samples.sort((a, b) => a - b);
    p50s.push(percentile(samples, 0.5));
    p99s.push(percentile(samples, 0.99));
  }
  if (sink === -1) console.log(sink);
  p50s.sort((a, b) => a - b);
  p99s.sort((a, b) => a - b);
  return { p50: percentile(p50s, 0.5), p99: p99s[0] as number, p99Worst: p99s[p99s.length - 1] as number };
}

function time<T>(label: string, fn: () => T): { value: T; ms: number } {
  const start = process.hrtime.bigint();
  const value = fn();
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  console.log(`${label.padEnd(44)} ${ms.toFixed(1).padStart(9)} ms`);
  return { value, ms };
}

// --- Build, sign, verify -------------------------------------------------------------------------
const text = yamlOf(specs);
const parsed = time(`parse ${RULES} rules (${(text.length / 1024).toFixed(0)} KiB YAML)`, () =>
  parsePolicy([{ file: 'big.yaml', text }]),
).value;
if (!parsed.ok)
  throw new Error(
    parsed.errors
      .slice(0, 3)
      .map((e) => e.message)
      .join('; '),
  );
time('guardrails', () => checkGuardrails(parsed.set));
const keys = generateKeyPair();
const trustedKeys = loadTrustedKeys([keys.publicKeyPem]);
const built = time('compile + sign (build)', () => {
  const policy = compilePolicy(parsed.set, identity);
  return serializeEnvelope(signBundle({ policy, revision: 1 }, keys.privateKeyPem));
});
console.log(`${'bundle size'.padEnd(44)} ${(built.value.length / 1024).toFixed(0).padStart(9)} KiB`);
const verified = time('verify (signature + structure)', () =>
  verifyBundle(built.value, { trustedKeys, workload: identity }),
);
if (!verified.value.ok) throw new Error(verified.value.message);
const payload = verified.value.payload;
const decider = time('createDecider (index build)', () => createDecider(payload)).value;

// --- Bulkhead decide() ---------------------------------------------------------------------------
const mask = requests.length - 1;
for (const r of requests) decider.decide(r); // warm the cache and the JIT
for (let i = 0; i < 20_000; i++) decider.decideUncached(requests[i & mask] as DecisionRequest);

let gcCount = 0;
const observer = new PerformanceObserver((list) => {
  gcCount += list.getEntries().length;
});
observer.observe({ entryTypes: ['gc'] });
(globalThis as { gc?: () => void }).gc?.();
await new Promise((resolve) => setTimeout(resolve, 10));
gcCount = 0;
const HIT_CALLS = 2_000_000;
for (let i = 0; i < HIT_CALLS; i++) decider.decide(requests[i & mask] as DecisionRequest);
await new Promise((resolve) => setTimeout(resolve, 10));
const gcDuringHits = gcCount;
observer.disconnect();

const hit = measure(5, 1000, 512, (i) => decider.decide(requests[i & mask] as DecisionRequest).blocked);
const miss = measure(
  5,
  400,
  64,
  (i) => decider.decideUncached(requests[i & mask] as DecisionRequest).blocked,
);

// --- Cedar, same rules and requests ----------------------------------------------------------------
function cedarString(text: string): string {
  return JSON.stringify(text);
}
function cedarCondition(s: RuleSpec): string {
  const parts: string[] = [];
  if (s.host) {
    parts.push(
      s.host.startsWith('*.')
        ? `context has host && context.host like ${cedarString(`*.${s.host.slice(2)}`)}`
        : `context has host && context.host == ${cedarString(s.host)}`,
    );
  }
  if (s.cidr) parts.push(`context has ip && context.ip.isInRange(ip(${cedarString(s.cidr)}))`);
  if (s.port) parts.push(`context.port == ${s.port}`);
  if (s.methods)
    parts.push(`context has method && [${s.methods.map(cedarString).join(', ')}].contains(context.method)`);
  if (s.path) parts.push(`context has path && context.path like ${cedarString(s.path.replace('/**', '/*'))}`);
  return parts.join(' && ');
}
const cedarText = specs
  .map(
    (s, i) =>
      `@id("r${i}")\n${s.kind === 'allow' ? 'permit' : 'forbid'}(principal, action == Action::"connect", resource) when { ${cedarCondition(s)} };`,
  )
  .join('\n');
const cedarParse = time('cedar: preparse 10k policies', () =>
  cedar.preparsePolicySet('bench', { staticPolicies: cedarText }),
);
if (cedarParse.value.type !== 'success') throw new Error(JSON.stringify(cedarParse.value).slice(0, 500));

function cedarContext(r: DecisionRequest): Record<string, unknown> {
  const context: Record<string, unknown> = { port: r.port };
  if (r.host) context.host = r.host;
  if (r.ip) context.ip = { __extn: { fn: 'ip', arg: r.ip } };
  if (r.method) context.method = r.method;
  if (r.path) context.path = r.path;
  return context;
}
const cedarCalls = requests.map((r) => ({
  principal: { type: 'Workload', id: 'charge-card' },
  action: { type: 'Action', id: 'connect' },
  resource: { type: 'Destination', id: r.host ?? r.ip ?? '' },
  context: cedarContext(r),
  preparsedPolicySetId: 'bench',
  entities: [],
}));

// The same answers, or the comparison means nothing: check a sample before timing.
let agree = 0;
let disagree = 0;
for (let i = 0; i < 300; i++) {
  const answer = cedar.statefulIsAuthorized(cedarCalls[i] as never);
  if (answer.type !== 'success') throw new Error(JSON.stringify(answer).slice(0, 500));
  const cedarAllows = answer.response.decision === 'allow';
  const ours: Decision = decider.decide(requests[i] as DecisionRequest);
  if (cedarAllows === (ours.decision === 'allow')) agree++;
  else disagree++;
}
const cedarTimes = measure(
  1,
  60,
  4,
  (i) => cedar.statefulIsAuthorized(cedarCalls[i & mask] as never).type === 'success',
);

// --- Report --------------------------------------------------------------------------------------
const row = (label: string, m: Figures) =>
  console.log(
    `${label.padEnd(44)} p50 ${m.p50.toFixed(0).padStart(9)} ns   p99 ${m.p99.toFixed(0).padStart(9)} ns   (noisiest round p99 ${m.p99Worst.toFixed(0)} ns)`,
  );
console.log('');
console.log(
  `rules ${RULES} (compiled matchers ${payload.policy.rules.length}), requests ${requests.length} (80% hit a rule)`,
);
row('bulkhead decide, cache hit', hit);
row('bulkhead decide, cache miss (full evaluation)', miss);
row('cedar statefulIsAuthorized (preparsed set)', cedarTimes);
console.log(
  `${'cedar / bulkhead (miss), p50'.padEnd(44)} ${(cedarTimes.p50 / miss.p50).toFixed(0).padStart(9)} x`,
);
console.log(
  `${'cedar / bulkhead (hit), p50'.padEnd(44)} ${(cedarTimes.p50 / hit.p50).toFixed(0).padStart(9)} x`,
);
console.log(
  `${'decisions agreeing with cedar (sample)'.padEnd(44)} ${`${agree}/${agree + disagree}`.padStart(9)}`,
);
console.log(`${`GCs during ${HIT_CALLS / 1e6}M cache hits`.padEnd(44)} ${String(gcDuringHits).padStart(9)}`);
console.log(
  'batches: hit 5 rounds x 1000 x 512, miss 5 x 400 x 64, cedar 60 x 4 calls (ns per call = batch time / calls)',
);
