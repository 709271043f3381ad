// The shim's decision per new connection with a 10,000-rule bundle: the full path a TCP connect
// takes (exempt check, DNS-bound names, kernel decision, SNI), on a cache miss (first connection
// to a destination) and a hit (every later one). Also bundle verify+load time. Printed only.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ShimCore } from '../../runtime-shims/node/core.js';
import { hardenIntrinsics, prototypePolluted, WATCHED } from '../../runtime-shims/node/harden.js';
import { makeFixture, signedEnvelope } from '../shim/harness.js';

const RULES = 10_000;
const allow: string[] = [];
for (let i = 0; i < RULES; i++) {
  if (i % 10 === 0) allow.push(`{ to: { cidr: 10.${(i >> 8) & 255}.${i & 255}.0/24, port: 5432 } }`);
  else allow.push(`{ to: { host: svc-${i}.internal.example.com, port: 443 } }`);
}
const fx = makeFixture({ allow: allow.slice(0, 1) });
const started = performance.now();
const envelope = signedEnvelope({ allow }, 2, fx.privateKey);
const signedMs = performance.now() - started;
writeFileSync(join(fx.dir, 'bundle.json'), envelope);

const core = new ShimCore({
  env: fx.env(),
  log: () => undefined,
  registerPath: undefined,
  isOwnFile: () => false,
  post: async () => 202,
});
const loadStart = performance.now();
const result = core.reload();
const loadMs = performance.now() - loadStart;
if (!result.ok) throw new Error(`bundle refused: ${result.message}`);

const DESTINATIONS = 20_000;
const ips: string[] = [];
const names: string[] = [];
for (let i = 0; i < DESTINATIONS; i++) {
  const ip = `172.${16 + ((i >> 16) & 15)}.${(i >> 8) & 255}.${i & 255}`;
  const name = `svc-${(i % RULES) | 1}.internal.example.com`;
  core.bindNames(name, [ip]);
  ips.push(ip);
  names.push(name);
}

let allowed = 0;
const missStart = process.hrtime.bigint();
for (let i = 0; i < DESTINATIONS; i++)
  if (core.decideConnect(ips[i] as string, 443, 'tcp', names[i], names[i]).decision === 'allow') allowed++;
const missNs = Number(process.hrtime.bigint() - missStart) / DESTINATIONS;

const ROUNDS = 5;
const hitStart = process.hrtime.bigint();
for (let r = 0; r < ROUNDS; r++)
  for (let i = 0; i < DESTINATIONS; i++)
    core.decideConnect(ips[i] as string, 443, 'tcp', names[i], undefined);
const hitNs = Number(process.hrtime.bigint() - hitStart) / (DESTINATIONS * ROUNDS);

const denyStart = process.hrtime.bigint();
for (let i = 0; i < DESTINATIONS; i++)
  core.decideConnect(`192.0.2.${i & 255}`, 1000 + (i % 5000), 'tcp', undefined, undefined);
const denyNs = Number(process.hrtime.bigint() - denyStart) / DESTINATIONS;

// What the preload adds to every decision: the identity check of the watched builtins (prototype
// methods are watched, not frozen, so programs may override them on their own instances). Measured
// side by side: hit decisions before and after hardening, and the check alone.
const hitBeforeHarden = hitNs;
hardenIntrinsics();
const hardenedStart = process.hrtime.bigint();
for (let r = 0; r < ROUNDS; r++)
  for (let i = 0; i < DESTINATIONS; i++)
    core.decideConnect(ips[i] as string, 443, 'tcp', names[i], undefined);
const hitHardenedNs = Number(process.hrtime.bigint() - hardenedStart) / (DESTINATIONS * ROUNDS);
const CHECKS = 1_000_000;
let seen = 0;
const checkStart = process.hrtime.bigint();
for (let i = 0; i < CHECKS; i++) if (prototypePolluted()) seen++;
const checkNs = Number(process.hrtime.bigint() - checkStart) / CHECKS;
if (seen !== 0) throw new Error('the watch saw a replaced builtin in a clean process');

// Rule hit counting (contract §3): every allow decision is counted per rule. Side by side in
// alternating rounds, cache-hit decisions with the counter as shipped and with its count() a no-op.
const counting = core.hits.count;
const noCount = () => undefined;
const hitRound = () => {
  const start = process.hrtime.bigint();
  for (let i = 0; i < DESTINATIONS; i++)
    core.decideConnect(ips[i] as string, 443, 'tcp', names[i], undefined);
  return Number(process.hrtime.bigint() - start) / DESTINATIONS;
};
const withCounting: number[] = [];
const withoutCounting: number[] = [];
core.hits.take();
for (let r = 0; r < 10; r++) {
  core.hits.count = noCount;
  withoutCounting.push(hitRound());
  core.hits.count = counting;
  withCounting.push(hitRound());
}
const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
const counted = core.hits
  .take()
  .reduce((sum, h) => sum + Object.values(h.rules).reduce((a, b) => a + b, 0), 0);
if (counted !== 10 * allowedHits(DESTINATIONS))
  throw new Error(`hit counting lost decisions: ${counted} counted, ${10 * allowedHits(DESTINATIONS)} made`);

/** Allowed decisions among one round of cache-hit connects (the bundle allows the bound names). */
function allowedHits(n: number): number {
  let count = 0;
  core.hits.count = noCount;
  for (let i = 0; i < n; i++)
    if (core.decideConnect(ips[i] as string, 443, 'tcp', names[i], undefined).decision === 'allow') count++;
  core.hits.count = counting;
  return count;
}

console.log(
  `shim decision per new connection, ${RULES}-rule bundle (${(envelope.length / 1024).toFixed(0)} KB)`,
);
console.log(`  compile+sign ${signedMs.toFixed(0)} ms; verify+load in the shim ${loadMs.toFixed(1)} ms`);
console.log(
  `  first connection to a destination (cache miss, name+SNI): ${(missNs / 1000).toFixed(2)} µs  (${allowed}/${DESTINATIONS} allowed)`,
);
console.log(`  later connections (cache hit):                            ${(hitNs / 1000).toFixed(2)} µs`);
console.log(`  unknown address, default deny (deny path, record included): ${(denyNs / 1000).toFixed(2)} µs`);
console.log(
  `  builtin watch (${WATCHED.length} prototype methods + species), per decision: ${checkNs.toFixed(0)} ns; cache-hit decision ${(hitBeforeHarden / 1000).toFixed(2)} µs unwatched → ${(hitHardenedNs / 1000).toFixed(2)} µs watched (${(hitHardenedNs / hitBeforeHarden).toFixed(2)}×)`,
);
console.log(
  `  rule hit counting, cache-hit decision (median of 10 alternating rounds): ${(median(withoutCounting) / 1000).toFixed(2)} µs without → ${(median(withCounting) / 1000).toFixed(2)} µs with (${(median(withCounting) / median(withoutCounting)).toFixed(2)}×); ${counted} allow decisions counted, none lost`,
);
fx.cleanup();
